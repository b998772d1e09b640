"""Orbax checkpoints of the train state and the input position: atomic, keep K, resume from the latest.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed at any moment
leaves the previous complete checkpoint readable. Every process writes its own input-iterator state into the
same step (each host reads its own files); the arrays are written once, collectively.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


@dataclasses.dataclass
class InputStateSave(ocp.args.CheckpointArgs):
  iterator: Any  # a core.dataset.CheckpointableIterator (anything with save(path) / restore(path))


@dataclasses.dataclass
class InputStateRestore(ocp.args.CheckpointArgs):
  iterator: Any


class InputStateHandler(ocp.CheckpointHandler):
  """Saves each process's input iterator under `process_<index>` inside the step directory."""

  def save(self, directory: epath.Path, args: InputStateSave) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    args.iterator.save(str(directory / f'process_{jax.process_index()}' / 'iterator'))

  def restore(self, directory: epath.Path, args: InputStateRestore) -> Any:
    path = directory / f'process_{jax.process_index()}'
    if not path.exists():
      raise FileNotFoundError(
          f'{path} is missing: this checkpoint was written by fewer processes than are running now. Restart with '
          f'the same number of processes, or set config.checkpoint.restore_input=False to restart the input.')
    args.iterator.restore(str(path / 'iterator'))
    return args.iterator


ocp.args.register_with_handler(InputStateHandler, for_save=True)(InputStateSave)
ocp.args.register_with_handler(InputStateHandler, for_restore=True)(InputStateRestore)


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` for a `TrainState`, its input position and JSON metadata."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = epath.Path(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=async_save,
                                             # a save that a crash or a full disk cut short leaves a temporary
                                             # directory: remove it at the next start
                                             cleanup_tmp_directories=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def step_on_disk(self) -> Optional[int]:
    """The newest step whose checkpoint is complete on disk (re-read from the directory, not from memory)."""
    self._manager.reload()
    return self._manager.latest_step()

  def all_steps(self) -> list:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, *, train_iter: Any = None, metadata: Optional[Dict[str, Any]] = None) -> None:
    items = {'state': ocp.args.StandardSave(state)}
    if train_iter is not None and hasattr(train_iter, 'save'):
      items['input'] = InputStateSave(train_iter)
    if metadata is not None:
      items['metadata'] = ocp.args.JsonSave(metadata)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, template: Any, *, step: Optional[int] = None, train_iter: Any = None) -> Any:
    """Restores into the structure, shapes and shardings of `template` (concrete or abstract arrays)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {self.directory}.')
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    items = {'state': ocp.args.StandardRestore(abstract)}
    step_dir = self.directory / str(step)
    if train_iter is not None and hasattr(train_iter, 'restore') and (step_dir / 'input').exists():
      items['input'] = InputStateRestore(train_iter)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f'Checkpoint {step_dir} does not match this model/optimizer: {e}. Use a fresh '
                       f'--workdir, or the config that wrote this checkpoint.') from e
    logging.info('Restored checkpoint %s.', step_dir)
    return restored['state']

  def metadata(self, step: Optional[int] = None) -> Optional[Dict[str, Any]]:
    step = self.latest_step() if step is None else step
    path = self.directory / str(step) / 'metadata' / 'metadata'
    return json.loads(path.read_text()) if step is not None and path.exists() else None

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
