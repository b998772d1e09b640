"""Hugging Face BERT checkpoints (a `save_pretrained` directory) -> our parameter tree and config.model.

  python -m projects.bert.checkpoints.convert --format=hf --input=/path/to/save_pretrained_dir --output=/tmp/bert_hf

Reads config.json and model.safetensors (or a sharded model.safetensors.index.json, or pytorch_model.bin through
torch, weights only) by name through `hf_names`; local files only, nothing is downloaded. The next-sentence head is
one dense layer on the encoder's pooler (model.nsp_head='encoder_pooler').
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Mapping, Tuple

import ml_collections
import numpy as np

from core import errors
from projects.bert.checkpoints import hf_names, layout


def _hf_weights(hf_dir: str) -> Tuple[Dict[str, np.ndarray], str]:
  """All tensors of a `save_pretrained` directory as float32 numpy, and the file(s) they came from."""
  single = os.path.join(hf_dir, 'model.safetensors')
  index = os.path.join(hf_dir, 'model.safetensors.index.json')
  torch_bin = os.path.join(hf_dir, 'pytorch_model.bin')
  if os.path.exists(single) or os.path.exists(index):
    from safetensors.numpy import load_file
    files = [single] if os.path.exists(single) else sorted(
        {os.path.join(hf_dir, f) for f in layout.read_json(index)['weight_map'].values()})
    weights = {}
    for f in files:
      try:
        weights.update(load_file(f))
      except Exception as e:  # pylint: disable=broad-except  (safetensors raises its own error types)
        raise errors.DataError(f'{f} cannot be read as safetensors ({e}): the file is damaged or truncated (an '
                               f'interrupted download?). Download it again, or re-save the model with '
                               f'save_pretrained.') from None
    return weights, files[0] if len(files) == 1 else index
  if os.path.exists(torch_bin):
    try:
      import torch
    except ImportError as e:
      raise ImportError(f'{torch_bin} is a PyTorch pickle and torch is not installed; install torch or re-save the '
                        f'model with safetensors (save_pretrained(..., safe_serialization=True)).') from e
    try:
      state = torch.load(torch_bin, map_location='cpu', weights_only=True)
    except Exception as e:  # pylint: disable=broad-except  (torch raises RuntimeError, EOFError, pickle errors)
      raise errors.DataError(f'{torch_bin} cannot be read ({e}): the file is damaged or truncated (an interrupted '
                             f'download?). Download it again.') from None
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}, torch_bin
  raise FileNotFoundError(f'{hf_dir} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin '
                          f'(expected a directory written by save_pretrained).')


def hf_model_config(hf_config: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Hugging Face `BertConfig` fields (config.json) -> our config.model."""
  if hf_config.get('model_type', 'bert') != 'bert':
    raise ValueError(f"model_type {hf_config.get('model_type')!r} is not 'bert'; only BERT checkpoints convert.")
  if hf_config.get('position_embedding_type', 'absolute') != 'absolute':
    raise ValueError(f"position_embedding_type {hf_config['position_embedding_type']!r} is not supported "
                     f"(only 'absolute').")
  act = hf_config.get('hidden_act', 'gelu')
  if act not in hf_names.HF_ACTIVATIONS:
    raise ValueError(f'hidden_act {act!r} is not supported; known: {sorted(hf_names.HF_ACTIVATIONS)}.')
  fields = {ours: kind(hf_config[hf] if default is None else hf_config.get(hf, default))
            for ours, hf, kind, default in hf_names.HF_FIELDS}
  return layout.validated_model_config(**fields, hidden_act=hf_names.HF_ACTIVATIONS[act],
                                       nsp_head='encoder_pooler')


def convert_hf_checkpoint(hf_dir: str) -> Tuple[layout.Params, ml_collections.ConfigDict]:
  """A Hugging Face `BertModel` / `BertForPreTraining` / `BertForMaskedLM` / `BertForQuestionAnswering` directory
  -> (params, config.model).

  Reads `config.json` and `model.safetensors` (or `pytorch_model.bin` through torch, weights only). The params have
  'bert' and, when the source has them, 'mlm_head', 'nsp_head' and 'span_head' (`qa_outputs`); float32 numpy
  arrays.
  """
  config_path = os.path.join(hf_dir, 'config.json')
  if not os.path.exists(config_path):
    raise FileNotFoundError(f'{config_path} not found: expected a directory written by save_pretrained.')
  model_config = hf_model_config(layout.read_json(config_path))
  weights, file = _hf_weights(hf_dir)
  prefix = 'bert.' if any(k.startswith('bert.') for k in weights) else ''
  entries = hf_names.hf_entries(prefix, model_config.num_layers)
  available = {k: tuple(v.shape) for k, v in weights.items()}
  layer_ids = [int(m.group(1)) for k in weights for m in [re.match(rf'{re.escape(prefix)}encoder\.layer\.(\d+)\.', k)]
               if m]
  layout.check_layer_count(layer_ids, model_config, file, f'{prefix}encoder.layer.<i>')
  params = layout.assemble(entries, available, weights.__getitem__, model_config, file,
                     optional_groups=('bert/pooler', 'mlm_head', 'nsp_head', 'span_head'))
  decoder = weights.get('cls.predictions.decoder.weight')
  if decoder is not None and not np.array_equal(decoder, params['bert']['word_embeddings']['embedding']):
    raise ValueError(f"{file}: 'cls.predictions.decoder.weight' differs from the word embeddings; our MLM head ties "
                     f'its output layer to them, so an untied checkpoint cannot convert exactly.')
  used = {s for e in entries for s in e.sources}
  layout.check_unused(available, sorted(used), lambda n: n.startswith(tuple(f'{prefix}{s}' for s in (
      'embeddings.', 'encoder.', 'pooler.'))) and not n.endswith(('position_ids', 'token_type_ids')), file,
      model_config)
  return params, model_config
