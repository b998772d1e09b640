"""Fused (flash) self-attention for BERT with dropout on the attention probabilities drawn inside the kernel.

`flash_attention(q, k, v, lengths, dropout_rate, seed)` computes, for every row b, head n and query i < lengths[b],

  out[b, i, n] = sum_j  softmax_j(q[b,i,n] . k[b,j,n] * scale) * keep[b,n,i,j] / (1 - rate) * v[b,j,n]

over the keys j < lengths[b] (BERT's padding is a suffix: the official writers' input_mask is a prefix of ones), with
query rows past a sequence's length set to zero, as cuDNN's kernel sets them. It is FlashAttention-2 (Dao, 2023)
written in Pallas: the [seq, seq] logits and probabilities never leave the chip, blocks of keys past a sequence's
length are skipped, and the dropout mask is a counter-based hash of (seed, row, head, query, key), so the backward
kernels recompute exactly the forward's mask instead of storing it. Neither `jax.nn.dot_product_attention`'s XLA nor
its cuDNN implementation takes attention dropout, which BERT's recipe (0.1) needs in every training step.

`keep_mask` is the same mask computed with plain jnp ops, for tests and for reading off what the kernel dropped.
On GPUs the kernels lower to Triton; `interpret=True` runs them with the Pallas interpreter anywhere (the CPU tests).
Inputs are [batch, seq, heads, head_dim] in bfloat16 (or float16/float32), head_dim a power of two >= 16, and seq a
multiple of the block sizes (min(seq, 128) and min(seq, 64) by default).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

Array = jax.Array

_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully masked blocks give 0, not NaN
_LOG2E = math.log2(math.e)


# ---------------------------------------------------------------------------------------------------------------
# The dropout mask: a counter-based hash, the same inside the kernels and in `keep_mask`.


def _dot(a: Array, b: Array, trans_a: bool = False, trans_b: bool = False) -> Array:
  """a @ b (either transposed) with float32 accumulation: the one matmul form Pallas lowers on every backend and
  version (pl.dot is gone from newer JAX)."""
  dims = (((0,) if trans_a else (1,), (1,) if trans_b else (0,)), ((), ()))
  return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _mix32(x: Array) -> Array:
  """A 32-bit avalanche mixer (xor-shift / multiply, the 'lowbias32' constants): every output bit depends on every
  input bit; uint32 in, uint32 out."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _row_key(seed0: Array, seed1: Array, bn: Array) -> Array:
  """One key per (batch row, head) `bn` = b * heads + n, from the step's two seed words."""
  return _mix32(seed0 ^ _mix32(bn.astype(jnp.uint32) + jnp.uint32(0x9E3779B9)) + seed1)


def _keep(row_key: Array, seed1: Array, q_idx: Array, k_idx: Array, seq_len: int, threshold: int) -> Array:
  """bool [len(q_idx), len(k_idx)]: True where the probability (query q, key k) is kept (two mixing rounds)."""
  counter = q_idx.astype(jnp.uint32)[:, None] * jnp.uint32(seq_len) + k_idx.astype(jnp.uint32)[None, :]
  bits = _mix32(_mix32(counter ^ row_key) + seed1)
  return bits >= jnp.uint32(threshold)


def hash_bits(seed: Array, size: int) -> Array:
  """uint32 [size]: the counter hash of 0 .. size-1 keyed by `seed` (uint32 [2]); what `modeling.Dropout` draws
  with dropout_rng='hash'."""
  counter = jnp.arange(size, dtype=jnp.uint32)
  return _mix32(_mix32(counter ^ _mix32(seed[0] + jnp.uint32(0x9E3779B9))) + seed[1])


def _threshold(rate: float) -> int:
  """Drop where the 32 hash bits are below this: the rate quantised to 2^-32."""
  return min(int(round(rate * 2.0 ** 32)), 2 ** 32 - 1)


def keep_mask(seed: Array, batch: int, heads: int, seq_len: int, rate: float) -> Array:
  """bool [batch, heads, seq, seq]: the kernel's dropout mask for `seed` (uint32 [2])."""
  bn = jnp.arange(batch * heads, dtype=jnp.uint32)
  keys = _row_key(seed[0], seed[1], bn)
  idx = jnp.arange(seq_len)
  masks = jax.vmap(lambda key: _keep(key, seed[1], idx, idx, seq_len, _threshold(rate)))(keys)
  return masks.reshape(batch, heads, seq_len, seq_len)


# ---------------------------------------------------------------------------------------------------------------
# Kernels. Grids are (sequence blocks, batch, heads); refs hold one (batch, head) slice: q/k/v/o [seq or block, D],
# lse/delta [seq or block] (float32, per query), lengths [1] and seed [2].


def _forward_kernel(q_ref, k_ref, v_ref, len_ref, seed_ref, o_ref, lse_ref, *, scale: float, rate: float,
                    block_q: int, block_k: int, heads: int):
  seq_len = k_ref.shape[0]
  length = len_ref[0]
  q_start = pl.program_id(0) * block_q
  rows = q_start + jnp.arange(block_q)
  q = q_ref[...]
  head_dim = q.shape[-1]
  if rate > 0:
    seed0, seed1 = seed_ref[0], seed_ref[1]
    row_key = _row_key(seed0, seed1, pl.program_id(1) * heads + pl.program_id(2))

  def body(kb, carry):
    acc, m_prev, l_prev = carry
    k_slice = pl.ds(kb * block_k, block_k)
    cols = kb * block_k + jnp.arange(block_k)
    s = _dot(q, k_ref[k_slice, :], trans_b=True) * (scale * _LOG2E)  # [block_q, block_k], log2 units
    s = jnp.where(cols[None, :] < length, s, _MASKED)
    m_next = jnp.maximum(m_prev, jnp.max(s, axis=1))
    correction = jnp.exp2(m_prev - m_next)
    p = jnp.exp2(s - m_next[:, None])
    l_next = l_prev * correction + jnp.sum(p, axis=1)  # the normaliser counts every probability, kept or not
    if rate > 0:
      p = jnp.where(_keep(row_key, seed1, rows, cols, seq_len, _threshold(rate)), p * (1.0 / (1.0 - rate)), 0.0)
    v = v_ref[k_slice, :]
    acc = acc * correction[:, None] + _dot(p.astype(v.dtype), v)
    return acc, m_next, l_next

  # Padded query blocks do no work, and no block of keys past the sequence is visited.
  num_blocks = jnp.where(q_start < length, pl.cdiv(length, block_k), 0)
  init = (jnp.zeros((block_q, head_dim), jnp.float32), jnp.full((block_q,), _MASKED, jnp.float32),
          jnp.zeros((block_q,), jnp.float32))
  acc, m, norm = jax.lax.fori_loop(0, num_blocks, body, init)
  real = rows < length
  safe_l = jnp.where(real, norm, 1.0)
  o_ref[...] = jnp.where(real[:, None], acc / safe_l[:, None], 0.0).astype(o_ref.dtype)
  lse_ref[...] = jnp.where(real, m + jnp.log2(safe_l), 0.0)


def _dkdv_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, len_ref, seed_ref, dk_ref, dv_ref, *,
                 scale: float, rate: float, block_q: int, block_k: int, heads: int):
  seq_len = q_ref.shape[0]
  length = len_ref[0]
  k_start = pl.program_id(0) * block_k
  cols = k_start + jnp.arange(block_k)
  k, v = k_ref[...], v_ref[...]
  head_dim = k.shape[-1]
  if rate > 0:
    seed0, seed1 = seed_ref[0], seed_ref[1]
    row_key = _row_key(seed0, seed1, pl.program_id(1) * heads + pl.program_id(2))

  def body(qb, carry):
    dk, dv = carry
    q_slice = pl.ds(qb * block_q, block_q)
    rows = qb * block_q + jnp.arange(block_q)
    q, do = q_ref[q_slice, :], do_ref[q_slice, :]
    s = _dot(q, k, trans_b=True) * (scale * _LOG2E)
    valid = (rows[:, None] < length) & (cols[None, :] < length)
    p = jnp.where(valid, jnp.exp2(s - lse_ref[q_slice][:, None]), 0.0)  # the forward's probabilities
    dp = _dot(do, v, trans_b=True)  # d(dropped probabilities)
    if rate > 0:
      z = jnp.where(_keep(row_key, seed1, rows, cols, seq_len, _threshold(rate)), 1.0 / (1.0 - rate), 0.0)
      dv = dv + _dot((p * z).astype(do.dtype), do, trans_a=True)
      dp = dp * z
    else:
      dv = dv + _dot(p.astype(do.dtype), do, trans_a=True)
    ds = p * (dp - delta_ref[q_slice][:, None])
    dk = dk + _dot(ds.astype(q.dtype), q, trans_a=True)
    return dk, dv

  num_blocks = jnp.where(k_start < length, pl.cdiv(length, block_q), 0)
  init = (jnp.zeros((block_k, head_dim), jnp.float32), jnp.zeros((block_k, head_dim), jnp.float32))
  dk, dv = jax.lax.fori_loop(0, num_blocks, body, init)
  dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, len_ref, seed_ref, dq_ref, *, scale: float,
               rate: float, block_q: int, block_k: int, heads: int):
  seq_len = k_ref.shape[0]
  length = len_ref[0]
  q_start = pl.program_id(0) * block_q
  rows = q_start + jnp.arange(block_q)
  q, do = q_ref[...], do_ref[...]
  lse, delta = lse_ref[...], delta_ref[...]
  head_dim = q.shape[-1]
  if rate > 0:
    seed0, seed1 = seed_ref[0], seed_ref[1]
    row_key = _row_key(seed0, seed1, pl.program_id(1) * heads + pl.program_id(2))

  def body(kb, dq):
    k_slice = pl.ds(kb * block_k, block_k)
    cols = kb * block_k + jnp.arange(block_k)
    k, v = k_ref[k_slice, :], v_ref[k_slice, :]
    s = _dot(q, k, trans_b=True) * (scale * _LOG2E)
    valid = (rows[:, None] < length) & (cols[None, :] < length)
    p = jnp.where(valid, jnp.exp2(s - lse[:, None]), 0.0)
    dp = _dot(do, v, trans_b=True)
    if rate > 0:
      dp = jnp.where(_keep(row_key, seed1, rows, cols, seq_len, _threshold(rate)), dp * (1.0 / (1.0 - rate)), 0.0)
    ds = p * (dp - delta[:, None])
    return dq + _dot(ds.astype(k.dtype), k)

  num_blocks = jnp.where(q_start < length, pl.cdiv(length, block_k), 0)
  dq = jax.lax.fori_loop(0, num_blocks, body, jnp.zeros((block_q, head_dim), jnp.float32))
  dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


# ---------------------------------------------------------------------------------------------------------------
# pallas_calls and the custom VJP.


def _specs(seq_len: int, block: int, head_dim: int):
  """BlockSpecs over a (seq blocks, batch, heads) grid: a block of rows, the whole sequence, per-query vectors."""
  rows = pl.BlockSpec((None, block, None, head_dim), lambda i, b, n: (b, i, n, 0))
  whole = pl.BlockSpec((None, seq_len, None, head_dim), lambda i, b, n: (b, 0, n, 0))
  per_query_block = pl.BlockSpec((None, None, block), lambda i, b, n: (b, n, i))
  per_query_whole = pl.BlockSpec((None, None, seq_len), lambda i, b, n: (b, n, 0))
  length = pl.BlockSpec((None, 1), lambda i, b, n: (b, 0))
  seed = pl.BlockSpec((2,), lambda i, b, n: (0,))
  return rows, whole, per_query_block, per_query_whole, length, seed


def _compiler_params(head_dim: int, num_stages: int = 2):
  from jax.experimental.pallas import triton as plgpu
  return plgpu.CompilerParams(num_warps=4 if head_dim <= 64 else 8, num_stages=num_stages)


def _forward(q, k, v, lengths, seed, rate, scale, block_q, block_k, interpret):
  batch, seq_len, heads, head_dim = q.shape
  rows, whole, per_query_block, _, length, seed_spec = _specs(seq_len, block_q, head_dim)
  kernel = functools.partial(_forward_kernel, scale=scale, rate=rate, block_q=block_q, block_k=block_k,
                             heads=heads)
  return pl.pallas_call(
      kernel, grid=(seq_len // block_q, batch, heads),
      in_specs=[rows, whole, whole, length, seed_spec],
      out_specs=[rows, per_query_block],
      out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((batch, heads, seq_len), jnp.float32)],
      compiler_params=None if interpret else _compiler_params(head_dim),
      interpret=interpret, name='bert_flash_attention_fwd',
  )(q, k, v, lengths[:, None], seed)


def _backward(q, k, v, lengths, seed, out, lse, do, rate, scale, block_q, block_k, interpret):
  batch, seq_len, heads, head_dim = q.shape
  # D_i = rowsum(dO_i * O_i) = rowsum(P_ij dP_ij) also with dropout (O is built from the dropped probabilities).
  delta = jnp.einsum('bsnd,bsnd->bns', out.astype(jnp.float32), do.astype(jnp.float32))
  common = dict(scale=scale, rate=rate, block_q=block_q, block_k=block_k, heads=heads)
  k_rows, whole, _, per_query_whole, length, seed_spec = _specs(seq_len, block_k, head_dim)
  dk, dv = pl.pallas_call(
      functools.partial(_dkdv_kernel, **common), grid=(seq_len // block_k, batch, heads),
      in_specs=[whole, k_rows, k_rows, whole, per_query_whole, per_query_whole, length, seed_spec],
      out_specs=[k_rows, k_rows],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
      compiler_params=None if interpret else _compiler_params(head_dim),
      interpret=interpret, name='bert_flash_attention_dkdv',
  )(q, k, v, do, lse, delta, lengths[:, None], seed)
  q_rows, whole, per_query_block, _, length, seed_spec = _specs(seq_len, block_q, head_dim)
  dq = pl.pallas_call(
      functools.partial(_dq_kernel, **common), grid=(seq_len // block_q, batch, heads),
      in_specs=[q_rows, whole, whole, q_rows, per_query_block, per_query_block, length, seed_spec],
      out_specs=q_rows,
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
      compiler_params=None if interpret else _compiler_params(head_dim),
      interpret=interpret, name='bert_flash_attention_dq',
  )(q, k, v, do, lse, delta, lengths[:, None], seed)
  return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9))
def _flash(q, k, v, lengths, seed, rate, scale, block_q, block_k, interpret):
  return _forward(q, k, v, lengths, seed, rate, scale, block_q, block_k, interpret)[0]


def _flash_fwd(q, k, v, lengths, seed, rate, scale, block_q, block_k, interpret):
  out, lse = _forward(q, k, v, lengths, seed, rate, scale, block_q, block_k, interpret)
  return out, (q, k, v, lengths, seed, out, lse)


def _flash_bwd(rate, scale, block_q, block_k, interpret, residuals, do):
  q, k, v, lengths, seed, out, lse = residuals
  dq, dk, dv = _backward(q, k, v, lengths, seed, out, lse, do, rate, scale, block_q, block_k, interpret)
  return dq, dk, dv, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def supported(seq_len: int, head_dim: int, dtype) -> bool:
  """Whether the kernel takes these shapes: head_dim a power of two >= 16, seq a multiple of 16, a float dtype."""
  return (head_dim >= 16 and head_dim & (head_dim - 1) == 0 and seq_len % 16 == 0
          and jnp.issubdtype(dtype, jnp.floating))


def block_sizes(seq_len: int) -> Tuple[int, int]:
  """(block_q, block_k): 128 queries by 64 keys, or the whole sequence when shorter; both divide seq_len."""
  block_q = math.gcd(seq_len, 128)
  block_k = math.gcd(seq_len, 64)
  return block_q, block_k


def flash_attention(q: Array, k: Array, v: Array, lengths: Array, *, dropout_rate: float = 0.0,
                    seed: Optional[Array] = None, scale: Optional[float] = None, interpret: bool = False) -> Array:
  """Self-attention over the first `lengths[b]` keys, dropout `dropout_rate` on the probabilities.

  q, k, v [batch, seq, heads, head_dim] (one dtype); lengths int32 [batch]; seed uint32 [2] (required when
  dropout_rate > 0; `jax.random.bits(key, (2,), jnp.uint32)`). Returns [batch, seq, heads, head_dim] in q's dtype,
  zero at query rows i >= lengths[b]. Differentiable in q, k and v.
  """
  batch, seq_len, heads, head_dim = q.shape
  if not supported(seq_len, head_dim, q.dtype):
    raise ValueError(f'flash_attention needs head_dim a power of two >= 16 and seq_len a multiple of 16; got '
                     f'seq_len={seq_len}, head_dim={head_dim}, dtype={q.dtype}.')
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate}.')
  if dropout_rate > 0 and seed is None:
    raise ValueError('flash_attention with dropout needs a seed (uint32 [2]).')
  seed = jnp.zeros((2,), jnp.uint32) if seed is None else jnp.asarray(seed, jnp.uint32)
  scale = head_dim ** -0.5 if scale is None else float(scale)
  block_q, block_k = block_sizes(seq_len)
  return _flash(q, k, v, jnp.asarray(lengths, jnp.int32), seed, float(dropout_rate), scale, block_q, block_k,
                interpret)
