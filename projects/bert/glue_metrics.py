"""GLUE's official metric for each task, computed on the host with scikit-learn and scipy.

Which metrics a task reports is a task fact (`datasets.glue_tasks.GLUE_TASKS[task].metrics`):

  cola            Matthews correlation                       main: matthews_corr
  mrpc, qqp       accuracy and F1 of the positive class (1)  main: f1 (the number the BERT paper reports)
  stsb            Pearson and Spearman correlation           main: spearman (the number the BERT paper reports)
  mnli            accuracy, on each eval split               main: accuracy on the matched split (the trainer
                                                             prefixes metrics with their split; see MAIN_SPLIT)
  sst2, qnli, rte, wnli  accuracy                            main: accuracy

`combined_score` (the mean of a task's metrics, GLUE's per-task leaderboard number) is added for tasks with two.
AX has no public labels: it is only predicted (MNLI's test split 'ax'), never scored here.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from projects.bert.datasets import glue_tasks

# The metric that selects the best checkpoint (higher is better for all of them). This is selection policy, not a
# task fact, so it lives here rather than in the task table.
MAIN_METRIC: Dict[str, str] = {
    'cola': glue_tasks.MATTHEWS, 'sst2': glue_tasks.ACCURACY, 'mrpc': glue_tasks.F1, 'qqp': glue_tasks.F1,
    'stsb': glue_tasks.SPEARMAN, 'mnli': glue_tasks.ACCURACY, 'qnli': glue_tasks.ACCURACY,
    'rte': glue_tasks.ACCURACY, 'wnli': glue_tasks.ACCURACY,
}
# For tasks with several eval splits, the split whose main metric selects the checkpoint: MNLI's matched dev set is
# the one the BERT paper and GLUE baselines select on (mismatched is reported, not tuned on).
MAIN_SPLIT: Dict[str, str] = {'mnli': 'matched'}


def main_metric_key(task: str, eval_splits) -> str:
  """Name of the selection metric in the trainer's flat results, '{split}/{metric}' (e.g. 'validation/f1')."""
  task_obj = glue_tasks.get_task(task)
  splits = list(eval_splits)
  split = MAIN_SPLIT.get(task_obj.name, splits[0])
  if split not in splits:
    split = splits[0]
  return f'{split}/{MAIN_METRIC[task_obj.name]}'


def main_score(task: str, outputs: np.ndarray, labels: np.ndarray) -> Tuple[str, float]:
  """(the task's main metric, its value) on one split; `outputs` and `labels` as for `compute_metrics`."""
  name = MAIN_METRIC[glue_tasks.get_task(task).name]
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
