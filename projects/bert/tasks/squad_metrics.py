"""SQuAD answers from span logits and their official scores.

Decoding is Model Garden's (`squad_lib.postprocess_output`, what its question-answering task runs): per question,
the n-best (start, end) pairs of every window of its paragraph, kept when both ends are paragraph tokens, the start
is in the window that sees it with the most context, end >= start and the span is at most `max_answer_length`
tokens; ranked by start + end logit; the text mapped back to the paragraph's own characters (`get_final_text`). For
SQuAD 2.0 the null answer scores start + end logit at [CLS] (the window with the lowest such score), and a question
gets "" when null score - best span score > `null_score_diff_threshold`; that difference is its null odds.

Scoring is the official SQuAD evaluation as Model Garden ships it (`squad_evaluate_v1_1`, `squad_evaluate_v2_0`).
Scores are percentages, as the official scripts print them (Model Garden's v1.1 copy returns fractions: they are
multiplied by 100 here):
  v1.1  exact_match, f1
  v2.0  the headline, as Model Garden (`final_f1`, `exact_match` of its question-answering task) and the BERT paper
        report SQuAD 2.0 dev: exact_match and f1 at the null-odds threshold that is best on the scored set (the
        official script's threshold analysis, run with null_odds.json as its --na-prob-file as the BERT authors'
        README does), with those thresholds beside them (best_threshold_for_exact_match, best_threshold_for_f1: set
        `null_score_diff_threshold` from them for a test-set submission). The thresholds are chosen on the set they
        score, which is how those references report dev, and optimistic as any selection on dev is.
        Beside them, labelled: exact_match_as_predicted and f1_as_predicted, the predictions as written at the
        run's `null_score_diff_threshold` (0 by default: the script without --na-prob-file, as the leaderboard
        scores a submission), and has_answer_exact_match / has_answer_f1, no_answer_exact_match / no_answer_f1
        (the answerable and the unanswerable questions alone, of the predictions as written). Without null odds no
        threshold can be chosen: exact_match and f1 are then those of the predictions as written.

Files (official formats): predictions.json {question id: answer text}, nbest_predictions.json {id: [{text,
probability, start_logit, end_logit}, ...]} and for v2.0 null_odds.json {id: null score - best span score}.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from projects.bert.tasks import squad as squad_tasks

PREDICTIONS_FILE, NBEST_FILE = squad_tasks.PREDICTIONS_FILE, squad_tasks.NBEST_FILE
NULL_ODDS_FILE = squad_tasks.NULL_ODDS_FILE
MAIN_METRIC = squad_tasks.F1

# What `postprocess_output` reads of a model result (Model Garden's RawAggregatedResult lives in its Orbit task).
RawResult = collections.namedtuple('RawResult', ['unique_id', 'start_logits', 'end_logits'])

# The span logit of a position that a length-bucketed pass did not compute (beyond its batch's bucket length): below
# any real logit, so it ranks last and upstream's decoding runs unchanged on [S] lists (such a position is past the
# feature's tokens: it is never an answer end).
BEYOND_BUCKET_LOGIT = -1e9


def top_positions_beyond_buckets(span_logits: np.ndarray, widths: np.ndarray, n_best_size: int = 20) -> np.ndarray:
  """bool [N]: the features whose n_best_size highest start or end logits, ranked as upstream ranks them (stable:
  ties keep position order), hold a position at or beyond the feature's bucket length: the only features whose
  n-best lists can differ between a padded and a length-bucketed pass (the bucketed pass has no logit there).

  span_logits float [N, S, 2] of a padded pass; widths int [N]: the length each feature's bucketed batch was cut to.
  """
  span_logits, widths = np.asarray(span_logits), np.asarray(widths)
  if span_logits.ndim != 3 or span_logits.shape[-1] != 2 or widths.shape != span_logits.shape[:1]:
    raise ValueError(f'span_logits must be [N, S, 2] and widths [N], got {span_logits.shape} and {widths.shape}.')
  top = np.argsort(-span_logits, axis=1, kind='stable')[:, :n_best_size]  # [N, n_best, 2] positions
  return (top >= widths[:, None, None]).any(axis=(1, 2))


def decode(examples: Sequence[Any], features: Sequence[Any], unique_ids: np.ndarray, span_logits: np.ndarray, *,
           n_best_size: int = 20, max_answer_length: int = 30, do_lower_case: bool = True,
           version_2_with_negative: bool = False, null_score_diff_threshold: float = 0.0
           ) -> Tuple[Dict[str, str], Dict[str, Any], Dict[str, float]]:
  """(predictions, nbest, null_odds) of `squad_lib.postprocess_output` (see the module docstring).

  examples: `squad_lib.SquadExample`s; features: their windows (`squad_format.EvalFeature` or `InputFeatures`);
  unique_ids int [N] and span_logits float [N, S, 2] ([..., 0] start, [..., 1] end) of N features in any order.
  A feature without logits is skipped (logged by upstream); null_odds is empty for v1.1.
  """
  from official.nlp.data import squad_lib

  unique_ids = np.asarray(unique_ids)
  span_logits = np.asarray(span_logits, np.float64)
  if span_logits.ndim != 3 or span_logits.shape[-1] != 2 or len(span_logits) != len(unique_ids):
    raise ValueError(f'span_logits must be [N, S, 2] for N = {len(unique_ids)} unique_ids, got {span_logits.shape}.')
  results = [RawResult(int(u), s.tolist(), e.tolist())
             for u, s, e in zip(unique_ids, span_logits[..., 0], span_logits[..., 1])]
  predictions, nbest, null_odds = squad_lib.postprocess_output(
      examples, features, results, n_best_size, max_answer_length, do_lower_case,
      version_2_with_negative=version_2_with_negative, null_score_diff_threshold=null_score_diff_threshold,
      verbose=False)
  return dict(predictions), dict(nbest), {k: float(v) for k, v in null_odds.items()}


def official_scores(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str],
                    null_odds: Optional[Mapping[str, float]] = None, *,
                    version_2_with_negative: bool = False) -> Dict[str, float]:
  """The official SQuAD scores of `predictions` against `dataset` (a SQuAD JSON's 'data' list); see the module
  docstring for the names. A question without a prediction scores 0 in v1.1 and is answered "" in v2.0 (the v2.0
  script would leave it out of the total)."""
  if not version_2_with_negative:
    from official.nlp.tools import squad_evaluate_v1_1

    scores = squad_evaluate_v1_1.evaluate(dataset, predictions)
    return {'exact_match': 100.0 * scores['exact_match'], 'f1': 100.0 * scores['final_f1']}
  from official.nlp.tools import squad_evaluate_v2_0

  missing = [qa['id'] for article in dataset for p in article['paragraphs'] for qa in p['qas']
             if qa['id'] not in predictions]
  if missing:  # the v2.0 script scores only the predicted questions; the official leaderboard counts all
    predictions = {**predictions, **{qid: '' for qid in missing}}
    if null_odds is not None:
      null_odds = {**{qid: 0.0 for qid in missing}, **null_odds}
  # As the leaderboard scores a submission: the predictions as written (the script's na-prob override, which reads
  # null odds above 1.0 as "no answer", would otherwise undo a null_score_diff_threshold above 1).
  scores = squad_evaluate_v2_0.evaluate(dataset, predictions)
  names = {'exact': 'exact_match', 'f1': 'f1', 'HasAns_exact': 'has_answer_exact_match', 'HasAns_f1': 'has_answer_f1',
           'NoAns_exact': 'no_answer_exact_match', 'NoAns_f1': 'no_answer_f1'}
  out = {ours: float(scores[theirs]) for theirs, ours in names.items() if theirs in scores}
  if null_odds is not None:  # the headline: the script with the null odds as its --na-prob-file (best threshold)
    analysis = squad_evaluate_v2_0.evaluate(dataset, predictions, dict(null_odds))
    out['exact_match_as_predicted'], out['f1_as_predicted'] = out['exact_match'], out['f1']
    names = {'final_exact': 'exact_match', 'final_exact_thresh': 'best_threshold_for_exact_match',
             'final_f1': 'f1', 'final_f1_thresh': 'best_threshold_for_f1'}
    out.update({ours: float(analysis[theirs]) for theirs, ours in names.items()})
  return out


def write_json(path: str, obj: Any) -> str:
  """`obj` as JSON at `path`, formatted as Model Garden writes predictions, written beside and renamed."""
  from core import atomic

  atomic.write_text(path, json.dumps(obj, indent=4) + '\n')
  return path


def write_prediction_files(out_dir: str, predictions: Mapping[str, str], nbest: Mapping[str, Any],
                           null_odds: Mapping[str, float], version_2_with_negative: bool) -> Dict[str, str]:
  """predictions.json, nbest_predictions.json and (v2.0) null_odds.json in `out_dir`; returns {kind: path}."""
  paths = {'predictions': write_json(os.path.join(out_dir, PREDICTIONS_FILE), predictions),
           'nbest': write_json(os.path.join(out_dir, NBEST_FILE), nbest)}
  if version_2_with_negative:
    paths['null_odds'] = write_json(os.path.join(out_dir, NULL_ODDS_FILE), null_odds)
  return paths


def squad_scores(unique_ids: np.ndarray, span_logits: np.ndarray, eval_data: Any, *, n_best_size: int = 20,
                 max_answer_length: int = 30, null_score_diff_threshold: float = 0.0,
                 out_dir: Optional[str] = None) -> Dict[str, float]:
  """Decodes the logits of the eval features, scores the answers officially, and (with `out_dir`) writes the
  prediction files there. `eval_data` is a `datasets.squad.SquadEvalData`; unique_ids int [N], span_logits
  [N, S, 2]. Returns the official scores (module docstring) and 'num_examples' (questions scored)."""
  v2 = eval_data.version_2_with_negative
  predictions, nbest, null_odds = decode(
      eval_data.examples, eval_data.features, unique_ids, span_logits, n_best_size=n_best_size,
      max_answer_length=max_answer_length, do_lower_case=eval_data.do_lower_case, version_2_with_negative=v2,
      null_score_diff_threshold=null_score_diff_threshold)
  if out_dir is not None:
    write_prediction_files(out_dir, predictions, nbest, null_odds, v2)
  return score_predictions(eval_data, predictions, null_odds)


def score_predictions(eval_data: Any, predictions: Mapping[str, str],
                      null_odds: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
  """The official scores (module docstring) of `predictions` {question id: text} on `eval_data` (a
  `datasets.squad.SquadEvalData`), with v2.0's threshold analysis when `null_odds` are given, and 'num_examples'
  (questions predicted)."""
  v2 = eval_data.version_2_with_negative
  scores = official_scores(eval_data.dataset, predictions, null_odds if v2 else None, version_2_with_negative=v2)
  scores['num_examples'] = float(len(predictions))
  return scores


def question_dependence(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str]) -> Dict[str, float]:
  """Whether `predictions` {question id: text} depend on the question, on `dataset` (a SQuAD JSON's 'data' list);
  over the paragraphs with at least two answerable questions (v2.0's unanswerable ones are left out):
    same_answer_fraction   the fraction of them whose predicted answers are all the same text (case and outer
                           spaces ignored): a model that finds one span per paragraph whatever is asked scores 1.0;
    one_span_ceiling_f1    the official F1 (percent, over their answerable questions) of an oracle that answers all
                           questions of a paragraph with one text, the gold answer that maximises the paragraph's
                           mean F1: what "one span per paragraph" reaches at best, which a reading model must beat;
    f1                     the official F1 of `predictions` on the same questions, to compare with the ceiling;
    num_paragraphs         how many paragraphs were counted.
  """
  from official.nlp.tools import squad_evaluate_v1_1

  def f1(paragraph: Mapping[str, Any], answers: Mapping[str, str]) -> float:
    return squad_evaluate_v1_1.evaluate([{'paragraphs': [paragraph]}], answers)['final_f1']

  same, ceiling, predicted, questions, paragraphs = 0, 0.0, 0.0, 0, 0
  for article in dataset:
    for p in article['paragraphs']:
      qas = [qa for qa in p['qas'] if qa.get('answers')]
      if len(qas) < 2:
        continue
      paragraph = {**p, 'qas': qas}
      paragraphs += 1
      same += len({predictions.get(qa['id'], '').strip().lower() for qa in qas}) == 1
      candidates = {a['text'] for qa in qas for a in qa['answers']}
      ceiling += len(qas) * max(f1(paragraph, {qa['id']: text for qa in qas}) for text in candidates)
      predicted += len(qas) * f1(paragraph, {qa['id']: predictions.get(qa['id'], '') for qa in qas})
      questions += len(qas)
  if not paragraphs:
    raise ValueError('question_dependence needs paragraphs with at least two answerable questions; the dataset has '
                     'none.')
  return {'same_answer_fraction': same / paragraphs, 'one_span_ceiling_f1': 100.0 * ceiling / questions,
          'f1': 100.0 * predicted / questions, 'num_paragraphs': float(paragraphs)}
