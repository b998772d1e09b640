"""`bert_superglue`: the records and meta data `prepare superglue` writes, for every SuperGLUE task kind.

One builder serves the six kinds of `tasks.superglue` because their records differ only in a few scalar features
after GLUE's (`superglue_rows.EXTRA_FEATURES`: word positions, span bounds, choice / question / candidate
indices); the expansion into rows was done at prepare time, so nothing is re-expanded per epoch.

Config (`config.dataset`, defaults in `default_config()`):
  task            a SuperGLUE task: boolq, cb, copa, multirc, record, rte, wic, wsc, axb, axg
  data_dir        the --output_dir of `prepare superglue` ({task}_meta_data and the records it names)
  max_seq_length  checked against the meta data (None or 0: taken from it)
  shuffle_buffer, seed

Batches (host-local numpy), per row: input_ids, input_mask, segment_ids int32 [B, S]; label_ids int32 [B];
example_id int32 [B] (the official idx; -1 on padding); the kind's extra features int32 [B]; batch_mask float32
[B] (0 = padding). multiple_choice (COPA) keeps an example's two rows together: input_ids, input_mask, segment_ids
[B, 2, S], choice_index [B, 2], example_id [B], label_ids [B] = the right choice (0 on unlabelled test rows).
MultiRC and ReCoRD rows are independent binary examples (label_ids 1 = the option / candidate is right); their
scores are grouped by question / query afterwards (`superglue_metrics`). The diagnostics (axb, axg) have no train
or eval split: `test_iter('test')` passes over their labelled rows.

Meta data (`DatasetMetaData`): task, num_train_examples (rows; COPA: examples), num_labels (the classifier's: 2
for the row-binary kinds), max_seq_length, eval / test splits and sizes; extra holds benchmark, task_kind,
official_name, label_list, metrics, rows_per_example, example_counts, row_counts, labelled_splits, meta_data_file,
vocab_file, superglue_dir (the jsonl files the records came from: ReCoRD's entity texts, AX-g's hypotheses),
prediction_writer ('superglue_predict': what the trainer's mode 'predict' runs).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import ml_collections
import tensorflow as tf
from absl import logging

from core import errors
from core.dataset import Dataset, DatasetMetaData
from projects.bert.datasets import classification, pipeline, prelude, records, superglue_rows, superglue_writer
from projects.bert.tasks import superglue as sg

_REQUIRED_META = ('benchmark', 'task', 'task_kind', 'max_seq_length', 'num_labels', 'files', 'features',
                  'row_counts', 'example_counts', 'eval_splits', 'test_splits')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'task': '', 'data_dir': '', 'max_seq_length': None, 'shuffle_buffer': 10_000,
                                    'seed': 0, **prelude.TRAIN_GROUPING_DEFAULTS})


def extra_features(kind: str) -> tuple:
  """The record features of a task kind after GLUE's (their one owner is the row builder)."""
  return superglue_rows.EXTRA_FEATURES[kind]


def rows_per_example(kind: str) -> int:
  """Consecutive records that form one example in a batch: COPA's two choices; 1 otherwise."""
  return 2 if kind == sg.MULTIPLE_CHOICE else 1


def record_spec(max_seq_length: int, kind: str) -> records.RecordSpec:
  """GLUE's classifier features plus the kind's scalar int features."""
  spec = dict(classification.record_spec(max_seq_length, regression=False))
  spec.update({k: records.Feature(k, 'int', 1, scalar=True) for k in extra_features(kind)})
  return spec


def _command(task: sg.SuperGlueTask) -> str:
  return (f'python -m projects.bert.datasets.prepare superglue --task={task.name} --superglue_dir=SUPERGLUE_DIR '
          f'--vocab_file=VOCAB --output_dir=OUT_DIR --max_seq_length=128')


def read_meta_data(data_dir: str, task: sg.SuperGlueTask) -> Dict[str, Any]:
  """The meta data `prepare superglue` wrote for `task` in `data_dir`, checked to be SuperGLUE's and the task's."""
  path = os.path.join(data_dir, f'{task.name}_meta_data')
  meta = records.read_meta_json(
      path, _REQUIRED_META, writers='`prepare superglue`', command=_command(task),
      missing=f'No SuperGLUE {task.official_name} meta data at {path}: config.dataset.data_dir must be the '
              f'--output_dir of `prepare superglue`. Write it with:\n  {_command(task)}')
  if meta['benchmark'] != superglue_writer.BENCHMARK or meta['task'] != task.name or meta['task_kind'] != task.kind:
    raise errors.DataError(f'{path} is the meta data of {meta["benchmark"]} {meta["task"]} ({meta["task_kind"]}), '
                           f'not of SuperGLUE {task.name} ({task.kind}). Re-create it with:\n  {_command(task)}')
  return meta


@prelude.builder('bert_superglue', default_config)
def build(ctx: prelude.BuilderContext, config: ml_collections.ConfigDict) -> Dataset:
  """Builds one SuperGLUE task's dataset (see the module docstring)."""
  task = sg.get_task(ctx.required('task', 'SuperGLUE tasks', sg.task_names()))
  cfg = ctx.cfg
  if not cfg.data_dir:
    raise errors.ConfigError(f'Set config.dataset.data_dir to the --output_dir of:\n  {_command(task)}')
  meta = read_meta_data(cfg.data_dir, task)
  meta_path = os.path.join(cfg.data_dir, f'{task.name}_meta_data')
  seq_len = int(meta['max_seq_length'])
  if cfg.max_seq_length and int(cfg.max_seq_length) != seq_len:
    raise errors.ConfigError(f'config.dataset.max_seq_length={cfg.max_seq_length} but {meta_path} says the records '
                             f'hold {seq_len} tokens: set it to {seq_len} (or None), or re-prepare the records.')
  kind, group = task.kind, rows_per_example(task.kind)
  spec = record_spec(seq_len, kind)
  paths = {'train': meta['files']['train'], **{f'eval/{s}': n for s, n in meta['files']['eval'].items()},
           **{f'test/{s}': n for s, n in meta['files']['test'].items()}}
  paths = {k: os.path.join(cfg.data_dir, n) for k, n in paths.items() if n}
  compression = records.check_first_records(
      [(p, spec) for p in paths.values()],
      fix=f'{meta_path} says max_seq_length={seq_len} and kind {kind}; re-create records and meta data with:\n  '
          f'{_command(task)}')

  def examples(split: str) -> int:  # the batch's examples: rows, or COPA's groups of two rows
    return int(meta['row_counts'][split]) // group

  def fields(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """batch_mask from is_real_example (train); COPA: one example id and the right choice per group."""
    batch = dict(batch)
    if 'is_real_example' in batch:
      real = tf.cast(batch.pop('is_real_example'), tf.float32)
      batch['batch_mask'] = real[:, 0] if group > 1 else real
    if group > 1:
      batch['label_ids'] = tf.cast(tf.argmax(batch['label_ids'], axis=1), tf.int32)
      batch['example_id'] = batch['example_id'][:, 0]
    return batch

  train_iter = None
  if 'train' in paths:
    train_iter = ctx.train_iterator([paths['train']], spec=spec, dataset=f'bert_superglue/{task.name}',
                                    compression=compression, cycle_length=1, add_batch_fields=fields,
                                    warn_few_files=False, rows_per_example=group, num_examples=examples(sg.TRAIN))
  built: Dict[Any, tf.data.Dataset] = {}

  def split_iter(kind_of_split: str, splits: list):
    def make(split: Optional[str] = None, num_examples: Optional[int] = None):
      split = splits[0] if split is None else split
      if split not in splits:
        raise errors.DataError(f'SuperGLUE {task.name} has no {kind_of_split} split {split!r}; its '
                               f'{kind_of_split} splits are {splits}.')
      size = examples(split)
      n = size if num_examples is None else int(num_examples)
      if not 0 < n <= size:
        raise errors.ConfigError(f'{n} examples asked of SuperGLUE {task.name} {split!r}, which has {size}.')
      path = paths[f'{kind_of_split}/{split}']
      if (split, n) not in built:
        built[split, n] = ctx.eval_dataset([path], spec=spec, compression=compression, num_examples=n,
                                           pad_values={'example_id': -1}, mask_from='is_real_example',
                                           rows_per_example=group).map(fields)
      return pipeline.numpy_batches(built[split, n], [path])
    return make

  seq_shape = (group, seq_len) if group > 1 else (seq_len,)
  input_specs = {k: (seq_shape, 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}
  input_specs.update({k: ((group,) if group > 1 else (), 'int32') for k in extra_features(kind)})
  input_specs.update({'label_ids': ((), 'int32'), 'example_id': ((), 'int32'), 'batch_mask': ((), 'float32')})
  eval_splits, test_splits = list(meta['eval_splits']), list(meta['test_splits'])
  meta_data = DatasetMetaData(
      task=task.name, input_specs=input_specs,
      num_train_examples=examples(sg.TRAIN) if 'train' in paths else 0,
      num_labels=int(meta['num_labels']), max_seq_length=seq_len,
      eval_splits=tuple(eval_splits), eval_sizes={s: examples(s) for s in eval_splits},
      num_eval_batches={s: ctx.num_eval_batches(examples(s)) for s in eval_splits},
      test_splits=tuple(test_splits), test_sizes={s: examples(s) for s in test_splits},
      files=paths,
      extra={'benchmark': superglue_writer.BENCHMARK, 'task_kind': kind, 'official_name': task.official_name,
             'label_list': meta.get('label_list'), 'metrics': list(task.metrics), 'rows_per_example': group,
             'example_counts': dict(meta['example_counts']), 'row_counts': dict(meta['row_counts']),
             'labelled_splits': list(meta.get('labelled_splits', [])), 'meta_data_file': meta_path,
             'vocab_file': meta.get('vocab_file'), 'superglue_dir': meta.get('superglue_dir'),
             'prediction_writer': 'superglue_predict'})
  logging.info('bert_superglue %s (%s): train %s, eval %s, test %s, S=%d, host batch %d.', task.name, kind,
               meta_data.num_train_examples, meta_data.eval_sizes, meta_data.test_sizes, seq_len, ctx.train_batch)
  return Dataset(train_iter=train_iter, valid_iter=split_iter('eval', eval_splits) if eval_splits else None,
                 test_iter=split_iter('test', test_splits) if test_splits else None, meta_data=meta_data)
