"""The XTREME submission folder: files written as evaluate.py reads them, and a submission's scores."""

import json
import os

import pytest

from core.errors import DataError, MissingFileError
from projects.bert.tasks import xtreme
from projects.bert.tasks import xtreme_submission as s


def _gold(task, lang):
  """Two test examples' gold predictions of `task` in `lang`."""
  if task.kind == xtreme.SENTENCE_PAIR:
    return [task.labels[0], task.labels[-1]]
  if task.kind == xtreme.TAGGING:
    return [[task.labels[1], task.labels[0]], [task.labels[-1]]]
  if task.kind == xtreme.SPAN_QA:
    return {f'{lang}-q1': 'Ann Ward', f'{lang}-q2': '1871'}
  if task.kind == xtreme.BITEXT_MINING:
    return [(f'{lang}-000000001', 'en-000000007'), (f'{lang}-000000002', 'en-000000003')]
  return [3, 0]


def _squad_labels(answers):
  qas = [{'id': qid, 'question': 'q?', 'answers': [{'answer_start': 0, 'text': text}]}
         for qid, text in answers.items()]
  return json.dumps({'version': '1.1', 'data': [{'paragraphs': [{'context': 'c', 'qas': qas}]}]})


@pytest.fixture
def folders(tmp_path):
  """A label folder and a perfect submission for all nine tasks."""
  labels, predictions = str(tmp_path / 'labels'), str(tmp_path / 'predictions')
  for task in xtreme.XTREME_TASKS.values():
    for lang in task.languages:
      gold = _gold(task, lang)
      path = s.write_submission_file(predictions, task.name, lang, gold)
      assert path == os.path.join(predictions, task.name, f'test-{lang}.{task.submission_suffix}')
      if task.kind == xtreme.SPAN_QA:
        os.makedirs(os.path.join(labels, task.name), exist_ok=True)
        with open(os.path.join(labels, task.submission_file(lang)), 'w', encoding='utf-8') as f:
          f.write(_squad_labels(gold))
      else:
        s.write_submission_file(labels, task.name, lang, gold)
  return labels, predictions


def test_perfect_submission_scores_100_everywhere(folders):
  labels, predictions = folders
  assert sorted(os.listdir(predictions)) == sorted(xtreme.XTREME_TASKS)
  assert not [f for d in os.listdir(predictions) for f in os.listdir(os.path.join(predictions, d))
              if not f.startswith('test-')]  # no temporary files left beside the written ones
  summary, detailed = s.evaluate_submission(predictions, labels)
  assert summary == pytest.approx({'classification': 100.0, 'tagging': 100.0, 'qa': 100.0, 'retrieval': 100.0,
                                   'xtreme_score': 100.0})
  assert set(detailed['mlqa']['f1']) == set(xtreme.MLQA_LANGUAGES)
  table = s.language_table(detailed)
  assert set(table['panx']) == set(xtreme.PANX_LANGUAGES) and set(table['xquad'].values()) == {100.0}


def test_file_formats_are_what_evaluate_py_reads(folders):
  _, predictions = folders
  with open(os.path.join(predictions, 'panx', 'test-de.tsv'), encoding='utf-8') as f:
    assert f.read() == 'B-PER\nO\n\nI-ORG\n\n'  # a blank line after each sentence
  with open(os.path.join(predictions, 'bucc2018', 'test-zh.tsv'), encoding='utf-8') as f:
    assert f.read() == 'zh-000000001\ten-000000007\nzh-000000002\ten-000000003\n'
  with open(os.path.join(predictions, 'tatoeba', 'test-ja.tsv'), encoding='utf-8') as f:
    assert f.read() == '3\n0\n'
  with open(os.path.join(predictions, 'tydiqa', 'test-sw.json'), encoding='utf-8') as f:
    assert json.load(f) == {'sw-q1': 'Ann Ward', 'sw-q2': '1871'}


def test_scores_per_language_and_task(folders):
  labels, predictions = folders
  s.write_submission_file(predictions, 'xnli', 'de', ['contradiction', 'contradiction'])  # 1 of 2 right
  s.write_submission_file(predictions, 'mlqa', 'zh', {'zh-q1': 'Ann Ward'})  # q2 unanswered: 0
  s.write_submission_file(predictions, 'bucc2018', 'fr', [('fr-000000001', 'en-000000007')])  # P 1, R 1/2
  summary, detailed = s.evaluate_submission(predictions, labels, ['xnli', 'mlqa', 'bucc2018'])
  assert detailed['xnli']['accuracy']['de'] == 50.0
  assert detailed['xnli']['avg_metric'] == pytest.approx((14 * 100 + 50) / 15)
  assert detailed['mlqa']['exact_match']['zh'] == 50.0
  assert detailed['mlqa']['avg_metric'] == pytest.approx((6 * 100 + 50) / 7)
  assert detailed['bucc2018']['f1']['fr'] == pytest.approx(100 * 2 / 3)
  assert 'xtreme_score' not in summary and 'classification' not in summary


def test_missing_and_short_files_are_named(folders):
  labels, predictions = folders
  os.remove(os.path.join(predictions, 'pawsx', 'test-ko.tsv'))
  with pytest.raises(MissingFileError, match='pawsx/test-ko.tsv does not exist'):
    s.evaluate_submission(predictions, labels, ['pawsx'])
  s.write_submission_file(predictions, 'pawsx', 'ko', ['1'])
  with pytest.raises(DataError, match='test-ko.tsv: 1 predictions .* has 2'):
    s.evaluate_submission(predictions, labels, ['pawsx'])
  s.write_submission_file(predictions, 'udpos', 'th', [['NOUN', 'VERB'], ['X', 'X']])
  with pytest.raises(DataError, match='udpos/test-th.tsv against .*Sentence 1: 2 predicted tags for 1 tokens'):
    s.evaluate_submission(predictions, labels, ['udpos'])


@pytest.mark.parametrize('task, predictions, message', [
    ('xnli', ['entailment', 'yes'], "xnli prediction 1: 'yes' is not one of contradiction"),
    ('panx', [['O'], []], 'panx sentence 1: no tags'),
    ('udpos', [['NOUN', 'B-PER']], "udpos sentence 0, tag 1: 'B-PER' is not one of ADJ"),
    ('xquad', {'q1': None}, "question 'q1' has None"),
    ('bucc2018', [('de-1', 'en\t1')], 'bucc2018 pairs are'),
    ('tatoeba', [1, -1], 'tatoeba prediction 1: -1 is not an English line index'),
    ('tatoeba', [1.5], 'tatoeba prediction 0: 1.5'),
])
def test_bad_predictions_are_refused_before_writing(tmp_path, task, predictions, message):
  with pytest.raises(ValueError, match=message):
    s.write_submission_file(str(tmp_path), task, xtreme.get_task(task).languages[0], predictions)
  assert not os.listdir(tmp_path)
