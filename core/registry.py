"""Name -> object registries for datasets, models, trainers and evaluators.

Projects fill them with the `register` decorator. So that importing a project (or one of its configs) stays light,
a project may instead `declare` a name with the module that registers it: the module is imported on the first
`get` of that name, so a config or model import never pulls in TensorFlow input pipelines or trainer code.
`core.app` looks pieces up by the names a config gives (`config.dataset_name`, `config.model_name`, ...), and
`core.evaluators` by the `type` of each entry of `config.evals`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, TypeVar

T = TypeVar('T')


class Registry:
  """A named collection of builders; unknown names fail with the list of known ones."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, Any] = {}
    self._declared: Dict[str, str] = {}  # name -> module that registers it when imported

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator: `@DATASETS.register('bert_glue')`. Registering a name twice is an error."""

    def decorator(obj: T) -> T:
      if name in self._entries and self._entries[name] is not obj:
        raise ValueError(f'{self.kind} {name!r} is already registered (by {self._entries[name]!r}).')
      self._entries[name] = obj
      return obj

    return decorator

  def declare(self, name: str, module: str) -> None:
    """Says that importing `module` registers `name`; the import happens on the first `get(name)`."""
    if self._declared.get(name, module) != module:
      raise ValueError(f'{self.kind} {name!r} is already declared in {self._declared[name]!r}.')
    self._declared[name] = module

  def get(self, name: str) -> Any:
    if name not in self._entries and name in self._declared:
      importlib.import_module(self._declared[name])
      if name not in self._entries:
        raise ValueError(f'{self._declared[name]} was declared to register {self.kind} {name!r} but did not.')
    try:
      return self._entries[name]
    except KeyError:
      known = ', '.join(self.names()) or '(none: was the project imported?)'
      raise KeyError(f'Unknown {self.kind} {name!r}. Known {self.kind}s: {known}.') from None

  def names(self) -> List[str]:
    return sorted(set(self._entries) | set(self._declared))

  def __contains__(self, name: str) -> bool:
    return name in self._entries or name in self._declared


DATASETS = Registry('dataset')
MODELS = Registry('model')
TRAINERS = Registry('trainer')
EVALUATORS = Registry('evaluator')
