"""Few-shot GLUE as Scenic reports it (google-research/scenic `projects/baselines/bert`: its `glue_fewshot` config
and `BERTFewShotEvaluator`, big_vision's linear few-shot evaluator), on features embedded once.

The protocol, per evaluation:
  - features: the next-sentence head's pre-logits (`fewshot.nsp_pre_logits`);
  - tasks: sst2, mnli_matched, mnli_mismatched (Scenic's names; ours: the task, or '{task}_{split}' for MNLI);
  - support sets: one draw per shot count k, the first k examples of each class of the train stream; Scenic's stream
    is its shuffled train iterator, ours the train pool in one fixed permutation (`seed`), the same in every
    evaluation and for every eval split of a task;
  - probe: features standardised with the support set's mean and std (+1e-5), a constant bias column of 100 (so the
    bias is regularised only 1/100^2 as much), +-1 one-hot targets, ridge regression (X^T X + l2 I) w = X^T Y;
  - regulariser: one per shot count, among 2^-10 ... 2^19, the best mean rank of the eval-set accuracy across the
    tasks. It is chosen ON THE EVAL SETS, so the reported accuracies are optimistic; our protocol
    (`projects.bert.fewshot.probes`) chooses it on the support set alone;
  - reported: accuracy (every task, whatever its GLUE metric) as `z/{task}_{k}shot` at the chosen regulariser,
    `z/best_l2_for_{k}shot_eval`, every (k, l2) as `zz/{task}_{k}shot_l2={l2}`, and the headline `a/sst2_100shot`.

Where ours differs from Scenic's code, and why: Scenic reads the whole train split through its training iterator
(tf.data shuffle(100) without a seed, kept between evaluations and separate for mnli_matched and mnli_mismatched),
so its support sets change from one evaluation to the next and are not reproducible; here they come from the first
`train_pool_size` train records in one seeded permutation, the same at every step, so a curve over pretraining
steps shows the encoder changing, not the draw. Scenic also evaluates after step 1 (step % 50k == 1); the
evaluator here runs every `every` steps and after the last. Scenic solves in float32 with JAX; this in float64.

The ridge solution for every regulariser comes from one decomposition of the support matrix: with X = U S V^T,
w(l2) = V diag(s / (s^2 + l2)) U^T Y, the exact solution of Scenic's normal equations (X^T Y lies in the span of V,
and X^T X + l2 I is V (S^2 + l2) V^T there); with more examples than columns, the same from the eigendecomposition
of X^T X. Computed in float64.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

# The protocol's constants live apart so that configs read them without this module's imports.
from projects.bert.fewshot.scenic_protocol import BIAS_CONSTANT, HEADLINE, L2_REGS, SEED, SHOTS, STD_EPS


def first_k_per_class(labels: np.ndarray, k: int, num_classes: int, order: np.ndarray) -> np.ndarray:
  """Indices into `labels` (int [n]) of the first `k` examples of each class when read in `order` (a permutation
  of range(n)), class by class: int64 [k * num_classes]."""
  labels = np.asarray(labels)
  picked = []
  for c in range(num_classes):
    members = order[labels[order] == c]
    if len(members) < k:
      raise ValueError(f'Class {c} has {len(members)} examples in the train pool, fewer than k={k}: raise '
                       f'train_pool_size or drop this shot count.')
    picked.append(members[:k])
  return np.concatenate(picked).astype(np.int64)


def pool_order(n: int, seed: int = SEED) -> np.ndarray:
  """The fixed permutation of a train pool of n examples that stands for Scenic's shuffled train stream."""
  return np.random.default_rng(seed).permutation(n)


def _standardise_with_bias(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  z = (np.asarray(x, np.float64) - mean) / std
  return np.concatenate([z, np.full((len(z), 1), BIAS_CONSTANT)], axis=1)


def ridge_accuracies(x: np.ndarray, labels: np.ndarray, num_classes: int, evals: Mapping[str, Tuple[np.ndarray,
                     np.ndarray]], l2_regs: Sequence[float]) -> Dict[str, np.ndarray]:
  """Scenic's probe fitted on the support set (x [n, d], labels int [n]) for every regulariser, scored on each eval
  set {name: (features [m, d], labels int [m])}: {name: accuracy float64 [len(l2_regs)]}."""
  x = np.asarray(x, np.float64)
  mean, std = x.mean(0), x.std(0) + STD_EPS
  xb = _standardise_with_bias(x, mean, std)
  targets = np.where(np.arange(num_classes)[None, :] == np.asarray(labels)[:, None], 1.0, -1.0)
  # w(l2) = B diag(1 / (eig + l2)) num, with B an orthonormal basis of the row space of xb and eig the eigenvalues
  # of xb^T xb there: from the thin SVD when there are fewer examples than columns, else (cheaper for the
  # 1000-shot sets) from the eigendecomposition of the (d + 1) x (d + 1) Gram matrix.
  if xb.shape[0] < xb.shape[1]:
    u, s, vt = np.linalg.svd(xb, full_matrices=False)
    basis, eig, num = vt.T, s ** 2, s[:, None] * (u.T @ targets)
  else:
    eig, basis = np.linalg.eigh(xb.T @ xb)
    num = basis.T @ (xb.T @ targets)
  out = {}
  for name, (feats, y) in evals.items():
    projected = _standardise_with_bias(feats, mean, std) @ basis  # [m, r]: every regulariser reuses it
    accs = []
    for l2 in l2_regs:
      scores = projected @ (num / (eig + float(l2))[:, None])
      accs.append(np.mean(np.argmax(scores, axis=1) == np.asarray(y)))
    out[name] = np.asarray(accs, np.float64)
  return out


def best_l2_by_mean_rank(accuracies: Sequence[np.ndarray], l2_regs: Sequence[float]) -> float:
  """Scenic's choice of one regulariser for a shot count: each task ranks the regularisers by accuracy
  (0 = worst; equal accuracies ranked in the order of `l2_regs`, a stable sort, where Scenic's unstable one leaves
  the order to numpy), the ranks are averaged over tasks, and the first regulariser of the best mean rank wins."""
  ranks = [np.argsort(np.argsort(np.asarray(a), kind='stable'), kind='stable') for a in accuracies]
  return float(l2_regs[int(np.argmax(np.mean(ranks, axis=0)))])


TaskData = Tuple[np.ndarray, np.ndarray, int, Dict[str, Tuple[np.ndarray, np.ndarray]]]


def scenic_fewshot(tasks: Mapping[str, TaskData], shots: Sequence[int] = SHOTS, l2_regs: Sequence[float] = L2_REGS,
                   seed: int = SEED) -> Dict[str, Any]:
  """Scenic's protocol on embedded tasks.

  `tasks`: {task: (train_features [pool, d], train_labels int [pool], num_classes, {name: (eval_features [m, d],
  eval_labels [m])})}; each eval set named `name` is one of Scenic's tasks (e.g. 'mnli_matched', 'mnli_mismatched'
  sharing MNLI's train pool and support sets). Returns {'accuracy': {name: {k: {l2: acc}}}, 'best_l2': {k: l2},
  'z': {name: {k: accuracy at best_l2[k]}}}. Non-finite features give NaN accuracies (a diverged checkpoint does not
  stop a training run).
  """
  acc: Dict[str, Dict[int, Dict[float, float]]] = {}
  for train_x, train_y, num_classes, evals in tasks.values():
    finite = np.isfinite(train_x).all() and all(np.isfinite(f).all() for f, _ in evals.values())
    order = pool_order(len(train_y), seed)
    for k in shots:
      if finite:
        idx = first_k_per_class(train_y, int(k), num_classes, order)
        per_eval = ridge_accuracies(train_x[idx], train_y[idx], num_classes, evals, l2_regs)
      else:
        per_eval = {name: np.full(len(l2_regs), np.nan) for name in evals}
      for name, values in per_eval.items():
        acc.setdefault(name, {})[int(k)] = {float(l2): float(a) for l2, a in zip(l2_regs, values)}
  best: Dict[int, float] = {}
  for k in shots:
    per_task = [np.nan_to_num(np.array([acc[name][int(k)][float(l2)] for l2 in l2_regs]), nan=-1.0) for name in acc]
    best[int(k)] = best_l2_by_mean_rank(per_task, l2_regs)
  z = {name: {int(k): acc[name][int(k)][best[int(k)]] for k in shots} for name in acc}
  return {'accuracy': acc, 'best_l2': best, 'z': z}


def scalars(result: Mapping[str, Any], headline: Optional[str] = HEADLINE) -> Dict[str, float]:
  """Scenic's TensorBoard names: 'zz/{task}_{k}shot_l2={l2}', 'z/best_l2_for_{k}shot_eval', 'z/{task}_{k}shot' and
  the headline 'a/{headline}' ('{task}_{k}shot') when the evaluation has it."""
  out: Dict[str, float] = {}
  for name, per_k in result['accuracy'].items():
    for k, per_l2 in per_k.items():
      for l2, a in per_l2.items():
        out[f'zz/{name}_{k}shot_l2={l2}'] = a
  for k, l2 in result['best_l2'].items():
    out[f'z/best_l2_for_{k}shot_eval'] = l2
  for name, per_k in result['z'].items():
    for k, a in per_k.items():
      out[f'z/{name}_{k}shot'] = a
  if headline and f'z/{headline}' in out:
    out[f'a/{headline}'] = out[f'z/{headline}']
  return out


def format_table(result: Mapping[str, Any]) -> str:
  """A text table: a row per task, accuracy (%) at the chosen regulariser per shot count, and the regulariser."""
  shots = sorted(result['best_l2'])
  head = ['task'] + [f'{k}-shot' for k in shots]
  rows: List[List[str]] = [[name] + [f'{100 * per_k[k]:.1f}' for k in shots] for name, per_k in result['z'].items()]
  rows.append(['l2 (on eval)'] + [f'2^{np.log2(result["best_l2"][k]):.0f}' for k in shots])
  widths = [max(len(c) for c in col) for col in zip(head, *rows)]
  fmt = lambda cells: '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
  return '\n'.join([fmt(head), fmt(['-' * w for w in widths])] + [fmt(r) for r in rows])
