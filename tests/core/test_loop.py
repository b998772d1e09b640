"""The core loop on 8 fake CPU devices: the loss falls, checkpoints restore exactly, resume equals no stop, and
evaluators built from config run on their cadence."""

import json
import time

import jax
import ml_collections
import numpy as np
import pytest
from clu import metric_writers

from core import loop, registry
from core.evaluators import EvalContext, Evaluator, RunResults, build_evaluators
from core.setup import example_batch_from_meta, setup_training
from tests.core import toy


def _train(workdir, num_steps, stop_at=None, grad_accum_steps=1):
  config = toy.toy_config()
  config.grad_accum_steps = grad_accum_steps
  data = toy.toy_dataset(config.batch_size)
  model = toy.ToyRegressionModel(config, data.meta_data)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(data.meta_data),
                         num_train_steps=num_steps, workdir=str(workdir), rng=jax.random.PRNGKey(0),
                         train_iter=data.train_iter)
  writer = metric_writers.LoggingWriter()
  losses = []
  state, info = loop.train_loop(state=setup.state, train_step=_recording(setup.train_step, losses),
                                train_iter=data.train_iter, mesh=setup.mesh, num_train_steps=stop_at or num_steps,
                                writer=writer, checkpointer=setup.checkpointer, checkpoint_every=5, log_every=5,
                                evaluators=[Evaluator('noop', {}, None)])
  setup.checkpointer.close()
  return state, losses, setup, info


def _recording(step_fn, losses):
  def step(state, batch):
    state, metrics = step_fn(state, batch)
    losses.append(float(metrics['loss']))
    return state, metrics
  return step


def test_uses_eight_devices():
  assert jax.device_count() == 8


def test_loss_falls_and_checkpoint_restores_exactly(tmp_path):
  state, losses, setup, _ = _train(tmp_path / 'run', 40)
  assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5]), losses
  assert setup.checkpointer.all_steps()[-1] == 40
  assert len(setup.checkpointer.all_steps()) == 2  # keep=2
  # Batch is sharded over all 8 devices; parameters replicated.
  assert len(state.params['Dense_0']['kernel'].sharding.device_set) == 8

  config = toy.toy_config()
  data = toy.toy_dataset(config.batch_size)
  model = toy.ToyRegressionModel(config, data.meta_data)
  again = setup_training(config=config, model=model, example_batch=example_batch_from_meta(data.meta_data),
                         num_train_steps=40, workdir=str(tmp_path / 'run'), rng=jax.random.PRNGKey(99),
                         train_iter=data.train_iter)
  assert again.resumed_from == 40
  for field in ('step', 'params', 'opt_state', 'rng'):
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(getattr(state, field)),
                           jax.device_get(getattr(again.state, field)))


@pytest.mark.parametrize('grad_accum_steps', [1, 2])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, grad_accum_steps):
  full, _, _, _ = _train(tmp_path / 'full', 20, grad_accum_steps=grad_accum_steps)
  _, _, _, info = _train(tmp_path / 'split', 20, stop_at=12, grad_accum_steps=grad_accum_steps)
  assert info['end_step'] == 12
  resumed, _, setup, info = _train(tmp_path / 'split', 20, grad_accum_steps=grad_accum_steps)
  assert setup.resumed_from == 12 and info['start_step'] == 12
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(full.params), jax.device_get(resumed.params))


def _poisoned(workdir):
  """A toy run's set-up and a step whose loss is NaN after step 7."""
  config = toy.toy_config()
  data = toy.toy_dataset(config.batch_size)
  model = toy.ToyRegressionModel(config, data.meta_data)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(data.meta_data),
                         num_train_steps=30, workdir=str(workdir), rng=jax.random.PRNGKey(0),
                         train_iter=data.train_iter)

  def poisoned(state, batch):
    state, metrics = setup.train_step(state, batch)
    if int(state.step) > 7:
      metrics = dict(metrics, loss=metrics['loss'] * np.nan)
    return state, metrics

  return data, setup, poisoned


def test_divergence_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  data, setup, poisoned = _poisoned(tmp_path)
  with pytest.raises(loop.DivergenceError, match='diverged at step 10'):
    loop.train_loop(state=setup.state, train_step=poisoned, train_iter=data.train_iter, mesh=setup.mesh,
                    num_train_steps=30, writer=metric_writers.LoggingWriter(), checkpointer=setup.checkpointer,
                    checkpoint_every=5, log_every=5)
  assert setup.checkpointer.latest_step() == 5


def test_divergence_before_the_first_checkpoint_says_one_thing_about_the_rerun(tmp_path):
  # Issue 28, finding 4: with no checkpoint on disk the message said "a rerun starts from the beginning" and then
  # "rerun ...: it resumes from that checkpoint".
  data, setup, _ = _poisoned(tmp_path)

  def poisoned_at_once(state, batch):
    state, metrics = setup.train_step(state, batch)
    return state, dict(metrics, loss=metrics['loss'] * np.nan)

  with pytest.raises(loop.DivergenceError) as raised:
    loop.train_loop(state=setup.state, train_step=poisoned_at_once, train_iter=data.train_iter, mesh=setup.mesh,
                    num_train_steps=30, writer=metric_writers.LoggingWriter(), checkpointer=setup.checkpointer,
                    checkpoint_every=5, log_every=1)
  message = str(raised.value)
  assert 'No checkpoint is on disk yet' in message and 'it starts from the beginning' in message
  assert 'resume' not in message, message
  assert setup.checkpointer.latest_step() is None


def test_divergence_is_found_before_an_evaluator_sees_the_weights(tmp_path):
  # Evaluators may save the parameters they score (the glue evaluator's best/): the steps up to an evaluation are
  # checked first, even between two log steps.
  data, setup, poisoned = _poisoned(tmp_path)

  class Saving(Evaluator):
    def run(self, state, step):
      self.seen.append(step)
      return ()

  saving = Saving('saving', {'every': 4}, None)
  saving.seen = []
  with pytest.raises(loop.DivergenceError, match='diverged at step 8'):
    loop.train_loop(state=setup.state, train_step=poisoned, train_iter=data.train_iter, mesh=setup.mesh,
                    num_train_steps=30, writer=metric_writers.LoggingWriter(), checkpointer=setup.checkpointer,
                    checkpoint_every=5, log_every=100, evaluators=[saving])
  assert saving.seen == [4]  # never step 8
  assert setup.checkpointer.latest_step() == 5


class _RecordingWriter(metric_writers.LoggingWriter):
  def __init__(self):
    super().__init__()
    self.scalars = {}

  def write_scalars(self, step, scalars):
    self.scalars.update({(step, k): v for k, v in scalars.items()})


@registry.EVALUATORS.register('toy_mse')
class _MseEvaluator(Evaluator):
  """Mean squared error of the toy model on a fixed batch; records the steps it ran at."""

  def __init__(self, name, config, context):
    super().__init__(name, config, context)
    self.steps, self.batch = [], toy.toy_dataset(16, seed=1).train_iter.__next__()

  def run(self, state, step):
    self.steps.append(step)
    out = self.context.model.forward(state.params, self.batch, train=False)
    yield 'mse', float(np.mean((np.asarray(out) - self.batch['y']) ** 2))
    yield 'not_finite', float('nan')  # never written

  def summary(self):
    return {'steps': self.steps}


def _evaluated_run(workdir, num_steps, evals):
  config = toy.toy_config()
  data = toy.toy_dataset(config.batch_size)
  model = toy.ToyRegressionModel(config, data.meta_data)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(data.meta_data),
                         num_train_steps=num_steps, workdir=str(workdir), rng=jax.random.PRNGKey(0),
                         train_iter=data.train_iter)
  results = RunResults(str(workdir / 'results.json'))
  context = EvalContext(config=config, model=model, dataset=data, mesh=setup.mesh,
                        params_shardings=setup.state_shardings.params, workdir=str(workdir), results=results)
  evaluators = build_evaluators(ml_collections.ConfigDict(evals), context)
  writer = _RecordingWriter()
  _, info = loop.train_loop(state=setup.state, train_step=setup.train_step, train_iter=data.train_iter,
                            mesh=setup.mesh, num_train_steps=num_steps, writer=writer,
                            checkpointer=setup.checkpointer, checkpoint_every=100, log_every=5,
                            evaluators=evaluators, results=results)
  setup.checkpointer.close()
  return evaluators, writer.scalars, info


def test_evaluators_from_config_run_on_their_cadence_and_at_the_end(tmp_path):
  evaluators, scalars, info = _evaluated_run(tmp_path, 40, {
      'often': {'type': 'toy_mse', 'every': 15}, 'toy_mse': {}, 'off': None})
  assert [ev.name for ev in evaluators] == ['often', 'toy_mse']
  assert evaluators[0].steps == [15, 30, 40] and evaluators[1].steps == [40]
  assert scalars[(40, 'often/mse')] < scalars[(15, 'often/mse')]  # the loss falls: so does the evaluation
  assert not any(k.endswith('not_finite') for _, k in scalars)
  assert info['last_eval']['toy_mse']['mse'] == scalars[(40, 'toy_mse/mse')]
  written = json.load(open(tmp_path / 'results.json'))
  assert written == {'often': {'steps': [15, 30, 40]}, 'toy_mse': {'steps': [40]}}
  assert json.load(open(tmp_path / 'config.json'))['model']['hidden'] == 16  # written by setup
  with pytest.raises(ValueError, match='every=-1'):
    _evaluated_run(tmp_path / 'bad', 4, {'toy_mse': {'every': -1}})


def test_zero_steps_is_an_evaluation_of_the_initial_weights(tmp_path):
  evaluators, scalars, info = _evaluated_run(tmp_path, 0, {'toy_mse': {'every': 5}})
  assert evaluators[0].steps == [0] and (0, 'toy_mse/mse') in scalars
  assert info['end_step'] == 0 and not info['preempted']


def test_a_progress_line_comes_every_log_every_s_whatever_log_every_says(tmp_path, monkeypatch):
  config = toy.toy_config()
  data = toy.toy_dataset(config.batch_size)
  model = toy.ToyRegressionModel(config, data.meta_data)
  lines, written = {}, {}
  real_line = loop.progress_line
  for floor in (None, 0.05):
    shown = []
    monkeypatch.setattr(loop, 'progress_line', lambda step, *a, **k: shown.append(step) or real_line(step, *a, **k))
    setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(data.meta_data),
                           num_train_steps=12, workdir=str(tmp_path / str(floor)), rng=jax.random.PRNGKey(0))

    def slow(state, batch, step_fn=setup.train_step):  # >= 30 ms a step: a 50 ms floor is passed every 2nd step
      time.sleep(0.03)
      return step_fn(state, batch)

    writer = _RecordingWriter()
    loop.train_loop(state=setup.state, train_step=slow, train_iter=data.train_iter, mesh=setup.mesh,
                    num_train_steps=12, writer=writer, log_every=1000, log_every_s=floor)
    setup.checkpointer.close()
    lines[floor] = shown
    written[floor] = sorted({step for step, k in writer.scalars if k == 'train/loss'})
  assert lines[None] == [12]  # log_every alone: only the last step
  assert len(lines[0.05]) >= 4 and lines[0.05][-1] == 12, lines
  # The time floor adds progress lines, not metrics: what is written does not depend on how fast steps run.
  assert written[None] == written[0.05] == [12]
