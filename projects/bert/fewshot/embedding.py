"""The embedding pass: each task's train pool and eval splits (`projects.bert.fewshot.inputs`) embedded once per
checkpoint, in one jitted batched forward that computes every feature the selected protocols probe side by side;
then every protocol's probes (ours: `probes.fewshot_sweep`; Scenic's: `scenic.scenic_fewshot`), for every shot
count, seed and regulariser, reuse those features (Scenic re-embeds the train split for each, which is what makes
it slow).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import ml_collections
import numpy as np
from jax.sharding import Mesh

from projects.bert.fewshot import probes, scenic
from projects.bert.fewshot.inputs import TaskInputs, needed_features, protocols
from projects.bert.tasks import glue_metrics


def embed_task(feature_fn: Callable, params: Any, inputs: TaskInputs, mesh: Mesh, features: Sequence[str]
               ) -> Dict[str, probes.TaskFeatures]:
  """One forward pass over the task's pool and eval splits -> {feature: features and labels (padding removed)},
  for `features` as `feature_fn` (`probes.make_feature_fn`) computes them side by side."""
  train = probes.extract_features(feature_fn, params, inputs.train_batches, mesh)
  evals = {split: probes.extract_features(feature_fn, params, batches, mesh)
           for split, batches in inputs.eval_batches.items()}
  train_x = probes.split_features(train['features'], features)
  eval_x = {split: probes.split_features(e['features'], features) for split, e in evals.items()}
  return {f: probes.TaskFeatures(
      task=inputs.task, num_classes=inputs.num_classes, train_features=train_x[f], train_labels=train['label_ids'],
      eval_features={s: x[f] for s, x in eval_x.items()}, eval_labels={s: e['label_ids'] for s, e in evals.items()})
      for f in features}


def scenic_task_name(task: str, split: str, num_splits: int) -> str:
  """Scenic's name of a task's eval split: the task, or '{task}_{split}' when it has several (mnli_matched)."""
  return task if num_splits == 1 else f'{task}_{split}'


def evaluate_encoder(fs: ml_collections.ConfigDict, feature_fn: Callable, params: Any, inputs: Sequence[TaskInputs],
                     mesh: Mesh) -> Tuple[Dict[str, Dict[str, Any]], Optional[Dict[str, Any]], Dict[str, Any]]:
  """Embeds every task once (every feature the protocols need, in one pass) and runs the selected protocols on
  those features. Returns (entries, scenic, timings): entries (our protocol; {} when not selected) keyed by task
  (main split) or '{task}_{split}', each {'task', 'split', 'metric', 'majority', 'shots': {k: {'mean', 'std',
  'per_seed', 'l2'}}} ('majority': the metric of always predicting the pool's most frequent class); scenic
  (`scenic.scenic_fewshot`'s result, or None; its 'splits' {Scenic's name: {'task', 'split', 'majority'}}, the
  majority-class accuracy as Scenic scores accuracy); timings {'embed_s', 'probe_s', 'scenic_s', 'embedded_examples'}.
  """
  selected, features = protocols(fs), needed_features(fs)
  entries: Dict[str, Dict[str, Any]] = {}
  scenic_tasks: Dict[str, scenic.TaskData] = {}
  scenic_splits: Dict[str, Dict[str, Any]] = {}  # Scenic's name of each eval split -> its task, split, majority
  timings: Dict[str, Any] = {'embed_s': 0.0, 'probe_s': 0.0, 'scenic_s': 0.0, 'embedded_examples': 0}
  seeds = list(range(int(fs.num_seeds)))
  for task in inputs:
    t0 = time.perf_counter()
    by_feature = embed_task(feature_fn, params, task, mesh, features)
    timings['embed_s'] += time.perf_counter() - t0
    timings['embedded_examples'] += task.train_size + sum(task.eval_sizes.values())
    if 'ours' in selected:
      t0 = time.perf_counter()
      data = by_feature[fs.feature]
      by_split = probes.fewshot_sweep(data, [int(k) for k in fs.shots], seeds, [float(x) for x in fs.l2_regs],
                                      score_fn=glue_metrics.main_score)
      timings['probe_s'] += time.perf_counter() - t0
      majority = int(np.bincount(data.train_labels, minlength=task.num_classes).argmax())
      for split, result in by_split.items():
        labels = data.eval_labels[split]
        base = glue_metrics.main_score(task.task, np.full_like(labels, majority), labels)[1]
        entries[task.entry_key(split)] = {'task': task.task, 'split': split, 'majority': base, **result}
    if 'scenic' in selected:
      data = by_feature[fs.scenic.feature]
      evals = {scenic_task_name(task.task, split, len(data.eval_features)): (x, data.eval_labels[split])
               for split, x in data.eval_features.items()}
      scenic_tasks[task.task] = (data.train_features, data.train_labels, task.num_classes, evals)
      majority = int(np.bincount(data.train_labels, minlength=task.num_classes).argmax())
      for split in data.eval_features:
        labels = np.asarray(data.eval_labels[split])
        scenic_splits[scenic_task_name(task.task, split, len(data.eval_features))] = {
            'task': task.task, 'split': split, 'majority': float(np.mean(labels == majority)) if len(labels) else None}
  scenic_result = None
  if scenic_tasks:
    t0 = time.perf_counter()
    scenic_result = scenic.scenic_fewshot(scenic_tasks, [int(k) for k in fs.scenic.shots],
                                          [float(x) for x in fs.scenic.l2_regs], int(fs.scenic.seed))
    timings['scenic_s'] = time.perf_counter() - t0
    scenic_result['splits'] = scenic_splits
  return entries, scenic_result, timings
