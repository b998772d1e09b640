"""`xtreme_retrieval`: XTREME's retrieval tasks, BUCC 2018 and Tatoeba, with no fine-tuning: XTREME's baseline
protocol (google-research/xtreme third_party/evaluate_retrieval.py + utils_retrieve.py) on the encoder's weights.

Per language of the records (`prepare xtreme --task=bucc|tatoeba`), each side's sentences are embedded
(`models/hidden_states.py`: one intermediate layer, mean-pooled over the real tokens, layer 7 of 12 by default),
L2-normalised, and
  BUCC     mined (`tasks/xtreme_retrieval.mine_sentences`: ratio margin, k = 4, mode 'mine', retrieval 'max', each
           distinct sentence once); the dev candidates' threshold is `xtreme_metrics.bucc_threshold` against the dev
           gold (xtreme's bucc_optimize) and the test pairs are the test candidates scoring >= that threshold
           (bucc_extract). Dev F1 is scored with the threshold chosen on dev itself (optimistic, and labelled so);
           test F1 only against test gold (`labels_dir`), which xtreme's download deletes.
  Tatoeba  each source sentence's most cosine-similar English line (`nearest`); accuracy against `labels_dir`.
Neighbours are found on the accelerator block by block (`tasks/xtreme_knn.py`): no [n, m] similarity matrix.

Embedding: sentences sorted by length, batches of `batch_size` padded to the next power of two (>= 8, <= the records'
max_seq_length), so a few compiled shapes serve every language and no batch pays for 512 positions it does not use
(padding never changes a sentence's embedding: attention and pooling are masked). Embeddings are float32 on the host,
[n, hidden] per side (BUCC test, ~400k sentences x 768: 1.2 GB per side).

Config (`config.evals.xtreme_retrieval`, made by `configs/xtreme.py`): task, data_dir, languages, xtreme_dir, layer,
pooling, batch_size, block, labels_dir, dir. Results per language '{lang}/{split}/{metric}' (percent, as evaluate.py),
BUCC's '{lang}/threshold', the language means 'average/{split}/{metric}', and workdir/{dir}/{task}/test-{lang}.tsv
in the leaderboard layout (`tasks/xtreme_submission.py`).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import jax
import numpy as np
from absl import logging

from core import errors, evaluation, registry
from core.evaluators import EvalContext, Evaluator
from projects.bert.datasets import xtreme_retrieval_inputs as inputs
from projects.bert.models import hidden_states, modeling
from projects.bert.tasks import xtreme, xtreme_knn, xtreme_metrics, xtreme_retrieval, xtreme_submission

AVERAGE = 'average'
MIN_BUCKET = 8  # the shortest padded length


def bucket_length(length: int, max_seq_length: int) -> int:
  """The padded length of a batch whose longest sentence has `length` tokens: the next power of two, at least
  MIN_BUCKET, at most `max_seq_length`."""
  return min(max_seq_length, max(MIN_BUCKET, 1 << (max(int(length), 1) - 1).bit_length()))


def side_batches(side: inputs.SideTokens, batch_size: int, max_seq_length: int) -> Iterator[Dict[str, np.ndarray]]:
  """This process's part of global batches of `side`'s sentences, shortest first: input_ids, input_mask,
  segment_ids [batch, bucket_length], 'row' (the sentence's index in the file) and batch_mask (0: padding rows)."""
  processes, index = jax.process_count(), jax.process_index()
  if batch_size % processes:
    raise errors.ConfigError(f'batch_size={batch_size} is not divisible by the {processes} processes.')
  local = batch_size // processes
  order = np.argsort(side.lengths, kind='stable')
  offsets = side.offsets
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    width = bucket_length(int(side.lengths[rows].max()), max_seq_length)
    mine = rows[index * local:(index + 1) * local]
    ids = np.zeros((local, width), np.int32)
    for r, row in enumerate(mine):
      ids[r, :side.lengths[row]] = side.flat[offsets[row]:offsets[row + 1]]
    lengths = np.zeros((local,), np.int64)
    lengths[:len(mine)] = side.lengths[mine]
    batch_mask = (np.arange(local) < len(mine)).astype(np.float32)
    row_ids = np.zeros((local,), np.int32)
    row_ids[:len(mine)] = mine
    yield {'input_ids': ids, 'input_mask': (np.arange(width)[None, :] < lengths[:, None]).astype(np.int32),
           'segment_ids': np.zeros_like(ids), 'batch_mask': batch_mask, 'row': row_ids}


def embed_side(embed_fn: Any, params: Any, side: inputs.SideTokens, mesh: Any, batch_size: int,
               max_seq_length: int) -> np.ndarray:
  """[n, hidden] float32 embeddings of `side`'s sentences in file order (on every process)."""
  if not len(side):
    return np.zeros((0, 0), np.float32)
  gathered = evaluation.gather_predictions(embed_fn, params, side_batches(side, batch_size, max_seq_length), mesh,
                                           keep=('row',))
  out = np.empty((len(side), gathered['outputs'].shape[-1]), np.float32)
  out[gathered['row']] = gathered['outputs']
  return out


def language_means(per_language: Dict[str, Dict[str, float]], prefix: str) -> Dict[str, float]:
  """{'{prefix}/{metric}': mean over languages} (evaluate.py's avg_ values)."""
  metrics = sorted({m for scores in per_language.values() for m in scores})
  return {f'{prefix}/{m}': float(np.mean([s[m] for s in per_language.values() if m in s])) for m in metrics}


@registry.EVALUATORS.register('xtreme_retrieval')
class XtremeRetrievalEvaluator(Evaluator):
  """Embeds, mines or retrieves and scores every language of a retrieval task; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.task = xtreme.get_task(config.task)
    if self.task.kind not in (xtreme.BITEXT_MINING, xtreme.SENTENCE_RETRIEVAL):
      raise errors.ConfigError(f'config.evals.{name}.task={config.task!r} is not a retrieval task; use bucc2018 or '
                               f'tatoeba.')
    model = modeling.BertConfig.from_model_config(context.config.model)
    layer = int(config.layer)
    self.pooling, self.batch_size, self.block = str(config.pooling), int(config.batch_size), int(config.block)
    try:
      self.layer = hidden_states.check_layer(hidden_states.default_layer(model.num_layers) if layer == -1 else layer,
                                             model.num_layers, f'config.evals.{name}.layer')
      self.embed_fn = hidden_states.layer_embedding_fn(context.config.model, self.layer, self.pooling, context.mesh)
    except ValueError as e:
      raise errors.ConfigError(f'config.evals.{name}: {e}') from None
    if self.batch_size < 1 or self.block < 1:
      raise errors.ConfigError(f'config.evals.{name}.batch_size={self.batch_size} and .block={self.block} must be '
                               f'positive.')
    languages = [s.strip() for s in str(config.get('languages') or '').split(',') if s.strip()]
    t0 = time.perf_counter()
    self.meta = inputs.read_meta(self.task.name, config.data_dir)
    self.max_seq_length = int(self.meta['max_seq_length'])
    self.sets = inputs.load_retrieval_sets(self.task.name, config.data_dir, config.get('xtreme_dir') or '',
                                           languages, meta=self.meta)
    if not self.sets:
      raise errors.ConfigError(f'{config.data_dir} has no {self.task.name} records'
                               f'{" for " + ",".join(languages) if languages else ""}: write them with `prepare '
                               f'xtreme --task={self.task.name}`.')
    self._check_vocab(model.vocab_size)
    self.read_s = time.perf_counter() - t0
    self.out_dir = os.path.join(context.workdir, str(config.get('dir') or 'submission'))
    self.labels_dir = str(config.get('labels_dir') or '')
    self.results: Dict[str, Any] = {}

  def _check_vocab(self, vocab_size: int) -> None:
    for by_lang in self.sets.values():
      for s in by_lang.values():
        for side in (s.source, s.target):
          if len(side.flat) and int(side.flat.max()) >= vocab_size:
            raise errors.ConfigError(f'{side.path} holds token id {int(side.flat.max())} but the model\'s vocab_size '
                                     f'is {vocab_size}: the records were made with another vocab. Prepare them with '
                                     f'the checkpoint\'s vocab.txt.')

  def _embed(self, params: Any, s: inputs.RetrievalSet) -> Tuple[np.ndarray, np.ndarray]:
    return tuple(embed_side(self.embed_fn, params, side, self.context.mesh, self.batch_size, self.max_seq_length)
                 for side in (s.source, s.target))

  def _knn(self, x: np.ndarray, y: np.ndarray, k: int, *, block: int) -> Tuple[np.ndarray, np.ndarray]:
    return xtreme_knn.knn_device(x, y, k, block=block)

  def _labels(self, lang: str) -> Optional[Any]:
    """The gold of `lang`'s test set from labels_dir (evaluate.py's label layout), or None."""
    if not self.labels_dir:
      return None
    path = os.path.join(self.labels_dir, self.task.submission_file(lang))
    return xtreme_submission.read_submission_file(self.task.name, path) if os.path.exists(path) else None

  def _bucc_candidates(self, s: inputs.RetrievalSet, x: np.ndarray, y: np.ndarray) -> Dict[Any, float]:
    mined = xtreme_retrieval.mine_sentences(x, y, s.bitext.source, s.bitext.target, block=self.block,
                                            knn_fn=self._knn)
    return xtreme_metrics.bucc_candidate_scores(
        mined, xtreme_metrics.unique_sentence_ids(s.bitext.source_ids, s.bitext.source),
        xtreme_metrics.unique_sentence_ids(s.bitext.target_ids, s.bitext.target))

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    params = hidden_states.layer_params(state.params['bert'], self.layer)
    scalars: Dict[str, float] = {}
    per_split: Dict[str, Dict[str, Dict[str, float]]] = {}
    timing = {'embed_s': 0.0, 'search_s': 0.0, 'sentences': 0}
    thresholds: Dict[str, float] = {}
    files: Dict[str, str] = {}
    for split in (xtreme.DEV, xtreme.TEST):  # dev first: BUCC's test pairs take the dev threshold
      for lang, s in self.sets.get(split, {}).items():
        t0 = time.perf_counter()
        x, y = self._embed(params, s)
        t1 = time.perf_counter()
        timing['embed_s'] += t1 - t0
        timing['sentences'] += len(s.source) + len(s.target)
        scores = self._score(split, lang, s, x, y, thresholds, files)
        timing['search_s'] += time.perf_counter() - t1
        if scores:
          per_split.setdefault(split, {})[lang] = scores
    for split, per_language in per_split.items():
      for lang, scores in per_language.items():
        scalars.update({f'{lang}/{split}/{m}': v for m, v in scores.items()})
      scalars.update(language_means(per_language, f'{AVERAGE}/{split}'))
    scalars.update({f'{lang}/threshold': t for lang, t in thresholds.items()})
    self.results = self._summary(step, per_split, thresholds, files, timing)
    averages = {k: round(v, 2) for k, v in scalars.items() if k.startswith(AVERAGE)}
    logging.info('XTREME %s (layer %d, %s pooling) at step %d: %s; %d submission files in %s; %s', self.task.name,
                 self.layer, self.pooling, step, averages or 'no gold (set labels_dir to score the test sets)',
                 len(files), self.out_dir, timing)
    return scalars.items()

  def _score(self, split: str, lang: str, s: inputs.RetrievalSet, x: np.ndarray, y: np.ndarray,
             thresholds: Dict[str, float], files: Dict[str, str]) -> Dict[str, float]:
    """One language's scores of `split`; writes its submission file (test)."""
    if self.task.kind == xtreme.SENTENCE_RETRIEVAL:
      predictions = [int(i) for i in xtreme_retrieval.nearest(x, y, block=self.block, knn_fn=self._knn)]
      files[lang] = self._write(lang, predictions)
      labels = self._labels(lang) if split == xtreme.TEST else None
      return {} if labels is None else xtreme_metrics.score_language(
          self.task.name, labels, [str(p) for p in predictions], lang)
    candidates = self._bucc_candidates(s, x, y)
    if split == xtreme.DEV:
      if not s.bitext.gold:
        raise errors.DataError(f'XTREME {self.task.name} {lang} dev has no gold pairs; the threshold is chosen on '
                               f'them.')
      thresholds[lang] = xtreme_metrics.bucc_threshold(candidates, s.bitext.gold)
      # Optimistic: scored with the threshold chosen on these very pairs.
      return xtreme_metrics.bucc_f1(s.bitext.gold, xtreme_metrics.bucc_extract(candidates, thresholds[lang]))
    if lang not in thresholds:
      logging.warning('XTREME %s %s: no dev set, so no threshold for its test pairs; no submission file for it.',
                      self.task.name, lang)
      return {}
    pairs = xtreme_metrics.bucc_extract(candidates, thresholds[lang])
    files[lang] = self._write(lang, pairs)
    labels = self._labels(lang)
    return {} if labels is None else xtreme_metrics.score_language(
        self.task.name, labels, [f'{a}\t{b}' for a, b in pairs], lang)

  def _write(self, lang: str, predictions: List[Any]) -> str:
    if jax.process_index() == 0:
      return xtreme_submission.write_submission_file(self.out_dir, self.task.name, lang, predictions)
    return os.path.join(self.out_dir, self.task.submission_file(lang))

  def _summary(self, step: int, per_split: Dict[str, Dict[str, Dict[str, float]]], thresholds: Dict[str, float],
               files: Dict[str, str], timing: Dict[str, Any]) -> Dict[str, Any]:
    scored = xtreme.TEST if xtreme.TEST in per_split else xtreme.DEV
    per_language = per_split.get(scored, {})
    out = {'benchmark': 'xtreme', 'task': self.task.name, 'step': step, 'units': 'percent',
           'layer': self.layer, 'pooling': self.pooling, 'weights': dict(self.context.weights),
           'languages': {split: list(by_lang) for split, by_lang in self.sets.items()},
           'per_split': per_split, 'scored_split': scored if per_language else None,
           'per_language': per_language, 'files': files, 'submission_dir': self.out_dir,
           'timing_s': {**timing, 'read_s': self.read_s}}
    if per_language:
      out['score'] = float(np.mean([v[self.task.main_metric] for v in per_language.values()]))
    # The run's last line: the task score, or how much was written where no gold was given.
    # 'average/metric': the task score under the key every XTREME evaluator gives it (runs/xtreme_suite.py reads it).
    out['final'] = ({f'{AVERAGE}/metric': out['score'], f'{scored} {self.task.main_metric}': out['score']}
                    if per_language else {'submission files': len(files)})
    if scored == xtreme.DEV and per_language:
      out['note'] = 'dev scores with the threshold chosen on dev (optimistic); test gold is withheld'
    if thresholds:
      out['thresholds'] = thresholds
    return out

  def summary(self) -> Dict[str, Any]:
    return dict(self.results)
