"""`bert_trainer`: the one BERT trainer, for pretraining, GLUE fine-tuning and runs that only evaluate.

What a run does is config: the model (`model_name`), the data (`dataset_name`), the evaluators (`config.evals`,
`projects/bert/evaluators/`), the number of steps, and where the weights come from (`checkpoints/weights.py`):

  pretraining        bert_pretraining on bert_pretraining records; evals mlm_nsp (+ fewshot)  configs/pretrain.py
  GLUE fine-tuning   bert_classification / bert_regression on bert_glue; evals glue (+ glue_predict)  configs/glue.py
  SQuAD fine-tuning  bert_question_answering on bert_squad; evals squad + squad_predict  configs/squad.py
  few-shot probes    bert_encoder, no dataset, num_train_steps 0; evals fewshot  configs/fewshot.py

`config.mode`:
  train    (the default) train from the workdir's latest checkpoint, else init_from, else random, for
           num_train_steps (0 and config.num_epochs set: ceil(num_epochs * train examples / batch_size)); the
           evaluators run on their cadence and after the last step, and a run of 0 steps evaluates once. A schedule
           too short to train (`core.optimizers.degenerate_schedule`) is warned about before the first step, with
           the fields to change. The run's facts and every evaluator's summary go to workdir/results.json.
  eval     no training: the evaluators of config.evals, except the prediction writers, run once on the workdir's
           best/ (else its latest checkpoint, else init_from). Results: workdir/eval_results.json.
  predict  the same, with only the prediction writers (GLUE: glue_predict, with its defaults when config.evals has
           none; SQuAD: squad_predict). Results: workdir/predict_results.json and the files (workdir/predictions/).
Through main.py, eval and predict use the training run's config.json (`core.app`) and leave it as it is.

results.json / {mode}_results.json: {'mode', 'step', 'num_train_steps', 'init_from', 'weights' ({'source', 'path',
'step'}: where the scored weights came from), 'resumed_from', 'preempted', 'done', 'wall_time_s', and one section
per evaluator, named as in config.evals}.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, Optional

import jax
import ml_collections
from absl import logging

from core import errors, loop, optimizers, registry
from core import sharding as sharding_lib
from core.dataset import Dataset, DatasetMetaData
from core.evaluators import EvalContext, RunResults, build_evaluators, finalize_evaluators, run_evaluators
from core.setup import example_batch_from_meta, setup_training
from core.state import TrainState
from projects.bert.models import bert_models as models
from projects.bert.checkpoints import weights

MODES = ('train', 'eval', 'predict')
# The top of the BERT paper's fine-tuning range (5e-5, 3e-5, 2e-5): what a short fine-tuning run is advised.
SHORT_RUN_BASE_LR = 5e-5
RESULTS_FILE = weights.RESULTS_FILE  # a training run's; eval and predict write '{mode}_results.json' beside it


def run_mode(config: ml_collections.ConfigDict) -> str:
  """'train', 'eval' or 'predict', from `config.mode` (absent: 'train')."""
  mode = config.get('mode') or 'train'
  if mode not in MODES:
    raise errors.ConfigError(f'config.mode={mode!r}; use one of {MODES}.')
  return mode


def num_train_steps(config: ml_collections.ConfigDict, meta: DatasetMetaData) -> int:
  """`config.num_train_steps` when positive; else, with `config.num_epochs`, ceil(num_epochs * train examples /
  batch size); else 0 (a run that only evaluates)."""
  steps = int(config.get('num_train_steps') or 0)
  if steps > 0 or not config.get('num_epochs'):
    return max(steps, 0)
  if not meta.num_train_examples:
    raise errors.ConfigError('config.num_epochs is set but the dataset does not know its number of train examples: set '
                             'config.num_train_steps instead.')
  return max(1, math.ceil(float(config.num_epochs) * int(meta.num_train_examples) / int(config.batch_size)))


@registry.TRAINERS.register('bert_trainer')
def train(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Optional[Dataset],
          workdir: str, writer: Any) -> Dict[str, Any]:
  """Trains and/or evaluates as `config.mode` says (see the module docstring); returns what the results file holds."""
  t0 = time.time()
  mode = run_mode(config)
  config = weights.resolve_model_config(config)
  meta = dataset.meta_data if dataset is not None else models.encoder_meta_data()
  model = model_cls(config, meta)
  if mode == 'train':
    results = _train(rng, config, model, dataset, workdir, writer)
  else:
    results = _evaluate(rng, config, model, dataset, workdir, writer, mode)
  results.update(wall_time_s=time.time() - t0)
  return results.data


# core.app completes the config with it before building the dataset (the records' token ids are checked against the
# vocabulary of the weights at init_from); `train` does too, for callers that do not go through core.app.
train.resolve_config = weights.resolve_model_config


def _tokens_per_step(config: ml_collections.ConfigDict, batch_size: Optional[int], max_seq_length: Optional[int]
                     ) -> Any:
  """What `train/tokens_per_sec` counts: the token positions each step computes (padding included, as throughput
  figures count them). Length-grouped batches (`dataset.train_length_buckets`) are as wide as their bucket, so
  those are counted per batch (every process's batch has the same shape), not as batch_size * max_seq_length."""
  if not (batch_size and max_seq_length):
    return None
  if (config.get('dataset') or {}).get('train_length_buckets'):
    processes = jax.process_count()
    return lambda host_batch: int(host_batch['input_ids'].size) * processes
  return batch_size * max_seq_length


def _train(rng: jax.Array, config: ml_collections.ConfigDict, model: Any, dataset: Optional[Dataset], workdir: str,
           writer: Any) -> RunResults:
  meta = model.dataset_meta_data
  steps = num_train_steps(config, meta)
  degenerate = optimizers.degenerate_schedule(config, steps, meta.num_train_examples,
                                              advised_base_lr=SHORT_RUN_BASE_LR if config.get('num_epochs') else None)
  if degenerate:
    logging.warning('%s', degenerate)
  train_iter = dataset.train_iter if dataset is not None else None
  loader = weights.init_from_loader(config)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(meta),
                         num_train_steps=steps, workdir=workdir, rng=rng, train_iter=train_iter,
                         load_pretrained=loader)
  if setup.resumed_from is not None:
    source = {'source': 'checkpoint', 'path': str(setup.checkpointer.directory), 'step': setup.resumed_from}
  elif loader is not None:
    source = loader.info
  else:
    source = {'source': 'random', 'path': '', 'step': None}
  results = RunResults(os.path.join(workdir, RESULTS_FILE), resume=setup.resumed_from is not None)
  results.update(mode='train', num_train_steps=steps, init_from=config.get('init_from') or '', weights=source,
                 resumed_from=setup.resumed_from, done=False)
  context = EvalContext(config=config, model=model, dataset=dataset, mesh=setup.mesh,
                        params_shardings=setup.state_shardings.params, workdir=workdir, mode='train',
                        results=results, weights=source, resumed_from=setup.resumed_from)
  evaluators = build_evaluators(config.get('evals'), context)
  batch_size = config.get('batch_size')
  state = setup.state
  if steps == 0 and setup.resumed_from is None and source.get('step'):
    # A run that only evaluates saved weights (e.g. few-shot probes of a pretraining checkpoint) writes its scalars
    # at the weights' training step, as eval mode does: probes of successive checkpoints draw curves over steps.
    state = state.replace(step=jax.numpy.asarray(int(source['step']), state.step.dtype))
  state, info = loop.train_loop(
      state=state, train_step=setup.train_step, train_iter=train_iter, mesh=setup.mesh,
      num_train_steps=steps, writer=writer, checkpointer=setup.checkpointer,
      checkpoint_every=config.get('checkpoint_every', 1000), log_every=config.get('log_every', 100),
      evaluators=evaluators, results=results, examples_per_step=batch_size,
      tokens_per_step=_tokens_per_step(config, batch_size, meta.max_seq_length))
  setup.checkpointer.close()
  step = info['end_step']
  if not info['preempted']:
    finalize_evaluators(evaluators, state, step, results)
  results.update(step=step, preempted=info['preempted'], done=not info['preempted'])
  logging.info('Training %s at step %d of %d. %s Results in %s.',
               'stopped (preempted: rerun the same command to resume)' if info['preempted'] else 'done', step, steps,
               evaluated(evaluators), results.path)
  return results


def evaluated(evaluators: Any) -> str:
  """What the run evaluated, for its last line: each evaluator with its top-level numbers (or its `final` ones),
  or that nothing was."""
  if not evaluators:
    return 'Nothing was evaluated (config.evals has no evaluator).'
  parts, idle = [], []
  for ev in evaluators:
    summary = ev.summary()
    if not summary:
      idle.append(ev.name)
      continue
    numbers = summary.get('final') if isinstance(summary.get('final'), dict) else summary
    shown = [f'{k} {v:.4g}' for k, v in numbers.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k != 'step'][:6]
    described = ev.last_line()  # the evaluator's own words, where it has them
    if described:
      shown = [f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in described.items()][:6]
    parts.append(f'{ev.name}' + (f' ({", ".join(shown)})' if shown else ''))
  idle_text = f'{", ".join(idle)} had no data (see its line above)'
  if not parts:
    return f'Nothing was evaluated: {idle_text}.'
  return f'Evaluated: {"; ".join(parts)}.' + (f' Not evaluated: {idle_text}.' if idle else '')


def _evaluate(rng: jax.Array, config: ml_collections.ConfigDict, model: Any, dataset: Optional[Dataset],
              workdir: str, writer: Any, mode: str) -> RunResults:
  mesh = sharding_lib.create_mesh()
  params, shardings, source = weights.load_for_evaluation(model, config, workdir, mesh, rng,
                                                          example_batch_from_meta(model.dataset_meta_data))
  results = RunResults(os.path.join(workdir, f'{mode}_results.json'))
  step = int(source.get('step') or 0)
  results.update(mode=mode, step=step, init_from=config.get('init_from') or '', weights=source)
  context = EvalContext(config=config, model=model, dataset=dataset, mesh=mesh, params_shardings=shardings,
                        workdir=workdir, mode=mode, results=results, weights=source)
  predicting = mode == 'predict'
  evals = dict(config.get('evals') or {})
  writers = [n for n, e in evals.items() if e is not None and registry.EVALUATORS.get(e.get('type') or n)
             .writes_predictions]
  if predicting and not writers and dataset is not None and dataset.test_iter is not None:
    # The dataset's own writer (bert_superglue names superglue_predict), else the GLUE submission files.
    evals[dataset.meta_data.extra.get('prediction_writer') or 'glue_predict'] = ml_collections.ConfigDict()
  evaluators = build_evaluators(evals, context, select=lambda cls: cls.writes_predictions == predicting)
  if not evaluators:
    raise errors.ConfigError(f'mode={mode}: config.evals ({sorted(evals)}) has no evaluator that '
                             f'{"writes predictions" if predicting else "scores"} for this run.')
  state = TrainState(step=step, params=params, opt_state=None, rng=None)
  run_evaluators(evaluators, state, step, writer, last=True, results=results, prefix=f'{mode}/')
  finalize_evaluators(evaluators, state, step, results)
  results.update(done=True)
  logging.info('mode=%s of %s (%s, step %s) done; results in %s.', mode, source['path'], source['source'], step,
               results.path)
  return results
