"""Every attention path against the reference attention (values and gradients, float32 and bfloat16), which path
each configuration takes, and the scanned layer stack against the unrolled one.

The cuDNN kernel itself needs a GPU (benchmarks/gpu_attention_check.py checks it there); its semantics (padding
given as sequence lengths instead of a mask) are checked here through the same `jax.nn.dot_product_attention` call
with the XLA implementation.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from projects.bert import modeling
from tests.bert.test_modeling import TINY, make_batch

B, S, N, D = 3, 16, 4, 8


def _inputs(dtype, seed=0):
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.normal(size=(B, S, N, D)), dtype) for _ in range(3))
  lengths = np.array([S, 9, 1], np.int32)  # full, padded, a single token
  input_mask = jnp.asarray(np.arange(S)[None] < lengths[:, None], jnp.int32)
  return q, k, v, input_mask


def _reference(q, k, v, input_mask):
  """Plain float32 softmax attention over the real keys."""
  q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
  logits = jnp.einsum('bqnd,bknd->bnqk', q, k) / np.sqrt(D)
  logits = jnp.where(input_mask[:, None, None, :] > 0, logits, -jnp.inf)
  return jnp.einsum('bnqk,bknd->bqnd', jax.nn.softmax(logits, -1), v)


PATHS = {
    'explicit': lambda q, k, v, m: modeling.explicit_attention(q, k, v, modeling.attention_mask(m)),
    'xla_mask': lambda q, k, v, m: modeling.fused_attention(q, k, v, modeling.attention_mask(m)),
    'lengths': lambda q, k, v, m: modeling.length_masked_attention(q, k, v, modeling.sequence_lengths(m), 'xla'),
}


@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize('path', sorted(PATHS))
def test_attention_path_matches_the_reference_values_and_gradients(path, dtype, tol):
  q, k, v, input_mask = _inputs(dtype)
  real = np.asarray(input_mask, bool)[:, :, None, None]  # rows past a sequence's length are padding
  weights = jnp.asarray(np.random.default_rng(1).normal(size=(B, S, N, D)), jnp.float32) * real

  def loss(fn, q, k, v):  # reads only the real query rows, as the model does
    return jnp.sum(fn(q, k, v, input_mask).astype(jnp.float32) * weights)

  out = jax.jit(PATHS[path])(q, k, v, input_mask)
  assert out.dtype == dtype and out.shape == (B, S, N, D)
  ref = _reference(q, k, v, input_mask)
  scale = float(jnp.abs(ref).max())
  np.testing.assert_allclose(np.where(real, out.astype(jnp.float32), 0), np.where(real, ref, 0), atol=tol * scale)
  grads = jax.jit(jax.grad(lambda *a: loss(PATHS[path], *a), argnums=(0, 1, 2)))(q, k, v)
  ref_grads = jax.grad(lambda *a: loss(_reference, *a), argnums=(0, 1, 2))(
      *(x.astype(jnp.float32) for x in (q, k, v)))
  for name, g, r in zip('qkv', grads, ref_grads):
    assert g.dtype == dtype
    g_scale = float(jnp.abs(r).max())
    np.testing.assert_allclose(g.astype(jnp.float32), r, atol=tol * g_scale, err_msg=name)


def test_lengths_are_the_prefix_mask():
  mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], jnp.int32)
  np.testing.assert_array_equal(modeling.sequence_lengths(mask), [3, 4, 1])
  assert modeling.sequence_lengths(mask).dtype == jnp.int32


def test_which_kernel_each_configuration_takes():
  cfg = lambda **kw: dataclasses.replace(TINY, **kw)  # noqa: E731
  assert modeling.attention_kernel(cfg(), train=True) == 'explicit'  # attention dropout: probabilities exist
  assert modeling.attention_kernel(cfg(), train=False) == 'xla'  # the CPU
  assert modeling.attention_kernel(cfg(attention_dropout_prob=0.0), train=True) == 'xla'
  assert modeling.attention_kernel(cfg(dtype='bfloat16'), train=False) == (
      'cudnn' if jax.default_backend() == 'gpu' else 'xla')
  assert modeling.attention_kernel(cfg(dtype='bfloat16', attention_impl='cudnn'), train=False) == 'cudnn'
  assert modeling.attention_kernel(cfg(attention_impl='xla', dtype='bfloat16'), train=False) == 'xla'
  with pytest.raises(ValueError, match='has no attention dropout'):
    modeling.attention_kernel(cfg(dtype='bfloat16', attention_impl='cudnn'), train=True)
  with pytest.raises(ValueError, match="needs dtype='bfloat16'"):
    cfg(attention_impl='cudnn')
  with pytest.raises(ValueError, match='Unknown attention_impl'):
    cfg(attention_impl='flash')


@pytest.mark.parametrize('remat', [False, True])
def test_scanned_layers_compute_the_unrolled_function(remat):
  batch = make_batch()
  config = dataclasses.replace(TINY, num_layers=3, hidden_dropout_prob=0.0, attention_dropout_prob=0.0, remat=remat)
  unrolled = modeling.BertForPreTraining(config)
  scanned = modeling.BertForPreTraining(dataclasses.replace(config, scan_layers=True))
  params = jax.jit(unrolled.init)(jax.random.PRNGKey(0), batch)['params']
  # The same parameter tree (layer_0 ... layer_2): checkpoints and converters do not care which is used.
  assert jax.tree_util.tree_structure(jax.eval_shape(scanned.init, jax.random.PRNGKey(0), batch)['params']) == \
      jax.tree_util.tree_structure(params)

  def loss(module, p):
    out = module.apply({'params': p}, batch, train=True)
    return jnp.sum(out['mlm_logits'] ** 2) + jnp.sum(out['nsp_logits'])

  out_u = jax.jit(lambda p: unrolled.apply({'params': p}, batch))(params)
  out_s = jax.jit(lambda p: scanned.apply({'params': p}, batch))(params)
  for name in out_u:
    np.testing.assert_allclose(out_s[name], out_u[name], rtol=1e-5, atol=1e-5)
  g_u = jax.jit(jax.grad(lambda p: loss(unrolled, p)))(params)
  g_s = jax.jit(jax.grad(lambda p: loss(scanned, p)))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_u, g_s)


def test_scanned_layers_draw_fresh_dropout_per_layer_and_key():
  batch = make_batch()
  config = dataclasses.replace(TINY, num_layers=2, scan_layers=True)
  model = modeling.BertForPreTraining(config)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)['params']
  apply = jax.jit(lambda p, key, train: model.apply({'params': p}, batch, train=train, rngs={'dropout': key}),
                  static_argnums=2)
  a, b = apply(params, jax.random.PRNGKey(0), True), apply(params, jax.random.PRNGKey(1), True)
  np.testing.assert_array_equal(a['mlm_logits'], apply(params, jax.random.PRNGKey(0), True)['mlm_logits'])
  assert not np.allclose(a['mlm_logits'], b['mlm_logits'])
  assert not np.allclose(a['mlm_logits'], apply(params, jax.random.PRNGKey(0), False)['mlm_logits'])
