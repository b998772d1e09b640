"""What every dataset builder shares, its prelude: the merged `config.dataset`, this process's place, batch sizes
and token-id limits (`BuilderContext`, from `start_builder`), its eval passes (`EvalPasses`), the fine-tuning
builders' dataset defaults, and `builder`, which registers a builder behind that prelude. The pipelines themselves
are `pipeline.py`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import ml_collections
import tensorflow as tf

from core import errors, registry
from core.dataset import Dataset, NumpyBatch
from projects.bert.datasets import length_buckets, records
from projects.bert.datasets.pipeline import (RecordIterator, eval_dataset, local_batch_size, make_batch_parser,
                                             merge_dataset_config, num_eval_batches, numpy_batches, process_info,
                                             token_id_limits, train_iterator)
from projects.bert.datasets.records import RecordSpec


@dataclasses.dataclass(frozen=True)
class BuilderContext:
  """What every builder starts from (`start_builder`), and the pipelines built with it.

  `cfg` is `config.dataset` over the builder's defaults; `train_batch` the host-local train batch; `id_limits` the
  token-id bounds of `config.model` ({} without one), checked in every train and eval batch.
  """

  cfg: ml_collections.ConfigDict
  process_index: int
  process_count: int
  train_batch: int
  eval_global_batch: int
  id_limits: Mapping[str, Tuple[int, str]]

  @property
  def eval_batch(self) -> int:
    """The host-local eval batch (checked on first use: builders without eval data do not need it)."""
    return local_batch_size(self.eval_global_batch, self.process_count, 'eval_batch_size')

  def parser(self, spec: RecordSpec) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
    return make_batch_parser(spec, self.id_limits)

  def train_iterator(self, files: Sequence[str], *, spec: RecordSpec, dataset: str, compression: str,
                     cycle_length: int, add_batch_fields: Optional[Callable] = None,
                     warn_few_files: bool = True, rows_per_example: int = 1,
                     num_examples: Optional[int] = None) -> 'RecordIterator':
    """The train pipeline over `files` (seed, shuffle_buffer, train_length_buckets and train_megabatch from `cfg`), as
    a checkpointable iterator; `num_examples` (an epoch's examples, when known) bounds a length-sorted megabatch."""
    return train_iterator(files, spec=spec, dataset=dataset, compression=compression, host_batch=self.train_batch,
                          seed=self.cfg.seed, shuffle_buffer=self.cfg.shuffle_buffer, cycle_length=cycle_length,
                          process_index=self.process_index, process_count=self.process_count,
                          add_batch_fields=add_batch_fields, id_limits=self.id_limits, warn_few_files=warn_few_files,
                          rows_per_example=rows_per_example,
                          length_buckets=bool(self.cfg.get('train_length_buckets', False)),
                          megabatch=self.cfg.get('train_megabatch', length_buckets.TRAIN_MEGABATCH),
                          num_examples=num_examples)

  def eval_dataset(self, files: Sequence[str], *, spec: RecordSpec, compression: str, num_examples: int,
                   pad_values: Optional[Mapping[str, Any]] = None, mask_from: Optional[str] = None,
                   rows_per_example: int = 1) -> tf.data.Dataset:
    """One padded pass over the first `num_examples` records of `files` (see `eval_dataset`)."""
    return eval_dataset(files, compression=compression, parse=self.parser(spec), host_batch=self.eval_batch,
                        num_examples=num_examples, process_index=self.process_index,
                        process_count=self.process_count, pad_values=pad_values, mask_from=mask_from,
                        rows_per_example=rows_per_example)

  def num_eval_batches(self, num_examples: int) -> int:
    return num_eval_batches(num_examples, self.eval_global_batch)

  def split_fields(self, files: Mapping[str, Any], sizes: Mapping[str, Mapping[str, int]]) -> Dict[str, Any]:
    """The `DatasetMetaData` fields of a builder's eval and test splits: their names, sizes, eval batches per pass,
    and `files` ({'train': path, 'eval': {split: path}, 'test': {split: path}})."""
    return {'eval_splits': tuple(files['eval']), 'eval_sizes': dict(sizes['eval']),
            'num_eval_batches': {s: self.num_eval_batches(n) for s, n in sizes['eval'].items()},
            'test_splits': tuple(files['test']), 'test_sizes': dict(sizes['test']), 'files': files}

  def required(self, field: str, what: str, known: Sequence[str]) -> str:
    """config.dataset.`field`, which must be set: unset, an error that lists `known` (`what`: 'GLUE tasks')."""
    value = self.cfg.get(field)
    if not value:
      raise errors.ConfigError(f'config.dataset.{field} is not set; {what}: {", ".join(known)}.')
    return value

  def meta_data_path(self, file_name: str, prepare: str) -> str:
    """config.dataset.meta_data_file, else data_dir/`file_name`; neither set is an error that names the command
    (`prepare`, e.g. 'prepare glue') whose --output_dir data_dir is."""
    if not self.cfg.get('meta_data_file') and not self.cfg.get('data_dir'):
      raise errors.ConfigError(f'Set config.dataset.data_dir (the --output_dir of `{prepare}`) or '
                               f'config.dataset.meta_data_file (a meta data file written by `{prepare}`).')
    return self.cfg.get('meta_data_file') or os.path.join(self.cfg.data_dir, file_name)


def mask_from_is_real_example(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """A train batch's `batch_mask` from the upstream writers' `is_real_example` (which it replaces)."""
  batch = dict(batch)
  batch['batch_mask'] = tf.cast(batch.pop('is_real_example'), tf.float32)
  return batch


_EVAL_PAD = {'example_id': -1}  # padding rows of eval batches: no GLUE index


class EvalPasses:
  """Passes over eval record files: each file's record count checked once against what its meta data says (the
  padding arithmetic needs the exact size), and one pipeline per (file, examples) built once (a new pass re-iterates
  it without re-tracing). `fix` is the command that re-creates records and meta data.

  With `config.dataset.eval_length_buckets` (the default) a pass reads the whole split and yields its examples
  grouped by length, each batch padded to its bucket length (`length_buckets`), with their split positions, which
  `core.evaluation` restores; without it, batches in file order, every one padded to max_seq_length.
  """

  def __init__(self, ctx: BuilderContext, spec: RecordSpec, compression: str, meta_path: str, fix: str,
               bucketable: bool = True, pad_values: Optional[Mapping[str, Any]] = None,
               mask_from: Optional[str] = 'is_real_example'):
    self.ctx, self.spec, self.compression, self.meta_path, self.fix = ctx, spec, compression, meta_path, fix
    # Padding rows' fields and the record field batch_mask comes from (None: 1 for every record; SQuAD's features).
    self.pad_values, self.mask_from = (_EVAL_PAD if pad_values is None else pad_values), mask_from
    self.counted: set = set()  # files whose record count is known to match their size
    self._pipelines: Dict[Tuple[str, int], tf.data.Dataset] = {}
    # The builder's default says which; `bucketable` False where outputs are per token (one shape for all batches).
    self.bucketed = bucketable and bool(ctx.cfg.get('eval_length_buckets', False))
    seq = spec['input_mask'].length
    self.seq_keys = tuple(k for k, f in spec.items() if not f.scalar and f.length == seq)  # per-token features

  def __call__(self, path: str, size: int, num_examples: Optional[int], what: str) -> Iterator[NumpyBatch]:
    """Batches of the first `num_examples` (all: None) of the `size` records of `path`; `what` names them."""
    if path not in self.counted:
      actual = records.count_records(path, self.compression)
      if actual != size:
        raise errors.DataError(f'{path} holds {actual} records but {self.meta_path} says {what} has {size}; '
                               f're-create the records and meta data together with:\n  {self.fix}')
      self.counted.add(path)
    n = size if num_examples is None else int(num_examples)
    if not 0 < n <= size:
      raise errors.ConfigError(f'{n} examples asked of {what}, which has {size}.')
    if (path, n) not in self._pipelines:
      if self.bucketed:  # every process reads the whole split: they all plan the same length-grouped batches
        self._pipelines[path, n] = eval_dataset(
            [path], compression=self.compression, parse=self.ctx.parser(self.spec), host_batch=self.ctx.eval_batch,
            num_examples=n, process_index=0, process_count=1, pad_values=self.pad_values, mask_from=self.mask_from)
      else:
        self._pipelines[path, n] = self.ctx.eval_dataset([path], spec=self.spec, compression=self.compression,
                                                         num_examples=n, pad_values=self.pad_values,
                                                         mask_from=self.mask_from)
    batches = numpy_batches(self._pipelines[path, n], [path])
    return self._bucketed(batches, n) if self.bucketed else batches

  def _bucketed(self, batches: Iterator[NumpyBatch], n: int) -> Iterator[NumpyBatch]:
    yield from length_buckets.bucketed_batches(
        length_buckets.concat_examples(batches, n), host_batch=self.ctx.eval_batch,
        process_index=self.ctx.process_index, process_count=self.ctx.process_count, seq_keys=self.seq_keys,
        pad_values=self.pad_values)

  def split_iterator(self, kind: str, available: Mapping[str, str], sizes: Mapping[str, int], default: Optional[str],
                     train: Tuple[str, int], describe: Callable[[str], str], missing: Callable[[str], Exception]
                     ) -> Callable[..., Iterator[NumpyBatch]]:
    """A dataset's `valid_iter` (`kind` 'eval') or `test_iter` ('test'): `(split=None, num_examples=None)` -> one
    pass over that split of `available` ({split: file} with `sizes`; None: `default`); 'eval' also reads the train
    file `train` (path, size) as split 'train'. `describe(split)` names a split in errors; `missing(split)` is the
    error for a split the data does not have."""
    def make(split: Optional[str] = None, num_examples: Optional[int] = None) -> Iterator[NumpyBatch]:
      split = default if split is None else split
      if kind == 'eval' and split == 'train':
        return self(train[0], train[1], num_examples, describe('train'))
      if split not in available:
        raise missing(split)
      return self(available[split], sizes[split], num_examples, describe(split))
    return make


# Every builder's train-batch grouping defaults: off, so that a builder called directly (tests, the Model Garden
# fidelity checks) gives exact padded batches; the fine-tuning configs turn it on (configs/training.py).
TRAIN_GROUPING_DEFAULTS = {'train_length_buckets': False, 'train_megabatch': length_buckets.TRAIN_MEGABATCH}


def finetuning_defaults(**fields: Any) -> ml_collections.ConfigDict:
  """The `config.dataset` defaults of a fine-tuning builder that reads `prepare`'s output: where its meta data is
  (data_dir, or meta_data_file), the train file (from the meta data when ''), max_seq_length (None: the records'),
  shuffling, train-batch grouping; `fields` are the builder's own (its task or version, ...), first."""
  return ml_collections.ConfigDict({**fields, 'data_dir': '', 'meta_data_file': '', 'train_file': '',
                                    'max_seq_length': None, 'shuffle_buffer': 10_000, 'seed': 0,
                                    **TRAIN_GROUPING_DEFAULTS})


def start_builder(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, builder: str, *,
                  process_index: Optional[int] = None, process_count: Optional[int] = None) -> BuilderContext:
  """The shared prelude of every builder: merged config, process, batch sizes and token-id limits.

  `process_*` override JAX's (tests simulating several hosts).
  """
  index, count = process_info(process_index, process_count)
  return BuilderContext(cfg=merge_dataset_config(config, defaults, builder), process_index=index,
                        process_count=count, train_batch=local_batch_size(config.batch_size, count, 'batch_size'),
                        eval_global_batch=config.get('eval_batch_size') or config.batch_size,
                        id_limits=token_id_limits(config))


def builder(name: str, defaults: Callable[[], ml_collections.ConfigDict]
            ) -> Callable[[Callable[[BuilderContext, ml_collections.ConfigDict], Dataset]], Callable[..., Dataset]]:
  """Registers `fn(ctx, config) -> Dataset` as the dataset builder `name`, behind the shared prelude
  (`start_builder` with `defaults()`): what the registry holds is `build(config, *, process_index=None,
  process_count=None)`, as core calls builders (`process_*` override JAX's: tests simulating several hosts)."""
  def wrap(fn: Callable[[BuilderContext, ml_collections.ConfigDict], Dataset]) -> Callable[..., Dataset]:
    @functools.wraps(fn)
    def build(config: ml_collections.ConfigDict, *, process_index: Optional[int] = None,
              process_count: Optional[int] = None) -> Dataset:
      return fn(start_builder(config, defaults(), name, process_index=process_index, process_count=process_count),
                config)
    registry.DATASETS.register(name)(build)
    return build
  return wrap
