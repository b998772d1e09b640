"""GLUE fine-tuning on the shared core loop: `bert_glue_trainer`.

Three modes (`config.mode`; `config.eval_only=True` is the same as mode 'eval'):
  train    fine-tune from `config.init_from` (a converted checkpoint or a pretraining workdir; the task head is
           always fresh) or resume from `workdir/checkpoints`; evaluate every `config.eval_every` steps and at the
           end on every eval split with the task's GLUE metrics; keep the parameters of the best evaluation by the
           task's main metric in `workdir/best/`; write `workdir/results.json` after every evaluation.
  eval     no training: evaluate saved parameters and record the metrics in results.json under 'evaluation'.
  predict  no training: write the GLUE submission files of the test splits into `workdir/predictions/`.
`config.predict=True` adds the submission files to a train run (from the best parameters) or an eval run.

Where eval/predict take parameters from, first match wins: `workdir/best/`, the latest train checkpoint in
`workdir/checkpoints/`, then `config.init_from` (a fine-tuned params directory or workdir). This is the order
`core.setup` uses (the run's own weights before pretrained ones), so rerunning a training command with
`--config.eval_only` evaluates what that run trained rather than its starting point.

results.json: {'task', 'main_metric', 'history': [{'step', metrics...}], 'best': {'step', 'value', 'metrics'},
'final': metrics of the last evaluation, 'num_train_steps', ...}; metric names are '{eval split}/{metric}', e.g.
'validation/f1' or, for MNLI, 'matched/accuracy' and 'mismatched/accuracy'.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from flax import traverse_util

from core import errors, evaluation, loop, params_io, registry
from core import sharding as sharding_lib
from core.dataset import Dataset
from core.model import BaseModel
from core.setup import example_batch_from_meta, setup_training
from core.train_step import make_predict_step
from projects.bert import glue_metrics
from projects.bert.datasets import glue_tasks
from projects.bert.trainers import common

MODES = ('train', 'eval', 'predict')
RESULTS_FILE = 'results.json'
BEST_DIR = 'best'
PREDICTIONS_DIR = 'predictions'
# GLUE's STS-B scores are similarities in [0, 5]; the server expects predictions in that range.
STSB_RANGE = (0.0, 5.0)


def run_mode(config: ml_collections.ConfigDict) -> str:
  """'train', 'eval' or 'predict' from `config.mode` and `config.eval_only`."""
  mode = config.get('mode') or 'train'
  if config.get('eval_only') and mode == 'train':
    mode = 'eval'
  if mode not in MODES:
    raise ValueError(f'config.mode={mode!r}; use one of {MODES}.')
  return mode


def task_of(config: ml_collections.ConfigDict, meta_data: Mapping[str, Any]) -> glue_tasks.GlueTask:
  """The GLUE task, from the dataset's meta data or else `config.dataset.task`."""
  name = meta_data.get('task') or meta_data.get('task_name') or config.get('dataset', {}).get('task')
  if not name:
    raise ValueError('Which GLUE task? Set config.dataset.task (configs/glue.py does, from the variant).')
  return glue_tasks.get_task(name)


def num_train_steps(config: ml_collections.ConfigDict, meta_data: Mapping[str, Any]) -> int:
  """`config.num_train_steps` when positive, else ceil(num_epochs * train examples / batch size)."""
  if config.get('num_train_steps', 0) and config.num_train_steps > 0:
    return int(config.num_train_steps)
  size = meta_data.get('train_size') or meta_data.get('num_train_examples')
  if not size:
    raise ValueError('The dataset meta data has no train_size: set config.num_train_steps explicitly.')
  return max(1, math.ceil(float(config.num_epochs) * int(size) / int(config.batch_size)))


def eval_splits(task: glue_tasks.GlueTask, meta_data: Mapping[str, Any]) -> List[str]:
  return list(meta_data.get('eval_splits') or task.eval_splits)


def test_splits(task: glue_tasks.GlueTask, meta_data: Mapping[str, Any]) -> List[str]:
  return list(meta_data.get('test_splits') or task.test_splits)


# --------------------------------------------------------------------------------------------------- evaluation


def _eval_loss(task: glue_tasks.GlueTask, outputs: np.ndarray, labels: np.ndarray) -> float:
  """Mean cross-entropy (classification, outputs = logits [N, C]) or squared error (regression) on the host."""
  if len(labels) == 0:
    return 0.0
  if task.is_regression:
    return float(np.mean((outputs.reshape(-1) - labels.astype(np.float64)) ** 2))
  logits = outputs.astype(np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return float(-np.mean(log_probs[np.arange(len(labels)), labels.astype(np.int64)]))


def evaluate_splits(predict_step: Any, params: Any, dataset: Dataset, mesh: Any, task: glue_tasks.GlueTask,
                    splits: List[str]) -> Dict[str, float]:
  """GLUE metrics of `params` on whole eval splits: {'{split}/{metric}': value}, including '{split}/loss'."""
  results: Dict[str, float] = {}
  for split in splits:
    gathered = evaluation.gather_predictions(predict_step, params, dataset.valid_iter(split), mesh,
                                             keep=('label_ids',))
    outputs, labels = np.asarray(gathered['outputs']), np.asarray(gathered.get('label_ids', np.zeros((0,))))
    metrics = glue_metrics.compute_metrics(task.name, outputs, labels)
    metrics['loss'] = _eval_loss(task, outputs, labels)
    results.update({f'{split}/{k}': v for k, v in metrics.items()})
  return results


def prediction_rows(task: glue_tasks.GlueTask, outputs: np.ndarray, example_ids: Optional[np.ndarray]
                    ) -> List[Tuple[int, str]]:
  """(index, prediction) rows of a GLUE submission file, sorted by index.

  Classification predictions are label names (task.labels, e.g. 'not_entailment' or '1'); STS-B predictions are
  scores clipped to [0, 5]. Without example ids the index is the row number.
  """
  outputs = np.asarray(outputs)
  ids = None if example_ids is None else np.asarray(example_ids).astype(np.int64)
  if ids is None or (len(ids) and np.all(ids < 0)):  # records without example_id (the builder fills -1)
    if jax.process_count() > 1:
      logging.warning('The test records carry no example_id: with %d processes the rows are not in file order, so '
                      'the submission indices are wrong. Re-create the records with `prepare glue`.',
                      jax.process_count())
    ids = np.arange(len(outputs))
  if task.is_regression:
    values = [f'{v:.6f}' for v in np.clip(outputs.reshape(-1), *STSB_RANGE)]
  else:
    values = [task.labels[i] for i in glue_metrics.predictions_from_outputs(task.name, outputs)]
  return sorted(zip(ids.tolist(), values))


def write_predictions(predict_step: Any, params: Any, dataset: Dataset, mesh: Any, task: glue_tasks.GlueTask,
                      splits: List[str], out_dir: str) -> Dict[str, str]:
  """Writes one GLUE submission TSV (`index<TAB>prediction`) per test split; returns {split: path}."""
  if dataset.test_iter is None:
    raise ValueError('The dataset has no test split: prepare the GLUE test files (test.tsv) first.')
  paths = {}
  for split in splits:
    gathered = evaluation.gather_predictions(predict_step, params, dataset.test_iter(split), mesh,
                                             keep=('example_id',))
    rows = prediction_rows(task, gathered['outputs'], gathered.get('example_id'))
    path = os.path.join(out_dir, task.submission_files[split])
    if jax.process_index() == 0:
      os.makedirs(out_dir, exist_ok=True)
      with open(path + '.tmp', 'w') as f:
        f.write('index\tprediction\n')
        f.writelines(f'{i}\t{p}\n' for i, p in rows)
      os.replace(path + '.tmp', path)
    paths[split] = path
    logging.info('Wrote %d %s predictions of split %s to %s.', len(rows), task.name, split, path)
  return paths


# ------------------------------------------------------------------------------------------------ best params


def _host_params(params: Any) -> Any:
  """Parameters as host numpy arrays on every process (gathered when they are sharded over hosts)."""
  if jax.process_count() == 1:
    return jax.device_get(params)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(params, tiled=True)


class BestParams:
  """The parameters of the best evaluation so far (higher `metric` is better), kept in `directory`.

  Its metadata.json ({'step', 'metric', 'value', 'task', 'metrics'}) lets a resumed run continue the comparison.
  """

  def __init__(self, directory: str, metric: str, task: str):
    self.directory, self.metric, self.task = directory, metric, task
    self.step: Optional[int] = None
    self.value = -math.inf
    self.metrics: Dict[str, float] = {}
    if params_io.has_params(directory):
      meta = params_io.load_params_metadata(directory)
      if meta.get('metric') == metric:
        self.step, self.value, self.metrics = meta['step'], float(meta['value']), meta.get('metrics', {})

  def update(self, step: int, metrics: Mapping[str, float], params: Any) -> bool:
    """Saves `params` when `metrics[self.metric]` beats the best so far (ties keep the earlier step)."""
    value = float(metrics[self.metric])
    if not value > self.value:
      return False
    self.step, self.value, self.metrics = step, value, dict(metrics)
    params_io.save_params(self.directory, _host_params(params), self.as_dict())
    logging.info('New best %s = %.4f at step %d: parameters saved to %s.', self.metric, value, step, self.directory)
    return True

  def as_dict(self) -> Dict[str, Any]:
    return {'step': self.step, 'metric': self.metric, 'value': self.value if self.step is not None else None,
            'task': self.task, 'metrics': self.metrics, 'directory': self.directory}


def _read_json(path: str) -> Dict[str, Any]:
  """The JSON object at `path`, or {} when there is no such file."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


# ------------------------------------------------------------------------------------------------------ modes


@registry.TRAINERS.register('bert_glue_trainer')
def train(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Dataset, workdir: str,
          writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  """Fine-tunes, evaluates or predicts a GLUE task (see the module docstring); returns what results.json holds."""
  meta = dataset.meta_data
  task = task_of(config, meta)
  model = model_cls(config, meta)
  mode = run_mode(config)
  if mode == 'train':
    return _fine_tune(rng, config, model, dataset, task, workdir, writer)
  return _evaluate_saved(rng, config, model, dataset, task, workdir, writer, predict_only=mode == 'predict')


def _fine_tune(rng: jax.Array, config: ml_collections.ConfigDict, model: BaseModel, dataset: Dataset,
               task: glue_tasks.GlueTask, workdir: str, writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  t0 = time.time()
  meta = dataset.meta_data
  steps = num_train_steps(config, meta)
  if not config.get('init_from'):
    logging.warning('config.init_from is empty: fine-tuning %s from RANDOM weights (expect near-chance scores). '
                    'Point it at a converted checkpoint or a pretraining workdir.', task.name)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(meta),
                         num_train_steps=steps, workdir=workdir, rng=rng, train_iter=dataset.train_iter,
                         load_pretrained=common.pretrained_loader(config))
  predict_step = make_predict_step(model, setup.state_shardings.params, setup.mesh)
  splits = eval_splits(task, meta)
  main_key = glue_metrics.main_metric_key(task.name, splits)
  best = BestParams(os.path.join(workdir, BEST_DIR), main_key, task.name)
  # A resumed run extends the history it wrote before (evaluations up to the restored step).
  previous = _read_json(os.path.join(workdir, RESULTS_FILE))
  previous = previous if previous.get('task') == task.name else {}
  start = setup.resumed_from or 0
  history: List[Dict[str, float]] = [h for h in previous.get('history', []) if h.get('step', 0) <= start]
  base = {'task': task.name, 'main_metric': main_key, 'num_train_steps': steps, 'init_from': config.get('init_from'),
          'resumed_from': setup.resumed_from, 'eval_splits': splits}

  def evaluate(state: Any, step: int) -> Dict[str, float]:
    metrics = evaluate_splits(predict_step, state.params, dataset, setup.mesh, task, splits)
    best.update(step, metrics, state.params)
    history.append({'step': step, **metrics})
    common.write_json(workdir, RESULTS_FILE, {**base, 'history': history, 'best': best.as_dict(),
                                              'final': metrics, 'done': False})
    logging.info('%s eval at step %d: %s (best %s = %.4f at step %s)', task.name, step,
                 {k: round(v, 4) for k, v in metrics.items()}, main_key, best.value, best.step)
    return {**metrics, f'best/{main_key}': best.value}

  state, info = loop.train_loop(
      state=setup.state, train_step=setup.train_step, train_iter=dataset.train_iter, mesh=setup.mesh,
      num_train_steps=steps, writer=writer, checkpointer=setup.checkpointer,
      checkpoint_every=config.get('checkpoint_every', 1000), log_every=config.get('log_every', 100),
      evaluators=[('eval', config.get('eval_every', 0), evaluate)], examples_per_step=config.batch_size,
      tokens_per_step=config.batch_size * meta.get('max_seq_length', 0) or None)
  setup.checkpointer.close()
  results = {**base, 'history': history, 'best': best.as_dict(),
             'final': {k: v for k, v in history[-1].items() if k != 'step'} if history else {},
             'step': info.get('end_step', int(jax.device_get(state.step))), 'preempted': info['preempted'],
             'done': not info['preempted'], 'wall_time_s': time.time() - t0}
  if config.get('predict') and not info['preempted']:
    params = state.params
    if best.step is not None:  # submit the selected parameters, not the last ones
      params = jax.device_put(params_io.load_params(best.directory)[0], setup.state_shardings.params)
    results['predictions'] = write_predictions(predict_step, params, dataset, setup.mesh, task,
                                               test_splits(task, meta), os.path.join(workdir, PREDICTIONS_DIR))
  common.write_json(workdir, RESULTS_FILE, results)
  logging.info('Fine-tuning %s %s at step %d: best %s = %s at step %s; final %s', task.name,
               'stopped (preempted)' if info['preempted'] else 'done', results['step'], main_key, best.value,
               best.step, results['final'])
  return results


def _load_params_into(model: BaseModel, mesh: Any, config: ml_collections.ConfigDict, source: Mapping[str, Any],
                      rng: jax.Array, source_name: str = 'checkpoint') -> Tuple[Any, Any]:
  """`source` merged into fresh parameters of `model` and placed on the mesh; returns (params, shardings)."""
  example = example_batch_from_meta(model.dataset_meta_data)
  abstract = jax.eval_shape(model.init_params, rng, example)
  names = lambda tree: set(traverse_util.flatten_dict(dict(tree), sep='/'))  # noqa: E731
  if names(abstract) <= names(source):  # a complete (fine-tuned) checkpoint: skip compiling the initialiser
    fresh = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  else:
    fresh = jax.device_get(jax.jit(model.init_params)(rng, example))
  merged, report = params_io.merge_params(fresh, source, source_name=source_name)
  heads = [n for n in report['kept_init'] if not n.startswith('bert/')]
  if heads:
    raise errors.ConfigError(
        f'{source_name} has no {", ".join(heads)}: it holds an encoder without this task\'s head (a pretraining run '
        f'or a converted checkpoint), so evaluating or predicting would use a RANDOM head. Fine-tune first '
        f'(mode=train with --config.init_from={source_name}), then evaluate or predict in that run\'s workdir.')
  rules = tuple(tuple(r) for r in config.get('param_sharding_rules', ()))
  shardings = sharding_lib.param_shardings(merged, mesh, rules)
  return jax.device_put(merged, shardings), shardings


def saved_params_path(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Where eval/predict read parameters: workdir/best, workdir's latest checkpoint, else config.init_from.

  When results.json names best parameters, they are the only source: a missing best/, or a best/ of another step
  than results.json says, is an error rather than a silent switch to another source.
  """
  best_dir = os.path.join(workdir, BEST_DIR)
  results_path = os.path.join(workdir, RESULTS_FILE)
  named = (_read_json(results_path).get('best') or {}).get('step')
  if params_io.has_params(best_dir):
    saved = params_io.load_params_metadata(best_dir).get('step')
    if named is not None and saved != named:
      raise errors.DataError(
          f'{best_dir} holds the parameters of step {saved} but {results_path} names step {named} (the run stopped '
          f'between saving them and recording them). Rerun the training command to resume: it brings '
          f'{RESULTS_FILE} up to date; then evaluate or predict.')
    return best_dir
  if named is not None:
    raise errors.MissingFileError(
        f'{results_path} names the best parameters of step {named} in {best_dir}, but {best_dir} is missing. '
        f'Predictions from any other source would not be the ones {RESULTS_FILE} reports. Evaluate another source '
        f'explicitly instead: a new --workdir with --config.init_from={workdir} (its latest checkpoint) or a '
        f'params directory.')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir)):
    return workdir
  if config.get('init_from'):
    return config.init_from
  raise FileNotFoundError(f'Nothing to evaluate: {workdir} has no {BEST_DIR}/ or checkpoints/, and config.init_from '
                          f'is empty. Train first, or set config.init_from to fine-tuned parameters.')


def _evaluate_saved(rng: jax.Array, config: ml_collections.ConfigDict, model: BaseModel, dataset: Dataset,
                    task: glue_tasks.GlueTask, workdir: str, writer: metric_writers.MetricWriter,
                    predict_only: bool) -> Dict[str, Any]:
  meta = dataset.meta_data
  path = saved_params_path(config, workdir)
  source, source_meta = params_io.read_pretrained(path)
  mesh = sharding_lib.create_mesh()
  params, shardings = _load_params_into(model, mesh, config, source, rng, source_name=path)
  predict_step = make_predict_step(model, shardings, mesh)
  step = int(source_meta.get('step') or 0)
  results = _read_json(os.path.join(workdir, RESULTS_FILE))
  results.setdefault('task', task.name)
  if not predict_only:
    splits = eval_splits(task, meta)
    metrics = evaluate_splits(predict_step, params, dataset, mesh, task, splits)
    main_key = glue_metrics.main_metric_key(task.name, splits)
    results['evaluation'] = {'source': path, 'step': step, 'main_metric': main_key, 'metrics': metrics}
    writer.write_scalars(step, {f'eval_only/{k}': v for k, v in metrics.items() if np.isfinite(v)})
    writer.flush()
    logging.info('%s evaluation of %s: %s', task.name, path, metrics)
  if predict_only or config.get('predict'):
    results['predictions'] = write_predictions(predict_step, params, dataset, mesh, task, test_splits(task, meta),
                                               os.path.join(workdir, PREDICTIONS_DIR))
    results['predictions_source'] = path
    results['predictions_step'] = step
  common.write_json(workdir, RESULTS_FILE, results)
  return results
