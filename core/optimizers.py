"""Optimizers and learning-rate schedules from `config.optimizer` / `config.schedule`, built from optax."""

from __future__ import annotations

import re
from typing import Any

import jax
import ml_collections
import optax

# BERT excludes LayerNorm parameters and all biases from weight decay.
DEFAULT_NO_DECAY = (r'LayerNorm', r'layer_norm', r'bias$', r'(^|/)scale$')


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up to `base_lr`, then `decay` ('linear', 'polynomial', 'cosine' or 'constant') to `end_lr`.

  `warmup_steps` may be given directly or as `warmup_fraction` of `num_train_steps`.
  """
  base_lr = float(cfg.base_lr)
  warmup = int(cfg.get('warmup_steps', 0) or round(float(cfg.get('warmup_fraction', 0.0)) * num_train_steps))
  decay_steps = max(num_train_steps - warmup, 1)
  end_lr = float(cfg.get('end_lr', 0.0))
  kind = cfg.get('decay', 'linear')
  if kind == 'linear':
    decay = optax.linear_schedule(base_lr, end_lr, decay_steps)
  elif kind == 'polynomial':
    decay = optax.polynomial_schedule(base_lr, end_lr, float(cfg.get('power', 1.0)), decay_steps)
  elif kind == 'cosine':
    decay = optax.cosine_decay_schedule(base_lr, decay_steps, alpha=end_lr / base_lr if base_lr else 0.0)
  elif kind == 'constant':
    decay = optax.constant_schedule(base_lr)
  else:
    raise ValueError(f"Unknown schedule.decay {kind!r}; use 'linear', 'polynomial', 'cosine' or 'constant'.")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), decay], [warmup])


def weight_decay_mask(params: Any, exclude: tuple = DEFAULT_NO_DECAY) -> Any:
  """True for parameters that get weight decay: everything but the `exclude` patterns ('/'-joined paths)."""
  patterns = [re.compile(p) for p in exclude]

  def keep(path, _):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    return not any(p.search(name) for p in patterns)

  return jax.tree_util.tree_map_with_path(keep, params)


def create_optimizer(cfg: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """`cfg.name` in {'adamw', 'lamb', 'sgd'}; global-norm clipping when `cfg.grad_clip_norm` > 0.

  `cfg.bias_correction=False` gives the original BERT AdamW (no Adam bias correction).
  """
  name = cfg.get('name', 'adamw')
  wd = float(cfg.get('weight_decay', 0.0))
  b1, b2, eps = float(cfg.get('b1', 0.9)), float(cfg.get('b2', 0.999)), float(cfg.get('eps', 1e-6))
  exclude = tuple(cfg.get('no_decay_patterns', DEFAULT_NO_DECAY))
  mask = lambda p: weight_decay_mask(p, exclude)  # noqa: E731
  if name == 'adamw':
    if cfg.get('bias_correction', True):
      tx = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    else:
      tx = optax.chain(
          _scale_by_adam_no_bias_correction(b1, b2, eps),
          optax.add_decayed_weights(wd, mask),
          optax.scale_by_learning_rate(schedule))
  elif name == 'lamb':
    tx = optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
  elif name == 'sgd':
    tx = optax.sgd(schedule, momentum=cfg.get('momentum', None))
  else:
    raise ValueError(f"Unknown optimizer.name {name!r}; use 'adamw', 'lamb' or 'sgd'.")
  clip = float(cfg.get('grad_clip_norm', 0.0))
  if clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx


def _scale_by_adam_no_bias_correction(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
  """Adam moments without bias correction, as in the original BERT `AdamWeightDecayOptimizer`."""
  import jax.numpy as jnp

  def init(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros,
                                  nu=jax.tree_util.tree_map(jnp.zeros_like, params))

  def update(updates, state, params=None):
    del params
    mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
    nu = optax.tree_utils.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
    out = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
    return out, optax.ScaleByAdamState(count=optax.safe_int32_increment(state.count), mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)
