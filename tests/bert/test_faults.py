"""Faults met by BERT runs (issue 18), each injected for real and checked on disk: best parameters lost or out of
step with results.json, predict from a checkpoint without a task head, ..."""

import glob
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models and trainers)
from core import app, params_io, registry
from core.dataset import DatasetMetaData
from core.setup import example_batch_from_meta
from projects.bert.configs import glue
from tests.bert import data_utils


@pytest.fixture(scope='module')
def glue_data(tmp_path_factory):
  root = tmp_path_factory.mktemp('faults_glue')
  vocab = data_utils.write_vocab(root / 'vocab.txt')
  records, data = data_utils.make_glue_records(root, 'rte', vocab_path=vocab, max_seq_length=32, n_train=32, n_dev=8,
                                               n_test=8)
  return root, records, vocab, data


def _glue_config(glue_data):
  _, records, vocab, _ = glue_data
  config = glue.get_config('rte,tiny')
  config.model.vocab_size = len(data_utils.read_vocab(vocab))
  config.dataset.data_dir = records
  config.dataset.max_seq_length = 32
  config.dataset.shuffle_buffer = 32
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 4
  config.evals.glue.every = 2
  config.log_every = 2
  config.checkpoint_every = 2
  config.checkpoint.async_save = False
  return config


@pytest.fixture(scope='module')
def trained(glue_data):
  """A finished tiny RTE fine-tuning run (best/ and results.json written); tests copy it before changing it."""
  workdir = str(glue_data[0] / 'trained')
  results = app.train_and_evaluate(_glue_config(glue_data), workdir)
  assert results['glue']['best_on_dev']['step'] in (2, 4)
  return workdir


def _copy(trained, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  return workdir


def test_predict_refuses_when_the_best_parameters_results_json_names_are_missing(glue_data, trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'best'))  # lost (an older version's best/ save was killed mid-replace)
  config = _glue_config(glue_data)
  config.mode = 'predict'
  with pytest.raises(FileNotFoundError, match=r'results.json names the best parameters of step \d.*best is missing'):
    app.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'predictions'))  # nothing from checkpoints/N written instead


def test_predict_refuses_a_best_of_another_step_than_results_json(glue_data, trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  best = os.path.join(workdir, 'best')
  params, meta = params_io.load_params(best)
  # Killed after a newer best was saved and before results.json recorded it.
  params_io.save_params(best, params, dict(meta, step=meta['step'] + 100))
  config = _glue_config(glue_data)
  config.mode = 'predict'
  with pytest.raises(ValueError, match=rf'holds the parameters of step {meta["step"] + 100} but .*results.json names '
                                       rf'step {meta["step"]}.*Rerun the training command'):
    app.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'predictions'))


def test_predict_from_a_checkpoint_without_the_task_head_is_refused(glue_data, tmp_path):
  config = _glue_config(glue_data)
  model = registry.MODELS.get(config.model_name)(config, DatasetMetaData(input_specs={}, num_labels=2))
  params = jax.device_get(model.init_params(jax.random.PRNGKey(0), example_batch_from_meta(
      DatasetMetaData(input_specs={k: ((32,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))))
  encoder_only = str(tmp_path / 'encoder')  # what a pretraining run or a converted checkpoint holds
  params_io.save_params(encoder_only, {'bert': params['bert']}, {'model': config.model.to_dict()})
  config.mode = 'predict'
  config.init_from = encoder_only
  workdir = str(tmp_path / 'predict')
  with pytest.raises(ValueError, match=r'encoder/?.* has no classifier/.*RANDOM head.*Fine-tune first'):
    app.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'predictions'))
  results = os.path.join(workdir, 'predict_results.json')  # what mode=predict writes
  assert not os.path.exists(results) or 'glue_predict' not in json.load(open(results))
  assert np.all(np.isfinite(params_io.load_params(encoder_only)[0]['bert']['pooler']['kernel']))  # source untouched


# ------------------------------------------------------------------------------------- resuming into another input


@pytest.fixture(scope='module')
def pretraining(tmp_path_factory):
  """Phase-1 records (S=32, 3 files) and phase-2 records (S=64), and a phase-1 run of 4 steps on two of the files."""
  root = tmp_path_factory.mktemp('faults_pt')
  files, vocab = data_utils.make_pretraining_records(root / 'p1', max_seq_length=32, max_predictions_per_seq=5,
                                                     num_files=3)
  files64, _ = data_utils.make_pretraining_records(root / 'p2', max_seq_length=64, max_predictions_per_seq=10,
                                                   vocab_path=vocab, num_files=2)
  workdir = str(root / 'phase1')
  app.train_and_evaluate(_pretrain_config(files[:2], vocab), workdir)
  return files, files64, vocab, workdir


def _pretrain_config(files, vocab, steps=4, seq_len=32, preds=5):
  from projects.bert.models import architecture as common
  from projects.bert.configs import pretrain
  config = pretrain.get_config('tiny')
  config.model = common.model_config('tiny', vocab_size=len(data_utils.read_vocab(vocab)), hidden_size=32,
                                     num_heads=2, intermediate_size=64)
  config.dataset.train_files = ','.join(files)
  config.dataset.max_seq_length = seq_len
  config.dataset.max_predictions_per_seq = preds
  config.dataset.shuffle_buffer = 16
  config.batch_size = 8
  config.num_train_steps = steps
  config.log_every = 2
  config.checkpoint_every = 2
  config.checkpoint.async_save = False
  return config


def _copy_run(pretraining, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(pretraining[3], workdir)
  return workdir


def test_resume_with_another_batch_size_or_files_says_what_changed_and_what_to_do(pretraining, tmp_path):
  files, _, vocab, _ = pretraining
  workdir = _copy_run(pretraining, tmp_path)
  bigger = _pretrain_config(files[:2], vocab, steps=6)
  bigger.batch_size = 16
  with pytest.raises(ValueError, match=r'(?s)input pipeline differs .*global_batch_size: 8 -> 16.*'
                                       r'restore_input=False.*new --workdir with --config.init_from'):
    app.train_and_evaluate(bigger, workdir)
  more_files = _pretrain_config(files, vocab, steps=6)
  with pytest.raises(ValueError, match=r'train_files: 2 -> 3 entries, added .*pretrain-2.tfrecord'):
    app.train_and_evaluate(more_files, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']  # nothing written
  # The advice works: continue the weights on the new input.
  bigger.checkpoint.restore_input = False
  results = app.train_and_evaluate(bigger, workdir)
  assert results['resumed_from'] == 4 and results['step'] == 6


def test_a_checkpoint_without_fingerprint_and_another_pipeline_gets_the_same_advice(pretraining, tmp_path):
  files, _, vocab, _ = pretraining
  workdir = _copy_run(pretraining, tmp_path)
  for path in glob.glob(os.path.join(workdir, 'checkpoints', '*', 'input', 'process_*', 'fingerprint.json')):
    os.remove(path)  # as written before fingerprints existed: TensorFlow's own check fails
  with pytest.raises(ValueError, match=r'(?s)input position saved in .* does not fit this input pipeline.*'
                                       r'restore_input=False'):
    app.train_and_evaluate(_pretrain_config(files, vocab, steps=6), workdir)


def test_phase2_in_the_phase1_workdir_is_refused_instead_of_nothing_to_train(pretraining, tmp_path):
  _, files64, vocab, _ = pretraining
  workdir = _copy_run(pretraining, tmp_path)
  phase2 = _pretrain_config(files64, vocab, steps=2, seq_len=64, preds=10)  # fewer steps than phase 1 ran
  phase2.init_from = pretraining[3]
  with pytest.raises(ValueError, match=r'(?s)record_lengths.input_ids: 32 -> 64.*new --workdir with '
                                       r'--config.init_from'):
    app.train_and_evaluate(phase2, workdir)
  # What the message says to do: a new workdir starting from phase 1.
  results = app.train_and_evaluate(phase2, str(tmp_path / 'phase2'))
  assert results['resumed_from'] is None and results['step'] == 2


# ----------------------------------------------------------------------------------------- damaged or odd inputs


def _examples(path):
  import tensorflow as tf
  return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_token_ids_beyond_the_vocab_past_the_first_record_name_the_vocab_not_divergence(pretraining, tmp_path):
  import tensorflow as tf
  files, _, vocab, _ = pretraining
  vocab_size = len(data_utils.read_vocab(vocab))
  bad = str(tmp_path / 'bad.tfrecord')
  examples = _examples(files[0])
  ids = examples[5].features.feature['input_ids'].int64_list.value
  ids[3] = vocab_size + 7  # record 6: the first record of the file, which the builder checks, is fine
  with tf.io.TFRecordWriter(bad) as w:
    for ex in examples:
      w.write(ex.SerializeToString())
  config = _pretrain_config([bad], vocab, steps=12)
  config.dataset.shuffle_buffer = 1
  with pytest.raises(ValueError, match=rf'(?s)bad.tfrecord.* hold input_ids up to {vocab_size + 7}, but '
                                       rf'config.model.vocab_size is {vocab_size}.*larger vocabulary.*vocab.txt'):
    app.train_and_evaluate(config, str(tmp_path / 'run'))


_cut_inside_record = data_utils.truncate_inside_record


def test_a_truncated_shard_among_several_is_named(pretraining, tmp_path):
  files, _, vocab, _ = pretraining
  copies = []
  for f in files:
    copies.append(str(tmp_path / os.path.basename(f)))
    shutil.copy(f, copies[-1])
  _cut_inside_record(copies[2], 3)
  config = _pretrain_config(copies, vocab, steps=12)
  with pytest.raises(ValueError, match=r'pretrain-2.tfrecord is corrupt or truncated .*re-create it'):
    app.train_and_evaluate(config, str(tmp_path / 'run'))


def test_glue_tsv_line_without_its_label_or_with_non_utf8_bytes_names_file_and_line(tmp_path):
  from projects.bert.datasets import glue_writer
  data = data_utils.write_glue_task_dir(tmp_path / 'glue', 'sst2', n_train=8, n_dev=4, n_test=4)
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  train = os.path.join(data.glue_dir, 'SST-2', 'train.tsv')
  good = open(train, 'rb').read()
  lines = good.split(b'\n')
  lines[3] = lines[3].split(b'\t')[0]  # line 4: the sentence without its label column (was an IndexError)
  open(train, 'wb').write(b'\n'.join(lines))
  with pytest.raises(glue_writer.PrepareError, match=rf'{train}:4 has 1 tab-separated columns, but GLUE sst2 has its '
                                                 rf'label in column 2.*Fix or remove the line'):
    glue_writer.prepare_glue('sst2', data.glue_dir, vocab, str(tmp_path / 'out'))
  lines = good.split(b'\n')
  lines[5] = lines[5].replace(b' ', b' caf\xe9 ', 1)  # latin-1, not UTF-8
  open(train, 'wb').write(b'\n'.join(lines))
  with pytest.raises(glue_writer.PrepareError, match=rf"{train}:6: byte \d+ \(b'\\xe9'\) is not UTF-8.*iconv"):
    glue_writer.prepare_glue('sst2', data.glue_dir, vocab, str(tmp_path / 'out'))
  assert os.listdir(tmp_path / 'out') == []  # nothing written, no staging folder left


def test_convert_names_a_truncated_config_json_safetensors_or_bert_config(tmp_path, capsys):
  from safetensors.numpy import save_file
  from projects.bert.checkpoints import convert
  hf = tmp_path / 'hf'
  hf.mkdir()
  (hf / 'config.json').write_text('{"model_type": "bert", "vocab_size": 30')
  out = str(tmp_path / 'out')

  def error_of(*argv):
    with pytest.raises(SystemExit) as e:
      convert.main([*argv, f'--output={out}'])
    return str(e.value.code)

  assert re.search(rf'{hf}/config.json is not valid JSON .*damaged or truncated', error_of('--format=hf',
                                                                                           f'--input={hf}'))
  (hf / 'config.json').write_text(json.dumps({'model_type': 'bert', 'vocab_size': 30, 'hidden_size': 8,
                                              'num_hidden_layers': 1, 'num_attention_heads': 2,
                                              'intermediate_size': 16, 'max_position_embeddings': 16,
                                              'type_vocab_size': 2}))
  save_file({'embeddings.word_embeddings.weight': np.zeros((30, 8), np.float32)}, str(hf / 'model.safetensors'))
  data = (hf / 'model.safetensors').read_bytes()
  (hf / 'model.safetensors').write_bytes(data[:len(data) // 2])
  assert re.search(rf'{hf}/model.safetensors cannot be read as safetensors .*damaged or truncated',
                   error_of('--format=hf', f'--input={hf}'))
  bert_config = tmp_path / 'bert_config.json'
  bert_config.write_text('{"vocab_size": 30, "hidden_')
  assert re.search(rf'{bert_config} is not valid JSON', error_of('--format=tf', f'--input={tmp_path}/model.ckpt',
                                                                 f'--bert_config={bert_config}'))
  assert not os.path.exists(out)


# ---------------------------------------------------------------------------------------------- prepare reruns


def _snapshot(folder):
  return {name: open(os.path.join(folder, name), 'rb').read() for name in sorted(os.listdir(folder))}


def test_prepare_glue_interrupted_keeps_the_old_data_and_a_rerun_removes_what_is_gone(tmp_path, monkeypatch):
  from official.nlp.data import classifier_data_lib
  from projects.bert.datasets import glue_writer
  data = data_utils.write_glue_task_dir(tmp_path / 'glue', 'mnli', n_train=8, n_dev=4, n_test=4)
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  out = str(tmp_path / 'out')
  glue_writer.prepare_glue('mnli', data.glue_dir, vocab, out, max_seq_length=32)
  before = _snapshot(out)
  convert = classifier_data_lib.file_based_convert_examples_to_features

  calls = []

  def interrupted(*args, **kwargs):  # Ctrl-C once the new train file is written, while writing the eval file
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return convert(*args, **kwargs)

  monkeypatch.setattr(classifier_data_lib, 'file_based_convert_examples_to_features', interrupted)
  with pytest.raises(KeyboardInterrupt):
    glue_writer.prepare_glue('mnli', data.glue_dir, vocab, out, max_seq_length=64)
  assert _snapshot(out) == before  # every file as it was, no staging folder left
  monkeypatch.setattr(classifier_data_lib, 'file_based_convert_examples_to_features', convert)
  # A rerun on a folder without the AX test file: the old AX records go, the meta data no longer lists them.
  os.remove(os.path.join(data.glue_dir, 'diagnostic', 'diagnostic.tsv'))
  meta = glue_writer.prepare_glue('mnli', data.glue_dir, vocab, out, max_seq_length=64)
  assert 'ax' not in meta['files']['test']
  assert set(os.listdir(out)) == set(before) - {'mnli_test_ax.tf_record'}
  assert json.load(open(os.path.join(out, 'mnli_meta_data')))['max_seq_length'] == 64


def _fake_official_script(fail=False):
  """Stands in for create_pretraining_data.py: writes 4 records to each --output_file (half of them, then fails)."""
  import subprocess
  import tensorflow as tf

  def run(cmd, **kwargs):
    outputs = [a.split('=', 1)[1] for a in cmd if a.startswith('--output_file=')][0].split(',')
    for path in outputs[:len(outputs) // 2] if fail else outputs:
      with tf.io.TFRecordWriter(path) as w:
        for i in range(4):
          w.write(tf.train.Example(features=tf.train.Features(feature={'x': tf.train.Feature(
              int64_list=tf.train.Int64List(value=[i]))})).SerializeToString())
    return subprocess.CompletedProcess(cmd, 1 if fail else 0, '', 'killed' if fail else '')

  return run


def test_prepare_pretraining_rerun_with_fewer_shards_removes_the_stale_ones_and_a_failure_changes_nothing(
    tmp_path, monkeypatch):
  from projects.bert.datasets import pretraining_writer
  corpus = data_utils.write_corpus(tmp_path / 'corpus.txt')
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  out = tmp_path / 'pt'

  def prepare_shards(*names, fail=False):
    monkeypatch.setattr(pretraining_writer.child_process.subprocess, 'run', _fake_official_script(fail))
    return pretraining_writer.prepare_pretraining([f'--input_file={corpus}', f'--vocab_file={vocab}',
                                                   '--output_file=' + ','.join(str(out / n) for n in names)])

  prepare_shards('train-0.tfrecord', 'train-1.tfrecord', 'train-2.tfrecord')
  prepare_shards('other-0.tfrecord')  # another corpus into the same folder: not part of the train set
  assert prepare_shards('train-0.tfrecord', 'train-1.tfrecord') == {str(out / 'train-0.tfrecord'): 4,
                                                                     str(out / 'train-1.tfrecord'): 4}
  assert sorted(os.listdir(out)) == ['.prepare_manifest.json', 'other-0.tfrecord', 'train-0.tfrecord',
                                     'train-1.tfrecord']
  before = _snapshot(out)
  with pytest.raises(RuntimeError, match='failed'):
    prepare_shards('train-0.tfrecord', 'train-1.tfrecord', fail=True)
  assert _snapshot(out) == before
