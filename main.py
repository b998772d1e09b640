"""Entry point: `python main.py --config=projects/bert/configs/<file>.py[:variant] --workdir=DIR`; `--help` says
more (projects/bert/cli.py; installed, the same is `bert-train`)."""

from projects.bert import cli

if __name__ == '__main__':
  cli.train()
