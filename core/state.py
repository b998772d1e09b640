"""The train state: step, parameters, optimizer state and the dropout key, as one pytree."""

from __future__ import annotations

from typing import Any

import flax
import jax
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the input position. All fields are arrays (checkpointable)."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> 'TrainState':
    import jax.numpy as jnp
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng, tx=tx)

  def apply_gradients(self, grads: Any) -> 'TrainState':
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state)


def create_sharded_train_state(init_params_fn, tx: optax.GradientTransformation, rng: jax.Array, mesh,
                               param_rules=()) -> tuple:
  """Initialises a `TrainState` directly into its shardings (no full host copy of large models).

  `init_params_fn(rng) -> params`. Returns `(state, state_shardings)`.
  """
  from core import sharding as sharding_lib

  params_rng, state_rng = jax.random.split(rng)

  def init():
    return TrainState.create(init_params_fn(params_rng), tx, state_rng)

  abstract = jax.eval_shape(init)
  p_shard = sharding_lib.param_shardings(abstract.params, mesh, param_rules)
  # Optimizer moments mirror their parameters' shardings; everything else (counts, step, rng) is replicated.
  opt_shard = _mirror_shardings(abstract.opt_state, abstract.params, p_shard, sharding_lib.replicated(mesh))
  shardings = abstract.replace(step=sharding_lib.replicated(mesh), params=p_shard, opt_state=opt_shard,
                               rng=sharding_lib.replicated(mesh))
  state = jax.jit(init, out_shardings=shardings)()
  return state, shardings


def _mirror_shardings(opt_state, params, params_shardings, default):
  """Sub-trees of `opt_state` shaped like `params` take the parameters' shardings."""
  params_struct = jax.tree_util.tree_structure(params)

  def is_params_like(x):
    try:
      return jax.tree_util.tree_structure(x) == params_struct
    except Exception:  # pylint: disable=broad-except
      return False

  return jax.tree_util.tree_map(lambda x: params_shardings if is_params_like(x) else default, opt_state,
                                is_leaf=is_params_like)
