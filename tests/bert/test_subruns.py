"""The one sub-run rule (projects/bert/runs/subruns.py) that the demo and the GLUE suite use: skip finished, resume
interrupted, refuse a directory of other settings. (End to end: test_glue_suite.py and test_demo.py.)"""

import json
import os

import ml_collections
import pytest

from core import errors
from core.setup import write_run_config
from projects.bert.runs import subruns


def _config(lr=1e-3, log_every=10):
  return ml_collections.ConfigDict({'schedule': {'base_lr': lr}, 'log_every': log_every, 'mode': 'train'})


def test_a_sub_run_that_is_no_training_run_is_skipped_once_done(tmp_path):
  calls = []

  def fn(d):
    calls.append(d)
    os.makedirs(d, exist_ok=True)
    return {'files': 3}

  directory = str(tmp_path / 'data')
  first = subruns.run(directory, fn, name='Stage data')
  assert calls == [directory] and first['result'] == {'files': 3} and first['wall_time_s'] >= 0
  assert json.load(open(os.path.join(directory, subruns.DONE_FILE)))['result'] == {'files': 3}
  again = subruns.run(directory, fn, name='Stage data')
  assert calls == [directory] and again == json.load(open(os.path.join(directory, subruns.DONE_FILE)))


def test_a_training_run_is_finished_when_its_results_say_so(tmp_path):
  directory = str(tmp_path / 'run')
  os.makedirs(directory)
  calls = []

  def train(d):  # the trainer writes results.json: unfinished when preempted, done at the end
    calls.append(d)
    results = {'mode': 'train', 'step': 4 if len(calls) > 1 else 2, 'done': len(calls) > 1,
               'preempted': len(calls) == 1}
    json.dump(results, open(os.path.join(d, 'results.json'), 'w'))
    return results

  with pytest.raises(subruns.SubrunInterrupted, match='stopped at step 2 .preempted.*Rerun the same command'):
    subruns.run(directory, train, name='mrpc seed 0')
  assert subruns.finished(directory) is None and not os.path.exists(os.path.join(directory, subruns.DONE_FILE))
  done = subruns.run(directory, train, name='mrpc seed 0')  # resumed
  assert len(calls) == 2 and done['result']['step'] == 4
  assert subruns.run(directory, train, name='mrpc seed 0') == done and len(calls) == 2  # skipped
  # A results.json that no longer says done (the run was reset) outweighs the marker: it runs again.
  json.dump({'mode': 'train', 'done': False, 'step': 2}, open(os.path.join(directory, 'results.json'), 'w'))
  assert subruns.finished(directory) is None
  # An eval run's results are not a finished training run.
  json.dump({'mode': 'eval', 'done': True}, open(os.path.join(directory, 'results.json'), 'w'))
  assert subruns.finished(directory) is None


def test_a_directory_of_other_settings_is_refused_bookkeeping_aside(tmp_path):
  directory = str(tmp_path / 'run')
  write_run_config(_config(), directory)
  subruns.check_settings(_config(log_every=1), directory)  # logging is not a setting of the result
  subruns.check_settings(_config(), str(tmp_path / 'empty'))  # nothing there yet
  with pytest.raises(errors.ConfigError, match=r'run/config.json is of another run \(schedule.base_lr: 0.001 -> '
                                               r'0.002\).*use a new --workdir'):
    subruns.run(directory, lambda d: pytest.fail('ran'), name='x', config=_config(lr=2e-3))
