"""Faults on the core: SIGTERM, SIGKILL at random moments (checkpoint writes included), a workdir of another run,
two processes through jax.distributed giving the single-process result with one checkpoint, an error while a save
is in flight, divergence, a second run on a busy workdir, a full disk."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath

from core import params_io
from core.checkpoint import Checkpointer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'tests', 'core', 'toy_config.py')


def _cmd(workdir, *extra):
  return [sys.executable, '-m', 'tests.core.toy_main', f'--config={CONFIG}:tiny', f'--workdir={workdir}', *extra]


def _env(devices=8):
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu')


def _wait_for_checkpoint(workdir, proc, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    ckpts = os.path.join(workdir, 'checkpoints')
    if os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts)):
      return
    if proc.poll() is not None:
      raise AssertionError(proc.stderr.read()[-3000:])
    time.sleep(0.2)
  raise AssertionError('no checkpoint appeared')


def test_sigterm_saves_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path)
  proc = subprocess.Popen(_cmd(workdir, '--config.num_train_steps=1000000', '--config.checkpoint_every=100000'),
                          cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True)
  time.sleep(0.5)
  _wait_for_log_line(proc, ' steps/s')  # the loop's progress line: training is under way
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  assert 'SIGTERM received' in err
  step = Checkpointer(os.path.join(workdir, 'checkpoints')).latest_step()
  assert step is not None and 0 < step < 1000000


def _wait_for_log_line(proc, needle, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    line = proc.stderr.readline()
    if needle in line:
      return
    if not line and proc.poll() is not None:
      raise AssertionError('process ended before logging ' + needle)
  raise AssertionError('timed out waiting for ' + needle)


def test_sigkill_at_random_moments_keeps_a_readable_checkpoint(tmp_path):
  workdir = str(tmp_path)
  rnd = random.Random(0)
  last = -1
  for attempt in range(4):
    proc = subprocess.Popen(_cmd(workdir, '--config.num_train_steps=1000000', '--config.checkpoint_every=1'),
                            cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(workdir, proc)
    time.sleep(rnd.uniform(0.0, 2.0))  # checkpoints are written every step: kills land mid-write too
    proc.kill()
    proc.wait()
    proc.stderr.close()
    ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
    step = ckpt.latest_step()
    assert step is not None and step >= last, (attempt, step, last)
    params, _ = params_io.read_pretrained(workdir)  # the latest complete checkpoint reads back
    assert np.all(np.isfinite(params['Dense_0']['kernel']))
    ckpt.close()
    last = step
  # The next start resumes from the last complete checkpoint and finishes.
  proc = subprocess.run(_cmd(workdir, f'--config.num_train_steps={last + 3}'), cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'at step {last}' in proc.stderr


def test_workdir_of_another_run_is_refused_unless_asked(tmp_path):
  workdir = str(tmp_path)
  proc = subprocess.run(_cmd(workdir, '--config.num_train_steps=2'), cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  other = _cmd(workdir, '--config.num_train_steps=2', '--config.model.hidden=32')
  proc = subprocess.run(other, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert 'belongs to another run' in proc.stderr and '--allow_config_change' in proc.stderr
  assert json.load(open(tmp_path / 'config.json'))['model']['hidden'] == 8  # nothing overwritten


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_and_share_one_checkpoint(tmp_path):
  single = str(tmp_path / 'single')
  proc = subprocess.run(_cmd(single, '--config.num_train_steps=8'), cwd=REPO, env=_env(8), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]

  multi = str(tmp_path / 'multi')

  def launch(steps):
    port = _free_port()
    logs = [open(tmp_path / f'p{i}_{steps}.log', 'w+') for i in range(2)]
    procs = [subprocess.Popen(_cmd(multi, f'--config.num_train_steps={steps}',
                                   f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'),
                              cwd=REPO, env=_env(4), stdout=subprocess.DEVNULL, stderr=logs[i], text=True)
             for i in range(2)]
    errs = []
    for p, log in zip(procs, logs):
      try:
        p.wait(timeout=300)
      finally:
        if p.poll() is None:
          p.kill()
        log.seek(0)
        errs.append(log.read())
      assert p.returncode == 0, errs[-1][-3000:]
    return errs

  launch(8)
  assert sorted(int(d) for d in os.listdir(os.path.join(multi, 'checkpoints')) if d.isdigit())[-1] == 8
  # One array checkpoint; each process's input position inside it.
  inputs = os.listdir(os.path.join(multi, 'checkpoints', '8', 'input'))
  assert sorted(d for d in inputs if d.startswith('process_')) == ['process_0', 'process_1']
  p_single, _ = params_io.read_pretrained(single)
  p_multi, _ = params_io.read_pretrained(multi)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p_single, p_multi)
  errs = launch(10)
  assert all('at step 8' in e for e in errs)


# --------------------------------------------------------------------------------------------------------------
# Faults that used to lose data or hide the error (issue 18): each run for real, then what is on disk is checked.


def _error_report(stderr):
  """The text after the last 'error: ' line; nothing but that report may follow it (no log lines, no traceback)."""
  assert '\nerror: ' in '\n' + stderr, stderr[-3000:]
  report = ('\n' + stderr).rsplit('\nerror: ', 1)[1]
  for line in report.splitlines():
    assert not re.match(r'[IWEF]\d{4} |Traceback|  File ', line), report
  return report


def _checkpoint_steps(workdir):
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  return sorted(int(d) for d in names if d.isdigit()), [d for d in names if not d.isdigit()]


def test_error_while_an_async_save_is_in_flight_commits_it_and_is_printed_last(tmp_path):
  # The 7th batch is damaged; the save of step 5 is still being written in the background when it is read.
  proc = subprocess.run([sys.executable, '-m', 'tests.core.faulty_toy_main', f'--config={CONFIG}:tiny',
                         f'--workdir={tmp_path}', '--config.checkpoint.async_save=True', '--config.checkpoint_every=5'],
                        cwd=REPO, env=dict(_env(), TOY_FAULT='data_error@7', TOY_LATE_NOISE='1'),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  report = _error_report(proc.stderr)  # what shuts down after the report does not print after it
  assert 'record 7 of toy.tfrecord is damaged' in report
  assert 'stopped at step 6' in report and f'step 5 ({tmp_path}/checkpoints/5)' in report
  steps, others = _checkpoint_steps(tmp_path)
  assert steps == [5] and not others  # committed, no temporary directory left
  params, meta = params_io.read_pretrained(str(tmp_path))
  assert meta['step'] == 5 and np.all(np.isfinite(params['Dense_0']['kernel']))


def test_divergence_never_saves_exploded_weights_and_a_lower_lr_resumes(tmp_path):
  # lr 1e6: the first update makes the weights ~1e6 while the loss that step reports is still finite.
  cmd = _cmd(tmp_path, '--config.num_train_steps=10', '--config.checkpoint_every=1', '--config.checkpoint.keep=20',
             '--config.schedule.base_lr=1e6')
  proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  report = _error_report(proc.stderr)
  assert 'Training diverged at step' in report and 'param_norm' in report
  steps, _ = _checkpoint_steps(tmp_path)
  assert steps, report
  assert f'newest complete checkpoint on disk is step {steps[-1]}' in report
  for step in steps:  # every checkpoint on disk holds sane weights
    ckpt_params = _params_at(tmp_path, step)
    assert max(float(np.max(np.abs(p))) for p in jax.tree_util.tree_leaves(ckpt_params)) < 100.0, step
  # The advice works: the same command with a lower learning rate resumes from that checkpoint and finishes.
  proc = subprocess.run(cmd[:-1] + ['--config.schedule.base_lr=0.03'], cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'at step {steps[-1]}' in proc.stderr
  steps, _ = _checkpoint_steps(tmp_path)
  assert steps[-1] == 10
  assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(_params_at(tmp_path, 10)))


def _params_at(workdir, step):
  return params_io._restore_params_subtree(  # pylint: disable=protected-access
      epath.Path(workdir) / 'checkpoints' / str(step) / 'state',
      {'Dense_0': {'kernel': jax.ShapeDtypeStruct((8, 8), np.float32), 'bias': jax.ShapeDtypeStruct((8,), np.float32)},
       'Dense_1': {'kernel': jax.ShapeDtypeStruct((8, 1), np.float32), 'bias': jax.ShapeDtypeStruct((1,), np.float32)}})


def test_second_run_on_a_busy_workdir_is_refused_naming_the_holder_and_a_dead_holder_frees_it(tmp_path):
  workdir = str(tmp_path)
  first = subprocess.Popen(_cmd(workdir, '--config.num_train_steps=1000000', '--config.checkpoint_every=20'),
                           cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_checkpoint(workdir, first)
    config_before = open(tmp_path / 'config.json').read()
    # The same command, and a changed one: both refused before touching anything, naming the holder.
    for extra in ((), ('--config.model.hidden=32',)):
      second = subprocess.run(_cmd(workdir, '--config.num_train_steps=30', *extra), cwd=REPO, env=_env(),
                              capture_output=True, text=True, timeout=300)
      assert second.returncode == 1
      report = _error_report(second.stderr)
      assert 'is in use by another run' in report and f'pid {first.pid}' in report
      assert socket.gethostname() in report and 'num_train_steps=1000000' in report
      assert open(tmp_path / 'config.json').read() == config_before
    # Issue 28, finding 1: `rm run.lock` (a "stale" lock file) let a run with another learning rate train in it too.
    os.remove(tmp_path / 'run.lock')
    second = subprocess.run(_cmd(workdir, '--config.num_train_steps=30', '--config.schedule.base_lr=0.5'), cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    report = _error_report(second.stderr)
    assert 'is in use by another run (a process whose run.lock is not there' in report, report
    assert open(tmp_path / 'config.json').read() == config_before
  finally:
    first.kill()  # SIGKILL: the holder cannot clean up; the lock must free itself
    first.wait()
    first.stderr.close()
  steps, _ = _checkpoint_steps(workdir)
  proc = subprocess.run(_cmd(workdir, f'--config.num_train_steps={steps[-1] + 2}'), cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'at step {steps[-1]}' in proc.stderr
  assert _checkpoint_steps(workdir)[0][-1] == steps[-1] + 2


def _can_mount_tmpfs():
  try:
    return subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
                           'mount -t tmpfs -o size=64k tmpfs /mnt'], capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


@pytest.mark.skipif(not _can_mount_tmpfs(), reason='needs user namespaces to mount a small tmpfs')
def test_disk_full_is_reported_last_with_the_path_and_a_rerun_with_space_resumes(tmp_path):
  # The workdir is a 300 kB tmpfs (in a private mount namespace); checkpoints every step fill it.
  mount, out = tmp_path / 'mnt', tmp_path / 'after'
  mount.mkdir()
  run = ' '.join(_cmd(mount / 'wd', '--config.checkpoint_every=1', '--config.checkpoint.keep=1000',
                      '--config.checkpoint.async_save=True'))
  script = (f'mount -t tmpfs -o size=300k tmpfs {mount} && {run} --config.num_train_steps=1000 2>{tmp_path}/full.log;'
            f' echo $? > {tmp_path}/full.rc; cp -r {mount}/wd {out};'
            f' mount -o remount,size=4m {mount} && {run} --config.num_train_steps=STEPS 2>{tmp_path}/resume.log;'
            f' echo $? > {tmp_path}/resume.rc; cp -r {mount}/wd {tmp_path}/resumed')
  # The resumed run goes 2 steps past the step on disk, which the first run's message names.
  script = script.replace('STEPS', '$(( $(sed -n "s/.*on disk is step \\([0-9]*\\).*/\\1/p" '
                                   f'{tmp_path}/full.log | tail -1) + 2 ))')
  subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script], cwd=REPO, env=_env(),
                 timeout=600, check=True)
  assert open(tmp_path / 'full.rc').read().strip() == '1'
  report = _error_report(open(tmp_path / 'full.log').read())
  assert report.startswith('No space left on device writing ' + str(mount / 'wd')), report
  on_disk = int(re.search(r'on disk is step (\d+)', report).group(1))
  steps, _ = _checkpoint_steps(out)
  assert steps[-1] == on_disk
  assert open(tmp_path / 'resume.rc').read().strip() == '0', open(tmp_path / 'resume.log').read()[-3000:]
  assert f'at step {on_disk}' in open(tmp_path / 'resume.log').read()
  steps, others = _checkpoint_steps(tmp_path / 'resumed')
  assert steps[-1] == on_disk + 2 and not others  # the cut-short save's temporary directory was removed


def test_deleting_run_lock_does_not_free_the_workdir(tmp_path):
  # Issue 28, finding 1: people delete "stale" lock files by habit; the flock was on run.lock, so a second run
  # locked a new file while the first held the deleted one, and both trained in one workdir.
  from core import errors
  from core.workdir_lock import LOCK_FILE, WorkdirLock

  first = WorkdirLock(str(tmp_path))
  first.acquire()
  try:
    assert json.load(open(tmp_path / LOCK_FILE))['pid'] == os.getpid()
    os.remove(tmp_path / LOCK_FILE)
    with pytest.raises(errors.WorkdirBusyError, match='in use by another run'):
      WorkdirLock(str(tmp_path)).acquire()
    with open(tmp_path / LOCK_FILE, 'w') as f:  # a run.lock replaced by hand holds nothing either
      f.write('{}')
    with pytest.raises(errors.WorkdirBusyError):
      WorkdirLock(str(tmp_path)).acquire()
  finally:
    first.release()
  second = WorkdirLock(str(tmp_path))
  second.acquire()  # free once the holder is gone
  second.release()


def _can_remount_read_only(tmp_path):
  probe = tmp_path / 'probe'
  probe.mkdir()
  try:
    return subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
                           f'mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x'],
                          capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


def test_read_only_workdir_and_checkpoints_made_read_only_mid_run_are_reported_last(tmp_path):
  # Issue 28, finding 11: bare PermissionError / OSError tracebacks. The workdir is a bind mount made read-only in a
  # private mount namespace (root ignores file permissions, a read-only mount it does not).
  if not _can_remount_read_only(tmp_path):
    pytest.skip('needs user namespaces to remount a folder read-only')
  finished, live = tmp_path / 'finished', tmp_path / 'live'
  subprocess.run(_cmd(finished, '--config.num_train_steps=5'), cwd=REPO, env=_env(), check=True,
                 capture_output=True, timeout=300)
  (live / 'checkpoints').mkdir(parents=True)
  script = (f'mount --bind {finished} {finished} && mount -o remount,bind,ro {finished} && '
            f'{" ".join(_cmd(finished, "--config.num_train_steps=10"))} 2>{tmp_path}/ro.log; '
            f'echo $? > {tmp_path}/ro.rc; mount --bind {live}/checkpoints {live}/checkpoints && '
            f'{sys.executable} -m tests.core.faulty_toy_main --config={CONFIG}:tiny --workdir={live} '
            f'--config.checkpoint_every=5 --config.checkpoint.async_save=False 2>{tmp_path}/live.log; '
            f'echo $? > {tmp_path}/live.rc')
  subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script], cwd=REPO,
                 env=dict(_env(), TOY_FAULT='readonly@7'), timeout=600, check=True)
  # A read-only workdir: refused before anything runs, naming it and the fix.
  assert open(tmp_path / 'ro.rc').read().strip() == '1'
  report = _error_report(open(tmp_path / 'ro.log').read())
  assert 'cannot be written (Read-only file system)' in report and str(finished) in report
  assert 'give a --workdir you can write to' in report
  assert _checkpoint_steps(finished)[0] == [5]
  # checkpoints/ made read-only after the checkpoint of step 5: the next save fails, and the report says what is on
  # disk and how to go on.
  assert open(tmp_path / 'live.rc').read().strip() == '1'
  report = _error_report(open(tmp_path / 'live.log').read())
  assert f'{live}/checkpoints' in report and 'cannot be written (Read-only file system) at step 10' in report
  assert f'newest complete checkpoint on disk is step 5 ({live}/checkpoints/5)' in report
  assert 'it resumes from that checkpoint' in report
  assert _checkpoint_steps(live)[0] == [5]
