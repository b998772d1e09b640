"""XTREME's retrieval protocol on sentence embeddings: the reference (numpy, CPU) that an accelerator version is
checked against. It follows google-research/xtreme's third_party/utils_retrieve.py (which uses faiss) with the
settings its scripts run:

  Tatoeba  each source sentence gets its most cosine-similar English sentence (`nearest`).
  BUCC     margin-based mining (Artetxe & Schwenk, 2019), `mine_bitext` with mode 'mine', retrieval 'max', margin
           'ratio', k = 4 neighbours, cosine: embeddings L2-normalised; for source i and English j,
             score(i, j) = cos(i, j) / ((mean cos of i's k nearest English + mean cos of j's k nearest sources) / 2);
           each source's best English among its k nearest and each English's best source among its k nearest are
           candidates; taken in decreasing score, a candidate is kept unless its source or English sentence is
           already in a kept pair. Identical sentences are embedded and mined once (`unique_sentences`). The
           candidates' scores then go through `xtreme_metrics.bucc_candidate_scores` and the dev-set threshold.

Memory stays bounded: neighbours are found block by block (`block` rows of each side at a time, [block, block]
similarities), merging each block's top k, so BUCC's ~400k sentences never need a [n, m] matrix.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

NEIGHBOURS = 4  # xtreme's mine_bitext default `neighborhood`
# knn(x, y, k, block=...) -> (similarities [n, k], indices [n, k]): `knn` below or `xtreme_knn.knn_device`.
_CHUNK = 16384  # rows whose neighbours are gathered at once when scoring
KnnFn = Callable[..., Tuple[np.ndarray, np.ndarray]]


def normalize(x: np.ndarray) -> np.ndarray:
  """Rows scaled to unit L2 norm (all-zero rows stay zero), float32; x: [n, dim]."""
  x = np.asarray(x, np.float32)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norms > 0, norms, 1.0)


def knn(x: np.ndarray, y: np.ndarray, k: int, *, block: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
  """(similarities [n, k] in decreasing order, indices [n, k] into y) of each row of x among the rows of y, by inner
  product (cosine for normalised rows); x: [n, dim], y: [m, dim], k <= m. Ties keep the lower index first."""
  n, m = len(x), len(y)
  if not 0 < k <= m:
    raise ValueError(f'k must be in [1, {m}] (the rows of y); got {k}.')
  sims = np.empty((n, k), np.float32)
  inds = np.empty((n, k), np.int64)
  for start in range(0, n, block):
    xb = x[start:start + block]
    best_s = np.full((len(xb), 0), -np.inf, np.float32)
    best_i = np.empty((len(xb), 0), np.int64)
    for ystart in range(0, m, block):
      s = xb @ y[ystart:ystart + block].T
      cand_s = np.concatenate([best_s, s], axis=1)
      cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(ystart, ystart + s.shape[1]), s.shape)], axis=1)
      # Sort by (-similarity, index): the k best, ties to the lower index, as a stable full sort would give.
      order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
      best_s = np.take_along_axis(cand_s, order, axis=1)
      best_i = np.take_along_axis(cand_i, order, axis=1)
    sims[start:start + len(xb)] = best_s
    inds[start:start + len(xb)] = best_i
  return sims, inds


def nearest(x: np.ndarray, y: np.ndarray, *, block: int = 8192, knn_fn: KnnFn = knn) -> np.ndarray:
  """Index [n] of the most cosine-similar row of y for each row of x (Tatoeba: source -> English line)."""
  return knn_fn(normalize(x), normalize(y), 1, block=block)[1][:, 0]


def unique_sentences(sentences: Sequence[str]) -> Tuple[List[str], np.ndarray]:
  """(the distinct sentences in first-seen order, for each input line the index of its sentence among them)."""
  index: Dict[str, int] = {}
  line_to_unique = np.array([index.setdefault(s, len(index)) for s in sentences], np.int64)
  return list(index), line_to_unique


def _margin_scores(a: np.ndarray, b: np.ndarray, a_inds: np.ndarray, a_mean: np.ndarray,
                   b_mean: np.ndarray) -> np.ndarray:
  """Ratio-margin scores [n, k] of each row of a with its k neighbours `a_inds` among the rows of b."""
  # In chunks of rows: the gathered neighbours [rows, k, dim] of all 400k BUCC sentences would be ~5 GB at once.
  cos = np.concatenate([np.einsum('nd,nkd->nk', a[i:i + _CHUNK], b[a_inds[i:i + _CHUNK]])
                        for i in range(0, len(a), _CHUNK)]) if len(a) else np.zeros(a_inds.shape, np.float32)
  return cos / ((a_mean[:, None] + b_mean[a_inds]) / 2)


def mine(x: np.ndarray, y: np.ndarray, *, k: int = NEIGHBOURS, threshold: float = 0.0,
         block: int = 8192, knn_fn: KnnFn = knn) -> List[Tuple[float, int, int]]:
  """Mined pairs [(score, source row, English row)] in decreasing score (see the module docstring); x: [n, dim]
  source embeddings, y: [m, dim] English embeddings, one row per distinct sentence. Pairs scoring <= `threshold`
  are left out (xtreme mines with 0 and thresholds afterwards). `knn_fn` finds the neighbours (default: numpy)."""
  x, y = normalize(x), normalize(y)
  x2y_sim, x2y_ind = knn_fn(x, y, min(len(y), k), block=block)
  y2x_sim, y2x_ind = knn_fn(y, x, min(len(x), k), block=block)
  x2y_mean, y2x_mean = x2y_sim.mean(axis=1), y2x_sim.mean(axis=1)
  fwd = _margin_scores(x, y, x2y_ind, x2y_mean, y2x_mean)
  bwd = _margin_scores(y, x, y2x_ind, y2x_mean, x2y_mean)
  fwd_best = x2y_ind[np.arange(len(x)), fwd.argmax(axis=1)]
  bwd_best = y2x_ind[np.arange(len(y)), bwd.argmax(axis=1)]
  sources = np.concatenate([np.arange(len(x)), bwd_best])
  targets = np.concatenate([fwd_best, np.arange(len(y))])
  scores = np.concatenate([fwd.max(axis=1), bwd.max(axis=1)])
  kept: List[Tuple[float, int, int]] = []
  seen_sources, seen_targets = set(), set()
  for c in np.argsort(-scores, kind='stable'):  # ties: forward candidates first, then by row
    i, j = int(sources[c]), int(targets[c])
    if i in seen_sources or j in seen_targets:
      continue
    seen_sources.add(i)
    seen_targets.add(j)
    if scores[c] > threshold:
      kept.append((float(scores[c]), i, j))
  return kept


def mine_sentences(x: np.ndarray, y: np.ndarray, source: Sequence[str], target: Sequence[str], *,
                   k: int = NEIGHBOURS, block: int = 8192, knn_fn: KnnFn = knn) -> List[Tuple[float, str, str]]:
  """Mined (score, source sentence, English sentence) candidates of files of sentences (repeats allowed) and their
  embeddings x: [len(source), dim], y: [len(target), dim]; each distinct sentence is mined once, as xtreme unifies
  them. Feed the result to `xtreme_metrics.bucc_candidate_scores`."""
  if len(x) != len(source) or len(y) != len(target):
    raise ValueError(f'{len(x)} / {len(y)} embeddings for {len(source)} / {len(target)} sentences.')
  source_unique, source_rows = unique_sentences(source)
  target_unique, target_rows = unique_sentences(target)
  # The first line of each distinct sentence gives its embedding (identical text, identical embedding).
  x_unique = x[np.unique(source_rows, return_index=True)[1]]
  y_unique = y[np.unique(target_rows, return_index=True)[1]]
  return [(score, source_unique[i], target_unique[j])
          for score, i, j in mine(x_unique, y_unique, k=k, block=block, knn_fn=knn_fn)]
