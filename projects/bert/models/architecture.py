"""The BERT model sizes and `config.model` (every field with its default and meaning), shared by every config
(pretraining, GLUE, SQuAD, few-shot, demo)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import ml_collections
from ml_collections import config_dict

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

# Scenic BERT's sizes (google-research/scenic projects/baselines/bert/configs/bert_pretraining_config.py lines 26-30):
# size -> (num_layers, hidden_size, num_heads, intermediate_size, embedding_size); its heads are not H / 64.
SCENIC_SIZES: Dict[str, Tuple[int, int, int, int, int]] = {
    'Ti': (6, 128, 2, 512, 128),
    'S': (12, 256, 4, 1024, 128),
    'B': (12, 768, 12, 3072, 768),
    'L': (24, 1024, 16, 4096, 1024),
}

# The fields that fix what the weights compute: their shapes, the activation and LayerNorm's epsilon. With
# config.init_from, a field left unset (None) takes the checkpoint's value (`projects.bert.checkpoints.weights`); a
# field set (by a SIZE variant or --config.model.X) must agree with it. The others (dropout, dtype, ...) are the run's
# own.
ARCHITECTURE_FIELDS = ('vocab_size', 'hidden_size', 'num_layers', 'num_heads', 'intermediate_size',
                       'max_position_embeddings', 'type_vocab_size', 'layer_norm_eps', 'hidden_act', 'pre_norm',
                       'embedding_size')
# The architecture fields that a size names (SIZES).
SIZE_FIELDS = ('hidden_size', 'num_layers', 'num_heads', 'intermediate_size')


# Every field of `config.model`: its default and its meaning, the one place both are written (`model_config` builds
# from it; the configs' FIELD_DOCS, what `--print_config` prints, read it through `field_docs`). SIZE: the value
# follows the size (SIZES; heads = H / 64, intermediate = 4 H).
SIZE = object()
MODEL_FIELDS: Dict[str, Tuple[Any, str]] = {
    'vocab_size': (30522, 'WordPiece vocabulary size (30522: uncased English BERT)'),
    'hidden_size': (SIZE, 'width H of the encoder (base 768)'),
    'num_layers': (SIZE, 'transformer layers L (base 12)'),
    'num_heads': (SIZE, 'attention heads (H / 64 in the standard sizes)'),
    'intermediate_size': (SIZE, 'feed-forward width (4 H in the standard sizes)'),
    'max_position_embeddings': (512, 'longest sequence the position table holds (512)'),
    'type_vocab_size': (2, 'segment ids (2: sentence A / B)'),
    'hidden_dropout_prob': (0.1, 'dropout on embeddings and layer outputs'),
    'attention_dropout_prob': (0.1, 'dropout on attention probabilities'),
    'initializer_range': (0.02, 'std of the truncated-normal initialisation of fresh weights'),
    'layer_norm_eps': (1e-12, "LayerNorm epsilon (1e-12 as BERT's checkpoints)"),
    # 'gelu_tanh' is the tanh approximation that TF BERT code and Model Garden call 'gelu'.
    'hidden_act': ('gelu', "'gelu' (exact erf, HF checkpoints) or 'gelu_tanh' (TF checkpoints), relu, tanh, ..."),
    'dtype': ('float32', "compute dtype 'float32' or 'bfloat16' (parameters stay float32)"),
    'remat': (False, "recompute each layer's activations in the backward pass (memory for compute)"),
    # 'auto': on GPUs in bfloat16 our flash kernel with in-kernel dropout when training, cuDNN's otherwise.
    'attention_impl': ('auto', "'auto' (GPU bf16: flash kernel / cuDNN; else XLA), or force 'xla', 'cudnn', 'flash'"),
    'scan_layers': (False, 'one compiled layer body run L times (faster compilation, same parameters)'),
    'dropout_rng': ('jax', "dropout's random bits: 'jax' (the key's PRNG) or 'hash' (cheaper counter hash)"),
    # 'encoder_pooler': one dense layer on the encoder's pooler (google-research/bert, Hugging Face);
    # 'classification_head': Model Garden's BertPretrainerV2 next_sentence head, its own dense + tanh + dropout.
    # 'scenic_head': Scenic's ClassificationHead, two dense + tanh layers on [CLS], the encoder's pooler the first.
    'nsp_head': ('encoder_pooler',
                 "pretraining's NSP head: 'encoder_pooler' (BERT paper, HF), 'classification_head' (Model Garden) "
                 "or 'scenic_head' (Scenic: the pooler, then dense + tanh)"),
    'pre_norm': (False, 'LayerNorm before attention and MLP and after the last layer (Scenic); False: post-LN (BERT)'),
    'embedding_size': (0, 'width of the embedding tables, projected to hidden_size (Scenic S: 128); 0: hidden_size'),
}
# Added to the meaning of an architecture field: how an unset one is filled in.
ARCHITECTURE_NOTE = " [None: taken from init_from's checkpoint, else the default size]"


def field_docs(prefix: str = 'model.') -> Dict[str, str]:
  """{prefix + field: meaning} of every MODEL_FIELDS entry (what `--print_config` prints beside `config.model`)."""
  return {f'{prefix}{k}': doc + (ARCHITECTURE_NOTE if k in ARCHITECTURE_FIELDS else '')
          for k, (_, doc) in MODEL_FIELDS.items()}


def model_config(size: str = 'tiny', inherit: Tuple[str, ...] = (), **overrides: Any) -> ml_collections.ConfigDict:
  """`config.model` for a named size: every MODEL_FIELDS entry at its default, the size's fields from SIZES;
  `overrides` replace fields (or add one, e.g. num_labels=3).

  `inherit`: architecture fields left unset (typed None placeholders, still settable by --config.model.X), to be
  taken from the checkpoint at init_from, or from `size` when there is none (`default_architecture`).
  """
  if size not in SIZES:
    raise ValueError(f'Unknown BERT size {size!r}; known sizes: {", ".join(SIZES)}.')
  num_layers, hidden = SIZES[size]
  by_size = {'hidden_size': hidden, 'num_layers': num_layers, 'num_heads': hidden // 64,
             'intermediate_size': 4 * hidden}
  config = ml_collections.ConfigDict({k: by_size[k] if default is SIZE else default
                                      for k, (default, _) in MODEL_FIELDS.items()})
  for key, value in overrides.items():
    config[key] = value
  for key in inherit:
    config[key] = config_dict.placeholder(type(config[key]))
  return config


def scenic_model_config(size: str, **overrides: Any) -> ml_collections.ConfigDict:
  """`config.model` of Scenic BERT's size Ti, S, B or L (`SCENIC_SIZES`); the recipe's fields come as overrides."""
  if size not in SCENIC_SIZES:
    raise ValueError(f'Unknown Scenic BERT size {size!r}; known sizes: {", ".join(SCENIC_SIZES)}.')
  layers, hidden, heads, inter, emb = SCENIC_SIZES[size]
  return model_config('base', num_layers=layers, hidden_size=hidden, num_heads=heads, intermediate_size=inter,
                      embedding_size=0 if emb == hidden else emb, **overrides)


def inherit_architecture(size: str = '') -> Tuple[str, ...]:
  """The `inherit` of `model_config` for a variant: with a SIZE, every architecture field but the size's own;
  without one, all of them."""
  return tuple(f for f in ARCHITECTURE_FIELDS if not size or f not in SIZE_FIELDS)


def default_architecture(model: Dict[str, Any], size: str = 'base') -> Dict[str, Any]:
  """The value of each architecture field unset (None) in `model` when no checkpoint says: `size`'s, with the heads
  (H / 64) and feed-forward width (4 H) following a hidden size that is set."""
  hidden = model.get('hidden_size') or SIZES[size][1]
  defaults = model_config(size, hidden_size=hidden, num_heads=max(1, hidden // 64), intermediate_size=4 * hidden)
  return {f: defaults[f] for f in ARCHITECTURE_FIELDS if model.get(f) is None}

