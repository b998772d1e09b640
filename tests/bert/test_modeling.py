"""The BERT modules and registered models: shapes, masking, attention paths, dtypes, dropout, remat, losses."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from core import params_io
from core.dataset import DatasetMetaData
from core.registry import MODELS
from projects.bert.models import attention, bert_models as models, modeling
from projects.bert.checkpoints import weights
from projects.bert.models import architecture as common

TINY = modeling.BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                           max_position_embeddings=16)
B, S, P = 8, 12, 3


def make_batch(seed=0, vocab=TINY.vocab_size):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, S + 1, B)
  mask = (np.arange(S)[None] < lengths[:, None]).astype(np.int32)
  return {
      'input_ids': (rng.integers(1, vocab, (B, S)) * mask).astype(np.int32),
      'input_mask': mask,
      'segment_ids': ((np.arange(S)[None] >= (lengths // 2)[:, None]) * mask).astype(np.int32),
      'masked_lm_positions': rng.integers(0, 3, (B, P)).astype(np.int32),
      'masked_lm_ids': rng.integers(0, vocab, (B, P)).astype(np.int32),
      'masked_lm_weights': (rng.random((B, P)) < 0.8).astype(np.float32),
      'next_sentence_labels': rng.integers(0, 2, B).astype(np.int32),
  }


def init(model, batch, seed=0):
  return jax.jit(model.init_params)(jax.random.PRNGKey(seed), batch)


def model_config(**overrides):
  fields = {f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)}
  return ml_collections.ConfigDict({'model': common.model_config('tiny', **{**fields, **overrides})})


def test_model_config_sizes():
  for size, (layers, hidden) in common.SIZES.items():
    cfg = common.model_config(size)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (layers, hidden, hidden // 64,
                                                                                       4 * hidden)
    modeling.BertConfig.from_model_config(cfg)  # every size is a valid encoder config
  assert common.model_config('base').num_heads == 12 and common.model_config('large').num_layers == 24
  assert common.model_config('mini', dtype='bfloat16', num_labels=3).num_labels == 3
  with pytest.raises(ValueError, match='Unknown BERT size'):
    common.model_config('huge')
  with pytest.raises(ValueError, match='not divisible'):
    modeling.BertConfig(hidden_size=30, num_heads=4)


def test_encoder_standalone_shapes_and_padding_is_ignored():
  batch = make_batch()
  encoder = modeling.BertEncoder(TINY)
  args = (batch['input_ids'], batch['input_mask'], batch['segment_ids'])
  variables = jax.jit(encoder.init)(jax.random.PRNGKey(0), *args)
  apply = jax.jit(encoder.apply)
  seq, pooled = apply(variables, *args)
  assert seq.shape == (B, S, TINY.hidden_size) and pooled.shape == (B, TINY.hidden_size)
  # Changing the tokens under padding changes nothing at the real positions: the padding mask works.
  other_ids = np.where(batch['input_mask'] > 0, batch['input_ids'], 7).astype(np.int32)
  seq2, pooled2 = apply(variables, other_ids, batch['input_mask'], batch['segment_ids'])
  real = batch['input_mask'][..., None] > 0
  np.testing.assert_allclose(np.where(real, seq2, 0), np.where(real, seq, 0), atol=1e-5)
  np.testing.assert_allclose(pooled2, pooled, atol=1e-5)
  assert not np.allclose(seq2, seq)  # ... while the padded positions themselves did change


def test_fused_and_explicit_attention_agree():
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 5, 3, 8)), jnp.float32) for _ in range(3))
  mask = attention.attention_mask(jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
  fused = attention.fused_attention(q, k, v, mask)
  explicit = attention.explicit_attention(q, k, v, mask)
  np.testing.assert_allclose(fused, explicit, atol=1e-6)
  # Keys under the mask get no weight: changing their values leaves the output unchanged.
  v2 = v.at[0, 3:].set(100.0)
  np.testing.assert_allclose(attention.fused_attention(q, k, v2, mask)[0], fused[0], atol=1e-6)


def test_bfloat16_forward():
  batch = make_batch()
  f32 = modeling.BertForPreTraining(TINY)
  bf16 = modeling.BertForPreTraining(dataclasses.replace(TINY, dtype='bfloat16'))
  params = jax.jit(f32.init)(jax.random.PRNGKey(0), batch)['params']
  abstract = jax.eval_shape(bf16.init, jax.random.PRNGKey(0), batch)
  assert {x.dtype for x in jax.tree_util.tree_leaves(abstract)} == {np.dtype('float32')}  # params stay float32
  out16 = jax.jit(bf16.apply)({'params': params}, batch)
  out32 = jax.jit(f32.apply)({'params': params}, batch)
  for name in ('mlm_logits', 'nsp_logits'):
    assert out16[name].dtype == jnp.float32
    assert np.isfinite(out16[name]).all()
    scale = np.abs(out32[name]).max()
    assert np.abs(out16[name] - out32[name]).max() < 0.05 * scale + 0.05, name


def test_dropout_differs_between_train_and_eval():
  batch = make_batch()
  config = dataclasses.replace(TINY, num_layers=1)  # each dropout mask adds compile time on the test CPU
  model = modeling.BertForPreTraining(config)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)['params']
  jitted = jax.jit(model.apply, static_argnames='train')
  apply = lambda train, seed: jitted({'params': params}, batch, train=train,  # noqa: E731
                                     rngs={'dropout': jax.random.PRNGKey(seed)})['mlm_logits']
  np.testing.assert_array_equal(apply(False, 0), apply(False, 1))  # eval is deterministic
  np.testing.assert_array_equal(apply(True, 3), apply(True, 3))  # train is a function of the key
  assert not np.allclose(apply(True, 0), apply(False, 0))
  assert not np.allclose(apply(True, 0), apply(True, 1))
  # Without dropout, the training path (fused attention too) computes the eval function.
  no_dropout = modeling.BertForPreTraining(dataclasses.replace(config, hidden_dropout_prob=0.0,
                                                               attention_dropout_prob=0.0))
  out = jax.jit(no_dropout.apply, static_argnames='train')({'params': params}, batch, train=True)
  np.testing.assert_allclose(out['mlm_logits'], apply(False, 0), atol=1e-6)


def test_erf_gelu_matches_the_exact_gelu():
  x = jnp.linspace(-12.0, 12.0, 20001, dtype=jnp.float32)
  np.testing.assert_allclose(modeling.gelu_erf(x), jax.nn.gelu(x, approximate=False), atol=2e-6, rtol=1e-6)
  g = jax.vmap(jax.grad(modeling.gelu_erf))(x)
  g_ref = jax.vmap(jax.grad(lambda t: jax.nn.gelu(t, approximate=False)))(x)
  np.testing.assert_allclose(g, g_ref, atol=2e-6)


@pytest.mark.parametrize('rng', ['jax', 'hash'])
@pytest.mark.parametrize('rate', [0.1, 0.5])
def test_dropout_module_drops_at_the_rate_and_keeps_the_mean(rate, rng):
  x = jnp.ones((301, 257), jnp.float32)  # odd size: the 16-bit halves of the last 32-bit word are trimmed
  drop = modeling.Dropout(rate, rng=rng)
  y = np.asarray(drop.apply({}, x, deterministic=False, rngs={'dropout': jax.random.PRNGKey(0)}))
  dropped = (y == 0).mean()
  assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / x.size), dropped
  np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - round(rate * 65536) / 65536), rtol=1e-6)
  assert abs(y.mean() - 1.0) < 0.02
  # The two halves of one 32-bit word are independent: neighbours are not dropped together more than chance.
  pairs = (y.reshape(-1)[: (x.size // 2) * 2].reshape(-1, 2) == 0)
  assert abs(pairs.all(axis=1).mean() - rate**2) < 4 * np.sqrt(rate**2 * (1 - rate**2) / pairs.shape[0])
  np.testing.assert_array_equal(drop.apply({}, x, deterministic=True), x)


def test_remat_gives_the_same_values_and_gradients():
  batch = make_batch()
  # One layer without dropout shows it; more layers and dropout masks only add compile time on the test CPU.
  config = dataclasses.replace(TINY, num_layers=1, hidden_dropout_prob=0.0, attention_dropout_prob=0.0)
  plain = modeling.BertForPreTraining(config)
  remat = modeling.BertForPreTraining(dataclasses.replace(config, remat=True))
  params = jax.jit(plain.init)(jax.random.PRNGKey(0), batch)['params']
  assert jax.tree_util.tree_structure(jax.eval_shape(remat.init, jax.random.PRNGKey(0), batch)['params']) == \
      jax.tree_util.tree_structure(params)

  def loss(module, p):
    out = module.apply({'params': p}, batch, train=True)
    return jnp.sum(out['mlm_logits'] ** 2) + jnp.sum(out['nsp_logits'])

  g_plain = jax.jit(jax.grad(lambda p: loss(plain, p)))(params)
  g_remat = jax.jit(jax.grad(lambda p: loss(remat, p)))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_plain, g_remat)


def test_models_are_registered_with_the_contract_outputs():
  batch = make_batch()
  cls_batch = dict(batch, label_ids=np.arange(B, dtype=np.int32) % 3)
  for name, expected in (('bert_pretraining', None), ('bert_classification', (B, 3)), ('bert_regression', (B,))):
    model = MODELS.get(name)(model_config(num_labels=3), None)
    # Shapes only (eval_shape traces without compiling): the numerics are tested elsewhere.
    params = jax.eval_shape(model.init_params, jax.random.PRNGKey(0), batch)
    assert 'bert' in params and 'word_embeddings' in params['bert']
    out = jax.eval_shape(functools.partial(model.forward, train=True), params, cls_batch, rng=jax.random.PRNGKey(1))
    if expected is None:
      assert out['mlm_logits'].shape == (B, P, TINY.vocab_size) and out['nsp_logits'].shape == (B, 2)
      assert set(params) == {'bert', 'mlm_head', 'nsp_head'}
    else:
      assert out.shape == expected and out.dtype == jnp.float32
  # num_labels may also come from the dataset.
  model = models.BertClassificationModel(model_config(), DatasetMetaData(input_specs={}, num_labels=5))
  params = jax.eval_shape(model.init_params, jax.random.PRNGKey(0), batch)
  assert jax.eval_shape(functools.partial(model.forward, train=False), params, batch).shape == (B, 5)
  with pytest.raises(ValueError, match='num_labels'):
    models.BertClassificationModel(model_config(), None)


def one_hot_logits(labels, n):
  return 20.0 * jax.nn.one_hot(labels, n) - 10.0


def test_pretraining_loss_and_metrics():
  batch = make_batch()
  model = models.BertPretrainingModel(model_config(), None)
  perfect = {'mlm_logits': one_hot_logits(batch['masked_lm_ids'], TINY.vocab_size),
             'nsp_logits': one_hot_logits(batch['next_sentence_labels'], 2)}
  metrics = model.get_metrics_fn('validation')(perfect, batch)
  assert set(metrics) == {'mlm_loss', 'mlm_accuracy', 'nsp_loss', 'nsp_accuracy'}
  assert float(metrics['mlm_accuracy'][0] / metrics['mlm_accuracy'][1]) == 1.0
  assert float(metrics['nsp_accuracy'][0] / metrics['nsp_accuracy'][1]) == 1.0
  assert float(metrics['mlm_accuracy'][1]) == batch['masked_lm_weights'].sum()  # counts weighted positions
  assert float(model.loss_function(perfect, batch)) < 1e-6

  rng = np.random.default_rng(1)
  outputs = {'mlm_logits': jnp.asarray(rng.normal(size=(B, P, TINY.vocab_size)), jnp.float32),
             'nsp_logits': jnp.asarray(rng.normal(size=(B, 2)), jnp.float32)}
  w = batch['masked_lm_weights']
  mlm_ce = optax.softmax_cross_entropy_with_integer_labels(outputs['mlm_logits'], batch['masked_lm_ids'])
  nsp_ce = optax.softmax_cross_entropy_with_integer_labels(outputs['nsp_logits'], batch['next_sentence_labels'])
  expected = np.sum(mlm_ce * w) / np.sum(w) + np.mean(nsp_ce)
  np.testing.assert_allclose(model.loss_function(outputs, batch), expected, rtol=1e-5)
  # Masked-out positions do not count: changing their logits leaves the loss unchanged.
  changed = dict(outputs, mlm_logits=jnp.where(w[..., None] > 0, outputs['mlm_logits'], 99.0))
  np.testing.assert_allclose(model.loss_function(changed, batch), expected, rtol=1e-5)
  # batch_mask removes whole examples from every metric.
  half = dict(batch, batch_mask=(np.arange(B) < B // 2).astype(np.float32))
  m = model.get_metrics_fn()(outputs, half)
  np.testing.assert_allclose(m['nsp_loss'][0] / m['nsp_loss'][1], np.mean(nsp_ce[:B // 2]), rtol=1e-5)
  assert float(m['mlm_loss'][1]) == w[:B // 2].sum()


def test_classification_and_regression_losses():
  labels = np.array([0, 1, 2, 1, 0, 2, 1, 0], np.int32)
  batch_mask = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)
  cls = models.BertClassificationModel(model_config(num_labels=3), None)
  logits = one_hot_logits(labels, 3)
  wrong_on_padding = logits.at[6:].set(one_hot_logits(labels[6:] + 1, 3)[0])
  m = cls.get_metrics_fn('validation')(wrong_on_padding, {'label_ids': labels, 'batch_mask': batch_mask})
  assert float(m['accuracy'][0] / m['accuracy'][1]) == 1.0 and float(m['accuracy'][1]) == 6.0
  assert float(cls.loss_function(logits, {'label_ids': labels})) < 1e-6
  m = cls.get_metrics_fn()(one_hot_logits((labels + 1) % 3, 3), {'label_ids': labels})
  assert float(m['accuracy'][0]) == 0.0

  reg = models.BertRegressionModel(model_config(), None)
  targets = np.linspace(0, 5, 8).astype(np.float32)
  preds = targets + np.array([1, -1, 2, 0, 0, 0, 9, 9], np.float32)
  m = reg.get_metrics_fn()(jnp.asarray(preds), {'label_ids': targets, 'batch_mask': batch_mask})
  np.testing.assert_allclose(m['loss'][0] / m['loss'][1], 6.0 / 6.0)
  np.testing.assert_allclose(reg.loss_function(jnp.asarray(preds), {'label_ids': targets}), 168.0 / 8.0)


def test_question_answering_model_and_loss():
  """Span logits [B, S, 2]; the loss is Model Garden's (mean start CE + mean end CE) / 2 over every position;
  padding rows do not count; eval batches without positions have no model metrics; the host initializer covers
  the span head."""
  batch = make_batch()
  model = MODELS.get('bert_question_answering')(model_config(), None)
  # Shapes only (eval_shape traces without compiling); the logits' values are checked against HF in test_convert.
  params = jax.eval_shape(model.init_params, jax.random.PRNGKey(0), batch)
  assert set(params) == {'bert', 'span_head'} and params['span_head']['kernel'].shape == (TINY.hidden_size, 2)
  rules = model.param_initializers(params)
  assert rules['span_head']['kernel'].kind == 'truncated_normal' and rules['span_head']['bias'].kind == 'zeros'
  logits = jax.eval_shape(functools.partial(model.forward, train=True), params, batch, rng=jax.random.PRNGKey(1))
  assert logits.shape == (B, S, 2) and logits.dtype == jnp.float32

  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(B, S, 2)), jnp.float32)
  starts, ends = rng.integers(0, S, B).astype(np.int32), rng.integers(0, S, B).astype(np.int32)
  labels = {'start_positions': starts, 'end_positions': ends}
  log_probs = np.asarray(jax.nn.log_softmax(logits, axis=1))
  upstream = (-np.mean(log_probs[np.arange(B), starts, 0]) - np.mean(log_probs[np.arange(B), ends, 1])) / 2
  np.testing.assert_allclose(model.loss_function(logits, labels), upstream, rtol=1e-5)
  batch_mask = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)
  perfect = 20.0 * jnp.stack([jax.nn.one_hot(starts, S), jax.nn.one_hot(ends, S)], -1) - 10.0
  wrong_on_padding = perfect.at[6:].set(0.0)
  m = model.get_metrics_fn('train')(wrong_on_padding, {**labels, 'batch_mask': batch_mask})
  assert set(m) == {'loss', 'start_accuracy', 'end_accuracy'} and float(m['loss'][1]) == 6.0
  assert float(m['start_accuracy'][0]) == float(m['end_accuracy'][0]) == 6.0 and float(m['loss'][0]) < 1e-6
  assert model.get_metrics_fn('validation')(logits, {'unique_ids': starts, 'batch_mask': batch_mask}) == {}


def test_pretraining_model_learns_a_fixed_batch():
  batch = make_batch()
  model = models.BertPretrainingModel(model_config(num_layers=1, hidden_dropout_prob=0.0, attention_dropout_prob=0.0),
                                      None)
  params = init(model, batch)
  tx = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(lambda p: model.loss_function(model.forward(p, batch, train=True), batch))(
        params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for _ in range(30):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0], losses


def random_params(model, batch, seed):
  """Random float32 arrays shaped like the model's parameters (no compilation needed)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init_params, jax.random.PRNGKey(0), batch)
  return jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def test_load_weights_merges_the_encoder(tmp_path):
  batch = make_batch()
  source = random_params(models.BertPretrainingModel(model_config(), None), batch, seed=1)
  params_io.save_params(str(tmp_path / 'pre'), source, metadata={'model': model_config().model.to_dict()})
  target_model = models.BertClassificationModel(model_config(num_labels=2), None)
  fresh = random_params(target_model, batch, seed=2)
  loaded, info = weights.load_weights(fresh, str(tmp_path / 'pre'), model_config=target_model.config.model)
  assert info == {'source': 'init_from', 'path': str(tmp_path / 'pre'), 'step': None}
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded['bert'], source['bert'])
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded['classifier'], fresh['classifier'])
  only_heads, _ = weights.load_weights(fresh, str(tmp_path / 'pre'), keep=('mlm_head',))
  jax.tree_util.tree_map(np.testing.assert_array_equal, only_heads['bert'], fresh['bert'])
  with pytest.raises(FileNotFoundError, match='neither params/'):
    weights.load_weights(fresh, str(tmp_path / 'missing'))
  bigger = models.BertClassificationModel(model_config(num_labels=2, intermediate_size=48), None)
  with pytest.raises(ValueError, match=r"'bert/layer_0/intermediate/(bias|kernel)' has shape"):
    weights.load_weights(random_params(bigger, batch, seed=0), str(tmp_path / 'pre'))
  # Given only the shapes, a source with every parameter needs no initialiser; one without heads uses it.
  shapes = jax.eval_shape(target_model.init_params, jax.random.PRNGKey(0), batch)
  params_io.save_params(str(tmp_path / 'tuned'), loaded, metadata={'step': 7})
  complete, info = weights.load_weights(shapes, str(tmp_path / 'tuned'), expect_complete=True)
  jax.tree_util.tree_map(np.testing.assert_array_equal, complete, loaded)
  assert info['step'] == 7
  with pytest.raises(ValueError, match='no initialiser'):
    weights.load_weights(shapes, str(tmp_path / 'pre'))
  headless, _ = weights.load_weights(shapes, str(tmp_path / 'pre'), init_fn=lambda: fresh)
  jax.tree_util.tree_map(np.testing.assert_array_equal, headless['classifier'], fresh['classifier'])
  # Evaluating saved weights (expect_complete) never fills a missing task head with random values.
  with pytest.raises(ValueError, match=r'has no classifier/bias, classifier/kernel: .*RANDOM head'):
    weights.load_weights(shapes, str(tmp_path / 'pre'), init_fn=lambda: fresh, expect_complete=True)
