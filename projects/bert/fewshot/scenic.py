"""Few-shot GLUE as Scenic reports it (google-research/scenic `projects/baselines/bert`: its `glue_fewshot` config
and `BERTFewShotEvaluator`, big_vision's linear few-shot evaluator), on features embedded once.

The protocol, per evaluation:
  - features: the next-sentence head's pre-logits (`fewshot.nsp_pre_logits`);
  - tasks: sst2, mnli_matched, mnli_mismatched (Scenic's names; ours: the task, or '{task}_{split}' for MNLI);
  - support sets: one draw per shot count k, the first k examples of each class of the train stream (`draw`):
    'stream' (default) restates Scenic's stream, the train records in file order through a shuffle buffer of 100
    (`shuffle_buffer_order`), one stream per eval split as Scenic builds one dataset per task name;
    'permutation' (this module's earlier draw) reads the pool in one uniform permutation shared by a task's splits;
  - probe: features standardised with the support set's mean and std (+1e-5), a constant bias column of 100 (so the
    bias is regularised only 1/100^2 as much), +-1 one-hot targets, ridge regression (X^T X + l2 I) w = X^T Y,
    solved (`solve`) in float32 by LU on the CPU as Scenic does ('float32', default) or exactly ('float64');
  - regulariser: one per shot count, among 2^-10 ... 2^19, the best mean rank of the eval-set accuracy across the
    tasks. It is chosen ON THE EVAL SETS, so the reported accuracies are optimistic; our protocol
    (`projects.bert.fewshot.probes`) chooses it on the support set alone;
  - reported: accuracy (every task, whatever its GLUE metric) as `z/{task}_{k}shot` at the chosen regulariser,
    `z/best_l2_for_{k}shot_eval`, every (k, l2) as `zz/{task}_{k}shot_l2={l2}`, and the headline `a/sst2_100shot`.

What Scenic's code does (train_utils.py BERTFewShotEvaluator; datasets/bert_glue_dataset.py): it embeds the whole
train split through its training iterator, a TFRecordDataset in file order, `shuffle(100)` without a seed, then
repeat and batch; `np.where(labels == c)[0][:k]` then takes the first k of each class in the order the iterator
gave them. So a support set is the first k per class of the file read through a 100-record shuffle buffer: nearly
file order. 'stream' restates that draw with numpy's PCG64 as the buffer's random source, seeded by
(seed, crc32(eval split name)) (`stream_seed`; seed is Scenic's few-shot rng_seed, 42, which Scenic itself does not
pass to the shuffle): the same distribution as Scenic's draw, fixed and reproducible, where Scenic's changes with
TF's unseeded RNG. Where it still differs: Scenic's iterator is kept between evaluations, so its later evaluations
read the stream further (later epochs); here every evaluation uses the first pass, so a curve over pretraining steps
shows the encoder changing, not the draw. Only the first `train_pool_size` records are read: a class with fewer than
k there is an error (raise the pool), where Scenic reads on. Scenic also evaluates after step 1 (step % 50k == 1);
the evaluator here runs every `every` steps and after the last.

The float64 solve ('float64') gets every regulariser from one decomposition of the support matrix: with
X = U S V^T, w(l2) = V diag(s / (s^2 + l2)) U^T Y, the exact solution of Scenic's normal equations (X^T Y lies in
the span of V, and X^T X + l2 I is V (S^2 + l2) V^T there); with more examples than columns, the same from the
eigendecomposition of X^T X. Scenic's float32 normal equations are ill-conditioned at small regularisers (768-d
features, a few examples): there the two differ by many points of accuracy, and the float32 numbers are Scenic's.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

# The protocol's constants live apart so that configs read them without this module's imports.
from projects.bert.fewshot.scenic_protocol import (BIAS_CONSTANT, DRAWS, HEADLINE, L2_REGS, SEED, SHOTS,
                                                   SHUFFLE_BUFFER, SOLVES, STD_EPS)


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


def shuffle_buffer_order(n: int, seed: Any, buffer_size: int = SHUFFLE_BUFFER) -> np.ndarray:
  """The order in which a shuffle buffer of `buffer_size` (tf.data's `shuffle`) emits records 0 ... n-1 read in
  file order: the buffer is filled, a uniformly chosen record leaves it and the next record takes its slot, until
  the input ends and the buffer drains. int64 [n]; `seed` seeds numpy's generator (the buffer's random source)."""
  rng = np.random.default_rng(seed)
  buffer, next_record, out = list(range(min(buffer_size, n))), min(buffer_size, n), []
  while buffer:
    j = int(rng.integers(len(buffer)))
    out.append(buffer[j])
    if next_record < n:
      buffer[j], next_record = next_record, next_record + 1
    else:
      buffer[j] = buffer[-1]
      buffer.pop()
  return np.asarray(out, np.int64)


def stream_seed(seed: int, eval_name: str) -> List[int]:
  """The seed of eval split `eval_name`'s shuffle stream: Scenic builds one train iterator per task name, so
  mnli_matched and mnli_mismatched draw their support sets from two streams."""
  return [int(seed), zlib.crc32(eval_name.encode())]


@jax.jit
def _float32_accuracy(x, targets, x_eval, y_eval, l2):
  """Scenic's `_fewshot_acc_fn` arithmetic, in float32: standardise with the support set's mean and std, bias
  column, LU solve of the normal equations, argmax accuracy."""
  mean, std = jnp.mean(x, 0, keepdims=True), jnp.std(x, 0, keepdims=True) + STD_EPS
  prep = lambda f: jnp.pad((f - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS_CONSTANT)  # noqa: E731
  a = prep(x)
  w = jnp.linalg.solve(a.T @ a + jnp.eye(a.shape[1], dtype=a.dtype) * l2, a.T @ targets)
  return jnp.mean(jnp.argmax(prep(x_eval) @ w, axis=1) == y_eval)


def ridge_accuracies_float32(x: np.ndarray, labels: np.ndarray, num_classes: int, evals: Mapping[str, Tuple[
                             np.ndarray, np.ndarray]], l2_regs: Sequence[float]) -> Dict[str, np.ndarray]:
  """`ridge_accuracies` solved as Scenic solves it: float32, one LU solve per regulariser, on the CPU (Scenic jits
  its solve with backend='cpu'). {name: accuracy float64 [len(l2_regs)]}."""
  cpu = jax.devices('cpu')[0]
  put = lambda a, dtype=jnp.float32: jax.device_put(np.asarray(a, dtype), cpu)  # noqa: E731
  targets = np.where(np.arange(num_classes)[None, :] == np.asarray(labels)[:, None], 1.0, -1.0)
  xs, ts = put(x), put(targets)
  out = {}
  for name, (feats, y) in evals.items():
    fe, ye = put(feats), put(y, np.int32)
    out[name] = np.asarray([float(_float32_accuracy(xs, ts, fe, ye, put(l2))) for l2 in l2_regs], np.float64)
  return out


def feature_source(nsp_head: Optional[Mapping[str, Any]], feature: str = 'nsp') -> str:
  """What stands for Scenic's feature when the protocol probes `feature` with these head parameters, in words, for
  logs and results: Scenic's exact feature (its head's pre_logits), which stand-in `probes.nsp_pre_logits` reads on
  a model without Scenic's head, or another feature than Scenic's."""
  if feature != 'nsp':
    return f"{feature} (not Scenic's: its protocol probes the next-sentence head's pre-logits, feature 'nsp')"
  if nsp_head is not None and 'output_projection' in nsp_head:
    return "scenic_head: Scenic's next_sentence_prediction_head/pre_logits (its second dense + tanh), exact"
  if nsp_head is not None and 'pooler_dense' in nsp_head:
    return ("stand-in: Model Garden's next_sentence head dense + tanh on [CLS] (one layer; Scenic's head has two, "
            "pre_logits after the second)")
  return ("stand-in: the encoder's pooled output (dense + tanh on [CLS], which plays Scenic's first head layer; "
          "Scenic's pre_logits come after a second)")


def feature_label(nsp_head: Optional[Mapping[str, Any]], feature: str = 'nsp') -> str:
  """`feature_source` in a few words, for a figure's legend and a run's last line."""
  if feature != 'nsp':
    return f"{feature}, not Scenic's"
  if nsp_head is not None and 'output_projection' in nsp_head:
    return "nsp: Scenic's head pre-logits"
  if nsp_head is not None and 'pooler_dense' in nsp_head:
    return "nsp stand-in: Model Garden's head"
  return 'nsp stand-in: encoder pooler'


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
                   seed: int = SEED, draw: str = 'stream', solve: str = 'float32') -> Dict[str, Any]:
  """Scenic's protocol on embedded tasks.

  `tasks`: {task: (train_features [pool, d], train_labels int [pool], num_classes, {name: (eval_features [m, d],
  eval_labels [m])})}; each eval set named `name` is one of Scenic's tasks (e.g. 'mnli_matched', 'mnli_mismatched'
  sharing MNLI's train pool). `draw` ('stream' or 'permutation') and `solve` ('float32' or 'float64'): see the
  module docstring. Returns {'accuracy': {name: {k: {l2: acc}}}, 'best_l2': {k: l2}, 'z': {name: {k: accuracy at
  best_l2[k]}}, 'support': how the support sets were drawn and solved}. Non-finite features give NaN accuracies (a
  diverged checkpoint does not stop a training run).
  """
  if draw not in DRAWS or solve not in SOLVES:
    raise ValueError(f'Scenic few-shot draw={draw!r}, solve={solve!r}: use draw in {DRAWS} and solve in {SOLVES}.')
  fit = ridge_accuracies_float32 if solve == 'float32' else ridge_accuracies
  acc: Dict[str, Dict[int, Dict[float, float]]] = {}
  for train_x, train_y, num_classes, evals in tasks.values():
    finite = np.isfinite(train_x).all() and all(np.isfinite(f).all() for f, _ in evals.values())
    if draw == 'permutation':
      streams = [(pool_order(len(train_y), seed), evals)]
    else:
      streams = [(shuffle_buffer_order(len(train_y), stream_seed(seed, name)), {name: e}) for name, e in evals.items()]
    for k in shots:
      for order, group in streams:
        if finite:
          idx = first_k_per_class(train_y, int(k), num_classes, order)
          per_eval = fit(train_x[idx], train_y[idx], num_classes, group, l2_regs)
        else:
          per_eval = {name: np.full(len(l2_regs), np.nan) for name in group}
        for name, values in per_eval.items():
          acc.setdefault(name, {})[int(k)] = {float(l2): float(a) for l2, a in zip(l2_regs, values)}
  best: Dict[int, float] = {}
  for k in shots:
    per_task = [np.nan_to_num(np.array([acc[name][int(k)][float(l2)] for l2 in l2_regs]), nan=-1.0) for name in acc]
    best[int(k)] = best_l2_by_mean_rank(per_task, l2_regs)
  z = {name: {int(k): acc[name][int(k)][best[int(k)]] for k in shots} for name in acc}
  support = (f'first k per class of the train pool through a {SHUFFLE_BUFFER}-record shuffle buffer, one stream per '
             f'eval split, seed [{seed}, crc32(split)]' if draw == 'stream' else
             f'first k per class of one seeded permutation of the train pool (seed {seed})')
  return {'accuracy': acc, 'best_l2': best, 'z': z, 'support': {'draw': draw, 'solve': solve, 'how': support}}


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
