"""Toy config with variants, for the app tests: `toy_config.py:tiny` or `toy_config.py:wide`."""

import ml_collections

from tests.core import toy


def get_config(variant: str = 'tiny') -> ml_collections.ConfigDict:
  config = toy.toy_config()
  config.trainer_name = 'toy_trainer'
  config.dataset_name = 'toy_dataset'
  config.model_name = 'toy_regression'
  config.num_train_steps = 10
  config.checkpoint_every = 5
  config.log_every = 5
  config.model.hidden = {'tiny': 8, 'wide': 64}[variant]
  return config
