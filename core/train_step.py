"""Jitted train and eval steps for any `BaseModel`, with shardings, gradient accumulation and donation."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from core import optimizers
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


def _varying(x: jax.Array, axis: str) -> jax.Array:
  """`x` as a per-replica value of `axis` inside shard_map (unchanged when it already is one)."""
  return x if axis in jax.typeof(x).manual_axis_type.varying else jax.lax.pcast(x, axis, to='varying')


def make_train_step(model: BaseModel, state_shardings: Any, mesh: Mesh, *,
                    learning_rate_fn: Optional[optax.Schedule] = None,
                    grad_accum_steps: int = 1,
                    per_replica_clip: Optional[Tuple[float, str]] = None) -> TrainStep:
  """Returns `step(state, batch) -> (state, metrics)`, jitted with explicit shardings and the state donated.

  `batch` holds global arrays sharded over the data axis. With `grad_accum_steps` > 1 the batch is split into
  that many micro-batches (each device keeps its own rows) whose gradients are averaged, so the global batch
  can exceed device memory. Metrics are per-step means (floats): loss, the model's train metrics, grad_norm,
  param_norm and update_norm (of the new parameters and of this step's change) and learning_rate.

  `per_replica_clip=(clip_norm, 'mean' | 'sum')` computes the gradient per replica (each device of the data axis,
  on its own rows of the batch, with its own dropout key) and clips it before the cross-replica sum, as TF Model
  Garden's `AdamWeightDecay` does under a distribution strategy: each replica's gradient of its mean loss,
  divided by the number of replicas ('mean': `base_task.train_step` scales the loss so) or not ('sum':
  `masked_lm`'s scale_loss=False), is clipped to global norm clip_norm, and the clipped gradients are summed;
  'pmean' (Scenic BERT) clips each replica's gradient of its mean loss and averages them. On one device this is
  global clipping. The loss is then the mean of the replicas' losses, grad_norm the mean of
  their gradient norms before clipping.
  """
  metrics_fn = model.get_metrics_fn('train')

  def loss_and_metrics(params, batch, rng):
    outputs = model.forward(params, batch, train=True, rng=rng)
    loss = model.loss_function(outputs, batch, params)
    return loss, metrics_fn(outputs, batch)

  grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)

  def batch_grads(params, batch, rng, row_sharding, replica_axis=None):
    """((loss, metrics), grads) of `batch`, averaged over `grad_accum_steps` micro-batches.

    Inside shard_map (`replica_axis` set) the accumulators are per-replica values like the gradients they sum.
    """
    if grad_accum_steps == 1:
      return grad_fn(params, batch, rng)

    def split(x):
      b = x.shape[0]
      if b % grad_accum_steps:
        raise ValueError(f'Batch size {b} is not divisible by grad_accum_steps={grad_accum_steps}.')
      # Row i of micro-batch j is row i*accum + j: every device keeps its own rows, no data moves.
      x = x.reshape((b // grad_accum_steps, grad_accum_steps) + x.shape[1:]).swapaxes(0, 1)
      return x if row_sharding is None else jax.lax.with_sharding_constraint(x, row_sharding)

    micro = jax.tree_util.tree_map(split, batch)

    def body(carry, xs):
      mb, i = xs
      (loss_i, metrics_i), grads_i = grad_fn(params, mb, jax.random.fold_in(rng, i))
      acc_grads, acc_loss, acc_metrics = carry
      return (jax.tree_util.tree_map(jnp.add, acc_grads, grads_i), acc_loss + loss_i,
              jax.tree_util.tree_map(jnp.add, acc_metrics, metrics_i)), None

    first = jax.tree_util.tree_map(lambda x: x[0], micro)
    metrics_shape = jax.eval_shape(lambda p, b: grad_fn(p, b, rng)[0][1], params, first)
    init = (jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.float32),
            jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape))
    if replica_axis is not None:
      init = jax.tree_util.tree_map(lambda x: _varying(x, replica_axis), init)
    (grads, loss, metrics), _ = jax.lax.scan(body, init, (micro, jnp.arange(grad_accum_steps)))
    grads = jax.tree_util.tree_map(lambda g: g / grad_accum_steps, grads)
    return (loss / grad_accum_steps, metrics), grads

  def replica_grads(params, batch, rng):
    """Runs on each replica (inside shard_map): its gradient, clipped, then summed over the replicas."""
    clip_norm, reduction = per_replica_clip
    axis = sharding_lib.DATA_AXIS
    replica = jax.lax.axis_index(axis)
    # Differentiate with respect to a per-replica copy: gradients of replicated inputs would be summed by JAX.
    local = jax.lax.pcast(params, axis, to='varying')
    (loss, metrics), grads = batch_grads(local, batch, jax.random.fold_in(rng, replica), None, axis)
    scale = 1.0 / jax.lax.axis_size(axis) if reduction == 'mean' else 1.0
    grads, norm = optimizers.clip_replica_gradients(grads, clip_norm, scale)
    reduce = jax.lax.pmean if reduction == 'pmean' else jax.lax.psum
    metrics = {k: tuple(jax.lax.psum(x, axis) for x in v) if isinstance(v, tuple) else jax.lax.pmean(v, axis)
               for k, v in metrics.items()}
    return (jax.lax.pmean(loss, axis), metrics), reduce(grads, axis), jax.lax.pmean(norm, axis)

  if per_replica_clip is not None:
    if per_replica_clip[1] not in ('mean', 'sum', 'pmean'):
      raise ValueError(f"per_replica_clip reduction {per_replica_clip[1]!r}; use 'mean', 'sum' or 'pmean'.")
    replica_grads = jax.shard_map(replica_grads, mesh=mesh, in_specs=(P(), P(sharding_lib.DATA_AXIS), P()),
                                  out_specs=P())
  micro_sharding = NamedSharding(mesh, P(None, sharding_lib.DATA_AXIS))

  def step(state: TrainState, batch: Dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    if per_replica_clip is None:
      (loss, metrics), grads = batch_grads(state.params, batch, rng, micro_sharding)
      grad_norm = optax.global_norm(grads)
    else:
      (loss, metrics), grads, grad_norm = replica_grads(state.params, batch, rng)
    new_state = state.apply_gradients(grads)
    out = _normalize(metrics)
    out['loss'] = loss
    out['grad_norm'] = grad_norm
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
