"""Readers of the XTREME download layout, on folders written by tests/bert/xtreme_data.py."""

import json
import logging
import os

import pytest

from core.errors import ConfigError, DataError, MissingFileError
from projects.bert.datasets import xtreme_reader as r
from projects.bert.tasks import xtreme
from projects.bert.tasks import xtreme_metrics as m
from tests.bert import xtreme_data

N = 6


@pytest.fixture(scope='module')
def xtreme_dir(tmp_path_factory):
  return xtreme_data.write_xtreme_dir(str(tmp_path_factory.mktemp('xtreme')), examples=N)


def test_every_task_and_split_reads_for_the_generated_languages(xtreme_dir):
  for name, task in xtreme.XTREME_TASKS.items():
    expected = [lang for lang in xtreme_data.LANGUAGES if lang in task.languages]
    for split in task.splits:
      langs = expected if task.split_languages(split) == task.languages else ['en']
      result = r.read_split(xtreme_dir, name, split, langs)
      assert sorted(result.examples) == sorted(langs), (name, split)
      assert result.missing == () and result.without_split == ()


def test_sentence_pairs_are_read_as_upstream_reads_them(xtreme_dir):
  train = r.read_split(xtreme_dir, 'xnli', 'train').examples['en']
  assert len(train) == N
  # csv.writer quoted the field; Model Garden's and xtreme's readers (quotechar=None) keep the quotes.
  assert train[0].text_a == '"He said ""yes"""'
  assert {p.label for p in train} == set(xtreme.XNLI_LABELS)
  assert not any(p.text_b.endswith('\r') or (p.label or '').endswith('\r') for p in train)
  test = r.read_split(xtreme_dir, 'pawsx', 'test', ['zh']).examples['zh']
  assert len(test) == N and all(p.label is None for p in test)
  assert ' ' not in test[0].text_a  # Chinese has no spaces


def test_tagged_sentences_and_unlabelled_test_files(xtreme_dir):
  dev = r.read_split(xtreme_dir, 'panx', 'dev', ['ar', 'zh']).examples
  assert len(dev['ar']) == N and [s.sentence_id for s in dev['ar']] == list(range(N))
  for sentence in dev['zh']:
    assert len(sentence.tokens) == len(sentence.labels)
    assert set(sentence.labels) <= set(xtreme.PANX_LABELS)
  assert dev['zh'][0].line == 1 and dev['zh'][1].line == len(dev['zh'][0].tokens) + 2
  test = r.read_split(xtreme_dir, 'udpos', 'test', ['ru']).examples['ru']
  assert len(test) == N and all(s.labels is None for s in test)


def test_readers_equal_model_garden(xtreme_dir):
  tagging_data_lib = pytest.importorskip('official.nlp.data.tagging_data_lib')
  from official.nlp.data import classifier_data_lib

  for name, processor in [('xnli', classifier_data_lib.XtremeXnliProcessor()),
                          ('pawsx', classifier_data_lib.XtremePawsxProcessor())]:
    folder = os.path.join(xtreme_dir, name)
    for theirs, split in [(processor.get_train_examples(folder), 'train'), (processor.get_dev_examples(folder), 'dev')]:
      ours = r.read_split(xtreme_dir, name, split, ['en']).examples['en']
      assert [(e.text_a, e.text_b, e.label) for e in theirs] == [(p.text_a, p.text_b, p.label) for p in ours]
  for name, split, lang in [('panx', 'dev', 'zh'), ('udpos', 'train', 'en'), ('panx', 'test', 'ar')]:
    task = xtreme.get_task(name)
    path = os.path.join(xtreme_dir, task.files(split, lang)['path'])
    theirs = tagging_data_lib._read_one_file(path, list(task.labels))  # pylint: disable=protected-access
    ours = r.read_split(xtreme_dir, name, split, [lang]).examples[lang]
    assert [e.words for e in theirs] == [list(s.tokens) for s in ours]
    assert [e.sentence_id for e in theirs] == [s.sentence_id for s in ours]
    if split != 'test':
      assert [e.label_ids for e in theirs] == [[task.labels.index(t) for t in s.labels] for s in ours]


def test_qa_and_retrieval(xtreme_dir):
  data = r.read_split(xtreme_dir, 'mlqa', 'test', ['zh']).examples['zh']
  answers = {qa['id']: qa['answers'][0]['text'] for a in data for p in a['paragraphs'] for qa in p['qas']}
  assert len(answers) == N
  assert m.mlqa_scores(data, answers, 'zh') == {'exact_match': 100.0, 'f1': 100.0}

  bucc = r.read_split(xtreme_dir, 'bucc', 'dev', ['ru']).examples['ru']
  assert len(bucc.source) == len(bucc.target) == N + 1 and len(bucc.gold) == N
  assert {s for s, _ in bucc.gold} <= set(bucc.source_ids) and {t for _, t in bucc.gold} <= set(bucc.target_ids)
  assert r.read_split(xtreme_dir, 'bucc', 'test', ['ru']).examples['ru'].gold is None
  # Perfect candidate scores: the dev threshold keeps exactly the gold pairs.
  scores = {(s, t): (1.0 if (s, t) in set(bucc.gold) else 0.1) for s in bucc.source_ids for t in bucc.target_ids}
  assert m.bucc_f1(bucc.gold, m.bucc_extract(scores, m.bucc_threshold(scores, bucc.gold)))['f1'] == 100.0

  tatoeba = r.read_split(xtreme_dir, 'tatoeba', 'test', ['ar']).examples['ar']
  assert len(tatoeba.source) == len(tatoeba.target) == N and list(tatoeba.target) == sorted(tatoeba.target)


def test_missing_languages_are_named_and_skipped(tmp_path, caplog):
  root = xtreme_data.write_xtreme_dir(str(tmp_path), ['panx', 'udpos'], examples=2)
  os.remove(os.path.join(root, 'panx', 'test-ru.tsv'))
  with caplog.at_level(logging.WARNING):
    result = r.read_split(root, 'panx', 'test')
  assert result.missing[:3] == ('he', 'vi', 'id') and 'ru' in result.missing
  assert len(result.missing) == 40 - 4 and sorted(result.examples) == ['ar', 'de', 'en', 'zh']
  assert 'no data for he, vi, id' in caplog.text and 'panx/test-he.tsv' in caplog.text
  # UD-POS has no Thai dev set in XTREME: skipped without looking for a file.
  result = r.read_split(root, 'udpos', 'dev', ['en', 'th'])
  assert result.without_split == ('th',) and result.missing == () and list(result.examples) == ['en']
  with pytest.raises(MissingFileError, match='No panx test data .* none of .*panx/test-ru.tsv exists'):
    r.read_split(root, 'panx', 'test', ['ru'])
  with pytest.raises(ConfigError, match='xx: not languages of XTREME task panx'):
    r.read_split(root, 'panx', 'test', ['xx'])
  with pytest.raises(ConfigError, match="no 'train' split"):
    r.read_split(root, 'tatoeba', 'train')


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text)


@pytest.mark.parametrize('task, split, relative, text, message', [
    ('xnli', 'dev', 'xnli/dev-en.tsv', 'a\tb\tneutral\r\na\tb\r\n', r'dev-en.tsv, line 2: 2 tab-separated fields'),
    ('xnli', 'dev', 'xnli/dev-en.tsv', 'a\tb\tmaybe\n', r"line 1, field label: 'maybe' is not one of contradiction"),
    ('pawsx', 'test', 'pawsx/test-en.tsv', 'a\n', r'line 1: 1 tab-separated fields, expected 2 or 3'),
    ('panx', 'dev', 'panx/dev-en.tsv', 'Anna\tB-PER\n\nx\tO\textra\n', r'dev-en.tsv, line 3: 3 tab-separated'),
    ('panx', 'dev', 'panx/dev-en.tsv', 'Anna\tB-PERSON\n', r"line 1, field label: 'B-PERSON' is not one of O"),
    ('panx', 'test', 'panx/test-en.tsv', 'Anna\tB-PER\nsees\n', r'sentence from line 1: some tokens have labels'),
    ('udpos', 'dev', 'udpos/dev-en.tsv', 'cat\n', r'line 1: 1 tab-separated fields, expected 2 \(token, label\)'),
    ('xquad', 'test', 'xquad/xquad.en.json', '{"data": [{"paragraphs": [{"context": "c"}]}]}',
     r'xquad.en.json, data\[0\].paragraphs\[0\].qas: expected a list'),
    ('xquad', 'test', 'xquad/xquad.en.json', '{"data": [', r'xquad.en.json, line 1: not valid JSON'),
    ('bucc', 'test', 'bucc2018/de-en.test.de', 'de-1\tein Satz\nsatz ohne id\n', r'line 2: 1 tab-separated fields'),
    ('bucc', 'test', 'bucc2018/de-en.test.de', 'de_1\tein Satz\n', r"line 1, field id: 'de_1' is not a BUCC id"),
    ('bucc', 'dev', 'bucc2018/de-en.dev.gold', 'de-1 en-1\n', r'dev.gold, line 1: expected two BUCC ids'),
    ('tatoeba', 'test', 'tatoeba/de-en.en', 'one\n', r'de-en.de has 2 lines but .*de-en.en has 1'),
])
def test_malformed_files_raise_a_data_error_naming_file_line_and_field(tmp_path, task, split, relative, text,
                                                                        message):
  root = str(tmp_path)
  _write(os.path.join(root, 'bucc2018', 'de-en.test.en'), 'en-1\ta sentence\n')
  _write(os.path.join(root, 'bucc2018', 'de-en.test.de'), 'de-1\tein Satz\n')
  for suffix in ('de', 'en'):
    _write(os.path.join(root, 'bucc2018', f'de-en.dev.{suffix}'), f'{suffix}-1\tx\n')
  _write(os.path.join(root, 'bucc2018', 'de-en.dev.gold'), 'de-1\ten-1\n')
  _write(os.path.join(root, 'tatoeba', 'de-en.de'), 'eins\nzwei\n')
  _write(os.path.join(root, 'tatoeba', 'de-en.en'), 'one\ntwo\n')
  _write(os.path.join(root, relative), text)
  lang = 'de' if task in ('bucc', 'tatoeba') else 'en'
  with pytest.raises(DataError, match=message):
    r.read_split(root, task, split, [lang])


def test_squad_reader_accepts_blanked_test_answers(tmp_path):
  root = xtreme_data.write_xtreme_dir(str(tmp_path), ['tydiqa'], ['en', 'ar'], examples=2, blank_test_answers=True)
  data = r.read_split(root, 'tydiqa', 'test').examples
  assert sorted(data) == ['ar', 'en']
  with open(os.path.join(root, 'tydiqa', 'tydiqa-goldp-v1.1-dev', 'tydiqa.goldp.ar.dev.json'), encoding='utf-8') as f:
    assert json.load(f)['data'] == data['ar']
  assert data['ar'][0]['paragraphs'][0]['qas'][0]['answers'] == [{'answer_start': 0, 'text': ''}]
