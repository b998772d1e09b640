"""Jitted train and eval steps for any `BaseModel`, with shardings, gradient accumulation and donation."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from core import sharding as sharding_lib
from core.model import BaseModel
from core.state import TrainState

TrainStep = Callable[[TrainState, Dict[str, jax.Array]], Tuple[TrainState, Dict[str, jax.Array]]]


def _normalize(metrics: Dict[str, Any]) -> Dict[str, jax.Array]:
  """{name: (sum, count)} -> {name: mean}; plain scalars pass through."""
  out = {}
  for k, v in metrics.items():
    if isinstance(v, tuple):
      out[k] = v[0] / jnp.maximum(v[1], 1e-12)
    else:
      out[k] = v
  return out


def make_train_step(model: BaseModel, state_shardings: Any, mesh: Mesh, *,
                    learning_rate_fn: Optional[optax.Schedule] = None,
                    grad_accum_steps: int = 1) -> TrainStep:
  """Returns `step(state, batch) -> (state, metrics)`, jitted with explicit shardings and the state donated.

  `batch` holds global arrays sharded over the data axis. With `grad_accum_steps` > 1 the batch is split into
  that many micro-batches (each device keeps its own rows) whose gradients are averaged, so the global batch
  can exceed device memory. Metrics are per-step means (floats): loss, the model's train metrics, grad_norm,
  param_norm and update_norm (of the new parameters and of this step's change) and learning_rate.
  """
  metrics_fn = model.get_metrics_fn('train')

  def loss_and_metrics(params, batch, rng):
    outputs = model.forward(params, batch, train=True, rng=rng)
    loss = model.loss_function(outputs, batch, params)
    return loss, metrics_fn(outputs, batch)

  grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)

  def step(state: TrainState, batch: Dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    if grad_accum_steps == 1:
      (loss, metrics), grads = grad_fn(state.params, batch, rng)
    else:
      def split(x):
        b = x.shape[0]
        if b % grad_accum_steps:
          raise ValueError(f'Batch size {b} is not divisible by grad_accum_steps={grad_accum_steps}.')
        # Row i of micro-batch j is global row i*accum + j: every device keeps its own rows, no data moves.
        x = x.reshape((b // grad_accum_steps, grad_accum_steps) + x.shape[1:]).swapaxes(0, 1)
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(None, sharding_lib.DATA_AXIS)))

      micro = jax.tree_util.tree_map(split, batch)

      def body(carry, xs):
        mb, i = xs
        (loss_i, metrics_i), grads_i = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        acc_grads, acc_loss, acc_metrics = carry
        return (jax.tree_util.tree_map(jnp.add, acc_grads, grads_i), acc_loss + loss_i,
                jax.tree_util.tree_map(jnp.add, acc_metrics, metrics_i)), None

      first = jax.tree_util.tree_map(lambda x: x[0], micro)
      metrics_shape = jax.eval_shape(lambda p, b: grad_fn(p, b, rng)[0][1], state.params, first)
      init = (jax.tree_util.tree_map(jnp.zeros_like, state.params), jnp.zeros((), jnp.float32),
              jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape))
      (grads, loss, metrics), _ = jax.lax.scan(body, init, (micro, jnp.arange(grad_accum_steps)))
      grads = jax.tree_util.tree_map(lambda g: g / grad_accum_steps, grads)
      loss = loss / grad_accum_steps
    new_state = state.apply_gradients(grads)
    out = _normalize(metrics)
    out['loss'] = loss
    out['grad_norm'] = optax.global_norm(grads)
    # The loop refuses to checkpoint a state whose parameters are non-finite or exploding: two reductions here,
    # fused into the step, instead of a pass over the parameters on the host.
    out['param_norm'] = optax.global_norm(new_state.params)
    out['update_norm'] = optax.global_norm(jax.tree_util.tree_map(jnp.subtract, new_state.params, state.params))
    if learning_rate_fn is not None:
      out['learning_rate'] = learning_rate_fn(state.step)
    return new_state, out

  return jax.jit(step, in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)), donate_argnums=(0,))


def make_eval_step(model: BaseModel, params_shardings: Any, mesh: Mesh, split: str = 'validation',
                   with_outputs: bool = False) -> Callable[[Any, Dict[str, jax.Array]], Any]:
  """Returns `eval_step(params, batch) -> {name: (sum, count)}` over one batch (sum these over the split), or with
  `with_outputs` `-> (outputs, {name: (sum, count)})`, for host-side metrics computed in the same pass."""
  metrics_fn = model.get_metrics_fn(split)

  def eval_step(params, batch):
    outputs = model.forward(params, batch, train=False)
    metrics = metrics_fn(outputs, batch)
    return (outputs, metrics) if with_outputs else metrics

  return jax.jit(eval_step, in_shardings=(params_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def make_predict_step(model: BaseModel, params_shardings: Any,
                      mesh: Mesh) -> Callable[[Any, Dict[str, jax.Array]], Any]:
  """Returns `predict(params, batch) -> outputs` (replicated, for host-side metrics such as F1 or correlations)."""

  def predict(params, batch):
    return model.forward(params, batch, train=False)

  return jax.jit(predict, in_shardings=(params_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))
