"""Our weights -> a Hugging Face directory (config.json + model.safetensors + vocab.txt when known) that
`transformers.BertModel.from_pretrained` (and BertForPreTraining / BertForMaskedLM / BertForSequenceClassification
when the weights have those heads) loads, through the name table `hf_reader` reads with (`hf_names`).

  python -m projects.bert.checkpoints.convert --export --format=hf --input=$WD/mrpc --output=/tmp/mrpc_hf
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, Mapping, Optional

import numpy as np
from absl import logging
from flax import traverse_util

from core import errors
from projects.bert.checkpoints import hf_names, layout, output_guard


def hf_config(model_config: Mapping[str, Any], architecture: str = 'BertModel') -> Dict[str, Any]:
  """Our config.model -> a Hugging Face `BertConfig` (config.json) of `architecture`."""
  act = model_config.get('hidden_act', 'gelu')
  names = hf_names.HF_ACTIVATIONS
  hf_act = act if act in names else next((k for k, v in names.items() if v == act), None)
  if hf_act is None:
    raise ValueError(f'hidden_act {act!r} has no Hugging Face name; known: {sorted(set(names.values()))}.')
  out = {hf: kind(model_config[ours] if default is None else model_config.get(ours, default))
         for ours, hf, kind, default in hf_names.HF_FIELDS}
  out.update(model_type='bert', architectures=[architecture], hidden_act=hf_act, position_embedding_type='absolute',
             pad_token_id=0, tie_word_embeddings=True)  # our MLM head ties its output layer to the word embeddings
  return out


def _run_config_of(path: str) -> Dict[str, Any]:
  """The config.json of the run whose workdir (or best/ or checkpoints/) `path` is; {} when none."""
  for candidate in (os.path.join(path, 'config.json'), os.path.join(os.path.dirname(path.rstrip('/')), 'config.json')):
    if os.path.exists(candidate):
      return layout.read_json(candidate)
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
# In model.safetensors' metadata (beside transformers' 'format'): marks a folder this export wrote, which a later
# export to the same --output may replace (`output_guard`); a folder from elsewhere (a download) is refused.
_MARKER = {'written_by': 'projects.bert.checkpoints.hf_export'}


def _is_previous_export(folder: str) -> bool:
  """Whether `folder` is a complete export of this module (config.json, and the marker in model.safetensors)."""
  from safetensors import safe_open
  if not os.path.exists(os.path.join(folder, 'config.json')):
    return False
  try:
    with safe_open(os.path.join(folder, 'model.safetensors'), framework='np') as f:
      metadata = f.metadata() or {}
  except Exception:  # pylint: disable=broad-except  (missing or damaged: then it is not ours to replace)
    return False
  return all(metadata.get(k) == v for k, v in _MARKER.items())


OUTPUT = output_guard.OutputKind('a Hugging Face folder written by convert --export',
                                 frozenset({'config.json', 'model.safetensors', 'vocab.txt', *_TOKENIZER_FILES}),
                                 _is_previous_export)


def export_hf_checkpoint(path: str, output: str, vocab_file: Optional[str] = None) -> Dict[str, Any]:
  """Our weights -> a Hugging Face directory: config.json, model.safetensors and, when known, vocab.txt.

  `path` is a params directory (convert output, a run's best/) or a run's workdir (its latest checkpoint). The
  architecture is `BertForPreTraining` when the params have the MLM and NSP heads, `BertForSequenceClassification`
  with a GLUE head (`regressor`: num_labels 1, problem_type 'regression'; label names from the run's task), else
  `BertModel`. Names and layouts are those `convert_hf_checkpoint` reads (`hf_names.hf_entries`), so HF -> ours -> HF
  gives back the same tensors. The directory is written beside `output` and renamed into place; an `output` that
  holds anything but a previous export, or that is (or holds) `path`, is refused first (`output_guard`). Returns
  {'architecture', 'files', 'vocab_file', 'weights' (which weights, in words)}.
  """
  from core import params_io
  from projects.bert.checkpoints import weights
  from projects.bert.tasks import glue as glue_tasks

  output_guard.check_output(output, [path], OUTPUT)
  params, metadata = params_io.read_pretrained(path)
  model_config = metadata.get('model') or weights.source_model_config(path)
  if not model_config:
    raise errors.MissingFileError(f'{path} does not say its architecture (no metadata.json `model`, no run '
                                  f'config.json): export a params directory written by convert or a run\'s workdir.')
  # Hugging Face's BERT is post-norm with tables as wide as the hidden size: a pre-norm encoder or projected
  # embeddings (Scenic BERT's options) would load there without error and compute something else.
  unrepresentable = [f'{f}={model_config[f]!r}' for f in ('pre_norm', 'embedding_size') if model_config.get(f)]
  if unrepresentable:
    raise errors.ConfigError(f'{path} is a model with {", ".join(unrepresentable)} (Scenic BERT\'s architecture), '
                             f'which Hugging Face\'s BertModel cannot represent (post-norm, embeddings as wide as '
                             f'the hidden size): it is not exported. Use it with this project\'s configs instead.')
  if 'pooler_dense' in params.get('nsp_head', {}):
    # Model Garden's next_sentence ClassificationHead (dense + tanh + out) has no Hugging Face BERT class: the
    # export keeps the encoder and the MLM head (BertForMaskedLM) and says what it left out.
    params = {k: v for k, v in params.items() if k != 'nsp_head'}
    logging.warning('%s: the next_sentence ClassificationHead (model.nsp_head=classification_head) has no Hugging '
                    'Face equivalent and is not exported; the encoder and the MLM head are.', path)
  heads = [h for h in ('classifier', 'regressor') if h in params]
  flat = traverse_util.flatten_dict(params, sep='/')
  entries = hf_names.hf_entries('bert.' if set(params) != {'bert'} else '', int(model_config['num_layers']),
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
  tensors = {e.sources[0]: layout.from_ours(flat[e.ours], e.layout, e.in_ndim) for e in entries if e.ours in flat}

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
  _write(final, tensors, config, vocab)
  return {'architecture': config['architectures'][0], 'files': sorted(os.listdir(final)), 'vocab_file': vocab,
          'weights': _weights_used(path, metadata)}


def _weights_used(path: str, metadata: Mapping[str, Any]) -> str:
  """Which weights of `path` were exported, in words; for a run's workdir, that its best/ (what eval and predict
  use) is not them, and how to export it."""
  from core import params_io
  from projects.bert.checkpoints import weights

  path = os.path.abspath(path)
  text = weights.describe({'path': path, 'step': metadata.get('step')}, metadata)
  best = os.path.join(path, weights.BEST_DIR)
  if not params_io.has_params(path) and params_io.has_params(best):
    text += (f'; eval and predict use {best} (step {params_io.load_params_metadata(best).get("step")}): '
             f'--input={best} exports those')
  return text


def _write(final: str, tensors: Dict[str, np.ndarray], config: Dict[str, Any], vocab: Optional[str]) -> None:
  """Writes the folder beside `final` (`final`.new, config.json last) and swaps it in; a full disk is a
  `errors.UserError` naming the file being written, the staged copy removed and the previous `final` kept."""
  from core import atomic
  from safetensors.numpy import save_file

  staged = atomic.staging_path(final, lambda d: (d / 'config.json').exists())
  writing = str(staged)
  try:
    os.makedirs(staged)
    writing = os.path.join(staged, 'model.safetensors')
    save_file(tensors, writing, metadata={'format': 'pt', **_MARKER})
    if vocab:
      copies = [(vocab, 'vocab.txt')] + [(os.path.join(os.path.dirname(vocab), name), name) for name in _TOKENIZER_FILES
                                         if os.path.exists(os.path.join(os.path.dirname(vocab), name))]
      for source, name in copies:
        writing = os.path.join(staged, name)
        shutil.copyfile(source, writing)
    writing = os.path.join(staged, 'config.json')
    atomic.write_json(writing, config)  # last: its presence marks a complete copy
  except Exception as e:  # pylint: disable=broad-except  (safetensors raises its own error type on a full disk)
    if errors.disk_full_error(e) is None:
      raise
    shutil.rmtree(staged, ignore_errors=True)  # the partial copy: no reader would take it, and it holds the space
    kept = (f'The previous {final} is kept as it was.' if os.path.exists(final) else
            f'Nothing was written to {final}.')
    raise errors.UserError(f'No space left on device writing {writing} (the Hugging Face export to {final}). {kept} '
                           f'Free space on that disk, or pass an --output on another one, then rerun the same '
                           f'command.') from e
  atomic.swap_in_directory(staged, final)
