"""Entry point: `python main.py --config=projects/<project>/configs/<file>.py[:variant] --workdir=DIR`; `--help` says
more (projects/bert/cli.py; installed, the same is `bert-train`)."""

import importlib
import pkgutil

import projects
from projects.bert import cli


def declare_projects() -> None:
  """Imports every package under projects/: each declares its datasets, models, trainers and evaluators by name
  (its `__init__.py`), so a config of any project runs here without core knowing the projects."""
  for info in pkgutil.iter_modules(projects.__path__):
    if info.ispkg:
      importlib.import_module(f'projects.{info.name}')


if __name__ == '__main__':
  declare_projects()
  cli.train()
