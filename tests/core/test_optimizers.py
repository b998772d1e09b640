"""Learning-rate schedules, the three Adam forms and per-replica gradient clipping, against the formulas of the
reference implementations (google-research/bert `optimization.py`, Keras legacy Adam, Model Garden's
`PolynomialWarmUp`). The side-by-side runs of Model Garden's own optimizer are in benchmarks/fidelity.py."""

import math
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from core import optimizers
from core import sharding as sharding_lib
from core.state import create_sharded_train_state
from core.train_step import make_train_step
from tests.core.toy import GradientReplayModel, replay_key

T, W = 100, 10


def _lrs(**schedule):
  fn = optimizers.learning_rate_schedule(ml_collections.ConfigDict({'base_lr': 1.0, 'warmup_steps': W, **schedule}),
                                         T)
  return np.array([float(fn(s)) for s in range(T + 1)])


def test_schedule_decay_from_warmup_end():
  lr = _lrs()
  np.testing.assert_allclose(lr[:W + 1], np.arange(W + 1) / W, atol=1e-7)
  np.testing.assert_allclose(lr[W:], 1.0 - (np.arange(W, T + 1) - W) / (T - W), atol=1e-7)


def test_schedule_google_research_bert():
  """optimization.py: polynomial_decay over all steps from step 0; warm-up init_lr * step / W overrides it."""
  lr = _lrs(decay_from='step_0', warmup='linear')
  steps = np.arange(T + 1)
  np.testing.assert_allclose(lr, np.where(steps < W, steps / W, 1.0 - steps / T), atol=1e-7)
  assert lr[0] == 0.0 and lr[W] == pytest.approx(0.9)


@pytest.mark.parametrize('power', [1.0, 2.0])
def test_schedule_model_garden_polynomial_warmup(power):
  """PolynomialWarmUp(PolynomialDecay(decay_steps=T), W): decay(W) * (max(step, 1) / W) ** power before W."""
  lr = _lrs(decay_from='step_0', warmup='polynomial', warmup_power=power)
  steps = np.arange(T + 1)
  expected = np.where(steps < W, 0.9 * (np.maximum(steps, 1) / W) ** power, 1.0 - steps / T)
  np.testing.assert_allclose(lr, expected, rtol=1e-6, atol=1e-8)
  assert lr[0] == lr[1] == pytest.approx(0.9 / W ** power) and lr[W] == pytest.approx(0.9)


def test_schedule_rejects_unknown_fields():
  with pytest.raises(ValueError, match='decay_from'):
    _lrs(decay_from='middle')
  with pytest.raises(ValueError, match='schedule.warmup'):
    _lrs(warmup='cosine')


def _numpy_adamw(params, grads, lr, form, b1=0.9, b2=0.999, eps=1e-6, wd=0.01):
  """The reference updates, written as each source writes them (decay on every array here)."""
  m, v, out = np.zeros_like(params), np.zeros_like(params), []
  p = params.copy()
  for t, (g, rate) in enumerate(zip(grads, lr), start=1):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    if form == 'none':  # google-research/bert AdamWeightDecayOptimizer
      p = p - rate * (m / (np.sqrt(v) + eps) + wd * p)
    elif form == 'keras':  # AdamWeightDecay: decay with lr_t, then ResourceApplyAdam with alpha
      alpha = rate * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
      p = p - rate * wd * p - m * alpha / (np.sqrt(v) + eps)
    else:
      p = p - rate * ((m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * p)
    out.append(p)
  return out


@pytest.mark.parametrize('form', ['none', 'keras', 'standard'])
def test_adamw_forms_follow_their_references(form):
  rng = np.random.default_rng(0)
  params = rng.normal(size=(5,)).astype(np.float32)
  grads = [rng.normal(size=(5,)).astype(np.float32) * 10.0 ** -k for k in range(6)]  # eps matters as g shrinks
  lr = [1e-3 * (i + 1) for i in range(len(grads))]
  tx = optimizers.create_optimizer(ml_collections.ConfigDict(
      {'name': 'adamw', 'weight_decay': 0.01, 'eps': 1e-6, 'bias_correction': form,
       'no_decay_patterns': ()}), lambda step: jnp.asarray(lr)[step])
  state, p = tx.init(params), jnp.asarray(params)
  for g, expected in zip(grads, _numpy_adamw(params.astype(np.float64), grads, lr, form)):
    updates, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(np.asarray(p), expected, rtol=2e-6)


def test_bias_correction_accepts_booleans():
  assert optimizers.bias_correction(ml_collections.ConfigDict({'bias_correction': False})) == 'none'
  assert optimizers.bias_correction(ml_collections.ConfigDict({'bias_correction': True})) == 'standard'
  with pytest.raises(ValueError, match='bias_correction'):
    optimizers.bias_correction(ml_collections.ConfigDict({'bias_correction': 'tf2'}))


# ------------------------------------------------------------------------------------------- per-replica clipping

PARAMS = {'dense': {'kernel': np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
                    'bias': np.array([0.5, -0.5, 0.0], np.float32)}}


def _run(replicas, optimizer, grad_rows, steps=3, grad_accum_steps=1):
  """Params after each step of SGD (lr 1) on a `replicas`-device mesh; grad_rows(step) -> {path: [rows, ...]}."""
  mesh = sharding_lib.create_mesh(jax.devices()[:replicas])
  model = GradientReplayModel(PARAMS)
  cfg = ml_collections.ConfigDict({'name': 'sgd', **optimizer})
  tx = optimizers.create_optimizer(cfg, optax.constant_schedule(1.0))
  state, shardings = create_sharded_train_state(lambda r: model.init_params(r, None), tx, jax.random.PRNGKey(0), mesh)
  step = make_train_step(model, shardings, mesh, grad_accum_steps=grad_accum_steps,
                         per_replica_clip=optimizers.per_replica_clipping(cfg))
  out = []
  for s in range(steps):
    state, metrics = step(state, sharding_lib.make_global_batch(grad_rows(s), mesh))
    out.append((jax.device_get(state.params), jax.device_get(metrics)))
  return out


def _rows(n_rows, seed=0, multiplier=1.0):
  def rows(s):
    rng = np.random.default_rng(seed + s)
    flat = jax.tree_util.tree_flatten_with_path(PARAMS)[0]
    # Rows of very different sizes, so that some replicas' gradients are clipped and others are not.
    scales = multiplier * np.array([0.05, 3.0, 0.05, 4.0, 0.1, 0.2, 0.05, 0.1])[:n_rows, None]
    return {replay_key(path): (rng.normal(size=(n_rows, p.size)) * scales).reshape((n_rows,) + p.shape)
            .astype(np.float32) for path, p in flat}
  return rows


@pytest.mark.parametrize('scope', ['per_replica_mean', 'per_replica_sum', 'per_replica_pmean'])
def test_per_replica_clipping_on_one_device_is_global_clipping(scope):
  rows = _rows(4)
  ref = _run(1, {'grad_clip_norm': 1.0}, rows)
  got = _run(1, {'grad_clip_norm': 1.0, 'grad_clip_scope': scope}, rows)
  for (p_ref, m_ref), (p, m) in zip(ref, got):
    # The same arithmetic; XLA fuses the two programs differently, so the last bit may differ.
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-7, atol=1e-7), p_ref, p)
    np.testing.assert_allclose(m['grad_norm'], m_ref['grad_norm'], rtol=3e-7)


@pytest.mark.parametrize('scope,replicas,accum', [('per_replica_mean', 4, 1), ('per_replica_sum', 4, 1),
                                                  ('per_replica_mean', 2, 2), ('per_replica_sum', 8, 1),
                                                  ('per_replica_pmean', 4, 1), ('per_replica_pmean', 2, 2)])
def test_per_replica_clipping_clips_each_replica_then_sums(scope, replicas, accum):
  """Replica r's gradient (the mean of its rows), times 1/R for '_mean', clipped to norm 1, then summed; for
  '_pmean' (Scenic) clipped unscaled, then averaged."""
  n_rows = 8
  rows = _rows(n_rows, seed=3, multiplier=replicas if scope == 'per_replica_mean' else 1.0)
  got = _run(replicas, {'grad_clip_norm': 1.0, 'grad_clip_scope': scope}, rows, grad_accum_steps=accum)
  params = {k: v.astype(np.float64) for k, v in traverse(PARAMS).items()}
  clipped = []
  for s, (p, metrics) in enumerate(got):
    batch = rows(s)
    total = {k: 0.0 for k in params}
    norms = []
    for r in range(replicas):
      g = {k: batch[k][r * n_rows // replicas:(r + 1) * n_rows // replicas]
           .astype(np.float64).mean(0) for k in params}
      norm = np.sqrt(sum(np.sum(x ** 2) for x in g.values()))
      norms.append(norm)
      scale = 1.0 / replicas if scope == 'per_replica_mean' else 1.0
      factor = scale * min(1.0, 1.0 / (scale * norm))
      if scope == 'per_replica_pmean':
        factor = min(1.0, 1.0 / norm) / replicas
      clipped.append((norm if scope == 'per_replica_pmean' else scale * norm) > 1.0)
      total = {k: total[k] + factor * g[k] for k in params}
    params = {k: params[k] - total[k] for k in params}
    for k, v in traverse(p).items():
      np.testing.assert_allclose(v, params[k], rtol=1e-5, atol=1e-6, err_msg=f'step {s} {k}')
    np.testing.assert_allclose(metrics['grad_norm'], np.mean(norms), rtol=1e-5)
  assert any(clipped) and not all(clipped)  # both branches of the clip were taken


def traverse(tree):
  return {replay_key(path): np.asarray(x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_unknown_clip_scope():
  with pytest.raises(ValueError, match='grad_clip_scope'):
    optimizers.per_replica_clipping(ml_collections.ConfigDict({'grad_clip_norm': 1.0, 'grad_clip_scope': 'local'}))


def test_keras_adamw_leaves_parameters_without_gradient_alone():
  """Keras skips variables whose gradient is None (not connected to the loss); a zero gradient stands for that."""
  tx = optimizers.create_optimizer(ml_collections.ConfigDict(
      {'name': 'adamw', 'weight_decay': 0.1, 'bias_correction': 'keras', 'no_decay_patterns': ()}),
      optax.constant_schedule(0.1))
  params = {'used': jnp.ones(3), 'unused': jnp.ones(2)}
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update({'used': jnp.array([1.0, -2.0, 0.0]), 'unused': jnp.zeros(2)}, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params['unused'], np.ones(2))
  assert np.all(np.asarray(state.nu['unused']) == 0)
  assert params['used'][2] < 1.0  # a zero entry of a tensor that has a gradient still decays


def _small_run(**fields):
  config = ml_collections.ConfigDict({'batch_size': 32, 'num_epochs': 3.0, 'num_train_steps': 0,
                                      'schedule': {'base_lr': 3e-5, 'warmup_fraction': 0.1}})
  config.update(fields)
  return config


def test_degenerate_schedule_names_the_fields_to_change_with_values_that_train():
  # The run: 60 train examples at GLUE's full-size defaults is 6 steps with a 0.6-step warm-up.
  text = optimizers.degenerate_schedule(_small_run(), 6, num_train_examples=60, advised_base_lr=5e-5)
  assert 'only 6 optimizer steps' in text and 'warm-up of 0.6 steps' in text
  advice = dict(re.findall(r'--config\.([\w.]+)=(\S+)', text))
  batch, epochs = int(advice['batch_size']), int(advice['num_epochs'])
  assert 3 * batch <= 60 and math.ceil(epochs * 60 / batch) >= optimizers.ADVISED_TRAIN_STEPS
  assert float(advice['schedule.base_lr']) == 5e-5
  # An epoch smaller than a batch; a warm-up under one step that the advised steps still leave under one step.
  text = optimizers.degenerate_schedule(_small_run(schedule={'base_lr': 1e-4, 'warmup_fraction': 0.001}), 1,
                                        num_train_examples=10)
  assert 'smaller than one batch (batch_size=32)' in text and 'schedule.warmup_fraction=0.1' in text
  assert 'base_lr' not in text
  # Steps set directly: the advice is steps.
  text = optimizers.degenerate_schedule(_small_run(num_train_steps=5), 5, num_train_examples=1000)
  assert '--config.num_train_steps=60' in text and 'num_epochs' not in text


def test_sane_schedules_and_evaluations_get_no_warning():
  assert optimizers.degenerate_schedule(_small_run(), 0, num_train_examples=60) is None  # evaluation only
  assert optimizers.degenerate_schedule(_small_run(), 1000, num_train_examples=10_000) is None
  assert optimizers.degenerate_schedule(_small_run(schedule={'base_lr': 1e-4, 'warmup_steps': 5}), 100) is None
