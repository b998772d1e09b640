"""BERT in Flax linen: the encoder (embeddings, post-LN or pre-LN transformer layers, pooler) and its heads.

Parameters are float32; `BertConfig.dtype` is the compute dtype (float32 or bfloat16). Embedding lookups, LayerNorm
statistics and softmax run in float32 whatever the compute dtype, and every output the losses read is float32.
(On GPUs, XLA runs float32 matrix products in TF32 by default, about 1e-3 relative off; set
`jax_default_matmul_precision=highest` where float32 results must match TF or PyTorch to 1e-6.)

Parameter tree (the checkpoint readers in `checkpoints/` write exactly this):

  bert/word_embeddings/embedding [vocab, E]               bert/position_embeddings/embedding [max_pos, E]
  bert/type_embeddings/embedding [type_vocab, E]          bert/embeddings_layer_norm/{scale, bias} [E]
  bert/embedding_projection/{kernel [E, hidden], bias}    (only when embedding_size E != hidden_size)
  bert/layer_<i>/attention/{query,key,value}/kernel [hidden, heads, head_dim], bias [heads, head_dim]
  bert/layer_<i>/attention/output/kernel [heads, head_dim, hidden], bias [hidden]
  bert/layer_<i>/attention_layer_norm, output_layer_norm/{scale, bias} [hidden]
  bert/layer_<i>/intermediate/kernel [hidden, inter], bias [inter];  output/kernel [inter, hidden], bias [hidden]
  bert/final_layer_norm/{scale, bias} [hidden]            (only with pre_norm)
  bert/pooler/kernel [hidden, hidden], bias [hidden]
  mlm_head/transform/{kernel [hidden, E], bias}, mlm_head/layer_norm/{scale, bias}, mlm_head/output_bias [vocab]
  nsp_head/kernel [hidden, 2], bias [2]                   (nsp_head='encoder_pooler': BERT paper, TF1, Hugging Face)
  nsp_head/pooler_dense/{kernel [hidden, hidden], bias}, nsp_head/logits/{kernel [hidden, 2], bias}
                                                          (nsp_head='classification_head': Model Garden)
  nsp_head/dense/{kernel [hidden, hidden], bias}, nsp_head/output_projection/{kernel [hidden, 2], bias}
                                                          (nsp_head='scenic_head': Scenic, `scenic_heads.py`)
  classifier/kernel [hidden, labels];  regressor/kernel [hidden, 1]
  span_head/kernel [hidden, 2], bias [2] (question answering: start and end logits)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from projects.bert.models import attention, scenic_heads
from projects.bert.models.attention import attention_mask, sequence_lengths

Array = jax.Array


def gelu_erf(x: Array) -> Array:
  """Exact GELU, x * Phi(x), written with erf.

  `jax.nn.gelu(approximate=False)` evaluates it through erfc, which XLA expands into a slower two-branch
  expression (twice the forward + backward time on CPUs); erf differs from it by at most ~1e-6 absolute in float32.
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


# BERT/HF 'gelu' is the exact erf form; TF Model Garden and the original TF BERT code evaluate 'gelu' with the tanh
# approximation, so their checkpoints convert to 'gelu_tanh' (HF calls the same function 'gelu_new').
ACTIVATIONS: Dict[str, Callable[[Array], Array]] = {
    'gelu': gelu_erf,
    'gelu_tanh': functools.partial(nn.gelu, approximate=True),
    'gelu_new': functools.partial(nn.gelu, approximate=True),
    'gelu_pytorch_tanh': functools.partial(nn.gelu, approximate=True),
    'relu': nn.relu,
    'tanh': jnp.tanh,
}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
ATTENTION_IMPLS = ('auto', 'xla', 'cudnn', 'flash')


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The encoder's hyper-parameters: the `config.model` fields, frozen (hashable, so a Flax module attribute)."""

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  hidden_dropout_prob: float = 0.1
  attention_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  hidden_act: str = 'gelu'
  dtype: str = 'float32'
  remat: bool = False  # recompute each layer's activations in the backward pass (memory for compute)
  # 'auto': on GPUs in bfloat16, our Pallas flash kernel when training drops attention probabilities and cuDNN's
  # flash attention otherwise; XLA elsewhere. 'xla', 'cudnn' (GPU, bf16, no attention dropout) and 'flash' (ours;
  # on a CPU it runs in the Pallas interpreter: tests only) force one.
  attention_impl: str = 'auto'
  # One compiled layer body run L times by `lax.scan` instead of L unrolled copies: compiles several times faster,
  # with the same parameter tree (layer_0 ... layer_{L-1}) and the same function.
  scan_layers: bool = False
  # Where dropout's random bits come from: 'jax' (the key's PRNG, threefry by default) or 'hash' (a counter-based
  # hash of the element index keyed by one draw from the key: a fifth of threefry's integer work).
  dropout_rng: str = 'jax'
  # Scenic BERT's options: LayerNorm before attention and MLP plus one after the last layer; embedding tables of
  # width embedding_size (0: hidden_size), LayerNorm-ed at that width, then projected to hidden_size.
  pre_norm: bool = False
  embedding_size: int = 0

  def __post_init__(self):
    if self.hidden_size % self.num_heads:
      raise ValueError(f'hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}.')
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f'Unknown hidden_act {self.hidden_act!r}; known: {sorted(ACTIVATIONS)}.')
    if self.dtype not in DTYPES:
      raise ValueError(f'Unknown dtype {self.dtype!r}; use one of {sorted(DTYPES)}.')
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f'Unknown attention_impl {self.attention_impl!r}; use one of {ATTENTION_IMPLS}.')
    if self.dropout_rng not in ('jax', 'hash'):
      raise ValueError(f"Unknown dropout_rng {self.dropout_rng!r}; use 'jax' or 'hash'.")
    if self.attention_impl == 'cudnn' and self.dtype != 'bfloat16':
      raise ValueError("attention_impl='cudnn' needs dtype='bfloat16' (cuDNN's fused attention has no float32 "
                       "kernel); use attention_impl='auto' to fall back to XLA.")

  @classmethod
  def from_model_config(cls, model_config: Mapping[str, Any]) -> 'BertConfig':
    """From `config.model` (a ConfigDict or dict); fields that are not encoder fields (num_labels) are ignored, and
    unset ones (None: the architecture that `checkpoints.weights.resolve_model_config` fills from init_from) take
    the defaults above (BERT-base's)."""
    names = {f.name for f in dataclasses.fields(cls)}
    items = model_config.items() if hasattr(model_config, 'items') else dict(model_config).items()
    return cls(**{k: v for k, v in items if k in names and v is not None})

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def embedding_width(self) -> int:
    return self.embedding_size or self.hidden_size

  @property
  def compute_dtype(self) -> Any:
    return DTYPES[self.dtype]

  @property
  def activation(self) -> Callable[[Array], Array]:
    return ACTIVATIONS[self.hidden_act]


class Dropout(nn.Module):
  """Inverted dropout like `flax.linen.Dropout`, drawing 16 random bits per element instead of 32.

  Random-bit generation (threefry or Philox, expanded into integer arithmetic by XLA) is most of dropout's cost on
  CPUs and a visible part on GPUs: one 32-bit draw serves two elements here, which halves it. The rate is quantised
  to 1/65536 (0.1 -> 0.10000610) and the kept values are scaled by the exact keep probability, so the output is
  unbiased. Draws from the 'dropout' RNG stream.
  """

  rate: float
  deterministic: Optional[bool] = None
  rng: str = 'jax'  # 'jax': jax.random.bits of the 'dropout' key; 'hash': a counter hash keyed by that key

  @nn.compact
  def __call__(self, x: Array, deterministic: Optional[bool] = None) -> Array:
    deterministic = nn.merge_param('deterministic', self.deterministic, deterministic)
    if deterministic or self.rate == 0.0:
      return x
    if self.rate >= 1.0:
      return jnp.zeros_like(x)
    threshold = min(65535, round(self.rate * 65536))  # drop where bits < threshold
    size = x.size
    if self.rng == 'hash':
      from projects.bert.models import flash_attention  # the same hash as the attention kernel's dropout
      seed = jax.random.bits(self.make_rng('dropout'), (2,), jnp.uint32)
      words = flash_attention.hash_bits(seed, (size + 1) // 2)
    else:
      words = jax.random.bits(self.make_rng('dropout'), ((size + 1) // 2,), jnp.uint32)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size].reshape(x.shape)
    keep_prob = 1.0 - threshold / 65536.0
    return jnp.where(halves >= threshold, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros((), x.dtype))


def _init(config: BertConfig) -> Callable:
  return nn.initializers.truncated_normal(config.initializer_range)


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  # Two-pass variance (E[(x-mean)^2]) as TF and PyTorch compute it: the fast E[x^2]-mean^2 form costs parity.
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=config.compute_dtype, param_dtype=jnp.float32,
                      use_fast_variance=False, name=name)


class SelfAttention(nn.Module):
  """Multi-head self-attention with per-head projections ([hidden] -> [heads, head_dim]) and the output projection.

  `mask` is `(key mask [batch, 1, 1, seq], lengths [batch])`: the mask for the XLA paths, the lengths for cuDNN.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask: Tuple[Array, Array], train: bool) -> Array:
    c = self.config
    proj = functools.partial(nn.DenseGeneral, features=(c.num_heads, c.head_dim), dtype=c.compute_dtype,
                             param_dtype=jnp.float32, kernel_init=_init(c))
    q, k, v = proj(name='query')(x), proj(name='key')(x), proj(name='value')(x)
    key_mask, lengths = mask
    kernel = attention.attention_kernel(c, train, x.shape[1])
    if kernel == 'explicit':
      drop = Dropout(c.attention_dropout_prob, deterministic=False, rng=c.dropout_rng)
      ctx = attention.explicit_attention(q, k, v, key_mask, dropout=drop)
    elif kernel == 'flash':
      from projects.bert.models import flash_attention
      rate = c.attention_dropout_prob if train else 0.0
      seed = jax.random.bits(self.make_rng('dropout'), (2,), jnp.uint32) if rate > 0 else None
      ctx = flash_attention.flash_attention(q, k, v, lengths, dropout_rate=rate, seed=seed,
                                            interpret=jax.default_backend() != 'gpu')
    elif kernel == 'cudnn':
      ctx = attention.length_masked_attention(q, k, v, lengths, implementation='cudnn')
    else:
      ctx = attention.fused_attention(q, k, v, key_mask)
    return nn.DenseGeneral(c.hidden_size, axis=(-2, -1), dtype=c.compute_dtype, param_dtype=jnp.float32,
                           kernel_init=_init(c), name='output')(ctx)


class TransformerLayer(nn.Module):
  """One post-LN encoder layer: x = LN(x + Attn(x)); x = LN(x + W2 act(W1 x)). With pre_norm (Scenic's
  Encoder1DBlock): x = x + Attn(LN(x)); x = x + W2 drop(act(W1 LN(x)))."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask: Tuple[Array, Array], train: bool) -> Array:
    c = self.config
    dense = functools.partial(nn.Dense, dtype=c.compute_dtype, param_dtype=jnp.float32, kernel_init=_init(c))
    drop = Dropout(c.hidden_dropout_prob, deterministic=not train, rng=c.dropout_rng)
    norm_a, norm_o = _layer_norm(c, 'attention_layer_norm'), _layer_norm(c, 'output_layer_norm')
    attn = SelfAttention(c, name='attention')(norm_a(x) if c.pre_norm else x, mask, train)
    x = x + drop(attn) if c.pre_norm else norm_a(x + drop(attn))
    h = c.activation(dense(c.intermediate_size, name='intermediate')(norm_o(x) if c.pre_norm else x))
    h = dense(c.hidden_size, name='output')(drop(h) if c.pre_norm else h)  # Scenic's MlpBlock drops here too
    return x + drop(h) if c.pre_norm else norm_o(x + drop(h))


class BertEncoder(nn.Module):
  """Embeddings + `num_layers` transformer layers + tanh pooler over the first ([CLS]) token.

  `BertEncoder(config)(input_ids, input_mask, segment_ids, train=False)` with int [batch, seq] inputs returns
  `(sequence_output [batch, seq, hidden], pooled_output [batch, hidden])` in the compute dtype.
  """

  config: BertConfig

  def setup(self):
    c = self.config
    # Lookups read the float32 tables; the LayerNorm after them casts to the compute dtype. (A bfloat16 lookup
    # would cast the whole table first and scatter-add its gradient in bfloat16, which is slow on GPUs.)
    embed = functools.partial(nn.Embed, features=c.embedding_width, dtype=jnp.float32, param_dtype=jnp.float32,
                              embedding_init=_init(c))
    self.word_embeddings = embed(c.vocab_size)
    self.position_embeddings = embed(c.max_position_embeddings)
    self.type_embeddings = embed(c.type_vocab_size)
    self.embeddings_layer_norm = _layer_norm(c, None)
    self.embeddings_dropout = Dropout(c.hidden_dropout_prob, rng=c.dropout_rng)
    if c.embedding_width != c.hidden_size:
      self.embedding_projection = nn.Dense(c.hidden_size, dtype=c.compute_dtype, param_dtype=jnp.float32,
                                           kernel_init=_init(c))
    # train (argument 3, counting self) is a Python bool that selects code paths: static under remat.
    layer_cls = nn.remat(TransformerLayer, static_argnums=(3,)) if c.remat else TransformerLayer
    self.layer = [layer_cls(c) for _ in range(c.num_layers)]  # parameter names layer_0 ... layer_{L-1}
    if c.pre_norm:
      self.final_layer_norm = _layer_norm(c, None)
    self.pooler = nn.Dense(c.hidden_size, dtype=c.compute_dtype, param_dtype=jnp.float32, kernel_init=_init(c))

  def __call__(self, input_ids: Array, input_mask: Optional[Array] = None, segment_ids: Optional[Array] = None,
               train: bool = False) -> Tuple[Array, Array]:
    c = self.config
    seq_len = input_ids.shape[1]
    if seq_len > c.max_position_embeddings:
      raise ValueError(f'Sequence length {seq_len} exceeds max_position_embeddings={c.max_position_embeddings}.')
    if input_mask is None:
      input_mask = jnp.ones_like(input_ids)
    if segment_ids is None:
      segment_ids = jnp.zeros_like(input_ids)
    x = (self.word_embeddings(input_ids) + self.position_embeddings(jnp.arange(seq_len)[None, :])
         + self._type_embedding(segment_ids))
    x = self.embeddings_dropout(self.embeddings_layer_norm(x), deterministic=not train)
    x = self.embedding_projection(x) if c.embedding_width != c.hidden_size else x  # Scenic's Stem: after dropout
    mask = (attention_mask(input_mask), sequence_lengths(input_mask))
    if c.scan_layers and not self.is_initializing():
      x = self._scanned_layers(x, mask, train)
    else:
      for layer in self.layer:
        x = layer(x, mask, train)
    x = self.final_layer_norm(x) if c.pre_norm else x
    pooled = jnp.tanh(self.pooler(x[:, 0]))
    return x, pooled

  def _scanned_layers(self, x: Array, mask: Tuple[Array, Array], train: bool) -> Array:
    """The layers as one `lax.scan` over their parameters stacked on the fly (a copy XLA fuses with the compute
    dtype cast the layers make anyway). Each layer draws its dropout from its own key of the 'dropout' stream."""
    c = self.config
    stacked = jax.tree_util.tree_map(lambda *p: jnp.stack(p), *[layer.variables['params'] for layer in self.layer])
    needs_rng = train and (c.hidden_dropout_prob > 0 or c.attention_dropout_prob > 0)
    keys = jax.random.split(self.make_rng('dropout'), c.num_layers) if needs_rng else jnp.zeros((c.num_layers,))
    body_module = TransformerLayer(c, parent=None)

    def body(h, params_and_key):
      params, key = params_and_key
      rngs = {'dropout': key} if needs_rng else None
      return body_module.apply({'params': params}, h, mask, train, rngs=rngs), None

    if c.remat:
      body = jax.checkpoint(body, prevent_cse=False)  # scan already keeps iterations apart
    x, _ = jax.lax.scan(body, x, (stacked, keys))
    return x

  def _type_embedding(self, segment_ids: Array) -> Array:
    """The segment embedding, selected row by row with `where` rather than gathered: a gather's gradient is a
    scatter-add of every token into the 2 rows of the table, which serialises on GPU atomics; this one's is a
    masked sum. The same values exactly (a select, no arithmetic)."""
    table = self.type_embeddings.embedding
    if table.shape[0] > 4:
      return self.type_embeddings(segment_ids)
    out = jnp.broadcast_to(table[0], segment_ids.shape + table.shape[1:])
    for t in range(1, table.shape[0]):
      out = jnp.where((segment_ids == t)[..., None], table[t], out)
    return out

  def embedding_table(self) -> Array:
    """The word embedding matrix [vocab, E] (float32), which the MLM head's output layer shares."""
    return self.word_embeddings.embedding


def gather_positions(sequence: Array, positions: Array) -> Array:
  """sequence [batch, seq, hidden], positions int [batch, P] -> [batch, P, hidden]."""
  return jnp.take_along_axis(sequence, positions[..., None].astype(jnp.int32), axis=1)


class MaskedLMHead(nn.Module):
  """transform (dense + activation + LayerNorm), then logits against the tied word embeddings plus a bias."""

  config: BertConfig

  @nn.compact
  def __call__(self, hidden: Array, embedding_table: Array) -> Array:
    """hidden [batch, P, hidden], embedding_table [vocab, hidden] -> logits [batch, P, vocab] float32."""
    c = self.config
    h = nn.Dense(c.embedding_width, dtype=c.compute_dtype, param_dtype=jnp.float32, kernel_init=_init(c),
                 name='transform')(hidden)
    h = _layer_norm(c, 'layer_norm')(c.activation(h))
    bias = self.param('output_bias', nn.initializers.zeros, (c.vocab_size,), jnp.float32)
    logits = jnp.einsum('bph,vh->bpv', h, embedding_table.astype(c.compute_dtype),
                        preferred_element_type=jnp.float32)
    return logits + bias


def _head(config: BertConfig, features: int, name: Optional[str], kernel_init: Optional[Callable] = None) -> nn.Dense:
  # Heads are tiny: compute them in float32 so the logits the losses read are exact.
  return nn.Dense(features, dtype=jnp.float32, param_dtype=jnp.float32, kernel_init=kernel_init or _init(config),
                  name=name)


# How next-sentence prediction reads the encoder (config.model.nsp_head):
#   'encoder_pooler'       one dense layer on the encoder's pooled output (google-research/bert, Hugging Face);
#   'classification_head'  Model Garden's BertPretrainerV2 `next_sentence` ClassificationHead: its own dense + tanh
#                          on the [CLS] token, dropout, then the 2-way output; the encoder's pooler is not used.
#   'scenic_head'          Scenic's ClassificationHead(hidden_sizes=(H, H)): the pooler, dense + tanh, the output.
NSP_HEADS = ('encoder_pooler', 'classification_head', 'scenic_head')


class ClassificationHead(nn.Module):
  """Model Garden's `layers.ClassificationHead`: [CLS] -> dense + tanh ('pooler_dense') -> dropout -> 'logits'.

  Kernels start glorot-uniform, as in Model Garden's masked_lm task (its `ClsHeadConfig` sets no initializer).
  `head(sequence [batch, seq, hidden], train)` -> logits [batch, num_classes] float32.
  """

  config: BertConfig
  num_classes: int

  @nn.compact
  def __call__(self, sequence: Array, train: bool = False) -> Array:
    c = self.config
    glorot = nn.initializers.glorot_uniform()
    x = jnp.tanh(_head(c, c.hidden_size, 'pooler_dense', glorot)(sequence[:, 0].astype(jnp.float32)))
    x = Dropout(c.hidden_dropout_prob, deterministic=not train)(x)
    return _head(c, self.num_classes, 'logits', glorot)(x)


class BertForPreTraining(nn.Module):
  """`module(batch, train)` -> {'mlm_logits': [batch, P, vocab], 'nsp_logits': [batch, 2]} (float32).

  Reads input_ids, input_mask, segment_ids [batch, seq] and masked_lm_positions [batch, P]; only the P masked
  positions go through the MLM transform and the vocabulary projection. `nsp_head` is one of NSP_HEADS.
  """

  config: BertConfig
  nsp_head: str = 'encoder_pooler'

  def setup(self):
    if self.nsp_head not in NSP_HEADS:
      raise ValueError(f'Unknown nsp_head {self.nsp_head!r}; use one of {NSP_HEADS}.')
    self.bert = BertEncoder(self.config)
    self.mlm_head = MaskedLMHead(self.config)
    if self.nsp_head == 'encoder_pooler':
      self.next_sentence = _head(self.config, 2, 'nsp_head')
    elif self.nsp_head == 'scenic_head':
      self.next_sentence = scenic_heads.ScenicClassificationHead(self.config.hidden_size, 2,
                                                                 self.config.initializer_range, name='nsp_head')
    else:
      self.next_sentence = ClassificationHead(self.config, 2, name='nsp_head')

  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Dict[str, Array]:
    sequence, pooled = self.bert(batch['input_ids'], batch['input_mask'], batch['segment_ids'], train=train)
    masked = gather_positions(sequence, batch['masked_lm_positions'])
    if self.nsp_head in ('encoder_pooler', 'scenic_head'):
      nsp_logits = self.next_sentence(pooled.astype(jnp.float32))
    else:
      nsp_logits = self.next_sentence(sequence, train)
    return {'mlm_logits': self.mlm_head(masked, self.bert.embedding_table()), 'nsp_logits': nsp_logits}


def _pooled_head(config: BertConfig, batch: Mapping[str, Array], train: bool, features: int, name: str) -> Array:
  """The encoder ('bert'), dropout on its pooled output, then the dense layer `name`: float32 [batch, features].
  Called inside a compact module's __call__, whose children these become."""
  _, pooled = BertEncoder(config, name='bert')(batch['input_ids'], batch['input_mask'], batch['segment_ids'],
                                               train=train)
  pooled = Dropout(config.hidden_dropout_prob, deterministic=not train)(pooled.astype(jnp.float32))
  return _head(config, features, name)(pooled)


class BertForSequenceClassification(nn.Module):
  """`module(batch, train)` -> logits [batch, num_labels] float32 (dropout, then a dense layer on the pooled output)."""

  config: BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    return _pooled_head(self.config, batch, train, self.num_labels, 'classifier')


class BertForRegression(nn.Module):
  """`module(batch, train)` -> predictions [batch] float32 (STS-B style: one linear output on the pooled output)."""

  config: BertConfig

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    return _pooled_head(self.config, batch, train, 1, 'regressor')[:, 0]


class BertForQuestionAnswering(nn.Module):
  """`module(batch, train)` -> span logits [batch, seq, 2] float32: [..., 0] start, [..., 1] end.

  One dense layer on every token's final hidden state, as Hugging Face's `qa_outputs` and Model Garden's
  `SpanLabeling` (neither applies dropout or masks padding positions before it). The pooler exists (it is part of
  the encoder's parameters) but nothing reads it.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool = False) -> Array:
    sequence, _ = BertEncoder(self.config, name='bert')(batch['input_ids'], batch['input_mask'],
                                                        batch['segment_ids'], train=train)
    return _head(self.config, 2, 'span_head')(sequence.astype(jnp.float32))
