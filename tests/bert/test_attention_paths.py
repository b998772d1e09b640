"""Every attention path against the reference attention (values and gradients, float32 and bfloat16), which path
each configuration takes, and the scanned layer stack against the unrolled one.

The cuDNN kernel itself needs a GPU (benchmarks/gpu_attention_check.py checks it there); its semantics (padding
given as sequence lengths instead of a mask) are checked here through the same `jax.nn.dot_product_attention` call
with the XLA implementation. Our flash kernel (`flash_attention.py`) runs here in the Pallas interpreter: the same
kernel code that lowers to Triton on GPUs, with its in-kernel dropout checked against the mask it documents.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from projects.bert.models import attention, flash_attention, modeling
from tests.bert.test_modeling import TINY, make_batch

B, S, N, D = 3, 32, 2, 16


def _inputs(dtype, seed=0):
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.normal(size=(B, S, N, D)), dtype) for _ in range(3))
  lengths = np.array([S, 9, 1], np.int32)  # full, padded, a single token
  input_mask = jnp.asarray(np.arange(S)[None] < lengths[:, None], jnp.int32)
  return q, k, v, input_mask


def _reference(q, k, v, input_mask, keep=None, rate=0.0):
  """Plain float32 softmax attention over the real keys; `keep` [B, N, S, S] drops probabilities (inverted)."""
  q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
  logits = jnp.einsum('bqnd,bknd->bnqk', q, k, precision='highest') / np.sqrt(q.shape[-1])
  logits = jnp.where(input_mask[:, None, None, :] > 0, logits, -jnp.inf)
  probs = jax.nn.softmax(logits, -1)
  if keep is not None:
    probs = jnp.where(keep, probs / (1.0 - rate), 0.0)
  return jnp.einsum('bnqk,bknd->bqnd', probs, v, precision='highest')


PATHS = {
    'explicit': lambda q, k, v, m: attention.explicit_attention(q, k, v, attention.attention_mask(m)),
    'xla_mask': lambda q, k, v, m: attention.fused_attention(q, k, v, attention.attention_mask(m)),
    'lengths': lambda q, k, v, m: attention.length_masked_attention(q, k, v, attention.sequence_lengths(m), 'xla'),
    'flash': lambda q, k, v, m: flash_attention.flash_attention(q, k, v, attention.sequence_lengths(m),
                                                                interpret=True),
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


@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_flash_kernel_drops_exactly_its_documented_mask(dtype, tol):
  # Several query and key blocks (S=256: 128 x 64 blocks), a padded row, and dropout on the probabilities.
  b, s, n, d, rate = 2, 256, 2, 16, 0.3
  rng = np.random.default_rng(2)
  q, k, v = (jnp.asarray(rng.normal(size=(b, s, n, d)), dtype) for _ in range(3))
  lengths = jnp.asarray([s, 77], jnp.int32)
  input_mask = (jnp.arange(s)[None] < lengths[:, None]).astype(jnp.int32)
  seed = jnp.asarray([11, 2024], jnp.uint32)
  keep = flash_attention.keep_mask(seed, b, n, s, rate)
  weights = jnp.asarray(rng.normal(size=(b, s, n, d)), jnp.float32)
  flash = lambda q, k, v: flash_attention.flash_attention(q, k, v, lengths, dropout_rate=rate, seed=seed,  # noqa: E731
                                                          interpret=True)
  reference = lambda q, k, v: _reference(q, k, v, input_mask, keep, rate) * (  # noqa: E731
      np.asarray(input_mask, np.float32)[:, :, None, None])
  out = flash(q, k, v)
  ref = reference(q, k, v)
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=tol * float(jnp.abs(ref).max()))
  assert np.all(np.asarray(out[1, 77:]) == 0)  # padded query rows are zeros
  loss = lambda fn: (lambda *a: jnp.sum(fn(*a).astype(jnp.float32) * weights))  # noqa: E731
  grads = jax.grad(loss(flash), argnums=(0, 1, 2))(q, k, v)
  ref_grads = jax.grad(loss(reference), argnums=(0, 1, 2))(*(x.astype(jnp.float32) for x in (q, k, v)))
  for name, g, r in zip('qkv', grads, ref_grads):
    np.testing.assert_allclose(g.astype(jnp.float32), r, atol=tol * float(jnp.abs(r).max()), err_msg=name)
  # Keys past a row's length get no gradient, as they got no attention.
  assert np.all(np.asarray(grads[1][1, 77:]) == 0) and np.all(np.asarray(grads[2][1, 77:]) == 0)


def test_flash_dropout_mask_is_uniform_and_independent():
  seed = jnp.asarray([5, 6], jnp.uint32)
  keep = np.asarray(flash_attention.keep_mask(seed, 4, 3, 128, 0.1))
  n = keep.size
  assert abs(keep.mean() - 0.9) < 4 * np.sqrt(0.09 / n)
  # Neighbouring keys, neighbouring queries, heads and batch rows drop independently.
  for a, b in ((keep[..., 1:], keep[..., :-1]), (keep[..., 1:, :], keep[..., :-1, :]), (keep[:, 1:], keep[:, :-1]),
               (keep[1:], keep[:-1])):
    both = np.mean(~a & ~b)
    assert abs(both - 0.01) < 5 * np.sqrt(0.01 * 0.99 / a.size), both
  other = np.asarray(flash_attention.keep_mask(jnp.asarray([5, 7], jnp.uint32), 4, 3, 128, 0.1))
  assert abs(np.mean(~keep & ~other) - 0.01) < 5 * np.sqrt(0.0099 / n)  # a new step's seed: a new mask


def test_flash_kernel_refuses_what_it_cannot_take():
  q = jnp.zeros((1, 24, 1, 16), jnp.bfloat16)
  with pytest.raises(ValueError, match='multiple of 16'):
    flash_attention.flash_attention(q, q, q, jnp.array([24]))
  q = jnp.zeros((1, 32, 1, 16), jnp.bfloat16)
  with pytest.raises(ValueError, match='needs a seed'):
    flash_attention.flash_attention(q, q, q, jnp.array([32]), dropout_rate=0.1)


def test_lengths_are_the_prefix_mask():
  mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], jnp.int32)
  np.testing.assert_array_equal(attention.sequence_lengths(mask), [3, 4, 1])
  assert attention.sequence_lengths(mask).dtype == jnp.int32


def test_which_kernel_each_configuration_takes():
  cfg = lambda **kw: dataclasses.replace(TINY, **kw)  # noqa: E731
  gpu = jax.default_backend() == 'gpu'
  assert attention.attention_kernel(cfg(), train=True) == 'explicit'  # float32: XLA drops materialised probabilities
  assert attention.attention_kernel(cfg(), train=False) == 'xla'
  assert attention.attention_kernel(cfg(attention_dropout_prob=0.0), train=True) == 'xla'
  bf16 = cfg(dtype='bfloat16')
  assert attention.attention_kernel(bf16, train=False, seq_len=128) == ('cudnn' if gpu else 'xla')
  assert attention.attention_kernel(bf16, train=True, seq_len=128) == ('flash' if gpu else 'explicit')
  assert attention.attention_kernel(bf16, train=True, seq_len=100) == 'explicit'  # not a multiple of 16
  assert attention.attention_kernel(cfg(dtype='bfloat16', attention_impl='cudnn'), train=False) == 'cudnn'
  assert attention.attention_kernel(cfg(attention_impl='xla', dtype='bfloat16'), train=False) == 'xla'
  assert attention.attention_kernel(cfg(attention_impl='flash'), train=True) == 'flash'
  with pytest.raises(ValueError, match='has no attention dropout'):
    attention.attention_kernel(cfg(dtype='bfloat16', attention_impl='cudnn'), train=True)
  with pytest.raises(ValueError, match="needs dtype='bfloat16'"):
    cfg(attention_impl='cudnn')
  with pytest.raises(ValueError, match='Unknown attention_impl'):
    cfg(attention_impl='pallas')


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


def test_model_on_the_flash_kernel_computes_the_model_on_xla():
  batch = make_batch()
  batch = {k: np.concatenate([v, v]) for k, v in batch.items()}  # tokens padded: lengths vary per row
  batch = {k: (np.pad(v, [(0, 0), (0, 16 - v.shape[1])]) if k in ('input_ids', 'input_mask', 'segment_ids') else v)
           for k, v in batch.items()}  # S = 16: a size the kernel takes
  config = dataclasses.replace(TINY, num_layers=1, num_heads=2, hidden_dropout_prob=0.0, attention_dropout_prob=0.0)
  xla = modeling.BertForPreTraining(dataclasses.replace(config, attention_impl='xla'))
  flash = modeling.BertForPreTraining(dataclasses.replace(config, attention_impl='flash'))
  params = jax.jit(xla.init)(jax.random.PRNGKey(0), batch)['params']
  loss = lambda m, p: jnp.sum(m.apply({'params': p}, batch, train=True)['mlm_logits'] ** 2)  # noqa: E731
  np.testing.assert_allclose(loss(flash, params), loss(xla, params), rtol=1e-5)
  g_x, g_f = jax.grad(lambda p: loss(xla, p))(params), jax.grad(lambda p: loss(flash, p))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_f, g_x)
  # With attention dropout the kernel draws from the module's 'dropout' stream: a function of the key.
  drop = modeling.BertForPreTraining(dataclasses.replace(config, attention_impl='flash', attention_dropout_prob=0.2))
  run = lambda seed: drop.apply({'params': params}, batch, train=True,  # noqa: E731
                                rngs={'dropout': jax.random.PRNGKey(seed)})['mlm_logits']
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.allclose(run(0), run(1))


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


def test_flash_kernel_lowers_to_triton_for_gpus():
  # Lowering for CUDA runs here, with no GPU: every op of the three kernels has a Triton lowering.
  q = jax.ShapeDtypeStruct((2, 128, 4, 64), jnp.bfloat16)
  lengths, seed = jax.ShapeDtypeStruct((2,), jnp.int32), jax.ShapeDtypeStruct((2,), jnp.uint32)
  loss = lambda q, k, v, n, s: jnp.sum(flash_attention.flash_attention(  # noqa: E731
      q, k, v, n, dropout_rate=0.1, seed=s).astype(jnp.float32))
  lowered = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).trace(q, q, q, lengths, seed).lower(
      lowering_platforms=('cuda',))
  text = lowered.as_text()
  for name in ('bert_flash_attention_fwd', 'bert_flash_attention_dkdv', 'bert_flash_attention_dq'):
    assert name in text, name
