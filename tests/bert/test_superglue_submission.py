"""SuperGLUE leaderboard files: all ten written from generated test splits, read back and checked."""

import json
import os

import numpy as np
import pytest

from core.errors import DataError
from projects.bert.datasets import superglue_reader as reader
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_submission as sub
from tests.bert import superglue_data


@pytest.fixture(scope='module')
def sg_dir(tmp_path_factory):
  return superglue_data.write_superglue_dir(str(tmp_path_factory.mktemp('superglue')), train_size=2, eval_size=6,
                                            test_size=5)


def _predictions(task, examples):
  if task.name == 'record':
    return {q.idx: e.candidates[-1] for e in examples for q in e.queries}
  if task.name == 'multirc':
    count = sum(len(q.answers) for e in examples for q in e.questions)
    return np.arange(count) % 2
  return np.arange(len(examples)) % task.num_labels


def test_all_ten_files_write_and_read_back(sg_dir, tmp_path):
  out = str(tmp_path / 'submission')
  for name, task in sg.SUPERGLUE_TASKS.items():
    examples = reader.read_split(sg_dir, name, 'test')
    rows = sub.submission_rows(name, examples, _predictions(task, examples))
    path = sub.write_submission(out, name, rows)
    assert os.path.basename(path) == task.submission_file
    assert sub.read_submission(path, name) == rows
  assert sorted(os.listdir(out)) == sorted(sg.submission_files().values())  # nothing else (no temporary files)

  def lines(name):
    with open(os.path.join(out, name)) as f:
      return f.read().splitlines()

  assert lines('BoolQ.jsonl')[:2] == ['{"idx": 0, "label": "false"}', '{"idx": 1, "label": "true"}']
  assert lines('WiC.jsonl')[1] == '{"idx": 1, "label": "true"}'
  assert lines('WSC.jsonl')[:2] == ['{"idx": 0, "label": "False"}', '{"idx": 1, "label": "True"}']
  assert lines('COPA.jsonl')[1] == '{"idx": 1, "label": 1}'
  assert [json.loads(x)['label'] for x in lines('CB.jsonl')[:3]] == ['entailment', 'contradiction', 'neutral']
  assert json.loads(lines('AX-b.jsonl')[1]) == {'idx': 1, 'label': 'not_entailment'}  # AX-b's "1" written as 1
  assert len(lines('AX-g.jsonl')) == 6

  multirc = reader.read_split(sg_dir, 'multirc', 'test')
  first = json.loads(lines('MultiRC.jsonl')[0])
  assert first['idx'] == multirc[0].idx
  assert [q['idx'] for q in first['passage']['questions']] == [q.idx for q in multirc[0].questions]
  answers = first['passage']['questions'][0]['answers']
  assert [a['idx'] for a in answers] == [a.idx for a in multirc[0].questions[0].answers]
  assert [a['label'] for a in answers] == [0, 1, 0]
  assert len(lines('MultiRC.jsonl')) == len(multirc)

  record = reader.read_split(sg_dir, 'record', 'test')
  assert [json.loads(x) for x in lines('ReCoRD.jsonl')] == [
      {'idx': e.queries[0].idx, 'label': e.candidates[-1]} for e in record]


def test_incomplete_or_impossible_predictions_are_refused(sg_dir):
  boolq = reader.read_split(sg_dir, 'boolq', 'test')
  with pytest.raises(ValueError, match='4 predictions for 5 BoolQ examples'):
    sub.submission_rows('boolq', boolq, [0, 1, 0, 1])
  with pytest.raises(ValueError, match=r'in \[0, 2\)'):
    sub.submission_rows('boolq', boolq, [0, 1, 2, 1, 0])
  logits = np.eye(2)[[1, 0, 1, 1, 0]]
  assert [r['label'] for r in sub.submission_rows('boolq', boolq, logits)] == ['true', 'false', 'true', 'true',
                                                                                 'false']
  record = reader.read_split(sg_dir, 'record', 'test')
  preds = {q.idx: e.candidates[0] for e in record for q in e.queries}
  bad = dict(preds)
  bad[record[0].queries[0].idx] = 'Zed'
  with pytest.raises(ValueError, match='not an entity of its passage'):
    sub.submission_rows('record', record, bad)
  del preds[record[1].queries[0].idx]
  with pytest.raises(ValueError, match='no prediction for query idx'):
    sub.submission_rows('record', record, preds)


def test_read_submission_checks_the_format(tmp_path):
  path = superglue_data.write_jsonl(str(tmp_path / 'BoolQ.jsonl'), [{'idx': 0, 'label': 'true'},
                                                                     {'idx': 1, 'label': True}])
  with pytest.raises(DataError, match='line 2: field "label" is true, not one of'):
    sub.read_submission(path, 'boolq')
  path = superglue_data.write_jsonl(str(tmp_path / 'MultiRC.jsonl'), [
      {'idx': 0, 'passage': {'questions': [{'idx': 0, 'answers': [{'idx': 0, 'label': 'true'}]}]}}])
  with pytest.raises(DataError, match=r'passage.questions\[0\].answers\[0\].label'):
    sub.read_submission(path, 'multirc')
  path = superglue_data.write_jsonl(str(tmp_path / 'COPA.jsonl'), [{'idx': 0, 'label': 1, 'extra': 0}])
  with pytest.raises(DataError, match='not exactly "idx" and "label"'):
    sub.read_submission(path, 'copa')
