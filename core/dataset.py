"""The Scenic-style dataset contract and host-side iterator helpers.

A registered dataset builder is `build(config) -> Dataset`. Iterators yield *host-local* numpy batches (this
process's slice of the global batch); `core.sharding` turns them into global `jax.Array`s.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional

import numpy as np

NumpyBatch = Dict[str, np.ndarray]


class Dataset(NamedTuple):
  """What a dataset builder returns (mirrors Scenic's `dataset_utils.Dataset`).

  `train_iter` may be a `CheckpointableIterator` so that a resumed run continues at the same input position.
  `valid_iter` / `test_iter` are callables returning a fresh iterator over the whole split (or None), since
  evaluation passes over the split many times. `meta_data` holds sizes, shapes, dtypes and task facts.
  """

  train_iter: Optional[Iterator[NumpyBatch]]
  valid_iter: Optional[Any]
  test_iter: Optional[Any]
  meta_data: Dict[str, Any]


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
