"""Everything a trainer does before its first step, written once: mesh, optimizer, sharded state, where the
weights come from — own checkpoint (resume) > pretrained init > random — and the run's config.json.

config.json is written here, once the state is in place (data read, model built, weights restored or loaded), so a
run that fails on a wrong flag before that leaves nothing behind; `core.app` checks a workdir against it only once
the workdir holds a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Dict, Optional

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from core import atomic, errors, optimizers
from core import sharding as sharding_lib
from core import train_step as train_step_lib
from core.checkpoint import Checkpointer
from core.dataset import DatasetMetaData
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


CONFIG_FILE = 'config.json'


def example_batch_from_meta(meta_data: DatasetMetaData, batch_size: int = 1) -> Dict[str, np.ndarray]:
  """Zeros shaped like one batch, from meta_data.input_specs = {name: (shape without batch, dtype)}."""
  return {k: np.zeros((batch_size,) + tuple(shape), np.dtype(dtype))
          for k, (shape, dtype) in meta_data.input_specs.items()}


def write_run_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes workdir/config.json (first process) atomically (`core.atomic`: a crash leaves the old or the new file
  whole): what the checkpoints in workdir are."""
  path = os.path.join(workdir, CONFIG_FILE)
  if jax.process_index() == 0:
    atomic.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def read_run_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config.json of the run in `workdir`, or None when it has none; a damaged one raises, naming the file."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.ConfigError(f'{path} is not valid JSON ({e}): it is damaged (a run of an older version stopped '
                             f'while writing it?). Delete it if this workdir holds the run you are starting, or use '
                             f'a new --workdir.') from None


def _same_path(a: str, b: str) -> bool:
  if not a or not b or '://' in a + b:
    return a == b
  return os.path.abspath(a) == os.path.abspath(b)


def check_resume_trains(config: ml_collections.ConfigDict, workdir: str, step: int, num_train_steps: int) -> None:
  """Refuses a run in a workdir whose checkpoint is at `step` when it would train nothing while it looks like a new
  run or phase: the checkpoint is past `num_train_steps`, or it is at the end and `config.init_from` names other
  weights than the run in this workdir started from (they would not be read). A finished run's own command, rerun,
  passes (its loop says there is nothing to train); so does an evaluation (`num_train_steps` 0)."""
  if num_train_steps <= 0 or step < num_train_steps:
    return
  init_from = config.get('init_from') or ''
  saved = read_run_config(workdir)
  started_from = (saved.get('init_from') or '') if saved is not None else init_from
  ignored = bool(init_from) and not _same_path(init_from, started_from) and not _same_path(init_from, workdir)
  if step == num_train_steps and not ignored:
    return
  new_phase = (f'For a new run or phase from these weights, use a new --workdir with --config.init_from={workdir}'
               + (f' (config.init_from={init_from} is not read here: this workdir\'s own checkpoint wins over it; '
                  f'to start from {init_from}, use a new --workdir)' if ignored else '') + '.')
  raise errors.ConfigError(
      f'Nothing to train: {workdir}/checkpoints is at step {step}, '
      f'{"past" if step > num_train_steps else "already at"} num_train_steps={num_train_steps}'
      f'{f", and config.init_from={init_from} would not be read" if ignored else ""}. {new_phase} To train this '
      f'run further, raise --config.num_train_steps above {step}.')


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
  """Builds the optimizer from `config.optimizer`/`config.schedule`, the sharded state, restores, and writes the
  run's config.json.

  `load_pretrained(params) -> params` is applied to fresh parameters only when there is no checkpoint of this
  run in `workdir/checkpoints`: a resumed run never re-reads the pretrained weights. A run of zero steps (an
  evaluation) gets no optimizer: config.optimizer and config.schedule are not read.
  """
  mesh = sharding_lib.create_mesh()
  logging.info('Mesh %s over %d devices (%s), %d process(es); global batch %s split over the data axis.',
               dict(mesh.shape), mesh.devices.size, jax.default_backend(), jax.process_count(),
               config.get('batch_size'))
  if num_train_steps > 0:
    lr_fn = optimizers.learning_rate_schedule(config.schedule, num_train_steps)
    tx = optimizers.create_optimizer(config.optimizer, lr_fn)
    per_replica_clip = optimizers.per_replica_clipping(config.optimizer)
  else:  # nothing to optimise (a config without optimizer, e.g. few-shot): no moments to hold
    lr_fn, tx, per_replica_clip = optax.constant_schedule(0.0), optax.identity(), None
  rules = tuple(tuple(r) for r in config.get('param_sharding_rules', ()))
  state, shardings = create_sharded_train_state(model.params_init(example_batch), tx, rng, mesh, rules)
  ckpt_cfg = config.get('checkpoint', ml_collections.ConfigDict())
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), max_to_keep=ckpt_cfg.get('keep', 3),
                              async_save=ckpt_cfg.get('async_save', True))
  latest = checkpointer.latest_step()
  if latest is not None:
    if config.get('init_from'):
      logging.info('config.init_from=%s is not read: this workdir holds its own checkpoint (step %d), which is '
                   'restored. To start from init_from instead, use a new --workdir.', config.init_from, latest)
    restore_iter = train_iter if ckpt_cfg.get('restore_input', True) else None
    state = checkpointer.restore(state, train_iter=restore_iter)
    check_resume_trains(config, workdir, latest, num_train_steps)
    logging.info('Resuming from %s/checkpoints at step %d.', workdir, latest)
  elif load_pretrained is not None:
    params = load_pretrained(jax.device_get(state.params))
    state = state.replace(params=jax.device_put(params, shardings.params),
                          opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(
                              jax.device_put(params, shardings.params)))
  step = train_step_lib.make_train_step(model, shardings, mesh, learning_rate_fn=lr_fn,
                                        grad_accum_steps=config.get('grad_accum_steps', 1),
                                        per_replica_clip=per_replica_clip)
  write_run_config(config, workdir)
  return TrainingSetup(mesh=mesh, state=state, state_shardings=shardings, train_step=step, learning_rate_fn=lr_fn,
                       checkpointer=checkpointer, resumed_from=latest)
