"""The input pipelines of the BERT dataset builders, and the prelude every builder starts with.

`start_builder` is that prelude: `config.dataset` merged over the builder's defaults, this process's index and
count, the host batch sizes, and the token-id limits of `config.model`. Its `BuilderContext` builds every pipeline,
so each builder's batches are checked the same way:
  - the train pipeline (`train_iterator`): deterministic for a seed (so `CheckpointableIterator` save/restore
    resumes exactly), repeated, shuffled, each process reading its own files (or its own records when files are
    fewer than processes), batched to the host batch, parsed in batches, prefetched; its fingerprint (files, batch
    size, lengths, seed, ...) makes a resume into another pipeline fail with what changed; with `length_buckets`
    (`config.dataset.train_length_buckets`) batches are grouped by length (`length_buckets.train_batches`: every
    process reads the whole stream and keeps its rows of the same global batches);
  - the eval pipeline (`eval_dataset`): every record exactly once over all processes, the last batch padded with
    batch_mask 0, and every process yielding the same number of batches (needed for the collective eval step);
  - in both, every batch's token ids are checked against the embedding sizes (XLA would clamp larger ones);
  - in both, `rows_per_example` > 1 keeps that many consecutive records together as one example (COPA's two
    choices): they are shuffled, sharded and batched as one, and every feature gains a dimension [B, rows, ...].
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import tensorflow as tf
from absl import logging

from core import errors
from core import sharding as sharding_lib
from core.dataset import CheckpointableIterator, NumpyBatch
from projects.bert.datasets import length_buckets as buckets_lib
from projects.bert.datasets import records
from projects.bert.datasets.records import RecordSpec

# ----------------------------------------------------------------------------------------------------- config


def merge_dataset_config(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict,
                         builder: str) -> ml_collections.ConfigDict:
  """`defaults` overridden by the fields of `config.dataset`; the user's config is left untouched (it may be locked).

  Unknown fields are logged, not fatal: configs may carry fields for other components.
  """
  given = config.get('dataset') or {}
  given = given.to_dict() if hasattr(given, 'to_dict') else dict(given)
  merged = defaults.to_dict()
  unknown = sorted(set(given) - set(merged))
  if unknown:
    logging.warning('%s ignores config.dataset fields %s (it reads %s).', builder, unknown, sorted(merged))
  merged.update(given)
  return ml_collections.ConfigDict(merged)


def local_batch_size(global_batch_size: int, process_count: int, field: str) -> int:
  """This process's rows of a global batch; the global batch must split over all devices and processes."""
  if not global_batch_size or global_batch_size <= 0:
    raise errors.ConfigError(f'config.{field} must be a positive global batch size, got {global_batch_size!r}.')
  try:
    sharding_lib.host_batch_size(global_batch_size)  # the check against the device count
  except ValueError as e:
    raise errors.ConfigError(f'config.{field}: {e}') from None
  if global_batch_size % process_count:
    raise errors.ConfigError(f'config.{field}={global_batch_size} does not split over {process_count} processes.')
  return global_batch_size // process_count


def process_info(process_index: Optional[int], process_count: Optional[int]) -> Tuple[int, int]:
  """(index, count) of this process; explicit values (tests simulating several hosts) win over JAX's."""
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= index < count:
    raise errors.ConfigError(f'process_index {index} is not in [0, {count}).')
  return index, count


# ------------------------------------------------------------------------------------------------- pipelines


# Token ids beyond an embedding table are clamped by XLA's gather without an error; the parser checks every batch.
_ID_CHECK = 'token id out of range'


def token_id_limits(config: ml_collections.ConfigDict) -> Dict[str, Tuple[int, str]]:
  """{batch key: (exclusive upper bound, config field)} for the id features, from `config.model` ({} without one)."""
  model = config.get('model')
  if not model or not model.get('vocab_size'):
    return {}
  limits = {k: (int(model.vocab_size), 'model.vocab_size') for k in ('input_ids', 'masked_lm_ids')}
  if model.get('type_vocab_size'):
    limits['segment_ids'] = (int(model.type_vocab_size), 'model.type_vocab_size')
  return limits


def make_batch_parser(spec: RecordSpec, id_limits: Optional[Mapping[str, Tuple[int, str]]] = None
                      ) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
  """`serialized [n] -> {key: [n] or [n, length]}` cast to the spec's dtypes (records hold int64).

  `id_limits` ({key: (bound, config field)}, from `token_id_limits`) makes every batch check its ids against their
  bounds: a record holding a larger one fails reading, named by `RecordIterator` / `numpy_batches`.
  """
  features = {}
  for f in spec.values():
    shape = [] if f.scalar else [f.length]
    tf_type = tf.int64 if f.kind == 'int' else tf.float32
    default = None if f.required else (f.default if f.scalar else [f.default] * f.length)
    features[f.name] = tf.io.FixedLenFeature(shape, tf_type, default_value=default)
  limits = {k: v for k, v in (id_limits or {}).items() if k in spec}

  def parse(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(serialized, features)
    checks = [tf.debugging.Assert(tf.reduce_max(parsed[spec[key].name]) < bound,
                                  [_ID_CHECK, key, field, bound, tf.reduce_max(parsed[spec[key].name])])
              for key, (bound, field) in limits.items()]
    with tf.control_dependencies(checks):
      return {key: tf.cast(tf.identity(parsed[f.name]), f.dtype) for key, f in spec.items()}

  return parse


def grouped_parser(parse: Callable[[tf.Tensor], Dict[str, tf.Tensor]], rows_per_example: int
                   ) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
  """`parse` for batches of grouped records: serialized [n, rows] -> {key: [n, rows] or [n, rows, length]}."""
  if rows_per_example == 1:
    return parse

  def parse_groups(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    n = tf.shape(serialized)[0]
    flat = parse(tf.reshape(serialized, [-1]))
    return {k: tf.reshape(v, tf.concat([[n, rows_per_example], tf.shape(v)[1:]], 0)) for k, v in flat.items()}

  return parse_groups


def _group(ds: tf.data.Dataset, rows_per_example: int) -> tf.data.Dataset:
  """Consecutive records as one element of [rows_per_example] (a file's rows count is a multiple of it)."""
  return ds if rows_per_example == 1 else ds.batch(rows_per_example, drop_remainder=True)


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True  # same order for a seed: exact resume and reproducible runs
  options.experimental_optimization.map_parallelization = True
  return options


def train_dataset(files: Sequence[str], *, compression: str, parse: Callable, host_batch: int, seed: int,
                  shuffle_buffer: int, cycle_length: int, process_index: int, process_count: int,
                  add_batch_fields: Optional[Callable] = None, warn_few_files: bool = True,
                  rows_per_example: int = 1, length_buckets: Optional[Mapping[str, Any]] = None) -> tf.data.Dataset:
  """Repeated, shuffled, batched and parsed records of this process's share of `files`.

  With at least as many files as processes each process reads every `process_count`-th file (files shuffled per
  epoch, interleaved); otherwise every process reads all files and keeps every `process_count`-th record. Records
  are shuffled within each epoch (a new order every epoch, the same for the same seed); batches may span epochs.
  `length_buckets` ({'megabatch': K, 'buckets': lengths, 'seq_keys': per-token keys}) groups batches by length
  (`length_buckets.train_batches`); every process then reads all files, the same stream, and keeps its own rows.
  """
  files = list(files)
  if not shuffle_buffer or shuffle_buffer < 1:
    raise errors.ConfigError(f'config.dataset.shuffle_buffer must be at least 1 (1 = no shuffling), got '
                             f'{shuffle_buffer!r}.')
  global_batch, global_index = host_batch * process_count, process_index
  if length_buckets:  # one stream for all processes: they plan the same global batches (one padded length a step)
    process_index, process_count = 0, 1
  if len(files) >= process_count:
    own = files[process_index::process_count]
    ds = tf.data.Dataset.from_tensor_slices(own).shuffle(len(own), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: _group(tf.data.TFRecordDataset(f, compression_type=compression), rows_per_example),
                       cycle_length=max(1, min(cycle_length, len(own))), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  else:
    log = logging.warning if warn_few_files else logging.info
    log('%d record files for %d processes: every process reads all files and keeps every %d-th record. '
        'Write at least one file per process for faster input.', len(files), process_count, process_count)
    ds = _group(tf.data.TFRecordDataset(files, compression_type=compression), rows_per_example)
    ds = ds.shard(process_count, process_index)
  # Shuffle within an epoch, then repeat: every epoch passes over all records once (in a new order each time).
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  if length_buckets:
    ds = buckets_lib.train_batches(ds, parse=grouped_parser(parse, rows_per_example), global_batch=global_batch,
                                   host_batch=host_batch, process_index=global_index, seed=seed, **length_buckets)
  else:
    ds = ds.batch(host_batch, drop_remainder=True)
    ds = ds.map(grouped_parser(parse, rows_per_example), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if add_batch_fields is not None:
    ds = ds.map(add_batch_fields)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def train_iterator(files: Sequence[str], *, spec: RecordSpec, dataset: str, host_batch: int, process_index: int,
                   process_count: int, id_limits: Optional[Mapping[str, Tuple[int, str]]] = None,
                   length_buckets: bool = False, megabatch: int = buckets_lib.TRAIN_MEGABATCH,
                   num_examples: Optional[int] = None, **kwargs: Any) -> 'RecordIterator':
  """`train_dataset(files, host_batch=..., **kwargs)` (parsed with `spec`) as a checkpointable iterator whose
  fingerprint holds everything that defines an input position: a resume into a pipeline that differs in any of
  them (other files, batch size, lengths, seed, process count, length grouping, ...) is refused with what changed.

  `length_buckets`: batches grouped by length in megabatches of `megabatch` global batches (at most the global
  batches in one epoch of `num_examples`, when known, so that a megabatch never sorts several epochs together), each
  batch's per-token features cut to the smallest of `length_buckets.bucket_lengths(S)` holding its longest example.
  With one bucket (S <= 16) there is nothing to gain and batches are the padded pipeline's."""
  grouping = None
  global_batch = host_batch * process_count
  if length_buckets:
    if not isinstance(megabatch, int) or megabatch < 1:
      raise errors.ConfigError(f'config.dataset.train_megabatch must be a positive number of global batches, got '
                               f'{megabatch!r}.')
    if num_examples:
      megabatch = max(1, min(megabatch, int(num_examples) // global_batch))
    buckets = list(buckets_lib.bucket_lengths(spec['input_mask'].length))
    if len(buckets) > 1:
      grouping = {'megabatch': megabatch, 'buckets': buckets, 'seq_keys': list(buckets_lib.seq_keys_of(spec))}
      logging.info('%s: train batches grouped by length (megabatches of %d global batches of %d), each cut to one of '
                   'the bucket lengths %s: per-token features %s.', dataset, megabatch, global_batch, buckets,
                   grouping['seq_keys'])
  ds = train_dataset(files, parse=make_batch_parser(spec, id_limits), host_batch=host_batch,
                     process_index=process_index, process_count=process_count, length_buckets=grouping, **kwargs)
  fingerprint = {
      'dataset': dataset, 'train_files': list(files), 'global_batch_size': global_batch,
      'process_count': process_count, 'record_lengths': {k: f.length for k, f in spec.items() if not f.scalar},
      **{k: v for k, v in kwargs.items() if k in ('seed', 'shuffle_buffer', 'cycle_length', 'compression')}}
  if kwargs.get('rows_per_example', 1) != 1:
    fingerprint['rows_per_example'] = kwargs['rows_per_example']
  if grouping:  # absent when off: checkpoints written before the option still resume
    fingerprint['train_length_buckets'] = {'megabatch': megabatch, 'buckets': grouping['buckets']}
  return RecordIterator(ds, files, fingerprint=fingerprint)


def num_eval_batches(num_examples: int, global_batch: int) -> int:
  """Batches every process runs to cover `num_examples` once with global batches of `global_batch`."""
  return math.ceil(num_examples / global_batch)


def eval_dataset(files: Sequence[str], *, compression: str, parse: Callable, host_batch: int, num_examples: int,
                 process_index: int, process_count: int, pad_values: Optional[Mapping[str, Any]] = None,
                 mask_from: Optional[str] = None, rows_per_example: int = 1) -> tf.data.Dataset:
  """One pass over the first `num_examples` records (groups of `rows_per_example` records) of `files` (in order),
  padded to whole batches.

  Process i gets records i, i + P, i + 2P, ... and every process yields `num_eval_batches(num_examples,
  host_batch * P)` batches, each with `batch_mask` float32 [host_batch]: 1 for real records (or the record's
  `mask_from` field, e.g. is_real_example), 0 for padding. Padded rows hold zeros, or `pad_values[key]`.
  """
  pad_values = dict(pad_values or {})
  n_batches = num_eval_batches(num_examples, host_batch * process_count)
  local_examples = len(range(process_index, num_examples, process_count))
  real_batches = math.ceil(local_examples / host_batch)

  def pad_batch(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    n = tf.shape(next(iter(batch.values())))[0]
    mask = tf.cast(batch.pop(mask_from), tf.float32) if mask_from else tf.ones([n], tf.float32)
    if len(mask.shape) > 1:  # grouped rows: the example is real when its first row is
      mask = mask[:, 0]
    batch['batch_mask'] = mask
    out = {}
    for key, x in batch.items():
      paddings = [[0, host_batch - n]] + [[0, 0]] * (len(x.shape) - 1)
      padded = tf.pad(x, paddings, constant_values=tf.cast(pad_values.get(key, 0), x.dtype))
      padded.set_shape([host_batch] + list(x.shape[1:]))
      out[key] = padded
    return out

  ds = _group(tf.data.TFRecordDataset(list(files), compression_type=compression), rows_per_example)
  ds = ds.take(num_examples).shard(process_count, process_index).batch(host_batch)
  ds = ds.map(grouped_parser(parse, rows_per_example), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.map(pad_batch)
  if n_batches > real_batches:  # processes with fewer records still run the collective eval steps
    empty = {k: tf.fill([host_batch] + list(s.shape[1:]), tf.cast(pad_values.get(k, 0), s.dtype))
             for k, s in ds.element_spec.items()}
    empty['batch_mask'] = tf.zeros([host_batch], tf.float32)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(empty).repeat(n_batches - real_batches))
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


_READ_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError)


def _read_error(files: Sequence[str], e: tf.errors.OpError) -> ValueError:
  message, described = records.op_message(e), records.describe_files(files)
  if _ID_CHECK in message:  # "... [token id out of range] [input_ids] [model.vocab_size] [30] [57]"
    key, field, bound, found = re.findall(r'\[([^\]]*)\]', message.split(_ID_CHECK, 1)[1])[:4]
    return errors.DataError(
        f'The records of {described} hold {key} up to {found}, but config.{field} is {bound}: they were made '
        f'with a larger vocabulary than the model\'s embedding (XLA would silently clamp such ids). Set '
        f'--config.{field} to the size of the vocab the records were made with (and use a checkpoint of that vocab), '
        f'or re-create the records with the model\'s vocab.txt.')
  if isinstance(e, tf.errors.DataLossError) and len(files) > 1:
    damaged = _find_damaged(files)  # TensorFlow's message names an offset, not the file
    if damaged is not None:
      return damaged
  return errors.DataError(f'Reading the records of {described} failed: {message}. A file is corrupt, '
                          f'truncated or was removed, or holds records unlike its first one; re-create it with '
                          f'`python -m projects.bert.datasets.prepare`.')


def _find_damaged(files: Sequence[str], budget_s: float = 300.0) -> Optional[errors.DataError]:
  """The error naming the first of `files` that does not read to its end (within `budget_s` of reading)."""
  logging.warning('A record file is damaged; reading the %d files to find which.', len(files))
  t0 = time.monotonic()
  compression = records.common_compression(files)
  for path in files:
    if time.monotonic() - t0 > budget_s:
      break
    try:
      records.count_records(path, compression)
    except errors.DataError as e:
      return e
  return None


class RecordIterator(CheckpointableIterator):
  """A `CheckpointableIterator` whose read errors name the record files instead of a tf.data op."""

  def __init__(self, tf_dataset: tf.data.Dataset, files: Sequence[str], fingerprint: Optional[Dict[str, Any]] = None):
    super().__init__(tf_dataset, fingerprint=fingerprint)
    self.files = list(files)

  def __next__(self) -> NumpyBatch:
    try:
      return super().__next__()
    except _READ_ERRORS as e:
      raise _read_error(self.files, e) from None


def numpy_batches(ds: tf.data.Dataset, files: Sequence[str]) -> Iterator[NumpyBatch]:
  """Host-local numpy batches of a finite dataset, with read errors naming the files."""
  it = iter(ds)
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except _READ_ERRORS as e:
      raise _read_error(files, e) from None
    yield {k: v._numpy() for k, v in batch.items()}  # pylint: disable=protected-access


def input_specs(spec: RecordSpec, extra: Optional[Mapping[str, Tuple[Tuple[int, ...], str]]] = None
                ) -> Dict[str, Tuple[Tuple[int, ...], str]]:
  """`DatasetMetaData.input_specs`: {key: (shape without the batch dimension, dtype name)}."""
  specs = {k: (() if f.scalar else (int(f.length),), f.dtype.name) for k, f in spec.items()}
  specs.update(extra or {})
  return specs



# ------------------------------------------------------------------------------------------------ the prelude
