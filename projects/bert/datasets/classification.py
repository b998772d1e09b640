"""`bert_glue`: the GLUE train/eval/test records and meta data written by `prepare.py glue` (or by upstream
TF-Models' `create_finetuning_data.py`, with explicit file paths).

Config (`config.dataset`, defaults in `default_config()`):
  task            a GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli (AX: MNLI's test split 'ax')
  data_dir        the output_dir of `prepare.py glue` (files named as in `glue_tasks`), or
  meta_data_file, train_file, eval_files, test_files
                  explicit paths, overriding data_dir's; eval_files / test_files are a path (the task's main
                  split) or {split: path}. Needed for upstream meta data, which names no files.
  max_seq_length  checked against the meta data and the records (None or 0: taken from the meta data)
  shuffle_buffer, seed
  eval_length_buckets
                  True (default): eval and test batches grouped by length, each padded only to the smallest of 16,
                  32, 64, ..., max_seq_length that holds its longest example, carrying `split_position`, by which
                  `core.evaluation` puts the outputs back in file order (`length_buckets`); False: file order, every
                  batch at max_seq_length
  train_length_buckets, train_megabatch
                  False (the default): train batches grouped by length bucket within megabatches of train_megabatch
                  global batches, each cut to its bucket length
                  (`length_buckets.train_batches`, shared by every builder's train pipeline)

num_labels, task type, label type, sizes and max_seq_length come from the meta data and are checked against the
task table, `config.model.num_labels` (when set) and the records. Batches (host-local numpy): input_ids,
input_mask, segment_ids int32 [B, S]; label_ids int32 [B] (float32 [B] for STS-B); example_id int32 [B] (the GLUE
index for test splits, -1 on padding); batch_mask float32 [B] (0 = padding of the last eval batch); S is a bucket
length in eval batches grouped by length, which also carry split_position int32 [B].
`valid_iter(split, num_examples=None)` / `test_iter(split, num_examples=None)` pass once over a split, or over its
first `num_examples` records (default split: the task's main one; the splits are meta_data.eval_splits /
test_splits), in file order or grouped by length; every process runs the same number of batches.
`valid_iter('train')` is such a pass over the train records (what few-shot probes draw their support sets from),
besides the shuffled, repeated `train_iter`.

Meta data (`core.dataset.DatasetMetaData`): task, num_train_examples, num_labels, max_seq_length, the eval and test
splits with their sizes, files; extra holds task_type, label_type, label_list, metrics, processor_type,
submission_files ({test split: file name}), meta_data_file and vocab_file (when the meta data names one).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping, Optional

import ml_collections
import tensorflow as tf
from absl import logging

from core import errors
from core.dataset import Dataset, DatasetMetaData
from projects.bert.tasks import glue as glue_tasks
from projects.bert.datasets import prelude, records
from projects.bert.tasks.glue import GlueTask

_UPSTREAM_TASK_TYPES = {'classification': 'bert_classification', 'regression': 'bert_regression'}
_ALLOWED_EXTRA_FEATURES = ('weight',)  # written by the upstream writer for weighted examples; not read


def default_config() -> ml_collections.ConfigDict:
  return prelude.finetuning_defaults(task='', eval_files='', test_files='', eval_length_buckets=True)


def record_spec(max_seq_length: int, regression: bool) -> records.RecordSpec:
  """The features of the upstream classifier writer; batch_mask comes from is_real_example (1 when absent)."""
  seq = {k: records.Feature(k, 'int', max_seq_length) for k in ('input_ids', 'input_mask', 'segment_ids')}
  label = (records.Feature('label_ids', 'float', 1, scalar=True, dtype=tf.float32) if regression else
           records.Feature('label_ids', 'int', 1, scalar=True))
  return {
      **seq,
      'label_ids': label,
      'example_id': records.Feature('example_id', 'int', 1, scalar=True, required=False, default=-1),
      'is_real_example': records.Feature('is_real_example', 'int', 1, scalar=True, required=False, default=1),
  }


def _prepare_command(task: GlueTask, out_dir: str = 'OUT_DIR') -> str:
  return (f'python -m projects.bert.datasets.prepare glue --task={task.name} --glue_dir=GLUE_DIR '
          f'--vocab_file=VOCAB --output_dir={out_dir} --max_seq_length=128')


def read_meta_data(path: str, task: GlueTask) -> Dict[str, Any]:
  """The meta-data JSON at `path` (ours or upstream's), checked to be of `task`."""
  meta = records.read_meta_json(
      path, ('processor_type', 'max_seq_length', 'train_data_size', 'task_type'),
      missing=(f'GLUE meta data {path!r} does not exist. Write it (with the records) by running:\n  '
               f'{_prepare_command(task, os.path.dirname(path) or ".")}\nor set config.dataset.meta_data_file to the '
               f'meta data of create_finetuning_data.py.'),
      writers='prepare.py or create_finetuning_data.py', command=_prepare_command(task))
  accepted = glue_tasks.accepted_processor_names(task)
  if meta['processor_type'] not in accepted:
    raise errors.DataError(f'{path} is meta data of processor_type {meta["processor_type"]!r}, but '
                           f'config.dataset.task is {task.name!r} (processor_type {"/".join(accepted)}). Point '
                           f'config.dataset.data_dir / meta_data_file at the {task.name} data, or set '
                           f'config.dataset.task to match.')
  return meta


def check_meta_against_config(meta: Mapping[str, Any], path: str, task: GlueTask,
                              config: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the meta data file and the field when the meta data, the task table or the config
  disagree (task type, num_labels, label type, label list, max_seq_length)."""
  problems = []
  expected_type = _UPSTREAM_TASK_TYPES[task.task_type]
  if meta['task_type'] != expected_type:
    problems.append(f'task_type is {meta["task_type"]!r}, task {task.name} is {expected_type!r}')
  if task.is_regression:
    if meta.get('label_type', 'float') != 'float':
      problems.append(f'label_type is {meta.get("label_type")!r}, regression needs "float"')
  elif meta.get('num_labels') != task.num_labels:
    problems.append(f'num_labels is {meta.get("num_labels")}, task {task.name} has {task.num_labels} labels')
  if meta.get('label_list') is not None and task.labels is not None and list(meta['label_list']) != list(task.labels):
    problems.append(f'label_list is {meta["label_list"]}, task {task.name} has {list(task.labels)}')
  if problems:
    raise errors.DataError(f'{path} does not describe GLUE task {task.name}: {"; ".join(problems)}. Re-create it '
                           f'with:\n  {_prepare_command(task)}')
  if cfg.max_seq_length and int(cfg.max_seq_length) != int(meta['max_seq_length']):  # None / 0: the meta data's
    raise errors.DataError(f'{path} says max_seq_length={meta["max_seq_length"]} but config.dataset.max_seq_length='
                           f'{cfg.max_seq_length}: re-run prepare with --max_seq_length={cfg.max_seq_length}, or set '
                           f'config.dataset.max_seq_length={meta["max_seq_length"]} (or 0 to take it from the meta '
                           f'data).')
  model = config.get('model')
  model_labels = model.get('num_labels') if model is not None else None
  if model_labels and int(model_labels) != task.num_labels:  # None / 0: the meta data's
    raise errors.ConfigError(f'config.model.num_labels={model_labels} but {path} (task {task.name}) has '
                             f'{task.num_labels} labels; set config.model.num_labels={task.num_labels}, or 0 to '
                             f'take it from the meta data.')


def _split_paths(given: Any, splits: Mapping[str, Any], main: str, field: str) -> Dict[str, str]:
  """config.dataset.eval_files / test_files -> {split: path}."""
  if not given:
    return {}
  if isinstance(given, str):
    return {main: given}
  given = dict(given)
  unknown = sorted(set(given) - set(splits))
  if unknown:
    raise errors.DataError(f'config.dataset.{field} names splits {unknown}; this task has {list(splits)}.')
  return {split: str(path) for split, path in given.items()}


def record_paths(cfg: ml_collections.ConfigDict, task: GlueTask, meta: Mapping[str, Any],
                 base_dir: str) -> Dict[str, Any]:
  """{'train': path, 'eval': {split: path}, 'test': {split: path}}: explicit config paths > the meta data's
  'files' (relative to its directory) > the prepare naming layout. Missing required files raise FileNotFoundError.
  """
  listed = meta.get('files') or {}
  upstream_test = 'ax' if meta['processor_type'] == 'AX' else task.main_test_split

  def under_base(name: str) -> str:
    return name if os.path.isabs(name) or '://' in name else os.path.join(base_dir, name)

  def require(path: str, what: str, field: str) -> str:
    if not tf.io.gfile.exists(path):
      raise errors.MissingFileError(f'The GLUE {task.name} {what} records {path!r} do not exist. Set '
                                    f'config.dataset.{field}, or write them with:\n  '
                                    f'{_prepare_command(task, base_dir)}')
    return path

  train = require(cfg.train_file or under_base(listed.get('train') or task.record_file('train')), 'train',
                  'train_file')
  out: Dict[str, Any] = {'train': train, 'eval': {}, 'test': {}}
  for kind, splits, main, field in (('eval', task.eval_splits, task.main_eval_split, 'eval_files'),
                                    ('test', task.test_splits, upstream_test, 'test_files')):
    explicit = _split_paths(cfg.get(field), splits, main, field)
    if explicit:
      out[kind] = {s: require(p, f'{kind} ({s})', field) for s, p in explicit.items()}
    elif listed.get(kind):
      out[kind] = {s: require(under_base(p), f'{kind} ({s})', field) for s, p in listed[kind].items()}
    else:  # upstream meta data in a prepare-style directory: take the files that exist
      for split in splits:
        path = under_base(task.record_file(kind, split))
        if tf.io.gfile.exists(path):
          out[kind][split] = path
  if not out['eval']:
    require(under_base(task.record_file('eval', task.main_eval_split)), f'eval ({task.main_eval_split})',
            'eval_files')
  return out


def _declared_size(meta: Mapping[str, Any], kind: str, split: str, upstream_split: str) -> Optional[int]:
  """The split size the meta data declares: ours per split, upstream's for its one eval / test file."""
  sizes = meta.get(f'{kind}_data_sizes') or {}
  if split in sizes:
    return int(sizes[split])
  if split == upstream_split and f'{kind}_data_size' in meta:
    return int(meta[f'{kind}_data_size'])
  return None


@prelude.builder('bert_glue', default_config)
def build(ctx: prelude.BuilderContext, config: ml_collections.ConfigDict) -> Dataset:
  """Builds a GLUE dataset (see the module docstring)."""
  task = glue_tasks.get_task(ctx.required('task', 'GLUE tasks', glue_tasks.task_names()))
  cfg = ctx.cfg
  eval_batch = ctx.eval_batch

  meta_path = ctx.meta_data_path(task.meta_data_file, 'prepare glue')
  meta = read_meta_data(meta_path, task)
  check_meta_against_config(meta, meta_path, task, config, cfg)
  files = record_paths(cfg, task, meta, os.path.dirname(meta_path))  # names in the meta data are relative to it
  seq_len = int(meta['max_seq_length'])

  # Check the first record of every file before building any pipeline.
  spec = record_spec(seq_len, task.is_regression)
  fix = (f'the meta data {meta_path} says max_seq_length={seq_len} and task {task.name} '
         f'({task.task_type}); re-create the records and the meta data together with:\n  {_prepare_command(task)}')
  all_files = [files['train']] + list(files['eval'].values()) + list(files['test'].values())
  compression = records.check_first_records([(path, spec) for path in all_files],
                                            allowed_extra=_ALLOWED_EXTRA_FEATURES, fix=fix)

  train_iter = ctx.train_iterator([files['train']], spec=spec, dataset=f'bert_glue/{task.name}',
                                  compression=compression, cycle_length=1,
                                  add_batch_fields=prelude.mask_from_is_real_example,
                                  warn_few_files=False,  # one train file is GLUE's layout, not a mistake
                                  num_examples=int(meta['train_data_size']))

  upstream_test = 'ax' if meta['processor_type'] == 'AX' else task.main_test_split
  train_size = int(meta['train_data_size'])
  sizes = {'eval': {}, 'test': {}}
  passes = prelude.EvalPasses(ctx, spec, compression, meta_path, _prepare_command(task))
  for kind, upstream_split in (('eval', task.main_eval_split), ('test', upstream_test)):
    for split, path in files[kind].items():
      declared = _declared_size(meta, kind, split, upstream_split)
      if declared is None:
        declared = records.count_records(path, compression)
        passes.counted.add(path)
      sizes[kind][split] = declared

  def split_iter(kind: str) -> Callable[..., Any]:
    available = files[kind]
    default = task.main_eval_split if kind == 'eval' else upstream_test
    if default not in available and available:
      default = next(iter(available))
    return passes.split_iterator(
        kind, available, sizes[kind], default, (files['train'], train_size),
        describe=lambda split: f'the GLUE {task.name} {kind} split {split!r}',
        missing=lambda split: errors.DataError(f'GLUE {task.name} has no {kind} split {split!r}; its {kind} splits '
                                               f'are {list(available)}.'))

  label_dtype = 'float32' if task.is_regression else 'int32'
  meta_data = DatasetMetaData(
      task=task.name,
      input_specs={
          'input_ids': ((seq_len,), 'int32'),
          'input_mask': ((seq_len,), 'int32'),
          'segment_ids': ((seq_len,), 'int32'),
          'label_ids': ((), label_dtype),
          'example_id': ((), 'int32'),
          'batch_mask': ((), 'float32'),
      },
      num_train_examples=train_size,
      num_labels=task.num_labels,
      max_seq_length=seq_len,
      **ctx.split_fields(files, sizes),
      extra={
          'task_type': task.task_type,
          'label_type': task.label_type,
          'label_list': list(task.labels) if task.labels else None,
          'metrics': list(task.metrics),
          'processor_type': meta['processor_type'],
          'submission_files': {s: task.submission_files[s] for s in files['test']},
          'meta_data_file': meta_path,
          'vocab_file': meta.get('vocab_file'),  # the vocab the records were made with (prepare.py writes it)
      })
  logging.info('bert_glue %s: train %d, eval %s, test %s, S=%d, host batch %d / eval %d.', task.name, train_size,
               sizes['eval'], sizes['test'], seq_len, ctx.train_batch, eval_batch)
  return Dataset(train_iter=train_iter, valid_iter=split_iter('eval') if files['eval'] else None,
                 test_iter=split_iter('test') if files['test'] else None, meta_data=meta_data)

