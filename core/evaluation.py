"""Passing a model over a whole evaluation split: summed metrics, gathered outputs for host-side metrics, or both in
one pass."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh

from core import sharding as sharding_lib
from core.dataset import SPLIT_POSITION

Batch = Dict[str, np.ndarray]


def _mean_metrics(per_batch: Sequence[Mapping[str, Tuple[Any, Any]]]) -> Dict[str, float]:
  """[{name: (sum, count)}] over batches -> {name: sum / count}."""
  totals: Dict[str, list] = {}
  for metrics in per_batch:
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


def _run(step: Callable, params: Any, batches: Iterable[Batch], mesh: Mesh, keep: Sequence[str]
         ) -> Tuple[List[Any], List[Batch]]:
  """`step` over the batches, dispatched without waiting: (device results, host-local `keep` fields + batch_mask)."""
  results, fields = [], []
  for batch in batches:
    results.append(step(params, sharding_lib.make_global_batch(batch, mesh)))
    n = len(next(iter(batch.values())))
    local = {k: np.asarray(batch[k]) for k in (*keep, SPLIT_POSITION) if k in batch}
    local['batch_mask'] = np.asarray(batch.get('batch_mask', np.ones(n, np.float32)))
    fields.append(local)
  return results, fields


def _gather_rows(host_outputs: Sequence[Any], fields: Sequence[Batch]) -> Dict[str, np.ndarray]:
  """{'outputs', and the kept fields}: every process's rows, padding rows (batch_mask 0) removed, in split order
  when the batches carry `SPLIT_POSITION` (length-grouped batches), else in batch order."""
  if not host_outputs:
    return {'outputs': np.zeros((0,))}
  mask = np.concatenate([_all_hosts(f['batch_mask']) for f in fields]) > 0
  result = {'outputs': np.concatenate([np.asarray(o) for o in host_outputs])[mask]}
  for k in fields[0]:
    if k != 'batch_mask':
      result[k] = np.concatenate([_all_hosts(f[k]) for f in fields])[mask]
  return in_split_order(result)


def in_split_order(rows: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """{key: [n, ...]} rows sorted by their `SPLIT_POSITION` (which is dropped); rows without it as they are."""
  if SPLIT_POSITION not in rows:
    return rows
  rows = dict(rows)
  order = np.argsort(rows.pop(SPLIT_POSITION), kind='stable')
  return {k: v[order] for k, v in rows.items()}


def evaluate_metrics(eval_step: Callable, params: Any, batches: Iterable[Batch], mesh: Mesh,
                     max_batches: Optional[int] = None) -> Dict[str, float]:
  """Sums `eval_step(params, batch) -> {name: (sum, count)}` over the batches; returns {name: sum / count}.

  Padding rows (batch_mask 0) are excluded by the metrics functions themselves.
  """
  results, _ = _run(eval_step, params, itertools.islice(batches, max_batches), mesh, keep=())
  return _mean_metrics(jax.device_get(results))  # one host sync for the whole split


def gather_predictions(predict_step: Callable, params: Any, batches: Iterable[Batch], mesh: Mesh,
                       keep: Sequence[str] = ('label_ids', 'example_id')) -> Dict[str, np.ndarray]:
  """Runs `predict_step` over the batches and returns {'outputs': ..., and the `keep` batch fields}, with the
  padding rows (batch_mask 0) removed. Every process gets the whole split.
  """
  results, fields = _run(predict_step, params, batches, mesh, keep)
  return _gather_rows(jax.device_get(results), fields)


def evaluate_split(step: Callable, params: Any, batches: Iterable[Batch], mesh: Mesh,
                   keep: Sequence[str] = ('label_ids',)) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
  """One pass of `step(params, batch) -> (outputs, {name: (sum, count)})` (`make_eval_step(with_outputs=True)`):
  returns (the model's metric means, {'outputs', the `keep` fields} with padding removed, on every process)."""
  results, fields = _run(step, params, batches, mesh, keep)
  host = jax.device_get(results)
  return _mean_metrics([m for _, m in host]), _gather_rows([o for o, _ in host], fields)
