"""Everything a trainer does before its first step, written once: mesh, optimizer, sharded state, and where the
weights come from — own checkpoint (resume) > pretrained init > random.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Optional

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from core import optimizers
from core import sharding as sharding_lib
from core import train_step as train_step_lib
from core.checkpoint import Checkpointer
from core.model import BaseModel
from core.state import TrainState, create_sharded_train_state


@dataclasses.dataclass
class TrainingSetup:
  """What `setup_training` returns; `resumed_from` is the restored step or None."""

  mesh: Mesh
  state: TrainState
  state_shardings: Any
  train_step: Callable
  learning_rate_fn: optax.Schedule
  checkpointer: Checkpointer
  resumed_from: Optional[int]


def example_batch_from_meta(meta_data: Dict[str, Any], batch_size: int = 1) -> Dict[str, np.ndarray]:
  """Zeros shaped like one batch, from meta_data['input_specs'] = {name: (shape without batch, dtype)}."""
  specs = meta_data['input_specs']
  return {k: np.zeros((batch_size,) + tuple(shape), np.dtype(dtype)) for k, (shape, dtype) in specs.items()}


def setup_training(
    *,
    config: ml_collections.ConfigDict,
    model: BaseModel,
    example_batch: Dict[str, np.ndarray],
    num_train_steps: int,
    workdir: str,
    rng: jax.Array,
    train_iter: Any = None,
    load_pretrained: Optional[Callable[[Any], Any]] = None,
) -> TrainingSetup:
  """Builds the optimizer from `config.optimizer`/`config.schedule`, the sharded state, and restores.

  `load_pretrained(params) -> params` is applied to fresh parameters only when there is no checkpoint of this
  run in `workdir/checkpoints`: a resumed run never re-reads the pretrained weights.
  """
  mesh = sharding_lib.create_mesh()
  logging.info('Mesh %s over %d devices (%s), %d process(es); global batch %s split over the data axis.',
               dict(mesh.shape), mesh.devices.size, jax.default_backend(), jax.process_count(),
               config.get('batch_size'))
  lr_fn = optimizers.learning_rate_schedule(config.schedule, num_train_steps)
  tx = optimizers.create_optimizer(config.optimizer, lr_fn)
  rules = tuple(tuple(r) for r in config.get('param_sharding_rules', ()))
  state, shardings = create_sharded_train_state(lambda r: model.init_params(r, example_batch), tx, rng, mesh, rules)
  ckpt_cfg = config.get('checkpoint', ml_collections.ConfigDict())
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), max_to_keep=ckpt_cfg.get('keep', 3),
                              async_save=ckpt_cfg.get('async_save', True))
  latest = checkpointer.latest_step()
  if latest is not None:
    restore_iter = train_iter if ckpt_cfg.get('restore_input', True) else None
    state = checkpointer.restore(state, train_iter=restore_iter)
    logging.info('Resuming from %s/checkpoints at step %d.', workdir, latest)
  elif load_pretrained is not None:
    params = load_pretrained(jax.device_get(state.params))
    state = state.replace(params=jax.device_put(params, shardings.params),
                          opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(
                              jax.device_put(params, shardings.params)))
  step = train_step_lib.make_train_step(model, shardings, mesh, learning_rate_fn=lr_fn,
                                        grad_accum_steps=config.get('grad_accum_steps', 1),
                                        per_replica_clip=optimizers.per_replica_clipping(config.optimizer))
  return TrainingSetup(mesh=mesh, state=state, state_shardings=shardings, train_step=step, learning_rate_fn=lr_fn,
                       checkpointer=checkpointer, resumed_from=latest)
