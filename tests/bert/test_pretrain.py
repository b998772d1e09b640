"""The pretraining trainer on official-script tfrecords, 8 fake CPU devices: the MLM loss falls, a preempted and
resumed run equals an uninterrupted one bit for bit, and 1 and 8 devices give the same loss curve."""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow as tf

from core import params_io
from tests.bert import data_utils

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'projects', 'bert', 'configs', 'pretrain.py')


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('pretrain_data')
  files, vocab = data_utils.make_pretraining_records(tmp, max_seq_length=32, max_predictions_per_seq=5,
                                                     num_files=2, dupe_factor=4)
  return files, vocab


def _overrides(records, steps, **extra):
  files, vocab = records
  n_vocab = len(data_utils.read_vocab(vocab))
  flags = {
      'dataset.train_files': ','.join(files), 'dataset.eval_files': files[0], 'dataset.max_seq_length': 32,
      'dataset.max_predictions_per_seq': 5, 'dataset.shuffle_buffer': 64, 'model.vocab_size': n_vocab,
      'model.hidden_size': 64, 'model.num_heads': 2, 'model.intermediate_size': 128, 'batch_size': 16,
      'eval_batch_size': 16, 'num_train_steps': steps, 'schedule.base_lr': 2e-3, 'schedule.warmup_steps': 5,
      'log_every': 1, 'evals.mlm_nsp.every': steps, 'evals.mlm_nsp.num_steps': 2, 'checkpoint_every': 5,
      'checkpoint.async_save': False,
  }
  flags.update(extra)
  return [f'--config.{k}={v}' for k, v in flags.items()]


def _main(workdir, overrides, devices=8, wait=True):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu')
  cmd = [sys.executable, 'main.py', f'--config={CONFIG}:tiny', f'--workdir={workdir}', *overrides]
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


STEPS = 60


@pytest.fixture(scope='module')
def reference(records, tmp_path_factory):
  """One uninterrupted run on 8 devices, shared by the tests below (each run costs a process start-up)."""
  workdir = tmp_path_factory.mktemp('reference')
  _main(workdir, _overrides(records, STEPS))
  return workdir


def _tags(workdir):
  tags = set()
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


def test_mlm_loss_falls(reference):
  mlm = data_utils.scalars(reference, 'train/mlm_loss')
  assert sorted(mlm) == list(range(1, STEPS + 1))
  first, last = np.mean([mlm[s] for s in range(1, 6)]), np.mean([mlm[s] for s in range(STEPS - 4, STEPS + 1)])
  assert last < 0.85 * first, (first, last)  # ~5.0 -> ~3.9 nats: a tiny corpus has little more to learn
  assert {'mlm_nsp/mlm_accuracy', 'mlm_nsp/nsp_accuracy', 'train/tokens_per_sec', 'train/grad_norm'} <= _tags(reference)


def test_preempted_and_resumed_equals_uninterrupted(records, reference, tmp_path):
  split = tmp_path / 'split'
  proc = _main(split, _overrides(records, STEPS, checkpoint_every=1000), wait=False)
  while not data_utils.scalars(split, 'train/loss') or max(data_utils.scalars(split, 'train/loss')) < 8:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    time.sleep(0.3)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0 and 'SIGTERM received' in err, err[-3000:]
  stopped = params_io.read_pretrained(str(split))[1]['step']
  assert stopped < STEPS
  proc = _main(split, _overrides(records, STEPS, checkpoint_every=1000))
  assert f'at step {stopped}' in proc.stderr
  a, _ = params_io.read_pretrained(str(reference))
  b, meta = params_io.read_pretrained(str(split))
  assert meta['step'] == STEPS
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_one_and_eight_devices_give_the_same_loss_curve(records, reference, tmp_path):
  _main(tmp_path / 'one', _overrides(records, STEPS), devices=1)
  one, eight = data_utils.scalars(tmp_path / 'one', 'train/loss'), data_utils.scalars(reference, 'train/loss')
  assert sorted(one) == sorted(eight) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([one[s] for s in sorted(one)], [eight[s] for s in sorted(eight)], rtol=2e-4)


def test_two_processes_read_disjoint_files_and_match_one_process(records, tmp_path):
  # No shuffling and no dropout: one process interleaves the two files row by row, two processes read one file
  # each, so every global batch holds the same examples (in another row order) and the losses must agree.
  same = {'dataset.shuffle_buffer': 1, 'model.hidden_dropout_prob': 0.0, 'model.attention_dropout_prob': 0.0,
          'checkpoint_every': 6}
  _main(tmp_path / 'single', _overrides(records, 6, **same))
  multi = tmp_path / 'multi'

  def launch(steps):
    port = socket.socket()
    port.bind(('127.0.0.1', 0))
    address = f'127.0.0.1:{port.getsockname()[1]}'
    port.close()
    procs = [_main(multi, _overrides(records, steps, **same) + [
        f'--coordinator_address={address}', '--num_processes=2', f'--process_id={i}'], devices=4, wait=False)
        for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    for p, e in zip(procs, errs):
      assert p.returncode == 0, e[-3000:]
    return errs

  launch(6)
  one, two = data_utils.scalars(tmp_path / 'single', 'train/loss'), data_utils.scalars(multi, 'train/loss')
  assert sorted(one) == sorted(two) == list(range(1, 7))
  np.testing.assert_allclose([one[s] for s in range(1, 7)], [two[s] for s in range(1, 7)], rtol=2e-4)
  step_dirs = [d for d in os.listdir(multi / 'checkpoints') if d.isdigit()]
  assert step_dirs == ['6']  # written once, collectively
  assert {'process_0', 'process_1'} <= set(os.listdir(multi / 'checkpoints' / '6' / 'input'))
  errs = launch(8)
  assert all('at step 6' in e for e in errs)
