"""Sentence embeddings from one intermediate layer of the encoder: XTREME's retrieval baseline (google-research/xtreme
third_party/evaluate_retrieval.py) without fine-tuning.

Which layer: `layer` counts the transformer layers from 0, as xtreme's `--specific_layer` indexes the list of the
last `num_layers` Hugging Face hidden states (the embedding output excluded): layer 7 of a 12-layer model is the
output of its 8th transformer layer, `hidden_states[8]` counting the embeddings as 0. A pre-norm model's layer
output is taken before its final LayerNorm. `default_layer(num_layers)` scales xtreme's 7-of-12 to other depths.

Pooling: 'mean' (xtreme's default `mean_pool_embedding`) averages the layer's outputs over the real tokens, [CLS]
and [SEP] included (its `pool_mask` is the attention mask unless --pool_skip_special_token); 'cls' takes the first
token's output (`cls_pool_embedding`, which xtreme's scripts/run_bucc2018.sh passes).

The encoder runs only the layers up to `layer` (the later ones cannot change the result), with the module of
`modeling.py` unchanged: the layer's output is read with Flax's `capture_intermediates`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Mapping

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from core import sharding as sharding_lib
from projects.bert.models import modeling

POOLINGS = ('mean', 'cls')
XTREME_LAYER, XTREME_DEPTH = 7, 12  # xtreme's --specific_layer for 12-layer models (run_tatoeba.sh, run_bucc2018.sh)


def default_layer(num_layers: int) -> int:
  """xtreme's layer 7 of 12 scaled to `num_layers` layers: floor(7 * num_layers / 12) (6 layers: 3; 24: 14, where
  xtreme's run_tatoeba.sh picks 13 for XLM-R large)."""
  return XTREME_LAYER * int(num_layers) // XTREME_DEPTH


def check_layer(layer: int, num_layers: int, field: str) -> int:
  """`layer` when it is one of the model's layers, else a ValueError naming `field`."""
  if not 0 <= int(layer) < int(num_layers):
    raise ValueError(f'{field}={layer}: the model has layers 0 .. {num_layers - 1} (xtreme counts from 0: 7 is the '
                     f'output of the 8th layer of 12); -1 picks {default_layer(num_layers)}, xtreme\'s 7 of 12 '
                     f'scaled to {num_layers} layers.')
  return int(layer)


def layer_params(bert_params: Mapping[str, Any], layer: int) -> Dict[str, Any]:
  """The encoder parameters `layer_embedding_fn` reads: everything but the layers after `layer`."""
  return {name: value for name, value in bert_params.items()
          if not (name.startswith('layer_') and name[len('layer_'):].isdigit() and int(name[len('layer_'):]) > layer)}


def layer_embedding_fn(model_config: Mapping[str, Any], layer: int, pooling: str, mesh: Mesh
                       ) -> Callable[[Any, Dict], jax.Array]:
  """Jitted `fn(params, batch) -> [batch, hidden] float32` (replicated): the `pooling` of layer `layer`'s outputs;
  `params` the encoder's ('bert') parameters (`layer_params` of them suffices), `batch` global input_ids, input_mask
  and segment_ids [batch, seq]. Cached per architecture, layer, pooling and mesh; each batch shape compiles once."""
  if pooling not in POOLINGS:
    raise ValueError(f'Unknown pooling {pooling!r}; use one of {POOLINGS}.')
  config = modeling.BertConfig.from_model_config(model_config)
  check_layer(layer, config.num_layers, 'layer')
  # Only the layers up to `layer`, unrolled (scan stacks every layer; remat is for training).
  config = dataclasses.replace(config, num_layers=layer + 1, scan_layers=False, remat=False)
  return _embedding_fn(config, int(layer), pooling, mesh)


@functools.lru_cache(maxsize=16)
def _embedding_fn(config: modeling.BertConfig, layer: int, pooling: str, mesh: Mesh
                  ) -> Callable[[Any, Dict], jax.Array]:
  encoder = modeling.BertEncoder(config)
  name = f'layer_{layer}'
  captured = (lambda module, method: module.name == name and method == '__call__')

  def fn(params, batch):
    _, state = encoder.apply({'params': params}, batch['input_ids'], batch['input_mask'], batch['segment_ids'],
                             train=False, capture_intermediates=captured)
    hidden = state['intermediates'][name]['__call__'][0].astype(jnp.float32)  # [batch, seq, hidden]
    if pooling == 'cls':
      return hidden[:, 0]
    mask = batch['input_mask'].astype(jnp.float32)[..., None]
    return (hidden * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)  # padding rows: zeros

  return jax.jit(fn, out_shardings=sharding_lib.replicated(mesh))
