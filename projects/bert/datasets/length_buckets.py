"""Batches grouped by length: pay for real tokens, not padding (evaluation, and training with
`config.dataset.train_length_buckets`).

A split's examples are sorted by their real length (the `input_mask` sum; for grouped rows, the longest row) and cut
into global batches in that order; each batch is padded only to the smallest bucket length that holds its longest
example (`bucket_lengths`: 16, 32, 64, ... then max_seq_length), so one pass compiles a handful of shapes, each once.
Every batch carries `core.dataset.SPLIT_POSITION`, and `core.evaluation` puts the gathered outputs back in split
order. The number of batches is the padded pass's (`num_eval_batches`), the same on every process: every process
plans the same global batches from the whole split and takes its own slice of each.

Why the results are the padded run's: a padded position is masked out of every attention (its weight is exactly
0), and every other layer works per position, so a real token's output does not depend on how many padding
positions follow it; only the order of float32 sums inside XLA may differ (logits within float32 rounding).

Training (`train_batches`: tf.data's `bucket_by_sequence_length` grouping, applied within megabatches as fairseq's
and Hugging Face's `group_by_length` do): the shuffled, repeated record stream is cut into megabatches of K global
batches; each megabatch is grouped by bucket (a stable sort by the smallest bucket holding each example, so inside a
bucket the stream's random order stays) and cut into K global batches of exactly the global batch size, whose order
is shuffled (seeded by the dataset seed and the megabatch's index); each batch is cut to its bucket length. Every
record still comes once per epoch of the stream (a megabatch only reorders K * batch consecutive records), every step
has the same number of examples, and the pipeline is all checkpointable tf.data (a resume is exact). Every process
reads the same stream, plans the same global batches and keeps its own rows, so all processes' rows of a step share
one padded length.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from core.dataset import SPLIT_POSITION, NumpyBatch

SMALLEST_BUCKET = 16  # a multiple of 16: the flash kernel's sequence granularity
# Global batches per sorted megabatch in training: Hugging Face's `group_by_length` sorts 50 batches at a time.
TRAIN_MEGABATCH = 50


def bucket_lengths(max_seq_length: int, smallest: int = SMALLEST_BUCKET) -> Tuple[int, ...]:
  """The padded lengths a pass may use: powers of two from `smallest` below `max_seq_length`, then it (128: 16, 32,
  64, 128; 384: 16, 32, 64, 128, 256, 384)."""
  out, length = [], smallest
  while length < max_seq_length:
    out.append(length)
    length *= 2
  return (*out, int(max_seq_length))


def real_lengths(input_mask: np.ndarray) -> np.ndarray:
  """input_mask int [n, seq] (or [n, rows, seq]) -> int64 [n]: each example's real tokens (its longest row's)."""
  mask = np.asarray(input_mask)
  return mask.reshape(len(mask), -1, mask.shape[-1]).sum(-1).max(-1).astype(np.int64)


def concat_examples(batches: Iterable[NumpyBatch], num_examples: int) -> Dict[str, np.ndarray]:
  """The first `num_examples` rows of a single-process padded pass (records in split order, then padding)."""
  batches = list(batches)
  return {k: np.concatenate([b[k] for b in batches])[:num_examples] for k in batches[0]}


def bucketed_batches(examples: Mapping[str, np.ndarray], *, host_batch: int, process_index: int, process_count: int,
                     seq_keys: Sequence[str], pad_values: Optional[Mapping[str, Any]] = None,
                     buckets: Optional[Sequence[int]] = None) -> Iterator[NumpyBatch]:
  """This process's length-grouped eval batches of a whole split.

  `examples`: {key: [n, ...]} in split order, with `batch_mask` and `input_mask`; `seq_keys` are the per-token
  features ([n, seq] or [n, rows, seq]), cut to each batch's bucket length (`buckets`, default `bucket_lengths`).
  Yields {key: [host_batch, ...]} and `SPLIT_POSITION` int32 [host_batch]; rows past the split are padding
  (batch_mask 0, position -1, `pad_values[key]` or 0).
  """
  pad_values = dict(pad_values or {})
  n = len(examples['batch_mask'])
  seq_len = examples['input_mask'].shape[-1]
  buckets = tuple(sorted(buckets or bucket_lengths(seq_len)))
  if buckets[-1] < seq_len:
    raise ValueError(f'The largest bucket {buckets[-1]} is shorter than the records ({seq_len} tokens).')
  lengths = real_lengths(examples['input_mask'])
  order = np.argsort(lengths, kind='stable')  # ties keep split order: the plan is the same on every process
  global_batch = host_batch * process_count
  for start in range(0, n, global_batch):
    rows = order[start:start + global_batch][process_index * host_batch:(process_index + 1) * host_batch]
    longest = int(lengths[order[start:start + global_batch]].max())
    width = next(b for b in buckets if b >= longest)
    batch = {}
    for key, values in examples.items():
      x = values[rows]
      if key in seq_keys:
        x = x[..., :width]
      padded = np.full((host_batch,) + x.shape[1:], pad_values.get(key, 0), values.dtype)
      padded[:len(rows)] = x
      batch[key] = padded
    position = np.full(host_batch, -1, np.int32)
    position[:len(rows)] = rows
    batch[SPLIT_POSITION] = position
    yield batch


def seq_keys_of(spec: Mapping[str, Any]) -> Tuple[str, ...]:
  """The per-token features of a `RecordSpec`: those as long as `input_mask` (masked_lm_* are per prediction, not per
  token, even where max_predictions_per_seq equals the sequence length)."""
  seq = spec['input_mask'].length
  return tuple(k for k, f in spec.items() if not f.scalar and f.length == seq and not k.startswith('masked_lm'))


def train_batches(stream: tf.data.Dataset, *, parse: Any, global_batch: int, host_batch: int, process_index: int,
                  megabatch: int, seed: int, seq_keys: Sequence[str], buckets: Sequence[int]) -> tf.data.Dataset:
  """This process's rows of length-grouped global train batches.

  `stream`: serialized records (or groups of them, [rows]), shuffled and repeated, the same on every process;
  `parse`: serialized [n] (or [n, rows]) -> {key: [n, ...]}. Yields {key: [host_batch, ...]}, the `seq_keys`
  cut to [host_batch, (rows,) width], width the smallest of `buckets` holding the global batch's longest example.
  """
  buckets_t = tf.constant(sorted(int(b) for b in buckets), tf.int32)

  def lengths_of(input_mask: tf.Tensor) -> tf.Tensor:
    """int [n, seq] or [n, rows, seq] -> int32 [n]: real tokens (of the longest row)."""
    total = tf.reduce_sum(tf.cast(input_mask, tf.int32), axis=-1)
    return total if len(total.shape) == 1 else tf.reduce_max(total, axis=-1)

  def plan(index: tf.Tensor, examples: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """{key: [K * G, ...]} -> {key: [K, G, ...]}: grouped by bucket, cut into K batches, their order shuffled."""
    # By bucket, not by exact length: a bucket's batches cost the same either way, and inside a bucket the stream's
    # shuffled order is kept (a stable sort), so a batch is a random draw of its bucket's examples. An exact-length
    # sort put examples of one length together: one passage's questions or candidates, one question kind.
    bucket = tf.searchsorted(buckets_t, lengths_of(examples['input_mask']), side='left')
    order = tf.argsort(bucket, stable=True)
    # Stateless: the batch order depends on (seed, megabatch index) only, so a restored iterator replays it.
    draw = tf.random.stateless_uniform([megabatch], seed=tf.stack([tf.cast(seed, tf.int64), index]))
    batch_order = tf.argsort(draw)
    out = {}
    for key, x in examples.items():
      x = tf.gather(x, order)
      x = tf.reshape(x, tf.concat([[megabatch, global_batch], tf.shape(x)[1:]], 0))
      out[key] = tf.gather(x, batch_order)
    return out

  def cut(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """A global batch [G, ...] -> this process's rows, the per-token features cut to the batch's bucket length."""
    longest = tf.reduce_max(lengths_of(batch['input_mask']))
    width = tf.reduce_min(tf.boolean_mask(buckets_t, buckets_t >= longest))
    rows = slice(process_index * host_batch, (process_index + 1) * host_batch)
    return {k: (x[rows, ..., :width] if k in seq_keys else x[rows]) for k, x in batch.items()}

  ds = stream.batch(megabatch * global_batch, drop_remainder=True)
  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.enumerate().map(plan).unbatch()
  return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
