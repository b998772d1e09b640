r"""On a GPU: the cuDNN attention path and the whole model on it, against the reference, before any timing.

  python benchmarks/gpu_attention_check.py --output=benchmarks/results/attention_gpu.json

Checks (each a row of the table; the script exits non-zero if one fails):
  1. `attention.length_masked_attention(..., 'cudnn')` against float32 softmax attention over the real keys, on
     bfloat16 inputs with padded rows: values and the gradients of q, k, v (relative error under 2e-2, the bf16
     rounding of inputs and outputs); float32 inputs must be refused by `BertConfig` (cuDNN has no fp32 kernel).
  2. The encoder (size small: every layer kind, quick to compile) in bfloat16 with attention_impl='cudnn' against
     attention_impl='xla' at eval (same weights).
  3. One pretraining train step (small) with 'auto' against one with 'xla', attention dropout 0 (where 'auto' picks
     cuDNN): loss and gradient norm agree.
On the CPU the same script runs the XLA implementation of each path (the semantics), so it can be tried anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (benchmarks/common.py)


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', default='')
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp

  from projects.bert.models import attention, modeling
  gpu = jax.default_backend() == 'gpu'
  impl = 'cudnn' if gpu else 'xla'
  rows = []

  def record(name, value, limit, **extra):
    ok = bool(np.isfinite(value) and value < limit)
    rows.append({'check': name, 'rel_error': value, 'limit': limit, 'ok': ok, **extra})
    print(f'{"ok  " if ok else "FAIL"} {name}: {value:.2e} (limit {limit:g})', flush=True)

  # 1. The kernel against the reference, values and gradients.
  b, s, n, d = 8, 128, 12, 64
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(b, s, n, d)), jnp.bfloat16) for _ in range(3))
  lengths = jnp.asarray(rng.integers(1, s + 1, b).astype(np.int32))
  input_mask = (jnp.arange(s)[None] < lengths[:, None]).astype(jnp.int32)
  real = np.asarray(input_mask, bool)[:, :, None, None]
  weights = jnp.asarray(rng.normal(size=(b, s, n, d)), jnp.float32) * real

  def reference(q, k, v):
    q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
    logits = jnp.einsum('bqnd,bknd->bnqk', q, k, precision='highest') / np.sqrt(d)
    logits = jnp.where(input_mask[:, None, None, :] > 0, logits, -jnp.inf)
    return jnp.einsum('bnqk,bknd->bqnd', jax.nn.softmax(logits, -1), v, precision='highest')

  fused = lambda q, k, v: attention.length_masked_attention(q, k, v, attention.sequence_lengths(input_mask), impl)  # noqa: E731
  loss = lambda fn: (lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) * weights))  # noqa: E731
  t0 = time.perf_counter()
  out = jax.jit(fused)(q, k, v)
  ref = reference(q, k, v)
  record(f'{impl} attention values (bf16, padded rows)', _rel(np.where(real, out.astype(jnp.float32), 0),
                                                                np.where(real, ref, 0)), 2e-2)
  grads = jax.jit(jax.grad(loss(fused), argnums=(0, 1, 2)))(q, k, v)
  ref_grads = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
  for name, g, r in zip('qkv', grads, ref_grads):
    record(f'{impl} attention d{name}', _rel(g.astype(jnp.float32), r), 2e-2)
  kernel_s = time.perf_counter() - t0

  # 1b. Our flash kernel (Pallas; Triton on GPUs) with dropout against the reference with its documented mask.
  from projects.bert.models import flash_attention
  rate, seed = 0.1, jnp.asarray([3, 2024], jnp.uint32)
  keep = flash_attention.keep_mask(seed, b, n, s, rate)
  flash = lambda q, k, v: flash_attention.flash_attention(  # noqa: E731
      q, k, v, lengths, dropout_rate=rate, seed=seed, interpret=not gpu)

  def dropped_reference(q, k, v):
    q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
    logits = jnp.einsum('bqnd,bknd->bnqk', q, k, precision='highest') / np.sqrt(d)
    logits = jnp.where(input_mask[:, None, None, :] > 0, logits, -jnp.inf)
    probs = jnp.where(keep, jax.nn.softmax(logits, -1) / (1 - rate), 0.0)
    return jnp.einsum('bnqk,bknd->bqnd', probs, v, precision='highest') * real[..., 0, 0][:, :, None, None]

  out = jax.jit(flash)(q, k, v)
  ref = dropped_reference(q, k, v)
  record('flash attention + dropout values (bf16)', _rel(out.astype(jnp.float32), ref), 2e-2)
  grads = jax.jit(jax.grad(loss(flash), argnums=(0, 1, 2)))(q, k, v)
  ref_grads = jax.grad(loss(dropped_reference), argnums=(0, 1, 2))(q, k, v)
  for name, g, r in zip('qkv', grads, ref_grads):
    record(f'flash attention + dropout d{name}', _rel(g.astype(jnp.float32), r), 2e-2)

  # 2. The encoder on cuDNN against the encoder on XLA (same weights, eval).
  from projects.bert.models import architecture as configs_common
  base = modeling.BertConfig.from_model_config(configs_common.model_config('small', dtype='bfloat16'))
  ids = jnp.asarray(rng.integers(1000, 30000, (b, s)).astype(np.int32)) * input_mask
  encoders = {a: modeling.BertEncoder(dataclasses.replace(base, attention_impl=a)) for a in ('xla', impl)}
  params = jax.jit(encoders['xla'].init)(jax.random.PRNGKey(0), ids, input_mask, jnp.zeros_like(ids))
  outs = {a: jax.jit(e.apply)(params, ids, input_mask, jnp.zeros_like(ids)) for a, e in encoders.items()}
  seq_real = np.asarray(input_mask, bool)[..., None]
  record(f'small encoder {impl} vs xla, sequence (bf16)', _rel(np.where(seq_real, outs[impl][0].astype(jnp.float32), 0),
                                                             np.where(seq_real, outs['xla'][0].astype(jnp.float32), 0)),
         3e-2)
  record(f'small encoder {impl} vs xla, pooled (bf16)', _rel(outs[impl][1].astype(jnp.float32),
                                                           outs['xla'][1].astype(jnp.float32)), 3e-2)

  # 3. A train step through 'auto' (cuDNN where it applies) against 'xla'.
  import ml_collections
  import optax

  from core import sharding as sharding_lib
  from core.state import create_sharded_train_state
  from core.train_step import make_train_step
  from projects.bert.models import bert_models as models
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  from train_step import synthetic_batch
  batch_np = synthetic_batch(16, 128, 30522, seed=1)
  batch_np['input_mask'][::2, 100:] = 0  # padded rows
  mesh = sharding_lib.create_mesh()
  losses = {}
  for a in ('xla', 'auto'):
    cfg = ml_collections.ConfigDict({'model': configs_common.model_config(
        'small', dtype='bfloat16', attention_dropout_prob=0.0, hidden_dropout_prob=0.0, attention_impl=a)})
    model = models.BertPretrainingModel(cfg, None)
    state, shardings = create_sharded_train_state(model.params_init(batch_np), optax.adamw(1e-4),
                                                  jax.random.PRNGKey(0), mesh)
    step = make_train_step(model, shardings, mesh)
    _, metrics = step(state, sharding_lib.make_global_batch(batch_np, mesh))
    losses[a] = {k: float(metrics[k]) for k in ('loss', 'grad_norm')}
  record('train step auto vs xla, loss', abs(losses['auto']['loss'] - losses['xla']['loss']) /
         abs(losses['xla']['loss']), 1e-2, values=losses)
  record('train step auto vs xla, grad norm', abs(losses['auto']['grad_norm'] - losses['xla']['grad_norm']) /
         abs(losses['xla']['grad_norm']), 5e-2, values=losses)

  failed = [r['check'] for r in rows if not r['ok']]
  print(common.format_table(rows, ['check', 'rel_error', 'limit', 'ok']))
  print(f'{"all checks passed" if not failed else "FAILED: " + ", ".join(failed)} ({jax.default_backend()}, '
        f'{jax.devices()[0].device_kind}, kernel checks {kernel_s:.1f} s)', flush=True)
  if args.output:
    common.write_json(args.output, {'benchmark': 'attention_check', 'backend': jax.default_backend(),
                                    'device': jax.devices()[0].device_kind, 'jax': jax.__version__,
                                    'environment': common.environment(), 'rows': rows})
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
