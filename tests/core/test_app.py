"""core.app end to end: config file with a variant, a `--config.x=y` override, registries, config dump, resume, and
which config an eval-mode run uses."""

import json
import os
import shutil
import subprocess
import sys

import ml_collections

from core import app, setup


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'tests', 'core', 'toy_config.py')


def _main(workdir, *extra, variant='tiny'):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  return subprocess.run([sys.executable, '-m', 'tests.core.toy_main', f'--config={CONFIG}:{variant}',
                         f'--workdir={workdir}', *extra], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


def test_main_runs_registered_pieces_and_resumes(tmp_path):
  workdir = tmp_path / 'wd'
  proc = _main(workdir, '--config.num_train_steps=6')
  assert proc.returncode == 0, proc.stderr[-3000:]
  written = json.load(open(workdir / 'config.json'))
  assert written['num_train_steps'] == 6 and written['model']['hidden'] == 8
  assert sorted(os.listdir(workdir / 'checkpoints'))[-1] == '6'
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  proc = _main(workdir, '--config.num_train_steps=10')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Resuming from' in proc.stderr and 'at step 6' in proc.stderr
  assert '10' in os.listdir(workdir / 'checkpoints')


def test_unknown_trainer_name_lists_known(tmp_path):
  proc = _main(tmp_path, '--config.trainer_name=nope')
  assert proc.returncode != 0
  assert "Unknown trainer 'nope'" in proc.stderr and 'toy_trainer' in proc.stderr


def test_variant_and_overrides_reach_the_written_config(tmp_path):
  proc = _main(tmp_path, '--config.num_train_steps=2', '--config.schedule.base_lr=0.5', variant='wide')
  assert proc.returncode == 0, proc.stderr[-3000:]
  written = json.load(open(tmp_path / 'config.json'))
  assert written['model']['hidden'] == 64 and written['num_train_steps'] == 2
  assert written['schedule']['base_lr'] == 0.5


def test_override_of_wrong_type_is_refused(tmp_path):
  proc = _main(tmp_path, '--config.num_train_steps=abc')
  assert proc.returncode != 0
  assert 'num_train_steps' in proc.stderr and 'abc' in proc.stderr


def test_a_full_disk_anywhere_is_reported_last_with_the_path(capsys):
  import errno

  from core import app, errors
  try:
    try:
      raise OSError(errno.ENOSPC, 'No space left on device', '/wd/results.json')
    except OSError as e:
      raise RuntimeError('writer thread failed') from e  # as libraries wrap it
  except RuntimeError as wrapped:
    assert app.report_error(wrapped)
  err = capsys.readouterr().err
  assert err.rstrip().splitlines()[-1].startswith('error: No space left on device writing /wd/results.json. Free space')
  # A TensorFlow/TensorStore message that only quotes the OS error still gives the path.
  found = errors.disk_full_error(ValueError(
      '{{function_node __wrapped__SaveV2_dtypes_2_device_/job:localhost/replica:0/task:0/device:CPU:0}} '
      '/wd/checkpoints/4.tmp/iterator_temp/part-0.tempstate1; No space left on device [Op:SaveV2]'))
  assert found.filename == '/wd/checkpoints/4.tmp/iterator_temp/part-0.tempstate1'
  assert not app.report_error(ValueError('a bug'))  # other errors keep their traceback (the caller re-raises)


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_the_corrected_command(tmp_path):
  proc = _main(tmp_path, '--config.optimizer.name=nope')
  assert proc.returncode != 0 and 'nope' in proc.stderr
  assert not os.path.exists(tmp_path / 'config.json')  # written only once the run's state is set up
  proc = _main(tmp_path, '--config.num_train_steps=2', '--config.model.hidden=32')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(tmp_path / 'config.json'))['model']['hidden'] == 32
  # A workdir whose config.json has no checkpoint beside it is not another run's either.
  shutil.rmtree(tmp_path / 'checkpoints')
  proc = _main(tmp_path, '--config.num_train_steps=2', '--config.model.hidden=16')
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_eval_modes_use_the_runs_config_with_only_the_mode_and_weights_source(tmp_path):
  trained = ml_collections.ConfigDict({'mode': 'train', 'init_from': '/pretrained', 'num_train_steps': 100,
                                       'model': {'hidden': 8}})
  setup.write_run_config(trained, str(tmp_path))
  given = ml_collections.ConfigDict({'mode': 'eval', 'init_from': '/other', 'num_train_steps': 3,
                                     'model': {'hidden': 64}})
  config = app.config_for_run(given, str(tmp_path), {'mode': 'eval', 'num_train_steps': 3})
  assert config.to_dict() == {'mode': 'eval', 'init_from': '/pretrained', 'num_train_steps': 100,
                              'model': {'hidden': 8}}
  config = app.config_for_run(given, str(tmp_path), {'mode': 'eval', 'init_from': '/other'})
  assert config.init_from == '/other' and config.model.hidden == 8
  # An evaluator's fields apply (what to score or write); one the run had not configured comes whole.
  with_evals = ml_collections.ConfigDict({**trained.to_dict(), 'evals': {'scores': {'every': 100, 'dir': 'saved'}}})
  setup.write_run_config(with_evals, str(tmp_path / 'evals'))
  given.evals = {'scores': {'every': 7, 'dir': 'mine'}, 'writer': {'outputs': 'probabilities', 'dir': 'out'}}
  config = app.config_for_run(given, str(tmp_path / 'evals'), {
      'mode': 'predict', 'evals.writer.outputs': 'probabilities', 'evals.scores.every': 7})
  assert config.evals.to_dict() == {'scores': {'every': 7, 'dir': 'saved'},
                                    'writer': {'outputs': 'probabilities', 'dir': 'out'}}
  assert config.model.hidden == 8 and config.num_train_steps == 100
  del given['evals']
  before = open(tmp_path / 'config.json').read()
  given.mode = 'train'  # training takes the given config (and writes it once its state is set up)
  assert app.config_for_run(given, str(tmp_path), {}) is given
  assert app.config_for_run(given.copy_and_resolve_references(), str(tmp_path / 'fresh'), {}).mode == 'train'
  assert open(tmp_path / 'config.json').read() == before
