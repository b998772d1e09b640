"""Faults met by BERT runs (issue 18), each injected for real and checked on disk: best parameters lost or out of
step with results.json, predict from a checkpoint without a task head, ..."""

import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models and trainers)
from core import app, params_io, registry
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
  config.eval_every = 2
  config.log_every = 2
  config.checkpoint_every = 2
  config.checkpoint.async_save = False
  return config


@pytest.fixture(scope='module')
def trained(glue_data):
  """A finished tiny RTE fine-tuning run (best/ and results.json written); tests copy it before changing it."""
  workdir = str(glue_data[0] / 'trained')
  results = app.train_and_evaluate(_glue_config(glue_data), workdir)
  assert results['best']['step'] in (2, 4)
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
  model = registry.MODELS.get(config.model_name)(config, {'num_labels': 2})
  params = jax.device_get(model.init_params(jax.random.PRNGKey(0), example_batch_from_meta(
      {'input_specs': {k: ((32,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}})))
  encoder_only = str(tmp_path / 'encoder')  # what a pretraining run or a converted checkpoint holds
  params_io.save_params(encoder_only, {'bert': params['bert']}, {'model': config.model.to_dict()})
  config.mode = 'predict'
  config.init_from = encoder_only
  workdir = str(tmp_path / 'predict')
  with pytest.raises(ValueError, match=r'encoder/?.* has no classifier/.*RANDOM head.*Fine-tune first'):
    app.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'predictions'))
  results = os.path.join(workdir, 'results.json')
  assert not os.path.exists(results) or 'predictions' not in json.load(open(results))
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
  from projects.bert.configs import common, pretrain
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
