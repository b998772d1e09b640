"""SuperGLUE metrics against hand-computed values, with the grouping edge cases of MultiRC, ReCoRD and AX-g."""

import math

import numpy as np
import pytest

from core.errors import DataError
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_metrics as sgm


def test_accuracy_tasks_take_ids_or_logits():
  labels = np.array([1, 0, 1, 1])
  preds = np.array([1, 1, 1, 0])
  logits = np.eye(2)[preds] * 3.0 - 1.0
  for task in ('boolq', 'copa', 'rte', 'wic', 'wsc'):
    out = sgm.compute_metrics(task, preds, labels)
    assert out == {'accuracy': 0.5, 'score': 0.5, 'num_examples': 4.0}
    assert sgm.compute_metrics(task, logits, labels)['accuracy'] == 0.5


def test_cb_macro_f1_by_hand():
  labels = np.array([0, 0, 1, 2, 2, 2])
  preds = np.array([0, 1, 1, 2, 2, 0])
  # class 0: TP 1, FP 1, FN 1 -> F1 1/2; class 1: TP 1, FP 1, FN 0 -> 2/3; class 2: TP 2, FP 0, FN 1 -> 4/5.
  macro = (1 / 2 + 2 / 3 + 4 / 5) / 3
  out = sgm.compute_metrics('cb', preds, labels)
  assert out['macro_f1'] == pytest.approx(macro)
  assert out['accuracy'] == pytest.approx(4 / 6)
  assert out['score'] == pytest.approx((macro + 4 / 6) / 2)
  assert list(out) == ['accuracy', 'macro_f1', 'score', 'num_examples']


def test_cb_macro_f1_counts_an_absent_class_as_zero():
  # All right, but 'neutral' (2) is neither gold nor predicted: the official F1 averages over all three classes.
  out = sgm.cb_metrics([0, 0, 1], [0, 0, 1])
  assert out['accuracy'] == 1.0
  assert out['macro_f1'] == pytest.approx(2 / 3)


def test_multirc_f1a_and_exact_match_by_hand():
  # q1: labels 1 0 1, preds 1 0 0 (wrong); q2: every answer false, all predicted false (a match);
  # q3: labels 0 1, preds 1 1 (wrong). Pooled: TP 2, FP 1, FN 1 -> F1a 2/3; EM 1/3.
  questions = ['q1', 'q1', 'q1', 'q2', 'q2', 'q3', 'q3']
  labels = [1, 0, 1, 0, 0, 0, 1]
  preds = [1, 0, 0, 0, 0, 1, 1]
  out = sgm.compute_metrics('multirc', preds, labels, question_ids=questions)
  assert out['f1a'] == pytest.approx(2 / 3)
  assert out['exact_match'] == pytest.approx(1 / 3)
  assert out['score'] == pytest.approx((2 / 3 + 1 / 3) / 2)
  assert out['num_examples'] == 7


def test_multirc_all_false_question_predicted_true_is_no_match_and_groups_need_not_be_contiguous():
  questions = [(0, 'a'), (0, 'b'), (0, 'a'), (0, 'b')]  # interleaved answer options of two questions
  labels = [0, 1, 0, 1]
  preds = [0, 1, 1, 1]  # question a (all false) gets one true: no match; question b right
  out = sgm.multirc_metrics(questions, preds, labels)
  assert out['exact_match'] == pytest.approx(1 / 2)
  assert out['f1a'] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))  # P 2/3, R 1
  # Nothing true anywhere and nothing predicted true: F1a is 0 (no positive to find), EM is 1.
  out = sgm.multirc_metrics(['q', 'q'], [0, 0], [0, 0])
  assert out == {'f1a': 0.0, 'exact_match': 1.0}
  with pytest.raises(ValueError, match='question_ids'):
    sgm.compute_metrics('multirc', preds, labels)


def test_record_normalisation_and_token_f1():
  assert sgm.normalize_answer('The  Cook-Islands!') == 'cookislands'
  assert sgm.normalize_answer('An apple, a day; THE end.') == 'apple day end'
  assert sgm.normalize_answer('Theatre') == 'theatre'  # an article only as a whole word
  assert sgm.token_f1('Tracy Morgan', 'Morgan') == pytest.approx(2 / 3)  # P 1/2, R 1
  assert sgm.token_f1('the cat cat', 'cat') == pytest.approx(2 / 3)  # overlap is a multiset: 1 of 2 tokens
  assert sgm.token_f1('dog', 'cat') == 0.0
  assert sgm.exact_match('the U.S.', 'US') == 1.0


def test_record_max_over_several_gold_answers():
  golds = {0: ['Tracy Morgan', 'Morgan'], 1: ['China'], 2: ['Amy Schumer']}
  preds = {0: 'Morgan', 1: 'the UK', 2: 'Schumer'}
  out = sgm.compute_metrics('record', preds, golds)
  # query 0: exact with the second gold (F1 1, EM 1); query 1: 0, 0; query 2: F1 2/3 (P 1, R 1/2), EM 0.
  assert out['f1'] == pytest.approx((1 + 0 + 2 / 3) / 3)
  assert out['exact_match'] == pytest.approx(1 / 3)
  assert out['num_examples'] == 3
  # A query the predictions miss scores 0; one they invent is an error.
  assert sgm.record_metrics({0: 'Morgan'}, golds)['exact_match'] == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match='without gold'):
    sgm.record_metrics({7: 'Morgan'}, golds)
  with pytest.raises(DataError, match='no gold answer'):
    sgm.record_metrics({0: 'x'}, {0: []})


def test_record_predictions_with_repeated_entities():
  # Query 0's passage names Morgan three times (three rows); query 1's rows are interleaved with query 0's.
  query_ids = [0, 0, 1, 0, 1, 0]
  candidates = ['Morgan', 'NBC', 'China', 'Morgan', 'UK', 'Morgan']
  scores = [0.1, 0.5, 2.0, 0.9, 2.0, 0.2]
  preds = sgm.record_predictions(query_ids, candidates, scores)
  assert preds == {0: 'Morgan', 1: 'China'}  # a tie goes to the first row
  # Each query counts once however many mentions it has.
  out = sgm.record_metrics(preds, {0: ['Tracy Morgan', 'Morgan'], 1: ['UK']})
  assert out['exact_match'] == pytest.approx(1 / 2)


def test_axb_matthews_by_hand():
  labels = [0, 0, 1, 1]
  preds = [0, 1, 1, 1]  # TP 2, TN 1, FP 1, FN 0
  out = sgm.compute_metrics('AX-b', preds, labels)
  assert out['matthews_corr'] == pytest.approx(2 / math.sqrt(3 * 2 * 2 * 1))
  assert 'score' not in out  # a diagnostic is reported beside the SuperGLUE score, not in it


def test_axg_gender_parity_pairs_by_position():
  hyps = ['h1', 'h1', 'h2', 'h2', 'h3', 'h3']
  idx = [0, 1, 2, 3, 4, 5]
  preds = [1, 1, 0, 1, 0, 0]  # pairs agree, disagree, agree
  labels = [1, 1, 1, 1, 0, 0]
  out = sgm.compute_metrics('axg', preds, labels, idx=idx, hypotheses=hyps)
  assert out['gender_parity'] == pytest.approx(2 / 3)
  assert out['accuracy'] == pytest.approx(5 / 6)
  assert list(out) == ['gender_parity', 'accuracy', 'num_examples']
  # Rows in another order give the same pairs (by idx).
  perm = [4, 1, 5, 0, 3, 2]
  assert sgm.gender_parity([idx[i] for i in perm], [hyps[i] for i in perm], [preds[i] for i in perm]) == \
      pytest.approx(2 / 3)
  with pytest.raises(DataError, match='idx 2 and 3'):
    sgm.gender_parity(idx, ['h1', 'h1', 'h2', 'hX', 'h3', 'h3'], preds)
  with pytest.raises(DataError, match='minimal pairs'):
    sgm.gender_parity(idx[:5], hyps[:5], preds[:5])


def test_task_and_superglue_score():
  scores = {name: 0.1 * (i + 1) for i, name in enumerate(sg.SCORED_TASKS)}
  assert sgm.superglue_score(scores) == pytest.approx(np.mean([0.1 * (i + 1) for i in range(8)]))
  scores_with_diagnostics = dict(scores, axb=-1.0, axg=0.0)
  assert sgm.superglue_score(scores_with_diagnostics) == pytest.approx(sgm.superglue_score(scores))
  assert sgm.superglue_score({'BoolQ' if k == 'boolq' else k: v for k, v in scores.items()}) == \
      pytest.approx(sgm.superglue_score(scores))
  with pytest.raises(ValueError, match='missing: record'):
    sgm.superglue_score({k: v for k, v in scores.items() if k != 'record'})
  assert sgm.task_score('multirc', {'f1a': 0.7, 'exact_match': 0.3}) == pytest.approx(0.5)
  assert sgm.task_score('rte', {'accuracy': 0.6}) == pytest.approx(0.6)
  with pytest.raises(ValueError, match='exact_match'):
    sgm.task_score('record', {'f1': 0.5})


def test_length_mismatch_is_an_error():
  with pytest.raises(ValueError, match='3 predictions for 2 labels'):
    sgm.accuracy([0, 1, 1], [0, 1])
