"""XTREME zero-shot protocol for the tagging tasks (UD-POS, PAN-X) end to end: `prepare xtreme` records of generated
folders (tests/bert/xtreme_data.py: en, de, ru, ar, zh; records short enough that long sentences are split into
sub-sentences), the `bert_xtreme` builder, the `bert_token_classification` head, the `xtreme` evaluator (seqeval F1
over whole sentences per language, the language average), `xtreme_predict` (tag files) and configs/xtreme.py,
through `core.app.train_and_evaluate`."""

import os
import shutil

import jax
import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors, registry
from projects.bert.configs import xtreme as xtreme_config
from projects.bert.datasets import xtreme_reader, xtreme_tags, xtreme_writer
from projects.bert.evaluators import xtreme as xtreme_evaluator
from projects.bert.tasks import xtreme, xtreme_metrics, xtreme_submission
from tests.bert import xtreme_data

LANGUAGES = ('en', 'de', 'ru', 'ar', 'zh')
N = 48  # sentences per file: train (English) and each language's dev / test
SEQ_LEN = 10  # 8 WordPieces a record: sentences of up to 12 words (Chinese: 2 pieces a word) are split
NO_DEV = 'kk'  # a UD-POS language with test data only (UDPOS_WITHOUT_DEV)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_tagging')
  xtreme_dir = xtreme_data.write_xtreme_dir(str(root / 'download'), ['udpos', 'panx'], LANGUAGES, examples=N)
  # A test-only UD-POS language, as xtreme's download has for kk, th, tl, yo (German words under the kk name).
  shutil.copy(os.path.join(xtreme_dir, 'udpos', 'test-de.tsv'), os.path.join(xtreme_dir, 'udpos', 'test-kk.tsv'))
  vocab, vocab_size = xtreme_data.write_vocab(root / 'vocab.txt', xtreme_dir)
  out = str(root / 'records')
  metas = {t: xtreme_writer.prepare_xtreme(t, xtreme_dir, vocab, out, SEQ_LEN)[t] for t in ('udpos', 'panx')}
  return {'root': root, 'out': out, 'vocab_size': vocab_size, 'xtreme_dir': xtreme_dir, 'metas': metas}


def _config(data, task, **dataset):
  config = xtreme_config.get_config(f'{task},tiny')
  config.model.vocab_size = data['vocab_size']
  config.dataset.data_dir = data['out']
  config.dataset.max_seq_length = SEQ_LEN
  config.dataset.shuffle_buffer = 4 * N
  config.dataset.update(dataset)
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_train_steps = 60
  config.evals.xtreme.every = 30
  config.log_every = 30
  config.schedule.base_lr = 2e-3
  config.checkpoint.async_save = False
  return config


def _file_tags(data, task, split, lang):
  """The tags (dev) or tokens (test) of each sentence of a generated file."""
  task_ = xtreme.get_task(task)
  path = os.path.join(data['xtreme_dir'], task_.files(split, lang)['path'])
  sentences = xtreme_reader.read_tagged_sentences(path, task_.labels, labelled=split != xtreme.TEST)
  return [list(s.labels) if split != xtreme.TEST else list(s.tokens) for s in sentences]


def _majority_f1(gold):
  """seqeval F1 of tagging every word with the most frequent tag of `gold` (the majority baseline)."""
  tags, counts = np.unique([t for s in gold for t in s], return_counts=True)
  return xtreme_metrics.seqeval_scores(gold, [[tags[np.argmax(counts)]] * len(s) for s in gold])['f1']


def test_sub_sentences_join_back_into_whole_sentences_in_order():
  # Sentence 0 is split in two records (its 5 words: 3 in sub-sentence 0, 2 in 1); sentence 1 is one record.
  # -1 marks [CLS], [SEP], padding and non-first WordPieces. Rows come shuffled.
  rows = {  # (sentence_id, sub_sentence_id): label_ids [8]
      (0, 0): [-1, 1, -1, 2, 3, -1, -1, -1],
      (0, 1): [-1, 4, 5, -1, -1, -1, -1, -1],
      (1, 0): [-1, 6, -1, -1, 0, -1, -1, -1],
  }
  order = [(0, 1), (1, 0), (0, 0)]
  labels = np.array([rows[k] for k in order])
  predicted = np.where(labels >= 0, labels + 10, 99)  # a prediction per position; only first pieces are read
  gold, tags = xtreme_tags.sentence_tags(labels, predicted, np.array([k[0] for k in order]),
                                         np.array([k[1] for k in order]), 2, 'rows')
  assert gold == [[1, 2, 3, 4, 5], [6, 0]]
  assert tags == [[11, 12, 13, 14, 15], [16, 10]]
  with pytest.raises(errors.DataError, match=r'rows: sentence 0 has sub-sentence ids \[0, 2\]'):
    xtreme_tags.sentence_tags(labels, predicted, np.array([0, 1, 0]), np.array([2, 0, 0]), 2, 'rows')
  with pytest.raises(errors.DataError, match=r'rows: the records hold 2 sentences .* says 3; missing sentence ids '
                                             r'\[2\]'):
    xtreme_tags.sentence_tags(labels, predicted, np.array([0, 1, 0]), np.array([1, 0, 0]), 3, 'rows')


def test_token_classification_loss_ignores_unscored_positions_and_padding_rows():
  model_cls = registry.MODELS.get('bert_token_classification')
  config = xtreme_config.get_config('panx,tiny')
  config.model.update(num_labels=7, vocab_size=64)
  model = model_cls(config, None)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  labels = np.array([[-1, 2, -1, 6, -1], [-1, 0, 1, -1, -1], [-1, 3, 3, 3, -1]])
  batch = {'label_ids': labels, 'batch_mask': np.array([1.0, 1.0, 0.0], np.float32)}  # row 2: padding
  metrics = jax.device_get(model.get_metrics_fn()(logits, batch))
  scored = [(0, 1), (0, 3), (1, 1), (1, 2)]
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = np.mean([-log_probs[i, j, labels[i, j]] for i, j in scored])
  assert float(metrics['loss'][1]) == 4.0
  assert float(metrics['loss'][0]) / 4 == pytest.approx(expected, rel=1e-5)
  assert float(model.loss_function(logits, batch)) == pytest.approx(expected, rel=1e-5)
  hits = sum(int(np.argmax(logits[i, j]) == labels[i, j]) for i, j in scored)
  assert float(metrics['token_accuracy'][0]) == hits


def test_the_builder_reads_tagging_records_and_the_join_gives_each_file_sentence(data):
  meta_file = data['metas']['panx']
  assert sum(meta_file['eval_data_sizes'].values()) > sum(meta_file['eval_num_examples'].values())  # split ones
  dataset = registry.DATASETS.get('bert_xtreme')(_config(data, 'panx'))
  meta = dataset.meta_data
  assert meta.eval_splits == ('ar', 'en', 'de', 'ru', 'zh') == meta.test_splits  # evaluate.py's PAN-X order
  assert meta.extra['num_sentences']['eval'] == {lang: N for lang in LANGUAGES}
  assert meta.extra['kind'] == xtreme.TAGGING and meta.num_labels == len(xtreme.PANX_LABELS)
  batches = list(dataset.valid_iter('zh'))
  assert {b['label_ids'].shape for b in batches} == {(32, SEQ_LEN)}
  rows = {k: np.concatenate([b[k][b['batch_mask'] > 0] for b in batches])
          for k in ('label_ids', 'sentence_id', 'sub_sentence_id')}
  assert len(rows['label_ids']) == meta.eval_sizes['zh'] > N and rows['sub_sentence_id'].max() >= 1
  gold, _ = xtreme_tags.sentence_tags(rows['label_ids'], rows['label_ids'], rows['sentence_id'],
                                      rows['sub_sentence_id'], N, 'zh')
  assert [[xtreme.PANX_LABELS[i] for i in s] for s in gold] == _file_tags(data, 'panx', xtreme.DEV, 'zh')
  # A language without dev data: read for test only, also when chosen by name.
  udpos = registry.DATASETS.get('bert_xtreme')(_config(data, 'udpos', languages=f'en,{NO_DEV}')).meta_data
  assert udpos.eval_splits == ('en',) and udpos.test_splits == ('en', NO_DEV)
  assert udpos.extra['without_dev'] == list(xtreme.UDPOS_WITHOUT_DEV)


def test_panx_fine_tuned_on_english_scores_every_language_and_writes_tag_files(data, tmp_path, monkeypatch):
  steps = []
  make = xtreme_evaluator.make_eval_step
  monkeypatch.setattr(xtreme_evaluator, 'make_eval_step', lambda *a, **k: steps.append(make(*a, **k)) or steps[-1])
  config = _config(data, 'panx')
  config.evals.xtreme_predict = xtreme_config.predict_eval()
  workdir = str(tmp_path / 'run')
  everything = app.train_and_evaluate(config, workdir)
  results = everything['xtreme']
  assert results['main_metric'] == 'average/f1' and results['without_dev'] == []
  final, per_language = results['final'], results['per_language']
  assert sorted(per_language) == sorted(LANGUAGES)  # one entry per language
  for lang in LANGUAGES:
    assert final[f'{lang}/num_examples'] == N  # sentences, whole again
    assert {'f1', 'precision', 'recall', 'loss', 'token_accuracy'} <= set(per_language[lang])
  assert final['average/f1'] == pytest.approx(np.mean([final[f'{lang}/f1'] for lang in LANGUAGES]))
  assert final['average/metric'] == final['average/f1']  # the task score (evaluate.py's avg_metric)
  # Trained on English only: its entity F1 is far above the majority tag's (all 'O': F1 0).
  gold_en = _file_tags(data, 'panx', xtreme.DEV, 'en')
  assert _majority_f1(gold_en) == 0.0
  assert final['en/f1'] > 50, final
  # Two evaluations of five languages each, all [32, S] batches: the one eval step compiled once.
  assert len(steps) == 1 and steps[0]._cache_size() == 1  # pylint: disable=protected-access

  # The submission folder: per test language one tag per word of its test file, sentence by sentence.
  written = everything['xtreme_predict']
  for lang in LANGUAGES:
    path = os.path.join(workdir, 'submission', 'panx', f'test-{lang}.tsv')
    assert written['files'][lang] == path
    tags = xtreme_submission.read_submission_file('panx', path)
    assert [len(s) for s in tags] == [len(s) for s in _file_tags(data, 'panx', xtreme.TEST, lang)]
    assert set(t for s in tags for t in s) <= set(xtreme.PANX_LABELS)


def test_udpos_skips_a_language_without_dev_data_for_dev_and_predicts_it(data, tmp_path):
  # No training (the PAN-X run shows learning): evaluate and predict once with the initial weights.
  config = _config(data, 'udpos')
  config.num_train_steps, config.num_epochs = 0, None
  config.evals.xtreme_predict = xtreme_config.predict_eval('final')
  workdir = str(tmp_path / 'run')
  everything = app.train_and_evaluate(config, workdir)
  results = everything['xtreme']
  assert results['without_dev'] == [NO_DEV]  # named in the summary
  assert sorted(results['per_language']) == sorted(LANGUAGES) and NO_DEV not in results['languages']
  assert all(not k.startswith(f'{NO_DEV}/') for k in results['final'])
  assert all(results['final'][f'{lang}/num_examples'] == N for lang in LANGUAGES)
  files = everything['xtreme_predict']['files']
  assert sorted(files) == sorted((*LANGUAGES, NO_DEV))
  tags = xtreme_submission.read_submission_file('udpos', files[NO_DEV])
  assert [len(s) for s in tags] == [len(s) for s in _file_tags(data, 'udpos', xtreme.TEST, NO_DEV)]
  assert set(t for s in tags for t in s) <= set(xtreme.UPOS_LABELS)


@pytest.mark.parametrize('variant', ['udpos', 'panx,small,bert_paper,predict', 'udpos,runlocal'])
def test_tagging_configs_follow_xtremes_scripts_and_document_every_field(variant):
  from core import config_help

  config = xtreme_config.get_config(variant)
  missing = [name for name, _ in config_help.leaves(config)
             if config_help.doc_of(name, xtreme_config.FIELD_DOCS) == config_help.UNDOCUMENTED]
  assert not missing, f'xtreme.py:{variant}: give these a meaning beside their default: {missing}'
  assert config.model_name == 'bert_token_classification' and config.dataset_name == 'bert_xtreme'
  if 'runlocal' not in variant:
    # scripts/train_{udpos,panx}.sh: batch 8 x 4 accumulation steps, 10 epochs, lr 2e-5, max length 128.
    assert (config.batch_size, config.num_epochs, config.schedule.base_lr) == (32, 10.0, 2e-5)
    assert config.dataset.max_seq_length == 128 and config.evals.xtreme.save_best
    assert config.evals.xtreme.every == {'udpos': 500, 'panx': 1000}[config.dataset.task]
    assert ('xtreme_predict' in config.evals) == ('predict' in variant)
