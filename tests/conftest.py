"""Test session set-up: 8 fake CPU devices (so sharding code paths run), TF kept off accelerators."""

import atexit
import os
import shutil
import tempfile

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

# JAX's persistent compilation cache, fresh for this process (each xdist worker its own) and inherited by the
# commands its tests start: the same computation built again (a resumed run's train step, eval/predict modes after
# training, the README's commands on one tiny model) loads the executable instead of compiling it again. Compiled
# code is the same either way. SCENIC_TEST_JAX_CACHE=0 turns it off (to time the suite without it).
if os.environ.get('SCENIC_TEST_JAX_CACHE', '1') != '0':
  _CACHE = tempfile.mkdtemp(prefix='jax-compilation-cache-')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')  # default 1 s: our tiny models' steps

# The longest files first: with two xdist workers (files kept whole) they then overlap the rest of the suite
# instead of running alone at its end. A file says it is long with `pytestmark = pytest.mark.long(minutes=N)`.
# xdist's `--dist loadfile` would otherwise reorder files by their number of tests (`--loadscope-reorder`, its
# default since 3.6): the 3-test tests/test_readme.py, the longest file, then ran last and alone for ~10 minutes.


def pytest_configure(config):
  if hasattr(config.option, 'loadscopereorder'):  # the xdist plugin is loaded
    config.option.loadscopereorder = False


def _minutes(item) -> float:
  marker = item.get_closest_marker('long')
  return float(marker.kwargs.get('minutes', 1)) if marker else 0.0


def pytest_collection_modifyitems(config, items):
  items.sort(key=lambda item: -_minutes(item))  # stable: the order within each file and among the rest is kept
