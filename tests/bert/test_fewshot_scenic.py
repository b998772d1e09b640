"""Scenic's few-shot protocol (`projects.bert.fewshot.scenic`) against a small independent restatement of it in
numpy, written from its description; the next-sentence head's pre-logits as a feature; the configs that select it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from core import sharding as sharding_lib
from projects.bert.fewshot import probes as fewshot, scenic as fewshot_scenic
from projects.bert.models import modeling
from projects.bert.models import architecture as common
from projects.bert.configs import fewshot as fewshot_config
from projects.bert.configs import pretrain as pretrain_config


def _restated_accuracy(x, y, x_test, y_test, l2, num_classes):
  """Support-set standardisation (std + 1e-5), a bias column of 100, +-1 one-hot targets, ridge through the normal
  equations, argmax accuracy on the eval set."""
  mean, std = x.mean(0), x.std(0) + 1e-5
  prep = lambda f: np.hstack([(f - mean) / std, np.full((len(f), 1), 100.0)])  # noqa: E731
  a = prep(x)
  t = 2.0 * np.eye(num_classes)[y] - 1.0
  w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ t)
  return float(np.mean(np.argmax(prep(x_test) @ w, axis=1) == y_test))


def _restated_protocol(tasks, shots, l2_regs, seed):
  """{eval name: {k: {l2: accuracy}}}, {k: chosen l2}: the first k per class of the pool read in the fixed order,
  then per shot count the l2 with the best mean (over eval sets) ordinal rank of the accuracy (ties: list order)."""
  acc = {}
  for train_x, train_y, num_classes, evals in tasks.values():
    order = np.random.default_rng(seed).permutation(len(train_y))
    for k in shots:
      idx = []
      for c in range(num_classes):
        idx += [i for i in order if train_y[i] == c][:k]
      for name, (ex, ey) in evals.items():
        acc.setdefault(name, {})[k] = {l2: _restated_accuracy(train_x[idx], train_y[idx], ex, ey, l2, num_classes)
                                       for l2 in l2_regs}
  best = {}
  for k in shots:
    ranks = [stats.rankdata([acc[name][k][l2] for l2 in l2_regs], method='ordinal') - 1 for name in acc]
    best[k] = l2_regs[int(np.argmax(np.mean(ranks, axis=0)))]
  return acc, best


def _task(rng, num_classes, d, pool, eval_names, signal):
  centres = rng.normal(size=(num_classes, d)) * signal
  # Correlated noise of unequal scales: the class-mean direction (what strong regularisation tends to) is not the
  # best one, so weak regularisation wins once there are enough shots and the choice depends on k.
  mix = rng.normal(size=(d, d)) * np.exp(rng.normal(size=d) * 1.5)
  def draw(n):
    y = rng.integers(0, num_classes, size=n)
    return (centres[y] + rng.normal(size=(n, d)) @ mix.T * 0.3 + 3.0).astype(np.float32), y
  train_x, train_y = draw(pool)
  return train_x, train_y, num_classes, {name: draw(150) for name in eval_names}


def test_scenic_protocol_matches_an_independent_restatement():
  rng = np.random.default_rng(0)
  # sst2-like (2 classes) and mnli-like (3 classes, two eval sets on one pool), weak signal so the regulariser
  # matters; d = 24 puts the small shot counts in the dual regime (fewer examples than features) and 25-shot not.
  tasks = {'sst2': _task(rng, 2, 24, 200, ['sst2'], 0.6),
           'mnli': _task(rng, 3, 24, 240, ['mnli_matched', 'mnli_mismatched'], 0.6)}
  shots = (1, 5, 10, 25)
  got = fewshot_scenic.scenic_fewshot(tasks, shots, fewshot_scenic.L2_REGS, seed=42, draw='permutation',
                                      solve='float64')
  acc, best = _restated_protocol(tasks, shots, list(fewshot_scenic.L2_REGS), seed=42)

  assert got['best_l2'] == best
  assert set(got['accuracy']) == {'sst2', 'mnli_matched', 'mnli_mismatched'}
  for name in acc:
    for k in shots:
      assert got['accuracy'][name][k] == pytest.approx(acc[name][k], abs=1e-12), (name, k)
      assert got['z'][name][k] == acc[name][k][best[k]]
  # The regulariser matters here (else the check of the choice would be vacuous): accuracies differ across l2.
  assert any(len(set(acc[name][k].values())) > 3 for name in acc for k in shots)
  assert len(set(best.values())) > 1

  scalars = fewshot_scenic.scalars(got, headline='sst2_10shot')
  assert scalars['a/sst2_10shot'] == scalars['z/sst2_10shot'] == acc['sst2'][10][best[10]]
  assert scalars['z/best_l2_for_5shot_eval'] == best[5]
  assert scalars[f'zz/mnli_mismatched_25shot_l2={fewshot_scenic.L2_REGS[3]}'] == acc['mnli_mismatched'][25][
      fewshot_scenic.L2_REGS[3]]
  assert 'a/sst2_100shot' not in fewshot_scenic.scalars(got)  # no 100-shot here: no headline

  broken = {name: (x.copy(), y, c, e) for name, (x, y, c, e) in tasks.items()}
  broken['sst2'][0][0, 0] = np.nan  # a diverged checkpoint: NaN scores, no error
  assert np.isnan(fewshot_scenic.scenic_fewshot(broken, (1,), (1.0,), solve='float64')['z']['sst2'][1])
  with pytest.raises(ValueError, match='fewer than k=500'):
    fewshot_scenic.scenic_fewshot(tasks, (500,))


def test_support_sets_are_the_first_k_per_class_of_one_fixed_order():
  labels = np.array([0, 1, 1, 0, 2, 0, 1, 2, 2, 0])
  order = fewshot_scenic.pool_order(len(labels), seed=42)
  idx = fewshot_scenic.first_k_per_class(labels, 2, 3, order)
  assert list(labels[idx]) == [0, 0, 1, 1, 2, 2]
  for c in range(3):
    in_order = [i for i in order if labels[i] == c]
    assert list(idx[2 * c:2 * c + 2]) == in_order[:2]
  bigger = fewshot_scenic.first_k_per_class(labels, 3, 3, order)
  assert set(idx) <= set(bigger)  # nested: the same stream, read further


def test_stream_draw_is_the_first_k_per_class_through_a_100_record_shuffle_buffer():
  n = 1000
  order = fewshot_scenic.shuffle_buffer_order(n, seed=[42, 1])
  assert sorted(order) == list(range(n))
  position = np.empty(n, np.int64)
  position[order] = np.arange(n)
  # Record r enters the buffer after r - 99 records have left it: never earlier; and no record stays long in a
  # buffer of 100 (almost file order), though the order is not the file's.
  assert np.all(position >= np.arange(n) - 99) and np.mean(np.abs(position - np.arange(n))) < 150
  assert np.any(order[:100] >= 100) and not np.array_equal(order, np.arange(n))
  np.testing.assert_array_equal(fewshot_scenic.shuffle_buffer_order(50, 0, buffer_size=1), np.arange(50))
  np.testing.assert_array_equal(order, fewshot_scenic.shuffle_buffer_order(n, seed=[42, 1]))  # deterministic
  seeds = {name: fewshot_scenic.stream_seed(42, name) for name in ('mnli_matched', 'mnli_mismatched')}
  assert seeds['mnli_matched'] != seeds['mnli_mismatched'] and seeds['mnli_matched'][0] == 42

  # The protocol's default draw: each eval split its own stream, the first k per class of it.
  rng = np.random.default_rng(5)
  tasks = {'mnli': _task(rng, 3, 8, 400, ['mnli_matched', 'mnli_mismatched'], 1.0)}
  train_x, train_y, _, evals = tasks['mnli']
  got = fewshot_scenic.scenic_fewshot(tasks, (4,), (1.0, 1024.0), seed=42, solve='float64')
  assert got['support']['draw'] == 'stream' and '100-record shuffle buffer' in got['support']['how']
  for name in evals:
    idx = fewshot_scenic.first_k_per_class(train_y, 4, 3, fewshot_scenic.shuffle_buffer_order(
        len(train_y), fewshot_scenic.stream_seed(42, name)))
    want = fewshot_scenic.ridge_accuracies(train_x[idx], train_y[idx], 3, {name: evals[name]}, (1.0, 1024.0))
    assert [got['accuracy'][name][4][l2] for l2 in (1.0, 1024.0)] == list(want[name])


def test_float32_solve_is_scenics_lu_solve_in_float32():
  rng = np.random.default_rng(7)
  x, y, c, evals = _task(rng, 2, 24, 200, ['sst2'], 0.6)
  idx = np.arange(60)
  l2s = (2.0 ** -10, 1.0, 2.0 ** 10)
  got = fewshot_scenic.ridge_accuracies_float32(x[idx], y[idx], c, evals, l2s)['sst2']
  ex, ey = evals['sst2']
  for l2, a in zip(l2s, got):  # restated in numpy float32: standardise, bias column 100, LU solve, argmax
    xf = x[idx].astype(np.float32)
    mean, std = xf.mean(0), xf.std(0) + np.float32(1e-5)
    prep = lambda f: np.hstack([(f - mean) / std, np.full((len(f), 1), 100.0, np.float32)]).astype(np.float32)  # noqa
    t = (2.0 * np.eye(c, dtype=np.float32)[y[idx]] - 1.0).astype(np.float32)
    a_ = prep(xf)
    w = np.linalg.solve(a_.T @ a_ + np.float32(l2) * np.eye(a_.shape[1], dtype=np.float32), a_.T @ t)
    assert w.dtype == np.float32
    assert abs(a - np.mean(np.argmax(prep(ex) @ w, 1) == ey)) <= 2 / len(ey)  # LAPACK builds may round apart
  # Well-conditioned (large l2), float32 and float64 agree; the float64 solve stays available.
  exact = fewshot_scenic.ridge_accuracies(x[idx], y[idx], c, evals, l2s)['sst2']
  assert got[-1] == pytest.approx(exact[-1], abs=1e-6)  # Scenic averages in float32 too
  with pytest.raises(ValueError, match='draw'):
    fewshot_scenic.scenic_fewshot({}, draw='shuffled')


def _tiny_batch(config, batch=4, seq=8):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, config.vocab_size, size=(batch, seq)).astype(np.int32)
  mask = (np.arange(seq)[None, :] < np.array([[8], [5], [3], [8]])).astype(np.int32)
  return {'input_ids': ids * mask, 'input_mask': mask, 'segment_ids': np.zeros_like(ids),
          'masked_lm_positions': np.zeros((batch, 2), np.int32)}


def test_nsp_pre_logits_are_the_input_of_the_next_sentence_output_layer():
  model_config = common.model_config('tiny', vocab_size=64)
  bert_config = modeling.BertConfig.from_model_config(model_config)
  module = modeling.BertForPreTraining(bert_config)
  batch = _tiny_batch(model_config)
  params = module.init(jax.random.PRNGKey(0), {k: jnp.asarray(v) for k, v in batch.items()})['params']
  nsp_logits = np.asarray(module.apply({'params': params}, batch)['nsp_logits'])

  mesh = sharding_lib.create_mesh()
  fn = fewshot.make_feature_fn(model_config, ('nsp', 'pooled', 'mean'), mesh)
  out = fewshot.split_features(np.asarray(fn(fewshot.feature_params(params, ('nsp',)), batch)), ('nsp', 'pooled',
                                                                                                  'mean'))
  head = params['nsp_head']
  assert out['nsp'].shape == (4, model_config.hidden_size)
  np.testing.assert_allclose(out['nsp'] @ np.asarray(head['kernel']) + np.asarray(head['bias']), nsp_logits,
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(out['nsp'], out['mean'])

  # Model Garden's next_sentence ClassificationHead: tanh(dense([CLS])) with the head's own dense layer.
  rng = np.random.default_rng(1)
  hidden = model_config.hidden_size
  dense = {'kernel': rng.normal(size=(hidden, hidden)).astype(np.float32) * 0.1,
           'bias': rng.normal(size=hidden).astype(np.float32)}
  mg = {'bert': params['bert'], 'nsp_head': {'pooler_dense': dense, 'logits': {'kernel': np.zeros((hidden, 2)),
                                                                               'bias': np.zeros(2)}}}
  sequence, _ = modeling.BertEncoder(bert_config).apply({'params': params['bert']}, batch['input_ids'],
                                                        batch['input_mask'], batch['segment_ids'])
  expected = np.tanh(np.asarray(sequence)[:, 0] @ dense['kernel'] + dense['bias'])
  got = fewshot.split_features(np.asarray(fn(mg, batch)), ('nsp', 'pooled', 'mean'))
  np.testing.assert_allclose(got['nsp'], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got['pooled'], out['pooled'], rtol=1e-6)  # the encoder's pooler is not the head's
  with pytest.raises(ValueError, match='Unknown next-sentence head'):
    fewshot.nsp_pre_logits({'dense': {}}, sequence, sequence[:, 0])


def test_nsp_pre_logits_of_model_gardens_head_feed_its_logits_layer():
  """With nsp_head='classification_head' (the model_garden recipe), the model's own NSP logits are its `logits`
  layer applied to the pre-logits the few-shot 'nsp' feature extracts."""
  model_config = common.model_config('tiny', vocab_size=64, nsp_head='classification_head')
  module = modeling.BertForPreTraining(modeling.BertConfig.from_model_config(model_config),
                                       nsp_head='classification_head')
  batch = _tiny_batch(model_config)
  params = module.init(jax.random.PRNGKey(2), {k: jnp.asarray(v) for k, v in batch.items()})['params']
  rng = np.random.default_rng(3)  # fresh biases are zero: randomise so that a skipped bias would show
  params = jax.tree_util.tree_map(lambda x: x + rng.normal(0.0, 0.1, x.shape).astype(np.float32), params)
  assert set(params['nsp_head']) == {'pooler_dense', 'logits'}
  nsp_logits = np.asarray(module.apply({'params': params}, batch)['nsp_logits'])
  fn = fewshot.make_feature_fn(model_config, ('nsp',), sharding_lib.create_mesh())
  pre = fewshot.split_features(np.asarray(fn(fewshot.feature_params(params, ('nsp',)), batch)), ('nsp',))['nsp']
  out = params['nsp_head']['logits']
  np.testing.assert_allclose(pre @ np.asarray(out['kernel']) + np.asarray(out['bias']), nsp_logits, rtol=1e-5,
                             atol=1e-5)

def test_configs_select_scenic_tasks_cadence_and_protocol():
  block = fewshot_config.fewshot_block(['sst2'])
  assert block.protocol == 'ours' and block.feature == 'mean'  # our protocol stays the default
  assert block.scenic.shots == (1, 5, 10, 25, 100, 500, 1000) and block.scenic.feature == 'nsp'
  assert block.scenic.l2_regs[0] == 2.0 ** -10 and block.scenic.l2_regs[-1] == 2.0 ** 19
  assert len(block.scenic.l2_regs) == 30 and block.scenic.headline == 'sst2_100shot'
  config = pretrain_config.get_config('base,fewshot')
  fs = config.evals.fewshot
  assert fs.tasks == ('sst2', 'mnli') and fs.every == 50_000 and fs.protocol == 'both'
  assert config.evals.mlm_nsp.every == 10_000  # mlm_nsp keeps its own cadence
  assert pretrain_config.get_config('tiny,fewshot').evals.fewshot.every == 500
  config = fewshot_config.get_config('scenic')
  assert config.evals.fewshot.tasks == ('sst2', 'mnli') and config.evals.fewshot.protocol == 'both'
  assert fewshot_config.get_config('scenic,runlocal').evals.fewshot.scenic.shots == (1, 5, 10)
