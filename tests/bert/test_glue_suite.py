"""GLUE as a suite (`bert_glue_suite`, configs/glue_suite.py): two tiny tasks (MRPC: accuracy and F1, STS-B:
regression with Pearson and Spearman) x two seeds of the tiny model, the table against each run's results.json,
the submission files of the best seeds, and resuming (finished runs skipped, an interrupted one resumed from its
checkpoint, a run of other settings refused)."""

import json
import os
import shutil

import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors
from projects.bert.runs import glue_suite
from projects.bert.configs import glue_suite as suite_configs
from tests.bert import data_utils

TASKS = ('mrpc', 'stsb')


def _config(tmp_path):
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  for task in TASKS:
    records, _ = data_utils.make_glue_records(tmp_path, task, vocab_path=vocab, max_seq_length=16, n_train=16,
                                              n_dev=12, n_test=6)
  config = suite_configs.get_config('tiny')
  config.data_dir = records
  config.tasks = 'all'  # the tasks present: mrpc and stsb
  config.num_seeds = 2
  ft = config.finetune
  ft.model.vocab_size = len(data_utils.read_vocab(vocab))
  ft.model.num_layers = 1
  ft.dataset.max_seq_length = 16
  ft.dataset.shuffle_buffer = 16
  ft.batch_size = ft.eval_batch_size = 8
  ft.num_epochs = 0.0
  ft.num_train_steps = 4
  ft.checkpoint_every = 2
  ft.log_every = 2
  ft.schedule.base_lr = 1e-3
  ft.checkpoint.keep = 2
  ft.checkpoint.async_save = False
  return config


@pytest.fixture(scope='module')
def suite(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('suite')
  config = _config(tmp_path)
  workdir = str(tmp_path / 'glue')
  return config, workdir, app.train_and_evaluate(config, workdir)


def test_table_equals_each_runs_results(suite):
  config, workdir, summary = suite
  assert list(summary['tasks']) == list(TASKS)
  on_disk = json.load(open(os.path.join(workdir, glue_suite.RESULTS_JSON)))
  assert on_disk['tasks'] == json.loads(json.dumps(summary['tasks']))
  for task in TASKS:
    t = summary['tasks'][task]
    assert t['seeds'] == [0, 1]
    finals = [json.load(open(os.path.join(workdir, task, f'seed_{s}', 'results.json')))['glue']['final']
              for s in (0, 1)]
    keys = {'mrpc': ['validation/accuracy', 'validation/f1'],
            'stsb': ['validation/pearson', 'validation/spearman']}[task]
    assert list(t['metrics']) == keys
    for key in keys:
      per_seed = [f[key] for f in finals]
      assert t['metrics'][key]['per_seed'] == per_seed
      assert t['metrics'][key]['mean'] == pytest.approx(np.mean(per_seed))
      assert t['metrics'][key]['std'] == pytest.approx(np.std(per_seed, ddof=1))
    scores = [np.mean([f[k] for k in keys]) for f in finals]
    assert t['score']['per_seed'] == pytest.approx(scores)
    assert t['best_seed'] == int(np.argmax(scores))  # ties: the lower seed
    # The seeds are different runs: data order and initialisation follow the seed.
    configs = [json.load(open(os.path.join(workdir, task, f'seed_{s}', 'config.json'))) for s in (0, 1)]
    assert [(c['rng_seed'], c['dataset']['seed'], c['dataset']['task']) for c in configs] == [(0, 0, task),
                                                                                             (1, 1, task)]
  glue_score = np.mean([summary['tasks'][t]['score']['mean'] for t in TASKS])
  assert summary['glue_score']['value'] == pytest.approx(glue_score)
  assert summary['glue_score']['tasks'] == list(TASKS)
  bert_avg = np.mean([summary['tasks']['mrpc']['metrics']['validation/f1']['mean'],
                      summary['tasks']['stsb']['metrics']['validation/spearman']['mean']])
  assert summary['bert_paper_average']['value'] == pytest.approx(bert_avg)

  markdown = open(os.path.join(workdir, glue_suite.RESULTS_MD)).read()
  f1 = summary['tasks']['mrpc']['metrics']['validation/f1']
  assert f'| F1 | {100 * f1["mean"]:.1f} ± {100 * f1["std"]:.1f} |' in markdown
  assert f'**{100 * glue_score:.1f}**' in markdown
  assert 'tasks: MRPC, STS-B.' in markdown


def test_submission_files_are_the_best_seeds_predictions(suite):
  _, workdir, summary = suite
  for task, name in (('mrpc', 'MRPC.tsv'), ('stsb', 'STS-B.tsv')):
    best = summary['tasks'][task]['best_seed']
    sub = summary['submission'][task]
    assert sub['seed'] == best
    path = os.path.join(workdir, glue_suite.SUBMISSION_DIR, name)
    assert sub['files'] == {'test': path}
    predicted = os.path.join(workdir, task, f'seed_{best}', 'predictions', name)
    assert open(path).read() == open(predicted).read()
    rows = open(path).read().splitlines()
    assert rows[0] == 'index\tprediction' and len(rows) == 1 + 6
    # Predicted with the run's final weights (no best/ in a suite run).
    predict = json.load(open(os.path.join(workdir, task, f'seed_{best}', 'predict_results.json')))
    assert predict['weights']['source'] == 'checkpoint' and predict['step'] == 4


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(suite, monkeypatch):
  config, workdir, first = suite
  # seed 1 of stsb stopped after its checkpoint of step 2 (a crash before step 4 was saved).
  run_dir = os.path.join(workdir, 'stsb', 'seed_1')
  shutil.rmtree(os.path.join(run_dir, 'checkpoints', '4'))
  results_path = os.path.join(run_dir, 'results.json')
  results = json.load(open(results_path))
  results.update(done=False, step=2)
  json.dump(results, open(results_path, 'w'))

  calls = []
  real = app.train_and_evaluate

  def counting(cfg, wd):
    calls.append((cfg.get('mode'), wd))
    return real(cfg, wd)

  monkeypatch.setattr(app, 'train_and_evaluate', counting)
  second = glue_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=workdir, writer=None)
  trained = [wd for mode, wd in calls if mode == 'train']
  assert trained == [run_dir]
  resumed = json.load(open(results_path))
  assert resumed['resumed_from'] == 2 and resumed['done'] and resumed['step'] == 4
  assert second['tasks']['stsb']['metrics']['validation/pearson']['per_seed'][1] == (
      resumed['glue']['final']['validation/pearson'])
  assert second['tasks']['mrpc'] == first['tasks']['mrpc']  # mrpc's runs were read, not redone
  # Predictions are made again only where the best seed's run changed.
  predicted = [wd for mode, wd in calls if mode == 'predict']
  assert all('stsb' in wd for wd in predicted)

  # Logging and checkpointing settings do not make another run: nothing is trained or predicted again.
  calls.clear()
  config.finetune.log_every = 1
  third = glue_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=workdir, writer=None)
  assert calls == [] and third['tasks'] == second['tasks']
  # Other settings in the same workdir are refused, naming the run's config.json and the field.
  config.finetune.schedule.base_lr = 5e-4
  with pytest.raises(errors.ConfigError, match=r'mrpc/seed_0/config.json is of another run \(schedule.base_lr'):
    glue_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=workdir, writer=None)
  config.finetune.schedule.base_lr = 1e-3


def test_glue_table_averages_as_the_papers_do():
  """GLUE score: mean of task scores (MNLI = mean of m and mm; MRPC = mean of acc and F1); the BERT paper's Table 1
  average: main metrics, MNLI-m and -mm as two entries, no WNLI. With BERT-base's numbers in Table 1 of the paper
  (test sets) the BERT-paper average is the paper's 79.6."""
  paper = {'mnli': {'matched/accuracy': .846, 'mismatched/accuracy': .834}, 'qqp': {'validation/f1': .712},
           'qnli': {'validation/accuracy': .905}, 'sst2': {'validation/accuracy': .935},
           'cola': {'validation/matthews_corr': .521}, 'stsb': {'validation/spearman': .858},
           'mrpc': {'validation/f1': .889}, 'rte': {'validation/accuracy': .664}}
  # Fill the second metric of the two-metric tasks so the table has every GLUE metric.
  runs = {}
  for task, values in paper.items():
    full = {k: values.get(k, 0.5) for k in glue_suite.metric_keys(task)}
    runs[task] = {0: full, 1: full}
  runs['wnli'] = {0: {'validation/accuracy': 0.3}, 1: {'validation/accuracy': 0.5}}
  table = glue_suite.glue_table(runs)
  assert table['bert_paper_average']['value'] == pytest.approx(0.796, abs=5e-4)
  assert 'wnli' not in table['bert_paper_average']['tasks'] and 'wnli' in table['glue_score']['tasks']
  assert table['tasks']['mnli']['score']['mean'] == pytest.approx((.846 + .834) / 2)
  assert table['tasks']['mrpc']['score']['mean'] == pytest.approx((.889 + 0.5) / 2)
  assert table['tasks']['wnli']['metrics']['validation/accuracy']['std'] == pytest.approx(np.std([.3, .5], ddof=1))
  assert table['tasks']['wnli']['best_seed'] == 1 and table['tasks']['mnli']['best_seed'] == 0
  assert table['glue_score']['value'] == pytest.approx(np.mean([t['score']['mean'] for t in table['tasks'].values()]))
  markdown = glue_suite.table_markdown(table, 'test')
  assert '| MNLI | matched accuracy | 84.6 ± 0.0 |' in markdown and '| CoLA | MCC | 52.1 ± 0.0 |' in markdown


def test_task_list_and_config_errors(tmp_path):
  with pytest.raises(errors.MissingFileError, match='holds no GLUE records'):
    glue_suite.task_list('all', str(tmp_path))
  assert glue_suite.task_list('STS-B, mrpc,stsb', str(tmp_path)) == ['stsb', 'mrpc']
  with pytest.raises(errors.ConfigError, match="config.tasks='mrpc,ax'"):
    glue_suite.task_list('mrpc,ax', str(tmp_path))
  config = suite_configs.get_config()
  assert config.finetune.model is None  # the architecture of init_from
  config.init_from = '/ckpt'
  config.data_dir = '/records'
  run = glue_suite.run_config(config, 'stsb', 2)
  assert (run.init_from, run.dataset.data_dir, run.dataset.task, run.model_name, run.rng_seed,
          run.dataset.seed) == ('/ckpt', '/records', 'stsb', 'bert_regression', 2, 2)
  assert glue_suite.run_config(config, 'cola', 0).model_name == 'bert_classification'


def test_a_suite_run_exports_to_hugging_face(suite, tmp_path):
  """A run's workdir exports with its head and its task's labels (the parity of the export: test_convert.py)."""
  from safetensors.numpy import load_file

  from core import params_io
  from projects.bert.checkpoints import hf_export
  _, workdir, summary = suite
  run_dir = os.path.join(workdir, 'mrpc', f'seed_{summary["tasks"]["mrpc"]["best_seed"]}')
  info = hf_export.export_hf_checkpoint(run_dir, str(tmp_path / 'hf'))
  assert info['architecture'] == 'BertForSequenceClassification'
  hf_config = json.load(open(tmp_path / 'hf' / 'config.json'))
  assert hf_config['id2label'] == {'0': '0', '1': '1'} and hf_config['hidden_size'] == 128
  params, _ = params_io.read_pretrained(run_dir)
  tensors = load_file(str(tmp_path / 'hf' / 'model.safetensors'))
  np.testing.assert_array_equal(tensors['classifier.weight'], params['classifier']['kernel'].T)
  np.testing.assert_array_equal(tensors['bert.embeddings.word_embeddings.weight'],
                                params['bert']['word_embeddings']['embedding'])
