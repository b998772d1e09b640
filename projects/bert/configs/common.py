"""The BERT model sizes and `config.model`, shared by every config (pretraining, GLUE, few-shot, demo)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import ml_collections

# size -> (num_layers, hidden_size): the BERT paper's base/large and Google's small BERTs (Turc et al., 2019).
# Heads and the feed-forward width follow from the hidden size: heads = H / 64, intermediate = 4 H.
SIZES: Dict[str, Tuple[int, int]] = {
    'tiny': (2, 128),
    'mini': (4, 256),
    'small': (4, 512),
    'medium': (8, 512),
    'base': (12, 768),
    'large': (24, 1024),
}


def model_config(size: str = 'tiny', **overrides: Any) -> ml_collections.ConfigDict:
  """`config.model` for a named size; `overrides` replace fields (or add one, e.g. num_labels=3).

  Fields: vocab_size (uncased WordPiece, 30522), hidden_size, num_layers, num_heads, intermediate_size,
  max_position_embeddings, type_vocab_size, hidden_dropout_prob, attention_dropout_prob, initializer_range,
  layer_norm_eps, hidden_act ('gelu' = exact erf form; 'gelu_tanh' = the tanh approximation that TF BERT code and
  Model Garden call 'gelu'), dtype (compute dtype, 'float32' or 'bfloat16'; parameters stay float32), remat
  (recompute layer activations in the backward pass), attention_impl ('auto': on GPUs in bfloat16 our flash kernel
  with in-kernel dropout when training, cuDNN's otherwise; XLA elsewhere; or force 'xla', 'cudnn', 'flash'),
  scan_layers (one compiled layer run L times: faster compilation, same parameters), dropout_rng ('jax': the key's
  PRNG; 'hash': a cheaper counter hash) and nsp_head (pretraining's next-sentence head: 'encoder_pooler' = one dense
  layer on the encoder's pooler, as google-research/bert and Hugging Face; 'classification_head' = Model Garden's
  BertPretrainerV2 next_sentence head, its own dense + tanh + dropout).
  """
  if size not in SIZES:
    raise ValueError(f'Unknown BERT size {size!r}; known sizes: {", ".join(SIZES)}.')
  num_layers, hidden = SIZES[size]
  config = ml_collections.ConfigDict({
      'vocab_size': 30522,
      'hidden_size': hidden,
      'num_layers': num_layers,
      'num_heads': hidden // 64,
      'intermediate_size': 4 * hidden,
      'max_position_embeddings': 512,
      'type_vocab_size': 2,
      'hidden_dropout_prob': 0.1,
      'attention_dropout_prob': 0.1,
      'initializer_range': 0.02,
      'layer_norm_eps': 1e-12,
      'hidden_act': 'gelu',
      'dtype': 'float32',
      'remat': False,
      'attention_impl': 'auto',
      'scan_layers': False,
      'dropout_rng': 'jax',
      'nsp_head': 'encoder_pooler',
  })
  for key, value in overrides.items():
    config[key] = value
  return config

