"""`fewshot`: few-shot GLUE scores of the encoder being trained or evaluated (big_vision's few-shot evaluator, for
text). The maths is `projects.bert.fewshot.probes` (our protocol: support sets, features, the ridge probe, the sweep,
table and plot) and `projects.bert.fewshot.scenic` (Scenic's protocol); this module reads the inputs, embeds them
with the run's weights and reports.

Config (`config.evals.fewshot`, made by `configs/fewshot.py: fewshot_block`, which documents every field): tasks,
dataset (the `bert_glue` fields of the tasks; '{task}' in data_dir is the task name), protocol ('ours', 'scenic' or
'both'), shots, num_seeds, l2_regs, feature (ours), scenic (Scenic's shots, l2_regs, feature, seed, headline),
train_pool_size, eval_size, batch_size, every, and finetune_steps / finetune_batch_size / finetune_lr (> 0 steps:
also fine-tune the whole model on each support set, the same support sets as the probe).

When it is built (before a run's first step, so a bad block fails early), each task's train pool (the first
train_pool_size train records, in file order: the support sets are the same on every process and in every run)
and eval splits (the first eval_size records of each) are read once, through the task's `bert_glue` builder, into
host memory. Each run embeds them with the run's weights in one jitted batched forward that computes every feature
the selected protocols probe, and fits both protocols' probes on those features.

Our scores are each task's main GLUE metric (`glue_tasks`), keyed by the task for its main eval split and by
'{task}_{split}' for the others (MNLI: 'mnli' = matched, 'mnli_mismatched'). Scalars: '{task}/{k}shot' (mean over
seeds), 'mean/{k}shot' (over tasks, when several), 'finetune/...' for the fine-tuning probe; Scenic's protocol adds
its own names, 'z/{task}_{k}shot' (accuracy), 'z/best_l2_for_{k}shot_eval', 'zz/{task}_{k}shot_l2={l2}' and the
headline 'a/sst2_100shot' (`fewshot_scenic.scalars`). Each is one TensorBoard tag, `{name}/...`, written at the
step of each evaluation: over a pretraining run, a curve per task and shot count. The log gets a table per run
and workdir/{name}.png a plot of our protocol with the majority-class line (first process).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from core import errors, evaluation, registry
from core import sharding as sharding_lib
from core.dataset import NumpyBatch
from core.evaluators import EvalContext, Evaluator
from projects.bert.fewshot import probes as fewshot, scenic as fewshot_scenic
from projects.bert.tasks import glue_metrics
from projects.bert.tasks import glue as glue_tasks

# ---------------------------------------------------------------------------------------------------------------
# Inputs.


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


def tasks_found(fs: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """`fs.tasks`, with ('all',) replaced by the classification tasks (but WNLI) whose meta data is in the block's
  data_dir, as `prepare glue --task=all` takes every task found in its GLUE_DIR."""
  if tuple(fs.tasks) != ('all',):
    return tuple(fs.tasks)
  import tensorflow as tf  # gfile: data_dir may be gs://; loaded by then for the records anyway
  found = []
  for name in glue_tasks.CLASSIFICATION_TASKS:
    dataset = task_dataset_config(fs, name).dataset
    meta = dataset.get('meta_data_file') or os.path.join(dataset.get('data_dir') or '', glue_tasks.get_task(name)
                                                         .meta_data_file)
    if tf.io.gfile.exists(meta):
      found.append(name)
  if not found:
    raise errors.MissingFileError(
        f'Few-shot tasks `all`: no task records under {fs.dataset.get("data_dir")!r} (looked for '
        f'{", ".join(glue_tasks.get_task(t).meta_data_file for t in glue_tasks.CLASSIFICATION_TASKS)}). Set '
        f'config.evals.fewshot.dataset.data_dir to the --output_dir of `prepare glue`, or name the tasks.')
  logging.info('Few-shot tasks `all`: %s found in %s.', '+'.join(found), fs.dataset.get('data_dir'))
  return tuple(found)


def load_task_inputs(fs: ml_collections.ConfigDict, task_name: str) -> TaskInputs:
  """Reads the train pool (the first `fs.train_pool_size` train records; 0 = all) and the eval splits (the first
  `fs.eval_size` examples of each; 0 = all) of one GLUE classification task into host memory."""
  task = glue_tasks.get_task(task_name)
  if task.is_regression:
    classification = ', '.join(t for t, g in glue_tasks.GLUE_TASKS.items() if g.labels)
    raise errors.ConfigError(f'Few-shot evaluation samples k examples per class; {task.name} is a regression task. '
                             f'Use the classification tasks: {classification}.')
  dataset = registry.DATASETS.get('bert_glue')(task_dataset_config(fs, task.name))
  meta = dataset.meta_data
  pool = min(int(fs.get('train_pool_size') or 0) or meta.num_train_examples, meta.num_train_examples)
  train_batches = list(dataset.valid_iter('train', num_examples=pool))
  _check_class_counts(task, train_batches, largest_shot(fs), pool)
  limit = int(fs.get('eval_size') or 0)
  eval_sizes = {split: min(limit or n, n) for split, n in meta.eval_sizes.items()}
  eval_batches = {split: list(dataset.valid_iter(split, num_examples=n)) for split, n in eval_sizes.items()}
  main = task.main_eval_split if task.main_eval_split in eval_batches else meta.eval_splits[0]
  logging.info('Few-shot %s: train pool %d of %d, eval %s, S=%d.', task.name, pool, meta.num_train_examples,
               eval_sizes, meta.max_seq_length)
  return TaskInputs(task=task.name, num_classes=task.num_labels, main_split=main, train_batches=train_batches,
                    eval_batches=eval_batches, train_size=pool, eval_sizes=eval_sizes)


def _check_class_counts(task: glue_tasks.GlueTask, batches: Sequence[NumpyBatch], k: int, pool: int) -> None:
  """Fails before any embedding (and before a pretraining run starts) when a class of the pool has fewer than k."""
  counts = np.zeros(task.num_labels, np.int64)
  for b in batches:
    counts += np.bincount(b['label_ids'][b['batch_mask'] > 0], minlength=task.num_labels)[:task.num_labels]
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    counts = np.asarray(multihost_utils.process_allgather(counts)).sum(0)
  if counts.min() < k:
    raise errors.ConfigError(f'Few-shot {task.name}: the train pool (the first {pool} train records) has '
                             f'{counts.tolist()} examples per class ({list(task.labels)}), fewer than the largest '
                             f'shot count {k}. Raise train_pool_size (0 = the whole train split) or drop the largest '
                             f'shots.')


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
  return {k: v[real] for k, v in flat.items()}


# ---------------------------------------------------------------------------------------------------------------
# The ridge probe on frozen features.


def embed_task(feature_fn: Callable, params: Any, inputs: TaskInputs, mesh: Mesh, features: Sequence[str]
               ) -> Dict[str, fewshot.TaskFeatures]:
  """One forward pass over the task's pool and eval splits -> {feature: features and labels (padding removed)},
  for `features` as `feature_fn` (`fewshot.make_feature_fn`) computes them side by side."""
  train = fewshot.extract_features(feature_fn, params, inputs.train_batches, mesh)
  evals = {split: fewshot.extract_features(feature_fn, params, batches, mesh)
           for split, batches in inputs.eval_batches.items()}
  train_x = fewshot.split_features(train['features'], features)
  eval_x = {split: fewshot.split_features(e['features'], features) for split, e in evals.items()}
  return {f: fewshot.TaskFeatures(
      task=inputs.task, num_classes=inputs.num_classes, train_features=train_x[f], train_labels=train['label_ids'],
      eval_features={s: x[f] for s, x in eval_x.items()}, eval_labels={s: e['label_ids'] for s, e in evals.items()})
      for f in features}


def _entry_key(inputs: TaskInputs, split: str) -> str:
  return inputs.task if split == inputs.main_split else f'{inputs.task}_{split}'


def scenic_task_name(task: str, split: str, num_splits: int) -> str:
  """Scenic's name of a task's eval split: the task, or '{task}_{split}' when it has several (mnli_matched)."""
  return task if num_splits == 1 else f'{task}_{split}'


PROTOCOLS = {'ours': ('ours',), 'scenic': ('scenic',), 'both': ('ours', 'scenic')}


def protocols(fs: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """The protocols `fs.protocol` selects ('ours' when absent)."""
  name = fs.get('protocol') or 'ours'
  if name not in PROTOCOLS:
    raise errors.ConfigError(f'config.evals.fewshot.protocol={name!r}; use one of {sorted(PROTOCOLS)}.')
  return PROTOCOLS[name]


def needed_features(fs: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """The features the selected protocols probe, each once (one embedding pass computes them all)."""
  names = []
  for protocol in protocols(fs):
    names.append(fs.feature if protocol == 'ours' else fs.scenic.feature)
  return tuple(dict.fromkeys(names))


def largest_shot(fs: ml_collections.ConfigDict) -> int:
  return max(max(int(k) for k in (fs.shots if p == 'ours' else fs.scenic.shots)) for p in protocols(fs))


def evaluate_encoder(fs: ml_collections.ConfigDict, feature_fn: Callable, params: Any, inputs: Sequence[TaskInputs],
                     mesh: Mesh) -> Tuple[Dict[str, Dict[str, Any]], Optional[Dict[str, Any]], Dict[str, Any]]:
  """Embeds every task once (every feature the protocols need, in one pass) and runs the selected protocols on
  those features. Returns (entries, scenic, timings): entries (our protocol; {} when not selected) keyed by task
  (main split) or '{task}_{split}', each {'task', 'split', 'metric', 'majority', 'shots': {k: {'mean', 'std',
  'per_seed', 'l2'}}} ('majority': the metric of always predicting the pool's most frequent class); scenic
  (`fewshot_scenic.scenic_fewshot`'s result, or None); timings {'embed_s', 'probe_s', 'scenic_s',
  'embedded_examples'}.
  """
  selected, features = protocols(fs), needed_features(fs)
  entries: Dict[str, Dict[str, Any]] = {}
  scenic_tasks: Dict[str, fewshot_scenic.TaskData] = {}
  timings: Dict[str, Any] = {'embed_s': 0.0, 'probe_s': 0.0, 'scenic_s': 0.0, 'embedded_examples': 0}
  seeds = list(range(int(fs.num_seeds)))
  for task in inputs:
    t0 = time.perf_counter()
    by_feature = embed_task(feature_fn, params, task, mesh, features)
    timings['embed_s'] += time.perf_counter() - t0
    timings['embedded_examples'] += task.train_size + sum(task.eval_sizes.values())
    if 'ours' in selected:
      t0 = time.perf_counter()
      data = by_feature[fs.feature]
      by_split = fewshot.fewshot_sweep(data, [int(k) for k in fs.shots], seeds, [float(x) for x in fs.l2_regs],
                                       score_fn=glue_metrics.main_score)
      timings['probe_s'] += time.perf_counter() - t0
      majority = int(np.bincount(data.train_labels, minlength=task.num_classes).argmax())
      for split, result in by_split.items():
        labels = data.eval_labels[split]
        base = glue_metrics.main_score(task.task, np.full_like(labels, majority), labels)[1]
        entries[_entry_key(task, split)] = {'task': task.task, 'split': split, 'majority': base, **result}
    if 'scenic' in selected:
      data = by_feature[fs.scenic.feature]
      evals = {scenic_task_name(task.task, split, len(data.eval_features)): (x, data.eval_labels[split])
               for split, x in data.eval_features.items()}
      scenic_tasks[task.task] = (data.train_features, data.train_labels, task.num_classes, evals)
  scenic = None
  if scenic_tasks:
    t0 = time.perf_counter()
    scenic = fewshot_scenic.scenic_fewshot(scenic_tasks, [int(k) for k in fs.scenic.shots],
                                           [float(x) for x in fs.scenic.l2_regs], int(fs.scenic.seed))
    timings['scenic_s'] = time.perf_counter() - t0
  return entries, scenic, timings


def with_task_means(scalars: Dict[str, float], entries: Mapping[str, Any]) -> Dict[str, float]:
  """Adds 'mean/{k}shot', the mean over tasks (main splits), when there are several tasks."""
  mains = [e for key, e in entries.items() if key == e['task']]
  if len(mains) > 1:
    for k in sorted({k for e in mains for k in e['shots']}):
      values = [e['shots'][k]['mean'] for e in mains if k in e['shots']]
      scalars[f'mean/{k}shot'] = float(np.mean(values))
  return scalars


# ---------------------------------------------------------------------------------------------------------------
# k-shot fine-tuning, the optional second probe.


class FineTuner:
  """Fine-tunes a fresh classification model (encoder from `encoder_params`, new head) on one support set and
  scores the eval splits. Built once per task: the steps compile once and serve every k and seed.

  Each step trains on `batch_size` support examples drawn as consecutive permutations of the support set (so every
  example is seen equally often), with AdamW, linear warm-up over 10% of the steps then linear decay.
  """

  def __init__(self, fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
               task: TaskInputs, mesh: Mesh, seq_len: int):
    from core import optimizers
    from core.dataset import DatasetMetaData
    from core.state import TrainState, create_sharded_train_state
    from core.train_step import make_predict_step, make_train_step

    self.fs, self.task, self.mesh = fs, task, mesh
    self.steps, self.batch_size = int(fs.finetune_steps), int(fs.finetune_batch_size)
    config = ml_collections.ConfigDict({'model': {**model_config.to_dict(), 'num_labels': task.num_classes}})
    self.model = model_cls(config, DatasetMetaData(input_specs={}, num_labels=task.num_classes))
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
    scores = {}
    for split, batches in self.task.eval_batches.items():
      out = evaluation.gather_predictions(self._predict_step, state.params, batches, self.mesh, keep=('label_ids',))
      scores[split] = glue_metrics.main_score(self.task.task, np.argmax(out['outputs'], -1), out['label_ids'])[1]
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
      key = _entry_key(task, split)
      entries[key] = {'task': task.task, 'split': split, 'metric': glue_tasks.get_task(task.task).main_metric,
                      'shots': {k: {'mean': float(np.mean(v)), 'std': float(np.std(v)), 'per_seed': v}
                                for k, v in per_k.items()}}
      logging.info('Few-shot fine-tuning %s: %s', key, {k: round(float(np.mean(v)), 4) for k, v in per_k.items()})
  return entries


# ---------------------------------------------------------------------------------------------------------------
# The evaluator.


@registry.EVALUATORS.register('fewshot')
class FewShotEvaluator(Evaluator):
  """Probes the encoder of `state.params` on the tasks of its block; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    tasks = tasks_found(config)
    if tuple(config.tasks) != tasks:
      config = ml_collections.ConfigDict({**config.to_dict(), 'tasks': tasks})
    self.fs = config
    self.protocols = protocols(config)
    self.features = needed_features(config)
    self.model_config = ml_collections.ConfigDict(context.config.model.to_dict())
    self.feature_fn = fewshot.make_feature_fn(self.model_config, self.features, context.mesh)
    self._source_nsp_head: Optional[Any] = None
    t0 = time.perf_counter()
    self.inputs = [load_task_inputs(config, task) for task in tasks]
    self.read_s = time.perf_counter() - t0
    self.results: Dict[str, Any] = {}

  def _feature_params(self, params: Mapping[str, Any]) -> Dict[str, Any]:
    """What the feature function reads. A model without the next-sentence head (`bert_encoder`, the standalone
    config) whose architecture has Model Garden's head, which is not the encoder's pooler, takes the head from the
    weights it was loaded from."""
    out = fewshot.feature_params(params, self.features)
    head = self.model_config.get('nsp_head') or 'encoder_pooler'
    if 'nsp' in self.features and 'nsp_head' not in out and head != 'encoder_pooler':
      if self._source_nsp_head is None:
        from core import params_io  # orbax: only this case pays its import
        path = self.context.weights.get('path') or ''
        source = params_io.read_pretrained(path)[0] if path else {}
        if 'nsp_head' not in source:
          raise errors.ConfigError(
              f'Few-shot feature "nsp" reads the next-sentence head\'s pre-logits, but config.model.nsp_head is '
              f'{head!r} and {path or "the random encoder"} has no nsp_head parameters. Use a checkpoint with its '
              f'next-sentence head, or feature "mean"/"pooled" (config.evals.{self.name}.feature / scenic.feature).')
        self._source_nsp_head = source['nsp_head']
      out['nsp_head'] = self._source_nsp_head
    return out

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    fs, t_start = self.fs, time.perf_counter()
    feature_params = self._feature_params(state.params)
    entries, scenic, timings = evaluate_encoder(fs, self.feature_fn, feature_params, self.inputs, self.context.mesh)
    scalars = with_task_means(fewshot.flat_scalars(entries), entries)
    source = self.context.weights
    title = f'{fs.feature} features, {fs.num_seeds} seeds, mean+-std in %, of {source.get("path") or "random"}'
    if entries:
      logging.info('Few-shot ridge probe at step %d (%s; embed %.1fs, probes %.1fs):\n%s', step, title,
                   timings['embed_s'], timings['probe_s'], fewshot.format_table(entries))
    if scenic is not None:
      # Which layer stands for Scenic's pre_logits on this model (exact only with Scenic's head).
      scenic['support']['feature'] = (fewshot_scenic.feature_source(feature_params.get('nsp_head'))
                                      if fs.scenic.feature == 'nsp' else f'{fs.scenic.feature} (not Scenic\'s)')
      logging.info('Scenic few-shot feature: %s; support sets: %s, %s solve.', scenic['support']['feature'],
                   scenic['support']['how'], scenic['support']['solve'])
      scalars.update(fewshot_scenic.scalars(scenic, fs.scenic.get('headline')))
      logging.info('Few-shot as Scenic reports it at step %d (%s features, one support set, accuracy in %%, the '
                   'regulariser chosen on the eval sets, so optimistic; %.1fs):\n%s', step, fs.scenic.feature,
                   timings['scenic_s'], fewshot_scenic.format_table(scenic))
    finetuned = {}
    if int(fs.get('finetune_steps') or 0) > 0:
      t0 = time.perf_counter()
      finetuned = finetune_sweep(fs, registry.MODELS.get('bert_classification'), self.model_config,
                                 state.params['bert'], self.inputs, self.context.mesh)
      timings['finetune_s'] = time.perf_counter() - t0
      scalars.update({f'finetune/{k}': v for k, v in with_task_means(fewshot.flat_scalars(finetuned),
                                                                      finetuned).items()})
      logging.info('Few-shot fine-tuning (%d steps; %s):\n%s', fs.finetune_steps, title,
                   fewshot.format_table(finetuned))
    self.results = {
        'step': step, 'weights': dict(source), 'protocol': fs.get('protocol') or 'ours', 'feature': fs.feature,
        'num_seeds': int(fs.num_seeds), 'shots': [int(k) for k in fs.shots], 'model': self.model_config.to_dict(),
        'tasks': entries, 'finetune': finetuned,
        'scalars': {k: v for k, v in scalars.items() if not k.startswith('zz/')},
        'timing_s': {**timings, 'read_s': self.read_s, 'total_s': time.perf_counter() - t_start},
    }
    if scenic is not None:
      self.results['scenic'] = {
          'feature': fs.scenic.feature, 'note': 'regulariser chosen per shot count on the eval sets (optimistic)',
          'best_l2': scenic['best_l2'], 'accuracy': scenic['z'], 'accuracy_per_l2': scenic['accuracy'],
          'support': scenic['support']}
    if jax.process_index() == 0 and (entries or finetuned):
      self._plot(entries, finetuned, source)
    return scalars.items()

  def _plot(self, entries: Mapping[str, Any], finetuned: Mapping[str, Any], source: Mapping[str, Any]) -> None:
    plotted = {key: {**e, 'split': f'{e["split"]}, probe'} if finetuned else e for key, e in entries.items()}
    plotted.update({f'{key} finetune': {**e, 'split': f'{e["split"]}, fine-tuned'} for key, e in finetuned.items()})
    name = os.path.basename(str(source.get('path') or 'random').rstrip('/'))
    fewshot.plot_results(plotted, os.path.join(self.context.workdir, f'{self.name}.png'),
                         title=f'{name} ({self.fs.feature})')

  def summary(self) -> Dict[str, Any]:
    return dict(self.results)
