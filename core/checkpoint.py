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

from core import errors


@dataclasses.dataclass
class InputStateSave(ocp.args.CheckpointArgs):
  iterator: Any  # a core.dataset.CheckpointableIterator (anything with save(path) / restore(path))


@dataclasses.dataclass
class InputStateRestore(ocp.args.CheckpointArgs):
  iterator: Any


class InputStateHandler(ocp.CheckpointHandler):
  """Saves each process's input iterator under `process_<index>` inside the step directory, with the iterator's
  `fingerprint` (what defines its position: files, batch size, lengths, ...) so that a resume into another pipeline
  says what changed instead of failing inside TensorFlow or reading wrong positions."""

  def save(self, directory: epath.Path, args: InputStateSave) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    process_dir = directory / f'process_{jax.process_index()}'
    args.iterator.save(str(process_dir / 'iterator'))
    fingerprint = getattr(args.iterator, 'fingerprint', None)
    if fingerprint is not None:
      (process_dir / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2, sort_keys=True))

  def restore(self, directory: epath.Path, args: InputStateRestore) -> Any:
    path = directory / f'process_{jax.process_index()}'
    if not path.exists():
      raise errors.ConfigError(
          f'{path} is missing: this checkpoint was written by fewer processes than are running now. Restart with '
          f'the same number of processes, or set --config.checkpoint.restore_input=False to restart the input.')
    saved = path / FINGERPRINT_FILE
    current = getattr(args.iterator, 'fingerprint', None)
    if current is not None and saved.exists():
      changes = describe_changes(json.loads(saved.read_text()), json.loads(json.dumps(current)))
      if changes:
        raise errors.ConfigError(f'The input pipeline differs from the one {directory.parent} was written with: '
                                 f'{changes}. {_RESTORE_INPUT_FIX}')
    try:
      args.iterator.restore(str(path / 'iterator'))
    except Exception as e:  # pylint: disable=broad-except  (TensorFlow's errors for another pipeline vary)
      raise errors.ConfigError(f'The input position saved in {path} does not fit this input pipeline ({e}). '
                               f'{_RESTORE_INPUT_FIX}') from None
    return args.iterator


FINGERPRINT_FILE = 'fingerprint.json'
_RESTORE_INPUT_FIX = (
    'A saved input position cannot be restored into another pipeline. To continue this run\'s weights on the new '
    'input in this workdir, rerun with --config.checkpoint.restore_input=False (the input restarts from its first '
    'record); for a new run or phase (e.g. pretraining phase 2) from these weights, use a new --workdir with '
    '--config.init_from=<this workdir>; to resume exactly, go back to the settings this checkpoint was written with.')


def describe_changes(old: Dict[str, Any], new: Dict[str, Any], prefix: str = '') -> str:
  """'key: old -> new; ...' for the entries of two JSON-like dicts that differ (lists of files as added/removed)."""
  parts = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if a == b:
      continue
    name = prefix + key
    if isinstance(a, dict) and isinstance(b, dict):
      parts.append(describe_changes(a, b, name + '.'))
    elif isinstance(a, list) and isinstance(b, list) and set(map(str, a)) != set(map(str, b)):
      removed, added = [x for x in a if x not in b], [x for x in b if x not in a]
      parts.append(f'{name}: {len(a)} -> {len(b)} entries' + (f', removed {removed[:3]}' if removed else '') +
                   (f', added {added[:3]}' if added else ''))
    else:
      parts.append(f'{name}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}')
  return '; '.join(p for p in parts if p)


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
    except errors.UserError:
      raise
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
