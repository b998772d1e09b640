"""Few-shot GLUE evaluation of a BERT encoder: `bert_fewshot_evaluator`, and the periodic evaluator that the
pretraining trainer runs with a `config.fewshot` block.

For each GLUE classification task of `config.fewshot.tasks`, each k of `shots` and each of `num_seeds` seeds: k
train examples per class are drawn, a ridge probe is fitted on frozen encoder features of them (regulariser chosen
on the support set) and the task's metric is computed on the whole eval split(s). Every split is embedded once per
checkpoint, in one jitted batched forward, and the features are reused for every k, seed and regulariser.

Outputs of the trainer (workdir): `fewshot_results.json`, `fewshot.png` (metric against shots, a panel per task),
TensorBoard scalars `fewshot/{task}/{k}shot` (mean over seeds), and a table in the log. Results are keyed by task
for its main eval split and by `{task}_{split}` for the others (MNLI: 'mnli' = matched, 'mnli_mismatched').

Where the encoder comes from: `config.init_from` (a converted checkpoint or a run's workdir; its 'bert' subtree),
else random initialisation. `config.model` None takes the architecture from the checkpoint (the converter's
metadata, or the run's config.json).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from jax.sharding import Mesh

from core import params_io, registry
from core import sharding as sharding_lib
from core.dataset import NumpyBatch
from projects.bert import fewshot, glue_metrics
from projects.bert.datasets import glue as glue_dataset
from projects.bert.datasets import glue_tasks, records
from projects.bert.trainers import common

RESULTS_FILE = 'fewshot_results.json'
PLOT_FILE = 'fewshot.png'


# ---------------------------------------------------------------------------------------------------------------
# Inputs: each task's token batches, read once.


@dataclasses.dataclass
class TaskInputs:
  """One task's host-local batches (with batch_mask), read once and kept: the train pool and each eval split."""

  task: str
  num_classes: int
  main_split: str
  train_batches: List[NumpyBatch]
  eval_batches: Dict[str, List[NumpyBatch]]
  train_size: int  # real examples among train_batches (the pool)
  eval_sizes: Dict[str, int]


def task_dataset_config(fs: ml_collections.ConfigDict, task: str) -> ml_collections.ConfigDict:
  """The `bert_glue` config of one task of a few-shot block: its `dataset` fields (data_dir may hold '{task}'),
  and the embedding batch as both batch sizes (the builder's shuffled train iterator is never read)."""
  fields = fs.get('dataset') or {}
  fields = dict(fields.to_dict() if hasattr(fields, 'to_dict') else fields)
  fields = {k: (v.format(task=task) if isinstance(v, str) else v) for k, v in fields.items()}
  fields.update(task=task, shuffle_buffer=1)
  return ml_collections.ConfigDict({'batch_size': int(fs.batch_size), 'eval_batch_size': int(fs.batch_size),
                                    'dataset': fields})


def _train_split_in_order(meta: Mapping[str, Any], host_batch: int, num_examples: int) -> List[NumpyBatch]:
  """The first `num_examples` train records, once, in file order, padded like an eval split.

  `bert_glue` only offers the repeated, shuffled train iterator, so this reads the train file with the builder's
  own record spec and eval pipeline.
  """
  path = meta['files']['train']
  index, count = records.process_info(None, None)
  ds = records.eval_dataset([path], compression=records.compression_of(path),
                            parse=records.make_batch_parser(glue_dataset.record_spec(meta['max_seq_length'], False)),
                            host_batch=host_batch, num_examples=num_examples, process_index=index,
                            process_count=count, pad_values={'example_id': -1}, mask_from='is_real_example')
  return list(records.numpy_batches(ds, [path]))


def load_task_inputs(fs: ml_collections.ConfigDict, task_name: str) -> TaskInputs:
  """Reads the train pool (the first `fs.train_pool_size` train records; 0 = all) and the eval splits (the first
  `fs.eval_size` examples of each; 0 = all) of one GLUE classification task into host memory."""
  task = glue_tasks.get_task(task_name)
  if task.is_regression:
    raise ValueError(f'Few-shot evaluation samples k examples per class; {task.name} is a regression task. Use the '
                     f'classification tasks: {", ".join(t for t, g in glue_tasks.GLUE_TASKS.items() if g.labels)}.')
  dataset = registry.DATASETS.get('bert_glue')(task_dataset_config(fs, task.name))
  meta = dataset.meta_data
  global_batch = int(fs.batch_size)
  host_batch = global_batch // jax.process_count()
  pool = min(int(fs.get('train_pool_size') or 0) or meta['train_size'], meta['train_size'])
  train_batches = _train_split_in_order(meta, host_batch, pool)
  _check_class_counts(task, train_batches, max(int(k) for k in fs.shots), pool)
  eval_batches, eval_sizes = {}, {}
  limit = int(fs.get('eval_size') or 0)
  for split in meta['eval_splits']:
    size = meta['eval_sizes'][split]
    if limit and limit < size:
      size = limit
    # Every process yields the same number of batches, so cutting them at the same count keeps collectives aligned.
    eval_batches[split] = list(itertools.islice(dataset.valid_iter(split), math.ceil(size / global_batch)))
    eval_sizes[split] = size
  main = glue_metrics.MAIN_SPLIT.get(task.name, meta['eval_splits'][0])
  main = main if main in eval_batches else meta['eval_splits'][0]
  logging.info('Few-shot %s: train pool %d of %d, eval %s, S=%d.', task.name, pool, meta['train_size'], eval_sizes,
               meta['max_seq_length'])
  return TaskInputs(task=task.name, num_classes=task.num_labels, main_split=main, train_batches=train_batches,
                    eval_batches=eval_batches, train_size=pool, eval_sizes=eval_sizes)


def _check_class_counts(task: glue_tasks.GlueTask, batches: Sequence[NumpyBatch], k: int, pool: int) -> None:
  """Fails before any embedding (and before a pretraining run starts) when a class of the pool has fewer than k."""
  local = np.zeros(task.num_labels, np.int64)
  for b in batches:
    local += np.bincount(b['label_ids'][b['batch_mask'] > 0], minlength=task.num_labels)[:task.num_labels]
  counts = local
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    counts = np.asarray(multihost_utils.process_allgather(local)).sum(0)
  if counts.min() < k:
    raise ValueError(f'Few-shot {task.name}: the train pool (the first {pool} train records) has {counts.tolist()} '
                     f'examples per class ({list(task.labels)}), fewer than the largest shot count {k}. Raise '
                     f'train_pool_size (0 = the whole train split) or drop the largest shots.')


def embed_task(feature_fn: Callable, encoder_params: Any, inputs: TaskInputs, mesh: Mesh) -> fewshot.TaskFeatures:
  """One forward pass over the task's pool and eval splits -> features and labels (padding removed)."""
  train = fewshot.extract_features(feature_fn, encoder_params, inputs.train_batches, mesh)
  evals = {split: fewshot.extract_features(feature_fn, encoder_params, batches, mesh)
           for split, batches in inputs.eval_batches.items()}
  return fewshot.TaskFeatures(
      task=inputs.task, num_classes=inputs.num_classes,
      train_features=train['features'][:inputs.train_size], train_labels=train['label_ids'][:inputs.train_size],
      eval_features={s: e['features'][:inputs.eval_sizes[s]] for s, e in evals.items()},
      eval_labels={s: e['label_ids'][:inputs.eval_sizes[s]] for s, e in evals.items()})


def glue_score(task: str, predictions: np.ndarray, labels: np.ndarray) -> Tuple[str, float]:
  """(the task's main GLUE metric, its value) for class predictions int [n] against labels int [n]."""
  name = glue_metrics.MAIN_METRIC[glue_tasks.get_task(task).name]
  return name, glue_metrics.compute_metrics(task, predictions, labels)[name]


def evaluate_encoder(fs: ml_collections.ConfigDict, feature_fn: Callable, encoder_params: Any,
                     inputs: Sequence[TaskInputs], mesh: Mesh) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, float]]:
  """Embeds every task once and runs the probe sweep. Returns (entries, timings): entries keyed by task (main
  split) or '{task}_{split}', each {'task', 'split', 'metric', 'shots': {k: {'mean', 'std', 'per_seed', 'l2'}}};
  timings {'embed_s', 'probe_s', 'embedded_examples'}.
  """
  entries: Dict[str, Dict[str, Any]] = {}
  timings = {'embed_s': 0.0, 'probe_s': 0.0, 'embedded_examples': 0}
  seeds = list(range(int(fs.num_seeds)))
  for task in inputs:
    t0 = time.perf_counter()
    features = embed_task(feature_fn, encoder_params, task, mesh)
    t1 = time.perf_counter()
    by_split = fewshot.fewshot_sweep(features, [int(k) for k in fs.shots], seeds, [float(x) for x in fs.l2_regs],
                                     score_fn=glue_score)
    timings['embed_s'] += t1 - t0
    timings['probe_s'] += time.perf_counter() - t1
    timings['embedded_examples'] += task.train_size + sum(task.eval_sizes.values())
    for split, result in by_split.items():
      key = task.task if split == task.main_split else f'{task.task}_{split}'
      entries[key] = {'task': task.task, 'split': split, **result}
  return entries, timings


# ---------------------------------------------------------------------------------------------------------------
# k-shot fine-tuning of the whole model (optional: config.fewshot.finetune_steps > 0).


def pool_tokens(inputs: TaskInputs) -> Dict[str, np.ndarray]:
  """The train pool's input_ids, input_mask, segment_ids [pool, seq] and label_ids [pool] on every process, in the
  order of its features (`core.evaluation.gather_predictions`: batch by batch, each batch's rows process by
  process), so that support indices drawn from the features' labels select the same examples everywhere."""
  fields = ('input_ids', 'input_mask', 'segment_ids', 'label_ids', 'batch_mask')
  local = {k: np.stack([b[k] for b in inputs.train_batches]) for k in fields}  # [batches, host_batch, ...]
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    local = {k: np.asarray(multihost_utils.process_allgather(v)).swapaxes(0, 1) for k, v in local.items()}
  flat = {k: v.reshape((-1,) + v.shape[2 if jax.process_count() == 1 else 3:]) for k, v in local.items()}
  real = flat.pop('batch_mask') > 0
  return {k: v[real][:inputs.train_size] for k, v in flat.items()}


class FineTuner:
  """Fine-tunes a fresh classification model (encoder from `encoder_params`, new head) on one support set and
  scores the eval splits. Built once per task: the steps compile once and serve every k and seed.

  Each step trains on `batch_size` support examples drawn as consecutive permutations of the support set (so every
  example is seen equally often), with AdamW, linear warm-up over 10% of the steps then linear decay.
  """

  def __init__(self, fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
               task: TaskInputs, mesh: Mesh, seq_len: int):
    from core import optimizers
    from core.state import TrainState, create_sharded_train_state
    from core.train_step import make_predict_step, make_train_step

    self.fs, self.task, self.mesh = fs, task, mesh
    self.steps, self.batch_size = int(fs.finetune_steps), int(fs.finetune_batch_size)
    config = ml_collections.ConfigDict({'model': {**model_config.to_dict(), 'num_labels': task.num_classes}})
    self.model = model_cls(config, {'num_labels': task.num_classes})
    lr_fn = optimizers.learning_rate_schedule(ml_collections.ConfigDict(
        {'base_lr': float(fs.finetune_lr), 'warmup_fraction': 0.1, 'decay': 'linear', 'end_lr': 0.0}), self.steps)
    tx = optimizers.create_optimizer(ml_collections.ConfigDict(
        {'name': 'adamw', 'weight_decay': 0.01, 'eps': 1e-6, 'grad_clip_norm': 1.0}), lr_fn)
    example = {k: np.zeros((1, seq_len), np.int32) for k in ('input_ids', 'input_mask', 'segment_ids')}
    init_params = lambda rng: self.model.init_params(rng, example)  # noqa: E731
    _, shardings = create_sharded_train_state(init_params, tx, jax.random.PRNGKey(0), mesh)

    def fresh_state(encoder_params, rng):
      head_rng, state_rng = jax.random.split(rng)
      params = {**init_params(head_rng), 'bert': encoder_params}
      return TrainState.create(params, tx, state_rng)

    self._fresh_state = jax.jit(fresh_state, out_shardings=shardings)
    self._train_step = make_train_step(self.model, shardings, mesh, learning_rate_fn=lr_fn)
    self._predict_step = make_predict_step(self.model, shardings.params, mesh)

  def _batches(self, tokens: Dict[str, np.ndarray], support: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    need = self.steps * self.batch_size
    order = np.concatenate([rng.permutation(support) for _ in range(-(-need // len(support)))])[:need]
    host = self.batch_size // jax.process_count()
    lo = jax.process_index() * host
    for step in range(self.steps):
      rows = order[step * self.batch_size:(step + 1) * self.batch_size][lo:lo + host]
      yield {k: tokens[k][rows] for k in ('input_ids', 'input_mask', 'segment_ids', 'label_ids')}

  def run(self, encoder_params: Any, tokens: Dict[str, np.ndarray], support: np.ndarray, seed: int
          ) -> Dict[str, float]:
    """Fine-tunes on the pool rows `support` and returns {split: main metric}."""
    state = self._fresh_state(encoder_params, jax.random.PRNGKey(seed))
    for batch in self._batches(tokens, support, seed):
      state, _ = self._train_step(state, sharding_lib.make_global_batch(batch, self.mesh))
    from core import evaluation
    scores = {}
    for split, batches in self.task.eval_batches.items():
      out = evaluation.gather_predictions(self._predict_step, state.params, batches, self.mesh, keep=('label_ids',))
      n = self.task.eval_sizes[split]
      scores[split] = glue_score(self.task.task, np.argmax(out['outputs'][:n], -1), out['label_ids'][:n])[1]
    return scores


def finetune_sweep(fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
                   encoder_params: Any, inputs: Sequence[TaskInputs], mesh: Mesh) -> Dict[str, Dict[str, Any]]:
  """k-shot fine-tuning for every task, k and seed, on the same support sets as the probe. Entries as
  `evaluate_encoder`'s, with 'l2' left out."""
  entries: Dict[str, Dict[str, Any]] = {}
  for task in inputs:
    tokens = pool_tokens(task)
    tuner = FineTuner(fs, model_cls, model_config, task, mesh, tokens['input_ids'].shape[1])
    by_split: Dict[str, Dict[int, List[float]]] = {split: {} for split in task.eval_batches}
    for k in fs.shots:
      for seed in range(int(fs.num_seeds)):
        support = fewshot.sample_support(tokens['label_ids'], int(k), seed, task.num_classes)
        for split, value in tuner.run(encoder_params, tokens, support, seed).items():
          by_split[split].setdefault(int(k), []).append(value)
    for split, per_k in by_split.items():
      key = task.task if split == task.main_split else f'{task.task}_{split}'
      metric = glue_metrics.MAIN_METRIC[task.task]
      entries[key] = {'task': task.task, 'split': split, 'metric': metric, 'shots': {
          k: {'mean': float(np.mean(v)), 'std': float(np.std(v)), 'per_seed': v} for k, v in per_k.items()}}
      logging.info('Few-shot fine-tuning %s: %s', key, {k: round(float(np.mean(v)), 4) for k, v in per_k.items()})
  return entries


# ---------------------------------------------------------------------------------------------------------------
# Where the encoder comes from.


def _workdir_model_config(path: str) -> Optional[Dict[str, Any]]:
  """config.model of the run whose workdir is `path` (or its checkpoints/ directory), from its config.json."""
  for candidate in (os.path.join(path, 'config.json'), os.path.join(os.path.dirname(path.rstrip('/')), 'config.json')):
    if os.path.exists(candidate):
      with open(candidate) as f:
        return json.load(f).get('model')
  return None


def load_encoder(config: ml_collections.ConfigDict, rng: jax.Array) -> Tuple[Any, ml_collections.ConfigDict, Dict]:
  """(encoder params as numpy, the encoder's config.model, info) from `config.init_from`, else random init.

  `config.model` None takes the architecture from the checkpoint. Names and shapes are checked against the
  encoder that config.model builds; parameters the checkpoint lacks (the pooler, in some converted checkpoints)
  keep a random initial value, with a warning.
  """
  path = config.get('init_from') or ''
  model_config = config.get('model')
  source, metadata = (params_io.read_pretrained(path) if path else ({}, {}))
  if not model_config:
    model_config = metadata.get('model') or (_workdir_model_config(os.path.abspath(path)) if path else None)
    if not model_config:
      raise ValueError('config.model is None and there is no checkpoint to take the architecture from: set '
                       'config.init_from, or a model size (e.g. the variant `sst2,base`).')
  model_config = ml_collections.ConfigDict(dict(model_config))
  source_model = metadata.get('model') or {}
  for field in ('hidden_act', 'layer_norm_eps'):  # change the function without changing a shape: cannot fail below
    if field in source_model and source_model[field] != model_config.get(field):
      logging.warning('%s was made with model.%s=%r but config.model has %r: its features will differ from the '
                      "source model's; set config.model=None to take the checkpoint's.", path, field,
                      source_model[field], model_config.get(field))
  info = {'init_from': path or 'random', 'step': metadata.get('step')}
  if not path:
    logging.warning('config.init_from is empty: few-shot scores of a randomly initialised encoder.')
    return fewshot.init_encoder_params(model_config, rng), model_config, info
  if 'bert' not in source:
    raise ValueError(f'{path} has no "bert" (encoder) parameters; its top-level names are {sorted(source)}.')
  # Zeros shaped like the encoder suffice to check the checkpoint against; random values only where it has none.
  shapes = jax.eval_shape(fewshot.encoder_init_fn(model_config), rng)
  target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  merged, report = params_io.merge_params({'bert': target}, {'bert': source['bert']}, source_name=path)
  if report['kept_init']:
    logging.warning('%s lacks %s: those keep a random initial value.', path, report['kept_init'])
    fresh = fewshot.init_encoder_params(model_config, rng)
    merged, _ = params_io.merge_params({'bert': fresh}, {'bert': source['bert']}, source_name=path)
  logging.info('Few-shot encoder from %s: %d arrays.', path, len(report['loaded']))
  return merged['bert'], model_config, info


# ---------------------------------------------------------------------------------------------------------------
# The trainer and the periodic evaluator.


def _log_entries(entries: Mapping[str, Any], title: str) -> None:
  logging.info('%s\n%s', title, fewshot.format_table(entries))


def _with_task_means(scalars: Dict[str, float], entries: Mapping[str, Any]) -> Dict[str, float]:
  """Adds 'mean/{k}shot', the mean over tasks (main splits), when there are several tasks."""
  mains = [e for key, e in entries.items() if key == e['task']]
  if len(mains) > 1:
    for k in sorted({k for e in mains for k in e['shots']}):
      values = [e['shots'][k]['mean'] for e in mains if k in e['shots']]
      scalars[f'mean/{k}shot'] = float(np.mean(values))
  return scalars


@registry.TRAINERS.register('bert_fewshot_evaluator')
def train(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Any, workdir: str,
          writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  """Runs the few-shot sweep of `config.fewshot` on the encoder of `config.init_from` (or a random one).

  `dataset` and `model_cls` are unused: each task builds its own `bert_glue` dataset, the probe needs only the
  encoder, and k-shot fine-tuning (`config.fewshot.finetune_steps` > 0) wraps it in a `bert_classification` model.
  Returns what it writes to workdir/fewshot_results.json.
  """
  del dataset, model_cls  # fine-tuning always builds a `bert_classification` model around the encoder
  t_start = time.perf_counter()
  fs = config.fewshot
  init_rng, _ = jax.random.split(rng)
  params, model_config, info = load_encoder(config, init_rng)
  mesh = sharding_lib.create_mesh()
  params = jax.device_put(params, sharding_lib.replicated(mesh))
  feature_fn = fewshot.make_feature_fn(model_config, fs.feature, mesh)

  t0 = time.perf_counter()
  inputs = [load_task_inputs(fs, task) for task in fs.tasks]
  read_s = time.perf_counter() - t0
  entries, timings = evaluate_encoder(fs, feature_fn, params, inputs, mesh)
  timings['read_s'] = read_s
  scalars = _with_task_means(fewshot.flat_scalars(entries), entries)
  title = f'{fs.feature} features, {fs.num_seeds} seeds, mean+-std in %, of {info["init_from"]}'
  _log_entries(entries, f'Few-shot ridge probe ({title}):')
  finetuned = {}
  if int(fs.get('finetune_steps') or 0) > 0:
    t0 = time.perf_counter()
    finetuned = finetune_sweep(fs, registry.MODELS.get('bert_classification'), model_config, params, inputs, mesh)
    timings['finetune_s'] = time.perf_counter() - t0
    scalars.update({f'finetune/{k}': v for k, v in
                    _with_task_means(fewshot.flat_scalars(finetuned), finetuned).items()})
    _log_entries(finetuned, f'Few-shot fine-tuning ({fs.finetune_steps} steps; {title}):')

  step = int(info.get('step') or 0)
  writer.write_scalars(step, {f'fewshot/{k}': v for k, v in scalars.items() if np.isfinite(v)})
  writer.flush()
  results = {
      'init_from': info['init_from'], 'step': info.get('step'), 'feature': fs.feature,
      'num_seeds': int(fs.num_seeds), 'shots': [int(k) for k in fs.shots],
      'model': model_config.to_dict(), 'tasks': entries, 'finetune': finetuned, 'scalars': scalars,
      'timing_s': {**timings, 'total_s': time.perf_counter() - t_start},
  }
  common.write_json(workdir, RESULTS_FILE, results)
  if jax.process_index() == 0:
    plotted = {key: {**e, 'split': f'{e["split"]}, probe'} if finetuned else e for key, e in entries.items()}
    plotted.update({f'{key} finetune': {**e, 'split': f'{e["split"]}, fine-tuned'} for key, e in finetuned.items()})
    fewshot.plot_results(plotted, os.path.join(workdir, PLOT_FILE),
                         title=f'{os.path.basename(str(info["init_from"]).rstrip("/"))} ({fs.feature})')
  logging.info('Few-shot evaluation done in %.1fs (read %.1fs, embed %.1fs, probes %.1fs); wrote %s.',
               results['timing_s']['total_s'], read_s, timings['embed_s'], timings['probe_s'],
               os.path.join(workdir, RESULTS_FILE))
  return results


def periodic_evaluator(config: ml_collections.ConfigDict, model: Any, setup: Any
                       ) -> Callable[[Any, int], Dict[str, float]]:
  """`fn(state, step) -> {'sst2/8shot': mean, ...}` scoring `state.params['bert']` with `config.fewshot`.

  The tasks' batches are read once, here; each call embeds them with the current weights (in their training
  shardings) and fits the probes. The core loop writes the values under 'fewshot/'.
  """
  del model
  fs = config.fewshot
  if int(fs.get('finetune_steps') or 0) > 0:
    raise ValueError('config.fewshot.finetune_steps > 0 is for the standalone evaluator; the periodic one probes '
                     'the frozen encoder.')
  feature_fn = fewshot.make_feature_fn(config.model, fs.feature, setup.mesh)
  inputs = [load_task_inputs(fs, task) for task in fs.tasks]

  def evaluate(state: Any, step: int) -> Dict[str, float]:
    entries, timings = evaluate_encoder(fs, feature_fn, state.params['bert'], inputs, setup.mesh)
    _log_entries(entries, f'Few-shot at step {step} (embed {timings["embed_s"]:.1f}s, probes '
                          f'{timings["probe_s"]:.1f}s):')
    return _with_task_means(fewshot.flat_scalars(entries), entries)

  return evaluate
