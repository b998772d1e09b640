"""Few-shot GLUE inputs: each task's train pool and eval splits, read once into host memory.

The pool is the first `train_pool_size` train records in file order (not the builder's shuffled, repeated train
iterator), so that the support sets drawn from it are the same on every process and in every run.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Dict, List, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from core import registry
from core.dataset import NumpyBatch
from projects.bert import glue_metrics
from projects.bert.datasets import glue as glue_dataset
from projects.bert.datasets import glue_tasks, records


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
