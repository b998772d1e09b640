"""The `superglue` evaluator's scoring of gathered rows (evaluators/superglue.py: dev_metrics), against hand-computed
values: MultiRC grouped by (passage, question), ReCoRD the best candidate per query against the gold texts, COPA's
choice logits, AX-g's pairs."""

import numpy as np
import pytest

from projects.bert.datasets import superglue_reader as reader
from projects.bert.evaluators import superglue as evaluator
from projects.bert.evaluators import superglue_predict
from projects.bert.tasks import superglue as sg


def _logits(positive):
  """Row logits [N, 2] whose argmax is 1 where `positive`."""
  return np.array([[0.0, 1.0] if p else [1.0, 0.0] for p in positive])


def test_multirc_exact_match_groups_answers_by_passage_and_question():
  # Passage 0 question 0: both right; passage 0 question 1: one wrong; passage 1 question 0 (the same question idx
  # in another passage: its own group): all answers false, predicted all false -> a match.
  gathered = {'outputs': _logits([1, 0, 1, 1, 0, 0]), 'label_ids': np.array([1, 0, 1, 0, 0, 0]),
              'example_id': np.array([0, 0, 0, 0, 1, 1]), 'question_idx': np.array([0, 0, 1, 1, 0, 0])}
  metrics = evaluator.dev_metrics(sg.get_task('multirc'), gathered)
  assert metrics['exact_match'] == pytest.approx(2 / 3)
  assert metrics['f1a'] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))  # tp 2, fp 1, fn 0
  assert metrics['score'] == pytest.approx((2 / 3 + 0.8) / 2)


def test_record_takes_the_best_candidate_per_query_against_every_gold_text():
  passage = 'Anna Berg met Tomas Reed. Berg left.'
  entities = tuple(reader.RecordEntity(s, s + len(t), t) for s, t in ((0, 'Anna Berg'), (14, 'Tomas Reed'),
                                                                        (26, 'Berg')))
  examples = [reader.RecordExample(7, passage, entities, (reader.RecordQuery(0, '@placeholder left', ('Anna Berg',
                                                                                                        'Berg')),
                                                          reader.RecordQuery(1, '@placeholder stayed',
                                                                             ('Tomas Reed',))))]
  # Query 0: 'Berg' scores best (a gold surface form: EM 1); query 1: 'Anna Berg' wins (wrong: EM 0, F1 0).
  scores = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 1.0], [0.0, 0.0]])
  gathered = {'outputs': scores, 'label_ids': np.array([1, 0, 1, 0, 1, 0]), 'example_id': np.array([7] * 6),
              'query_idx': np.array([0, 0, 0, 1, 1, 1]), 'candidate_index': np.array([0, 1, 2, 0, 1, 2])}
  metrics = evaluator.dev_metrics(sg.get_task('record'), gathered, examples)
  assert metrics['exact_match'] == pytest.approx(0.5) and metrics['f1'] == pytest.approx(0.5)
  assert metrics['num_examples'] == 2.0


def test_copa_and_sentence_pairs_score_the_logits():
  gathered = {'outputs': np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), 'label_ids': np.array([0, 1, 1]),
              'example_id': np.array([0, 1, 2])}
  assert evaluator.dev_metrics(sg.get_task('copa'), gathered)['accuracy'] == pytest.approx(2 / 3)
  cb = {'outputs': np.eye(3), 'label_ids': np.array([0, 1, 1]), 'example_id': np.array([0, 1, 2])}
  metrics = evaluator.dev_metrics(sg.get_task('cb'), cb)
  assert metrics['accuracy'] == pytest.approx(2 / 3) and metrics['macro_f1'] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_axg_pairs_by_idx_with_the_hypotheses_of_the_source():
  examples = [reader.SentencePairExample(i, f'p{i}', f'h{i // 2}', 0) for i in range(4)]
  gathered = {'outputs': _logits([0, 0, 0, 1]), 'label_ids': np.array([0, 0, 0, 0]),
              'example_id': np.array([0, 1, 2, 3])}
  metrics = evaluator.dev_metrics(sg.get_task('axg'), gathered, examples)
  assert metrics == {'gender_parity': 0.5, 'accuracy': 0.75, 'num_examples': 4.0}


def _multirc_examples():
  answer = lambda idx: reader.MultiRcAnswer(idx, f'a{idx}', None)  # noqa: E731
  return [reader.MultiRcExample(5, 'p5', (reader.MultiRcQuestion(0, 'q0', (answer(0), answer(1))),)),
          reader.MultiRcExample(3, 'p3', (reader.MultiRcQuestion(1, 'q1', (answer(2),)),))]


def test_test_predictions_follow_the_files_order_whatever_the_rows_order():
  examples = _multirc_examples()
  # Rows gathered out of order: (passage 3, question 1, answer 2) first.
  gathered = {'outputs': _logits([1, 0, 1]), 'example_id': np.array([3, 5, 5]), 'question_idx': np.array([1, 0, 0]),
              'answer_idx': np.array([2, 1, 0])}
  task = sg.get_task('multirc')
  predictions = superglue_predict.test_predictions(task, gathered, examples)
  assert predictions.tolist() == [1, 0, 1]  # answers 0, 1 of passage 5, then answer 2 of passage 3
  rows = superglue_predict.superglue_submission.submission_rows('multirc', examples, predictions)
  assert rows[0] == {'idx': 5, 'passage': {'questions': [{'idx': 0, 'answers': [{'idx': 0, 'label': 1},
                                                                                 {'idx': 1, 'label': 0}]}]}}
  copa = sg.get_task('copa')
  pairs = [reader.CopaExample(i, 'p', 'a', 'b', 'cause', None) for i in (4, 2)]
  gathered = {'outputs': np.array([[0.0, 1.0], [2.0, 1.0]]), 'example_id': np.array([2, 4])}
  assert superglue_predict.test_predictions(copa, gathered, pairs).tolist() == [0, 1]
  with pytest.raises(ValueError, match='no prediction for idx \\[4\\]'):
    superglue_predict.test_predictions(copa, {'outputs': np.array([[0.0, 1.0]]), 'example_id': np.array([2])}, pairs)
