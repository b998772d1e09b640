"""XTREME zero-shot QA end to end: `prepare xtreme` records of generated XQuAD / MLQA / TyDiQA-like folders
(tests/bert/xtreme_data.py: en, de, ru, ar, zh; "<name> lives in <place>" paragraphs), the `bert_xtreme_qa` builder
(one split per language), the `xtreme_qa` evaluator (SQuAD decoding, per-language EM / F1 with the task's metric)
and `xtreme_qa_predict` (test-{lang}.json), through `core.app.train_and_evaluate` with configs/xtreme.py."""

import json
import os

import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors, registry
from projects.bert.configs import xtreme as xtreme_config
from projects.bert.datasets import xtreme_writer
from projects.bert.tasks import xtreme_metrics, xtreme_submission
from tests.bert import xtreme_data

# One tiny fine-tuning run (module fixture) and a few eval / predict runs of its parameters: about 1 CPU-minute.
pytestmark = pytest.mark.long(minutes=2)

LANGUAGES = ('en', 'de', 'ru', 'ar', 'zh')
N = 64  # paragraphs (one question each) per file
SEQ, STRIDE, QUERY = 48, 16, 16
STEPS = 60


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_qa')
  xtreme_dir = xtreme_data.write_xtreme_dir(str(root / 'download'), ['mlqa', 'xquad', 'tydiqa'], LANGUAGES,
                                            examples=N)
  vocab, vocab_size = xtreme_data.write_vocab(root / 'vocab.txt', xtreme_dir)
  out = str(root / 'records')
  for task in ('mlqa', 'xquad', 'tydiqa'):
    xtreme_writer.prepare_xtreme(task, xtreme_dir, vocab, out, SEQ, doc_stride=STRIDE, max_query_length=QUERY)
  return {'root': root, 'xtreme_dir': xtreme_dir, 'out': out, 'vocab_size': vocab_size}


def _config(data, variant='mlqa,tiny', **dataset):
  config = xtreme_config.get_config(variant)
  config.model.vocab_size = data['vocab_size']
  config.dataset.data_dir = data['out']
  config.dataset.max_seq_length, config.dataset.doc_stride, config.dataset.max_query_length = SEQ, STRIDE, QUERY
  config.dataset.shuffle_buffer = 4 * N
  config.dataset.update(dataset)
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_train_steps = STEPS
  config.evals.xtreme_qa.every = STEPS // 2
  config.log_every = 30
  config.schedule.base_lr = 1e-3
  config.checkpoint.async_save = False
  return config


def _json(data, *parts):
  with open(os.path.join(data['xtreme_dir'], *parts), encoding='utf-8') as f:
    return json.load(f)['data']


def _first_word_baseline(dataset):
  """{id: the first word of its paragraph} (a name: never the answer, a place)."""
  return {qa['id']: p['context'].split(' ')[0] for a in dataset for p in a['paragraphs'] for qa in p['qas']}


@pytest.fixture(scope='module')
def mlqa_run(data, tmp_path_factory):
  import core.train_step

  steps, calls = [], []
  make, mlqa_scores = core.train_step.make_predict_step, xtreme_metrics.mlqa_scores
  patch = pytest.MonkeyPatch()
  patch.setattr(core.train_step, 'make_predict_step', lambda *a, **k: steps.append(make(*a, **k)) or steps[-1])
  # Which data each language's MLQA scores are computed on: the generated files' titles name their language.
  patch.setattr(xtreme_metrics, 'mlqa_scores', lambda dataset, predictions, lang: calls.append(
      (dataset[0]['title'], lang)) or mlqa_scores(dataset, predictions, lang))
  config = _config(data, 'mlqa,tiny,predict')
  workdir = str(tmp_path_factory.mktemp('mlqa_run') / 'run')
  try:
    results = app.train_and_evaluate(config, workdir)
  finally:
    patch.undo()
  return {'workdir': workdir, 'results': results, 'steps': steps, 'calls': calls, 'config': config}


def test_fine_tuned_on_english_answers_every_mlqa_language_in_one_run(mlqa_run, data):
  results = mlqa_run['results']['xtreme_qa']
  present = ['en', 'de', 'ar', 'zh']  # MLQA's languages among the generated ones, in evaluate.py's order
  assert results['main_metric'] == 'average/f1' and results['split'] == 'dev'
  assert results['languages'] == present and results['missing'] == ['es', 'hi', 'vi']  # named, skipped
  final = results['final']
  for lang in present:
    assert final[f'{lang}/num_examples'] == N and 0.0 <= final[f'{lang}/exact_match'] <= final[f'{lang}/f1'] <= 100
    assert results['per_language'][lang] == {'exact_match': final[f'{lang}/exact_match'], 'f1': final[f'{lang}/f1']}
  for metric in ('exact_match', 'f1'):
    assert final[f'average/{metric}'] == pytest.approx(np.mean([final[f'{lang}/{metric}'] for lang in present]))
  assert final['average/metric'] == pytest.approx((final['average/exact_match'] + final['average/f1']) / 2)
  # Each language scored by MLQA's script with its own normalisation, on its own dev file, at both evaluations.
  dev_calls = [call for call in mlqa_run['calls'] if call[0].startswith('mlqa-dev')]
  assert dev_calls == [(f'mlqa-dev-{lang}', lang) for lang in present] * 2
  # Trained on English: English answers beat answering with the paragraph's first word by far.
  baseline = xtreme_metrics.mlqa_scores(_json(data, 'mlqa', 'MLQA_V1', 'dev', 'dev-context-en-question-en.json'),
                                        _first_word_baseline(_json(data, 'mlqa', 'MLQA_V1', 'dev',
                                                                   'dev-context-en-question-en.json')), 'en')
  print(f'MLQA-like dev after {STEPS} steps: {results["per_language"]}; first-word baseline (en) {baseline}')
  assert baseline['f1'] == 0.0 and final['en/f1'] >= 40.0, results['history']
  # One predict step for the evaluator and one for the writer; each compiled once for every language.
  assert len(mlqa_run['steps']) == 2 and all(s._cache_size() == 1 for s in mlqa_run['steps'])  # pylint: disable=protected-access
  assert [h['step'] for h in results['history']] == [STEPS // 2, STEPS]
  assert results['best_on_dev']['value'] == max(h['average/f1'] for h in results['history'])


def test_the_submission_files_hold_one_answer_per_test_question_scored_as_evaluate_py_does(mlqa_run, data):
  written = mlqa_run['results']['xtreme_qa_predict']
  workdir = mlqa_run['workdir']
  assert written['weights']['path'] == os.path.join(workdir, 'best')
  scores = written['test_scores']
  for lang in ('en', 'de', 'ar', 'zh'):
    path = os.path.join(workdir, 'submission', 'mlqa', f'test-{lang}.json')
    assert written['files'][lang] == path
    answers = xtreme_submission.read_submission_file('mlqa', path)
    gold = _json(data, 'mlqa', 'MLQA_V1', 'test', f'test-context-{lang}-question-{lang}.json')
    assert sorted(answers) == sorted(qa['id'] for p in gold[0]['paragraphs'] for qa in p['qas'])
    assert all(isinstance(a, str) for a in answers.values())
    # The reported test scores are MLQA's script on the written file, for that language.
    assert scores['per_language'][lang] == pytest.approx(xtreme_metrics.mlqa_scores(gold, answers, lang))
    assert scores['per_language'][lang] == pytest.approx(xtreme_metrics.score_language('mlqa', gold, answers, lang))
  test_calls = [call for call in mlqa_run['calls'] if call[0].startswith('mlqa-test')]
  assert test_calls[:4] == [(f'mlqa-test-{lang}', lang) for lang in ('en', 'de', 'ar', 'zh')]
  assert scores['average/metric'] == pytest.approx((scores['average/exact_match'] + scores['average/f1']) / 2)
  assert scores['unscored'] == []


def test_xquad_scores_its_test_languages_with_the_squad_script_and_writes_what_it_scored(mlqa_run, data, tmp_path):
  # The MLQA run's best parameters answer XQuAD (dev: SQuAD's English only; its languages are test only).
  present = ['en', 'de', 'ru', 'ar', 'zh']
  config = _config(data, 'xquad,tiny,predict')
  config.init_from = os.path.join(mlqa_run['workdir'], 'best')
  config.mode = 'eval'
  workdir = str(tmp_path / 'xquad')
  evaluated = app.train_and_evaluate(config, workdir)['xtreme_qa']
  assert evaluated['split'] == 'test' and evaluated['languages'] == present
  assert evaluated['missing'] == ['el', 'es', 'hi', 'th', 'tr', 'vi']
  metrics = evaluated['metrics']
  assert sorted(evaluated['per_language']) == sorted(present)
  assert metrics['average/f1'] == pytest.approx(np.mean([metrics[f'{lang}/f1'] for lang in present]))
  config.mode = 'predict'
  written = app.train_and_evaluate(config, workdir)['xtreme_qa_predict']
  for lang in present:
    answers = xtreme_submission.read_submission_file('xquad', written['files'][lang])
    gold = _json(data, 'xquad', f'xquad.{lang}.json')
    # Predict decodes the weights eval scored: the written file gives eval's scores (SQuAD v1.1 script).
    assert xtreme_metrics.squad_scores(gold, answers) == pytest.approx(evaluated['per_language'][lang])
    assert written['test_scores']['per_language'][lang] == pytest.approx(evaluated['per_language'][lang])


def test_the_builder_gives_one_split_per_language_and_checks_its_config(data):
  build = registry.DATASETS.get('bert_xtreme_qa')
  dataset = build(_config(data, languages='zh,de'))
  meta = dataset.meta_data
  assert meta.eval_splits == ('de', 'zh') and meta.test_splits == ('de', 'zh')  # task order, chosen languages
  assert meta.extra['num_questions'] == {'eval': {'de': N, 'zh': N}, 'test': {'de': N, 'zh': N}}
  assert meta.extra['prediction_writer'] == 'xtreme_qa_predict' and meta.extra['do_lower_case'] is False
  batches = list(dataset.valid_iter('zh'))
  assert {b['input_ids'].shape for b in batches} == {(32, SEQ)}
  assert sum(int((b['unique_ids'] >= 0).sum()) for b in batches) == meta.eval_sizes['zh']
  tydiqa = build(_config(data, 'tydiqa,tiny'))  # no dev split; test = TyDiQA-GoldP's dev set, 3 of 9 languages
  assert tydiqa.valid_iter is None and tydiqa.meta_data.test_splits == ('en', 'ar', 'ru')
  assert sorted(tydiqa.meta_data.extra['missing']['test']) == ['bn', 'fi', 'id', 'ko', 'sw', 'te']
  with pytest.raises(errors.DataError, match="no dev records for 'en'; it has de, zh"):
    dataset.valid_iter('en')
  with pytest.raises(errors.ConfigError, match='languages names es, which .* has no records'):
    build(_config(data, languages='de,es'))
  with pytest.raises(errors.ConfigError, match='XTREME sentence_pair task; bert_xtreme_qa reads .* xquad, mlqa'):
    build(_config(data, task='xnli'))
  with pytest.raises(errors.DataError, match=r'doc_stride=16 but config.dataset.doc_stride=128'):
    build(_config(data, doc_stride=128))
  config = _config(data, 'tydiqa,tiny')
  config.evals.xtreme_qa.split = 'dev'
  with pytest.raises(errors.ConfigError, match='tydiqa records have no dev split'):
    app.train_and_evaluate(config, str(data['root'] / 'tydiqa_dev'))


def test_a_hidden_test_set_is_written_but_not_scored(mlqa_run, data, tmp_path):
  xtreme_dir = xtreme_data.write_xtreme_dir(str(tmp_path / 'download'), ['xquad'], ('en', 'de'), examples=8,
                                            blank_test_answers=True)
  out = str(tmp_path / 'records')
  vocab = str(data['root'] / 'vocab.txt')
  xtreme_writer.prepare_xtreme('xquad', xtreme_dir, vocab, out, SEQ, doc_stride=STRIDE, max_query_length=QUERY)
  config = _config(data, 'xquad,tiny')  # no `,predict`: mode predict runs the writer the dataset names
  config.dataset.data_dir = out
  config.init_from = os.path.join(mlqa_run['workdir'], 'best')
  config.mode = 'eval'
  with pytest.raises(errors.ConfigError, match='test JSON of en, de has no gold answers'):
    app.train_and_evaluate(config, str(tmp_path / 'run'))
  config.mode = 'predict'
  written = app.train_and_evaluate(config, str(tmp_path / 'run'))['xtreme_qa_predict']
  assert sorted(written['files']) == ['de', 'en'] and 'test_scores' not in written
  assert len(xtreme_submission.read_submission_file('xquad', written['files']['de'])) == 8


@pytest.mark.parametrize('variant', ['xquad', 'mlqa,predict', 'tydiqa,runlocal,predict'])
def test_every_qa_config_field_has_a_meaning_and_follows_train_qa_sh(variant):
  from core import config_help

  config = xtreme_config.get_config(variant)
  missing = [name for name, _ in config_help.leaves(config)
             if config_help.doc_of(name, xtreme_config.FIELD_DOCS) == config_help.UNDOCUMENTED]
  assert not missing, f'xtreme.py:{variant}: give these a meaning beside their default: {missing}'
  assert config.dataset_name == 'bert_xtreme_qa' and config.model_name == 'bert_question_answering'
  if 'runlocal' not in variant:
    assert (config.batch_size, config.num_epochs, config.schedule.base_lr) == (32, 3.0, 3e-5)
    assert (config.dataset.max_seq_length, config.dataset.doc_stride, config.dataset.max_query_length) == (
        384, 128, 64)
  assert config.evals.xtreme_qa.save_best == variant.startswith('mlqa')
