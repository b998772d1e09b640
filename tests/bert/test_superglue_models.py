"""The `bert_superglue` builder (datasets/superglue.py) on records `prepare superglue` writes, and the SuperGLUE
heads (models/superglue_heads.py): batch shapes and contents per task kind, COPA's rows kept in pairs through
shuffling, padding, and a tiny model fine-tuned above chance through configs/superglue.py on a sentence-pair task
(RTE, whose run also scores and predicts AX-b and AX-g) and on WSC's span pairs."""

import os
import types

import ml_collections
import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the datasets and models)
from core import errors, registry
from projects.bert.datasets import superglue_reader as reader
from projects.bert.datasets import superglue_writer as writer
from projects.bert.models import architecture, superglue_heads
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_submission
from tests.bert import data_utils, superglue_data

SEQ = 48
SIZES = {'train': 96, 'validation': 32, 'test': 8}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('sgm')
  sg_dir = superglue_data.write_superglue_dir(str(root / 'superglue'), train_size=SIZES['train'],
                                              eval_size=SIZES['validation'], test_size=SIZES['test'])
  texts = []
  for folder, _, names in os.walk(sg_dir):
    texts += [open(os.path.join(folder, n)).read() for n in names]
  vocab = data_utils.write_vocab(root / 'vocab.txt', data_utils.default_texts() + texts)
  out = str(root / 'out')
  for name in sg.task_names():
    writer.prepare_superglue(name, sg_dir, vocab, out, SEQ)
  return types.SimpleNamespace(sg_dir=sg_dir, vocab=vocab, out=out,
                               vocab_size=len(data_utils.read_vocab(vocab)))


def _config(data, task, batch=16, **model):
  config = ml_collections.ConfigDict({'batch_size': batch, 'eval_batch_size': batch,
                                      'dataset': {'task': task, 'data_dir': data.out, 'shuffle_buffer': 1000},
                                      'model': architecture.model_config('tiny')})
  config.model.vocab_size = data.vocab_size
  config.model.update(model)
  return config


def _build(data, task, **kwargs):
  return registry.DATASETS.get('bert_superglue')(_config(data, task, **kwargs))


# --- the builder ---------------------------------------------------------------------------------------------------


def test_batches_of_every_task_kind(data):
  for name, task in sg.SUPERGLUE_TASKS.items():
    ds = _build(data, name)
    meta = ds.meta_data
    assert meta.extra['task_kind'] == task.kind and meta.max_seq_length == SEQ
    split = sg.TEST if task.diagnostic else sg.VALIDATION
    it = (ds.test_iter if task.diagnostic else ds.valid_iter)(split)
    batch = next(iter(it))
    for key, (shape, dtype) in meta.input_specs.items():
      assert batch[key].shape == (16,) + tuple(shape) and batch[key].dtype == np.dtype(dtype), (name, key)
    if task.diagnostic:
      assert ds.train_iter is None and ds.valid_iter is None
      assert meta.test_sizes == {'test': SIZES['validation']}
      continue
    train = next(ds.train_iter)
    assert sorted(train) == sorted(batch), name
    assert train['batch_mask'].tolist() == [1.0] * 16
    rows = 2 if task.kind == sg.MULTIPLE_CHOICE else 1
    assert meta.num_train_examples == ds.meta_data.extra['row_counts']['train'] // rows


def test_copa_keeps_an_examples_two_choices_together_and_labels_the_right_one(data):
  ds = _build(data, 'copa')
  examples = {e.idx: e for e in reader.read_split(data.sg_dir, 'copa', 'train')}
  assert ds.meta_data.num_train_examples == SIZES['train']
  for _ in range(3):  # shuffled batches: every example's two rows still side by side, in choice order
    batch = next(ds.train_iter)
    assert batch['input_ids'].shape == (16, 2, SEQ) and batch['choice_index'].tolist() == [[0, 1]] * 16
    assert batch['label_ids'].tolist() == [examples[i].label for i in batch['example_id'].tolist()]
  passes = list(ds.valid_iter())
  assert len(passes) == 2 and [float(b['batch_mask'].sum()) for b in passes] == [16.0, 16.0]
  ids = np.concatenate([b['example_id'] for b in passes]).tolist()
  assert ids == [e.idx for e in reader.read_split(data.sg_dir, 'copa', 'validation')]


def test_padding_of_the_last_eval_batch(data):
  ds = _build(data, 'wsc', batch=24)
  batches = list(ds.valid_iter())
  assert len(batches) == 2 and batches[-1]['batch_mask'].tolist() == [1.0] * 8 + [0.0] * 16
  assert batches[-1]['example_id'][8:].tolist() == [-1] * 16
  wsc = reader.read_split(data.sg_dir, 'wsc', 'validation')
  first = batches[0]
  assert first['label_ids'].tolist() == [e.label for e in wsc[:24]]
  assert all(1 <= s < e <= SEQ for s, e in zip(first['span1_start'], first['span1_end']))


def test_errors_name_the_fix(data, tmp_path):
  with pytest.raises(errors.MissingFileError, match='prepare superglue --task=boolq'):
    registry.DATASETS.get('bert_superglue')(ml_collections.ConfigDict({
        'batch_size': 8, 'dataset': {'task': 'boolq', 'data_dir': str(tmp_path)}}))
  with pytest.raises(errors.ConfigError, match='max_seq_length=128 .* hold 48 tokens'):
    registry.DATASETS.get('bert_superglue')(ml_collections.ConfigDict({
        'batch_size': 8, 'dataset': {'task': 'rte', 'data_dir': data.out, 'max_seq_length': 128}}))
  with pytest.raises(ValueError, match='Unknown SuperGLUE task'):
    _build(data, 'mnli')


# --- the heads -------------------------------------------------------------------------------------------------------


def test_span_means():
  sequence = np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1)
  means = superglue_heads.span_means(sequence, np.array([1, 0]), np.array([4, 0]))
  assert means[:, 0].tolist() == [2.0, 0.0]  # mean of 1, 2, 3; an empty span gives zeros


def _tiny_config(data, task, steps, every):
  from projects.bert.configs import superglue as superglue_config
  config = superglue_config.get_config(f'{task},tiny')
  config.model.vocab_size = data.vocab_size
  config.dataset.data_dir = data.out
  config.dataset.max_seq_length = SEQ
  config.batch_size = config.eval_batch_size = 16
  config.num_train_steps = steps
  config.schedule.base_lr = 3e-3
  config.evals.superglue.every = every
  config.log_every = every
  config.checkpoint.async_save = False
  return config


def test_rte_fine_tunes_above_chance_and_scores_and_predicts_the_diagnostics(data, tmp_path):
  from core import app
  config = _tiny_config(data, 'rte', steps=40, every=40)
  assert config.model_name == 'bert_classification'
  workdir = str(tmp_path / 'rte')
  results = app.train_and_evaluate(config, workdir)
  assert results['superglue']['final']['validation/accuracy'] >= 0.8  # chance: about 0.5
  axb, axg = results['superglue_axb'], results['superglue_axg']
  assert axb['task'] == 'axb' and axb['main_metric'] == 'test/matthews_corr' and 'best_on_dev' not in axb
  assert axb['final']['test/num_examples'] == SIZES['validation'] and -1 <= axb['final']['test/matthews_corr'] <= 1
  assert set(axg['final']) >= {'test/gender_parity', 'test/accuracy'}
  for task, name in (('rte', 'RTE.jsonl'), ('axb', 'AX-b.jsonl'), ('axg', 'AX-g.jsonl')):
    rows = superglue_submission.read_submission(os.path.join(workdir, 'submission', name), task)
    split = sg.TEST
    assert [r['idx'] for r in rows] == [e.idx for e in reader.read_split(data.sg_dir, task, split)]


def test_wsc_fine_tunes_through_the_config_and_eval_mode_reproduces_best_on_dev(data, tmp_path):
  from core import app
  config = _tiny_config(data, 'wsc', steps=80, every=40)
  assert config.model_name == 'bert_span_pair' and config.dataset_name == 'bert_superglue'
  assert 'superglue_predict' not in config.evals  # without ,predict: written in mode 'predict' only
  workdir = str(tmp_path / 'wsc')
  results = app.train_and_evaluate(config, workdir)['superglue']
  assert results['main_metric'] == 'validation/accuracy' and results['final_step'] == 80
  assert [h['step'] for h in results['history']] == [40, 80]
  assert results['final']['validation/accuracy'] >= 0.8  # chance: about 0.5
  assert results['final']['validation/num_examples'] == SIZES['validation']
  config.mode = 'eval'
  scored = app.train_and_evaluate(config, workdir)['superglue']
  assert scored['weights']['source'] == 'best'
  assert scored['metrics']['validation/accuracy'] == pytest.approx(results['best_on_dev']['value'])
  config.mode = 'predict'
  predicted = app.train_and_evaluate(config, workdir)['superglue_predict']
  path = os.path.join(workdir, 'submission', 'WSC.jsonl')
  assert predicted['file'] == path and predicted['weights']['source'] == 'best'
  rows = superglue_submission.read_submission(path, 'wsc')
  assert [r['idx'] for r in rows] == [e.idx for e in reader.read_split(data.sg_dir, 'wsc', 'test')]
  assert {r['label'] for r in rows} <= {'True', 'False'}


@pytest.mark.parametrize('task', ['copa', 'wic', 'multirc', 'record'])
def test_every_other_kind_trains_scores_and_predicts(data, tmp_path, task):
  """A few steps of each remaining kind through the config: the official metrics of its dev split and a leaderboard
  file the format accepts (the learning itself: RTE and WSC above, every kind from MiniLM in
  test_superglue_minilm.py)."""
  from core import app
  config = _tiny_config(data, task, steps=2, every=2)
  workdir = str(tmp_path / task)
  results = app.train_and_evaluate(config, workdir)['superglue']
  t = sg.get_task(task)
  assert set(results['final']) >= {f'validation/{m}' for m in t.metrics + ('score', 'loss')}
  examples = reader.read_split(data.sg_dir, task, sg.VALIDATION)
  counted = (len(reader.answer_options(examples)) if task == 'multirc' else
             sum(len(e.queries) for e in examples) if task == 'record' else len(examples))
  assert results['final']['validation/num_examples'] == counted
  config.mode = 'predict'
  predicted = app.train_and_evaluate(config, workdir)['superglue_predict']
  rows = superglue_submission.read_submission(predicted['file'], task)
  tests = reader.read_split(data.sg_dir, task, sg.TEST)
  assert len(rows) == (sum(len(e.queries) for e in tests) if task == 'record' else len(tests))


def test_the_suite_writes_one_table_and_the_leaderboard_files_and_a_rerun_skips_finished_runs(data, tmp_path):
  from core import app
  from projects.bert.configs import superglue_suite
  config = superglue_suite.get_config('tiny')
  config.tasks = 'rte,wsc'
  config.num_seeds = 1
  config.data_dir = data.out
  ft = config.finetune
  ft.model.vocab_size = data.vocab_size
  ft.dataset.max_seq_length = SEQ
  ft.batch_size = ft.eval_batch_size = 16
  ft.num_train_steps = 4
  ft.log_every = 4
  ft.checkpoint.async_save = False
  workdir = str(tmp_path / 'suite')
  summary = app.train_and_evaluate(config, workdir)
  assert list(summary['tasks']) == ['rte', 'wsc'] and summary['superglue_score']['value'] is None
  rte = summary['tasks']['rte']
  assert rte['score']['mean'] == rte['metrics']['validation/accuracy']['mean'] and rte['best_seed'] == 0
  assert set(summary['diagnostics']) == {'axb', 'axg'}
  assert set(summary['diagnostics']['axg']) == {'test/gender_parity', 'test/accuracy'}
  files = sorted(os.listdir(os.path.join(workdir, 'submission')))
  assert files == ['AX-b.jsonl', 'AX-g.jsonl', 'RTE.jsonl', 'WSC.jsonl']
  for name in files:
    task = name[:-len('.jsonl')]
    rows = superglue_submission.read_submission(os.path.join(workdir, 'submission', name), task)
    assert len(rows) == len(reader.read_split(data.sg_dir, task, sg.TEST))
  table = open(os.path.join(workdir, 'superglue_results.md')).read()
  assert '| RTE | accuracy |' in table and '| AX-b (RTE runs) | matthews_corr |' in table
  mtime = os.path.getmtime(os.path.join(workdir, 'rte', 'seed_0', 'results.json'))
  again = app.train_and_evaluate(config, workdir)  # finished runs are skipped
  assert again['tasks'] == summary['tasks']
  assert os.path.getmtime(os.path.join(workdir, 'rte', 'seed_0', 'results.json')) == mtime
