"""Scenic BERT in our model: its parameter names read into our tree (checkpoints/scenic_reader.py), and a tiny
pre-LN model with a narrow embedding and Scenic's NSP head against outputs derived by hand in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization, traverse_util

from projects.bert.checkpoints import scenic_reader
from projects.bert.fewshot import probes, scenic as fewshot_scenic
from projects.bert.models import architecture, modeling
from projects.bert.models.bert_models import bert_param_initializers

V, T, P, E, H, HEADS, D, M, L = 7, 2, 5, 3, 4, 2, 2, 8, 2  # vocab, types, positions, embedding, hidden, ...


def scenic_tree(rng, num_layers=L, width=E, pre_norm=True, extra=()):
  """A params tree with Scenic BERT's names and shapes as its layers.py / model.py declare them (flax defaults:
  Dense kernel [in, out]; MultiHeadDotProductAttention q/k/v kernel [H, heads, d], out kernel [heads, d, H]; Embed
  [n, width]; AddPositionEmbs [1, max_len, width]; the MLM head's embedding_bias [1, 1, V])."""
  r = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
  dense = lambda i, o: {'kernel': r(i, o), 'bias': r(o)}  # noqa: E731
  norm = lambda n: {'scale': 1.0 + 0.3 * r(n), 'bias': r(n)}  # noqa: E731
  stem = {'word_embedding': {'embedding': r(V, width)}, 'type_embedding': {'embedding': r(T, width)},
          'posembed_input': {'pos_embedding': r(1, P, width)}, 'embedding_norm': norm(width)}
  if width != H:
    stem['embedding_projection'] = dense(width, H)
  attn = lambda: {n: {'kernel': r(H, HEADS, D), 'bias': r(HEADS, D)} for n in ('query', 'key', 'value')}  # noqa
  encoder = {f'encoderblock_{i}': {
      'LayerNorm_0': norm(H), 'LayerNorm_1': norm(H),
      'MultiHeadDotProductAttention_0': {**attn(), 'out': {'kernel': r(HEADS, D, H), 'bias': r(H)}},
      'MlpBlock_0': {'Dense_0': dense(H, M), 'Dense_1': dense(M, H)}} for i in range(num_layers)}
  if pre_norm:
    encoder['encoder_norm'] = norm(H)
  tree = {'stem': stem, 'bert_encoder': encoder,
          'next_sentence_prediction_head': {'Dense_0': dense(H, H), 'Dense_1': dense(H, H),
                                            'output_projection': dense(H, 2)},
          'masked_language_model_head': {'Dense_0': dense(H, width), 'LayerNorm_0': norm(width),
                                         'embedding_bias': r(1, 1, V)}}
  for name in extra:
    tree[name] = {'Dense_0': dense(H, H), 'Dense_1': dense(H, H), 'output_projection': dense(H, 3)}
  return tree


def _our_model(model_config):
  return modeling.BertForPreTraining(modeling.BertConfig.from_model_config(model_config),
                                     nsp_head=model_config['nsp_head'])


BATCH = {'input_ids': np.array([[1, 4, 6, 2, 0]], np.int32), 'input_mask': np.array([[1, 1, 1, 1, 0]], np.int32),
         'segment_ids': np.array([[0, 0, 1, 1, 0]], np.int32), 'masked_lm_positions': np.array([[2, 0]], np.int32)}


@pytest.mark.parametrize('pre_norm,width', [(True, E), (False, H)])
def test_scenic_names_fill_exactly_our_tree(pre_norm, width):
  tree = scenic_tree(np.random.default_rng(0), width=width, pre_norm=pre_norm)
  ours, model_config, unused = scenic_reader.convert_scenic_params(tree)
  assert not unused
  assert (model_config.pre_norm, model_config.embedding_size, model_config.nsp_head) == (
      pre_norm, 0 if width == H else width, 'scenic_head')
  assert (model_config.num_layers, model_config.num_heads, model_config.intermediate_size, model_config.vocab_size,
          model_config.max_position_embeddings) == (L, HEADS, M, V, P)
  want = jax.eval_shape(lambda: _our_model(model_config).init(jax.random.PRNGKey(0), BATCH))['params']
  flat_want = {k: v.shape for k, v in traverse_util.flatten_dict(want, sep='/').items()}
  flat_got = {k: v.shape for k, v in traverse_util.flatten_dict(ours, sep='/').items()}
  assert flat_got == flat_want  # every parameter of ours from one of Scenic's, none left over, shapes equal
  # Every Scenic array landed somewhere, unchanged (only reshaped).
  assert sum(v.size for v in jax.tree_util.tree_leaves(tree)) == sum(v.size for v in jax.tree_util.tree_leaves(ours))


def test_fine_tuned_classifier_keeps_its_first_dense_as_the_pooler():
  tree = scenic_tree(np.random.default_rng(1), extra=('classification_head',))
  del tree['next_sentence_prediction_head']
  ours, _, unused = scenic_reader.convert_scenic_params(tree)
  np.testing.assert_array_equal(ours['bert']['pooler']['kernel'], tree['classification_head']['Dense_0']['kernel'])
  assert sorted(unused) == ['classification_head/Dense_1/bias', 'classification_head/Dense_1/kernel',
                            'classification_head/output_projection/bias',
                            'classification_head/output_projection/kernel']
  with pytest.raises(ValueError, match='not a parameter of Scenic BERT'):
    scenic_reader.our_name('stem/rotary/kernel')


def test_checkpoint_file_is_read_from_a_scenic_workdir(tmp_path):
  tree = scenic_tree(np.random.default_rng(2))
  for step in (5, 40):
    (tmp_path / f'checkpoint_{step}').write_bytes(serialization.msgpack_serialize(
        {'params': tree if step == 40 else {}, 'global_step': step}))
  ours, model_config = scenic_reader.convert_scenic_checkpoint(str(tmp_path))  # the newest: checkpoint_40
  np.testing.assert_array_equal(ours['mlm_head']['output_bias'], tree['masked_language_model_head'][
      'embedding_bias'].reshape(-1))
  assert model_config.embedding_size == E
  with pytest.raises(FileNotFoundError, match='no checkpoint_<step>'):
    (tmp_path / 'empty').mkdir()
    scenic_reader.convert_scenic_checkpoint(str(tmp_path / 'empty'))


# ------------------------------------------------------------------------------------------ hand-derived outputs


def _ln(x, p, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p['scale'] + p['bias']


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _dense(x, p):
  return x @ p['kernel'] + p['bias']


def _hand_forward(tree, batch):
  """Scenic BERT's forward written from the formulas (pre-LN, one example), in float64."""
  t = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)
  ids, mask, seg = batch['input_ids'][0], batch['input_mask'][0], batch['segment_ids'][0]
  s = t['stem']
  x = s['word_embedding']['embedding'][ids] + s['type_embedding']['embedding'][seg] + s['posembed_input'][
      'pos_embedding'][0, :len(ids)]
  x = _dense(_ln(x, s['embedding_norm']), s['embedding_projection'])  # LayerNorm at width E, then E -> H
  for i in range(L):
    b = t['bert_encoder'][f'encoderblock_{i}']
    a = b['MultiHeadDotProductAttention_0']
    y = _ln(x, b['LayerNorm_0'])
    q, k, v = (np.einsum('sh,hnd->snd', y, a[n]['kernel']) + a[n]['bias'] for n in ('query', 'key', 'value'))
    logits = np.einsum('qnd,knd->nqk', q, k) / np.sqrt(D)
    logits = np.where(mask[None, None, :] > 0, logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    x = x + np.einsum('nqk,knd,ndh->qh', probs, v, a['out']['kernel']) + a['out']['bias']
    mlp = b['MlpBlock_0']
    x = x + _dense(_gelu_tanh(_dense(_ln(x, b['LayerNorm_1']), mlp['Dense_0'])), mlp['Dense_1'])
  x = _ln(x, t['bert_encoder']['encoder_norm'])
  head = t['next_sentence_prediction_head']
  pre_logits = np.tanh(_dense(np.tanh(_dense(x[0], head['Dense_0'])), head['Dense_1']))
  nsp = _dense(pre_logits, head['output_projection'])
  m = t['masked_language_model_head']
  h = _ln(_gelu_tanh(_dense(x[batch['masked_lm_positions'][0]], m['Dense_0'])), m['LayerNorm_0'])
  mlm = h @ s['word_embedding']['embedding'].T + m['embedding_bias'][0, 0]
  return nsp, mlm, pre_logits


def test_tiny_pre_norm_model_matches_the_hand_derived_outputs():
  tree = scenic_tree(np.random.default_rng(3))
  ours, model_config, _ = scenic_reader.convert_scenic_params(tree)
  model_config.update(hidden_dropout_prob=0.0, attention_dropout_prob=0.0, attention_impl='xla')
  with jax.default_matmul_precision('highest'):
    out = _our_model(model_config).apply({'params': ours}, {k: jnp.asarray(v) for k, v in BATCH.items()})
    sequence, pooled = modeling.BertEncoder(modeling.BertConfig.from_model_config(model_config)).apply(
        {'params': ours['bert']}, *(jnp.asarray(BATCH[k]) for k in ('input_ids', 'input_mask', 'segment_ids')))
    feature = probes.nsp_pre_logits(ours['nsp_head'], sequence, pooled)
  nsp, mlm, pre_logits = _hand_forward(tree, BATCH)
  np.testing.assert_allclose(np.asarray(out['nsp_logits'])[0], nsp, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out['mlm_logits'])[0], mlm, rtol=1e-5, atol=1e-5)
  # Scenic's few-shot feature, next_sentence_prediction_head/pre_logits: the second dense layer's tanh.
  np.testing.assert_allclose(np.asarray(feature)[0], pre_logits, rtol=1e-5, atol=1e-6)
  assert fewshot_scenic.feature_source(ours['nsp_head']).startswith('scenic_head')


def test_default_model_has_no_scenic_parameters_and_the_scenic_head_initialises():
  base = architecture.model_config('tiny')
  names = set(traverse_util.flatten_dict(jax.eval_shape(lambda: _our_model(base).init(
      jax.random.PRNGKey(0), BATCH))['params'], sep='/'))
  assert not any('final_layer_norm' in n or 'embedding_projection' in n for n in names)
  scenic = architecture.scenic_model_config('Ti', nsp_head='scenic_head', pre_norm=True, max_position_embeddings=8)
  assert (scenic.num_layers, scenic.hidden_size, scenic.num_heads, scenic.intermediate_size,
          scenic.embedding_size) == (6, 128, 2, 512, 0)  # Ti: E = H = 128, so no projection
  assert architecture.scenic_model_config('S').embedding_size == 128
  abstract = jax.eval_shape(lambda: _our_model(scenic).init(jax.random.PRNGKey(0), BATCH))['params']
  inits = traverse_util.flatten_dict(bert_param_initializers(abstract, 0.02), sep='/')
  out = inits['nsp_head/output_projection/kernel']
  assert out.kind == 'truncated_normal' and out.stddev == pytest.approx(1 / np.sqrt(128) / 0.8796256610)


def test_the_convert_command_reads_a_scenic_workdir_and_hf_export_refuses_scenic_architectures(tmp_path):
  """`bert-convert --format=scenic` writes a params directory our models load; exporting it to Hugging Face (which
  has no pre-norm BERT and no embedding projection) is refused rather than written wrong."""
  from core import params_io
  from projects.bert.checkpoints import convert

  tree = scenic_tree(np.random.default_rng(3))
  (tmp_path / 'scenic').mkdir()
  (tmp_path / 'scenic' / 'checkpoint_7').write_bytes(serialization.msgpack_serialize({'params': tree}))
  out = tmp_path / 'ours'
  convert.main(['--format=scenic', f'--input={tmp_path / "scenic"}', f'--output={out}'])
  params, meta = params_io.load_params(str(out))
  assert meta['model']['pre_norm'] and meta['model']['embedding_size'] == E
  assert meta['source']['format'] == 'scenic'
  np.testing.assert_array_equal(params['mlm_head']['output_bias'],
                                tree['masked_language_model_head']['embedding_bias'].reshape(-1))
  with pytest.raises(SystemExit, match='pre_norm=True.*cannot represent'):
    convert.main(['--export', '--format=hf', f'--input={out}', f'--output={tmp_path / "hf"}'])
  assert not (tmp_path / 'hf').exists()
