"""Faults on the core: SIGTERM, SIGKILL at random moments (checkpoint writes included), a workdir of another run,
and two processes through jax.distributed giving the single-process result with one checkpoint."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

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
  _wait_for_log_line(proc, 'train/loss')
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
