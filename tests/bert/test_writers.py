"""Faults injected into the `prepare` writers: a vocabulary without BERT's special tokens, a full disk, a kill
between the renames of a pretraining set, staging folders of killed runs, and the upstream writer outliving its
parent. Each leaves the previous outputs as they were, or says what to do."""

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from projects.bert.datasets import glue_writer, prepare, pretraining_writer, records
from tests.bert import data_utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _snapshot(folder):
  return {name: open(os.path.join(folder, name), 'rb').read() for name in sorted(os.listdir(folder))}


# ------------------------------------------------------------------------------------------------ vocabulary


def test_every_prepare_mode_refuses_a_vocab_without_the_special_tokens_naming_file_and_tokens(tmp_path):
  data = data_utils.write_glue_task_dir(tmp_path / 'glue', 'wnli', n_train=4, n_dev=2, n_test=2)
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  words = tmp_path / 'words.txt'  # a vocabulary of another tokenizer: no [CLS] / [SEP] / [MASK]
  words.write_text('[PAD]\n[UNK]\nthe\nof\n')
  out = tmp_path / 'out'

  def error_of(*argv):
    with pytest.raises(SystemExit) as e:
      prepare.main(list(argv))
    return str(e.value.code)

  message = error_of('glue', '--task=wnli', f'--glue_dir={data.glue_dir}', f'--vocab_file={empty}',
                     f'--output_dir={out}')
  assert message.startswith(f"prepare glue: error: The vocab file '{empty}' is empty; BERT inputs need the tokens "
                            f"[PAD], [UNK], [CLS], [SEP]. Pass --vocab_file=")
  assert 'KeyError' not in message
  message = error_of('squad', '--train_file=train.json', '--eval_file=dev.json', f'--vocab_file={words}',
                     f'--output_dir={out}')
  assert message.startswith(f"prepare squad: error: The vocab file '{words}' holds 4 tokens but lacks [CLS], [SEP], "
                            "which BERT inputs need.")
  message = error_of('pretraining', f'--input_file={tmp_path}/corpus.txt', f'--vocab_file={words}',
                     f'--output_file={out}/train-0.tfrecord')
  assert message.startswith(f"prepare pretraining: error: The vocab file '{words}' holds 4 tokens but lacks [CLS], "
                            f"[SEP], [MASK], which")
  assert not out.exists()  # checked before anything is written


# ------------------------------------------------------------------------------------------------- disk full


def test_a_full_disk_during_prepare_glue_names_the_file_and_keeps_the_old_outputs(tmp_path, monkeypatch):
  from official.nlp.data import classifier_data_lib
  data = data_utils.write_glue_task_dir(tmp_path / 'glue', 'wnli', n_train=8, n_dev=4, n_test=4)
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  out = str(tmp_path / 'out')
  glue_writer.prepare_glue('wnli', data.glue_dir, vocab, out, max_seq_length=24)
  before = _snapshot(out)

  def full_disk(examples, label_list, max_seq_length, tokenizer, output_file, *args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device', output_file)

  monkeypatch.setattr(classifier_data_lib, 'file_based_convert_examples_to_features', full_disk)
  with pytest.raises(SystemExit) as e:
    prepare.main(['glue', '--task=wnli', f'--glue_dir={data.glue_dir}', f'--vocab_file={vocab}', f'--output_dir={out}',
                  '--max_seq_length=32'])
  assert str(e.value.code) == (
      f'prepare glue: error: No space left on device while writing {out}/wnli_train.tf_record: nothing was replaced, '
      f'the previous outputs in {out} are kept (the new files were written beside them and removed). Free space (the '
      f'new files need about as much as the old ones), or pass another output folder.')
  assert _snapshot(out) == before  # the old records and meta data, no staging folder


# ---------------------------------------------------------------------------------------- pretraining sets


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
  """Two record files of the official writer, and its vocab: what the stand-in writer below copies."""
  return data_utils.make_pretraining_records(tmp_path_factory.mktemp('writer_shards'), num_files=2)


def _copying_writer(sources):
  """Stands in for create_pretraining_data.py: copies `sources` round-robin to each --output_file."""

  def run(cmd, **kwargs):
    outputs = [a.split('=', 1)[1] for a in cmd if a.startswith('--output_file=')][0].split(',')
    for i, path in enumerate(outputs):
      with open(sources[i % len(sources)], 'rb') as src, open(path, 'wb') as dst:
        dst.write(src.read())
    return subprocess.CompletedProcess(cmd, 0, '', '')

  return run


class _Killed(BaseException):
  """A kill: nothing after it runs in `prepare` but its `finally` blocks."""


def _pretraining_config(files, vocab):
  import ml_collections
  config = ml_collections.ConfigDict({
      'batch_size': 8, 'dataset': {'train_files': ','.join(files), 'shuffle_buffer': 8},
      'model': {'vocab_size': len(data_utils.read_vocab(vocab)), 'type_vocab_size': 2}})
  config.lock()
  return config


def test_a_kill_between_the_renames_of_a_pretraining_set_is_refused_and_a_rerun_redoes_it(shards, tmp_path,
                                                                                           monkeypatch):
  from core.registry import DATASETS
  sources, vocab = shards
  corpus = data_utils.write_corpus(tmp_path / 'corpus.txt')
  out = tmp_path / 'pt'
  names = [str(out / f'train-{i}.tfrecord') for i in range(3)]
  monkeypatch.setattr(pretraining_writer.child_process.subprocess, 'run', _copying_writer(sources))
  flags = [f'--input_file={corpus}', f'--vocab_file={vocab}']
  pretraining_writer.prepare_pretraining(flags + ['--output_file=' + ','.join(names)])
  build = DATASETS.get('bert_pretraining')
  build(_pretraining_config(names, vocab))  # a complete set builds
  monkeypatch.setattr(pretraining_writer.child_process.subprocess, 'run', _copying_writer(sources[::-1]))
  replace, renamed = os.replace, []

  def killed_after_the_first(src, dst):
    if str(dst).endswith('.tfrecord'):
      if renamed:
        raise _Killed()
      renamed.append(dst)
    replace(src, dst)

  monkeypatch.setattr(os, 'replace', killed_after_the_first)
  with pytest.raises(_Killed):
    pretraining_writer.prepare_pretraining(flags + ['--output_file=' + ','.join(names[:2])])
  monkeypatch.setattr(os, 'replace', replace)
  assert renamed == [names[0]]  # train-0 is the new run's, train-1 and train-2 the old one's
  run = records.read_manifest(str(out))[-1]
  assert run['state'] == 'pending' and run['replaces'] == ['train-2.tfrecord']
  with pytest.raises(ValueError, match=r'(?s)train_files: .*train-\d.tfrecord belongs to a record set that `prepare '
                                       r'pretraining` was interrupted while moving into place.*shards of two runs.*'
                                       r'Rerun the prepare command.*prepare pretraining --input_file='):
    build(_pretraining_config(names, vocab))
  with pytest.raises(ValueError, match='interrupted while moving into place'):
    build(_pretraining_config(names[2:], vocab))  # the file the pending set was replacing
  # The advice works: the rerun redoes the set, removes train-2, and training reads the set.
  pretraining_writer.prepare_pretraining(flags + ['--output_file=' + ','.join(names[:2])])
  assert sorted(os.listdir(out)) == ['.prepare_manifest.json', 'train-0.tfrecord', 'train-1.tfrecord']
  assert [r['state'] for r in json.load(open(out / '.prepare_manifest.json'))['runs']] == ['complete']
  assert next(build(_pretraining_config(names[:2], vocab)).train_iter)['input_ids'].shape == (8, 32)


def test_prepare_pretraining_removes_the_staging_folders_of_killed_runs_only(shards, tmp_path, monkeypatch):
  sources, vocab = shards
  out = tmp_path / 'pt'
  legacy = out / '.prepare-0123abcd'  # what a killed run of the previous version left (no lock)
  killed = out / '.prepare-pretraining-5678ef01'  # a killed run: its lock is free
  running = out / '.prepare-pretraining-9abc2345'  # a run still going: it holds its lock
  glue_staging = out / '.prepare-mrpc-0123abcd'  # `prepare glue` staging is not ours to remove
  for folder in (legacy, killed, running, glue_staging):
    folder.mkdir(parents=True)
    (folder / 'train-0.tfrecord').write_bytes(b'partial')
  (killed / '.lock').write_text('')
  (running / '.lock').write_text('')
  held = os.open(running / '.lock', os.O_RDWR)
  fcntl.flock(held, fcntl.LOCK_EX)
  try:
    monkeypatch.setattr(pretraining_writer.child_process.subprocess, 'run', _copying_writer(sources))
    pretraining_writer.prepare_pretraining([f'--input_file={data_utils.write_corpus(tmp_path / "c.txt")}',
                                            f'--vocab_file={vocab}', f'--output_file={out}/train-0.tfrecord'])
  finally:
    os.close(held)
  assert sorted(os.listdir(out)) == ['.prepare-mrpc-0123abcd', '.prepare-pretraining-9abc2345',
                                     '.prepare_manifest.json', 'train-0.tfrecord']


# ------------------------------------------------------------------------------------------ the child process


def _alive(pid):
  try:
    with open(f'/proc/{pid}/status') as f:
      return not any(line.startswith('State:') and 'Z' in line.split()[1] for line in f)  # a zombie is dead
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux only')
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_the_upstream_writer_ends_with_a_killed_prepare(tmp_path, sig):
  """The parent runs the child as `prepare pretraining` runs the upstream writer; the child would sleep 120 s."""
  pid_file = tmp_path / 'child.pid'
  child = f'import os, time; open({str(pid_file)!r}, "w").write(str(os.getpid())); time.sleep(120)'
  parent = subprocess.Popen(
      [sys.executable, '-c', 'import sys\nfrom projects.bert.datasets import child_process\n'
       f'child_process.run_child([sys.executable, "-c", {child!r}])'], cwd=ROOT)
  try:
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
      assert parent.poll() is None and time.monotonic() < deadline, 'the child did not start'
      time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    os.kill(parent.pid, sig)
    assert parent.wait(timeout=30) == (-signal.SIGKILL if sig == signal.SIGKILL else 143)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
      time.sleep(0.1)
    assert not _alive(pid), f'the child {pid} outlived its parent'
  finally:
    if parent.poll() is None:
      parent.kill()
    if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
      os.kill(int(pid_file.read_text()), signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ committing


def test_commit_outputs_moves_nested_file_maps_meta_data_last_and_removes_unlisted_old_files(tmp_path, monkeypatch):
  from projects.bert.datasets import writing

  out, staging = tmp_path / 'out', tmp_path / 'out' / '.prepare-x-00000000'
  staging.mkdir(parents=True)
  (out / 'x_eval_ar.tf_record').write_text('old ar')  # a language the new data no longer has
  (out / 'x_train.tf_record').write_text('old train')
  (out / 'unlisted.txt').write_text('not ours')
  (out / 'x_meta_data').write_text(json.dumps({'files': {'train': 'x_train.tf_record',
                                                         'eval': {'ar': 'x_eval_ar.tf_record'}}}))
  files = {'train': 'x_train.tf_record', 'eval': {'de': {'source': 'x_eval_de_source.tf_record',
                                                         'target': 'x_eval_de_target.tf_record'}},
           'test': {'de': {'records': 'x_test_de.tf_record', 'extra': {'json': 'x_test_de.json'}}, 'zh': ''}}
  for name in writing.output_file_names(files) + ['x_meta_data']:
    (staging / name).write_text(f'new {name}')
  assert len(writing.output_file_names(files)) == 5
  moved = []
  rename = writing.tf.io.gfile.rename
  monkeypatch.setattr(writing.tf.io.gfile, 'rename',
                      lambda src, dst, overwrite=False: (moved.append(os.path.basename(dst)), rename(src, dst,
                                                                                                     overwrite))[1])
  writing.commit_outputs(str(staging), str(out), 'x_meta_data', files)
  assert moved[-1] == 'x_meta_data' and sorted(moved[:-1]) == sorted(writing.output_file_names(files))
  assert (out / 'x_train.tf_record').read_text() == 'new x_train.tf_record'
  assert (out / 'x_test_de.json').read_text() == 'new x_test_de.json'
  assert not (out / 'x_eval_ar.tf_record').exists()  # the old meta data listed it, the new one does not
  assert (out / 'unlisted.txt').exists()  # never listed: not ours to remove
  assert os.listdir(staging) == []
