"""Host-side parameter initialisation: BERT's distributions, determinism, and independence from the devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from core import param_init
from core import sharding as sharding_lib
from core.state import create_sharded_train_state
from projects.bert.models import bert_models as models
from projects.bert.models import architecture as common


def _model(**overrides):
  config = ml_collections.ConfigDict({'model': common.model_config('tiny', vocab_size=512, **overrides)})
  return models.BertPretrainingModel(config, None)


def _batch():
  b = {k: np.zeros((2, 16), np.int32) for k in ('input_ids', 'input_mask', 'segment_ids')}
  b.update(masked_lm_positions=np.zeros((2, 3), np.int32), masked_lm_ids=np.zeros((2, 3), np.int32),
           masked_lm_weights=np.zeros((2, 3), np.float32), next_sentence_labels=np.zeros((2,), np.int32))
  return b


def _state(model, devices, seed=0, rules=()):
  mesh = sharding_lib.create_mesh(devices)
  return create_sharded_train_state(model.params_init(_batch()), optax.adamw(1e-3), jax.random.PRNGKey(seed),
                                    mesh, rules)


@pytest.mark.parametrize('nsp_head', ['encoder_pooler', 'classification_head', 'scenic_head'])
def test_bert_initializers_follow_the_flax_modules(nsp_head):
  # Scenic's head with Scenic's encoder options (a pre-LN encoder, a narrower embedding projected to the hidden size).
  scenic = {'pre_norm': True, 'embedding_size': 64} if nsp_head == 'scenic_head' else {}
  model = _model(nsp_head=nsp_head, **scenic)
  flax_params = jax.device_get(jax.jit(model.init_params)(jax.random.PRNGKey(0), _batch()))
  state, _ = _state(model, jax.devices()[:1])
  host = jax.device_get(state.params)
  std = model.bert_config().initializer_range
  flat_flax = jax.tree_util.tree_leaves_with_path(flax_params)
  flat_host = dict(jax.tree_util.tree_leaves_with_path(host))
  assert len(flat_flax) == len(flat_host)
  own_init = 0  # kernels of a head with its own initialiser
  for path, ref in flat_flax:
    got = flat_host[path]
    assert got.shape == ref.shape and got.dtype == ref.dtype, path
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    if np.all(ref == ref.flat[0]):  # a constant initialiser (LayerNorm scale 1, biases 0): exactly the same
      np.testing.assert_array_equal(got, ref, err_msg=str(path))
    elif name.startswith('nsp_head/') and nsp_head == 'classification_head':
      # Model Garden's ClassificationHead: glorot_uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)).
      own_init += 1
      limit = np.sqrt(6.0 / sum(ref.shape))
      assert np.abs(got).max() <= limit * (1 + 1e-6) and np.abs(ref).max() <= limit * (1 + 1e-6), path
      assert abs(got.std() - limit / np.sqrt(3)) < 0.1 * limit and abs(got.std() - ref.std()) < 0.1 * limit, path
      assert np.abs(got).max() > 2 * std  # not the truncated normal of the other kernels
    elif name == 'nsp_head/output_projection/kernel':
      # Scenic's output projection: flax's lecun_normal, truncated at 2 of its std, variance 1 / fan_in.
      own_init += 1
      bound = 2 / np.sqrt(ref.shape[0]) / 0.8796256610
      assert np.abs(got).max() <= bound * (1 + 1e-6) and np.abs(ref).max() <= bound * (1 + 1e-6), path
      assert np.abs(got).max() > 2 * std  # not the truncated normal of the other kernels
    else:  # flax's truncated normal: N(0, std) cut at 2 std, whose standard deviation is 0.88 std
      assert np.abs(got).max() <= 2 * std * (1 + 1e-6) and np.abs(ref).max() <= 2 * std * (1 + 1e-6), path
      if got.size >= 4096:
        assert abs(got.std() - 0.8796 * std) < 0.05 * std and abs(got.mean()) < 0.05 * std, path
        assert abs(got.std() - ref.std()) < 0.05 * std, path
  assert own_init == {'classification_head': 2, 'scenic_head': 1}.get(nsp_head, 0)


def test_host_init_is_deterministic_and_the_same_on_1_and_8_devices():
  assert jax.device_count() == 8
  model = _model()
  one, _ = _state(model, jax.devices()[:1], seed=3)
  eight, shardings = _state(model, jax.devices(), seed=3, rules=((r'.*', 'fsdp'),))
  # FSDP really shards something across the 8 devices, yet the values are the same.
  assert any(not s.is_fully_replicated for s in jax.tree_util.tree_leaves(shardings.params))
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(one.params), jax.device_get(eight.params))
  again, _ = _state(model, jax.devices()[:1], seed=3)
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(one.params), jax.device_get(again.params))
  other, _ = _state(model, jax.devices()[:1], seed=4)
  kernel = lambda s: np.asarray(s.params['bert']['layer_0']['intermediate']['kernel'])  # noqa: E731
  assert not np.allclose(kernel(one), kernel(other))
  # Arrays of one shape are not copies of each other (each has its own stream).
  q, k = (np.asarray(one.params['bert']['layer_0']['attention'][n]['kernel']) for n in ('query', 'key'))
  assert not np.allclose(q, k)
  # The optimizer state starts as optax builds it, in the parameters' shardings.
  assert int(one.step) == 0
  jax.tree_util.tree_map(lambda m: np.testing.assert_array_equal(m, 0), jax.device_get(one.opt_state[0].mu))


def test_truncated_normal_is_truncated_and_rescaled():
  init = param_init.Initializer('truncated_normal', 0.5)
  x = param_init.draw(init, (3_000_001,), np.float32, 0, 'w')  # spans several chunks
  assert np.abs(x).max() <= 2 * 0.5 + 1e-6
  assert abs(x.std() - 0.87962566 * 0.5) < 0.005 and abs(x.mean()) < 0.005
  # Mass near the bound as a truncated normal has it (2 * pdf(2) * 0.02 / 0.9545 = 0.00226 of the values within 1%
  # of it), not the pile-up of a clipped one.
  edge = np.mean(np.abs(x) > 0.99 * 2 * 0.5)
  assert 0.0018 < edge < 0.0028, edge
  n = param_init.draw(param_init.Initializer('normal', 2.0), (100_000,), np.float32, 0, 'w')
  assert abs(n.std() - 2.0) < 0.05 and np.abs(n).max() > 2 * 2.0  # untruncated
  u = param_init.draw(param_init.Initializer('symmetric_uniform', 0.5), (3_000_001,), np.float32, 0, 'w')
  assert np.abs(u).max() <= np.sqrt(3) * 0.5 and abs(u.std() - 0.5) < 0.005 and abs(u.mean()) < 0.005
  assert np.abs(u).max() > 0.99 * np.sqrt(3) * 0.5  # fills the whole interval
  with pytest.raises(ValueError, match='Unknown initializer'):
    param_init.Initializer('uniform')


def test_a_parameter_without_a_rule_is_an_error():
  abstract = {'bert': {'weird': {'gain': jax.ShapeDtypeStruct((4,), jnp.float32)}}}
  with pytest.raises(ValueError, match="No initializer rule for BERT parameter 'bert/weird/gain'"):
    models.bert_param_initializers(abstract, 0.02)


def test_models_without_initializers_still_init_through_flax():
  from tests.core import toy
  model = toy.ToyRegressionModel(None, None)
  init = model.params_init({'x': np.zeros((2, 3), np.float32), 'y': np.zeros((2,), np.float32)})
  assert callable(init)
