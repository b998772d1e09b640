r"""TF Model Garden / original TF BERT and Hugging Face checkpoints -> our parameter tree, and ours -> Hugging Face
(functions and a CLI).

  python -m projects.bert.checkpoints.convert --format=tf --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
      --bert_config=uncased_L-12_H-768_A-12/bert_config.json --output=/tmp/bert_base
  python -m projects.bert.checkpoints.convert --format=hf --input=/path/to/save_pretrained_dir --output=/tmp/bert_hf
  python -m projects.bert.checkpoints.convert --export --format=hf --input=$WD/mrpc --output=/tmp/mrpc_hf   # ours -> HF

The output is a `core.params_io.save_params` directory whose metadata holds `model` (the matching config.model)
and `source`; trainers start from it with `config.init_from=DIR`. Local files only: nothing is downloaded.

`--export` goes the other way (`export_hf_checkpoint`): a params directory or a run's workdir -> config.json +
model.safetensors (+ vocab.txt when known) that `transformers.BertModel.from_pretrained` (and BertForPreTraining /
BertForSequenceClassification when the weights have those heads) loads, through the same name table.

TF checkpoints come in three layouts, all read by variable name (no TF model is built):
  - object-based `tf.train.Checkpoint(encoder=networks.BertEncoder(...))` (Model Garden's released TF2
    checkpoints; legacy ones use `model=`), optionally with the rest of `BertPretrainerV2.checkpoint_items`
    (`masked_lm=`, `next_sentence.pooler_dense=`), or a Model Garden training checkpoint of a `BertPretrainerV2`
    (`model=` plus those items, as `base_trainer` writes it), whose `model/classification_heads/0/out_proj` is the
    `next_sentence` head's output layer;
  - the same for `networks.BertEncoderV2`;
  - the name-based TF1 checkpoint of google-research/bert (`bert/encoder/layer_0/...`, `cls/predictions/...`).
TF's 'gelu' is the tanh approximation (Model Garden's `tf_utils.get_activation('gelu')` and the original BERT code),
so TF checkpoints convert with hidden_act='gelu_tanh'; Hugging Face's 'gelu' is the exact erf form. The
next-sentence head follows the checkpoint: one dense layer on the encoder's pooler for TF1 and Hugging Face
(model.nsp_head='encoder_pooler'), Model Garden's ClassificationHead for object-based checkpoints
('classification_head': nsp_head/pooler_dense and nsp_head/logits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
from absl import logging
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from core import errors, logs
from projects.bert.models import modeling
from projects.bert.models import architecture as common

Params = Dict[str, Any]

_HF_ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh', 'relu': 'relu'}
_TF_ACTIVATIONS = {'gelu': 'gelu_tanh', 'relu': 'relu'}


@dataclasses.dataclass(frozen=True)
class _Entry:
  """Where one of our arrays comes from.

  `sources` are candidate source names (the first present is used). `layout` says how the source stores it:
  'same' (our shape), 'flat' (our leading `in_ndim` axes and the rest each flattened: [in, out] or [n]) or
  'out_in' (flattened and transposed, [out, in] as torch.nn.Linear keeps its weight).
  """

  ours: str
  sources: Tuple[str, ...]
  layout: str = 'same'
  in_ndim: int = 1


def expected_shapes(model_config: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
  """{'bert/.../kernel': shape} of `BertForPreTraining` (encoder + MLM + NSP heads) for `model_config`, and of the
  question-answering head (`span_head`)."""
  cfg = modeling.BertConfig.from_model_config(model_config)
  module = modeling.BertForPreTraining(cfg, nsp_head=model_config.get('nsp_head', 'encoder_pooler'))
  ones = jnp.ones((1, 1), jnp.int32)
  batch = {'input_ids': ones, 'input_mask': ones, 'segment_ids': ones, 'masked_lm_positions': ones * 0}
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), batch))['params']
  out = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes, sep='/').items()}
  out.update({'span_head/kernel': (cfg.hidden_size, 2), 'span_head/bias': (2,)})  # modeling.BertForQuestionAnswering
  return out


def _source_shape(ours: Tuple[int, ...], layout: str, in_ndim: int) -> Tuple[int, ...]:
  if layout == 'same':
    return ours
  n_in, n_out = int(np.prod(ours[:in_ndim])), int(np.prod(ours[in_ndim:]))
  if layout == 'flat':
    return (n_in, n_out) if in_ndim else (n_out,)
  if layout == 'out_in':
    return (n_out, n_in)
  raise ValueError(f'Unknown layout {layout!r}.')


def _to_ours(array: np.ndarray, ours: Tuple[int, ...], layout: str) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if layout == 'out_in':
    array = array.T
  return np.ascontiguousarray(array.reshape(ours))


def _describe(config: Mapping[str, Any]) -> str:
  keys = ('vocab_size', 'hidden_size', 'num_layers', 'num_heads', 'intermediate_size', 'max_position_embeddings',
          'type_vocab_size')
  return ', '.join(f'{k}={config[k]}' for k in keys)


def _assemble(entries: Sequence[_Entry], available: Mapping[str, Tuple[int, ...]], read: Callable[[str], Any],
              model_config: Mapping[str, Any], file: str, optional_groups: Sequence[str] = ()) -> Params:
  """Reads every entry from the source, checking shapes against our model; returns the nested param tree.

  Entries whose `ours` starts with one of `optional_groups` (heads, the pooler) are taken only when the source has
  the group's first entry; every other entry must exist. Errors name the source variable and the file.
  """
  shapes = expected_shapes(model_config)
  present_groups = set()
  for group in optional_groups:
    first = next((e for e in entries if e.ours.startswith(group)), None)
    if first is not None and any(s in available for s in first.sources):
      present_groups.add(group)
  flat = {}
  for e in entries:
    group = next((g for g in optional_groups if e.ours.startswith(g)), None)
    if group is not None and group not in present_groups:
      continue
    name = next((s for s in e.sources if s in available), None)
    if name is None:
      raise ValueError(f'{file}: variable {" or ".join(map(repr, e.sources))} (for our {e.ours!r}) is missing. '
                       f'The checkpoint does not fit the config ({_describe(model_config)}).')
    ours_shape = shapes[e.ours]
    want = _source_shape(ours_shape, e.layout, e.in_ndim)
    found = tuple(available[name])
    if found != want:
      raise ValueError(f'{file}: variable {name!r} has shape {found}, expected {want} (our {e.ours!r} '
                       f'{ours_shape}) for the config ({_describe(model_config)}).')
    flat[e.ours] = _to_ours(read(name), ours_shape, e.layout)
  return traverse_util.unflatten_dict(flat, sep='/')


def _check_layer_count(indices: Sequence[int], model_config: Mapping[str, Any], file: str, what: str) -> None:
  found = sorted(set(indices))
  if len(found) != model_config['num_layers']:
    raise ValueError(f'{file} has {len(found)} transformer layers ({what}) but the config says '
                     f'num_layers={model_config["num_layers"]}: the config does not fit the checkpoint.')


def _model_config(**fields: Any) -> ml_collections.ConfigDict:
  config = common.model_config('base', **fields)
  modeling.BertConfig.from_model_config(config)  # validates (heads divide hidden, known activation)
  return config


def _unused_check(available: Mapping[str, Any], used: Sequence[str], namespace: Callable[[str], bool],
                  file: str, model_config: Mapping[str, Any]) -> None:
  """Encoder variables the conversion did not use mean the config and checkpoint disagree (more layers, ...)."""
  leftover = sorted(n for n in available if namespace(n) and n not in set(used))
  if leftover:
    raise ValueError(f'{file}: variable {leftover[0]!r} (and {len(leftover) - 1} more) is not used by a model with '
                     f'the config ({_describe(model_config)}): the config does not fit the checkpoint.')


def _read_json(path: str) -> Dict[str, Any]:
  """The JSON object in `path`; DataError naming the file when it is damaged."""
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.DataError(f'{path} is not valid JSON ({e}): the file is damaged or truncated. Download it again '
                           f'(or re-save the model).') from None


# ------------------------------------------------------------------------------------------------ Hugging Face


def _hf_weights(hf_dir: str) -> Tuple[Dict[str, np.ndarray], str]:
  """All tensors of a `save_pretrained` directory as float32 numpy, and the file(s) they came from."""
  single = os.path.join(hf_dir, 'model.safetensors')
  index = os.path.join(hf_dir, 'model.safetensors.index.json')
  torch_bin = os.path.join(hf_dir, 'pytorch_model.bin')
  if os.path.exists(single) or os.path.exists(index):
    from safetensors.numpy import load_file
    files = [single] if os.path.exists(single) else sorted(
        {os.path.join(hf_dir, f) for f in _read_json(index)['weight_map'].values()})
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


# config.json fields: (ours, Hugging Face's, type, default when absent; None: required). Read one way by
# `hf_model_config` (import) and the other by `hf_config` (export).
_HF_FIELDS = (('vocab_size', 'vocab_size', int, None), ('hidden_size', 'hidden_size', int, None),
              ('num_layers', 'num_hidden_layers', int, None), ('num_heads', 'num_attention_heads', int, None),
              ('intermediate_size', 'intermediate_size', int, None),
              ('max_position_embeddings', 'max_position_embeddings', int, None),
              ('type_vocab_size', 'type_vocab_size', int, None),
              ('hidden_dropout_prob', 'hidden_dropout_prob', float, 0.1),
              ('attention_dropout_prob', 'attention_probs_dropout_prob', float, 0.1),
              ('initializer_range', 'initializer_range', float, 0.02),
              ('layer_norm_eps', 'layer_norm_eps', float, 1e-12))


def hf_model_config(hf_config: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Hugging Face `BertConfig` fields (config.json) -> our config.model."""
  if hf_config.get('model_type', 'bert') != 'bert':
    raise ValueError(f"model_type {hf_config.get('model_type')!r} is not 'bert'; only BERT checkpoints convert.")
  if hf_config.get('position_embedding_type', 'absolute') != 'absolute':
    raise ValueError(f"position_embedding_type {hf_config['position_embedding_type']!r} is not supported "
                     f"(only 'absolute').")
  act = hf_config.get('hidden_act', 'gelu')
  if act not in _HF_ACTIVATIONS:
    raise ValueError(f'hidden_act {act!r} is not supported; known: {sorted(_HF_ACTIVATIONS)}.')
  fields = {ours: kind(hf_config[hf] if default is None else hf_config.get(hf, default))
            for ours, hf, kind, default in _HF_FIELDS}
  return _model_config(**fields, hidden_act=_HF_ACTIVATIONS[act],
                       nsp_head='encoder_pooler')


def _hf_entries(prefix: str, num_layers: int, head: Optional[str] = None) -> List[_Entry]:
  """Our names <-> Hugging Face's, for both directions (`convert_hf_checkpoint`, `export_hf_checkpoint`); `prefix`
  is 'bert.' in checkpoints of models with heads. `head` ('classifier' or 'regressor', ours) adds the sequence
  classification head, HF's `classifier` (STS-B regression: one output)."""

  def dense(ours: str, src: str, in_ndim: int = 1) -> List[_Entry]:
    return [_Entry(f'{ours}/kernel', (f'{src}.weight',), 'out_in', in_ndim),
            _Entry(f'{ours}/bias', (f'{src}.bias',), 'flat' if in_ndim == 1 else 'same', 0)]

  def norm(ours: str, src: str) -> List[_Entry]:  # very old checkpoints name LayerNorm weights gamma/beta
    return [_Entry(f'{ours}/scale', (f'{src}.weight', f'{src}.gamma')),
            _Entry(f'{ours}/bias', (f'{src}.bias', f'{src}.beta'))]

  p = prefix
  out = [_Entry('bert/word_embeddings/embedding', (f'{p}embeddings.word_embeddings.weight',)),
         _Entry('bert/position_embeddings/embedding', (f'{p}embeddings.position_embeddings.weight',)),
         _Entry('bert/type_embeddings/embedding', (f'{p}embeddings.token_type_embeddings.weight',))]
  out += norm('bert/embeddings_layer_norm', f'{p}embeddings.LayerNorm')
  for i in range(num_layers):
    src, ours = f'{p}encoder.layer.{i}', f'bert/layer_{i}'
    for name in ('query', 'key', 'value'):
      out += dense(f'{ours}/attention/{name}', f'{src}.attention.self.{name}')
    out += dense(f'{ours}/attention/output', f'{src}.attention.output.dense', in_ndim=2)
    out += norm(f'{ours}/attention_layer_norm', f'{src}.attention.output.LayerNorm')
    out += dense(f'{ours}/intermediate', f'{src}.intermediate.dense')
    out += dense(f'{ours}/output', f'{src}.output.dense')
    out += norm(f'{ours}/output_layer_norm', f'{src}.output.LayerNorm')
  out += dense('bert/pooler', f'{p}pooler.dense')
  out += dense('mlm_head/transform', 'cls.predictions.transform.dense')
  out += norm('mlm_head/layer_norm', 'cls.predictions.transform.LayerNorm')
  out.append(_Entry('mlm_head/output_bias', ('cls.predictions.bias', 'cls.predictions.decoder.bias')))
  out += dense('nsp_head', 'cls.seq_relationship')
  out += dense('span_head', 'qa_outputs')  # BertForQuestionAnswering: [2, hidden], start then end
  if head is not None:
    out += dense(head, 'classifier')
  return out


def convert_hf_checkpoint(hf_dir: str) -> Tuple[Params, ml_collections.ConfigDict]:
  """A Hugging Face `BertModel` / `BertForPreTraining` / `BertForMaskedLM` / `BertForQuestionAnswering` directory
  -> (params, config.model).

  Reads `config.json` and `model.safetensors` (or `pytorch_model.bin` through torch, weights only). The params have
  'bert' and, when the source has them, 'mlm_head', 'nsp_head' and 'span_head' (`qa_outputs`); float32 numpy
  arrays.
  """
  config_path = os.path.join(hf_dir, 'config.json')
  if not os.path.exists(config_path):
    raise FileNotFoundError(f'{config_path} not found: expected a directory written by save_pretrained.')
  model_config = hf_model_config(_read_json(config_path))
  weights, file = _hf_weights(hf_dir)
  prefix = 'bert.' if any(k.startswith('bert.') for k in weights) else ''
  entries = _hf_entries(prefix, model_config.num_layers)
  available = {k: tuple(v.shape) for k, v in weights.items()}
  layer_ids = [int(m.group(1)) for k in weights for m in [re.match(rf'{re.escape(prefix)}encoder\.layer\.(\d+)\.', k)]
               if m]
  _check_layer_count(layer_ids, model_config, file, f'{prefix}encoder.layer.<i>')
  params = _assemble(entries, available, weights.__getitem__, model_config, file,
                     optional_groups=('bert/pooler', 'mlm_head', 'nsp_head', 'span_head'))
  decoder = weights.get('cls.predictions.decoder.weight')
  if decoder is not None and not np.array_equal(decoder, params['bert']['word_embeddings']['embedding']):
    raise ValueError(f"{file}: 'cls.predictions.decoder.weight' differs from the word embeddings; our MLM head ties "
                     f'its output layer to them, so an untied checkpoint cannot convert exactly.')
  used = {s for e in entries for s in e.sources}
  _unused_check(available, sorted(used), lambda n: n.startswith(tuple(f'{prefix}{s}' for s in (
      'embeddings.', 'encoder.', 'pooler.'))) and not n.endswith(('position_ids', 'token_type_ids')), file,
      model_config)
  return params, model_config


def _from_ours(array: np.ndarray, layout: str, in_ndim: int) -> np.ndarray:
  """The inverse of `_to_ours`: our array in the source's layout."""
  array = np.asarray(array, np.float32)
  shape = _source_shape(array.shape, layout, in_ndim)
  if layout == 'out_in':
    return np.ascontiguousarray(array.reshape(shape[::-1]).T)
  return np.ascontiguousarray(array.reshape(shape))


def hf_config(model_config: Mapping[str, Any], architecture: str = 'BertModel') -> Dict[str, Any]:
  """Our config.model -> a Hugging Face `BertConfig` (config.json) of `architecture`."""
  act = model_config.get('hidden_act', 'gelu')
  hf_act = act if act in _HF_ACTIVATIONS else next((k for k, v in _HF_ACTIVATIONS.items() if v == act), None)
  if hf_act is None:
    raise ValueError(f'hidden_act {act!r} has no Hugging Face name; known: {sorted(set(_HF_ACTIVATIONS.values()))}.')
  out = {hf: kind(model_config[ours] if default is None else model_config.get(ours, default))
         for ours, hf, kind, default in _HF_FIELDS}
  out.update(model_type='bert', architectures=[architecture], hidden_act=hf_act, position_embedding_type='absolute',
             pad_token_id=0, tie_word_embeddings=True)  # our MLM head ties its output layer to the word embeddings
  return out


def _run_config_of(path: str) -> Dict[str, Any]:
  """The config.json of the run whose workdir (or best/ or checkpoints/) `path` is; {} when none."""
  for candidate in (os.path.join(path, 'config.json'), os.path.join(os.path.dirname(path.rstrip('/')), 'config.json')):
    if os.path.exists(candidate):
      return _read_json(candidate)
  return {}


def find_vocab(path: str, depth: int = 4) -> Optional[str]:
  """vocab.txt of the weights at `path`, when known: beside them, beside the checkpoint they were converted from
  (metadata.json's `source`), or, for a run, that of its `init_from`, followed up to `depth` links."""
  from core import params_io

  path = os.path.abspath(path)
  if os.path.exists(os.path.join(path, 'vocab.txt')):
    return os.path.join(path, 'vocab.txt')
  if depth <= 0:
    return None
  links = []
  if params_io.has_params(path):
    source = params_io.load_params_metadata(path).get('source')
    source = source.get('path') if isinstance(source, dict) else source
    if isinstance(source, str) and source:
      links.append(source if os.path.isdir(source) else os.path.dirname(source))
  init_from = _run_config_of(path).get('init_from')
  if init_from:
    links.append(init_from)
  for link in links:
    found = find_vocab(link, depth - 1)
    if found:
      return found
  return None


# Files of a Hugging Face tokenizer copied from beside the vocab when present (the vocab alone loads as BertTokenizer).
_TOKENIZER_FILES = ('tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.json')


def export_hf_checkpoint(path: str, output: str, vocab_file: Optional[str] = None) -> Dict[str, Any]:
  """Our weights -> a Hugging Face directory: config.json, model.safetensors and, when known, vocab.txt.

  `path` is a params directory (convert output, a run's best/) or a run's workdir (its latest checkpoint). The
  architecture is `BertForPreTraining` when the params have the MLM and NSP heads, `BertForSequenceClassification`
  with a GLUE head (`regressor`: num_labels 1, problem_type 'regression'; label names from the run's task), else
  `BertModel`. Names and layouts are those `convert_hf_checkpoint` reads (`_hf_entries`), so HF -> ours -> HF
  gives back the same tensors. The directory is written beside `output` and renamed into place. Returns
  {'architecture', 'files', 'vocab_file'}.
  """
  from core import atomic, params_io
  from projects.bert.checkpoints import weights
  from projects.bert.tasks import glue as glue_tasks
  from safetensors.numpy import save_file

  params, metadata = params_io.read_pretrained(path)
  model_config = metadata.get('model') or weights.source_model_config(path)
  if not model_config:
    raise errors.MissingFileError(f'{path} does not say its architecture (no metadata.json `model`, no run '
                                  f'config.json): export a params directory written by convert or a run\'s workdir.')
  if 'pooler_dense' in params.get('nsp_head', {}):
    # Model Garden's next_sentence ClassificationHead (dense + tanh + out) has no Hugging Face BERT class: the
    # export keeps the encoder and the MLM head (BertForMaskedLM) and says what it left out.
    params = {k: v for k, v in params.items() if k != 'nsp_head'}
    logging.warning('%s: the next_sentence ClassificationHead (model.nsp_head=classification_head) has no Hugging '
                    'Face equivalent and is not exported; the encoder and the MLM head are.', path)
  heads = [h for h in ('classifier', 'regressor') if h in params]
  flat = traverse_util.flatten_dict(params, sep='/')
  entries = _hf_entries('bert.' if set(params) != {'bert'} else '', int(model_config['num_layers']),
                        heads[0] if heads else None)
  exported = {e.ours for e in entries}
  unknown = sorted(n for n in flat if n not in exported)
  if unknown:
    raise errors.ConfigError(f'{path}: parameters {unknown[:3]} (and {max(len(unknown) - 3, 0)} more) have no '
                             f'Hugging Face BERT name; only the encoder, the pretraining heads and a GLUE head export.')
  missing = sorted(e.ours for e in entries if e.ours not in flat and e.ours.startswith('bert/')
                   and not e.ours.startswith('bert/pooler'))
  if missing:
    raise errors.DataError(f'{path} lacks {missing[:3]}: not a complete BERT encoder.')
  tensors = {e.sources[0]: _from_ours(flat[e.ours], e.layout, e.in_ndim) for e in entries if e.ours in flat}

  config = hf_config(model_config)
  if 'mlm_head' in params and 'nsp_head' in params:
    config['architectures'] = ['BertForPreTraining']
  elif 'mlm_head' in params:
    config['architectures'] = ['BertForMaskedLM']
  elif heads:
    config['architectures'] = ['BertForSequenceClassification']
    num_labels = int(np.shape(flat[f'{heads[0]}/kernel'])[-1])
    task = (_run_config_of(path).get('dataset') or {}).get('task')
    labels = glue_tasks.get_task(task).labels if task in glue_tasks.GLUE_TASKS else None
    if heads[0] == 'regressor':
      config['problem_type'] = 'regression'
    labels = labels if labels and len(labels) == num_labels else [f'LABEL_{i}' for i in range(num_labels)]
    config['id2label'] = dict(enumerate(labels))
    config['label2id'] = {name: i for i, name in enumerate(labels)}

  vocab = vocab_file or find_vocab(path)
  final = os.path.abspath(output)
  staged = atomic.staging_path(final, lambda d: (d / 'config.json').exists())
  os.makedirs(staged)
  save_file(tensors, os.path.join(staged, 'model.safetensors'), metadata={'format': 'pt'})
  if vocab:
    shutil.copyfile(vocab, os.path.join(staged, 'vocab.txt'))
    for name in _TOKENIZER_FILES:
      if os.path.exists(os.path.join(os.path.dirname(vocab), name)):
        shutil.copyfile(os.path.join(os.path.dirname(vocab), name), os.path.join(staged, name))
  atomic.write_json(os.path.join(staged, 'config.json'), config)  # last: its presence marks a complete copy
  atomic.swap_in_directory(staged, final)
  return {'architecture': config['architectures'][0], 'files': sorted(os.listdir(final)), 'vocab_file': vocab}


# ---------------------------------------------------------------------------------------------- TF Model Garden

_TF2_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


def tf_model_config(bert_config: Mapping[str, Any], nsp_head: str = 'encoder_pooler') -> ml_collections.ConfigDict:
  """`bert_config.json` (as TF BERT releases ship it) -> our config.model, with the given next-sentence head."""
  act = bert_config.get('hidden_act', 'gelu')
  if act not in _TF_ACTIVATIONS:
    raise ValueError(f'hidden_act {act!r} is not supported; known: {sorted(_TF_ACTIVATIONS)}.')
  embedding_size = bert_config.get('embedding_size')
  if embedding_size not in (None, bert_config['hidden_size']):
    raise ValueError(f'embedding_size={embedding_size} differs from hidden_size={bert_config["hidden_size"]}: '
                     f'factorised embeddings are not supported.')
  return _model_config(
      vocab_size=int(bert_config['vocab_size']), hidden_size=int(bert_config['hidden_size']),
      num_layers=int(bert_config['num_hidden_layers']), num_heads=int(bert_config['num_attention_heads']),
      intermediate_size=int(bert_config['intermediate_size']),
      max_position_embeddings=int(bert_config['max_position_embeddings']),
      type_vocab_size=int(bert_config['type_vocab_size']),
      hidden_dropout_prob=float(bert_config.get('hidden_dropout_prob', 0.1)),
      attention_dropout_prob=float(bert_config.get('attention_probs_dropout_prob', 0.1)),
      initializer_range=float(bert_config.get('initializer_range', 0.02)),
      layer_norm_eps=1e-12,  # Model Garden and the original BERT code both hard-code it
      hidden_act=_TF_ACTIVATIONS[act], nsp_head=nsp_head)


def _tf1_entries(num_layers: int) -> List[_Entry]:
  """google-research/bert names: kernels are [in, out] with heads flattened into the hidden axis."""

  def dense(ours: str, src: str, in_ndim: int = 1, heads_out: bool = False) -> List[_Entry]:
    return [_Entry(f'{ours}/kernel', (f'{src}/kernel',), 'flat', in_ndim),
            _Entry(f'{ours}/bias', (f'{src}/bias',), 'flat' if heads_out else 'same', 0)]

  def norm(ours: str, src: str) -> List[_Entry]:
    return [_Entry(f'{ours}/scale', (f'{src}/gamma',)), _Entry(f'{ours}/bias', (f'{src}/beta',))]

  out = [_Entry('bert/word_embeddings/embedding', ('bert/embeddings/word_embeddings',)),
         _Entry('bert/position_embeddings/embedding', ('bert/embeddings/position_embeddings',)),
         _Entry('bert/type_embeddings/embedding', ('bert/embeddings/token_type_embeddings',))]
  out += norm('bert/embeddings_layer_norm', 'bert/embeddings/LayerNorm')
  for i in range(num_layers):
    src, ours = f'bert/encoder/layer_{i}', f'bert/layer_{i}'
    for name in ('query', 'key', 'value'):
      out += dense(f'{ours}/attention/{name}', f'{src}/attention/self/{name}', heads_out=True)
    out += dense(f'{ours}/attention/output', f'{src}/attention/output/dense', in_ndim=2)
    out += norm(f'{ours}/attention_layer_norm', f'{src}/attention/output/LayerNorm')
    out += dense(f'{ours}/intermediate', f'{src}/intermediate/dense')
    out += dense(f'{ours}/output', f'{src}/output/dense')
    out += norm(f'{ours}/output_layer_norm', f'{src}/output/LayerNorm')
  out += dense('bert/pooler', 'bert/pooler/dense')
  out += dense('mlm_head/transform', 'cls/predictions/transform/dense')
  out += norm('mlm_head/layer_norm', 'cls/predictions/transform/LayerNorm')
  out.append(_Entry('mlm_head/output_bias', ('cls/predictions/output_bias',)))
  out += [_Entry('nsp_head/kernel', ('cls/seq_relationship/output_weights',), 'out_in', 1),
          _Entry('nsp_head/bias', ('cls/seq_relationship/output_bias',))]
  return out


def _tf2_pretrainer_paths(names: Sequence[str], file: str) -> Tuple[str, Optional[str]]:
  """(prefix of the `masked_lm` layer, path of the next_sentence ClassificationHead or None) in an object-based
  checkpoint: `masked_lm` / `next_sentence..pooler_dense` (BertPretrainerV2.checkpoint_items, the escaped '.' of
  'next_sentence.pooler_dense') or `model/masked_lm` / `model/classification_heads/<i>` (the Keras model)."""
  mlm = 'model/masked_lm' if any(n.startswith('model/masked_lm/dense/') for n in names) and not any(
      n.startswith('masked_lm/dense/') for n in names) else 'masked_lm'
  heads = sorted({m.group(1) for n in names for m in [re.match(r'^(.*classification_heads/\d+)/', n)] if m})
  if len(heads) > 1:
    raise ValueError(f'{file} holds {len(heads)} classification heads ({heads}); only a BertPretrainerV2 with the '
                     f'single next_sentence head converts (which of them is next_sentence is not in the names).')
  return mlm, heads[0] if heads else None


def _tf2_entries(root: str, style: str, num_layers: int, names: Sequence[str] = (), file: str = '') -> List[_Entry]:
  """Object-based names of `BertEncoder` ('functional': Keras numbers its weighted layers) or `BertEncoderV2`, and
  of `BertPretrainerV2`'s masked_lm and next_sentence heads."""
  if style == 'functional':
    # Weighted layers in creation order: word, position, type embeddings, embedding LayerNorm, layers, pooler.
    word, pos, typ, norm_e = (f'{root}/layer_with_weights-{k}' for k in range(4))
    layers = [f'{root}/layer_with_weights-{4 + i}' for i in range(num_layers)]
    pooler = f'{root}/layer_with_weights-{4 + num_layers}'
  else:
    word, pos, typ, norm_e = (f'{root}/{n}' for n in ('_embedding_layer', '_position_embedding_layer',
                                                      '_type_embedding_layer', '_embedding_norm_layer'))
    layers = [f'{root}/_transformer_layers/{i}' for i in range(num_layers)]
    pooler = f'{root}/_pooler_layer'
  mlm, head = _tf2_pretrainer_paths(names, file)
  v = lambda name: name + _TF2_SUFFIX  # noqa: E731

  def dense(ours: str, *srcs: str) -> List[_Entry]:
    return [_Entry(f'{ours}/{w}', tuple(v(f'{src}/{w}') for src in srcs)) for w in ('kernel', 'bias')]

  def norm(ours: str, src: str) -> List[_Entry]:
    return [_Entry(f'{ours}/scale', (v(f'{src}/gamma'),)), _Entry(f'{ours}/bias', (v(f'{src}/beta'),))]

  # BertPretrainerV2 checkpoints keep the shared word embeddings once, possibly under masked_lm/embedding_table.
  out = [_Entry('bert/word_embeddings/embedding', (v(f'{word}/embeddings'), v(f'{mlm}/embedding_table'))),
         _Entry('bert/position_embeddings/embedding', (v(f'{pos}/embeddings'),)),
         _Entry('bert/type_embeddings/embedding', (v(f'{typ}/embeddings'),))]
  out += norm('bert/embeddings_layer_norm', norm_e)
  for i, src in enumerate(layers):
    ours = f'bert/layer_{i}'
    for name in ('query', 'key', 'value'):
      out += dense(f'{ours}/attention/{name}', f'{src}/_attention_layer/_{name}_dense')
    out += dense(f'{ours}/attention/output', f'{src}/_attention_layer/_output_dense')
    out += norm(f'{ours}/attention_layer_norm', f'{src}/_attention_layer_norm')
    out += dense(f'{ours}/intermediate', f'{src}/_intermediate_dense')
    out += dense(f'{ours}/output', f'{src}/_output_dense')
    out += norm(f'{ours}/output_layer_norm', f'{src}/_output_layer_norm')
  out += dense('bert/pooler', pooler)
  out += dense('mlm_head/transform', f'{mlm}/dense')
  out += norm('mlm_head/layer_norm', f'{mlm}/layer_norm')
  out.append(_Entry('mlm_head/output_bias', (v(f'{mlm}/output_bias.Sbias'),)))
  out += dense('nsp_head/pooler_dense', 'next_sentence..pooler_dense', *([f'{head}/dense'] if head else []))
  out += dense('nsp_head/logits', f'{head or "model/classification_heads/0"}/out_proj')
  return out


def _tf2_layout(names: Sequence[str]) -> Tuple[str, str, List[int]]:
  """(root, style, transformer-layer indices) of an object-based encoder checkpoint."""
  found = {}
  for name in names:
    m = re.match(r'^(.+?)/(layer_with_weights-(\d+)|_transformer_layers/(\d+))/_attention_layer/', name)
    if m:
      style = 'functional' if m.group(3) is not None else 'v2'
      index = int(m.group(3) if m.group(3) is not None else m.group(4))
      found.setdefault((m.group(1), style), set()).add(index)
  if not found:
    raise ValueError('No BERT encoder variables found (neither TF1 names bert/encoder/layer_<i>/... nor a '
                     'tf.train.Checkpoint of official.nlp.modeling.networks.BertEncoder or BertEncoderV2).')
  # A checkpoint may hold the encoder under several roots; Model Garden restores from 'encoder' first.
  (root, style), _ = sorted(found.items(), key=lambda kv: (kv[0][0] != 'encoder', kv[0][0] != 'model', kv[0]))[0]
  indices = sorted(found[(root, style)])
  if style == 'functional' and indices != list(range(4, 4 + len(indices))):
    raise ValueError(f'Unexpected layer numbering under {root!r} ({indices[:3]}...): the encoder has layers this '
                     f'converter does not know (e.g. an embedding projection).')
  return root, style, [i - 4 if style == 'functional' else i for i in indices]


def _resolve_tf_checkpoint(ckpt_path: str) -> str:
  """A checkpoint prefix from a prefix, an `.index` file, or a directory (latest checkpoint, or bert_model.ckpt)."""
  import tensorflow as tf
  if ckpt_path.endswith('.index'):
    ckpt_path = ckpt_path[:-len('.index')]
  if os.path.isdir(ckpt_path):
    latest = tf.train.latest_checkpoint(ckpt_path)
    if latest:
      return latest
    prefixes = sorted(f[:-len('.index')] for f in os.listdir(ckpt_path) if f.endswith('.index'))
    if len(prefixes) != 1:
      raise FileNotFoundError(f'{ckpt_path}: found checkpoints {prefixes or "none"}; pass the checkpoint prefix.')
    return os.path.join(ckpt_path, prefixes[0])
  if not os.path.exists(ckpt_path + '.index'):
    raise FileNotFoundError(f'{ckpt_path}.index not found: pass a TF checkpoint prefix or its directory.')
  return ckpt_path


def convert_tf_checkpoint(ckpt_path: str, bert_config_json: str) -> Tuple[Params, ml_collections.ConfigDict]:
  """A TF BERT checkpoint (Model Garden object-based, or original TF1) + its bert_config.json -> (params, config).

  The params have 'bert' and, where the source has them, 'mlm_head' (Model Garden `masked_lm`, TF1
  `cls/predictions`) and 'nsp_head' (TF1 `cls/seq_relationship`; Model Garden `next_sentence`: its pooler_dense
  and, in a training checkpoint, its logits); float32 numpy arrays. config.model.nsp_head says which head type.
  """
  import tensorflow as tf
  bert_config = _read_json(bert_config_json)
  prefix = _resolve_tf_checkpoint(ckpt_path)
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise errors.DataError(f'{prefix} (.index / .data-*) cannot be read as a TF checkpoint ({str(e)[:300]}): a file '
                           f'is damaged or truncated. Download the checkpoint again.') from None
  available = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
  if 'bert/embeddings/word_embeddings' in available:
    model_config = tf_model_config(bert_config, nsp_head='encoder_pooler')
    entries = _tf1_entries(model_config.num_layers)
    layer_ids = [int(m.group(1)) for n in available for m in [re.match(r'bert/encoder/layer_(\d+)/', n)] if m]
    _check_layer_count(layer_ids, model_config, prefix, 'bert/encoder/layer_<i>')
    namespace = lambda n: n.startswith('bert/') and 'adam' not in n.lower()  # noqa: E731
    optional = ('mlm_head', 'nsp_head')
  else:
    model_config = tf_model_config(bert_config, nsp_head='classification_head')
    root, style, layer_ids = _tf2_layout(list(available))
    _check_layer_count(layer_ids, model_config, prefix, f'{root}/... {style} layout')
    entries = _tf2_entries(root, style, model_config.num_layers, list(available), prefix)
    namespace = lambda n: n.startswith(root + '/') and n.endswith(_TF2_SUFFIX)  # noqa: E731
    optional = ('mlm_head', 'nsp_head/pooler_dense', 'nsp_head/logits')
  params = _assemble(entries, available, reader.get_tensor, model_config, prefix, optional_groups=optional)
  used = {s for e in entries for s in e.sources}
  _unused_check(available, sorted(used), namespace, prefix, model_config)
  return params, model_config


# ------------------------------------------------------------------------------------------------------- CLI


def convert(fmt: str, input_path: str, bert_config: Optional[str] = None) -> Tuple[Params, ml_collections.ConfigDict]:
  """Dispatches on `fmt` ('tf' or 'hf'); for 'tf' the bert_config.json defaults to the checkpoint's directory."""
  if fmt == 'hf':
    return convert_hf_checkpoint(input_path)
  if fmt == 'tf':
    if bert_config is None:
      folder = input_path if os.path.isdir(input_path) else os.path.dirname(input_path)
      bert_config = os.path.join(folder, 'bert_config.json')
      if not os.path.exists(bert_config):
        raise FileNotFoundError(f'{bert_config} not found: pass --bert_config=PATH.')
    return convert_tf_checkpoint(input_path, bert_config)
  raise ValueError(f"Unknown format {fmt!r}; use 'tf' or 'hf'.")


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m projects.bert.checkpoints.convert', description=__doc__.split('\n')[0])
  parser.add_argument('--format', required=True, choices=('tf', 'hf'), help='Source checkpoint format (with '
                      '--export: the format to write, hf only).')
  parser.add_argument('--input', required=True, help='TF checkpoint prefix/directory, or a save_pretrained dir; with '
                      '--export: our params directory or a run\'s workdir.')
  parser.add_argument('--bert_config', default=None, help='bert_config.json for --format=tf.')
  parser.add_argument('--output', required=True, help='Directory to write (core.params_io.save_params; with '
                      '--export: a Hugging Face directory).')
  parser.add_argument('--export', action='store_true', help='Write our weights in the Hugging Face format '
                      '(config.json, model.safetensors, vocab.txt when known) instead of reading a checkpoint.')
  parser.add_argument('--vocab_file', default=None, help='With --export: the vocab.txt to ship (default: found '
                      'beside the weights or the checkpoint they came from).')
  parser.add_argument(logs.VERBOSE_FLAG, action='store_true', help="Also log the libraries' INFO lines.")
  args = parser.parse_args(argv)
  logs.configure(args.verbose)

  from core import params_io

  if args.export:
    if args.format != 'hf':
      sys.exit('error: --export writes the Hugging Face format only: pass --format=hf.')
    try:
      info = export_hf_checkpoint(args.input, args.output, args.vocab_file)
    except (ValueError, FileNotFoundError, errors.UserError) as e:
      sys.exit(f'error: {e}')
    print(f'Wrote {args.output}: {info["architecture"]} ({", ".join(info["files"])})'
          f'{"" if info["vocab_file"] else "; no vocab.txt known (pass --vocab_file to add one)"}.')
    return
  try:
    params, model_config = convert(args.format, args.input, args.bert_config)
  except (ValueError, FileNotFoundError) as e:  # a wrong path or a checkpoint that does not fit: say which, briefly
    sys.exit(f'error: {e}')
  source = {'format': args.format, 'path': os.path.abspath(args.input)}
  if args.bert_config:
    source['bert_config'] = os.path.abspath(args.bert_config)
  params_io.save_params(args.output, params, metadata={'model': model_config.to_dict(), 'source': source,
                                                        'heads': sorted(k for k in params if k != 'bert')})
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
  print(f'Wrote {args.output}: {count:,} parameters ({", ".join(sorted(params))}); '
        f'config.model: {_describe(model_config)}, hidden_act={model_config.hidden_act}.')


if __name__ == '__main__':
  main(sys.argv[1:])
