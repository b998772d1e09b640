"""SuperGLUE's official metrics, computed on the host (scikit-learn for F1 and Matthews correlation).

What each task reports is a task fact (`tasks.superglue`: `metrics`). The definitions follow the SuperGLUE paper
(Wang et al. 2019, table 1) and the scorers its authors published with jiant:
  accuracy        BoolQ, COPA, RTE, WiC, WSC, and AX-g's second metric
  CB              accuracy, and macro-F1: the unweighted mean of the F1 of each of the three classes (a class that is
                  neither predicted nor gold scores 0)
  MultiRC         F1a: binary F1 of the positive label over every answer option of every question, pooled; exact
                  match: per question, 1 when every one of its answer options is predicted right, averaged over
                  questions (a question whose answers are all false counts: predicting all false is a match)
  ReCoRD          per query, the token F1 and exact match of the predicted entity text against each gold answer,
                  the max over gold answers, averaged over queries; both after the official normalisation (lower
                  case, punctuation removed, the articles a/an/the removed, whitespace collapsed), the SQuAD v1.1
                  scorer's
  AX-b            Matthews correlation
  AX-g            gender parity: the examples come in minimal pairs, consecutive in the file (idx 2k and 2k + 1: the
                  same hypothesis, the premise with a male and with a female pronoun; their `pair_id`s differ, so
                  the pair is formed by position, as the official scorer does), and parity is the fraction of pairs
                  whose two predictions agree; and accuracy
A task's score is the mean of its metrics (`task_score`); the SuperGLUE score is the mean of the 8 task scores
(`superglue_score`). Values are fractions in [0, 1] (Matthews correlation in [-1, 1]); the leaderboard prints
them times 100.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any, Dict, Hashable, Mapping, Sequence

import numpy as np
from sklearn import metrics as skm

from core.errors import DataError
from projects.bert.tasks import superglue as sg


def class_predictions(outputs: Any) -> np.ndarray:
  """Class ids int64 [N] from logits float [N, C] (argmax), or from class ids [N] as they are."""
  outputs = np.asarray(outputs)
  if outputs.ndim == 2:
    return np.argmax(outputs, axis=-1).astype(np.int64)
  return outputs.reshape(-1).astype(np.int64)


def _checked(preds: Any, labels: Any):
  preds, labels = class_predictions(preds), np.asarray(labels).reshape(-1).astype(np.int64)
  if len(preds) != len(labels):
    raise ValueError(f'{len(preds)} predictions for {len(labels)} labels.')
  if not len(labels):
    raise ValueError('No examples to score.')
  return preds, labels


def accuracy(preds: Any, labels: Any) -> float:
  """Fraction of `preds` (ids [N] or logits [N, C]) equal to `labels` (ids [N])."""
  preds, labels = _checked(preds, labels)
  return float(np.mean(preds == labels))


def cb_metrics(preds: Any, labels: Any) -> Dict[str, float]:
  """CB: accuracy and the macro-F1 over its three classes (ids 0, 1, 2)."""
  preds, labels = _checked(preds, labels)
  macro_f1 = skm.f1_score(labels, preds, labels=[0, 1, 2], average='macro', zero_division=0)
  return {sg.ACCURACY: float(np.mean(preds == labels)), sg.MACRO_F1: float(macro_f1)}


def multirc_metrics(question_ids: Sequence[Hashable], preds: Any, labels: Any) -> Dict[str, float]:
  """MultiRC: F1a over all answer options and exact match per question.

  question_ids: [N] the question of each answer option (e.g. (passage idx, question idx)); preds, labels: 0/1 [N].
  """
  preds, labels = _checked(preds, labels)
  if len(question_ids) != len(labels):
    raise ValueError(f'{len(question_ids)} question ids for {len(labels)} answer options.')
  f1a = skm.f1_score(labels, preds, pos_label=1, average='binary', zero_division=0)
  all_right: Dict[Hashable, bool] = {}
  for question, right in zip(question_ids, preds == labels):
    all_right[question] = all_right.get(question, True) and bool(right)
  return {sg.F1A: float(f1a), sg.EXACT_MATCH: float(np.mean(list(all_right.values())))}


_ARTICLES = re.compile(r'\b(a|an|the)\b')
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
  """ReCoRD's (and SQuAD v1.1's) answer normalisation: lower case, no punctuation, no a/an/the, single spaces."""
  text = ''.join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return ' '.join(_ARTICLES.sub(' ', text).split())


def token_f1(prediction: str, gold: str) -> float:
  """F1 of the normalised tokens of `prediction` against one `gold` answer (multiset overlap)."""
  pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
  overlap = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
  if overlap == 0:
    return 0.0
  precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(gold))


def record_predictions(query_ids: Sequence[Hashable], candidates: Sequence[str], scores: Any) -> Dict[Hashable, str]:
  """ReCoRD: {query id: the text of its best-scored candidate}.

  query_ids, candidates: [N] one row per (query, candidate entity); an entity named several times in a passage may
  have several rows (one per mention or surface form): they compete like any others. scores: float [N], any score
  that grows with the model's belief that the candidate fills the @placeholder (e.g. the positive logit minus the
  negative one). Ties go to the first row.
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  if not len(query_ids) == len(candidates) == len(scores):
    raise ValueError(f'{len(query_ids)} query ids, {len(candidates)} candidates and {len(scores)} scores.')
  best: Dict[Hashable, int] = {}
  for row, query in enumerate(query_ids):
    if query not in best or scores[row] > scores[best[query]]:
      best[query] = row
  return {query: candidates[row] for query, row in best.items()}


def record_metrics(predictions: Mapping[Hashable, str], gold_answers: Mapping[Hashable, Sequence[str]]
                   ) -> Dict[str, float]:
  """ReCoRD: token F1 and exact match, each the max over a query's gold answers, averaged over the gold queries.

  A query without a prediction scores 0 (as the official script counts it); a prediction for a query that is not
  in `gold_answers` is an error (it would be silently dropped).
  """
  unknown = [q for q in predictions if q not in gold_answers]
  if unknown:
    raise ValueError(f'{len(unknown)} predictions for queries without gold answers, e.g. {unknown[0]!r}.')
  if not gold_answers:
    raise ValueError('No queries to score.')
  f1s, ems = [], []
  for query, golds in gold_answers.items():
    if not golds:
      raise DataError(f'ReCoRD query {query!r} has no gold answer: a labelled split lists at least one in '
                      f'qas[].answers.')
    if query not in predictions:
      f1s.append(0.0)
      ems.append(0.0)
      continue
    f1s.append(max(token_f1(predictions[query], g) for g in golds))
    ems.append(max(exact_match(predictions[query], g) for g in golds))
  return {sg.F1: float(np.mean(f1s)), sg.EXACT_MATCH: float(np.mean(ems))}


def gender_parity(idx: Sequence[int], hypotheses: Sequence[str], preds: Any) -> float:
  """AX-g: the fraction of minimal pairs whose two predictions agree.

  idx: [N] the examples' `idx`; the pairs are the examples at sorted positions 2k and 2k + 1, which must share their
  hypothesis (a file whose pairs do not line up is refused: parity over mismatched pairs means nothing).
  """
  preds = class_predictions(preds)
  if not len(idx) == len(hypotheses) == len(preds):
    raise ValueError(f'{len(idx)} idx, {len(hypotheses)} hypotheses and {len(preds)} predictions.')
  if len(preds) % 2:
    raise DataError(f'AX-g: {len(preds)} examples cannot form minimal pairs: the file holds each hypothesis twice, '
                    f'once with a male and once with a female pronoun in the premise (use the complete AX-g.jsonl).')
  order = np.argsort(np.asarray(idx), kind='stable')
  same = []
  for first, second in zip(order[0::2], order[1::2]):
    if hypotheses[first] != hypotheses[second]:
      raise DataError(f'AX-g: examples idx {idx[first]} and {idx[second]} should be a minimal pair but their '
                      f'hypotheses differ ({hypotheses[first]!r} vs {hypotheses[second]!r}): keep the file\'s rows '
                      f'and idx as the official download has them.')
    same.append(preds[first] == preds[second])
  return float(np.mean(same))


def compute_metrics(task: str, preds: Any, labels: Any = None, **grouping: Any) -> Dict[str, float]:
  """The official metrics of one labelled split of `task`, with its 'score' for the 8 scored tasks.

  Args:
    task: a SuperGLUE task name ('boolq', 'cb', 'copa', 'multirc', 'record', 'rte', 'wic', 'wsc', 'axb', 'axg').
    preds: class ids int [N] or logits float [N, C]; for ReCoRD {query id: predicted entity text}.
    labels: class ids int [N]; for ReCoRD {query id: [gold answer texts]}.
    **grouping: MultiRC `question_ids` [N]; AX-g `idx` [N] and `hypotheses` [N].
  Returns:
    {metric: value} for the task's metrics, 'score' (the mean of them) when the task counts towards the SuperGLUE
    score, and 'num_examples' (answer options for MultiRC, queries for ReCoRD).
  """
  t = sg.get_task(task)
  if t.name == 'record':
    out = record_metrics(preds, labels)
    count = len(labels)
  else:
    count = len(np.asarray(labels).reshape(-1))
    if t.name == 'cb':
      out = cb_metrics(preds, labels)
    elif t.name == 'multirc':
      out = multirc_metrics(_required(grouping, 'question_ids', t.name), preds, labels)
    elif t.name == 'axb':
      p, y = _checked(preds, labels)
      out = {sg.MATTHEWS: float(skm.matthews_corrcoef(y, p))}
    elif t.name == 'axg':
      parity = gender_parity(_required(grouping, 'idx', t.name), _required(grouping, 'hypotheses', t.name), preds)
      out = {sg.GENDER_PARITY: parity, sg.ACCURACY: accuracy(preds, labels)}
    else:
      out = {sg.ACCURACY: accuracy(preds, labels)}
  out = {name: out[name] for name in t.metrics}  # the table's order, and nothing it does not name
  if t.in_score:
    out[sg.SCORE] = task_score(t.name, out)
  out['num_examples'] = float(count)
  return out


def _required(grouping: Mapping[str, Any], name: str, task: str) -> Any:
  if name not in grouping:
    raise ValueError(f'{task} metrics need {name}= (see compute_metrics).')
  return grouping[name]


def task_score(task: str, metrics: Mapping[str, float]) -> float:
  """A task's leaderboard number: the mean of its official metrics (the metric itself for one-metric tasks)."""
  names = sg.get_task(task).metrics
  missing = [n for n in names if n not in metrics]
  if missing:
    raise ValueError(f'{task}: metrics {missing} missing from {sorted(metrics)}.')
  return float(np.mean([metrics[n] for n in names]))


def superglue_score(task_scores: Mapping[str, float]) -> float:
  """The SuperGLUE score: the mean of the 8 task scores ({task name: score}; the diagnostics are not in it)."""
  scores = {sg.get_task(name).name: value for name, value in task_scores.items()}
  missing = [name for name in sg.SCORED_TASKS if name not in scores]
  if missing:
    raise ValueError(f'The SuperGLUE score needs all 8 task scores; missing: {", ".join(missing)}.')
  return float(np.mean([scores[name] for name in sg.SCORED_TASKS]))
