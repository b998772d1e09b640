"""Entry point: `python main.py --config=projects/bert/configs/<file>.py[:variant] --workdir=DIR`."""

from core import app
import projects.bert  # noqa: F401  (declares the BERT datasets, models and trainers)

if __name__ == '__main__':
  app.run()
