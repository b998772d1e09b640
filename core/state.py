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


def create_sharded_train_state(params_init: Any, tx: optax.GradientTransformation, rng: jax.Array, mesh,
                               param_rules=()) -> tuple:
  """Initialises a `TrainState` directly into its shardings (no full host copy of large models).

  `params_init` is either a `core.param_init.HostInit` (parameter shapes and initialisers: the parameters are drawn
  on the host, nothing is compiled for them) or `fn(rng) -> params` (traced and compiled under `jit`, e.g. a
  jitted `Module.init`). Returns `(state, state_shardings)`.
  """
  from core import param_init
  from core import sharding as sharding_lib

  params_rng, state_rng = jax.random.split(rng)
  host = isinstance(params_init, param_init.HostInit)
  abstract_params = params_init.abstract if host else jax.eval_shape(params_init, params_rng)
  p_shard = sharding_lib.param_shardings(abstract_params, mesh, param_rules)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  replicated = sharding_lib.replicated(mesh)
  # Optimizer moments mirror their parameters' shardings; everything else (counts, step, rng) is replicated.
  opt_shard = _mirror_shardings(abstract_opt, abstract_params, p_shard, replicated)
  shardings = TrainState(step=replicated, params=p_shard, opt_state=opt_shard, rng=replicated, tx=tx)
  if host:
    params = param_init.initialize(abstract_params, params_init.initializers, p_shard,
                                   param_init.seed_from_key(params_rng))
    # The optimizer's initial state (zeros, counts) compiles to a few fills: no random numbers, no forward pass.
    opt_state = jax.jit(tx.init, out_shardings=opt_shard)(params)
    import jax.numpy as jnp
    state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), replicated), params=params, opt_state=opt_state,
                       rng=jax.device_put(state_rng, replicated), tx=tx)
  else:
    state = jax.jit(lambda: TrainState.create(params_init(params_rng), tx, state_rng), out_shardings=shardings)()
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
