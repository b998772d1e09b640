"""Optimizers and learning-rate schedules from `config.optimizer` / `config.schedule`, built from optax.

The fields reproduce two reference implementations exactly (see projects/bert/configs/recipes.py for the values):
google-research/bert `optimization.py` (TF1) and TF Model Garden's optimizer factory
(`official/modeling/optimization`: `AdamWeightDecay` over Keras' legacy Adam, `PolynomialWarmUp` over
`PolynomialDecay`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

# BERT excludes LayerNorm parameters and all biases from weight decay.
DEFAULT_NO_DECAY = (r'LayerNorm', r'layer_norm', r'bias$', r'(^|/)scale$')

WARMUPS = ('linear', 'polynomial')
DECAY_FROM = ('warmup_end', 'step_0')
BIAS_CORRECTIONS = ('none', 'keras', 'standard')
CLIP_SCOPES = ('global', 'per_replica_mean', 'per_replica_sum', 'per_replica_pmean')


def _divide(x: jax.Array, divisor: int) -> jax.Array:
  """x / divisor in float32, rounded as TF rounds it: XLA would turn a division by a constant into a multiplication
  by its reciprocal (1 ulp off, which 1 - step / T amplifies near the end of a schedule)."""
  return jnp.asarray(x, jnp.float32) / jax.lax.optimization_barrier(jnp.float32(divisor))


def _polynomial_decay(base_lr: float, end_lr: float, power: float, steps: int) -> optax.Schedule:
  """(base_lr - end_lr) x (1 - min(step, steps) / steps) ** power + end_lr, in the order Keras' PolynomialDecay and
  TF1's polynomial_decay compute it."""

  def schedule(step):
    done = _divide(jnp.minimum(jnp.asarray(step, jnp.float32), steps), steps)
    return (base_lr - end_lr) * jnp.power(1.0 - done, power) + end_lr

  return schedule


def _decay_schedule(kind: str, base_lr: float, end_lr: float, power: float, steps: int) -> optax.Schedule:
  if kind in ('linear', 'polynomial'):
    return _polynomial_decay(base_lr, end_lr, power if kind == 'polynomial' else 1.0, steps)
  if kind == 'cosine':
    return optax.cosine_decay_schedule(base_lr, steps, alpha=end_lr / base_lr if base_lr else 0.0)
  if kind == 'constant':
    return optax.constant_schedule(base_lr)
  raise ValueError(f"Unknown schedule.decay {kind!r}; use 'linear', 'polynomial', 'cosine' or 'constant'.")


def warmup_steps(cfg: ml_collections.ConfigDict, num_train_steps: int) -> int:
  """`cfg.warmup_steps` when set, else round(`cfg.warmup_fraction` x num_train_steps)."""
  return int(cfg.get('warmup_steps', 0) or round(float(cfg.get('warmup_fraction', 0.0)) * num_train_steps))


# A run of fewer optimizer steps than this rarely trains a model (a small task at the full-size defaults: 60 examples,
# batch 32, 3 epochs is 6 steps): the trainer warns before the first step. The advice aims at ADVISED_TRAIN_STEPS.
MIN_TRAIN_STEPS = 20
ADVISED_TRAIN_STEPS = 60


def degenerate_schedule(config: ml_collections.ConfigDict, num_train_steps: int,
                        num_train_examples: Optional[int] = None,
                        advised_base_lr: Optional[float] = None) -> Optional[str]:
  """A warning naming what is degenerate in a run's schedule and the config fields to change, with values, or None.

  Degenerate: fewer than MIN_TRAIN_STEPS steps, an epoch smaller than one batch (`config.batch_size` above
  `num_train_examples`), or a warm-up of `schedule.warmup_fraction` shorter than one step. The advice: a batch of at
  most a third of the train set, `num_epochs` (or `num_train_steps` when the config has no `num_epochs`) for about
  ADVISED_TRAIN_STEPS steps, a warm-up of at least one step, and `advised_base_lr` when given and above base_lr.
  """
  if num_train_steps <= 0:
    return None
  batch = int(config.get('batch_size') or 0)
  schedule = config.get('schedule') or ml_collections.ConfigDict()
  fraction = float(schedule.get('warmup_fraction', 0.0) or 0.0)
  by_fraction = fraction > 0 and not schedule.get('warmup_steps')
  problems = []
  if num_train_steps < MIN_TRAIN_STEPS:
    problems.append(f'only {num_train_steps} optimizer steps')
  n = int(num_train_examples or 0)
  if n and batch > n:
    problems.append(f'an epoch ({n} train examples) smaller than one batch (batch_size={batch})')
  if by_fraction and fraction * num_train_steps < 1:
    problems.append(f'a warm-up of {fraction * num_train_steps:.2g} steps (schedule.warmup_fraction={fraction:g} of '
                    f'{num_train_steps} steps)')
  if not problems:
    return None
  advice, steps = [], ADVISED_TRAIN_STEPS
  if n and batch and config.get('num_epochs') and not config.get('num_train_steps'):
    new_batch = batch
    while new_batch > 1 and 3 * new_batch > n:
      new_batch //= 2
    epochs = math.ceil(ADVISED_TRAIN_STEPS * new_batch / n)
    steps = math.ceil(epochs * n / new_batch)
    advice.append(f'--config.num_epochs={epochs}' + (f' --config.batch_size={new_batch}' if new_batch != batch else '')
                  + f' (~{steps} steps)')
  else:
    advice.append(f'--config.num_train_steps={ADVISED_TRAIN_STEPS}')
  if by_fraction and fraction * steps < 1:
    advice.append(f'--config.schedule.warmup_fraction={max(0.1, 1.0 / steps):.2g}')
  base_lr = float(schedule.get('base_lr', 0.0) or 0.0)
  if advised_base_lr and base_lr < advised_base_lr:
    advice.append(f'--config.schedule.base_lr={advised_base_lr:g} (a short run needs the top of the usual range)')
  return (f'This run\'s schedule is degenerate: {"; ".join(problems)}. It will hardly train (dev scores near or below '
          f'the majority class). For a small data set, change: {" ".join(advice)}.')


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """The learning rate at each step (0-based: step 0 is the first update) from `config.schedule`.

  Fields: base_lr (the decay's starting value), warmup_steps or warmup_fraction (W), decay ('linear',
  'polynomial' with `power`, 'cosine' or 'constant', towards end_lr), and
    decay_from  'warmup_end': the decay runs from base_lr at step W to end_lr at the last step (the Hugging Face
                `get_linear_schedule_with_warmup` shape); 'step_0': the decay is a function of the global step
                over all steps, from base_lr at step 0, and warm-up replaces it before W (google-research/bert
                and Model Garden: with a 10% warm-up the rate is 0.9 x base_lr when warm-up ends).
    warmup      'linear': base_lr x step / W, 0 at step 0 (google-research/bert `optimization.py`);
                'polynomial': decay(W) x (max(step, 1) / W) ** warmup_power, which meets the decay at W (Model
                Garden `lr_schedule.PolynomialWarmUp`; step 0 already gets decay(W) / W).
  """
  base_lr = float(cfg.base_lr)
  warmup = warmup_steps(cfg, num_train_steps)
  end_lr = float(cfg.get('end_lr', 0.0))
  decay_from = cfg.get('decay_from', 'warmup_end')
  warmup_kind = cfg.get('warmup', 'linear')
  if decay_from not in DECAY_FROM:
    raise ValueError(f'Unknown schedule.decay_from {decay_from!r}; use one of {DECAY_FROM}.')
  if warmup_kind not in WARMUPS:
    raise ValueError(f'Unknown schedule.warmup {warmup_kind!r}; use one of {WARMUPS}.')
  offset = warmup if decay_from == 'warmup_end' else 0
  decay = _decay_schedule(cfg.get('decay', 'linear'), base_lr, end_lr, float(cfg.get('power', 1.0)),
                          max(num_train_steps - offset, 1))
  if warmup == 0:
    return decay
  power = float(cfg.get('warmup_power', 1.0))
  peak = decay(warmup - offset)  # where warm-up ends: base_lr, or decay(W) when the decay started at step 0

  def schedule(step):
    step_f = jnp.asarray(step, jnp.float32)
    if warmup_kind == 'linear':
      warm = base_lr * _divide(step_f, warmup)
    else:
      warm = peak * jnp.power(_divide(jnp.maximum(step_f, 1.0), warmup), power)
    return jnp.where(step_f < warmup, warm, decay(jnp.maximum(step - offset, 0)))

  return schedule


def weight_decay_mask(params: Any, exclude: tuple = DEFAULT_NO_DECAY) -> Any:
  """True for parameters that get weight decay: everything but the `exclude` patterns ('/'-joined paths)."""
  patterns = [re.compile(p) for p in exclude]

  def keep(path, _):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    return not any(p.search(name) for p in patterns)

  return jax.tree_util.tree_map_with_path(keep, params)


def bias_correction(cfg: ml_collections.ConfigDict) -> str:
  """`cfg.bias_correction` as one of BIAS_CORRECTIONS (True / False are 'standard' / 'none')."""
  value = cfg.get('bias_correction', 'standard')
  value = {True: 'standard', False: 'none'}.get(value, value) if isinstance(value, bool) else value
  if value not in BIAS_CORRECTIONS:
    raise ValueError(f'Unknown optimizer.bias_correction {value!r}; use one of {BIAS_CORRECTIONS}.')
  return value


def clip_scope(cfg: ml_collections.ConfigDict) -> str:
  """`cfg.grad_clip_scope`, checked: where gradients are clipped (see `create_optimizer`)."""
  scope = cfg.get('grad_clip_scope', 'global')
  if scope not in CLIP_SCOPES:
    raise ValueError(f'Unknown optimizer.grad_clip_scope {scope!r}; use one of {CLIP_SCOPES}.')
  return scope


def per_replica_clipping(cfg: ml_collections.ConfigDict) -> Optional[Tuple[float, str]]:
  """(clip norm, 'mean', 'sum' or 'pmean') when gradients are clipped per replica before the reduction, else
  None."""
  clip, scope = float(cfg.get('grad_clip_norm', 0.0)), clip_scope(cfg)
  if clip <= 0 or scope == 'global':
    return None
  return clip, scope[len('per_replica_'):]


def create_optimizer(cfg: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """`cfg.name` in {'adamw', 'lamb', 'sgd'} from `config.optimizer`.

  AdamW fields: b1, b2, eps, weight_decay (decoupled: lr x weight_decay x param, on every parameter but those
  matching `no_decay_patterns`), and bias_correction:
    'none'      google-research/bert `AdamWeightDecayOptimizer`: m / (sqrt(v) + eps), no bias correction;
    'keras'     Model Garden `AdamWeightDecay` (Keras legacy Adam): the step size is
                lr x sqrt(1 - b2^t) / (1 - b1^t) and eps is added to the uncorrected sqrt(v);
    'standard'  optax / PyTorch AdamW: m_hat / (sqrt(v_hat) + eps).
  Gradients are clipped to `grad_clip_norm` (> 0) by their global norm. With grad_clip_scope='global' (the default)
  the clip acts on the gradient of the whole global batch, here in the optimizer; with 'per_replica_mean' or
  'per_replica_sum' the train step clips each replica's gradient before the cross-replica reduction (see
  `core.train_step.make_train_step`), and the optimizer does not clip again; 'per_replica_pmean' clips each
  replica's gradient of its mean loss and averages the clipped gradients (Scenic BERT's trainer: clip_grads, then
  lax.pmean), where 'per_replica_mean' clips the replica's gradient divided by the replica count and sums.
  """
  name = cfg.get('name', 'adamw')
  wd = float(cfg.get('weight_decay', 0.0))
  b1, b2, eps = float(cfg.get('b1', 0.9)), float(cfg.get('b2', 0.999)), float(cfg.get('eps', 1e-6))
  exclude = tuple(cfg.get('no_decay_patterns', DEFAULT_NO_DECAY))
  mask = lambda p: weight_decay_mask(p, exclude)  # noqa: E731
  if name == 'adamw':
    correction = bias_correction(cfg)
    if correction == 'standard':
      tx = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    elif correction == 'keras':
      tx = keras_adamw(schedule, b1, b2, eps, wd, mask)
    else:
      tx = optax.chain(scale_by_adam_uncorrected(b1, b2, eps), optax.add_decayed_weights(wd, mask),
                       optax.scale_by_learning_rate(schedule))
  elif name == 'lamb':
    tx = optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
  elif name == 'sgd':
    tx = optax.sgd(schedule, momentum=cfg.get('momentum', None))
  else:
    raise ValueError(f"Unknown optimizer.name {name!r}; use 'adamw', 'lamb' or 'sgd'.")
  clip = float(cfg.get('grad_clip_norm', 0.0))
  if clip > 0 and clip_scope(cfg) == 'global':
    tx = optax.chain(clip_by_global_norm(clip), tx)
  return tx


def scale_by_adam_uncorrected(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
  """Adam directions m / (sqrt(v) + eps) from moments without bias correction, as google-research/bert's
  `AdamWeightDecayOptimizer` computes them."""

  def init(params):
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

  def update(updates, state, params=None):
    del params
    mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
    nu = optax.tree_utils.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
    out = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
    return out, optax.ScaleByAdamState(count=optax.safe_int32_increment(state.count), mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)


def keras_adamw(schedule: optax.Schedule, b1: float, b2: float, eps: float, weight_decay: float,
                mask: Any) -> optax.GradientTransformation:
  """Model Garden's `AdamWeightDecay` step, in its order of operations (so that float32 rounds alike).

  At update t (1-based) with lr = schedule(t - 1): decayed parameters first become p - lr x p x weight_decay; then
  Keras legacy Adam's `ResourceApplyAdam`: m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
  p -= m x alpha / (sqrt(v) + eps) with alpha = lr x sqrt(1 - b2^t) / (1 - b1^t): bias correction sits in the step
  size, so eps meets the uncorrected sqrt(v) (early steps are larger than optax.adam's). The update returned is
  new p - p, which `optax.apply_updates` adds back exactly. `mask(params)` says which parameters decay.

  A parameter whose gradient is exactly zero everywhere is left alone (no decay, moments kept), as Keras skips
  variables without a gradient: e.g. the encoder's pooler when next-sentence prediction has its own head.
  """

  def init(params):
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

  def update(grads, state, params=None):
    if params is None:
      raise ValueError('keras_adamw needs the parameters (weight decay and the update are computed from them).')
    lr = schedule(state.count)
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    alpha = lr * jnp.sqrt(1.0 - jnp.power(jnp.float32(b2), t)) / (1.0 - jnp.power(jnp.float32(b1), t))
    # 1 - b in float32, as Keras computes it from its float32 hyper-parameters (1 - float32(0.999) is 1.3e-5 off).
    one_minus_b1, one_minus_b2 = 1.0 - jnp.float32(b1), 1.0 - jnp.float32(b2)

    def step(p, g, m, v, decays):
      has_grad = jnp.any(g != 0)
      m_new = jnp.where(has_grad, m + (g - m) * one_minus_b1, m)
      v_new = jnp.where(has_grad, v + (jnp.square(g) - v) * one_minus_b2, v)
      decayed = p - lr * p * weight_decay if (decays and weight_decay) else p
      new_p = decayed - m_new * alpha / (jnp.sqrt(v_new) + eps)
      return jnp.where(has_grad, new_p - p, jnp.zeros_like(p)), m_new, v_new

    flat_p, treedef = jax.tree_util.tree_flatten(params)
    results = [step(*args) for args in zip(flat_p, treedef.flatten_up_to(grads), treedef.flatten_up_to(state.mu),
                                          treedef.flatten_up_to(state.nu), treedef.flatten_up_to(mask(params)))]
    out, mu, nu = (treedef.unflatten([r[i] for r in results]) for i in range(3))
    return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)


def clip_replica_gradients(grads: Any, clip_norm: float, scale: float = 1.0) -> Tuple[Any, jax.Array]:
  """(`grads` x scale clipped to global norm `clip_norm`, the norm of `grads` before scaling).

  With scale 1 this is global-norm clipping; with scale 1/R it is one replica's contribution to the summed
  gradient, as Model Garden's `AdamWeightDecay.apply_gradients` clips it. The factor is computed as
  `tf.clip_by_global_norm` computes it (clip_norm x min(1 / norm, 1 / clip_norm)), so the results round alike.
  """
  norm = optax.global_norm(grads)
  scaled = jnp.maximum(scale * norm, jnp.finfo(jnp.float32).tiny)
  factor = scale * (clip_norm * jnp.minimum(1.0 / scaled, 1.0 / clip_norm))
  return jax.tree_util.tree_map(lambda g: g * factor.astype(g.dtype), grads), norm


def clip_by_global_norm(clip_norm: float) -> optax.GradientTransformation:
  """`clip_replica_gradients` as an optax transformation (the same rounding on every clipping path)."""
  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      lambda updates, state, params=None: (
                                          clip_replica_gradients(updates, clip_norm)[0], state))
