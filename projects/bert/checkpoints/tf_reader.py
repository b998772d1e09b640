r"""TF BERT checkpoints (TF Model Garden's TF2 object-based ones and google-research/bert's TF1 ones) -> our
parameter tree and config.model, read by variable name (no TF model is built).

  python -m projects.bert.checkpoints.convert --format=tf --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
      --bert_config=uncased_L-12_H-768_A-12/bert_config.json --output=/tmp/bert_base

TF checkpoints come in three layouts:
  - object-based `tf.train.Checkpoint(encoder=networks.BertEncoder(...))` (Model Garden's released TF2
    checkpoints; legacy ones use `model=`), optionally with the rest of `BertPretrainerV2.checkpoint_items`
    (`masked_lm=`, `next_sentence.pooler_dense=`), or a Model Garden training checkpoint of a `BertPretrainerV2`
    (`model=` plus those items, as `base_trainer` writes it), whose `model/classification_heads/0/out_proj` is the
    `next_sentence` head's output layer;
  - the same for `networks.BertEncoderV2`;
  - the name-based TF1 checkpoint of google-research/bert (`bert/encoder/layer_0/...`, `cls/predictions/...`).
TF's 'gelu' is the tanh approximation (Model Garden's `tf_utils.get_activation('gelu')` and the original BERT code),
so TF checkpoints convert with hidden_act='gelu_tanh'. The next-sentence head follows the checkpoint: one dense
layer on the encoder's pooler for TF1 (model.nsp_head='encoder_pooler'), Model Garden's ClassificationHead for
object-based checkpoints ('classification_head': nsp_head/pooler_dense and nsp_head/logits).
"""

from __future__ import annotations

import os
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import ml_collections

from core import errors
from projects.bert.checkpoints import layout

_TF_ACTIVATIONS = {'gelu': 'gelu_tanh', 'relu': 'relu'}
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
  return layout.validated_model_config(
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


def _tf1_entries(num_layers: int) -> List[layout.Entry]:
  """google-research/bert names: kernels are [in, out] with heads flattened into the hidden axis."""

  def dense(ours: str, src: str, in_ndim: int = 1, heads_out: bool = False) -> List[layout.Entry]:
    return [layout.Entry(f'{ours}/kernel', (f'{src}/kernel',), 'flat', in_ndim),
            layout.Entry(f'{ours}/bias', (f'{src}/bias',), 'flat' if heads_out else 'same', 0)]

  def norm(ours: str, src: str) -> List[layout.Entry]:
    return [layout.Entry(f'{ours}/scale', (f'{src}/gamma',)), layout.Entry(f'{ours}/bias', (f'{src}/beta',))]

  out = [layout.Entry('bert/word_embeddings/embedding', ('bert/embeddings/word_embeddings',)),
         layout.Entry('bert/position_embeddings/embedding', ('bert/embeddings/position_embeddings',)),
         layout.Entry('bert/type_embeddings/embedding', ('bert/embeddings/token_type_embeddings',))]
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
  out.append(layout.Entry('mlm_head/output_bias', ('cls/predictions/output_bias',)))
  out += [layout.Entry('nsp_head/kernel', ('cls/seq_relationship/output_weights',), 'out_in', 1),
          layout.Entry('nsp_head/bias', ('cls/seq_relationship/output_bias',))]
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


def _tf2_entries(root: str, style: str, num_layers: int, names: Sequence[str] = (),
                 file: str = '') -> List[layout.Entry]:
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

  def dense(ours: str, *srcs: str) -> List[layout.Entry]:
    return [layout.Entry(f'{ours}/{w}', tuple(v(f'{src}/{w}') for src in srcs)) for w in ('kernel', 'bias')]

  def norm(ours: str, src: str) -> List[layout.Entry]:
    return [layout.Entry(f'{ours}/scale', (v(f'{src}/gamma'),)), layout.Entry(f'{ours}/bias', (v(f'{src}/beta'),))]

  # BertPretrainerV2 checkpoints keep the shared word embeddings once, possibly under masked_lm/embedding_table.
  out = [layout.Entry('bert/word_embeddings/embedding', (v(f'{word}/embeddings'), v(f'{mlm}/embedding_table'))),
         layout.Entry('bert/position_embeddings/embedding', (v(f'{pos}/embeddings'),)),
         layout.Entry('bert/type_embeddings/embedding', (v(f'{typ}/embeddings'),))]
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
  out.append(layout.Entry('mlm_head/output_bias', (v(f'{mlm}/output_bias.Sbias'),)))
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


def convert_tf_checkpoint(ckpt_path: str, bert_config_json: str) -> Tuple[layout.Params, ml_collections.ConfigDict]:
  """A TF BERT checkpoint (Model Garden object-based, or original TF1) + its bert_config.json -> (params, config).

  The params have 'bert' and, where the source has them, 'mlm_head' (Model Garden `masked_lm`, TF1
  `cls/predictions`) and 'nsp_head' (TF1 `cls/seq_relationship`; Model Garden `next_sentence`: its pooler_dense
  and, in a training checkpoint, its logits); float32 numpy arrays. config.model.nsp_head says which head type.
  """
  import tensorflow as tf
  bert_config = layout.read_json(bert_config_json)
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
    layout.check_layer_count(layer_ids, model_config, prefix, 'bert/encoder/layer_<i>')
    namespace = lambda n: n.startswith('bert/') and 'adam' not in n.lower()  # noqa: E731
    optional = ('mlm_head', 'nsp_head')
  else:
    model_config = tf_model_config(bert_config, nsp_head='classification_head')
    root, style, layer_ids = _tf2_layout(list(available))
    layout.check_layer_count(layer_ids, model_config, prefix, f'{root}/... {style} layout')
    entries = _tf2_entries(root, style, model_config.num_layers, list(available), prefix)
    namespace = lambda n: n.startswith(root + '/') and n.endswith(_TF2_SUFFIX)  # noqa: E731
    optional = ('mlm_head', 'nsp_head/pooler_dense', 'nsp_head/logits')
  params = layout.assemble(entries, available, reader.get_tensor, model_config, prefix, optional_groups=optional)
  used = {s for e in entries for s in e.sources}
  layout.check_unused(available, sorted(used), namespace, prefix, model_config)
  return params, model_config
