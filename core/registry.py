"""Name -> object registries for datasets, models and trainers.

Projects fill them with the `register` decorator at import time; `core.app` looks pieces up by the names a config
gives (`config.dataset_name`, `config.model_name`, `config.trainer_name`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, TypeVar

T = TypeVar('T')


class Registry:
  """A named collection of builders; unknown names fail with the list of known ones."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, Any] = {}

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator: `@DATASETS.register('bert_glue')`. Registering a name twice is an error."""

    def decorator(obj: T) -> T:
      if name in self._entries and self._entries[name] is not obj:
        raise ValueError(f'{self.kind} {name!r} is already registered (by {self._entries[name]!r}).')
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str) -> Any:
    try:
      return self._entries[name]
    except KeyError:
      known = ', '.join(sorted(self._entries)) or '(none: was the project imported?)'
      raise KeyError(f'Unknown {self.kind} {name!r}. Known {self.kind}s: {known}.') from None

  def names(self) -> List[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries


DATASETS = Registry('dataset')
MODELS = Registry('model')
TRAINERS = Registry('trainer')
