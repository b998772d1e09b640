"""Attention paths of the encoder: the key mask and sequence lengths from `input_mask`, XLA's fused attention,
cuDNN's length-masked kernel, the explicit form that dropout can act on, and which of them (or the flash kernel in
`flash_attention.py`) computes a layer.

Shapes: query/key/value [batch, seq, heads, head_dim]; masks broadcast to [batch, heads, q, k].
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

Array = jax.Array

def attention_mask(input_mask: Array) -> Array:
  """`input_mask` [batch, seq] (1 = token, 0 = padding) -> boolean key mask [batch, 1, 1, seq] for every query."""
  return (input_mask > 0)[:, None, None, :]


def sequence_lengths(input_mask: Array) -> Array:
  """`input_mask` [batch, seq] -> int32 [batch] real tokens per row.

  BERT's inputs (every official writer's records) are padded at the end, so the mask is a prefix of ones and the
  lengths say the same as the mask; the fused GPU kernels take lengths instead of a mask.
  """
  return jnp.sum(input_mask > 0, axis=-1, dtype=jnp.int32)


def fused_attention(query: Array, key: Array, value: Array, mask: Array) -> Array:
  """Softmax attention through `jax.nn.dot_product_attention`'s XLA implementation, with a boolean key mask.

  query/key/value [batch, seq, heads, head_dim] in one dtype; mask bool broadcastable to [batch, heads, q, k].
  Returns [batch, seq, heads, head_dim] in the input dtype (logits and softmax are float32 inside).
  """
  return jax.nn.dot_product_attention(query, key, value, mask=mask, implementation='xla')


def length_masked_attention(query: Array, key: Array, value: Array, lengths: Array,
                            implementation: Optional[str] = None) -> Array:
  """Attention over the first `lengths` [batch] keys of each row (shapes as `fused_attention`).

  `implementation='cudnn'` is cuDNN's fused flash-attention kernel (GPUs, bfloat16), which takes the padding as
  sequence lengths; 'xla' computes the same function anywhere (this is how the CPU tests check the GPU path's
  semantics). Query rows past a row's length come out as zeros (they are padding: nothing reads them).
  """
  return jax.nn.dot_product_attention(query, key, value, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                      implementation=implementation)


def explicit_attention(query: Array, key: Array, value: Array, mask: Array,
                       dropout: Optional[Callable[[Array], Array]] = None) -> Array:
  """The same attention written out, so that dropout can act on the probabilities (shapes as `fused_attention`)."""
  scale = query.shape[-1] ** -0.5
  logits = jnp.einsum('bqnd,bknd->bnqk', query, key, preferred_element_type=jnp.float32) * scale
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  if dropout is not None:
    probs = dropout(probs)
  return jnp.einsum('bnqk,bknd->bqnd', probs.astype(value.dtype), value)


def attention_kernel(config: Any, train: bool, seq_len: Optional[int] = None) -> str:
  """Which attention computes a layer of `config` (a `modeling.BertConfig`): 'explicit' (probabilities
  materialised, so that XLA can drop them), 'flash' (our fused kernel, dropout inside: `flash_attention.py`),
  'cudnn' (cuDNN's fused kernel, no dropout) or 'xla' (`jax.nn.dot_product_attention`'s XLA implementation).

  `jax.nn.dot_product_attention` exposes no dropout on the probabilities (neither its XLA nor its cuDNN path), so
  training with attention dropout takes our kernel on GPUs and materialises the probabilities elsewhere.
  """
  from projects.bert.models import flash_attention

  dropout = train and config.attention_dropout_prob > 0
  impl = config.attention_impl
  if impl == 'cudnn' and dropout:
    raise ValueError(f"attention_impl='cudnn' has no attention dropout, but attention_dropout_prob="
                     f"{config.attention_dropout_prob}: set it to 0, or use attention_impl='auto' or 'flash'.")
  if impl == 'auto':
    fits = seq_len is None or flash_attention.supported(seq_len, config.head_dim, config.compute_dtype)
    if config.dtype == 'bfloat16' and jax.default_backend() == 'gpu' and fits:
      impl = 'flash' if dropout else 'cudnn'
    else:
      impl = 'xla'
  if impl == 'xla' and dropout:
    return 'explicit'
  return impl
