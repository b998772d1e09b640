"""Evaluators: what a run measures, built from `config.evals` (big_vision's evaluators are the model).

  config.evals = {
      'glue': {'every': 500},                              # `type` defaults to the entry's name
      'probes': {'type': 'fewshot', 'every': 5000, ...},  # the evaluator's own fields beside `every`
  }

Each entry is built once, before the first step, as `registry.EVALUATORS.get(type)(name, entry, context)`. The loop
runs an evaluator every `every` steps (0: only at the end) and after the last step: `run(state, step)` yields
(key, value) pairs, which the loop writes as the scalars `{name}/{key}`. Once a run has finished (not when it was
preempted) `finalize(state, step)` lets an evaluator do end-of-run work, such as writing files from the parameters
it selected. `summary()` is the evaluator's section of the run's results file (`RunResults`), rewritten after each of
its runs, so the file always shows the latest evaluation of every evaluator.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from core import atomic, errors, registry


def write_json(path: str, obj: Mapping[str, Any]) -> str:
  """Writes `obj` to `path` on the first process atomically (`core.atomic`: a reader never sees half a file, a
  crash leaves the old or the new one whole); returns the path."""
  if jax.process_index() == 0:
    atomic.write_json(path, obj, default=_to_builtin)
  return path


def read_json(path: str) -> Dict[str, Any]:
  """The JSON object at `path`, or {} when there is no such file."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _to_builtin(x: Any) -> Any:
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


class RunResults:
  """A run's results file (JSON): run facts at the top level and a section per evaluator, rewritten whole by the
  first process at every change.

  `previous` is what the file held when the run started; a resumed run (`resume=True`) also keeps it as the start of
  its own content, so sections of evaluators that have not run again yet are not lost.
  """

  def __init__(self, path: str, resume: bool = False):
    self.path = path
    self.previous: Dict[str, Any] = read_json(path)
    self.data: Dict[str, Any] = dict(self.previous) if resume else {}

  def update(self, **fields: Any) -> None:
    self.data.update(fields)
    write_json(self.path, self.data)


@dataclasses.dataclass
class EvalContext:
  """What an evaluator may use, given once when it is built.

  `mode` is the run's `config.mode` ('train' unless the project's trainer says otherwise); `weights` says where
  the parameters it scores came from ({'source', 'path', 'step'}); `resumed_from` is the restored step or None.
  """

  config: Any  # the run's whole ml_collections.ConfigDict
  model: Any  # a core.model.BaseModel
  dataset: Any  # the run's core.dataset.Dataset, or None
  mesh: Any
  params_shardings: Any
  workdir: str
  mode: str = 'train'
  results: Optional[RunResults] = None
  weights: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  resumed_from: Optional[int] = None


class Evaluator:
  """Base class of registered evaluators; subclasses override `run`, and `finalize` / `summary` when they have more
  to say. `writes_predictions` marks evaluators that write prediction files rather than scores (a trainer's
  'predict' mode runs only those)."""

  writes_predictions = False

  def __init__(self, name: str, config: Any, context: EvalContext):
    self.name, self.config, self.context = name, config, context
    self.every = int(config.get('every') or 0)
    if self.every < 0:
      raise errors.ConfigError(f'config.evals.{name}.every={self.every}: give the steps between evaluations (0: '
                               f'only at the end of the run).')

  def due(self, step: int, last: bool) -> bool:
    return last or (self.every > 0 and step % self.every == 0)

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    """Evaluates `state` (its `params`) at `step`; yields (key, value) pairs, scalars for TensorBoard."""
    del state, step
    return ()

  def finalize(self, state: Any, step: int) -> None:
    """End-of-run work of a finished run, after its last `run` (every evaluator's)."""
    del state, step

  def summary(self) -> Dict[str, Any]:
    """The evaluator's JSON section of the run's results file."""
    return {}

  def last_line(self) -> Dict[str, Any]:
    """What the run's last line says of this evaluator, {label: number or words}; {}: its summary's numbers."""
    return {}


def build_evaluators(evals: Optional[Mapping[str, Any]], context: EvalContext,
                     select: Optional[Callable[[type], bool]] = None) -> List[Evaluator]:
  """The evaluators of `config.evals` (an entry that is None is switched off), in its order; `select(cls)` keeps
  only some kinds (checked before building, since building may read data)."""
  out = []
  for name, entry in (evals or {}).items():
    if entry is None:
      continue
    kind = entry.get('type') or name
    cls = registry.EVALUATORS.get(kind)
    if select is None or select(cls):
      out.append(cls(name, entry, context))
  return out


def run_evaluators(evaluators: Sequence[Evaluator], state: Any, step: int, writer: Any, *, last: bool = False,
                   results: Optional[RunResults] = None, prefix: str = '') -> Dict[str, Dict[str, float]]:
  """Runs the evaluators that are due at `step` (all of them when `last`); writes each one's finite scalars as
  `{prefix}{name}/{key}` and its summary into `results`. Returns {name: {key: value}} of those that ran."""
  out = {}
  for ev in evaluators:
    if not ev.due(step, last):
      continue
    values = dict(ev.run(state, step))
    out[ev.name] = values
    writer.write_scalars(step, {f'{prefix}{ev.name}/{k}': v for k, v in values.items()
                                if np.ndim(v) == 0 and np.isfinite(v)})
    if results is not None:
      results.update(**{ev.name: ev.summary()})
  if out:
    writer.flush()
  return out


def finalize_evaluators(evaluators: Sequence[Evaluator], state: Any, step: int,
                        results: Optional[RunResults] = None) -> None:
  """Calls every evaluator's `finalize` (a finished run), then records its summary."""
  for ev in evaluators:
    ev.finalize(state, step)
    if results is not None:
      results.update(**{ev.name: ev.summary()})
