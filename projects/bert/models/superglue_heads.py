"""The SuperGLUE paper's BERT baseline heads (Wang et al. 2019, section 5) that a [CLS] classifier does not cover.

  bert_word_in_context  WiC: the pooled [CLS] output concatenated with the marked word's first sub-token in each
                        sentence (word_position_1, word_position_2) -> num_labels logits
  bert_multiple_choice  COPA: one scalar per (context, choice) row from the pooled output; the logits of an example
                        are its choices' scalars, [batch, choices], and the loss a softmax over them
  bert_span_pair        WSC: the mean of the token representations over each span ([span1_start, span1_end),
                        [span2_start, span2_end)), concatenated -> num_labels logits
The rest use `bert_classification` on [CLS]: the sentence pairs (BoolQ, CB, RTE; AX-b and AX-g with RTE's model),
and MultiRC and ReCoRD, whose rows are independent binary examples (2 labels; the best-scored candidate wins).

Each model's encoder lives under 'bert' as in every BERT model here, so any checkpoint the project reads, or another
run's fine-tuned encoder (MNLI before RTE), loads into it; the heads start from BERT's initialisation. Loss and
metrics are `bert_classification`'s: cross-entropy and accuracy over logits [batch, classes] against label_ids
[batch] (COPA's label_ids: the right choice), weighted by batch_mask.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax.numpy as jnp

from core.registry import MODELS
from projects.bert.models import modeling
from projects.bert.models.bert_models import BertClassificationModel

Array = jnp.ndarray


def _dense(config: modeling.BertConfig, features: int, name: str) -> nn.Dense:
  # Heads are tiny: float32 so the logits the loss reads are exact; BERT's truncated-normal init.
  return nn.Dense(features, dtype=jnp.float32, param_dtype=jnp.float32,
                  kernel_init=nn.initializers.truncated_normal(config.initializer_range), name=name)


def _encode(config: modeling.BertConfig, batch: Mapping[str, Array], train: bool):
  """(sequence [batch, seq, hidden], pooled [batch, hidden]) in float32."""
  sequence, pooled = modeling.BertEncoder(config, name='bert')(batch['input_ids'], batch['input_mask'],
                                                               batch['segment_ids'], train=train)
  return sequence.astype(jnp.float32), pooled.astype(jnp.float32)


def span_means(sequence: Array, starts: Array, ends: Array) -> Array:
  """sequence [batch, seq, hidden], starts / ends int [batch] (end exclusive) -> [batch, hidden]: the mean over the
  span's tokens (an empty span, as on padding rows, gives zeros)."""
  positions = jnp.arange(sequence.shape[1])[None, :]
  inside = ((positions >= starts[:, None]) & (positions < ends[:, None])).astype(sequence.dtype)
  total = jnp.einsum('bs,bsh->bh', inside, sequence)
  return total / jnp.maximum(inside.sum(axis=1, keepdims=True), 1.0)


class WordInContextClassifier(nn.Module):
  """`module(batch, train)` -> logits [batch, num_labels]: [pooled; h(word_position_1); h(word_position_2)]."""

  config: modeling.BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    sequence, pooled = _encode(self.config, batch, train)
    positions = jnp.stack([batch['word_position_1'], batch['word_position_2']], axis=1)  # [batch, 2]
    words = modeling.gather_positions(sequence, positions).reshape(sequence.shape[0], -1)  # [batch, 2 * hidden]
    x = jnp.concatenate([pooled, words], axis=-1)
    x = modeling.Dropout(self.config.hidden_dropout_prob, deterministic=not train)(x)
    return _dense(self.config, self.num_labels, 'classifier')(x)


class MultipleChoiceScorer(nn.Module):
  """`module(batch, train)` -> logits [batch, choices]: one scalar per row of input_ids [batch, choices, seq]."""

  config: modeling.BertConfig

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    n, choices, seq = batch['input_ids'].shape
    rows = {k: batch[k].reshape(n * choices, seq) for k in ('input_ids', 'input_mask', 'segment_ids')}
    _, pooled = _encode(self.config, rows, train)
    pooled = modeling.Dropout(self.config.hidden_dropout_prob, deterministic=not train)(pooled)
    return _dense(self.config, 1, 'choice_score')(pooled).reshape(n, choices)


class SpanPairClassifier(nn.Module):
  """`module(batch, train)` -> logits [batch, num_labels]: [mean of span1's tokens; mean of span2's tokens]."""

  config: modeling.BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    sequence, _ = _encode(self.config, batch, train)
    x = jnp.concatenate([span_means(sequence, batch['span1_start'], batch['span1_end']),
                         span_means(sequence, batch['span2_start'], batch['span2_end'])], axis=-1)
    x = modeling.Dropout(self.config.hidden_dropout_prob, deterministic=not train)(x)
    return _dense(self.config, self.num_labels, 'classifier')(x)


@MODELS.register('bert_word_in_context')
class BertWordInContextModel(BertClassificationModel):
  """WiC: `WordInContextClassifier`; loss and metrics of bert_classification."""

  def build_flax_model(self) -> nn.Module:
    return WordInContextClassifier(self.bert_config(), num_labels=self.num_labels())


@MODELS.register('bert_multiple_choice')
class BertMultipleChoiceModel(BertClassificationModel):
  """COPA: `MultipleChoiceScorer`; cross-entropy of the softmax over an example's choices, accuracy of its argmax."""

  def build_flax_model(self) -> nn.Module:
    return MultipleChoiceScorer(self.bert_config())


@MODELS.register('bert_span_pair')
class BertSpanPairModel(BertClassificationModel):
  """WSC: `SpanPairClassifier`; loss and metrics of bert_classification."""

  def build_flax_model(self) -> nn.Module:
    return SpanPairClassifier(self.bert_config(), num_labels=self.num_labels())


# The model of each task kind (tasks.superglue kinds), for configs.
MODEL_OF_KIND = {'sentence_pair': 'bert_classification', 'word_in_context': 'bert_word_in_context',
                 'multiple_choice': 'bert_multiple_choice', 'answer_options': 'bert_classification',
                 'entity_cloze': 'bert_classification', 'span_pair': 'bert_span_pair'}
