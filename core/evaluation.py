"""Passing a model over a whole evaluation split: summed metrics, or gathered predictions for host-side metrics."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from core import sharding as sharding_lib


def evaluate_metrics(eval_step: Callable, params: Any, batches: Iterable[Dict[str, np.ndarray]], mesh: Mesh,
                     max_batches: Optional[int] = None) -> Dict[str, float]:
  """Sums `eval_step(params, batch) -> {name: (sum, count)}` over the batches; returns {name: sum / count}.

  Padding rows (batch_mask 0) are excluded by the metrics functions themselves.
  """
  totals: Dict[str, list] = {}
  pending = []
  for i, batch in enumerate(batches):
    if max_batches is not None and i >= max_batches:
      break
    pending.append(eval_step(params, sharding_lib.make_global_batch(batch, mesh)))
  for metrics in jax.device_get(pending):  # one host sync for the whole split
    for name, (s, c) in metrics.items():
      acc = totals.setdefault(name, [0.0, 0.0])
      acc[0] += float(s)
      acc[1] += float(c)
  return {name: s / max(c, 1e-12) for name, (s, c) in totals.items()}


def _all_hosts(x: np.ndarray) -> np.ndarray:
  """Concatenates a host-local array over processes in process order (the order of the global batch rows)."""
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def gather_predictions(predict_step: Callable, params: Any, batches: Iterable[Dict[str, np.ndarray]], mesh: Mesh,
                       keep: Sequence[str] = ('label_ids', 'example_id')) -> Dict[str, np.ndarray]:
  """Runs `predict_step` over the batches and returns {'outputs': ..., and the `keep` batch fields}, with the
  padding rows (batch_mask 0) removed. Every process gets the whole split.
  """
  outputs, fields = [], []
  for batch in batches:
    outputs.append(predict_step(params, sharding_lib.make_global_batch(batch, mesh)))
    n = len(next(iter(batch.values())))
    local = {k: np.asarray(batch[k]) for k in keep if k in batch}
    local['batch_mask'] = np.asarray(batch.get('batch_mask', np.ones(n, np.float32)))
    fields.append(local)
  if not outputs:
    return {'outputs': np.zeros((0,))}
  host_outputs = jax.device_get(outputs)
  mask = np.concatenate([_all_hosts(f['batch_mask']) for f in fields]) > 0
  result = {'outputs': np.concatenate([np.asarray(o) for o in host_outputs])[mask]}
  for k in fields[0]:
    if k != 'batch_mask':
      result[k] = np.concatenate([_all_hosts(f[k]) for f in fields])[mask]
  return result
