"""Scenic BERT checkpoints (google-research/scenic `projects/baselines/bert`, flax) read into our parameter tree.

Scenic's trainer saves its TrainState with `flax.training.checkpoints` (a msgpack file `checkpoint_<step>` in the
workdir): `params` holds the tree that `model.py` BERT builds. Its names, as `layers.py` and `model.py` declare
them, and ours (`models/modeling.py`, `models/scenic_heads.py`):

  stem/word_embedding/embedding [V, E]              bert/word_embeddings/embedding
  stem/type_embedding/embedding [T, E]              bert/type_embeddings/embedding
  stem/posembed_input/pos_embedding [1, P, E]       bert/position_embeddings/embedding [P, E]
  stem/embedding_norm/{scale, bias} [E]             bert/embeddings_layer_norm
  stem/embedding_projection/{kernel [E, H], bias}   bert/embedding_projection        (E != H: Ti, S)
  bert_encoder/encoderblock_<i>/
    LayerNorm_0                                     bert/layer_<i>/attention_layer_norm (pre-LN: before attention;
                                                                                       post-LN: after it)
    MultiHeadDotProductAttention_0/{query,key,value}/{kernel [H, heads, d], bias [heads, d]}
                                                    bert/layer_<i>/attention/{query,key,value}
    MultiHeadDotProductAttention_0/out/{kernel [heads, d, H], bias [H]}
                                                    bert/layer_<i>/attention/output
    LayerNorm_1                                     bert/layer_<i>/output_layer_norm
    MlpBlock_0/Dense_0, Dense_1                     bert/layer_<i>/intermediate, output
  bert_encoder/encoder_norm                         bert/final_layer_norm            (pre_norm)
  next_sentence_prediction_head/Dense_0             bert/pooler                      (dense + tanh on [CLS])
  next_sentence_prediction_head/Dense_1             nsp_head/dense                   (pre_logits = its tanh)
  next_sentence_prediction_head/output_projection   nsp_head/output_projection
  masked_language_model_head/Dense_0, LayerNorm_0   mlm_head/transform, layer_norm
  masked_language_model_head/embedding_bias [1, 1, V]  mlm_head/output_bias [V]

A fine-tuned Scenic classifier (`classification_head` / `regression_head`) gives its Dense_0 as our pooler; its
Dense_1 and output projection have no place in our one-dense classifier and are reported unused. The model it
reads is Scenic's: pre_norm from `encoder_norm`'s presence, the sizes from the shapes, flax's LayerNorm epsilon
(1e-6) and tanh GELU (flax `nn.gelu`), nsp_head 'scenic_head'.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Tuple

import ml_collections
import numpy as np
from flax import traverse_util

Params = Dict[str, Any]

_LAYER = re.compile(r'^bert_encoder/encoderblock_(\d+)/(.+)$')
_BLOCK = {'LayerNorm_0': 'attention_layer_norm', 'LayerNorm_1': 'output_layer_norm',
          'MultiHeadDotProductAttention_0/query': 'attention/query', 'MultiHeadDotProductAttention_0/key':
          'attention/key', 'MultiHeadDotProductAttention_0/value': 'attention/value',
          'MultiHeadDotProductAttention_0/out': 'attention/output', 'MlpBlock_0/Dense_0': 'intermediate',
          'MlpBlock_0/Dense_1': 'output'}
_FIXED = {'stem/word_embedding': 'bert/word_embeddings', 'stem/type_embedding': 'bert/type_embeddings',
          'stem/embedding_norm': 'bert/embeddings_layer_norm', 'stem/embedding_projection': 'bert/embedding_projection',
          'bert_encoder/encoder_norm': 'bert/final_layer_norm', 'next_sentence_prediction_head/Dense_0': 'bert/pooler',
          'next_sentence_prediction_head/Dense_1': 'nsp_head/dense',
          'next_sentence_prediction_head/output_projection': 'nsp_head/output_projection',
          'masked_language_model_head/Dense_0': 'mlm_head/transform',
          'masked_language_model_head/LayerNorm_0': 'mlm_head/layer_norm',
          'classification_head/Dense_0': 'bert/pooler', 'regression_head/Dense_0': 'bert/pooler'}


def our_name(scenic_name: str) -> str:
  """Our '/'-joined parameter name for one of Scenic's; '' for a parameter with no place in our model (a fine-tuned
  classifier's second dense layer and output). A name outside Scenic BERT's tree is a ValueError naming it."""
  owner, _, leaf = scenic_name.rpartition('/')
  if scenic_name == 'stem/posembed_input/pos_embedding':
    return 'bert/position_embeddings/embedding'
  if scenic_name == 'masked_language_model_head/embedding_bias':
    return 'mlm_head/output_bias'
  layer = _LAYER.match(owner)
  if layer and layer.group(2) in _BLOCK:
    return f'bert/layer_{layer.group(1)}/{_BLOCK[layer.group(2)]}/{leaf}'
  if owner in _FIXED:
    return f'{_FIXED[owner]}/{leaf}'
  if owner.split('/')[0] in ('classification_head', 'regression_head'):
    return ''
  raise ValueError(f'{scenic_name!r} is not a parameter of Scenic BERT (projects/baselines/bert model.py): is this '
                   f'a Scenic BERT checkpoint?')


def convert_scenic_params(params: Mapping[str, Any]) -> Tuple[Params, ml_collections.ConfigDict, List[str]]:
  """Scenic BERT's `params` tree -> (our params tree, its config.model, Scenic's names left unused)."""
  flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(dict(params), sep='/').items()}
  ours: Dict[str, np.ndarray] = {}
  unused = []
  for name, value in sorted(flat.items()):
    target = our_name(name)
    if not target:
      unused.append(name)
      continue
    if name == 'stem/posembed_input/pos_embedding':
      value = value[0]  # [1, P, E] -> [P, E]
    elif name == 'masked_language_model_head/embedding_bias':
      value = value.reshape(-1)  # [1, 1, V] -> [V]
    ours[target] = value
  if 'bert/word_embeddings/embedding' not in ours:
    raise ValueError(f'No stem/word_embedding/embedding among {len(flat)} parameters: not a Scenic BERT tree.')
  return traverse_util.unflatten_dict(ours, sep='/'), scenic_model_config(ours), unused


def scenic_model_config(ours: Mapping[str, np.ndarray]) -> ml_collections.ConfigDict:
  """config.model of a converted Scenic BERT (flat '/'-joined names of our tree -> arrays), from the shapes."""
  from projects.bert.models import architecture

  vocab, width = ours['bert/word_embeddings/embedding'].shape
  layers = sorted({int(n.split('/')[1][len('layer_'):]) for n in ours if n.startswith('bert/layer_')})
  if layers != list(range(len(layers))) or not layers:
    raise ValueError(f'Scenic encoder blocks {layers} are not 0 ... L-1.')
  hidden, heads, _ = ours['bert/layer_0/attention/query/kernel'].shape
  return architecture.model_config(
      'base', vocab_size=int(vocab), hidden_size=int(hidden), num_layers=len(layers), num_heads=int(heads),
      intermediate_size=int(ours['bert/layer_0/intermediate/kernel'].shape[1]),
      max_position_embeddings=int(ours['bert/position_embeddings/embedding'].shape[0]),
      type_vocab_size=int(ours['bert/type_embeddings/embedding'].shape[0]),
      embedding_size=0 if width == hidden else int(width), pre_norm='bert/final_layer_norm/scale' in ours,
      layer_norm_eps=1e-6, hidden_act='gelu_tanh', nsp_head='scenic_head')


def read_flax_checkpoint(path: str) -> Dict[str, Any]:
  """The state dict of a flax msgpack checkpoint: `path` is the file, or a workdir whose newest `checkpoint_<step>`
  is read."""
  from flax import serialization

  if os.path.isdir(path):
    steps = [(int(m.group(1)), f) for f in os.listdir(path) if (m := re.fullmatch(r'checkpoint_(\d+)', f))]
    if not steps:
      raise FileNotFoundError(f'{path} holds no checkpoint_<step> file (a Scenic workdir keeps them at its top).')
    path = os.path.join(path, max(steps)[1])
  with open(path, 'rb') as f:
    return serialization.msgpack_restore(f.read())


def convert_scenic_checkpoint(path: str) -> Tuple[Params, ml_collections.ConfigDict]:
  """A Scenic BERT checkpoint (`read_flax_checkpoint`) -> (our params, config.model): what the convert CLI writes."""
  state = read_flax_checkpoint(path)
  params = state.get('params')
  if params is None and isinstance(state.get('optimizer'), Mapping):  # flax.optim-era states: optimizer/target
    params = state['optimizer'].get('target')
  if params is None:
    raise ValueError(f'{path} has no params (top-level keys: {sorted(state)}): not a Scenic TrainState checkpoint.')
  ours, model_config, unused = convert_scenic_params(params)
  if unused:
    from absl import logging
    logging.warning('%s: %d Scenic parameters have no place in our model (a fine-tuned head): %s', path,
                    len(unused), unused)
  return ours, model_config
