"""`bert_squad`: the SQuAD records of `prepare squad` (`squad_format.py`), and the eval examples and features that
decoding maps predictions back through.

Config (`config.dataset`): version ('v1.1' or 'v2.0'), data_dir (the --output_dir of `prepare squad`) or
meta_data_file, train_file (optional: e.g. the record file of upstream's create_finetuning_data.py), and
max_seq_length, doc_stride, max_query_length (None or 0: the meta data's; else checked against it, every
mismatch named at once), shuffle_buffer, seed, and eval_length_buckets (False, the default; `EVAL_LENGTH_BUCKETS`
says why).

Batches: input_ids, input_mask, segment_ids int32 [batch, S]; train batches also start_positions, end_positions,
is_impossible int32 [batch] and batch_mask 1; eval batches unique_ids int32 [batch] (-1 on padding rows) and
batch_mask float32 [batch] (0 on padding rows). `valid_iter()` passes once over the eval features (split 'dev');
there is no test split (SQuAD's test sets are hidden). With eval_length_buckets the features come grouped by length,
each batch [batch, L] for its bucket length L (`prelude.EvalPasses`), with their split positions; the span logits
of such a pass go back to [S] per feature (`evaluators/squad.full_length_span_logits`) before decoding. The
pipelines are the shared ones (`pipeline.py`): a resume into another batch size or train file is refused with what
changed, and token ids beyond config.model's vocab sizes fail reading with the file named.

Meta data (`core.dataset.DatasetMetaData`): task ('squad_v1.1' / 'squad_v2.0'), num_train_examples (train
features: windows, not questions), max_seq_length, eval split 'dev' with its size in features, files ({'train',
'eval', 'eval_features', 'eval_json'}); extra holds version, version_2_with_negative, doc_stride,
max_query_length, do_lower_case, vocab_file, eval_num_examples (questions) and meta_data_file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from core import errors
from core.dataset import SPLIT_POSITION, Dataset, DatasetMetaData
from projects.bert.datasets import pipeline, prelude, records, squad_format

EXTRA_FEATURES = ('paragraph_mask', 'class_index')  # written by squad_lib for XLNet-style heads; not read


# Off by default: upstream's n-best decoding (squad_lib.postprocess_output) ranks the top n_best_size start and end
# logits over all S positions, padding included, before it drops those outside the paragraph. A padding position
# beyond a batch's bucket length can hold one of those places in the padded run; the bucketed run has no logit there
# (it decodes it as -1e9), so a list, and rarely an answer, can differ. On: eval batches grouped by length (a
# SQuAD-like dev set computes ~1.5x fewer tokens), results as the padded run's wherever no such position enters the
# n-best (squad_metrics.top_positions_beyond_buckets counts the features where one does).
EVAL_LENGTH_BUCKETS = False


def default_config() -> ml_collections.ConfigDict:
  return prelude.finetuning_defaults(version='', doc_stride=None, max_query_length=None,
                                     eval_length_buckets=EVAL_LENGTH_BUCKETS)


def _int(name: str, length: int, scalar: bool = False) -> records.Feature:
  return records.Feature(name, 'int', length, scalar=scalar)


def train_record_spec(max_seq_length: int) -> records.RecordSpec:
  """The features of squad_lib's FeatureWriter(is_training=True)."""
  return {
      **{k: _int(k, max_seq_length) for k in ('input_ids', 'input_mask', 'segment_ids')},
      **{k: _int(k, 1, scalar=True) for k in ('start_positions', 'end_positions', 'is_impossible')},
      'unique_ids': _int('unique_ids', 1, scalar=True),
  }


def eval_record_spec(max_seq_length: int) -> records.RecordSpec:
  """The features of squad_lib's FeatureWriter(is_training=False): no answer positions."""
  return {**{k: _int(k, max_seq_length) for k in ('input_ids', 'input_mask', 'segment_ids')},
          'unique_ids': _int('unique_ids', 1, scalar=True)}


def read_meta_data(path: str, version: str) -> Dict[str, Any]:
  """The meta-data JSON at `path` (ours or upstream's `bert_squad`), checked to be of SQuAD `version`."""
  command = squad_format.prepare_command(version, os.path.dirname(path) or '.')
  meta = records.read_meta_json(
      path, ('task_type', 'max_seq_length', 'train_data_size', 'version_2_with_negative'),
      missing=f'SQuAD meta data {path!r} does not exist. Write it (with the records) by running:\n  {command}',
      writers='`prepare squad` or create_finetuning_data.py', command=command)
  if meta['task_type'] != squad_format.TASK_TYPE:
    raise errors.DataError(f'{path} is meta data of task_type {meta["task_type"]!r}, not '
                           f'{squad_format.TASK_TYPE!r}: point config.dataset.data_dir / meta_data_file at the SQuAD '
                           f'data of `prepare squad`.')
  written = squad_format.version_of(bool(meta['version_2_with_negative']))
  if written != version:
    raise errors.DataError(f'{path} holds SQuAD {written} data (version_2_with_negative='
                           f'{meta["version_2_with_negative"]}) but config.dataset.version is {version!r}: point '
                           f'config.dataset.data_dir at the {version} data, or use the config variant {written}.')
  return meta


LENGTHS = ('max_seq_length', 'doc_stride', 'max_query_length')  # what the records were written with


def check_meta_against_config(meta: Mapping[str, Any], path: str, cfg: ml_collections.ConfigDict) -> None:
  """The lengths the records were written with must be the config's (None or 0 in the config, the default, takes
  the meta data's); every mismatch is named in one error."""
  wrong = {f: (cfg.get(f), meta[f]) for f in LENGTHS if cfg.get(f) and f in meta and int(cfg.get(f)) != int(meta[f])}
  if wrong:
    said = ', '.join(f'{f}={have}' for f, (_, have) in wrong.items())
    asked = ', '.join(f'config.dataset.{f}={want}' for f, (want, _) in wrong.items())
    flags = ' '.join(f'--{f}={want}' for f, (want, _) in wrong.items())
    take = ' '.join(f'--config.dataset.{f}=0' for f in wrong)
    raise errors.DataError(f'{path} says {said} but {asked}: re-run `prepare squad` with {flags}, or take the '
                           f'records\' values with {take} (0, the default, takes them from the meta data).')


def data_paths(meta: Mapping[str, Any], meta_path: str, cfg: ml_collections.ConfigDict) -> Dict[str, str]:
  """{'train', 'eval', 'eval_features', 'eval_json'}: config.dataset.train_file > the meta data's 'files'
  (relative to its folder) > the names `prepare squad` writes. Missing files raise MissingFileError."""
  base = os.path.dirname(meta_path)
  listed = meta.get('files') or {}
  defaults = {'train': squad_format.TRAIN_RECORDS, 'eval': squad_format.EVAL_RECORDS,
              'eval_features': squad_format.EVAL_FEATURES, 'eval_json': squad_format.EVAL_JSON}
  files = {}
  for key, default in defaults.items():
    name = listed.get(key) or default
    files[key] = name if os.path.isabs(name) or '://' in name else os.path.join(base, name)
  if cfg.train_file:
    files['train'] = cfg.train_file
  version = squad_format.version_of(bool(meta['version_2_with_negative']))
  for key, path in files.items():
    if not tf.io.gfile.exists(path):
      raise errors.MissingFileError(f'The SQuAD {key} file {path!r} (of {meta_path}) does not exist. Write the data '
                                    f'with:\n  {squad_format.prepare_command(version, base or ".")}')
  return files


def add_train_mask(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """A train batch without unique_ids (training does not need them), with batch_mask 1 (no padding rows)."""
  batch = dict(batch)
  del batch['unique_ids']
  batch['batch_mask'] = tf.ones_like(batch['start_positions'], tf.float32)
  return batch


@prelude.builder('bert_squad', default_config)
def build(ctx: prelude.BuilderContext, config: ml_collections.ConfigDict) -> Dataset:
  """Builds the SQuAD dataset (see the module docstring)."""
  name = ctx.required('version', 'SQuAD versions', squad_format.VERSIONS)
  cfg = ctx.cfg
  try:
    version = squad_format.get_version(name)
  except ValueError as e:
    raise errors.ConfigError(f'config.dataset.version: {e}') from None
  eval_batch = ctx.eval_batch
  meta_path = ctx.meta_data_path(squad_format.META_DATA, 'prepare squad')
  meta = read_meta_data(meta_path, version)
  check_meta_against_config(meta, meta_path, cfg)
  files = data_paths(meta, meta_path, cfg)
  seq_len = int(meta['max_seq_length'])

  fix = (f'the meta data {meta_path} says max_seq_length={seq_len}; re-create the records and the meta data '
         f'together with:\n  {squad_format.prepare_command(version)}')
  train_spec, eval_spec = train_record_spec(seq_len), eval_record_spec(seq_len)
  compression = records.check_first_records([(files['train'], train_spec), (files['eval'], eval_spec)],
                                            allowed_extra=EXTRA_FEATURES, fix=fix)

  # The shared train pipeline: its fingerprint refuses a resume into other files or batch sizes, and every batch's
  # token ids are checked against config.model's vocab sizes.
  train_iter = ctx.train_iterator([files['train']], spec=train_spec, dataset=f'bert_squad/{version}',
                                  compression=compression, cycle_length=1, add_batch_fields=add_train_mask,
                                  warn_few_files=False,  # one train file is SQuAD's layout, not a mistake
                                  num_examples=int(meta['train_data_size']))

  # Eval passes: each built once (a new pass re-iterates it), the record count checked once against the size;
  # grouped by length with config.dataset.eval_length_buckets (padding rows: unique_ids -1, batch_mask 0).
  passes = prelude.EvalPasses(ctx, eval_spec, compression, meta_path, squad_format.prepare_command(version),
                              pad_values={'unique_ids': -1}, mask_from=None)
  eval_size = meta.get('eval_data_size')
  if eval_size is None:  # upstream meta data has no eval size: count it (once)
    eval_size = records.count_records(files['eval'], compression)
    passes.counted.add(files['eval'])
  eval_size = int(eval_size)

  def valid_iter(split: Optional[str] = None):
    if split not in (None, squad_format.EVAL_SPLIT):
      raise errors.ConfigError(f'SQuAD has no eval split {split!r}; its eval split is {squad_format.EVAL_SPLIT!r}.')
    return passes(files['eval'], eval_size, None, f'the {squad_format.EVAL_SPLIT} split (eval_data_size)')

  input_specs = pipeline.input_specs({k: v for k, v in train_spec.items() if k != 'unique_ids'},
                                     {'batch_mask': ((), 'float32')})
  meta_data = DatasetMetaData(
      task=f'squad_{version}',
      input_specs=input_specs,
      num_train_examples=int(meta['train_data_size']),  # features (windows), what an epoch passes over
      max_seq_length=seq_len,
      eval_splits=(squad_format.EVAL_SPLIT,),
      eval_sizes={squad_format.EVAL_SPLIT: eval_size},
      num_eval_batches={squad_format.EVAL_SPLIT: ctx.num_eval_batches(eval_size)},
      files=files,
      extra={
          'version': version,
          'version_2_with_negative': squad_format.VERSIONS[version],
          'doc_stride': meta.get('doc_stride'),
          'max_query_length': meta.get('max_query_length'),
          'do_lower_case': bool(meta.get('do_lower_case', True)),
          'vocab_file': meta.get('vocab_file'),
          'eval_num_examples': meta.get('eval_num_examples'),
          'meta_data_file': meta_path,
      })
  logging.info('bert_squad %s: train %d features, eval %d features, S=%d, host batch %d / eval %d%s.', version,
               meta_data.num_train_examples, eval_size, seq_len, ctx.train_batch, eval_batch,
               ', eval grouped by length' if passes.bucketed else '')
  return Dataset(train_iter=train_iter, valid_iter=valid_iter, test_iter=None, meta_data=meta_data)


def bucket_widths(batches: Iterable[Mapping[str, Any]], num_features: int) -> np.ndarray:
  """int [num_features]: the length each eval feature's batch was cut to, from one length-bucketed pass's batches
  (with `SPLIT_POSITION`; padding rows, batch_mask 0, skipped). What `squad_metrics.top_positions_beyond_buckets`
  compares a padded pass's logits against."""
  widths = np.zeros(num_features, np.int64)
  for batch in batches:
    real = np.asarray(batch['batch_mask']) > 0
    widths[np.asarray(batch[SPLIT_POSITION])[real]] = np.asarray(batch['input_ids']).shape[1]
  if not widths.all():
    raise ValueError(f'{int((widths == 0).sum())} of {num_features} features are in no batch: the batches are not '
                     f'one whole length-bucketed pass.')
  return widths


# ------------------------------------------------------------------------------------------- eval examples


@dataclasses.dataclass(frozen=True)
class SquadEvalData:
  """What decoding and scoring read: the eval questions (`squad_lib.SquadExample`s, in file order), their features
  (`squad_format.EvalFeature`s, in record order) and the SQuAD JSON's 'data' list (the official scripts' input)."""

  examples: List[Any]
  features: List[squad_format.EvalFeature]
  dataset: List[Dict[str, Any]]
  version_2_with_negative: bool
  do_lower_case: bool


def load_eval_data(meta_data: DatasetMetaData) -> SquadEvalData:
  """The eval side of a `bert_squad` dataset's files (meta_data is the builder's); see `read_eval_data`."""
  files = meta_data.files
  return read_eval_data(files['eval_json'], files['eval_features'], files['eval'],
                        meta_data.eval_sizes[squad_format.EVAL_SPLIT],
                        version_2_with_negative=bool(meta_data.extra['version_2_with_negative']),
                        do_lower_case=bool(meta_data.extra.get('do_lower_case', True)),
                        fix=(f'the files come from different `prepare squad` runs: re-create them together '
                             f'({meta_data.extra["meta_data_file"]})'))


def read_eval_data(eval_json: str, eval_features: str, eval_records: str, num_features: int, *,
                   version_2_with_negative: bool, do_lower_case: bool, fix: str) -> SquadEvalData:
  """The eval questions of the SQuAD JSON `eval_json` (read with upstream's `read_squad_examples`) and their
  `num_features` features (`eval_features`, written with the records `eval_records`). Each feature must point at the
  question it was made from, else DataError naming the files and `fix`."""
  from official.nlp.data import squad_lib

  v2 = bool(version_2_with_negative)
  with tf.io.gfile.GFile(eval_json, 'r') as f:
    dataset = json.load(f)['data']
  examples = squad_lib.read_squad_examples(eval_json, is_training=False, version_2_with_negative=v2)
  features = squad_format.read_eval_features(eval_features)
  if len(features) != num_features:
    raise errors.DataError(f'{eval_features} lists {len(features)} features but {eval_records} holds '
                           f'{num_features}: {fix}.')
  for f in features:
    if f.example_index >= len(examples) or examples[f.example_index].qas_id != f.qas_id:
      raise errors.DataError(f'{eval_features}: feature {f.unique_id} belongs to question {f.qas_id!r}, '
                             f'which is not question {f.example_index} of {eval_json}: {fix}.')
  return SquadEvalData(examples=examples, features=features, dataset=dataset, version_2_with_negative=v2,
                       do_lower_case=bool(do_lower_case))
