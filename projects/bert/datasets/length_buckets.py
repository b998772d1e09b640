"""Evaluation batches grouped by length: pay for real tokens, not padding.

A split's examples are sorted by their real length (the `input_mask` sum; for grouped rows, the longest row) and cut
into global batches in that order; each batch is padded only to the smallest bucket length that holds its longest
example (`bucket_lengths`: 16, 32, 64, ... then max_seq_length), so one pass compiles a handful of shapes, each once.
Every batch carries `core.dataset.SPLIT_POSITION`, and `core.evaluation` puts the gathered outputs back in split
order. The number of batches is the padded pass's (`num_eval_batches`), the same on every process: every process
plans the same global batches from the whole split and takes its own slice of each.

Why the results are the padded run's: a padded position is masked out of every attention (its weight is exactly
0), and every other layer works per position, so a real token's output does not depend on how many padding
positions follow it; only the order of float32 sums inside XLA may differ (logits within float32 rounding).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from core.dataset import SPLIT_POSITION, NumpyBatch

SMALLEST_BUCKET = 16  # a multiple of 16: the flash kernel's sequence granularity


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
