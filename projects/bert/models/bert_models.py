"""The registered BERT models: pretraining (MLM + NSP), sequence classification and regression (STS-B), question
answering (SQuAD span extraction), and the encoder alone (for runs that only evaluate it, such as few-shot probes).

Each is a `core.model.BaseModel`: it builds its Flax module from `config.model` and owns its loss and metrics.
Every loss and metric weights examples by `batch_mask` [batch] when the batch has one (1 = real, 0 = padding).
Every model keeps its encoder's parameters under 'bert', so weights move between them
(`projects.bert.checkpoints.weights`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from core.dataset import DatasetMetaData
from core.model import Batch, BaseModel, MetricsDict, MetricsFn
from core.registry import MODELS
from projects.bert.models import modeling
from projects.bert.models import architecture as common


def _batch_mask(batch: Batch, batch_size: int) -> jnp.ndarray:
  """batch_mask [batch] float32, or ones when the batch has none (training batches)."""
  mask = batch.get('batch_mask')
  return jnp.ones((batch_size,), jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)


def _weighted(values: jnp.ndarray, weights: jnp.ndarray) -> tuple:
  """(sum of weights * values, sum of weights): a (sum, count) metric pair."""
  return jnp.sum(values * weights), jnp.sum(weights)


def _mean(pair: tuple) -> jnp.ndarray:
  total, count = pair
  return total / jnp.maximum(count, 1e-8)


class BertModel(BaseModel):
  """Shared part: `config.model` -> `modeling.BertConfig`; the default config is the tiny size."""

  def __init__(self, config: Optional[ml_collections.ConfigDict], dataset_meta_data: Optional[DatasetMetaData]):
    super().__init__(config, dataset_meta_data)
    check_vocab_fits(self.config.model, self.dataset_meta_data)

  def bert_config(self) -> modeling.BertConfig:
    return modeling.BertConfig.from_model_config(self.config.model)

  def default_flax_model_config(self) -> ml_collections.ConfigDict:
    return common.model_config('tiny')

  def param_initializers(self, abstract_params: Any) -> Any:
    """BERT's initialisation, as every module of `modeling` declares it: LayerNorm scales 1, biases 0, every
    kernel and embedding a truncated normal of standard deviation `initializer_range`. Lets the train state be
    drawn on the host (`core.param_init`) instead of compiling the model's `init`."""
    return bert_param_initializers(abstract_params, self.bert_config().initializer_range)


@MODELS.register('bert_pretraining')
class BertPretrainingModel(BertModel):
  """Masked-LM + next-sentence prediction (or ALBERT's sentence-order prediction).

  forward -> {'mlm_logits': [batch, P, vocab], 'nsp_logits': [batch, 2]} (float32). The loss is the
  masked_lm_weights-weighted mean cross-entropy over the masked positions plus the mean cross-entropy of the pair
  label (`next_sentence_labels`). `config.model.nsp_head` picks the pair head (modeling.NSP_HEADS; default
  'encoder_pooler'). The records' pair task (the dataset's meta data `extra['pair_task']`, from
  config.dataset.pair_task) names the pair metrics: nsp_loss / nsp_accuracy, or sop_loss / sop_accuracy for
  sentence order (label 1 = swapped), whose head is the same 2-way classifier on the pooled output (ALBERT's
  `AlbertSOPHead`: dropout and one dense layer on the pooler), so weights move between the two.
  """

  def pair_task(self) -> str:
    """'nsp' or 'sop': the prefix of the pair metrics."""
    return self.dataset_meta_data.extra.get('pair_task') or 'nsp'

  def build_flax_model(self) -> nn.Module:
    return modeling.BertForPreTraining(self.bert_config(), nsp_head=self.config.model.get('nsp_head',
                                                                                          'encoder_pooler'))

  def _pieces(self, outputs: Mapping[str, jnp.ndarray], batch: Batch) -> MetricsDict:
    nsp_logits, mlm_logits = outputs['nsp_logits'], outputs['mlm_logits']
    example_w = _batch_mask(batch, nsp_logits.shape[0])
    mlm_w = jnp.asarray(batch['masked_lm_weights'], jnp.float32) * example_w[:, None]
    mlm_ids = batch['masked_lm_ids']
    mlm_ce = optax.softmax_cross_entropy_with_integer_labels(mlm_logits, mlm_ids)
    nsp_labels = batch['next_sentence_labels']
    nsp_ce = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, nsp_labels)
    pair = self.pair_task()
    return {
        'mlm_loss': _weighted(mlm_ce, mlm_w),
        'mlm_accuracy': _weighted((jnp.argmax(mlm_logits, -1) == mlm_ids).astype(jnp.float32), mlm_w),
        f'{pair}_loss': _weighted(nsp_ce, example_w),
        f'{pair}_accuracy': _weighted((jnp.argmax(nsp_logits, -1) == nsp_labels).astype(jnp.float32), example_w),
    }

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    pieces = self._pieces(outputs, batch)
    return _mean(pieces['mlm_loss']) + _mean(pieces[f'{self.pair_task()}_loss'])

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """{mlm_loss, mlm_accuracy, nsp_loss, nsp_accuracy} (sop_loss, sop_accuracy for sentence-order records):
    (sum, count) pairs (MLM ones count masked tokens)."""
    return self._pieces


@MODELS.register('bert_classification')
class BertClassificationModel(BertModel):
  """Sequence classification: forward -> logits [batch, num_labels]; cross-entropy on label_ids int [batch].

  num_labels comes from `config.model.num_labels`, else from `dataset_meta_data.num_labels`.
  """

  def num_labels(self) -> int:
    n = self.config.model.get('num_labels') or self.dataset_meta_data.num_labels
    if not n:
      raise ValueError('bert_classification needs the number of labels: set config.model.num_labels or '
                       'give a dataset whose meta data has num_labels.')
    return int(n)

  def build_flax_model(self) -> nn.Module:
    return modeling.BertForSequenceClassification(self.bert_config(), num_labels=self.num_labels())

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """{loss: mean cross-entropy, accuracy}, each a (sum, count) pair over the real examples."""

    def metrics(logits: jnp.ndarray, batch: Batch) -> MetricsDict:
      w = _batch_mask(batch, logits.shape[0])
      labels = batch['label_ids']
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
      return {'loss': _weighted(ce, w),
              'accuracy': _weighted((jnp.argmax(logits, -1) == labels).astype(jnp.float32), w)}

    return metrics

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    return _mean(self.get_metrics_fn()(outputs, batch)['loss'])


@MODELS.register('bert_regression')
class BertRegressionModel(BertModel):
  """Regression (STS-B): forward -> predictions [batch]; mean squared error against label_ids float [batch]."""

  def build_flax_model(self) -> nn.Module:
    return modeling.BertForRegression(self.bert_config())

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """{loss: mean squared error}, a (sum, count) pair over the real examples."""

    def metrics(predictions: jnp.ndarray, batch: Batch) -> MetricsDict:
      w = _batch_mask(batch, predictions.shape[0])
      se = (predictions - jnp.asarray(batch['label_ids'], jnp.float32)) ** 2
      return {'loss': _weighted(se, w)}

    return metrics

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    return _mean(self.get_metrics_fn()(outputs, batch)['loss'])


@MODELS.register('bert_question_answering')
class BertQuestionAnsweringModel(BertModel):
  """Span extraction (SQuAD): forward -> span logits [batch, seq, 2] float32 ([..., 0] start, [..., 1] end).

  The loss is Model Garden's (and Hugging Face's): the mean of the start and the end cross-entropy over the
  sequence, against start_positions / end_positions int [batch]. Every position is a candidate, padding included,
  as upstream; an example without its answer in the window (or unanswerable, SQuAD 2.0) points both at [CLS]
  (position 0), which is how the null answer is learnt. Padding rows (batch_mask 0) weigh nothing.
  """

  def build_flax_model(self) -> nn.Module:
    return modeling.BertForQuestionAnswering(self.bert_config())

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    """{loss, start_accuracy, end_accuracy}: (sum, count) pairs over the real examples; {} for batches without
    answer positions (SQuAD's eval features, which are scored by decoding: `squad_metrics`)."""

    def metrics(logits: jnp.ndarray, batch: Batch) -> MetricsDict:
      if 'start_positions' not in batch:
        return {}
      w = _batch_mask(batch, logits.shape[0])
      out = {}
      losses = []
      for i, name in enumerate(('start', 'end')):
        positions = batch[f'{name}_positions']
        losses.append(optax.softmax_cross_entropy_with_integer_labels(logits[..., i], positions))
        out[f'{name}_accuracy'] = _weighted((jnp.argmax(logits[..., i], -1) == positions).astype(jnp.float32), w)
      return {'loss': _weighted((losses[0] + losses[1]) / 2, w), **out}

    return metrics

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    return _mean(self.get_metrics_fn()(outputs, batch)['loss'])


def bert_param_initializers(abstract_params: Any, initializer_range: float) -> Any:
  """An `Initializer` per array of a BERT parameter tree (any of the heads), from its name; a name outside these
  rules is an error, so a new parameter in `modeling` cannot silently start from the wrong distribution."""
  from core import param_init

  zeros, ones = param_init.Initializer('zeros'), param_init.Initializer('ones')
  normal = param_init.Initializer('truncated_normal', initializer_range)

  def rule(path, leaf):
    names = [str(getattr(k, 'key', k)) for k in path]
    last, owner = names[-1], names[-2] if len(names) > 1 else ''
    if 'layer_norm' in owner or 'LayerNorm' in owner:
      return ones if last == 'scale' else zeros
    if last in ('bias', 'output_bias'):
      return zeros
    if last == 'kernel' and 'nsp_head' in names and owner in ('pooler_dense', 'logits'):
      # Model Garden's next_sentence ClassificationHead (modeling.ClassificationHead): glorot_uniform kernels.
      fan_in, fan_out = math.prod(leaf.shape[:-1]), leaf.shape[-1]
      return param_init.Initializer('symmetric_uniform', math.sqrt(2.0 / (fan_in + fan_out)))
    if last == 'kernel' and 'nsp_head' in names and owner == 'output_projection':
      from projects.bert.models.scenic_heads import LECUN_TRUNCATION_STD  # Scenic's head: flax lecun_normal
      return param_init.Initializer('truncated_normal', 1.0 / math.sqrt(leaf.shape[0]) / LECUN_TRUNCATION_STD)
    if last in ('kernel', 'embedding'):
      return normal
    raise ValueError(f'No initializer rule for BERT parameter {"/".join(names)!r} {leaf.shape}: add one to '
                     f'bert_param_initializers.')

  return jax.tree_util.tree_map_with_path(rule, abstract_params)


class _EncoderModule(nn.Module):
  """`module(batch, train)` -> {'sequence': [batch, seq, hidden], 'pooled': [batch, hidden]}; params under 'bert'."""

  config: modeling.BertConfig

  @nn.compact
  def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> Dict[str, jnp.ndarray]:
    sequence, pooled = modeling.BertEncoder(self.config, name='bert')(
        batch['input_ids'], batch['input_mask'], batch['segment_ids'], train=train)
    return {'sequence': sequence, 'pooled': pooled}


def encoder_meta_data(max_seq_length: int = 8) -> DatasetMetaData:
  """Meta data of token batches alone (input_ids, input_mask, segment_ids int32 [batch, max_seq_length]), for runs
  that have no dataset of their own: enough to build any BERT model's parameters."""
  spec = ((max_seq_length,), 'int32')
  return DatasetMetaData(input_specs={k: spec for k in ('input_ids', 'input_mask', 'segment_ids')},
                         max_seq_length=max_seq_length)


@MODELS.register('bert_encoder')
class BertEncoderModel(BertModel):
  """The encoder alone, for runs that only evaluate it (few-shot probes with zero training steps): forward ->
  {'sequence', 'pooled'}. It has no training loss."""

  def build_flax_model(self) -> nn.Module:
    return _EncoderModule(self.bert_config())

  def get_metrics_fn(self, split: Optional[str] = None) -> MetricsFn:
    return lambda outputs, batch: {}

  def loss_function(self, outputs: Any, batch: Batch, model_params: Any = None) -> jnp.ndarray:
    raise ValueError('bert_encoder has no training loss: train with bert_pretraining, bert_classification or '
                     'bert_regression, or set num_train_steps=0 to only evaluate the encoder.')


def check_vocab_fits(model_config: Mapping[str, Any], meta_data: DatasetMetaData) -> None:
  """Token ids beyond the embedding table are silently clamped by XLA: refuse data made with a larger vocab."""
  vocab_size = int(model_config['vocab_size'])
  vocab_file = meta_data.extra.get('vocab_file')
  if vocab_file and os.path.exists(vocab_file):
    with open(vocab_file) as f:
      n = sum(1 for _ in f)
    if n > vocab_size:
      raise ValueError(f'{vocab_file} (the vocab the records were made with) has {n} tokens but '
                       f'config.model.vocab_size is {vocab_size}: set --config.model.vocab_size={n} (and a '
                       f'checkpoint of that vocab), or re-create the records with the model\'s vocab.txt.')
  seen = meta_data.extra.get('max_token_id_seen')
  if seen is not None and int(seen) >= vocab_size:
    files = meta_data.files.get('train', [])
    raise ValueError(f'Records {files[:3]} hold token id {seen} but config.model.vocab_size is {vocab_size}: they '
                     f'were made with a larger vocab. Set config.model.vocab_size to that vocab\'s size, or '
                     f're-create the records with the model\'s vocab.txt.')
