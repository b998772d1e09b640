"""XTREME as a suite (`bert_xtreme_suite`, configs/xtreme_suite.py): XNLI and PAWS-X (the kinds configs/xtreme.py
writes today) x two seeds of a one-layer tiny model on generated folders (tests/bert/xtreme_data.py: en, de, zh):
the table against each run's results.json, the leaderboard folder, rerunning (finished runs skipped, an interrupted
one resumed), missing tasks named; and the XTREME score rule on a hand-made set of all nine tasks."""

import json
import os
import shutil

import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors
from projects.bert.configs import xtreme as xtreme_configs
from projects.bert.configs import xtreme_suite as suite_configs
from projects.bert.datasets import xtreme_writer
from projects.bert.runs import xtreme_suite
from projects.bert.tasks import xtreme, xtreme_submission
from tests.bert import xtreme_data

LANGUAGES = ('en', 'de', 'zh')
N = 16  # examples per file
SEQ_LEN = 32
TASKS = ('xnli', 'pawsx')
# 4 runs and 2 predictions of a one-layer model: ~75 s of CPU, several minutes on a shared machine.
pytestmark = pytest.mark.long(minutes=2)


def _config(records, vocab_size):
  config = suite_configs.get_config('tiny')
  config.data_dir = records
  config.num_seeds = 2
  for run in config.runs.values():
    run.model.vocab_size = vocab_size
    run.model.num_layers = 1
    if 'dataset' not in run:  # retrieval (no records here: reported missing)
      continue
    run.dataset.max_seq_length = SEQ_LEN
    run.dataset.shuffle_buffer = N
    run.batch_size = 8
    run.eval_batch_size = 16
    run.num_epochs = 0.0
    run.num_train_steps = 4
    run.checkpoint_every = 2
    run.log_every = 2
    run.schedule.base_lr = 1e-6  # near the random start: the seeds' scores differ (a larger rate: one class each)
    run.checkpoint.keep = 2
    run.checkpoint.async_save = False
  return config


@pytest.fixture(scope='module')
def suite(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_suite')
  download = xtreme_data.write_xtreme_dir(str(root / 'download'), TASKS, LANGUAGES, examples=N)
  vocab, vocab_size = xtreme_data.write_vocab(root / 'vocab.txt', download, continuation_pieces=False)
  records = str(root / 'records')
  for task in TASKS:
    xtreme_writer.prepare_xtreme(task, download, vocab, records, SEQ_LEN)
  config = _config(records, vocab_size)
  workdir = str(root / 'xtreme')
  return config, workdir, app.train_and_evaluate(config, workdir)


def _results(workdir, task, seed):
  return json.load(open(os.path.join(workdir, task, f'seed_{seed}', 'results.json')))


def test_table_is_the_runs_scores_by_language_task_and_group(suite):
  config, workdir, summary = suite
  assert list(summary['tasks']) == list(TASKS)
  assert any(summary['tasks'][t]['languages'][lang]['std'] > 0 for t in TASKS for lang in LANGUAGES)  # seeds differ
  assert json.load(open(os.path.join(workdir, xtreme_suite.RESULTS_JSON)))['tasks'] == json.loads(
      json.dumps(summary['tasks']))
  for task in TASKS:
    t = summary['tasks'][task]
    runs = [_results(workdir, task, s)['xtreme'] for s in (0, 1)]
    assert t['seeds'] == [0, 1] and t['group'] == 'classification' and t['language_score'] == 'accuracy'
    langs = [lang for lang in xtreme.get_task(task).languages if lang in LANGUAGES]
    assert list(t['languages']) == langs  # evaluate.py's order of the task's languages
    for lang in langs:
      per_seed = [r['per_language'][lang]['accuracy'] for r in runs]
      cell = t['languages'][lang]
      assert cell['per_seed'] == per_seed and cell['metrics']['accuracy']['per_seed'] == per_seed
      assert cell['mean'] == pytest.approx(np.mean(per_seed)) and cell['std'] == pytest.approx(np.std(per_seed, ddof=1))
    assert t['score']['per_seed'] == [r['final']['average/metric'] for r in runs]
    # The task average is the mean over languages (of each seed, and so of the seed means).
    assert t['score']['mean'] == pytest.approx(np.mean([t['languages'][lang]['mean'] for lang in langs]))
    configs = [json.load(open(os.path.join(workdir, task, f'seed_{s}', 'config.json'))) for s in (0, 1)]
    assert [(c['rng_seed'], c['dataset']['seed'], c['dataset']['task']) for c in configs] == [(0, 0, task),
                                                                                             (1, 1, task)]
    assert all(c['evals']['xtreme']['every'] == 0 and not c['evals']['xtreme']['save_best'] for c in configs)
    assert 'xtreme_predict' not in configs[0]['evals']  # predictions: once, for the submission run only
  classification = np.mean([summary['tasks'][t]['score']['mean'] for t in TASKS])
  assert summary['groups']['classification']['value'] == pytest.approx(classification)
  absent = [n for n in xtreme.XTREME_TASKS if n not in TASKS]
  for group in ('tagging', 'qa', 'retrieval'):
    assert summary['groups'][group]['value'] is None and summary['groups'][group]['missing']
  assert summary['xtreme_score']['value'] is None and summary['xtreme_score']['missing'] == absent
  assert list(summary['missing']) == absent
  for name in absent:  # named, with the reason: no config for its kind yet, or no records in data_dir
    kind = xtreme.get_task(name).kind
    why = 'no config' if kind not in xtreme_configs.KIND_CONFIGS else 'no records'
    assert summary['missing'][name].startswith(why), summary['missing'][name]

  markdown = open(os.path.join(workdir, xtreme_suite.RESULTS_MD), encoding='utf-8').read()
  xnli = summary['tasks']['xnli']
  assert f'| XNLI | Sentence classification | accuracy | {xnli["score"]["mean"]:.1f} ± {xnli["score"]["std"]:.1f} |' \
         in markdown
  assert f'(mean of xnli, pawsx) | | | {classification:.1f} |' in markdown
  assert '| **XTREME score** | | | n/a |' in markdown and f'- {absent[0]}: ' in markdown
  de = xnli['languages']['de']
  assert f'| {de["mean"]:.1f} ± {de["std"]:.1f} |' in markdown


def test_submission_folder_holds_the_chosen_runs_predictions_in_the_leaderboard_layout(suite):
  _, workdir, summary = suite
  out = os.path.join(workdir, xtreme_suite.SUBMISSION_DIR)
  assert sorted(os.listdir(out)) == sorted(TASKS)
  for task in TASKS:
    sub = summary['submission'][task]
    english = [_results(workdir, task, s)['xtreme']['per_language']['en']['accuracy'] for s in (0, 1)]
    assert sub['seed'] == summary['tasks'][task]['submission_seed'] == int(np.argmax(english))  # ties: seed 0
    assert 'English' in sub['selected_by']
    langs = [lang for lang in xtreme.get_task(task).languages if lang in LANGUAGES]
    assert sorted(os.listdir(os.path.join(out, task))) == sorted(f'test-{lang}.tsv' for lang in langs)
    run_dir = os.path.join(workdir, task, f'seed_{sub["seed"]}')
    predicted = json.load(open(os.path.join(run_dir, 'predict_results.json')))
    assert predicted['step'] == 4 and predicted['xtreme_predict']['weights']['source'] == 'checkpoint'
    for lang in langs:
      path = os.path.join(out, task, f'test-{lang}.tsv')
      assert sub['files'][lang] == path
      assert open(path).read() == open(os.path.join(run_dir, 'submission', task, f'test-{lang}.tsv')).read()
      labels = xtreme_submission.read_submission_file(task, path)
      assert len(labels) == N and set(labels) <= set(xtreme.get_task(task).labels)
    other = os.path.join(workdir, task, f'seed_{1 - sub["seed"]}')
    assert not os.path.exists(os.path.join(other, 'predict_results.json'))  # only the chosen run predicts


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(suite, monkeypatch):
  config, workdir, first = suite
  # pawsx seed 1 stopped after its checkpoint of step 2.
  run_dir = os.path.join(workdir, 'pawsx', 'seed_1')
  shutil.rmtree(os.path.join(run_dir, 'checkpoints', '4'))
  path = os.path.join(run_dir, 'results.json')
  results = json.load(open(path))
  results.update(done=False, step=2)
  json.dump(results, open(path, 'w'))
  calls = []
  real = app.train_and_evaluate
  monkeypatch.setattr(app, 'train_and_evaluate', lambda cfg, wd: calls.append((cfg.get('mode'), wd)) or real(cfg, wd))
  mtimes = {t: os.path.getmtime(os.path.join(workdir, t, 'seed_0', 'results.json')) for t in TASKS}

  second = xtreme_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=workdir, writer=None)
  assert [wd for mode, wd in calls if mode == 'train'] == [run_dir]
  resumed = json.load(open(path))
  assert resumed['resumed_from'] == 2 and resumed['done'] and resumed['step'] == 4
  assert second['tasks']['pawsx']['score']['per_seed'][1] == resumed['xtreme']['final']['average/metric']
  assert second['tasks']['xnli'] == first['tasks']['xnli']  # read, not redone
  assert {t: os.path.getmtime(os.path.join(workdir, t, 'seed_0', 'results.json')) for t in TASKS} == mtimes

  calls.clear()
  third = xtreme_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=workdir, writer=None)
  assert calls == [] and third['tasks'] == second['tasks']  # nothing trained or predicted again
  config.runs.xnli.schedule.base_lr = 5e-4
  with pytest.raises(errors.ConfigError, match=r'xnli/seed_0/config.json is of another run \(schedule.base_lr'):
    xtreme_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=workdir, writer=None)
  config.runs.xnli.schedule.base_lr = 1e-6


def test_missing_tasks_are_named_and_skipped(suite, tmp_path):
  config, _, _ = suite
  records = config.data_dir
  partial = str(tmp_path / 'records')
  os.makedirs(partial)
  shutil.copy(os.path.join(records, 'xnli_meta_data'), partial)
  config.data_dir = partial
  try:
    config.tasks = 'xnli,PAWS-X,bucc'
    tasks, missing = xtreme_suite.plan(config)
    assert tasks == ['xnli']
    assert missing['pawsx'].startswith(f'no records: {os.path.join(partial, "pawsx_meta_data")} is missing')
    assert '--task=pawsx' in missing['pawsx']
    assert missing['bucc2018'].startswith('no config' if xtreme.BITEXT_MINING not in xtreme_configs.KIND_CONFIGS
                                          else 'no records')
    assert missing['udpos'] == 'not in config.tasks'
    config.tasks = 'xcopa'
    with pytest.raises(errors.ConfigError, match="config.tasks='xcopa': Unknown XTREME task"):
      xtreme_suite.plan(config)
    config.tasks = 'pawsx'
    with pytest.raises(errors.MissingFileError, match='No XTREME task can run: .*pawsx: no records'):
      xtreme_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=str(tmp_path / 'w'),
                             writer=None)
    config.tasks = 'all'
    config.submission_seed = '7'
    with pytest.raises(errors.ConfigError, match=r"submission_seed='7': the runs use seeds 0 .. 1"):
      xtreme_suite.run_suite(rng=None, config=config, model_cls=None, dataset=None, workdir=str(tmp_path / 'w'),
                             writer=None)
  finally:
    config.data_dir, config.tasks, config.submission_seed = records, 'all', 'en'


# A hand-made results set of all nine tasks: {task: {seed: {lang: {metric: value}}}} (two languages each).
HAND_MADE = {
    'xnli': {0: {'en': {'accuracy': 80.0}, 'de': {'accuracy': 70.0}},
             1: {'en': {'accuracy': 82.0}, 'de': {'accuracy': 66.0}}},
    'pawsx': {0: {'en': {'accuracy': 90.0}, 'de': {'accuracy': 80.0}}},
    'udpos': {0: {'en': {'f1': 95.0, 'precision': 95.0, 'recall': 95.0},
                  'de': {'f1': 85.0, 'precision': 84.0, 'recall': 86.0}}},
    'panx': {0: {'en': {'f1': 84.0, 'precision': 80.0, 'recall': 88.0},
                 'de': {'f1': 76.0, 'precision': 70.0, 'recall': 82.0}}},
    'xquad': {0: {'en': {'exact_match': 70.0, 'f1': 80.0}, 'de': {'exact_match': 50.0, 'f1': 64.0}}},
    'mlqa': {0: {'en': {'exact_match': 68.0, 'f1': 80.0}, 'de': {'exact_match': 44.0, 'f1': 60.0}}},
    'tydiqa': {0: {'en': {'exact_match': 60.0, 'f1': 72.0}, 'ru': {'exact_match': 40.0, 'f1': 56.0}}},
    'bucc2018': {0: {'de': {'f1': 60.0, 'precision': 60.0, 'recall': 60.0},
                     'fr': {'f1': 50.0, 'precision': 50.0, 'recall': 50.0}}},
    'tatoeba': {0: {'de': {'accuracy': 70.0}, 'fr': {'accuracy': 60.0}}},
}
# By hand: task score = language mean of the main metric; QA (mean EM + mean F1) / 2.
TASK_SCORES = {'xnli': 74.5, 'pawsx': 85.0, 'udpos': 90.0, 'panx': 80.0,
               'xquad': (60.0 + 72.0) / 2, 'mlqa': (56.0 + 70.0) / 2, 'tydiqa': (50.0 + 64.0) / 2,
               'bucc2018': 55.0, 'tatoeba': 65.0}


def _hand_made_runs(tasks):
  runs = {}
  for task in tasks:
    for seed, per_language in HAND_MADE[task].items():
      scores = {lang: s['accuracy'] if 'accuracy' in s else
                (s['exact_match'] + s['f1']) / 2 if 'exact_match' in s else s['f1'] for lang, s in per_language.items()}
      results = {'xtreme_any': {'task': task, 'per_language': per_language,
                                'final': {'average/metric': float(np.mean(list(scores.values())))}}}
      runs.setdefault(task, {})[seed] = xtreme_suite.run_scores(results, task, '/w')
  return runs


def test_xtreme_score_rule_on_a_hand_made_set_of_all_nine_tasks():
  table = xtreme_suite.xtreme_table(_hand_made_runs(HAND_MADE), {})
  for task, score in TASK_SCORES.items():
    assert table['tasks'][task]['score']['mean'] == pytest.approx(score), task
  xnli = table['tasks']['xnli']
  assert xnli['score']['per_seed'] == [75.0, 74.0] and xnli['score']['std'] == pytest.approx(np.std([75, 74], ddof=1))
  assert xnli['languages']['de']['mean'] == 68.0 and xnli['submission_seed'] == 1  # better English (82 > 80)
  assert table['tasks']['xquad']['languages']['de']['mean'] == 57.0  # (EM + F1) / 2 per language
  groups = {g: v['value'] for g, v in table['groups'].items()}
  assert groups == pytest.approx({'classification': (74.5 + 85.0) / 2, 'tagging': 85.0,
                                  'qa': (66.0 + 63.0 + 57.0) / 3, 'retrieval': 60.0})
  # evaluate.py's all_task: the mean of the nine task scores (here not the mean of the four group means).
  assert table['xtreme_score']['value'] == pytest.approx(np.mean(list(TASK_SCORES.values())))
  assert table['xtreme_score']['value'] != pytest.approx(np.mean(list(groups.values())))
  assert table['missing'] == {}
  assert f'**XTREME score** | | | **{np.mean(list(TASK_SCORES.values())):.1f}** |' in xtreme_suite.table_markdown(
      table, '/ckpt')

  # Without tydiqa: no QA group, no XTREME score; the complete groups are still reported.
  partial = xtreme_suite.xtreme_table(_hand_made_runs([t for t in HAND_MADE if t != 'tydiqa']),
                                      {'tydiqa': 'no records: ...'})
  assert partial['groups']['qa']['value'] is None and partial['groups']['qa']['missing'] == ['tydiqa']
  assert partial['groups']['retrieval']['value'] == pytest.approx(60.0)
  assert partial['xtreme_score']['value'] is None and 'tydiqa missing' in partial['xtreme_score']['how']
  assert partial['missing'] == {'tydiqa': 'no records: ...'}
  assert 'n/a (missing tydiqa)' in xtreme_suite.table_markdown(partial, '')


def test_a_run_whose_results_break_the_contract_is_refused_naming_the_file():
  good = {'task': 'xquad', 'per_language': {'en': {'exact_match': 70.0, 'f1': 80.0}}, 'final': {'average/metric': 75.0}}
  assert xtreme_suite.run_scores({'qa': good}, 'xquad', '/w')['score'] == 75.0
  with pytest.raises(errors.DataError, match=r'/w/results.json: 0 sections with task .xquad.'):
    xtreme_suite.run_scores({'qa': {**good, 'task': 'mlqa'}}, 'xquad', '/w')
  with pytest.raises(errors.DataError, match=r'final.average/metric = 80.0 but the task average .* is 75.0'):
    xtreme_suite.run_scores({'qa': {**good, 'final': {'average/metric': 80.0}}}, 'xquad', '/w')
  with pytest.raises(errors.DataError, match=r'per_language.en lacks exact_match'):
    xtreme_suite.run_scores({'qa': {**good, 'per_language': {'en': {'f1': 80.0}}}}, 'xquad', '/w')


def _part(config, name, field=None):
  """config.name (.field) as plain values; None where the task's config has none (retrieval: no dataset)."""
  value = config.get(name)
  if value is None:
    return None
  return value.get(field) if field else value.to_dict()


@pytest.mark.parametrize('variant', ['', 'tiny,runlocal', 'base,bert_paper'])
def test_every_config_field_has_a_meaning_and_each_run_is_the_tasks_config(variant):
  from core import config_help
  config = suite_configs.get_config(variant)
  missing = [name for name, _ in config_help.leaves(config)
             if config_help.doc_of(name, suite_configs.FIELD_DOCS) == config_help.UNDOCUMENTED]
  assert not missing, f'xtreme_suite.py:{variant}: give these a meaning beside their default: {missing}'
  for task in config.runs:
    assert xtreme.get_task(task).kind in xtreme_configs.KIND_CONFIGS
    own = xtreme_configs.get_config(','.join([task, *[w for w in variant.split(',') if w]]))
    run = config.runs[task]
    assert _part(run, 'model') == _part(own, 'model') and _part(run, 'dataset', 'task') == _part(own, 'dataset', 'task')
    assert run.num_train_steps == own.num_train_steps and _part(run, 'schedule') == _part(own, 'schedule')
  assert set(config.runs) == {n for n, t in xtreme.XTREME_TASKS.items() if t.kind in xtreme_configs.KIND_CONFIGS}
  config.init_from, config.data_dir = '/ckpt', '/records'
  assert config.runs.xnli.init_from == '/ckpt' and config.runs.pawsx.dataset.data_dir == '/records'


def test_prediction_writers_found_in_the_runs_evals_or_added_by_the_predict_variant_are_left_out_of_training():
  config = suite_configs.get_config('')
  assert list(xtreme_suite.writers(config, 'xnli')) == ['xtreme_predict']  # from the `predict` variant
  assert config.writers.xnli.xtreme_predict.weights == 'final'
  # A kind whose config always holds its writer (as configs/squad.py does) is handled the same way.
  config.runs.xnli.evals.xtreme_predict = config.writers.xnli.xtreme_predict.to_dict()
  del config.writers['xnli']
  assert list(xtreme_suite.writers(config, 'xnli')) == ['xtreme_predict']
  run = xtreme_suite.run_config(config, 'xnli', 3)
  assert list(run.evals) == ['xtreme'] and (run.rng_seed, run.dataset.seed, run.mode) == (3, 3, 'train')
