"""Device mesh and shardings: data parallel over every device of every host, with optional parameter sharding.

Everything goes through `jax.sharding.Mesh` and `jit` with explicit shardings; there is no `pmap`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh named `data` over all devices of all processes (or the given ones)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def host_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch; the global batch must split evenly over devices."""
  n_dev = jax.device_count()
  if global_batch_size % n_dev:
    raise ValueError(f'Global batch size {global_batch_size} is not divisible by the {n_dev} devices; '
                     f'set config.batch_size to a multiple of {n_dev}.')
  return global_batch_size // jax.process_count()


def make_global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Host-local numpy batch -> global `jax.Array`s sharded over the data axis."""
  sharding = batch_sharding(mesh)
  return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                                dict(local_batch))


def param_shardings(params: Any, mesh: Mesh, rules: Sequence[Tuple[str, str]] = ()) -> Any:
  """Shardings for a parameter tree.

  `rules` is a list of (regex over the '/'-joined parameter path, mode); the first match wins. Modes:
  'replicate' (the default for unmatched parameters) and 'fsdp' (split the largest dimension that the data axis
  divides over the data axis, ZeRO-3 style; parameters that no dimension fits stay replicated).
  """
  n = mesh.shape[DATA_AXIS]
  compiled = [(re.compile(pattern), mode) for pattern, mode in rules]
  for _, mode in compiled:
    if mode not in ('replicate', 'fsdp'):
      raise ValueError(f"Unknown parameter sharding mode {mode!r}; use 'replicate' or 'fsdp'.")

  def spec_for(path, leaf) -> NamedSharding:
    name = '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)
    mode = next((m for rx, m in compiled if rx.search(name)), 'replicate')
    shape = getattr(leaf, 'shape', ())
    if mode == 'fsdp' and n > 1:
      dims = sorted(range(len(shape)), key=lambda d: -shape[d])
      for d in dims:
        if shape[d] % n == 0:
          axes = [None] * len(shape)
          axes[d] = DATA_AXIS
          return NamedSharding(mesh, P(*axes))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(spec_for, params)
