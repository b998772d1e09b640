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
# instead of running alone at its end. A file says it is long with `pytestmark = pytest.mark.long(minutes=N)`.


def _minutes(item) -> float:
  marker = item.get_closest_marker('long')
  return float(marker.kwargs.get('minutes', 1)) if marker else 0.0


def pytest_collection_modifyitems(config, items):
  items.sort(key=lambda item: -_minutes(item))  # stable: the order within each file and among the rest is kept
