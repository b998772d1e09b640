"""The projects built on `core/`: one package each, declaring its datasets, models, trainers and evaluators by name
in its `__init__.py`."""

import importlib
import pkgutil


def declare_all() -> None:
  """Imports every package under projects/, so that a config of any project runs through `main.py` (or
  `bert-train`) without core knowing the projects."""
  for info in pkgutil.iter_modules(__path__):
    if info.ispkg:
      importlib.import_module(f'{__name__}.{info.name}')
