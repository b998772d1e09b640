"""k nearest neighbours by inner product on the accelerator, block by block: `xtreme_retrieval.knn`'s results (the
numpy reference, which the tests compare it with) at the speed BUCC's ~400k x ~400k sentences need.

  sims, inds = knn_device(x, y, k, block=8192)     # x: [n, dim], y: [m, dim] -> [n, k] float32, [n, k] int64

Memory stays bounded: y goes to the device once ([m, dim] float32: 400k x 768 is 1.2 GB), x a block of `block` rows
at a time, and each step of the scan over y's blocks holds one [block, block] similarity matrix (8192^2 float32 =
256 MB) merged into the running top k ([block, k + block] candidate similarities). No [n, m] matrix exists, on the
device or the host. The product runs at full float32 precision (`Precision.HIGHEST`: no TF32 / bfloat16 passes on
GPUs), so the neighbours are the reference's up to float32 rounding; ties keep the lower index, as in the reference.
"""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=('k',))
def _block_top_k(xb: jax.Array, y_blocks: jax.Array, num_rows: jax.Array, k: int) -> Tuple[jax.Array, jax.Array]:
  """The k best (similarity, row) of each row of xb [bx, dim] among the first `num_rows` rows of y_blocks
  [num_blocks, by, dim] (later rows are padding)."""
  by = y_blocks.shape[1]

  def merge(carry, inputs):
    best_s, best_i = carry
    yb, start = inputs
    s = jnp.dot(xb, yb.T, precision=jax.lax.Precision.HIGHEST)  # [bx, by]
    rows = start + jnp.arange(by, dtype=jnp.int32)
    s = jnp.where(rows[None, :] < num_rows, s, -jnp.inf)
    # The running best come first and have the lower rows: top_k's ties to the lower position keep the lower row.
    top_s, pos = jax.lax.top_k(jnp.concatenate([best_s, s], axis=1), k)
    # Position -> row without a [bx, k + by] index array: the first k positions are the running best's.
    top_i = jnp.where(pos < k, jnp.take_along_axis(best_i, jnp.minimum(pos, k - 1), axis=1), start + pos - k)
    return (top_s, top_i), None

  init = (jnp.full((xb.shape[0], k), -jnp.inf, jnp.float32), jnp.full((xb.shape[0], k), -1, jnp.int32))
  starts = jnp.arange(y_blocks.shape[0], dtype=jnp.int32) * by
  (best_s, best_i), _ = jax.lax.scan(merge, init, (y_blocks, starts))
  return best_s, best_i


def _padded_rows(a: np.ndarray, rows: int) -> np.ndarray:
  return a if len(a) == rows else np.concatenate([a, np.zeros((rows - len(a), a.shape[1]), a.dtype)])


def knn_device(x: np.ndarray, y: np.ndarray, k: int, *, block: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
  """(similarities [n, k] in decreasing order, indices [n, k] into y) of each row of x among the rows of y, by
  inner product (cosine for normalised rows), on the default device; x: [n, dim], y: [m, dim], k <= m. Blocks are
  min(block, n) rows of x and min(block, m) rows of y, so each shape compiles once per (n, m) size class."""
  x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
  n, m = len(x), len(y)
  if not 0 < k <= m:
    raise ValueError(f'k must be in [1, {m}] (the rows of y); got {k}.')
  if block < 1:
    raise ValueError(f'block must be >= 1; got {block}.')
  bx, by = min(block, n), min(block, m)
  num_blocks = -(-m // by)
  y_blocks = jnp.asarray(_padded_rows(y, num_blocks * by).reshape(num_blocks, by, y.shape[1]))
  num_rows = jnp.int32(m)
  sims = np.empty((n, k), np.float32)
  inds = np.empty((n, k), np.int64)
  pending = []
  for start in range(0, n, bx):
    xb = _padded_rows(x[start:start + bx], bx)
    pending.append((start, _block_top_k(jnp.asarray(xb), y_blocks, num_rows, k)))  # dispatched, not awaited
    if len(pending) > 1:  # at most two blocks in flight: bounded device memory
      _collect(pending.pop(0), sims, inds)
  for item in pending:
    _collect(item, sims, inds)
  return sims, inds


def _collect(item: Tuple[int, Tuple[jax.Array, jax.Array]], sims: np.ndarray, inds: np.ndarray) -> None:
  start, (s, i) = item
  rows = min(len(s), len(sims) - start)
  sims[start:start + rows] = np.asarray(s)[:rows]
  inds[start:start + rows] = np.asarray(i)[:rows]
