"""Test session set-up: 8 fake CPU devices (so sharding code paths run), TF kept off accelerators."""

import os

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

# The longest files first: with two xdist workers (files kept whole) they then overlap the rest of the suite
# instead of running alone at its end.
_LONGEST_FIRST = ('tests/test_readme.py', 'tests/bert/test_demo.py', 'tests/bert/test_fidelity.py',
                  'tests/bert/test_fewshot.py', 'tests/bert/test_squad_finetune.py')


def pytest_collection_modifyitems(config, items):
  def rank(item):
    path = os.path.relpath(str(item.path), str(config.rootpath))
    return _LONGEST_FIRST.index(path) if path in _LONGEST_FIRST else len(_LONGEST_FIRST)
  items.sort(key=rank)  # stable: the order within each file and among the rest is kept
