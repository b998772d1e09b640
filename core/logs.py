"""Logs for people: our own INFO lines, the libraries' warnings and errors, not their INFO chatter.

Quiet by default: INFO records logged from outside this repository (orbax's per-save internals, JAX's backend
probing, the upstream data writers' `*** Example ***` dumps) and TensorFlow's C++ start-up lines are dropped;
WARNING and above from anywhere are kept. `--verbose` (main.py, prepare, convert) brings everything back.
Importing this module sets TensorFlow's C++ log level, so it must come before `import tensorflow` to take effect.
"""

from __future__ import annotations

import logging as std_logging
import os
import re
import sys

from absl import logging

VERBOSE_FLAG = '--verbose'
# Where our code lives: records logged from files under it are ours.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_INSTALLED = re.compile(r'[/\\](site|dist)-packages[/\\]')


def _verbose_in_argv() -> bool:
  return any(a in (VERBOSE_FLAG, VERBOSE_FLAG + '=true', VERBOSE_FLAG + '=True', VERBOSE_FLAG + '=1')
             for a in sys.argv[1:])


# TensorFlow reads it once, when it loads: 3 hides its C++ INFO/WARNING/ERROR start-up lines (CUDA probing on a
# machine without GPUs, oneDNN and CPU-feature notes); errors that matter reach Python as exceptions.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '0' if _verbose_in_argv() else '3')


class _OursOrImportant(std_logging.Filter):
  """Keeps records at WARNING and above, and those logged from this repository's files."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    path = os.path.abspath(record.pathname)
    # A virtualenv inside the repository (the README's `.venv`) holds the libraries: they are not ours.
    return record.levelno >= std_logging.WARNING or (path.startswith(_ROOT) and not _INSTALLED.search(path))


_FILTER = _OursOrImportant()


def configure(verbose: bool = False) -> None:
  """INFO logging of our code; the libraries' INFO lines too with `verbose`. Call once flags are parsed (again
  with another `verbose` to change it)."""
  logging.set_verbosity(logging.INFO)
  # The 'absl' logger carries every absl.logging call (ours, orbax's, the upstream writers'); the handlers also see
  # records of the libraries' own loggers (jax.*) that propagate to the root.
  targets = [std_logging.getLogger('absl'), logging.get_absl_handler(), *std_logging.getLogger().handlers]
  for handler in targets:
    if verbose:
      handler.removeFilter(_FILTER)
    elif _FILTER not in handler.filters:
      handler.addFilter(_FILTER)
  if verbose and 'tensorflow' not in sys.modules:
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'


def format_duration(seconds: float) -> str:
  """h:mm:ss (e.g. 0:04:05, 27:00:00)."""
  seconds = max(0, int(round(seconds)))
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
