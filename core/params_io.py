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
