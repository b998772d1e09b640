"""GLUE's official metric for each task, computed on the host with scikit-learn and scipy.

Which metrics a task reports, and its main one, are task facts (`datasets.glue_tasks`: `metrics`, `main_metric`,
`main_eval_split`):

  cola            Matthews correlation                       main: matthews_corr
  mrpc, qqp       accuracy and F1 of the positive class (1)  main: f1 (the number the BERT paper reports)
  stsb            Pearson and Spearman correlation           main: spearman (the number the BERT paper reports)
  mnli            accuracy, on each eval split               main: accuracy on the matched split (the GLUE
                                                             evaluator prefixes metrics with their split)
  sst2, qnli, rte, wnli  accuracy                            main: accuracy

`combined_score` (the mean of a task's metrics, GLUE's per-task leaderboard number) is added for tasks with two.
AX has no public labels: it is only predicted (MNLI's test split 'ax'), never scored here.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from projects.bert.tasks import glue as glue_tasks


def main_metric_key(task: str, eval_splits: Sequence[str]) -> str:
  """Name of the task's main metric among the '{split}/{metric}' results of `eval_splits` (e.g. 'validation/f1')."""
  return glue_tasks.get_task(task).main_metric_key(eval_splits)


def main_score(task: str, outputs: np.ndarray, labels: np.ndarray) -> Tuple[str, float]:
  """(the task's main metric, its value) on one split; `outputs` and `labels` as for `compute_metrics`."""
  name = glue_tasks.get_task(task).main_metric
  return name, compute_metrics(task, outputs, labels)[name]


def predictions_from_outputs(task: str, outputs: np.ndarray) -> np.ndarray:
  """Model outputs -> predictions: class ids int64 [N] from logits [N, C]; regression scores float64 [N] as is."""
  outputs = np.asarray(outputs)
  if glue_tasks.get_task(task).is_regression:
    return outputs.reshape(-1).astype(np.float64)
  if outputs.ndim == 2:
    return np.argmax(outputs, axis=-1)
  return outputs.astype(np.int64)  # already class ids


def _correlation(fn, x: np.ndarray, y: np.ndarray) -> float:
  # Correlation with a constant is undefined (scipy gives NaN); a constant predictor carries no information, so
  # score it 0 as sklearn's matthews_corrcoef does, which keeps best-checkpoint comparisons well defined.
  if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return 0.0
  return float(fn(x, y)[0])


def compute_metrics(task: str, outputs: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """GLUE metrics of one evaluation split.

  Args:
    task: GLUE task name ('cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli').
    outputs: logits float [N, num_labels] or class ids int [N] (classification); scores float [N] (STS-B).
    labels: int [N] class ids, or float [N] similarity scores for STS-B.
  Returns:
    {metric name: float} with the task's metrics (glue_tasks), 'combined_score' for two-metric tasks, and
    'num_examples'.
  """
  names = glue_tasks.get_task(task).metrics
  preds = predictions_from_outputs(task, outputs)
  labels = np.asarray(labels).reshape(-1)
  if len(preds) != len(labels):
    raise ValueError(f'{len(preds)} predictions for {len(labels)} labels.')
  out: Dict[str, float] = {}
  for name in names:
    if name == glue_tasks.ACCURACY:
      out[name] = float(skm.accuracy_score(labels, preds)) if len(labels) else 0.0
    elif name == glue_tasks.F1:
      out[name] = float(skm.f1_score(labels, preds, pos_label=1, average='binary', zero_division=0))
    elif name == glue_tasks.MATTHEWS:
      out[name] = float(skm.matthews_corrcoef(labels, preds)) if len(labels) else 0.0
    elif name == glue_tasks.PEARSON:
      out[name] = _correlation(stats.pearsonr, preds, labels.astype(np.float64))
    elif name == glue_tasks.SPEARMAN:
      out[name] = _correlation(stats.spearmanr, preds, labels.astype(np.float64))
    else:
      raise ValueError(f'No implementation of metric {name!r} (task {task!r}).')
  if len(names) > 1:
    out['combined_score'] = float(np.mean([out[n] for n in names]))
  out['num_examples'] = float(len(labels))
  return out
