"""`retrieval`: how well a split's sentence embeddings find their paraphrase among the whole split's.

Config (`config.evals.retrieval`): every (steps between evaluations; 0: only at the end), splits (default: every eval
split of the run's `bert_glue` dataset), save_best (True: keep the best evaluation's parameters in workdir/best/, by
`{main split}/recall_at_1`).

For each split, one pass of the model (`sentence_embedding`: embeddings [N, 2, hidden]) gives every pair's two
embeddings; the queries are the a sentences of the positive pairs (label_ids == config.model.positive_label), the
candidates the b sentences of every pair of the split. Metrics '{split}/{name}': recall_at_1 (the query's own b is
the most similar candidate), mrr (mean reciprocal rank of it), chance (recall@1 of a random ranking: 1 / candidates),
num_queries, and the model's own in-batch metrics (loss, recall_at_1 within eval batches: `in_batch_*`).
Summaries, history, `final` and `best_on_dev` are BERT's dev-score bookkeeping (`projects.bert.evaluators.dev_scores`).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from core.train_step import make_eval_step
from projects.bert.evaluators.dev_scores import DevScoresEvaluator
from projects.sentence_embedding import model as model_lib


def retrieval_metrics(embeddings: np.ndarray, labels: np.ndarray, positive_label: int) -> Dict[str, float]:
  """Metrics of `embeddings` float [N, 2, hidden] (L2-normalised; [:, 0] queries, [:, 1] candidates) for the rows
  whose `labels` [N] are `positive_label`: {recall_at_1, mrr, chance, num_queries}."""
  queries = np.flatnonzero(np.asarray(labels) == positive_label)
  if not len(queries):
    raise errors.DataError(f'The split has no pair with label id {positive_label} (config.model.positive_label): '
                           f'nothing to retrieve. Use a paraphrase task (mrpc, qqp) or set the label of a match.')
  sims = embeddings[queries, 0] @ embeddings[:, 1].T  # [queries, candidates]
  own = sims[np.arange(len(queries)), queries]
  # A tie counts against the query and a NaN is a miss, so collapsed embeddings (all alike) score 0, not 1.
  others = sims >= own[:, None]
  others[np.arange(len(queries)), queries] = False
  rank = np.where(np.isfinite(own), 1 + np.sum(others, axis=1), len(embeddings))
  return {'recall_at_1': float(np.mean(rank == 1)), 'mrr': float(np.mean(1.0 / rank)),
          'chance': 1.0 / len(embeddings), 'num_queries': float(len(queries))}


@registry.EVALUATORS.register('retrieval')
class RetrievalEvaluator(DevScoresEvaluator):
  """See the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    dataset = context.dataset
    if dataset is None or dataset.valid_iter is None or not isinstance(context.model, model_lib.SentenceEmbeddingModel):
      raise errors.ConfigError(f'config.evals.{name} (retrieval) needs model_name="sentence_embedding" and a '
                               f'bert_glue dataset of a sentence-pair task with dev records (config.dataset.task / '
                               f'data_dir, written by `python -m projects.bert.datasets.prepare glue`).')
    meta = dataset.meta_data
    self.splits: List[str] = list(config.get('splits') or meta.eval_splits)
    self.task_name, self.main_key = f'{meta.task} retrieval', f'{self.splits[0]}/recall_at_1'
    self.positive_label = int(context.config.model.get('positive_label', model_lib.DEFAULT_POSITIVE_LABEL))
    super().__init__(name, config, context)
    self.step_fn = make_eval_step(context.model, context.params_shardings, context.mesh, with_outputs=True)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{'{split}/{metric}': value} of `params` on every split of `self.splits`."""
    results: Dict[str, float] = {}
    for split in self.splits:
      in_batch, gathered = evaluation.evaluate_split(self.step_fn, params, self.context.dataset.valid_iter(split),
                                                     self.context.mesh, keep=('label_ids',))
      metrics = {**{f'in_batch_{k}': v for k, v in in_batch.items()},
                 **retrieval_metrics(gathered['outputs'], gathered['label_ids'], self.positive_label)}
      results.update({f'{split}/{k}': v for k, v in metrics.items()})
    return results

  def task_summary(self) -> Dict[str, Any]:
    return {'eval_splits': self.splits, 'positive_label': self.positive_label}
