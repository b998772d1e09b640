r"""Our training side by side with TF Model Garden's (tf-models-official) on the same CPU.

  python benchmarks/fidelity.py --output=benchmarks/results/fidelity_cpu.json       # all checks (~16 min, 2 cores)
  python benchmarks/fidelity.py --checks=optimizer,pretraining,glue_exact --quick     # what tests/bert runs

Checks (every Model Garden number comes from its own code: the optimizer factory, the tasks' train_step, its
trainer; ours from the model_garden recipe of projects/bert/configs/recipes.py and our train step / trainer):
  optimizer    the same parameters (a random tiny BertPretrainerV2's, converted) and the same gradient sequence for
               100 steps through Model Garden's optimizer factory built from its BERT experiment configs
               (bert/pretraining, bert/sentence_prediction; warm-up 10 and decay 100 steps as its yaml files set
               them) and through our train step: the learning rate at every step, every parameter after every step,
               which variables get weight decay. On one replica (global clipping) and on two (tf.distribute's
               MirroredStrategy over two logical CPUs against a 2-device mesh with per-replica clipping).
  pretraining  Model Garden's masked_lm task (BertPretrainerV2, its loss, its train_step, its optimizer) and ours
               from the same weights (its checkpoint, converted), on the same records of the official
               create_pretraining_data.py read by each side's own input pipeline in the same order, dropout 0,
               float32: the MLM and NSP losses of every step.
  glue_exact   Model Garden's sentence_prediction task and ours from the same converted BertPretrainerV2 checkpoint
               (init_cls_pooler on both sides, then the default: a fresh pooler, our model_garden recipe's
               classifier_pooler='fresh'), the same records, no shuffling, dropout 0: the loss of every step,
               then the dev predictions and metric; on an MRPC-format (classification) and an STS-B-format
               (regression) task.
  glue_seeds   whole fine-tuning runs with dropout 0.1 and shuffling, for 5 seeds: Model Garden's trainer
               (official.core.train_lib.run_experiment with the sentence_prediction task) and ours
               (core.app.train_and_evaluate): the final dev metric, mean and standard deviation over seeds.

Upstream problems met (and what is done instead) are listed in benchmarks/README.md and in the JSON's `notes`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# Before JAX and TF start: two CPU devices for JAX (a 2-replica mesh), CPU only for both.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (benchmarks/common.py)
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from flax import traverse_util  # noqa: E402

from core import optimizers, sharding  # noqa: E402
from core.state import create_sharded_train_state  # noqa: E402
from core.train_step import make_train_step  # noqa: E402
from projects.bert.models import architecture as config_common  # noqa: E402
from projects.bert.configs import recipes  # noqa: E402
from tests.bert import model_garden  # noqa: E402
from tests.core.toy import GradientReplayModel  # noqa: E402

CHECKS = ('optimizer', 'pretraining', 'glue_exact', 'glue_seeds')
TABLE_COLUMNS = {
    'optimizer': ['case', 'lr_max_rel_diff', 'params_max_rel_err', 'update_max_rel_err', 'decay_mask_mismatches',
                  'clipped_steps', 'pass'],
    'pretraining': ['case', 'same_batches', 'mlm_max_rel_diff', 'nsp_max_rel_diff', 'mlm_loss_first_last',
                    'final_params_max_rel_err', 'pass'],
    'glue_exact': ['case', 'same_batches', 'pooler_as_expected', 'loss_max_rel_diff', 'dev_metric',
                   'dev_metric_model_garden', 'dev_metric_ours', 'pass'],
    'glue_seeds': ['case', 'dev_metric', 'peak_lr', 'seeds', 'mean_std', 'values_3f', 'seconds'],
}
NOTES = [
    'official.nlp.tasks imports tensorflow_hub 0.16.1, which runs `from pkg_resources import parse_version`; '
    'setuptools >= 81 no longer ships pkg_resources (ModuleNotFoundError). tests/bert/model_garden.py registers a '
    'pkg_resources module holding packaging.version.parse when it is missing.',
    'sentence_prediction build_losses with num_classes=1 computes mean_squared_error(labels [B], outputs [B, 1]), '
    'which broadcasts to [B, B]: regression fine-tuning pulls every prediction to the batch mean. Run as shipped and '
    'with the outputs squeezed (fixed_regression_task_cls).',
    'In fine-tuning the word-embedding gradient is tf.IndexedSlices (one row per token occurrence) and '
    'tf.clip_by_global_norm takes the norm of those rows, not of the gradient. The exact checks run Model Garden '
    'with dense gradients (densify_gradients) and also as shipped.',
    "SentencePredictionTask builds BertClassifier with its default head dropout 0.1 (not configurable); the "
    "dropout-0 checks set that Keras Dropout layer's rate to 0 (model_garden.set_dropout).",
]


def tiny_model_config(vocab_size: int = 99, max_position_embeddings: int = 64, dropout: float = 0.0,
                      **fields: Any) -> ml_collections.ConfigDict:
  """A CPU-sized config.model with the model_garden recipe's fields (tanh GELU, next_sentence head)."""
  return config_common.model_config('tiny', **{
      **recipes.model_fields('model_garden'), 'vocab_size': vocab_size, 'hidden_size': 64, 'num_layers': 2,
      'num_heads': 2, 'intermediate_size': 128, 'max_position_embeddings': max_position_embeddings,
      'hidden_dropout_prob': dropout, 'attention_dropout_prob': dropout, **fields})


def our_training(model: Any, params: Any, optimizer: ml_collections.ConfigDict,
                 schedule: ml_collections.ConfigDict, num_train_steps: int, mesh: Any) -> Tuple[Any, Callable]:
  """(state, jitted train step) on `mesh` from `params`, as core.setup builds them for a run."""
  lr_fn = optimizers.learning_rate_schedule(schedule, num_train_steps)
  tx = optimizers.create_optimizer(optimizer, lr_fn)
  state, shardings = create_sharded_train_state(lambda rng: jax.tree_util.tree_map(np.asarray, params), tx,
                                                jax.random.PRNGKey(0), mesh)
  step = make_train_step(model, shardings, mesh, learning_rate_fn=lr_fn,
                         per_replica_clip=optimizers.per_replica_clipping(optimizer))
  return state, step


def rel_err(ours: np.ndarray, theirs: np.ndarray, scale: Optional[float] = None) -> float:
  """max |ours - theirs| / scale (default: max |theirs|)."""
  scale = float(np.abs(theirs).max()) if scale is None else scale
  return float(np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)).max()) / max(scale, 1e-30)


# ------------------------------------------------------------------------------------------------------ optimizer


def mg_optimizer_config(experiment: str, steps: int, warmup: int, lr: Optional[float] = None) -> Any:
  """The optimizer config of a Model Garden BERT experiment with its yaml's decay_steps / warmup_steps."""
  mg = model_garden.import_tasks()
  config = mg.exp_factory.get_exp_config(experiment).trainer.optimizer_config
  config.learning_rate.polynomial.decay_steps = steps
  config.warmup.polynomial.warmup_steps = warmup
  if lr is not None:
    config.learning_rate.polynomial.initial_learning_rate = lr
  return config


def _match_variables(variables: Sequence[Any], params: Any) -> Dict[int, str]:
  """{index of a Keras variable: our '/'-joined parameter path} by equal values (all are distinct randoms)."""
  flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep='/').items()}
  out: Dict[int, str] = {}
  for i, var in enumerate(variables):
    value = var.numpy()
    hits = [k for k, v in flat.items() if v.shape == value.shape and np.array_equal(v, value)]
    if len(hits) != 1:
      raise RuntimeError(f'Model Garden variable {var.name} matches {hits} of our parameters.')
    out[i] = hits[0]
  if sorted(out.values()) != sorted(flat):
    raise RuntimeError(f'Parameters without a Model Garden variable: {sorted(set(flat) - set(out.values()))}.')
  return out


def _gradient_sequence(paths: Dict[str, Tuple[int, ...]], steps: int, replicas: int, seed: int = 0
                       ) -> List[List[Dict[str, np.ndarray]]]:
  """grads[step][replica] = {path: float32 array}: random directions whose per-tensor scales span 1e-7..1 (so
  Adam's eps matters) and whose global norms cycle from 0.2 to 6 (so clipping acts on some steps, not others)."""
  rng = np.random.default_rng(seed)
  tensor_scale = {p: 10.0 ** rng.uniform(-7, 0) for p in paths}
  norms = (0.2, 0.6, 1.5, 6.0, 0.9, 3.0, 0.4)
  out = []
  for s in range(steps):
    per_replica = []
    for r in range(replicas):
      g = {p: rng.normal(size=shape) * tensor_scale[p] for p, shape in paths.items()}
      total = np.sqrt(sum(np.sum(x ** 2) for x in g.values()))
      target = norms[(s + 3 * r) % len(norms)]
      per_replica.append({p: (x * target / total).astype(np.float32) for p, x in g.items()})
    out.append(per_replica)
  return out


def check_optimizer(steps: int = 100, warmup: int = 10) -> List[Dict[str, Any]]:
  """One row per (experiment, replicas): LR and parameter agreement over `steps` steps (see the module doc)."""
  model_config = tiny_model_config()
  model_garden.set_seed(0)
  pretrainer = model_garden.build(model_garden.masked_lm_task(model_config).build_model())
  model_garden.randomize(pretrainer, seed=0)
  from projects.bert.checkpoints import tf_reader
  with tempfile.TemporaryDirectory() as tmp:
    prefix = model_garden.save_pretrainer(pretrainer, tmp, model_config)
    params, _ = tf_reader.convert_tf_checkpoint(prefix, os.path.join(tmp, 'bert_config.json'))
  variables = pretrainer.trainable_variables
  names = _match_variables(variables, params)
  initial = [v.numpy() for v in variables]
  paths = {names[i]: initial[i].shape for i in range(len(variables))}
  rows = []
  cases = [('bert/pretraining', 1, 'global'), ('bert/sentence_prediction', 1, 'global'),
           ('bert/pretraining', 2, 'per_replica_sum'), ('bert/sentence_prediction', 2, 'per_replica_mean')]
  for experiment, replicas, scope in cases:
    t0 = time.perf_counter()
    grads = _gradient_sequence(paths, steps, replicas, seed=replicas)
    opt_config = mg_optimizer_config(experiment, steps, warmup)
    base_lr = opt_config.learning_rate.polynomial.initial_learning_rate
    theirs = _run_model_garden_optimizer(opt_config, initial, [names[i] for i in range(len(variables))],
                                         [v.name for v in variables], grads, replicas,
                                         scale_loss=experiment != 'bert/pretraining')
    optimizer = recipes.optimizer_config('model_garden')
    optimizer.grad_clip_scope = scope
    schedule = recipes.schedule_config('model_garden', base_lr, warmup_steps=warmup)
    mesh = sharding.create_mesh(jax.devices()[:replicas])
    state, step = our_training(GradientReplayModel(params), params, optimizer, schedule, steps, mesh)
    lr_rel, param_rel, update_rel = 0.0, 0.0, 0.0
    flat0 = traverse_util.flatten_dict(params, sep='/')
    for s in range(steps):
      rows_ = {p: np.stack([grads[s][r][p] for r in range(replicas)]) for p in paths}
      state, metrics = step(state, sharding.make_global_batch(rows_, mesh))
      lr_rel = max(lr_rel, rel_err(float(metrics['learning_rate']), theirs['lr'][s]))
      ours = traverse_util.flatten_dict(jax.device_get(state.params), sep='/')
      for p in paths:
        param_rel = max(param_rel, rel_err(ours[p], theirs['params'][s][p]))
        moved = float(np.abs(theirs['params'][s][p].astype(np.float64) - flat0[p]).max())
        if moved > 0:
          update_rel = max(update_rel, rel_err(ours[p], theirs['params'][s][p], moved))
    ours_mask = traverse_util.flatten_dict(
        optimizers.weight_decay_mask(params, tuple(optimizer.no_decay_patterns)), sep='/')
    mask_diff = [p for p in paths if ours_mask[p] != theirs['decayed'][p]]
    rows.append({'check': 'optimizer', 'case': f'{experiment}, {replicas} replica(s), ours: {scope}',
                 'steps': steps, 'lr_max_rel_diff': lr_rel, 'lr_bitwise_equal': lr_rel == 0.0,
                 'params_max_rel_err': param_rel, 'update_max_rel_err': update_rel,
                 'decay_mask_mismatches': mask_diff, 'decayed': int(sum(ours_mask.values())),
                 'not_decayed': int(len(ours_mask) - sum(ours_mask.values())),
                 'clipped_steps': theirs['clipped'], 'pass': param_rel <= 1e-6 and lr_rel <= 1e-6 and not mask_diff,
                 'seconds': time.perf_counter() - t0})
  return rows


def _run_model_garden_optimizer(opt_config: Any, initial: List[np.ndarray], paths: List[str], keras_names: List[str],
                                grads: List[List[Dict[str, np.ndarray]]], replicas: int, scale_loss: bool
                                ) -> Dict[str, Any]:
  """Applies `grads` with Model Garden's optimizer on `replicas` replicas; returns {'lr': [...], 'params': [{path:
  array}] per step, 'decayed': {path: bool}, 'clipped': steps where some replica's gradient was clipped}.

  With several replicas each replica's gradient is what its train_step would pass: divided by the number of
  replicas for sentence_prediction (base_task scales the loss), as is for masked_lm (scale_loss=False).
  """
  mg = model_garden.import_tasks()
  tf = mg.tf
  devices = [d.name for d in tf.config.list_logical_devices('CPU')][:replicas]
  strategy = tf.distribute.MirroredStrategy(devices) if replicas > 1 else tf.distribute.get_strategy()
  with strategy.scope():
    variables = [tf.Variable(x, name=p.replace('/', '_')) for x, p in zip(initial, paths)]
    factory = mg.optimization.OptimizerFactory(opt_config)
    lr = factory.build_learning_rate()
    optimizer = factory.build_optimizer(lr)
  # Weight decay is decided on the Keras variable names of the real model.
  decayed = {p: bool(optimizer._do_use_weight_decay(n)) for p, n in zip(paths, keras_names)}  # pylint: disable=protected-access
  scale = 1.0 / replicas if scale_loss else 1.0

  @tf.function
  def apply(per_replica):
    def fn(g):
      optimizer.apply_gradients(zip(g, variables))
    strategy.run(fn, args=(per_replica,))

  out = {'lr': [], 'params': [], 'decayed': decayed, 'clipped': 0}
  for step_grads in grads:
    out['lr'].append(float(optimizer._decayed_lr(tf.float32)))  # pylint: disable=protected-access
    tensors = [[tf.constant(step_grads[r][p] * np.float32(scale)) for p in paths] for r in range(replicas)]
    out['clipped'] += any(np.sqrt(sum(np.sum((g[p] * scale) ** 2) for p in paths)) > 1.0 for g in step_grads)
    if replicas > 1:
      value = strategy.experimental_distribute_values_from_function(
          lambda ctx: tensors[ctx.replica_id_in_sync_group])
    else:
      value = tensors[0]
    apply(value)
    out['params'].append({p: v.numpy() for p, v in zip(paths, variables)})
  return out


# ---------------------------------------------------------------------------------------------------- pretraining


def pretraining_records(directory: str, batch: int, steps: int, seq_len: int, preds: int) -> Tuple[str, str, int]:
  """(record file, vocab, record count): official create_pretraining_data.py records, enough for `steps` batches
  read once in file order (more duplication of the test corpus until there are)."""
  from projects.bert.datasets import records as records_lib
  from tests.bert import data_utils
  for dupe in (4, 8, 16, 32, 64):
    files, vocab = data_utils.make_pretraining_records(directory, max_seq_length=seq_len,
                                                       max_predictions_per_seq=preds, num_files=1, dupe_factor=dupe)
    count = records_lib.count_records(files[0], '')
    if count >= batch * steps:
      return files[0], vocab, count
  raise RuntimeError(f'{count} records are fewer than {batch} x {steps}.')


def _mg_optimizer(experiment: str, steps: int, warmup: int, lr: float) -> Any:
  mg = model_garden.import_tasks()
  factory = mg.optimization.OptimizerFactory(mg_optimizer_config(experiment, steps, warmup, lr=lr))
  return factory.build_optimizer(factory.build_learning_rate())


def _one_device_mesh() -> Any:
  return sharding.create_mesh(jax.devices()[:1])  # Model Garden runs on one replica here


def _same_batch(ours: Dict[str, np.ndarray], theirs: Dict[str, np.ndarray]) -> bool:
  """Whether our batch holds the values of Model Garden's (its v2 feature names, labels [B, 1] or [B])."""
  names = {'input_word_ids': 'input_ids', 'input_type_ids': 'segment_ids'}
  for key, value in theirs.items():
    mine = ours.get(names.get(key, key))
    if mine is None or not np.array_equal(np.asarray(mine).reshape(-1), np.asarray(value).reshape(-1)):
      return False
  return True


def check_pretraining(workdir: str, steps: int = 50, batch: int = 8, seq_len: int = 64, preds: int = 10,
                      lr: float = 2e-3, warmup: int = 5) -> List[Dict[str, Any]]:
  """MLM and NSP losses of every step, Model Garden's masked_lm task against ours (see the module doc).

  The learning rate and warm-up are scaled to a 50-step run of a tiny model (wiki_books_pretrain.yaml's 1e-4 over
  1M steps would leave the losses where they start); the rest is the bert/pretraining experiment and our
  model_garden recipe.
  """
  from core.registry import DATASETS
  from projects.bert.checkpoints import tf_reader
  from projects.bert.models import bert_models as models
  from projects.bert import datasets  # noqa: F401  (registers the builders)
  from tests.bert import data_utils
  mg = model_garden.import_tasks()
  tf = mg.tf
  t0 = time.perf_counter()
  record_file, vocab, count = pretraining_records(os.path.join(workdir, 'records'), batch, steps, seq_len, preds)
  model_config = tiny_model_config(vocab_size=len(data_utils.read_vocab(vocab)), max_position_embeddings=seq_len)

  # Model Garden: its task, model, loss, train_step and optimizer; its data loader in file order.
  train_data = mg.pretrain_dataloader.BertPretrainDataConfig(
      input_path=record_file, global_batch_size=batch, is_training=False, seq_length=seq_len,
      max_predictions_per_seq=preds, use_next_sentence_label=True, drop_remainder=True)
  task = model_garden.masked_lm_task(model_config, train_data=train_data)
  model_garden.set_seed(0)
  model = model_garden.build(task.build_model(), seq_len)
  prefix = model_garden.save_pretrainer(model, os.path.join(workdir, 'mg_init'), model_config)
  optimizer = _mg_optimizer('bert/pretraining', steps, warmup, lr)
  metrics = task.build_metrics()
  @tf.function
  def step_fn(inputs):
    return task.train_step(inputs, model, optimizer, metrics)

  theirs, their_batches = [], []
  for inputs in task.build_inputs(train_data).take(steps):
    for m in metrics:
      m.reset_state()
    step_fn(inputs)
    values = {m.name: float(m.result()) for m in metrics}
    theirs.append((values['lm_example_loss'], values['next_sentence_loss']))
    their_batches.append({k: v.numpy() for k, v in inputs.items()})

  # Ours: the converted checkpoint, our bert_pretraining input pipeline (no shuffling), our train step.
  params, converted = tf_reader.convert_tf_checkpoint(prefix, os.path.join(os.path.dirname(prefix),
                                                                           'bert_config.json'))
  config = ml_collections.ConfigDict({'batch_size': batch, 'dataset': {
      'train_files': record_file, 'max_seq_length': seq_len, 'max_predictions_per_seq': preds, 'shuffle_buffer': 1}})
  dataset = DATASETS.get('bert_pretraining')(config)
  ours_model = models.BertPretrainingModel(ml_collections.ConfigDict({'model': converted.to_dict()}),
                                           dataset.meta_data)
  mesh = _one_device_mesh()
  state, step = our_training(ours_model, params, recipes.optimizer_config('model_garden'),
                             recipes.schedule_config('model_garden', lr, warmup_steps=warmup), steps, mesh)
  ours, same_batches = [], True
  for s in range(steps):
    batch_np = next(dataset.train_iter)
    same_batches &= _same_batch(batch_np, their_batches[s])
    state, out = step(state, sharding.make_global_batch(batch_np, mesh))
    ours.append((float(out['mlm_loss']), float(out['nsp_loss'])))
  ours_a, theirs_a = np.array(ours), np.array(theirs)
  rel = np.abs(ours_a - theirs_a) / np.abs(theirs_a)
  # The weights after training, Model Garden's converted the same way as its initial ones.
  final_prefix = model_garden.save_pretrainer(model, os.path.join(workdir, 'mg_final'), model_config)
  final, _ = tf_reader.convert_tf_checkpoint(final_prefix, os.path.join(workdir, 'mg_final', 'bert_config.json'))
  ours_final = traverse_util.flatten_dict(jax.device_get(state.params), sep='/')
  # Not the attention key biases: softmax ignores them, so their gradient is zero up to rounding noise, which Adam
  # scales up to steps of size lr in either framework; they move at random and change no output.
  per_tensor = {k: rel_err(ours_final[k], v) for k, v in traverse_util.flatten_dict(final, sep='/').items()
                if not k.endswith('attention/key/bias')}
  params_rel = max(per_tensor.values())
  worst = max(per_tensor, key=per_tensor.get)
  unused = [k for k, v in traverse_util.flatten_dict(params, sep='/').items() if k.startswith('bert/pooler/')]
  pooler_kept = all(np.array_equal(ours_final[k], traverse_util.flatten_dict(params, sep='/')[k]) for k in unused)
  return [{'check': 'pretraining', 'case': f'masked_lm task vs ours, {steps} steps of {batch} x {seq_len}',
           'steps': steps, 'records': count, 'same_batches': bool(same_batches),
           'mlm_loss_first_last': [float(theirs_a[0, 0]), float(theirs_a[-1, 0])],
           'nsp_loss_first_last': [float(theirs_a[0, 1]), float(theirs_a[-1, 1])],
           'mlm_max_rel_diff': float(rel[:, 0].max()), 'nsp_max_rel_diff': float(rel[:, 1].max()),
           'loss_max_rel_diff': float(rel.max()), 'final_params_max_rel_err': params_rel,
           'final_params_worst_tensor': worst,
           'unused_encoder_pooler_unchanged': bool(pooler_kept),
           'pass': bool(same_batches and rel.max() <= 1e-4),
           'seconds': time.perf_counter() - t0}]


# ----------------------------------------------------------------------------------------------------------- GLUE

GLUE_TASKS = {'mrpc': ('accuracy', 'int'), 'stsb': ('pearson_spearman_corr', 'float')}


def fixed_regression_task_cls() -> type:
  """Model Garden's SentencePredictionTask with its regression loss fixed.

  Upstream bug (tf-models-official 2.20, official/nlp/tasks/sentence_prediction.py `build_losses`): for
  num_classes=1 it calls tf_keras.losses.mean_squared_error(label_ids [B], outputs [B, 1]), which broadcasts to
  [B, B] and averages (prediction_i - label_j)^2 over every pair: the gradient pulls every prediction towards the
  batch's mean label, so STS-B cannot be learned. This subclass squeezes the outputs to [B] first.
  """
  mg = model_garden.import_tasks()

  class FixedRegression(mg.sentence_prediction.SentencePredictionTask):

    def build_losses(self, labels, model_outputs, aux_losses=None):
      if self.task_config.model.num_classes == 1:
        model_outputs = mg.tf.squeeze(model_outputs, axis=-1)
      return super().build_losses(labels, model_outputs, aux_losses)

  return FixedRegression


def densify_gradients(optimizer: Any) -> Any:
  """Makes `optimizer.apply_gradients` turn sparse gradients (tf.IndexedSlices) dense before it clips them.

  Upstream behaviour this removes: in fine-tuning, the word-embedding gradient reaches AdamWeightDecay as
  IndexedSlices with one row per token occurrence, and tf.clip_by_global_norm takes the norm of those rows, so a
  token seen n times counts n squared row norms instead of the squared norm of their sum: the norm it clips by is
  not the gradient's. (In pretraining the embedding is also the MLM output layer, so its gradient is dense.) With
  dense gradients the update is the same math as ours; without, the clipping factor differs whenever it acts.
  """
  mg = model_garden.import_tasks()
  apply = optimizer.apply_gradients

  def dense_apply(grads_and_vars, *args, **kwargs):
    return apply([(g if g is None else mg.tf.convert_to_tensor(g), v) for g, v in grads_and_vars], *args, **kwargs)

  optimizer.apply_gradients = dense_apply
  return optimizer


def mg_sentence_prediction(model_config: Any, glue_task: str, records_dir: str, batch: int, seq_len: int,
                           init_checkpoint: str, fixed: bool, training: bool = False, seed: Optional[int] = None,
                           init_cls_pooler: bool = True) -> Any:
  """Model Garden's sentence_prediction task on our GLUE records (the official classifier writer's)."""
  mg = model_garden.import_tasks()
  metric_type, label_type = GLUE_TASKS[glue_task]
  data = dict(seq_length=seq_len, label_type=label_type)
  train_data = mg.sentence_prediction_dataloader.SentencePredictionDataConfig(
      input_path=os.path.join(records_dir, f'{glue_task}_train.tf_record'), global_batch_size=batch,
      is_training=training, drop_remainder=True, seed=seed, **data)
  validation_data = mg.sentence_prediction_dataloader.SentencePredictionDataConfig(
      input_path=os.path.join(records_dir, f'{glue_task}_eval.tf_record'), global_batch_size=batch,
      is_training=False, drop_remainder=False, **data)
  task = model_garden.sentence_prediction_task(
      model_config, num_classes=1 if label_type == 'float' else 2, init_checkpoint=init_checkpoint,
      init_cls_pooler=init_cls_pooler, metric_type=metric_type, train_data=train_data,
      validation_data=validation_data)
  if fixed and label_type == 'float':
    task = fixed_regression_task_cls()(task.task_config)
  return task


def mg_dev_metric(task: Any, model: Any) -> Tuple[float, np.ndarray]:
  """(the task's dev metric as Model Garden reports it, dev outputs) from its validation_step and aggregation."""
  metrics = task.build_metrics()
  state = None
  outputs = []
  for inputs in task.build_inputs(task.task_config.validation_data):
    logs = task.validation_step(inputs, model, metrics)
    state = task.aggregate_logs(state, {k: [v] for k, v in logs.items()})
    outputs.append(logs['sentence_prediction'].numpy())
  if task.metric_type == 'accuracy':
    value = float([m for m in metrics if m.name == 'cls_accuracy'][0].result())
  else:
    value = float(task.reduce_aggregated_logs(state)[task.metric_type])
  return value, np.concatenate(outputs)


def our_dev_metric(glue_task: str, metrics: Dict[str, float]) -> float:
  """Ours, in Model Garden's terms: accuracy, or (Pearson + Spearman) / 2 for pearson_spearman_corr."""
  if GLUE_TASKS[glue_task][0] == 'accuracy':
    return metrics['validation/accuracy']
  return (metrics['validation/pearson'] + metrics['validation/spearman']) / 2


def glue_records(directory: str, glue_task: str, vocab: str, seq_len: int, n_train: int, n_dev: int) -> str:
  """Our prepare path (the official classifier writer) on a data_utils task folder; returns the records dir."""
  from tests.bert import data_utils
  out_dir, _ = data_utils.make_glue_records(directory, glue_task, vocab_path=vocab, max_seq_length=seq_len,
                                            n_train=n_train, n_dev=n_dev, n_test=8)
  return out_dir


def mg_pretrainer_checkpoint(directory: str, model_config: Any, seed: int = 0) -> Tuple[str, str]:
  """(checkpoint prefix, our converted params dir) of a fresh BertPretrainerV2, the start of every GLUE run."""
  from core import params_io
  from projects.bert.checkpoints import tf_reader
  model_garden.set_seed(seed)
  pretrainer = model_garden.build(model_garden.masked_lm_task(model_config).build_model())
  prefix = model_garden.save_pretrainer(pretrainer, os.path.join(directory, 'mg'), model_config)
  params, converted = tf_reader.convert_tf_checkpoint(prefix, os.path.join(directory, 'mg', 'bert_config.json'))
  params_io.save_params(os.path.join(directory, 'converted'), params, metadata={'model': converted.to_dict()})
  return prefix, os.path.join(directory, 'converted')


def pooler_started_as(pooler: str, converted_dir: str, ours: np.ndarray, theirs: np.ndarray) -> bool:
  """Whether both sides' classifier poolers started where `pooler` says: 'init_cls_pooler' from the checkpoint's
  nsp_head/pooler_dense, 'fresh' from neither it nor the encoder's pooler (our loader left its own fresh one)."""
  from core import params_io
  source = params_io.read_pretrained(converted_dir)[0]
  nsp, encoder = source['nsp_head']['pooler_dense']['kernel'], source['bert']['pooler']['kernel']
  if pooler == 'init_cls_pooler':
    return np.array_equal(ours, nsp) and np.array_equal(theirs, nsp)
  return not any(np.array_equal(a, b) for a in (ours, theirs) for b in (nsp, encoder))


def check_glue_exact(workdir: str, vocab: str, steps: int = 50, batch: int = 16, seq_len: int = 32,
                     lr: float = 2e-3, warmup: int = 5, n_dev: int = 128, as_shipped: bool = True
                     ) -> List[Dict[str, Any]]:
  """Per-step losses and the dev metric, Model Garden's sentence_prediction against ours, no dropout, no
  shuffling, both from the same converted checkpoint, with init_cls_pooler and with the default (a fresh pooler on
  both sides: Model Garden's draw copied into ours, as the fresh output layer is; see the module doc). Model Garden runs
  with the two fixes of `densify_gradients` and `fixed_regression_task_cls`, and (`as_shipped`) without them."""
  from core import evaluation
  from core.registry import DATASETS
  from core.setup import example_batch_from_meta
  from core.train_step import make_eval_step
  from projects.bert import datasets  # noqa: F401  (registers the builders)
  from projects.bert.tasks import glue_metrics
  from projects.bert.models import bert_models as models
  from projects.bert.checkpoints import weights
  from projects.bert.tasks import glue as glue_tasks
  from tests.bert import data_utils
  mg = model_garden.import_tasks()
  tf = mg.tf
  model_config = tiny_model_config(vocab_size=len(data_utils.read_vocab(vocab)), max_position_embeddings=seq_len)
  prefix, converted_dir = mg_pretrainer_checkpoint(os.path.join(workdir, 'init'), model_config)
  rows = []
  for glue_task in GLUE_TASKS:
    records_dir = glue_records(os.path.join(workdir, glue_task), glue_task, vocab, seq_len, steps * batch, n_dev)
    # Ours first: its classifier head (random in both) is then copied into Model Garden's.
    t0 = time.perf_counter()
    config = ml_collections.ConfigDict({'batch_size': batch, 'eval_batch_size': batch, 'model': dict(model_config),
                                        'dataset': {'task': glue_task, 'data_dir': records_dir, 'shuffle_buffer': 1,
                                                    'max_seq_length': seq_len}})
    dataset = DATASETS.get('bert_glue')(config)
    task_spec = glue_tasks.get_task(glue_task)
    model_cls = models.BertRegressionModel if task_spec.is_regression else models.BertClassificationModel
    ours_model = model_cls(config, dataset.meta_data)
    fresh = jax.device_get(ours_model.init_params(jax.random.PRNGKey(0), example_batch_from_meta(dataset.meta_data)))
    for pooler in ('init_cls_pooler', 'fresh'):  # Model Garden's option, then its default (a new pooler)
      params, _ = weights.load_weights(fresh, converted_dir, model_config=config.model, keep=('bert',),
                                       init_cls_pooler=pooler == 'init_cls_pooler', fresh_pooler=pooler == 'fresh')
      loaded_pooler = np.array(params['bert']['pooler']['kernel'])
      head = 'regressor' if task_spec.is_regression else 'classifier'
      for patched in ((False, True) if as_shipped else (True,)):  # as shipped, then with the documented fixes
        task = mg_sentence_prediction(model_config, glue_task, records_dir, batch, seq_len, prefix, fixed=patched,
                                      init_cls_pooler=pooler == 'init_cls_pooler')
        model_garden.set_seed(1)
        model = model_garden.build(task.build_model(), seq_len)
        task.initialize(model)
        model_garden.set_dropout(model, 0.0)
        params[head] = dict(zip(('kernel', 'bias'), model.classifier.out_proj.get_weights()))
        their_pooler = model.classifier.dense.get_weights()
        if pooler == 'fresh':  # both start a new pooler, each from its own random draw: share Model Garden's
          params['bert'] = {**params['bert'], 'pooler': dict(zip(('kernel', 'bias'), their_pooler))}
        optimizer = _mg_optimizer('bert/sentence_prediction', steps, warmup, lr)
        if patched:
          densify_gradients(optimizer)
        step_fn = tf.function(functools.partial(task.train_step, model=model, optimizer=optimizer))
        theirs, their_batches = [], []
        for inputs in task.build_inputs(task.task_config.train_data).take(steps):
          theirs.append(float(step_fn(inputs)['loss']))
          their_batches.append({k: v.numpy() for k, v in inputs.items()})
        their_metric, their_outputs = mg_dev_metric(task, model)

        mesh = _one_device_mesh()
        state, step = our_training(ours_model, params, recipes.optimizer_config('model_garden'),
                                   recipes.schedule_config('model_garden', lr, warmup_steps=warmup), steps, mesh)
        train_iter = DATASETS.get('bert_glue')(config).train_iter  # from the start for each comparison
        ours, same_batches = [], True
        for s in range(steps):
          batch_np = next(train_iter)
          same_batches &= _same_batch(batch_np, their_batches[s])
          state, out = step(state, sharding.make_global_batch(batch_np, mesh))
          ours.append(float(out['loss']))
        # The glue evaluator's pass: the model's outputs and the task's official metrics on the host.
        eval_step = make_eval_step(ours_model, sharding.replicated(mesh), mesh, with_outputs=True)
        _, gathered = evaluation.evaluate_split(eval_step, state.params, dataset.valid_iter('validation'), mesh)
        our_outputs = np.asarray(gathered['outputs'])
        our_metrics = {f'validation/{k}': v for k, v in glue_metrics.compute_metrics(
            glue_task, our_outputs, gathered['label_ids']).items()}
        ours_a, theirs_a = np.array(ours), np.array(theirs)
        loss_rel = float((np.abs(ours_a - theirs_a) / np.abs(theirs_a)).max())
        ours_metric = our_dev_metric(glue_task, our_metrics)
        outputs_rel = rel_err(our_outputs.reshape(their_outputs.shape), their_outputs)
        fixes = ('dense embedding gradients' + (', MSE on [B] outputs' if task_spec.is_regression else '')
                 if patched else 'as shipped')
        # Where each side's pooler started: the checkpoint's NSP pooler_dense (init_cls_pooler) on both, or (fresh)
        # neither the checkpoint's encoder pooler nor its NSP head on either side.
        pooler_ok = bool(pooler_started_as(pooler, converted_dir, loaded_pooler, their_pooler[0]))
        rows.append({'check': 'glue_exact', 'case': f'{glue_task}, {pooler} pooler: sentence_prediction ({fixes}) '
                     'vs ours', 'task': glue_task, 'pooler': pooler, 'model_garden_patched': patched, 'steps': steps,
                     'pooler_as_expected': pooler_ok,
                     'same_batches': bool(same_batches),
                     'loss_first_last': [float(theirs_a[0]), float(theirs_a[-1])],
                     'ours_loss_first_last': [float(ours_a[0]), float(ours_a[-1])],
                     'loss_max_rel_diff': loss_rel, 'dev_metric': GLUE_TASKS[glue_task][0],
                     'dev_metric_model_garden': their_metric, 'dev_metric_ours': ours_metric,
                     'dev_outputs_max_rel_diff': outputs_rel,
                     'pass': bool(same_batches and loss_rel <= 1e-4 and abs(ours_metric - their_metric) <= 1e-4
                                  and pooler_ok)
                     if patched else None,
                     'seconds': time.perf_counter() - t0})
  return rows


# Peak learning rate per task for the 5-seed runs: where a 96-step run of the tiny model is neither saturated (every
# seed at the same accuracy) nor still at chance.
SEEDS_LR = {'mrpc': 3e-4, 'stsb': 1e-3}


def check_glue_seeds(workdir: str, vocab: str, seeds: int = 5, n_train: int = 1024, n_dev: int = 512,
                     seq_len: int = 32, batch: int = 32, epochs: int = 3, dropout: float = 0.1
                     ) -> List[Dict[str, Any]]:
  """Whole fine-tuning runs with dropout and shuffling: Model Garden's trainer and ours, the final dev metric over
  `seeds` seeds (mean and std), from the same converted BertPretrainerV2 checkpoint with init_cls_pooler.

  Model Garden: official.core.train_lib.run_experiment('train_and_eval') on the sentence_prediction task with the
  bert/sentence_prediction experiment's optimizer (lr, 10% warm-up and decay over the run set as its yaml files do),
  tf_keras.utils.set_random_seed(seed) and train_data.seed=seed. Ours: core.app.train_and_evaluate on
  configs/glue.py (the model_garden recipe) with rng_seed and dataset.seed = seed. Both evaluate once, at the end
  (the final score). Model Garden also runs with `densify_gradients` (and, for STS-B, with its regression loss
  fixed), which separates what its two upstream problems do from what differs between the trainers.
  """
  import math

  from core import app
  from projects.bert.configs import glue as glue_configs
  from tests.bert import data_utils
  mg = model_garden.import_tasks()
  tf = mg.tf
  model_config = tiny_model_config(vocab_size=len(data_utils.read_vocab(vocab)), max_position_embeddings=seq_len,
                                   dropout=dropout)
  prefix, converted_dir = mg_pretrainer_checkpoint(os.path.join(workdir, 'init'), model_config)
  steps = math.ceil(epochs * n_train / batch)
  warmup = round(0.1 * steps)
  rows = []
  for glue_task in GLUE_TASKS:
    records_dir = glue_records(os.path.join(workdir, glue_task), glue_task, vocab, seq_len, n_train, n_dev)
    lr = SEEDS_LR[glue_task]
    sides: Dict[str, List[float]] = {}
    seconds: Dict[str, float] = {}
    # (name, regression loss fixed, dense embedding gradients)
    variants = ([('model_garden', False, False), ('model_garden_mse_fixed', True, False),
                 ('model_garden_mse_fixed_dense_grads', True, True)] if glue_task == 'stsb' else
                [('model_garden', False, False), ('model_garden_dense_grads', False, True)])
    for seed in range(seeds):
      for name, fixed, dense in variants:
        t0 = time.perf_counter()
        task = mg_sentence_prediction(model_config, glue_task, records_dir, batch, seq_len, prefix, fixed,
                                      training=True, seed=seed)
        if dense:
          create = task.create_optimizer
          task.create_optimizer = lambda *a, create=create, **k: densify_gradients(create(*a, **k))
        experiment = mg.exp_factory.get_exp_config('bert/sentence_prediction')
        experiment.task = task.task_config
        experiment.trainer.optimizer_config = mg_optimizer_config('bert/sentence_prediction', steps, warmup, lr=lr)
        experiment.trainer.train_steps = steps
        experiment.trainer.steps_per_loop = steps
        experiment.trainer.validation_interval = steps
        experiment.trainer.checkpoint_interval = steps
        experiment.trainer.summary_interval = steps
        model_garden.set_seed(seed)
        model_dir = os.path.join(workdir, 'runs', f'{glue_task}_{name}_{seed}')
        _, logs = mg_train_lib().run_experiment(distribution_strategy=tf.distribute.get_strategy(), task=task,
                                                mode='train_and_eval', params=experiment, model_dir=model_dir,
                                                run_post_eval=True)
        key = 'cls_accuracy' if GLUE_TASKS[glue_task][0] == 'accuracy' else GLUE_TASKS[glue_task][0]
        sides.setdefault(name, []).append(float(logs[key]))
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0

      t0 = time.perf_counter()
      config = glue_configs.get_config(f'{glue_task},tiny')
      config.model = ml_collections.ConfigDict(dict(model_config))
      config.rng_seed = seed
      config.dataset.data_dir = records_dir
      config.dataset.max_seq_length = seq_len
      config.dataset.seed = seed
      config.dataset.train_length_buckets = False  # Model Garden's batches are padded random mixes: compare like that
      config.batch_size = batch
      config.num_epochs = float(epochs)
      config.schedule.base_lr = lr
      config.init_from = converted_dir
      config.init_cls_pooler = True
      config.evals.glue.update(every=steps, save_best=False)  # one evaluation, at the end: the final score
      config.log_every = steps
      config.checkpoint_every = steps
      config.checkpoint.async_save = False
      results = app.train_and_evaluate(config, os.path.join(workdir, 'runs', f'{glue_task}_ours_{seed}'))
      sides.setdefault('ours', []).append(our_dev_metric(glue_task, results['glue']['final']))
      seconds['ours'] = seconds.get('ours', 0.0) + time.perf_counter() - t0
    for name, values in sides.items():
      rows.append({'check': 'glue_seeds', 'case': f'{glue_task}: {name}', 'task': glue_task, 'side': name,
                   'dev_metric': GLUE_TASKS[glue_task][0], 'seeds': seeds, 'values': values, 'peak_lr': lr,
                   'mean': float(np.mean(values)), 'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                   'train_steps': steps, 'n_train': n_train, 'n_dev': n_dev, 'seconds': seconds[name]})
  return rows


def mg_train_lib() -> Any:
  model_garden.import_tasks()
  from official.core import train_lib
  return train_lib


# ------------------------------------------------------------------------------------------------------------ CLI


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--checks', default=','.join(CHECKS), help=f'Comma-separated subset of {CHECKS}.')
  parser.add_argument('--quick', action='store_true', help='Smaller runs (what the tests run).')
  parser.add_argument('--seeds', type=int, default=5, help='glue_seeds: seeds per task and side.')
  parser.add_argument('--output', default='', help='JSON file to write (benchmarks/results/fidelity_cpu.json).')
  args = parser.parse_args(argv)
  checks = [c for c in args.checks.split(',') if c]
  unknown = [c for c in checks if c not in CHECKS]
  if unknown:
    parser.error(f'Unknown checks {unknown}; choose from {CHECKS}.')
  _two_logical_cpus()
  t0 = time.perf_counter()
  rows: List[Dict[str, Any]] = []
  workdir = tempfile.mkdtemp(prefix='fidelity_')
  if 'optimizer' in checks:
    rows += check_optimizer()
  if 'pretraining' in checks:
    size = dict(batch=4, seq_len=32, preds=5) if args.quick else {}
    rows += check_pretraining(os.path.join(workdir, 'pretraining'), **size)
  if 'glue_exact' in checks or 'glue_seeds' in checks:
    from tests.bert import data_utils
    vocab = data_utils.write_vocab(os.path.join(workdir, 'vocab.txt'))
  if 'glue_exact' in checks:
    size = dict(batch=8, n_dev=64, as_shipped=False) if args.quick else {}
    rows += check_glue_exact(os.path.join(workdir, 'glue_exact'), vocab, **size)
  if 'glue_seeds' in checks:
    rows += check_glue_seeds(os.path.join(workdir, 'glue_seeds'), vocab, seeds=args.seeds)
  payload = {'environment': common.environment(), 'command': ' '.join([os.path.basename(__file__)] + list(
      argv if argv is not None else sys.argv[1:])), 'rows': rows, 'notes': NOTES,
      'seconds': time.perf_counter() - t0, 'pass': all(r.get('pass') is not False for r in rows)}
  for check in checks:
    selected = [dict(r, mean_std=f"{r['mean']:.3f} ± {r['std']:.3f}", values_3f=' '.join(
        f'{v:.3f}' for v in r['values'])) if 'mean' in r else r for r in rows if r['check'] == check]
    if selected:
      print(f'\n{check}\n' + common.format_table(selected, TABLE_COLUMNS[check]))
  if args.output:
    common.write_json(args.output, payload)
  return payload


def _two_logical_cpus() -> None:
  """Splits TF's CPU into two logical devices (MirroredStrategy's replicas); must run before TF starts."""
  mg = model_garden.import_tasks()
  cpus = mg.tf.config.list_physical_devices('CPU')
  mg.tf.config.set_logical_device_configuration(
      cpus[0], [mg.tf.config.LogicalDeviceConfiguration(), mg.tf.config.LogicalDeviceConfiguration()])


if __name__ == '__main__':
  result = main()
  sys.exit(0 if result['pass'] else 1)
