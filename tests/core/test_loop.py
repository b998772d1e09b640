"""The core loop on 8 fake CPU devices: the loss falls, checkpoints restore exactly, resume equals no stop."""

import jax
import numpy as np
import pytest
from clu import metric_writers

from core import loop
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

  def record(state, step):
    del state, step
    return {}

  state, info = loop.train_loop(state=setup.state, train_step=_recording(setup.train_step, losses),
                                train_iter=data.train_iter, mesh=setup.mesh, num_train_steps=stop_at or num_steps,
                                writer=writer, checkpointer=setup.checkpointer, checkpoint_every=5, log_every=5,
                                evaluators=[('noop', 0, record)])
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


def test_divergence_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  config = toy.toy_config()
  data = toy.toy_dataset(config.batch_size)
  model = toy.ToyRegressionModel(config, data.meta_data)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(data.meta_data),
                         num_train_steps=30, workdir=str(tmp_path), rng=jax.random.PRNGKey(0),
                         train_iter=data.train_iter)

  def poisoned(state, batch):
    state, metrics = setup.train_step(state, batch)
    if int(state.step) > 7:
      metrics = dict(metrics, loss=metrics['loss'] * np.nan)
    return state, metrics

  with pytest.raises(loop.DivergenceError, match='diverged at step 10'):
    loop.train_loop(state=setup.state, train_step=poisoned, train_iter=data.train_iter, mesh=setup.mesh,
                    num_train_steps=30, writer=metric_writers.LoggingWriter(), checkpointer=setup.checkpointer,
                    checkpoint_every=5, log_every=5)
  assert setup.checkpointer.latest_step() == 5
