"""Parameter initialisation drawn on the host, straight into the parameters' shardings: nothing to compile.

Initialising through a jitted `Module.init` traces the whole forward pass and compiles one random-number expansion
per parameter array: seconds on a CPU, minutes on a GPU (each expansion becomes kernels compiled one by one), paid
before the first step of every start. A model that knows its initialisers (`BaseModel.param_initializers`) is
instead initialised here with numpy: each array from its own counter-based stream keyed by (seed, parameter path),
so the values depend on neither the device count, the sharding, the process nor the order, and every process
computes exactly the shards it holds.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
from typing import Any, Callable, List, Optional, Tuple

import jax
import numpy as np

# Flax's (jax.nn.initializers') and TF's truncated_normal(stddev): a normal of standard deviation `stddev` cut at
# two of them, not rescaled (so the result's standard deviation is 0.88 * stddev).
_TRUNCATION = 2.0


KINDS = ('zeros', 'ones', 'normal', 'truncated_normal', 'symmetric_uniform')


@dataclasses.dataclass(frozen=True)
class Initializer:
  """How one parameter array starts: 'zeros', 'ones', 'normal' (mean 0, `stddev`), 'truncated_normal' (flax's and
  TF's: a normal of standard deviation `stddev` truncated at two standard deviations) or 'symmetric_uniform'
  (uniform on [-a, a] with a = sqrt(3) * `stddev`; glorot_uniform is the one of stddev sqrt(2 / (fan_in + fan_out)))."""

  kind: str
  stddev: float = 1.0

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'Unknown initializer {self.kind!r}; use one of {KINDS}.')


def _path_name(path: Tuple[Any, ...]) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


# Values are drawn in chunks of this many, each from its own stream: chunks fit in the cache (the truncation
# pass re-reads them) and spread one large array (the word embeddings) over every thread.
_CHUNK = 1 << 20


def _stream(seed: int, name: str, chunk: int) -> np.random.Generator:
  name_key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], 'little')
  return np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, name_key, chunk])))


def _fill(init: Initializer, out: np.ndarray, seed: int, name: str, chunk: int) -> None:
  """Draws chunk `chunk` of the flat float32 array `out` (a view of the parameter's values)."""
  x = out[chunk * _CHUNK:(chunk + 1) * _CHUNK]
  gen = _stream(seed, name, chunk)
  if init.kind == 'symmetric_uniform':
    gen.random(out=x, dtype=np.float32)  # [0, 1) -> [-sqrt(3) stddev, sqrt(3) stddev)
    x *= np.float32(2.0)
    x -= np.float32(1.0)
    x *= np.float32(np.sqrt(3.0) * init.stddev)
    return
  gen.standard_normal(out=x, dtype=np.float32)
  if init.kind == 'truncated_normal':
    bad = np.flatnonzero(np.abs(x) > _TRUNCATION)
    while bad.size:  # redraw the ~4.6% outside [-2, 2]: exactly a normal truncated to [-2, 2]
      x[bad] = gen.standard_normal(bad.size, dtype=np.float32)
      bad = bad[np.abs(x[bad]) > _TRUNCATION]
  x *= np.float32(init.stddev)


def draw(init: Initializer, shape: Tuple[int, ...], dtype: Any, seed: int, name: str) -> np.ndarray:
  """The whole array for parameter `name`, as numpy (what `initialize` places on the devices)."""
  if init.kind in ('zeros', 'ones'):
    return (np.zeros if init.kind == 'zeros' else np.ones)(shape, dtype)
  out = np.empty(int(np.prod(shape)), np.float32)
  for chunk in range(-(-out.size // _CHUNK)):
    _fill(init, out, seed, name, chunk)
  return out.reshape(shape).astype(dtype, copy=False)


def seed_from_key(rng: jax.Array) -> int:
  """A host integer seed from a JAX PRNG key (the same on every process)."""
  data = np.asarray(jax.random.key_data(rng) if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng)
  return int.from_bytes(hashlib.sha256(data.astype(np.uint32).tobytes()).digest()[:8], 'little')


def initialize(abstract_params: Any, initializers: Any, shardings: Any, seed: int,
               max_workers: Optional[int] = None) -> Any:
  """Draws every parameter on the host and places it with its sharding. Returns a tree of `jax.Array`s.

  `abstract_params` (shapes and dtypes), `initializers` (`Initializer`s) and `shardings` are trees of the same
  structure. Chunks of all arrays are drawn by parallel threads (numpy releases the GIL); every process draws the
  same values and hands each of its devices its shard.
  """
  names = jax.tree_util.tree_map_with_path(lambda p, _: _path_name(p), abstract_params)
  leaves, treedef = jax.tree_util.tree_flatten(abstract_params)
  inits, names_flat = treedef.flatten_up_to(initializers), treedef.flatten_up_to(names)
  shards = treedef.flatten_up_to(shardings)
  values: List[np.ndarray] = []
  tasks = []
  for leaf, init, name in zip(leaves, inits, names_flat):
    if not isinstance(init, Initializer):
      raise TypeError(f'Parameter {name!r} has no Initializer (got {init!r}).')
    if init.kind in ('zeros', 'ones'):
      values.append(draw(init, tuple(leaf.shape), leaf.dtype, seed, name))
      continue
    flat = np.empty(int(np.prod(leaf.shape)), np.float32)
    values.append(flat)
    tasks.extend((init, flat, name, chunk) for chunk in range(-(-flat.size // _CHUNK)))
  tasks.sort(key=lambda t: -t[1].size)  # the big arrays' chunks first: threads end together
  workers = max_workers or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(lambda t: _fill(t[0], t[1], seed, t[2], t[3]), tasks))
  arrays = []
  for leaf, value, sharding in zip(leaves, values, shards):
    value = value.reshape(leaf.shape).astype(leaf.dtype, copy=False)
    arrays.append(jax.make_array_from_callback(tuple(leaf.shape), sharding, lambda index, v=value: v[index]))
  return jax.tree_util.tree_unflatten(treedef, arrays)


@dataclasses.dataclass
class HostInit:
  """What `core.state.create_sharded_train_state` needs to initialise parameters on the host: their shapes
  (`abstract`, a tree of `jax.ShapeDtypeStruct`) and an `Initializer` per array (the same tree structure)."""

  abstract: Any
  initializers: Any


ParamsInit = Any  # `fn(rng) -> params` (traced and compiled) or a `HostInit`
InitFn = Callable[[jax.Array], Any]
