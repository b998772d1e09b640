"""Entry point of every run (pretraining, GLUE, SQuAD, SuperGLUE, XTREME, few-shot):
`python main.py --config=projects/<project>/configs/<file>.py[:variant] --workdir=DIR`; `--help` says more
(projects/bert/cli.py; installed, the same is `bert-train`)."""

import projects
from projects.bert import cli


def declare_projects() -> None:
  """Every project's registry names (`projects.declare_all`): a config of any project runs here."""
  projects.declare_all()


if __name__ == '__main__':
  cli.train()
