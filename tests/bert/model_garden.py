"""TF Model Garden (tf-models-official) as the reference: its BERT tasks, models and checkpoints built from our
`config.model`, for the parity tests and benchmarks/fidelity.py. Imports TensorFlow: tests and benchmarks only.

Offline workaround: `official.nlp.tasks` imports tensorflow_hub 0.16.1, whose `__init__` runs
`from pkg_resources import parse_version`; setuptools >= 81 no longer ships `pkg_resources`, so the import fails
with `ModuleNotFoundError: No module named 'pkg_resources'`. `import_tasks()` registers a `pkg_resources` module
holding only `parse_version` (packaging's, which is what pkg_resources re-exported) when the real one is missing.
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Any, Dict, Mapping

import numpy as np

CHECKPOINT_LAYOUTS = ('trainer', 'items', 'model')


def import_tasks() -> types.SimpleNamespace:
  """Model Garden's NLP task, config and model modules (with the pkg_resources shim when needed)."""
  shim = None
  try:
    import pkg_resources  # noqa: F401
  except ModuleNotFoundError:
    import packaging.version
    shim = types.ModuleType('pkg_resources')
    shim.parse_version = packaging.version.parse
    sys.modules['pkg_resources'] = shim
  try:
    import tensorflow as tf
    import tf_keras
    from official.core import exp_factory
    from official.modeling import optimization, tf_utils
    from official.nlp.configs import bert, encoders
    from official.nlp.configs import finetuning_experiments, pretraining_experiments  # noqa: F401  (registers)
    from official.nlp.data import pretrain_dataloader, sentence_prediction_dataloader
    from official.nlp.modeling import layers, models, networks
    from official.nlp.tasks import masked_lm, sentence_prediction
  finally:
    # Only tensorflow_hub's import needs it: others (pytest's monkeypatch.syspath_prepend) take a pkg_resources in
    # sys.modules for the real one.
    if shim is not None and sys.modules.get('pkg_resources') is shim:
      del sys.modules['pkg_resources']
  return types.SimpleNamespace(tf=tf, tf_keras=tf_keras, exp_factory=exp_factory, optimization=optimization,
                               tf_utils=tf_utils, bert=bert, encoders=encoders, layers=layers, models=models,
                               networks=networks, masked_lm=masked_lm, sentence_prediction=sentence_prediction,
                               pretrain_dataloader=pretrain_dataloader,
                               sentence_prediction_dataloader=sentence_prediction_dataloader)


def set_seed(seed: int) -> None:
  """Seeds TF and Keras' initializers (tf.random.set_seed alone leaves Keras' seed generator unseeded, so weights
  would differ from process to process)."""
  import_tasks().tf_keras.utils.set_random_seed(seed)


def encoder_config(model_config: Mapping[str, Any]) -> Any:
  """Model Garden's `EncoderConfig(type='bert')` for our config.model (hidden_act 'gelu_tanh' is its 'gelu')."""
  mg = import_tasks()
  if model_config['hidden_act'] != 'gelu_tanh':
    raise ValueError(f"Model Garden's BERT encoder computes GELU with the tanh approximation; config.model."
                     f"hidden_act is {model_config['hidden_act']!r}.")
  return mg.encoders.EncoderConfig(type='bert', bert=mg.encoders.BertEncoderConfig(
      vocab_size=model_config['vocab_size'], hidden_size=model_config['hidden_size'],
      num_layers=model_config['num_layers'], num_attention_heads=model_config['num_heads'],
      intermediate_size=model_config['intermediate_size'], hidden_activation='gelu',
      dropout_rate=model_config['hidden_dropout_prob'], attention_dropout_rate=model_config['attention_dropout_prob'],
      max_position_embeddings=model_config['max_position_embeddings'],
      type_vocab_size=model_config['type_vocab_size'], initializer_range=model_config['initializer_range']))


def bert_config_json(model_config: Mapping[str, Any]) -> Dict[str, Any]:
  """The `bert_config.json` our TF converter reads, for a checkpoint of `encoder_config(model_config)`."""
  return {'vocab_size': model_config['vocab_size'], 'hidden_size': model_config['hidden_size'],
          'num_hidden_layers': model_config['num_layers'], 'num_attention_heads': model_config['num_heads'],
          'intermediate_size': model_config['intermediate_size'], 'hidden_act': 'gelu',
          'max_position_embeddings': model_config['max_position_embeddings'],
          'type_vocab_size': model_config['type_vocab_size'], 'initializer_range': model_config['initializer_range'],
          'hidden_dropout_prob': model_config['hidden_dropout_prob'],
          'attention_probs_dropout_prob': model_config['attention_dropout_prob']}


def masked_lm_task(model_config: Mapping[str, Any], train_data: Any = None) -> Any:
  """Model Garden's `MaskedLMTask` with BertPretrainerV2 and its `next_sentence` ClassificationHead, as
  wiki_books_pretrain.yaml configures it (inner_dim = hidden size, tanh, dropout = the encoder's)."""
  mg = import_tasks()
  model = mg.bert.PretrainerConfig(
      encoder=encoder_config(model_config),
      cls_heads=[mg.bert.ClsHeadConfig(inner_dim=model_config['hidden_size'], num_classes=2, activation='tanh',
                                       dropout_rate=model_config['hidden_dropout_prob'], name='next_sentence')])
  config = mg.masked_lm.MaskedLMConfig(model=model)
  if train_data is not None:
    config.train_data = train_data
  return mg.masked_lm.MaskedLMTask(config)


def sentence_prediction_task(model_config: Mapping[str, Any], num_classes: int, *, init_checkpoint: str = '',
                             init_cls_pooler: bool = False, metric_type: str = 'accuracy',
                             train_data: Any = None, validation_data: Any = None) -> Any:
  """Model Garden's `SentencePredictionTask` (BertClassifier on the encoder, use_encoder_pooler=False)."""
  mg = import_tasks()
  config = mg.sentence_prediction.SentencePredictionConfig(
      init_checkpoint=init_checkpoint, init_cls_pooler=init_cls_pooler, metric_type=metric_type,
      model=mg.sentence_prediction.ModelConfig(num_classes=num_classes, encoder=encoder_config(model_config)))
  if train_data is not None:
    config.train_data = train_data
  if validation_data is not None:
    config.validation_data = validation_data
  return mg.sentence_prediction.SentencePredictionTask(config)


def build(model: Any, seq_len: int = 8) -> Any:
  """Creates a Keras model's variables by calling it once (pretrainers also get masked_lm_positions)."""
  mg = import_tasks()
  ids = mg.tf.zeros((1, seq_len), mg.tf.int32)
  inputs = {'input_word_ids': ids, 'input_mask': ids + 1, 'input_type_ids': ids}
  if isinstance(model, mg.models.BertPretrainerV2):
    inputs['masked_lm_positions'] = mg.tf.zeros((1, 2), mg.tf.int32)
  model(inputs, training=False)
  return model


def randomize(model: Any, seed: int = 0, scale: float = 0.2) -> None:
  """Gives every bias, LayerNorm beta and gamma a random value (they start at 0/1) so that a mix-up would show."""
  mg = import_tasks()
  rng = np.random.default_rng(seed)
  for v in model.variables:
    if any(k in v.name for k in ('gamma', 'beta', 'bias')):
      value = rng.normal(scale=scale, size=v.shape) + (1.0 if 'gamma' in v.name else 0.0)
      v.assign(mg.tf.constant(value, v.dtype))


def save_pretrainer(model: Any, directory: str, model_config: Mapping[str, Any], layout: str = 'trainer') -> str:
  """Saves a BertPretrainerV2 as Model Garden writes it, with bert_config.json beside; returns the prefix.

  'trainer': `base_trainer`'s checkpoint (global_step, model=, and `model.checkpoint_items`: encoder, masked_lm,
  next_sentence.pooler_dense); 'items': only `checkpoint_items`, what `base_task.initialize` and
  `sentence_prediction` read (no NSP output layer); 'model': `tf.train.Checkpoint(model=...)`.
  """
  mg = import_tasks()
  if layout == 'trainer':
    ckpt = mg.tf.train.Checkpoint(global_step=mg.tf.Variable(0, dtype=mg.tf.int64), model=model,
                                  **model.checkpoint_items)
  elif layout == 'items':
    ckpt = mg.tf.train.Checkpoint(**model.checkpoint_items)
  elif layout == 'model':
    ckpt = mg.tf.train.Checkpoint(model=model)
  else:
    raise ValueError(f'Unknown layout {layout!r}; use one of {CHECKPOINT_LAYOUTS}.')
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'bert_config.json'), 'w') as f:
    json.dump(bert_config_json(model_config), f)
  return ckpt.save(os.path.join(directory, 'ckpt'))


def set_dropout(model: Any, rate: float) -> int:
  """Sets the rate of every Keras Dropout layer in `model` (BertClassifier's head dropout, 0.1, is not configurable
  through the sentence_prediction task); returns how many were set. Call before the first traced step."""
  mg = import_tasks()
  layers = [x for x in model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
            if isinstance(x, mg.tf_keras.layers.Dropout)]
  for layer in layers:
    layer.rate = rate
  return len(layers)
