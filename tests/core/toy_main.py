"""`python -m tests.core.toy_main --config=tests/core/toy_config.py:tiny --workdir=DIR`: core.app with toy pieces."""

from core import app, registry
from tests.core import toy

registry.TRAINERS.register('toy_trainer')(toy.toy_trainer)
registry.MODELS.register('toy_regression')(toy.ToyRegressionModel)
registry.DATASETS.register('toy_dataset')(lambda config: toy.toy_dataset(config.batch_size))

if __name__ == '__main__':
  app.run()
