"""Saving, loading and merging parameter trees (pretrained weights, converted checkpoints, warm starts).

A params directory holds `params/` (an orbax PyTree checkpoint of numpy arrays) and `metadata.json` (free-form:
model config, where the weights came from). Trainers start from such a directory or from a run's workdir.
"""

from __future__ import annotations

import contextlib
import json
import logging as std_logging
import os
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import traverse_util

from core import atomic, errors


def _is_complete(directory: epath.Path) -> bool:
  """metadata.json is written last: a params directory that has it is complete."""
  return (directory / 'metadata.json').exists() and (directory / 'params').exists()


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _path(directory: str) -> epath.Path:
  return epath.Path(directory if '://' in str(directory) else os.path.abspath(directory))


def save_params(directory: str, params: Any, metadata: Optional[Dict[str, Any]] = None) -> None:
  """Writes `params` (any pytree of arrays) and `metadata` to `directory`, replacing what it held atomically.

  The new copy is written beside it (`directory.new`, metadata.json last) and swapped in by renames
  (`core.atomic.swap_in_directory`): a crash at any moment leaves the previous or the new complete copy, which
  `load_params` finds. Every process calls it (orbax writes collectively); process 0 renames.
  """
  final = _path(directory)
  if jax.process_index() == 0:
    atomic.staging_path(final, _is_complete)  # finishes a swap a crash interrupted; clears a stale copy
  _sync('save_params_staged')
  staged = final.parent / (final.name + atomic.NEW_SUFFIX)
  params = jax.tree_util.tree_map(np.asarray, params)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(staged / 'params', params)
  if jax.process_index() == 0:
    atomic.write_json(staged / 'metadata.json', metadata or {})
    atomic.swap_in_directory(staged, final)
  _sync('save_params_swapped')


def recover_params(directory: str) -> None:
  """Puts a `save_params` directory that a crash inside its swap left as `directory.new`/`directory.old` back in
  place (`core.atomic.recover_directory`: the complete new copy, else the previous one), so that the folder a user
  looks for exists; a no-op otherwise. For the run that owns `directory` (it holds the workdir lock), at its start:
  readers do not need it (`readable_directory`) and change nothing on disk. Every process calls it."""
  final = _path(directory)
  if jax.process_index() == 0:
    atomic.recover_directory(final, _is_complete)
  _sync('recover_params')


def load_params(directory: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Returns `(params as nested dict of numpy arrays, metadata)` from a `save_params` directory."""
  final = _path(directory)
  source = atomic.readable_directory(final, _is_complete)
  path = source / 'params'
  if not path.is_dir():
    raise errors.MissingFileError(f'{final / "params"} does not exist: expected a directory written by save_params '
                                  f'(e.g. by `python -m projects.bert.checkpoints.convert`).')
  if source != final:
    logging.warning('%s is missing: reading %s, the complete copy a crash left beside it.', final, source)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(path)
  return jax.tree_util.tree_map(np.asarray, params), load_params_metadata(directory)


def load_params_metadata(directory: str) -> Dict[str, Any]:
  """The metadata.json of a `save_params` directory ({} when it has none), without reading the arrays."""
  final = _path(directory)
  meta_path = atomic.readable_directory(final, _is_complete) / 'metadata.json'
  if not meta_path.exists():
    return {}
  try:
    return json.loads(meta_path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.DataError(f'{meta_path} is not valid JSON ({e}): the file is damaged. Re-create {final} '
                           f'(convert or train again).') from None


def has_params(directory: str) -> bool:
  """Whether `directory` (or the copy a crash left beside it) holds a complete `save_params` directory."""
  return _is_complete(atomic.readable_directory(_path(directory), _is_complete))


def merge_params(target: Mapping[str, Any], source: Mapping[str, Any], *, source_name: str = 'checkpoint',
                 allow_missing: bool = True) -> Tuple[Dict[str, Any], Dict[str, list]]:
  """Copies every parameter of `source` that `target` also has into `target`.

  Shapes must agree: a mismatch raises naming the variable and both shapes. Target parameters the source lacks
  (e.g. a fresh classification head) keep their initial values unless `allow_missing` is False. Returns the
  merged tree and a report {'loaded': [...], 'kept_init': [...], 'unused': [...]}.
  """
  flat_t = traverse_util.flatten_dict(dict(jax.device_get(target)), sep='/')
  flat_s = traverse_util.flatten_dict(dict(source), sep='/')
  report = {'loaded': [], 'kept_init': [], 'unused': sorted(set(flat_s) - set(flat_t))}
  out = {}
  for name, value in flat_t.items():
    if name in flat_s:
      src = np.asarray(flat_s[name])
      if src.shape != np.shape(value):
        raise ValueError(f'{source_name}: variable {name!r} has shape {src.shape}, but the model expects '
                         f'{np.shape(value)}. The checkpoint is of another model size/vocab: set config.model '
                         f'to match it (see its metadata/config), or start from scratch.')
      out[name] = src.astype(np.asarray(value).dtype)
      report['loaded'].append(name)
    else:
      if not allow_missing:
        raise ValueError(f'{source_name}: variable {name!r} is missing.')
      out[name] = value
      report['kept_init'].append(name)
  return traverse_util.unflatten_dict(out, sep='/'), report


def read_pretrained(path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Parameters to start from, read from either layout:

  - a params directory (`params/` + `metadata.json`, as `save_params` and the converters write), or
  - a run's workdir (or its `checkpoints/` directory): the parameters of its latest train-state checkpoint.
  """
  path = os.path.abspath(path)
  if has_params(path):
    return load_params(path)
  ckpt_dir = os.path.join(path, 'checkpoints') if os.path.isdir(os.path.join(path, 'checkpoints')) else path
  steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not steps:
    raise FileNotFoundError(f'{path} holds neither params/ (a converted or exported checkpoint) nor a run\'s '
                            f'checkpoints/<step>/: point config.init_from at one of those.')
  state_dir = epath.Path(ckpt_dir) / str(steps[-1]) / 'state'
  with ocp.StandardCheckpointer() as ckptr, _without_orbax_metadata_warning():
    metadata = ckptr.metadata(state_dir)
    tree = metadata.item_metadata.tree if hasattr(metadata, 'item_metadata') else metadata.tree
    abstract = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree['params'])
  restored = _restore_params_subtree(state_dir, abstract)
  return jax.tree_util.tree_map(np.asarray, restored), {'source': str(state_dir), 'step': steps[-1]}


class _DropMissingMetadata(std_logging.Filter):
  """Drops orbax's 'Metadata file does not exist' warning: a train-state item of our checkpoints has its
  _CHECKPOINT_METADATA one level up (the step's), which orbax looks for beside the item; nothing is wrong."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Metadata file does not exist')


@contextlib.contextmanager
def _without_orbax_metadata_warning() -> Iterator[None]:
  drop = _DropMissingMetadata()
  logger = std_logging.getLogger('absl')
  logger.addFilter(drop)
  try:
    yield
  finally:
    logger.removeFilter(drop)


def _restore_params_subtree(state_dir: epath.Path, abstract_params: Any) -> Any:
  """Reads only the `params` subtree of a train-state checkpoint (not the optimizer moments)."""
  handler = ocp.PyTreeCheckpointHandler()
  restore_args = jax.tree_util.tree_map(lambda s: ocp.RestoreArgs(restore_type=np.ndarray), abstract_params)
  with ocp.Checkpointer(handler) as ckptr:
    out = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
        item={'params': abstract_params}, restore_args={'params': restore_args}, partial_restore=True))
  return out['params']
