"""The Scenic-style dataset contract: what a builder returns, its meta-data record, and host-side iterator helpers.

A registered dataset builder is `build(config) -> Dataset`. Iterators yield *host-local* numpy batches (this
process's slice of the global batch); `core.sharding` turns them into global `jax.Array`s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

import numpy as np

NumpyBatch = Dict[str, np.ndarray]
InputSpecs = Mapping[str, Tuple[Tuple[int, ...], str]]  # batch key -> (shape without the batch dimension, dtype)
# The batch key of an eval example's place in its split (int32 [B], -1 on padding rows). Eval batches that do not
# come in split order (grouped by length) carry it, and `core.evaluation` puts every gathered output back in order.
SPLIT_POSITION = 'split_position'


@dataclasses.dataclass(frozen=True)
class DatasetMetaData:
  """The facts every dataset builder states about its data, one name per fact.

  input_specs         {batch key: (shape without the batch dimension, dtype name)} of a training batch; models
                      build their example batch (parameter shapes) from it
  task                what the data is for ('pretraining', a GLUE task name, ...)
  num_train_examples  examples in one pass over the train split (None: unknown, e.g. a stream of files)
  num_labels          classes of a classification task (1 for regression; None when there are no labels)
  max_seq_length      tokens per example, for text data (None otherwise)
  eval_splits         the evaluation splits `valid_iter(split)` accepts, in the builder's order
  eval_sizes          {split: examples}, the real examples of one pass (padding excluded)
  num_eval_batches    {split: batches} of one pass, the same on every process
  test_splits, test_sizes  the same for `test_iter(split)` (unlabelled splits)
  files               where the data was read from ({'train': ..., 'eval': ..., 'test': ...})
  extra               builder-specific facts (record format, label list, ...), documented by each builder
  """

  input_specs: InputSpecs
  task: str = ''
  num_train_examples: Optional[int] = None
  num_labels: Optional[int] = None
  max_seq_length: Optional[int] = None
  eval_splits: Tuple[str, ...] = ()
  eval_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
  num_eval_batches: Mapping[str, int] = dataclasses.field(default_factory=dict)
  test_splits: Tuple[str, ...] = ()
  test_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
  files: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Dataset(NamedTuple):
  """What a dataset builder returns (mirrors Scenic's `dataset_utils.Dataset`).

  `train_iter` may be a `CheckpointableIterator` so that a resumed run continues at the same input position.
  `valid_iter` / `test_iter` are callables `(split=None) -> iterator` over one pass of a split (None: the builder
  has none), since evaluation passes over a split many times. Their batches may differ in sequence length and
  come out of split order when they carry `SPLIT_POSITION`. `meta_data` is the builder's `DatasetMetaData`.
  """

  train_iter: Optional[Iterator[NumpyBatch]]
  valid_iter: Optional[Any]
  test_iter: Optional[Any]
  meta_data: DatasetMetaData


class CheckpointableIterator:
  """An iterator over host-local batches whose position can be saved and restored.

  Wraps a `tf.data.Dataset`; the state (including shuffle buffers) is saved with a `tf.train.Checkpoint`, which
  TensorFlow supports for every standard tf.data transformation. `fingerprint` (JSON-able: files, batch size,
  lengths, seed, ...) describes the pipeline; checkpoints store it and a resume into a pipeline with another one is
  refused with what changed (`core.checkpoint`).
  """

  def __init__(self, tf_dataset: Any, to_numpy: Optional[Callable[[Any], NumpyBatch]] = None,
               fingerprint: Optional[Dict[str, Any]] = None):
    import tensorflow as tf  # Local: core works without TF for datasets that do not use tf.data.

    self._tf = tf
    self._dataset = tf_dataset
    self._iterator = iter(tf_dataset)
    self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)
    self.fingerprint = fingerprint
    self._to_numpy = to_numpy or (lambda b: {k: v._numpy() for k, v in b.items()})  # pylint: disable=protected-access

  def __iter__(self) -> 'CheckpointableIterator':
    return self

  def __next__(self) -> NumpyBatch:
    return self._to_numpy(next(self._iterator))

  def save(self, path: str) -> None:
    """Writes the iterator position under the prefix `path`."""
    self._checkpoint.write(path)

  def restore(self, path: str) -> None:
    self._checkpoint.read(path).assert_consumed()

  @property
  def element_spec(self) -> Any:
    return self._dataset.element_spec
