"""Few-shot probing of a frozen BERT encoder: support-set sampling, feature extraction, a closed-form ridge probe
whose regulariser is chosen by cross-validation on the support set, scoring, and the results table (the figure is
`projects.bert.fewshot.plot`).

Each split is embedded once per checkpoint; every shot count, seed and regulariser then reuses those features (as
Scenic and big_vision do too: their few-shot evaluators embed each task's train and eval sets once per evaluation,
then solve every shot count and regulariser on those features; Scenic's protocol is `projects.bert.fewshot.scenic`).
The probe is ridge regression onto +-1 one-hot targets with an unpenalised intercept, solved through one thin SVD of
the centred support features, which gives the fit and the exact held-out predictions of
leave-one-example-per-class-out for every regulariser at once, and works in the dual when there are fewer examples
than feature dimensions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from core import evaluation
from core import sharding as sharding_lib
from projects.bert.models import modeling

# 'nsp': the next-sentence head's pre-logits (what Scenic's few-shot evaluator probes); see `nsp_pre_logits`.
FEATURES = ('pooled', 'mean', 'nsp')

# ---------------------------------------------------------------------------------------------------------------
# Support sets.


def sample_support(labels: np.ndarray, k: int, seed: int, num_classes: Optional[int] = None) -> np.ndarray:
  """Indices into `labels` (int [n]) of exactly `k` examples of each class, drawn without replacement.

  Returns int64 [k * num_classes], grouped by class. Support sets are nested: for one seed the k-shot set is
  contained in the 2k-shot set (each class is permuted once per seed and its first k are taken), so the curve
  over shots shows the effect of more data rather than of another draw.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'Support sampling needs integer class labels of shape [n]; got {labels.dtype} {labels.shape}.')
  num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
  rng = np.random.default_rng(seed)
  picked = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    if len(members) < k:
      raise ValueError(f'Class {c} has {len(members)} examples in the train pool, fewer than k={k}: raise '
                       f'train_pool_size or drop this shot count.')
    picked.append(members[rng.permutation(len(members))[:k]])
  return np.concatenate(picked).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Features.


def nsp_pre_logits(nsp_head: Optional[Mapping[str, Any]], sequence: jax.Array, pooled: jax.Array) -> jax.Array:
  """The input of the next-sentence head's final classification layer, [batch, hidden] float32, from
  sequence [batch, seq, hidden] and pooled [batch, hidden], keyed on the structure of the head's parameters:

    {'kernel', 'bias'}                 one dense layer on the encoder's pooled output (google-research/bert,
                                       Hugging Face): the pre-logits are the pooled output;
    {'pooler_dense': {...}, ...}       Model Garden's ClassificationHead (`next_sentence`): tanh of its own dense
                                       layer on [CLS] (its dropout is off when embedding);
    {'dense': {...}, 'output_projection'}  Scenic's head (nsp_head='scenic_head'): tanh of its second dense layer
                                       on the pooled output, exactly Scenic's next_sentence_prediction_head/pre_logits;
    None                               an encoder without the head's parameters: the pooled output, which is what
                                       the one-dense head reads (the caller refuses architectures with another head).
  """
  if nsp_head is not None and 'pooler_dense' in nsp_head:
    dense = nsp_head['pooler_dense']
    cls = sequence[:, 0].astype(jnp.float32)
    return jnp.tanh(cls @ dense['kernel'].astype(jnp.float32) + dense['bias'].astype(jnp.float32))
  if nsp_head is not None and 'output_projection' in nsp_head:
    dense = nsp_head['dense']
    return jnp.tanh(pooled.astype(jnp.float32) @ dense['kernel'].astype(jnp.float32) + dense['bias'])
  if nsp_head is not None and 'kernel' not in nsp_head:
    raise ValueError(f'Unknown next-sentence head structure {sorted(nsp_head)}: expected kernel/bias (one dense on '
                     f'the pooler), pooler_dense/logits (Model Garden\'s ClassificationHead) or '
                     f'dense/output_projection (Scenic\'s).')
  return pooled.astype(jnp.float32)


def encoder_features(sequence: jax.Array, pooled: jax.Array, input_mask: jax.Array, feature: str,
                     nsp_head: Optional[Mapping[str, Any]] = None) -> jax.Array:
  """'pooled' (the tanh pooler over [CLS]), 'mean' (the sequence averaged over real tokens) or 'nsp' (the
  next-sentence head's pre-logits, `nsp_pre_logits`) -> [batch, hidden] float32, from sequence [batch, seq, hidden],
  pooled [batch, hidden], input_mask int [batch, seq] and the next-sentence head's parameters (for 'nsp').
  """
  if feature == 'pooled':
    return pooled.astype(jnp.float32)
  if feature == 'mean':
    m = input_mask.astype(jnp.float32)[..., None]
    return (sequence.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
  if feature == 'nsp':
    return nsp_pre_logits(nsp_head, sequence, pooled)
  raise ValueError(f'Unknown few-shot feature {feature!r}; use one of {FEATURES}.')


def make_feature_fn(model_config: Mapping[str, Any], features: Sequence[str], mesh: Mesh
                    ) -> Callable[[Any, Dict], jax.Array]:
  """Returns jitted `fn(params, batch) -> [batch, len(features) * hidden] float32` (replicated): the `features`
  side by side, from one forward pass of the encoder. `params` holds 'bert' (the encoder of any BERT model) and,
  for 'nsp', the model's 'nsp_head' when it has one; `batch` holds global input_ids, input_mask and segment_ids
  [batch, seq]. Parameters keep whatever sharding they come with (a pretraining state's included). The function
  is cached per architecture, features and mesh, so evaluating another checkpoint compiles nothing;
  `split_features` takes the result apart.
  """
  features = (features,) if isinstance(features, str) else tuple(features)
  for feature in features:
    if feature not in FEATURES:
      raise ValueError(f'Unknown few-shot feature {feature!r}; use one of {FEATURES}.')
  return _feature_fn(modeling.BertConfig.from_model_config(model_config), features, mesh)


@functools.lru_cache(maxsize=16)
def _feature_fn(bert_config: modeling.BertConfig, features: Tuple[str, ...], mesh: Mesh
                ) -> Callable[[Any, Dict], jax.Array]:
  encoder = modeling.BertEncoder(bert_config)

  def fn(params, batch):
    sequence, pooled = encoder.apply({'params': params['bert']}, batch['input_ids'], batch['input_mask'],
                                     batch['segment_ids'], train=False)
    return jnp.concatenate([encoder_features(sequence, pooled, batch['input_mask'], f, params.get('nsp_head'))
                            for f in features], axis=-1)

  return jax.jit(fn, out_shardings=sharding_lib.replicated(mesh))


def feature_params(params: Mapping[str, Any], features: Sequence[str]) -> Dict[str, Any]:
  """The parts of a BERT model's parameters that `make_feature_fn`'s function reads: 'bert', and 'nsp_head' when
  'nsp' is among `features` and the model has one."""
  out = {'bert': params['bert']}
  if 'nsp' in features and 'nsp_head' in params:
    out['nsp_head'] = params['nsp_head']
  return out


def split_features(x: np.ndarray, features: Sequence[str]) -> Dict[str, np.ndarray]:
  """[n, len(features) * hidden] -> {feature: [n, hidden]}."""
  return dict(zip(features, np.split(np.asarray(x, np.float32), len(features), axis=-1)))


def encoder_init_fn(model_config: Mapping[str, Any]) -> Callable[[jax.Array], Any]:
  """`fn(rng) -> encoder params` (the 'bert' subtree of every BERT model); jitted, cached per architecture."""
  return _init_fn(modeling.BertConfig.from_model_config(model_config))


@functools.lru_cache(maxsize=16)
def _init_fn(bert_config: modeling.BertConfig) -> Callable[[jax.Array], Any]:
  encoder = modeling.BertEncoder(bert_config)
  ids = jnp.zeros((1, 8), jnp.int32)
  return jax.jit(lambda rng: encoder.init(rng, ids, ids, ids, train=False)['params'])


def init_encoder_params(model_config: Mapping[str, Any], rng: jax.Array) -> Any:
  """Randomly initialised encoder parameters, as numpy arrays."""
  return jax.device_get(encoder_init_fn(model_config)(rng))


def extract_features(feature_fn: Callable, params: Any, batches: Iterable[Dict[str, np.ndarray]], mesh: Mesh,
                     keep: Sequence[str] = ('label_ids',)) -> Dict[str, np.ndarray]:
  """One pass of `feature_fn` over `batches`: {'features': [n, width] float32 (`split_features` takes several
  apart), and the `keep` fields [n, ...]}, padding rows (batch_mask 0) removed, in input order, on every process.
  """
  out = evaluation.gather_predictions(feature_fn, params, batches, mesh, keep=tuple(keep))
  out['features'] = np.asarray(out.pop('outputs'), np.float32)
  return out


# ---------------------------------------------------------------------------------------------------------------
# The ridge probe.


def one_hot_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """int [n] -> float64 [n, num_classes] with +1 for the class and -1 elsewhere."""
  return np.where(np.arange(num_classes)[None, :] == np.asarray(labels)[:, None], 1.0, -1.0)


@dataclasses.dataclass
class RidgeSolver:
  """Ridge regression with an unpenalised intercept for every regulariser at once, from one thin SVD.

  With xc = x - mean(x) = U S V^T and tc = t - mean(t), the fit for regulariser l is w = V diag(s / (s^2 + l)) U^T tc,
  b = mean(t) - mean(x) w, and the hat matrix (fitted = H t) is H = 11^T / n + U diag(s^2 / (s^2 + l)) U^T. Held-out
  predictions for any fold B then need no refit: the residuals of B under the fit on the other examples are
  (I - H_BB)^-1 r_B, with r = t - H t the in-sample residuals. One SVD of the n x d support matrix serves every
  regulariser, whether n < d (the dual regime of few-shot probes) or not.
  """

  x_mean: np.ndarray  # [d]
  t_mean: np.ndarray  # [c]
  u: np.ndarray  # [n, r]
  s: np.ndarray  # [r]
  vt: np.ndarray  # [r, d]
  utt: np.ndarray  # [r, c] = U^T tc
  targets: np.ndarray  # [n, c]
  # I - 11^T/n - U U^T [n, n]: the part of I - H that does not depend on the regulariser (0 when the examples span
  # n - 1 dimensions). Kept apart so that I - H loses no precision when H is close to I (tiny regularisers).
  residual_projector: np.ndarray

  @classmethod
  def fit(cls, x: np.ndarray, targets: np.ndarray) -> 'RidgeSolver':
    """x [n, d], targets [n, c] (computed in float64)."""
    x = np.asarray(x, np.float64)
    targets = np.asarray(targets, np.float64)
    n = x.shape[0]
    x_mean, t_mean = x.mean(0), targets.mean(0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(x.shape) * np.finfo(np.float64).eps  # drop null directions
    u, s, vt = u[:, keep], s[keep], vt[keep]
    rest = np.eye(n) - 1.0 / n - u @ u.T
    return cls(x_mean=x_mean, t_mean=t_mean, u=u, s=s, vt=vt, utt=u.T @ (targets - t_mean), targets=targets,
               residual_projector=rest)

  def weights(self, l2: float) -> Tuple[np.ndarray, np.ndarray]:
    """(w [d, c], b [c]) so that predictions are x @ w + b (on uncentred x)."""
    w = self.vt.T @ ((self.s / (self.s ** 2 + l2))[:, None] * self.utt)
    return w, self.t_mean - self.x_mean @ w

  def heldout_predictions(self, l2: float, folds: np.ndarray) -> np.ndarray:
    """[n, c]: the prediction for each example by the probe fitted without its fold.

    `folds` int [num_folds, fold_size] partitions range(n); [[0], [1], ...] is leave-one-out.
    """
    fitted = self.t_mean + self.u @ ((self.s ** 2 / (self.s ** 2 + l2))[:, None] * self.utt)
    residuals = self.targets - fitted
    i_minus_h = self.residual_projector + (self.u * (l2 / (self.s ** 2 + l2))) @ self.u.T
    block = i_minus_h[folds[:, :, None], folds[:, None, :]]  # [folds, m, m]
    heldout_residuals = np.linalg.solve(block, residuals[folds])  # [folds, m, c]
    out = np.empty_like(self.targets)
    out[folds] = self.targets[folds] - heldout_residuals
    return out


def balanced_folds(labels: np.ndarray, num_classes: int) -> Optional[np.ndarray]:
  """Folds [k, num_classes] of a support set with k examples per class: fold j holds the j-th example of each class.

  Holding out one example of every class keeps the rest balanced. Plain leave-one-out would not: refitting the
  intercept without example i tilts it towards the other classes, so every strongly regularised probe predicts i
  wrongly and selection is pushed towards weak regularisation. None when k < 2 (nothing left to fit on).
  """
  by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
  k = len(by_class[0])
  if any(len(m) != k for m in by_class):
    raise ValueError(f'Support set is not balanced: {[len(m) for m in by_class]} examples per class.')
  return None if k < 2 else np.stack(by_class, axis=1)


@dataclasses.dataclass
class RidgeProbe:
  """A fitted linear probe: standardisation (from the support set) then x @ w + b; argmax gives the class."""

  mean: np.ndarray  # [d]
  scale: np.ndarray  # [d]
  w: np.ndarray  # [d, c]
  b: np.ndarray  # [c]
  l2: float
  cv_accuracy: Dict[float, float]  # held-out accuracy on the support set per regulariser (empty when k = 1)

  def scores(self, x: np.ndarray) -> np.ndarray:
    """x [n, d] -> class scores [n, c] float64."""
    return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.w + self.b

  def predict(self, x: np.ndarray) -> np.ndarray:
    """x [n, d] -> predicted classes int64 [n]."""
    return np.argmax(self.scores(x), axis=-1)


def select_l2(solver: RidgeSolver, labels: np.ndarray, l2_regs: Sequence[float], folds: Optional[np.ndarray]
              ) -> Tuple[float, Dict[float, float]]:
  """The regulariser with the best held-out accuracy over `folds`; ties go to the lower held-out squared error,
  then to the larger regulariser. Without folds (one example per class) the largest regulariser, whose probe tends
  to the class-mean-difference (prototype) classifier, the safe choice with nothing to validate on.
  Returns (l2, {l2: held-out accuracy}).
  """
  if folds is None:
    return float(max(l2_regs)), {}
  acc, mse = {}, {}
  for l2 in map(float, l2_regs):
    pred = solver.heldout_predictions(l2, folds)
    acc[l2] = float(np.mean(pred.argmax(-1) == labels))
    mse[l2] = float(np.mean((pred - solver.targets) ** 2))
  best_acc = max(acc.values())
  tied = [l2 for l2 in acc if acc[l2] == best_acc]
  best_mse = min(mse[l2] for l2 in tied)
  return max(l2 for l2 in tied if mse[l2] <= best_mse * (1 + 1e-9) + 1e-12), acc


def feature_statistics(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(mean [d], scale [d]) that standardise features x [n, d]; constant features get scale 1 (they stay 0)."""
  x = np.asarray(x, np.float64)
  std = x.std(0)
  return x.mean(0), np.where(std > 1e-6, std, 1.0)


def fit_ridge_probe(x: np.ndarray, labels: np.ndarray, num_classes: int, l2_regs: Sequence[float],
                    standardisation: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> RidgeProbe:
  """Fits the probe on a class-balanced support set, features x [n, d] and labels int [n], choosing the regulariser
  among `l2_regs` by leave-one-example-per-class-out on the support set (closed form, no refits).

  Features are standardised with `standardisation` = (mean, scale), or with the support set's own statistics when
  None. The few-shot sweep passes the train pool's: with one example per class the support set's std of every
  feature is half the gap between the two examples, so its standardisation keeps only the signs of the
  differences (1-shot accuracy drops to chance), while unlabelled pool statistics cost nothing and use no labels.
  """
  if not len(l2_regs):
    raise ValueError('l2_regs is empty: give at least one ridge regulariser.')
  x = np.asarray(x, np.float64)
  labels = np.asarray(labels)
  mean, scale = feature_statistics(x) if standardisation is None else standardisation
  solver = RidgeSolver.fit((x - mean) / scale, one_hot_targets(labels, num_classes))
  l2, cv_acc = select_l2(solver, labels, l2_regs, balanced_folds(labels, num_classes))
  w, b = solver.weights(l2)
  return RidgeProbe(mean=mean, scale=scale, w=w, b=b, l2=l2, cv_accuracy=cv_acc)


# ---------------------------------------------------------------------------------------------------------------
# The sweep over shots and seeds.


@dataclasses.dataclass
class TaskFeatures:
  """One task embedded once: the train pool's features and labels and each eval split's."""

  task: str
  num_classes: int
  train_features: np.ndarray  # [pool, hidden] float32
  train_labels: np.ndarray  # [pool] int
  eval_features: Dict[str, np.ndarray]  # split -> [n, hidden]
  eval_labels: Dict[str, np.ndarray]  # split -> [n]


ScoreFn = Callable[[str, np.ndarray, np.ndarray], Tuple[str, float]]


def accuracy_score(task: str, predictions: np.ndarray, labels: np.ndarray) -> Tuple[str, float]:
  """(metric name, value): the fallback metric when a task has no entry in the GLUE metric table."""
  del task
  return 'accuracy', float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def fewshot_sweep(data: TaskFeatures, shots: Sequence[int], seeds: Sequence[int], l2_regs: Sequence[float],
                  score_fn: ScoreFn = accuracy_score) -> Dict[str, Dict[str, Any]]:
  """Fits a probe per (k, seed) on the embedded pool and scores every eval split.

  Returns {split: {'metric': name, 'shots': {k: {'mean', 'std', 'per_seed', 'l2'}}}}, std over seeds (ddof 0).
  Non-finite features (a diverged checkpoint) give NaN scores rather than an error, so that a periodic evaluation
  never stops a training run; the train loop skips non-finite values when it writes them.
  """
  finite = np.isfinite(data.train_features).all() and all(np.isfinite(f).all() for f in data.eval_features.values())
  standardisation = feature_statistics(data.train_features) if finite else None
  metric = {split: score_fn(data.task, y, y)[0] for split, y in data.eval_labels.items()}
  out: Dict[str, Dict[str, Any]] = {split: {'metric': metric[split], 'shots': {}} for split in data.eval_features}
  for k in shots:
    scores: Dict[str, List[float]] = {split: [] for split in data.eval_features}
    chosen = []
    for seed in seeds:
      if not finite:
        for split in scores:
          scores[split].append(float('nan'))
        continue
      idx = sample_support(data.train_labels, int(k), int(seed), data.num_classes)
      probe = fit_ridge_probe(data.train_features[idx], data.train_labels[idx], data.num_classes, l2_regs,
                              standardisation)
      chosen.append(probe.l2)
      for split, feats in data.eval_features.items():
        scores[split].append(score_fn(data.task, probe.predict(feats), data.eval_labels[split])[1])
    for split, values in scores.items():
      out[split]['shots'][int(k)] = {'mean': float(np.mean(values)), 'std': float(np.std(values)),
                                     'per_seed': [float(v) for v in values], 'l2': chosen}
  return out


# Results are "entries": {key: {'task', 'split', 'metric', 'shots': {k: {'mean', 'std', 'per_seed', 'l2'}}}}, keyed by
# the task for its main eval split and '{task}_{split}' for the others.


def flat_scalars(entries: Mapping[str, Mapping[str, Any]]) -> Dict[str, float]:
  """{'{key}/{k}shot': mean over seeds}, e.g. {'sst2/8shot': 0.71, 'mnli_mismatched/8shot': 0.40}."""
  return {f'{key}/{k}shot': float(r['mean']) for key, e in entries.items() for k, r in e['shots'].items()}


def format_table(entries: Mapping[str, Mapping[str, Any]]) -> str:
  """A text table: a row per entry, a 'mean+-std' column (in %) per shot count."""
  shots = sorted({int(k) for e in entries.values() for k in e['shots']})
  head = ['task', 'metric'] + [f'{k}-shot' for k in shots]
  rows = []
  for key, e in entries.items():
    cells = [key, e['metric']]
    for k in shots:
      r = e['shots'].get(k, e['shots'].get(str(k)))
      cells.append('-' if r is None else f"{100 * r['mean']:.1f}+-{100 * r['std']:.1f}")
    rows.append(cells)
  widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
  fmt = lambda cells: '  '.join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
  return '\n'.join([fmt(head), fmt(['-' * w for w in widths])] + [fmt(r) for r in rows])


def with_task_means(scalars: Dict[str, float], entries: Mapping[str, Mapping[str, Any]]) -> Dict[str, float]:
  """`scalars` (`flat_scalars` of `entries`) with 'mean/{k}shot', the mean over tasks (their main splits: the
  entries keyed by the task), added when there are several tasks."""
  mains = [e for key, e in entries.items() if key == e['task']]
  if len(mains) > 1:
    for k in sorted({k for e in mains for k in e['shots']}):
      values = [e['shots'][k]['mean'] for e in mains if k in e['shots']]
      scalars[f'mean/{k}shot'] = float(np.mean(values))
  return scalars
