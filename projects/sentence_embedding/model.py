"""`sentence_embedding`: a bi-encoder over BERT's encoder, trained with an in-batch contrastive loss.

A batch is `bert_glue`'s sentence-pair batch: input_ids, input_mask, segment_ids int32 [batch, seq] holding
`[CLS] a [SEP] b [SEP]`, label_ids int32 [batch] (1 = paraphrase for MRPC / QQP), batch_mask float32 [batch].
`pair_views` cuts each pair into its two sentences, each then encoded alone (segment 0, positions from 0) by the same
encoder and mean-pooled over its tokens: forward -> L2-normalised embeddings float32 [batch, 2, hidden] ([:, 0] of
sentence a, [:, 1] of b).

Loss (InfoNCE in both directions, as SimCSE / sentence-transformers' MultipleNegativesRankingLoss): each positive
pair's a must pick its own b among every b of the batch, and b its own a; similarities are cosines divided by
`config.model.temperature`. Only pairs with label_ids == `config.model.positive_label` are anchors (a non-paraphrase
pair is no target), but every real row's sentence is a candidate, so such pairs still serve as hard negatives.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import optax

from core import errors
from core.model import Batch, BaseModel, MetricsDict, MetricsFn
from core.registry import MODELS
from projects.bert.models import architecture, bert_models, modeling
from projects.bert.tasks import glue as glue_tasks

DEFAULT_TEMPERATURE = 0.05  # SimCSE's
DEFAULT_POSITIVE_LABEL = 1  # MRPC's and QQP's label id of a paraphrase / duplicate


def pair_views(input_ids: jnp.ndarray, input_mask: jnp.ndarray, segment_ids: jnp.ndarray
               ) -> Tuple[Tuple[jnp.ndarray, jnp.ndarray], Tuple[jnp.ndarray, jnp.ndarray]]:
  """Cuts pair records int32 [batch, seq] into ((ids_a, mask_a), (ids_b, mask_b)), each [batch, seq].

  a is `[CLS] a [SEP]` in place (the mask drops b). b is moved to the front behind the row's [CLS]: `[CLS] b [SEP]`,
  so that it gets the same position embeddings as when it is encoded alone. A record without a second segment
  gives a b of [CLS] only.
  """
  seq = input_ids.shape[1]
  mask_a = input_mask * (segment_ids == 0)
  start_b = jnp.sum(mask_a, axis=1, keepdims=True)  # [batch, 1]: where b's first token is
  positions = jnp.arange(seq)[None, :]
  source = start_b + positions - 1  # view position j >= 1 reads record position start_b + j - 1
  inside = source < seq
  source = jnp.clip(source, 0, seq - 1)
  ids_b = jnp.where(positions == 0, input_ids[:, :1], jnp.take_along_axis(input_ids, source, axis=1))
  mask_b = jnp.where(positions == 0, 1, jnp.take_along_axis(input_mask * segment_ids, source, axis=1) * inside)
  return (input_ids, mask_a.astype(input_mask.dtype)), (ids_b, mask_b.astype(input_mask.dtype))


def mean_pool(sequence: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """The mean over the real tokens: [batch, seq, hidden], mask [batch, seq] -> float32 [batch, hidden]."""
  weights = mask.astype(jnp.float32)[..., None]
  return jnp.sum(sequence.astype(jnp.float32) * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


class BiEncoder(nn.Module):
  """`module(batch, train)` -> L2-normalised embeddings float32 [batch, 2, hidden]; the encoder's params under
  'bert', so BERT checkpoints (`init_from`) load into it."""

  config: modeling.BertConfig

  @nn.compact
  def __call__(self, batch: Batch, train: bool = False) -> jnp.ndarray:
    views = pair_views(batch['input_ids'], batch['input_mask'], batch['segment_ids'])
    ids = jnp.concatenate([v[0] for v in views])  # [2 * batch, seq]: both sentences in one encoder call
    mask = jnp.concatenate([v[1] for v in views])
    sequence, _ = modeling.BertEncoder(self.config, name='bert')(ids, mask, jnp.zeros_like(ids), train=train)
    pooled = mean_pool(sequence, mask)
    pooled = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-6)
    return jnp.stack(jnp.split(pooled, 2), axis=1)


@MODELS.register('sentence_embedding')
class SentenceEmbeddingModel(BaseModel):
  """See the module docstring. `config.model`: BERT's fields (`projects.bert.models.architecture.model_config`)
  plus temperature and positive_label."""

  def __init__(self, config: Optional[ml_collections.ConfigDict], dataset_meta_data: Any):
    super().__init__(config, dataset_meta_data)
    bert_models.check_vocab_fits(self.config.model, self.dataset_meta_data)
    task = self.dataset_meta_data.task
    if task in glue_tasks.task_names() and glue_tasks.get_task(task).train.text_b is None:
      raise errors.ConfigError(f'config.dataset.task={task!r} has one sentence per example: sentence_embedding '
                               f'learns from sentence pairs. Use a paraphrase task (mrpc, qqp).')

  def default_flax_model_config(self) -> ml_collections.ConfigDict:
    return architecture.model_config('tiny', temperature=DEFAULT_TEMPERATURE, positive_label=DEFAULT_POSITIVE_LABEL)

  def build_flax_model(self) -> nn.Module:
    return BiEncoder(modeling.BertConfig.from_model_config(self.config.model))

  def param_initializers(self, abstract_params: Any) -> Any:
    return bert_models.bert_param_initializers(abstract_params, self.flax_model.config.initializer_range)

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """{loss: the symmetric InfoNCE, recall_at_1: a finds its own b among the batch's}: (sum, count) pairs over
    the positive pairs (chance in-batch recall: 1 / real rows)."""
    temperature = float(self.config.model.get('temperature') or DEFAULT_TEMPERATURE)
    positive_label = int(self.config.model.get('positive_label', DEFAULT_POSITIVE_LABEL))

    def metrics(embeddings: jnp.ndarray, batch: Batch) -> MetricsDict:
      n = embeddings.shape[0]
      real = jnp.ones((n,), jnp.float32) if batch.get('batch_mask') is None else batch['batch_mask'].astype(
          jnp.float32)
      anchors = real * (batch['label_ids'] == positive_label)
      a, b = embeddings[:, 0], embeddings[:, 1]
      # Padding rows are no candidates: their similarity is pushed to -inf before the softmax.
      logits = jnp.where(real[None, :] > 0, a @ b.T / temperature, -1e9)  # [a, b]
      logits_t = jnp.where(real[None, :] > 0, b @ a.T / temperature, -1e9)  # [b, a]
      targets = jnp.arange(n)
      ce = (optax.softmax_cross_entropy_with_integer_labels(logits, targets)
            + optax.softmax_cross_entropy_with_integer_labels(logits_t, targets)) / 2
      hit = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
      count = jnp.sum(anchors)
      return {'loss': (jnp.sum(ce * anchors), count), 'recall_at_1': (jnp.sum(hit * anchors), count)}

    return metrics

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    total, count = self.get_metrics_fn()(outputs, batch)['loss']
    return total / jnp.maximum(count, 1.0)  # a batch without a positive pair contributes 0

