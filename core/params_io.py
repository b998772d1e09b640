"""Saving, loading and merging parameter trees (pretrained weights, converted checkpoints, warm starts).

A params directory holds `params/` (an orbax PyTree checkpoint of numpy arrays) and `metadata.json` (free-form:
model config, where the weights came from). Trainers start from such a directory or from a run's workdir.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util


def save_params(directory: str, params: Any, metadata: Optional[Dict[str, Any]] = None) -> None:
  """Writes `params` (any pytree of arrays) and `metadata` under `directory` (atomically, through orbax)."""
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  params = jax.tree_util.tree_map(np.asarray, params)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(epath.Path(directory) / 'params', params, force=True)
  if jax.process_index() == 0:
    with open(os.path.join(directory, 'metadata.json'), 'w') as f:
      json.dump(metadata or {}, f, indent=2, sort_keys=True)


def load_params(directory: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Returns `(params as nested dict of numpy arrays, metadata)` from a `save_params` directory."""
  directory = os.path.abspath(directory)
  path = os.path.join(directory, 'params')
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{path} does not exist: expected a directory written by save_params '
                            f'(e.g. by `python -m projects.bert.convert`).')
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(epath.Path(path))
  meta_path = os.path.join(directory, 'metadata.json')
  metadata = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
  return jax.tree_util.tree_map(np.asarray, params), metadata


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
  if os.path.isdir(os.path.join(path, 'params')):
    return load_params(path)
  ckpt_dir = os.path.join(path, 'checkpoints') if os.path.isdir(os.path.join(path, 'checkpoints')) else path
  steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not steps:
    raise FileNotFoundError(f'{path} holds neither params/ (a converted or exported checkpoint) nor a run\'s '
                            f'checkpoints/<step>/: point config.init_from at one of those.')
  state_dir = epath.Path(ckpt_dir) / str(steps[-1]) / 'state'
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(state_dir)
    tree = metadata.item_metadata.tree if hasattr(metadata, 'item_metadata') else metadata.tree
    abstract = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree['params'])
  restored = _restore_params_subtree(state_dir, abstract)
  return jax.tree_util.tree_map(np.asarray, restored), {'source': str(state_dir), 'step': steps[-1]}


def _restore_params_subtree(state_dir: epath.Path, abstract_params: Any) -> Any:
  """Reads only the `params` subtree of a train-state checkpoint (not the optimizer moments)."""
  handler = ocp.PyTreeCheckpointHandler()
  restore_args = jax.tree_util.tree_map(lambda s: ocp.RestoreArgs(restore_type=np.ndarray), abstract_params)
  with ocp.Checkpointer(handler) as ckptr:
    out = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
        item={'params': abstract_params}, restore_args={'params': restore_args}, partial_restore=True))
  return out['params']
