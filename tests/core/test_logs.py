"""Logs for people (`core.logs`, the loop's progress line): the libraries' INFO lines off unless --verbose."""

import logging as std_logging
import os

from absl import logging

from core import logs
from core.loop import progress_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _record(pathname, level=std_logging.INFO):
  return std_logging.LogRecord('absl', level, pathname, 1, 'message', None, None)


def test_third_party_info_is_dropped_ours_and_warnings_are_kept():
  logs.configure(verbose=False)
  try:
    absl_logger = std_logging.getLogger('absl')
    orbax = '/venv/lib/python3.11/site-packages/orbax/checkpoint/_src/async_checkpointer.py'
    assert not absl_logger.filter(_record(orbax))
    assert absl_logger.filter(_record(orbax, std_logging.WARNING))
    assert absl_logger.filter(_record(os.path.join(REPO, 'core', 'loop.py')))
    # A venv inside the repository (as the README creates it): its libraries are still third-party.
    in_repo_venv = os.path.join(REPO, '.venv', 'lib', 'python3.11', 'site-packages', 'official', 'x.py')
    assert not absl_logger.filter(_record(in_repo_venv))
    logs.configure(verbose=True)
    assert absl_logger.filter(_record(orbax))
  finally:
    logs.configure(verbose=False)
    logging.set_verbosity(logging.INFO)


def test_progress_line_has_percent_rates_and_eta_in_hours_minutes_seconds():
  line = progress_line(120, 1000, {'accuracy': 0.5, 'loss': 2.3412}, steps_per_sec=0.1, examples_per_sec=3.2)
  assert line == ('step 120/1000 (12.0%) | loss 2.341, accuracy 0.5 | 0.1 steps/s, 3.2 examples/s | '
                  'ETA 2:26:40')
  assert logs.format_duration(27 * 3600 + 5) == '27:00:05'
  assert progress_line(1, 10, {'loss': 1.0}, 0.5, compiling=True).endswith('ETA 0:00:18 (with compilation)')
