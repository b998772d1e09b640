"""Token classification (XTREME's UD-POS and PAN-X): one label per WordPiece from the encoder's sequence output.

  bert_token_classification  forward -> logits [batch, seq, num_labels] float32: dropout (hidden_dropout_prob, the
                             0.1 of Model Garden's TaggingConfig head_dropout) on the last layer's output, then one
                             dense layer 'tagging_head' (truncated normal, initializer_range), as Model Garden's
                             BertTokenClassifier and Hugging Face's BertForTokenClassification.

Loss: Model Garden's tagging task's, the cross-entropy averaged over the scored positions, those with label_ids
>= 0 (tagging_data_lib writes -1 on [CLS], [SEP], padding and every non-first WordPiece of a word) in real rows
(batch_mask 1). Metrics for the train loop: that loss and token_accuracy over the same positions. The XTREME scores
(seqeval F1 over whole sentences) are the `xtreme` evaluator's.

The encoder lives under 'bert' as in every BERT model here, so any checkpoint the project reads loads into it; the
head starts fresh. The head is not named 'classifier' so that the Hugging Face export never reads it as a sequence
classifier's.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp
import optax

from core.model import Batch, MetricsDict, MetricsFn
from core.registry import MODELS
from projects.bert.models import modeling
from projects.bert.models.bert_models import BertClassificationModel, _batch_mask, _mean, _weighted

Array = jnp.ndarray
IGNORED_LABEL = -1  # tagging_data_lib's _PADDING_LABEL_ID: positions that are not scored


class TokenClassifier(nn.Module):
  """`module(batch, train)` -> logits [batch, seq, num_labels] float32 (see the module docstring)."""

  config: modeling.BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    c = self.config
    sequence, _ = modeling.BertEncoder(c, name='bert')(batch['input_ids'], batch['input_mask'],
                                                       batch['segment_ids'], train=train)
    x = modeling.Dropout(c.hidden_dropout_prob, deterministic=not train)(sequence.astype(jnp.float32))
    # float32 like every head: the logits the loss reads are exact.
    return nn.Dense(self.num_labels, dtype=jnp.float32, param_dtype=jnp.float32,
                    kernel_init=nn.initializers.truncated_normal(c.initializer_range), name='tagging_head')(x)


def token_weights(label_ids: Array, batch_mask: Array) -> Array:
  """float32 [batch, seq]: 1 where a position is scored (label_ids >= 0 in a real row), else 0."""
  return (label_ids > IGNORED_LABEL).astype(jnp.float32) * batch_mask[:, None]


@MODELS.register('bert_token_classification')
class BertTokenClassificationModel(BertClassificationModel):
  """`TokenClassifier`; label_ids int [batch, seq] with -1 where not scored. num_labels comes from
  `config.model.num_labels`, else from the dataset's meta data."""

  def build_flax_model(self) -> nn.Module:
    return TokenClassifier(self.bert_config(), num_labels=self.num_labels())

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """{loss: mean cross-entropy, token_accuracy}, (sum, count) pairs over the scored positions."""

    def metrics(logits: Array, batch: Batch) -> MetricsDict:
      labels = batch['label_ids']
      w = token_weights(labels, _batch_mask(batch, logits.shape[0]))
      safe = jnp.maximum(labels, 0)  # -1 would index out of range; its weight is 0
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
      return {'loss': _weighted(ce, w),
              'token_accuracy': _weighted((jnp.argmax(logits, -1) == safe).astype(jnp.float32), w)}

    return metrics

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> Array:
    return _mean(self.get_metrics_fn()(outputs, batch)['loss'])
