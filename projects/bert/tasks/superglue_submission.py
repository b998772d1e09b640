"""SuperGLUE leaderboard files: one per task, named and formatted as the evaluation server expects (zip-ready).

Formats (`tasks.superglue` holds each task's `submission_file` and `submission_labels`):
  BoolQ, CB, COPA, RTE, WiC, WSC, AX-b, AX-g   one line per example: {"idx": idx, "label": label}, the label as
                                               the task writes it (BoolQ/WiC "true"/"false", WSC "True"/"False",
                                               COPA 0/1, the NLI tasks their class names)
  MultiRC                                      one line per passage: {"idx": p, "passage": {"questions": [{"idx": q,
                                               "answers": [{"idx": a, "label": 0 or 1}, ...]}, ...]}}
  ReCoRD                                       one line per query: {"idx": query idx, "label": entity text}
Rows follow the test file's order. `submission_rows` builds them from the reader's examples and the predictions,
refusing an incomplete set (a missing example would be scored wrong by the server, silently);
`read_submission` reads a file back and checks it against the same format.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from core import atomic
from core.errors import DataError
from projects.bert.tasks import superglue as sg


def _label_ids(predictions: Any, count: int, num_labels: int, what: str) -> np.ndarray:
  ids = np.asarray(predictions)
  if ids.ndim == 2:  # logits [N, C]
    ids = np.argmax(ids, axis=-1)
  ids = ids.reshape(-1).astype(np.int64)
  if len(ids) != count:
    raise ValueError(f'{len(ids)} predictions for {count} {what}.')
  if len(ids) and (ids.min() < 0 or ids.max() >= num_labels):
    raise ValueError(f'Predicted label ids must be in [0, {num_labels}); got {ids.min()}..{ids.max()}.')
  return ids


def submission_rows(task: str, examples: Sequence[Any], predictions: Any) -> List[Dict[str, Any]]:
  """The leaderboard rows of `task`'s test examples (from `datasets.superglue_reader`).

  predictions: label ids int [N] (or logits [N, C]) aligned with `examples`; for MultiRC 0/1 [A] aligned with
  their answer options in reading order (passage, question, answer); for ReCoRD {query idx: entity text}, one for
  every query, each text one of its passage's entities.
  """
  t = sg.get_task(task)
  if t.name == 'record':
    rows = []
    for example in examples:
      for query in example.queries:
        if query.idx not in predictions:
          raise ValueError(f'ReCoRD: no prediction for query idx {query.idx} (passage idx {example.idx}).')
        text = predictions[query.idx]
        if text not in example.candidates:
          raise ValueError(f'ReCoRD: the prediction {text!r} for query idx {query.idx} is not an entity of its '
                           f'passage; the label is the text of one of its entities.')
        rows.append({'idx': query.idx, 'label': text})
    return rows
  if t.name == 'multirc':
    options = [(e, q, a) for e in examples for q in e.questions for a in q.answers]
    ids = _label_ids(predictions, len(options), 2, 'MultiRC answer options')
    rows, k = [], 0
    for example in examples:
      questions = []
      for question in example.questions:
        answers = []
        for answer in question.answers:
          answers.append({'idx': answer.idx, 'label': t.submission_labels[ids[k]]})
          k += 1
        questions.append({'idx': question.idx, 'answers': answers})
      rows.append({'idx': example.idx, 'passage': {'questions': questions}})
    return rows
  ids = _label_ids(predictions, len(examples), t.num_labels, f'{t.official_name} examples')
  return [{'idx': e.idx, 'label': t.submission_labels[i]} for e, i in zip(examples, ids)]


def write_submission(out_dir: str, task: str, rows: Sequence[Mapping[str, Any]]) -> str:
  """Writes `rows` to `out_dir`/{task's submission file} (beside, then renamed: never half-written); its path."""
  t = sg.get_task(task)
  path = os.path.join(out_dir, t.submission_file)
  atomic.write_text(path, ''.join(json.dumps(row) + '\n' for row in rows))
  return path


def _check_label(path: str, number: int, field: str, value: Any, allowed: Sequence[Any]) -> None:
  if not any(type(value) is type(a) and value == a for a in allowed):
    raise DataError(f'{path}, line {number}: field "{field}" is {json.dumps(value)}, not one of '
                    f'{json.dumps(list(allowed))}; write the leaderboard file with superglue_submission.')


def _check_idx(path: str, number: int, field: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool):
    raise DataError(f'{path}, line {number}: field "{field}" is {json.dumps(value)}, not an integer idx.')


def read_submission(path: str, task: str) -> List[Dict[str, Any]]:
  """The rows of a leaderboard file of `task`, checked against its format (see the module docstring)."""
  t = sg.get_task(task)
  rows = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, start=1):
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f'{path}, line {number}: not JSON ({e.msg}).') from None
      if not isinstance(row, dict) or 'idx' not in row:
        raise DataError(f'{path}, line {number}: not a JSON object with an "idx".')
      _check_idx(path, number, 'idx', row['idx'])
      if t.name == 'multirc':
        questions = row.get('passage', {}).get('questions') if isinstance(row.get('passage'), dict) else None
        if set(row) != {'idx', 'passage'} or not isinstance(questions, list) or not questions:
          raise DataError(f'{path}, line {number}: a MultiRC line is {{"idx", "passage": {{"questions": [...]}}}}.')
        for qn, question in enumerate(questions):
          _check_idx(path, number, f'passage.questions[{qn}].idx', question.get('idx'))
          for an, answer in enumerate(question.get('answers') or [None]):
            where = f'passage.questions[{qn}].answers[{an}]'
            if not isinstance(answer, dict):
              raise DataError(f'{path}, line {number}: field "{where}" is not an answer object.')
            _check_idx(path, number, f'{where}.idx', answer.get('idx'))
            _check_label(path, number, f'{where}.label', answer.get('label'), t.submission_labels)
      else:
        if set(row) != {'idx', 'label'}:
          raise DataError(f'{path}, line {number}: fields {sorted(row)}, not exactly "idx" and "label".')
        if t.name == 'record':
          if not isinstance(row['label'], str) or not row['label']:
            raise DataError(f'{path}, line {number}: field "label" must be the predicted entity text.')
        else:
          _check_label(path, number, 'label', row['label'], t.submission_labels)
      rows.append(row)
  return rows
