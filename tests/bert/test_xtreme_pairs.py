"""XTREME zero-shot protocol for the sentence-pair tasks end to end: `prepare xtreme` records of a generated
XNLI-like folder (tests/bert/xtreme_data.py: en, de, ru, ar, zh), the `bert_xtreme` builder (one eval split per
language), the `xtreme` evaluator (per-language accuracy, the language average) and configs/xtreme.py, through
`core.app.train_and_evaluate`."""

import os

import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors, evaluation, registry
from core.dataset import SPLIT_POSITION
from projects.bert.configs import xtreme as xtreme_config
from projects.bert.datasets import length_buckets, xtreme_writer
from projects.bert.evaluators import xtreme as xtreme_evaluator
from projects.bert.tasks import xtreme, xtreme_metrics, xtreme_submission
from tests.bert import xtreme_data

LANGUAGES = ('en', 'de', 'ru', 'ar', 'zh')
N = 96  # examples per file: train (English) and each language's dev / test
SEQ_LEN = 32
CHANCE = 100.0 / 3


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_pairs')
  xtreme_dir = xtreme_data.write_xtreme_dir(str(root / 'download'), ['xnli'], LANGUAGES, examples=N)
  vocab, vocab_size = xtreme_data.write_vocab(root / 'vocab.txt', xtreme_dir)
  out = str(root / 'records')
  xtreme_writer.prepare_xtreme('xnli', xtreme_dir, vocab, out, SEQ_LEN)
  return {'root': root, 'out': out, 'vocab_size': vocab_size}


def _config(data, **dataset):
  config = xtreme_config.get_config('xnli,tiny')
  config.model.vocab_size = data['vocab_size']
  config.dataset.data_dir = data['out']
  config.dataset.max_seq_length = SEQ_LEN
  config.dataset.shuffle_buffer = N
  config.dataset.update(dataset)
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_train_steps = 60
  config.evals.xtreme.every = 30
  config.log_every = 30
  config.schedule.base_lr = 1e-3
  config.checkpoint.async_save = False
  return config


def test_fine_tuned_on_english_scores_every_language_in_one_run_above_chance(data, tmp_path, monkeypatch):
  steps = []
  make = xtreme_evaluator.make_eval_step
  monkeypatch.setattr(xtreme_evaluator, 'make_eval_step', lambda *a, **k: steps.append(make(*a, **k)) or steps[-1])
  config = _config(data)
  config.evals.xtreme_predict = xtreme_config.predict_eval()
  workdir = str(tmp_path / 'run')
  everything = app.train_and_evaluate(config, workdir)
  results = everything['xtreme']
  assert results['main_metric'] == 'average/accuracy'
  assert results['languages'] == ['ar', 'de', 'en', 'ru', 'zh']  # evaluate.py's order of the XNLI languages
  final = results['final']
  per_language = results['per_language']
  assert sorted(per_language) == sorted(LANGUAGES)  # one entry per language
  for lang in LANGUAGES:
    assert final[f'{lang}/num_examples'] == N and 0.0 <= final[f'{lang}/accuracy'] <= 100.0
    assert per_language[lang]['accuracy'] == final[f'{lang}/accuracy'] and 'loss' in per_language[lang]
  assert final['average/accuracy'] == pytest.approx(np.mean([final[f'{lang}/accuracy'] for lang in LANGUAGES]))
  assert final['average/metric'] == final['average/accuracy']  # the task score (evaluate.py's avg_metric)
  # Trained on English only: English well above chance, and the rule carries to at least one other language.
  assert final['en/accuracy'] > CHANCE + 25, final
  assert max(final[f'{lang}/accuracy'] for lang in LANGUAGES if lang != 'en') > CHANCE + 10, final
  # Two evaluations of five languages each, batches grouped by length into [32, 16] and [32, 32]: the one eval step
  # compiled once per bucket length.
  assert len(steps) == 1 and steps[0]._cache_size() <= len(length_buckets.bucket_lengths(SEQ_LEN))  # pylint: disable=protected-access
  assert [h['step'] for h in results['history']] == [30, 60]

  # The submission folder: one file per test language, one label a line in test-file order (the generated test
  # files hold label i % 3 on line i, unwritten; the English predictions score above chance against it).
  written = everything['xtreme_predict']
  assert written['weights']['path'] == os.path.join(workdir, 'best')
  submission = os.path.join(workdir, 'submission')
  gold = [xtreme.XNLI_LABELS[i % 3] for i in range(N)]
  texts = {}
  for lang in LANGUAGES:
    path = os.path.join(submission, 'xnli', f'test-{lang}.tsv')
    assert written['files'][lang] == path
    labels = xtreme_submission.read_submission_file('xnli', path)
    assert len(labels) == N and set(labels) <= set(xtreme.XNLI_LABELS)
    texts[lang] = open(path, encoding='utf-8').read()
  assert xtreme_metrics.accuracy(gold, xtreme_submission.read_submission_file(
      'xnli', written['files']['en']))['accuracy'] > CHANCE + 20
  # Eval mode scores the saved best parameters: the best evaluation again, language by language.
  config.mode = 'eval'
  evaluated = app.train_and_evaluate(config, workdir)['xtreme']
  best = results['best_on_dev']['metrics']
  assert evaluated['weights']['source'] == 'best' and sorted(evaluated['per_language']) == sorted(LANGUAGES)
  for lang in LANGUAGES:
    assert evaluated['metrics'][f'{lang}/accuracy'] == pytest.approx(best[f'{lang}/accuracy'])
  # Predict mode (the run's config, the best parameters) writes the same files again.
  for lang in LANGUAGES:
    os.remove(written['files'][lang])
  config.mode = 'predict'
  again = app.train_and_evaluate(config, workdir)['xtreme_predict']
  assert {lang: open(again['files'][lang], encoding='utf-8').read() for lang in LANGUAGES} == texts


def test_the_builder_gives_one_split_per_language_and_checks_its_config(data):
  build = registry.DATASETS.get('bert_xtreme')
  config = _config(data, languages='zh,de')
  dataset = build(config)
  meta = dataset.meta_data
  assert meta.eval_splits == ('de', 'zh') and meta.test_splits == ('de', 'zh')  # task order, chosen languages
  assert meta.eval_sizes == {'de': N, 'zh': N} and meta.num_train_examples == N and meta.num_labels == 3
  assert meta.extra['benchmark'] == 'xtreme' and meta.extra['do_lower_case'] is False
  assert meta.extra['label_list'] == list(xtreme.XNLI_LABELS)
  batches = list(dataset.valid_iter('zh'))  # grouped by length (eval_length_buckets), each with its positions
  assert {b['input_ids'].shape[1] for b in batches} <= set(length_buckets.bucket_lengths(SEQ_LEN)) and len(batches) == 3
  rows = evaluation.in_split_order({k: np.concatenate([b[k][b['batch_mask'] > 0] for b in batches])
                                    for k in ('example_id', SPLIT_POSITION)})
  assert rows['example_id'].tolist() == list(range(N))
  padded = list(build(_config(data, languages='zh', eval_length_buckets=False)).valid_iter('zh'))
  assert {b['input_ids'].shape for b in padded} == {(32, SEQ_LEN)} and len(padded) == 3
  assert [int(i) for b in padded for i in b['example_id'] if i >= 0] == list(range(N))
  assert len(list(dataset.valid_iter('train', num_examples=40))) == 2
  with pytest.raises(errors.DataError, match="no dev records for 'en'; it has de, zh"):
    dataset.valid_iter('en')
  with pytest.raises(errors.ConfigError, match='languages names fr, which .* has no records'):
    build(_config(data, languages='de,fr'))
  with pytest.raises(errors.ConfigError, match='XTREME span_qa task; bert_xtreme reads .* xnli, pawsx, udpos, panx'):
    build(_config(data, task='xquad'))
  with pytest.raises(errors.DataError, match=r'max_seq_length=32 but config.dataset.max_seq_length=64'):
    build(_config(data, max_seq_length=64))
  with pytest.raises(errors.MissingFileError, match=r'(?s)pawsx_meta_data.*prepare xtreme --task=pawsx'):
    build(_config(data, task='pawsx'))
  os.rename(os.path.join(data['out'], 'xnli_eval_ar.tf_record'), os.path.join(data['out'], 'moved'))
  try:
    with pytest.raises(errors.MissingFileError, match=r"(?s)dev \(ar\) records .*xnli_eval_ar\.tf_record.*listed in"):
      build(_config(data))
  finally:
    os.rename(os.path.join(data['out'], 'moved'), os.path.join(data['out'], 'xnli_eval_ar.tf_record'))


@pytest.mark.parametrize('variant', ['xnli', 'pawsx,small,bert_paper', 'xnli,runlocal,predict'])
def test_every_config_field_has_a_meaning_and_bert_help_lists_the_config(variant):
  from core import config_help
  from projects.bert import cli

  config = xtreme_config.get_config(variant)
  missing = [name for name, _ in config_help.leaves(config)
             if config_help.doc_of(name, xtreme_config.FIELD_DOCS) == config_help.UNDOCUMENTED]
  assert not missing, f'xtreme.py:{variant}: give these a meaning beside their default: {missing}'
  assert 'xtreme.py:TASK[,SIZE][,RECIPE][,predict]' in cli.__doc__


def test_config_variants():
  config = xtreme_config.get_config('PAWS-X')
  assert config.dataset_name == 'bert_xtreme' and config.dataset.task == 'pawsx'
  assert (config.batch_size, config.num_epochs, config.schedule.base_lr) == (32, 5.0, 2e-5)
  assert config.model.hidden_size is None  # the architecture comes with init_from (mBERT)
  assert config.evals.xtreme.save_best and config.model_name == 'bert_classification'
  small = xtreme_config.get_config('xnli,runlocal')
  assert small.model.hidden_size is not None and small.num_train_steps == 10 and small.dataset.max_seq_length == 0
  # Every XTREME task has its kind's config: QA on its own builder, retrieval with no training.
  assert xtreme_config.get_config('xquad').dataset_name == 'bert_xtreme_qa'
  assert xtreme_config.get_config('tatoeba').num_train_steps == 0
  with pytest.raises(errors.ConfigError, match='unknown TASK'):
    xtreme_config.get_config('xcopa')
