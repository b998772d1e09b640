"""The few-shot task inputs: what a few-shot block (`config.evals.fewshot`, `configs/fewshot.py: fewshot_block`)
selects, and each task's train pool and eval splits read once through the task's `bert_glue` builder.

The train pool is the first train_pool_size train records in file order, so that the support sets are the same on
every process and in every run; each eval split is its first eval_size records. Both are read when the evaluator is
built (before a run's first step, so a bad block fails early) and kept in host memory as batches with batch_mask, for
`projects.bert.fewshot.embedding` to embed with each checkpoint's weights.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from core import errors, evaluation, registry
from core.dataset import SPLIT_POSITION, NumpyBatch
from projects.bert.tasks import glue as glue_tasks

# ---------------------------------------------------------------------------------------------------------------
# What the block selects.

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


SHOT_FIELDS = {'ours': 'shots', 'scenic': 'scenic.shots'}  # each protocol's shot counts, under the block


def shots_of(fs: ml_collections.ConfigDict, protocol: str) -> Tuple[int, ...]:
  """The shot counts of `protocol` ('ours' or 'scenic')."""
  return tuple(int(k) for k in (fs.shots if protocol == 'ours' else fs.scenic.shots))


# ---------------------------------------------------------------------------------------------------------------
# The inputs of one task.


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
  class_counts: Tuple[int, ...] = ()  # examples of each class in the pool
  num_train_examples: int = 0  # of the whole train split
  seq_len: int = 0  # the records' max_seq_length (0: the widest batch), what `pool_tokens` pads back to

  def entry_key(self, split: str) -> str:
    """The results key of an eval split: the task for its main split, else '{task}_{split}' (mnli_mismatched)."""
    return self.task if split == self.main_split else f'{self.task}_{split}'


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
  limit = int(fs.get('eval_size') or 0)
  eval_sizes = {split: min(limit or n, n) for split, n in meta.eval_sizes.items()}
  eval_batches = {split: list(dataset.valid_iter(split, num_examples=n)) for split, n in eval_sizes.items()}
  main = task.main_eval_split if task.main_eval_split in eval_batches else meta.eval_splits[0]
  logging.info('Few-shot %s: train pool %d of %d, eval %s, S=%d.', task.name, pool, meta.num_train_examples,
               eval_sizes, meta.max_seq_length)
  return TaskInputs(task=task.name, num_classes=task.num_labels, main_split=main, train_batches=train_batches,
                    eval_batches=eval_batches, train_size=pool, eval_sizes=eval_sizes,
                    class_counts=_class_counts(task, train_batches), num_train_examples=meta.num_train_examples,
                    seq_len=int(meta.max_seq_length))


def _class_counts(task: glue_tasks.GlueTask, batches: Sequence[NumpyBatch]) -> Tuple[int, ...]:
  """Examples of each class among `batches` (the real rows), over all processes."""
  counts = np.zeros(task.num_labels, np.int64)
  for b in batches:
    counts += np.bincount(b['label_ids'][b['batch_mask'] > 0], minlength=task.num_labels)[:task.num_labels]
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    counts = np.asarray(multihost_utils.process_allgather(counts)).sum(0)
  return tuple(int(c) for c in counts)


def fitting_shots(fs: ml_collections.ConfigDict, inputs: Sequence[TaskInputs],
                  block: str = 'config.evals.fewshot') -> ml_collections.ConfigDict:
  """`fs` without the shot counts that some task's train pool cannot fill (k examples of every class), which are
  skipped with a warning naming them, the task and the flag; fails before any embedding when none of a protocol's
  shot counts fits. `block` is the block's place in the config, for the flags named."""
  smallest = min(inputs, key=lambda t: min(t.class_counts))
  fits = min(smallest.class_counts)
  pool = (f'{smallest.task}\'s train pool (the first {smallest.train_size} of its {smallest.num_train_examples} train '
          f'records) has {list(smallest.class_counts)} examples per class')
  bigger = (f'; --{block}.train_pool_size=0 draws from the whole train split'
            if smallest.train_size < smallest.num_train_examples else '')
  out = ml_collections.ConfigDict(fs.to_dict())
  for protocol in protocols(fs):
    field, shots = SHOT_FIELDS[protocol], shots_of(fs, protocol)
    kept = tuple(k for k in shots if k <= fits)
    if not kept and fits == 0:
      raise errors.ConfigError(f'Few-shot: no shot count of {block}.{field}={shots} fits: {pool}, so a class has no '
                               f'example to draw{bigger or "; the task needs train records of every class"}.')
    if not kept:
      raise errors.ConfigError(f'Few-shot: no shot count of {block}.{field}={shots} fits: {pool}. Set '
                               f'--{block}.{field}=\'({", ".join(str(k) for k in _powers_up_to(fits))})\' (at most '
                               f'{fits}){bigger}.')
    if kept != shots:
      logging.warning('Few-shot: shot counts %s of %s.%s skipped: %s, fewer than k. Running %s%s.',
                      [k for k in shots if k > fits], block, field, pool, list(kept), bigger)
      if protocol == 'ours':
        out.shots = kept
      else:
        out.scenic.shots = kept
  return out


def _powers_up_to(n: int) -> List[int]:
  """1, 2, 4, ... up to n (at least [1])."""
  return [2 ** i for i in range(max(n, 1).bit_length())]


def pool_tokens(inputs: TaskInputs) -> Dict[str, np.ndarray]:
  """The train pool's input_ids, input_mask, segment_ids [pool, seq_len] and label_ids [pool] on every process, in
  the order of its features (`core.evaluation.gather_predictions`: split order when the batches are grouped by
  length, else batch by batch, each batch's rows process by process), so that support indices drawn from the
  features' labels select the same examples everywhere. Length-grouped batches are padded back to seq_len."""
  tokens = ('input_ids', 'input_mask', 'segment_ids')
  fields = (*tokens, 'label_ids', 'batch_mask') + ((SPLIT_POSITION,) if SPLIT_POSITION in inputs.train_batches[0]
                                                   else ())
  width = inputs.seq_len or max(b['input_ids'].shape[-1] for b in inputs.train_batches)

  def full(x: np.ndarray) -> np.ndarray:  # [host_batch, length] -> [host_batch, width], zeros as the records pad
    return np.pad(x, [(0, 0), (0, width - x.shape[-1])])

  local = {k: np.stack([full(b[k]) if k in tokens else b[k] for b in inputs.train_batches])
           for k in fields}  # [batches, host_batch, ...]
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    local = {k: np.asarray(multihost_utils.process_allgather(v)).swapaxes(0, 1) for k, v in local.items()}
  flat = {k: v.reshape((-1,) + v.shape[2 if jax.process_count() == 1 else 3:]) for k, v in local.items()}
  real = flat.pop('batch_mask') > 0
  return evaluation.in_split_order({k: v[real] for k, v in flat.items()})
