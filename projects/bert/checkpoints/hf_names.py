"""Hugging Face's names for our parameters and config.json fields, one table for both directions: `hf_reader` reads
through it, `hf_export` writes through it, so HF -> ours -> HF gives back the same tensors under the same names.

Hugging Face's 'gelu' is the exact erf form; 'gelu_new' / 'gelu_pytorch_tanh' are the tanh approximation (ours
'gelu_tanh', which TF checkpoints use).
"""

from __future__ import annotations

from typing import List, Optional

from projects.bert.checkpoints import layout

HF_ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh', 'relu': 'relu'}

# config.json fields: (ours, Hugging Face's, type, default when absent; None: required). Read one way by
# `hf_model_config` (import) and the other by `hf_config` (export).
HF_FIELDS = (('vocab_size', 'vocab_size', int, None), ('hidden_size', 'hidden_size', int, None),
             ('num_layers', 'num_hidden_layers', int, None), ('num_heads', 'num_attention_heads', int, None),
             ('intermediate_size', 'intermediate_size', int, None),
             ('max_position_embeddings', 'max_position_embeddings', int, None),
             ('type_vocab_size', 'type_vocab_size', int, None),
             ('hidden_dropout_prob', 'hidden_dropout_prob', float, 0.1),
             ('attention_dropout_prob', 'attention_probs_dropout_prob', float, 0.1),
             ('initializer_range', 'initializer_range', float, 0.02),
             ('layer_norm_eps', 'layer_norm_eps', float, 1e-12))


def hf_entries(prefix: str, num_layers: int, head: Optional[str] = None) -> List[layout.Entry]:
  """Our names <-> Hugging Face's, for both directions (`convert_hf_checkpoint`, `export_hf_checkpoint`); `prefix`
  is 'bert.' in checkpoints of models with heads. `head` ('classifier' or 'regressor', ours) adds the sequence
  classification head, HF's `classifier` (STS-B regression: one output)."""

  def dense(ours: str, src: str, in_ndim: int = 1) -> List[layout.Entry]:
    return [layout.Entry(f'{ours}/kernel', (f'{src}.weight',), 'out_in', in_ndim),
            layout.Entry(f'{ours}/bias', (f'{src}.bias',), 'flat' if in_ndim == 1 else 'same', 0)]

  def norm(ours: str, src: str) -> List[layout.Entry]:  # very old checkpoints name LayerNorm weights gamma/beta
    return [layout.Entry(f'{ours}/scale', (f'{src}.weight', f'{src}.gamma')),
            layout.Entry(f'{ours}/bias', (f'{src}.bias', f'{src}.beta'))]

  p = prefix
  out = [layout.Entry('bert/word_embeddings/embedding', (f'{p}embeddings.word_embeddings.weight',)),
         layout.Entry('bert/position_embeddings/embedding', (f'{p}embeddings.position_embeddings.weight',)),
         layout.Entry('bert/type_embeddings/embedding', (f'{p}embeddings.token_type_embeddings.weight',))]
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
  out.append(layout.Entry('mlm_head/output_bias', ('cls.predictions.bias', 'cls.predictions.decoder.bias')))
  out += dense('nsp_head', 'cls.seq_relationship')
  out += dense('span_head', 'qa_outputs')  # BertForQuestionAnswering: [2, hidden], start then end
  if head is not None:
    out += dense(head, 'classifier')
  return out
