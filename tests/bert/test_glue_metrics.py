"""GLUE metrics: hand-computed values on tiny arrays, and agreement with scikit-learn / scipy on random ones."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from projects.bert.tasks import glue_metrics
from projects.bert.tasks import glue as glue_tasks


def _logits_for(preds, num_labels=2):
  """Logits whose argmax is `preds` (with a distracting non-zero background)."""
  logits = np.full((len(preds), num_labels), -1.0, np.float32)
  logits[np.arange(len(preds)), preds] = 2.0
  return logits


def test_mrpc_f1_and_accuracy_by_hand():
  labels = np.array([1, 1, 0, 0, 1, 0])
  preds = np.array([1, 0, 0, 1, 1, 0])
  # TP=2 (rows 0, 4), FN=1 (row 1), FP=1 (row 3), TN=2: precision = recall = 2/3, so F1 = 2/3; accuracy 4/6.
  out = glue_metrics.compute_metrics('mrpc', _logits_for(preds), labels)
  assert out['f1'] == pytest.approx(2 / 3)
  assert out['accuracy'] == pytest.approx(4 / 6)
  assert out['combined_score'] == pytest.approx((2 / 3 + 4 / 6) / 2)
  assert out['num_examples'] == 6


def test_qqp_f1_is_of_the_positive_class():
  labels = np.array([0, 0, 0, 1])
  preds = np.array([0, 0, 1, 1])
  # TP=1, FP=1, FN=0: precision 1/2, recall 1, F1 = 2/3 (F1 of class 0 would be 4/5).
  out = glue_metrics.compute_metrics('QQP', _logits_for(preds), labels)
  assert out['f1'] == pytest.approx(2 / 3)
  assert out['accuracy'] == pytest.approx(3 / 4)


def test_cola_matthews_by_hand():
  labels = np.array([1, 1, 1, 0, 0])
  preds = np.array([1, 1, 0, 0, 1])
  # TP=2, FN=1, FP=1, TN=1: (2*1 - 1*1) / sqrt(3 * 3 * 2 * 2) = 1/6.
  out = glue_metrics.compute_metrics('cola', _logits_for(preds), labels)
  assert out['matthews_corr'] == pytest.approx(1 / 6)
  assert set(out) == {'matthews_corr', 'num_examples'}
  # A constant predictor has no correlation with the labels.
  assert glue_metrics.compute_metrics('cola', np.ones(5, np.int64), labels)['matthews_corr'] == 0.0


def test_stsb_pearson_spearman_by_hand():
  preds = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
  labels = np.array([2.0, 4.0, 6.0, 9.0], np.float32)
  # Deviations from the means: x [-1.5, -.5, .5, 1.5], y [-3.25, -1.25, .75, 3.75];
  # sum(dx dy) = 11.5, sum(dx^2) = 5, sum(dy^2) = 26.75.
  out = glue_metrics.compute_metrics('STS-B', preds, labels)
  assert out['pearson'] == pytest.approx(11.5 / np.sqrt(5 * 26.75), rel=1e-6)
  assert out['spearman'] == pytest.approx(1.0)  # same order
  out = glue_metrics.compute_metrics('stsb', preds[::-1].copy(), labels)
  assert out['spearman'] == pytest.approx(-1.0)
  # Constant predictions: the correlation is undefined; scored 0, not NaN.
  out = glue_metrics.compute_metrics('stsb', np.full(4, 2.5, np.float32), labels)
  assert out['pearson'] == 0.0 and out['spearman'] == 0.0


def test_accuracy_tasks_by_hand():
  labels = np.array([0, 2, 1, 1])
  preds = np.array([0, 2, 2, 1])
  out = glue_metrics.compute_metrics('mnli', _logits_for(preds, 3), labels)
  assert out == {'accuracy': pytest.approx(0.75), 'num_examples': 4.0}
  for task in ('sst2', 'qnli', 'rte', 'wnli'):
    assert glue_metrics.compute_metrics(task, _logits_for([1, 0, 1]), np.array([1, 1, 1]))['accuracy'] == (
        pytest.approx(2 / 3))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_agrees_with_sklearn_and_scipy(seed):
  rng = np.random.default_rng(seed)
  n = 97
  labels = rng.integers(0, 2, n)
  logits = rng.normal(size=(n, 2)).astype(np.float32)
  preds = logits.argmax(-1)
  mrpc = glue_metrics.compute_metrics('mrpc', logits, labels)
  assert mrpc['f1'] == pytest.approx(skm.f1_score(labels, preds))
  assert mrpc['accuracy'] == pytest.approx(skm.accuracy_score(labels, preds))
  cola = glue_metrics.compute_metrics('cola', logits, labels)
  assert cola['matthews_corr'] == pytest.approx(skm.matthews_corrcoef(labels, preds))
  scores = rng.uniform(0, 5, n)
  guesses = (scores + rng.normal(scale=1.5, size=n)).astype(np.float32)
  stsb = glue_metrics.compute_metrics('stsb', guesses, scores)
  assert stsb['pearson'] == pytest.approx(stats.pearsonr(guesses, scores)[0], rel=1e-5)
  assert stsb['spearman'] == pytest.approx(stats.spearmanr(guesses, scores)[0], rel=1e-5)
  assert 0.3 < stsb['spearman'] < 1.0  # the noise is real but the signal dominates


def test_main_metric_keys():
  assert glue_metrics.main_metric_key('mrpc', ['validation']) == 'validation/f1'
  assert glue_metrics.main_metric_key('cola', ['validation']) == 'validation/matthews_corr'
  assert glue_metrics.main_metric_key('stsb', ['validation']) == 'validation/spearman'
  assert glue_metrics.main_metric_key('mnli', ['matched', 'mismatched']) == 'matched/accuracy'
  for name, task in glue_tasks.GLUE_TASKS.items():
    assert task.main_metric in task.metrics, name
  assert glue_tasks.get_task('mnli').main_eval_split == 'matched'
  assert glue_tasks.get_task('qqp').main_metric_key(['validation']) == 'validation/f1'


def test_rejects_unknown_task_and_length_mismatch():
  with pytest.raises(ValueError, match='Unknown GLUE task'):
    glue_metrics.compute_metrics('squad', np.zeros((2, 2)), np.zeros(2))
  with pytest.raises(ValueError, match='predictions for'):
    glue_metrics.compute_metrics('rte', np.zeros((3, 2)), np.zeros(2))
