r"""Training recipes: the optimizer, schedule, model and data fields that make a run follow a reference codebase.

Chosen by a config variant: `pretrain.py:base,bert_paper`, `glue.py:mrpc,bert_paper`, `pretrain.py:S,scenic`;
`model_garden` is the default.

`model_garden` reproduces TF Model Garden (tensorflow/models `official/`, tf-models-official 2.20), what this
project's forward pass is tested against. Field by field, with the file each value comes from:

  optimizer.name='adamw', bias_correction='keras'
      nlp/configs/{pretraining,finetuning}_experiments.py: optimizer type 'adamw' -> modeling/optimization/
      optimizer_factory.py -> legacy_adamw.AdamWeightDecay, a tf_keras.optimizers.legacy.Adam: bias correction
      folded into the step size (lr x sqrt(1 - b2^t) / (1 - b1^t)), eps added to the uncorrected sqrt(v)
  optimizer.b1=0.9, b2=0.999, eps=1e-7
      modeling/optimization/configs/optimizer_config.py AdamWeightDecayConfig defaults (the experiments keep them)
  optimizer.weight_decay=0.01, no_decay_patterns = LayerNorm / layer_norm / bias
      the experiments' weight_decay_rate and exclude_from_weight_decay (applied as lr x rate x param, decoupled)
  optimizer.grad_clip_norm=1.0
      AdamWeightDecayConfig.gradient_clip_norm; AdamWeightDecay.apply_gradients clips with tf.clip_by_global_norm.
      It clips each replica's gradient before the all-reduce; on one replica that is global clipping, which is
      what grad_clip_scope='global' does on any number of devices. grad_clip_scope='per_replica_sum' reproduces
      Model Garden's multi-replica pretraining (nlp/tasks/masked_lm.py: scale_loss=False, the replicas' clipped
      gradients are summed), 'per_replica_mean' its fine-tuning (core/base_task.py train_step divides the loss by
      the number of replicas). Both make results depend on the device count, so they are not the default.
  schedule.decay='linear', decay_from='step_0', end_lr=0
      learning_rate 'polynomial' (power 1, end_learning_rate 0, decay_steps = train_steps):
      lr_schedule.PolynomialDecayWithOffset over all steps from step 0
  schedule.warmup='polynomial', warmup_power=1
      warmup 'polynomial' -> lr_schedule.PolynomialWarmUp: decay(W) x (max(step, 1) / W); with a 10% warm-up the
      rate peaks at 0.9 x base_lr when warm-up ends
  model.hidden_act='gelu_tanh'
      nlp/configs/encoders.py BertEncoderConfig.hidden_activation 'gelu' -> modeling/activations/gelu.py
      (tf_keras gelu with approximate=True)
  model.nsp_head='classification_head'
      nlp/tasks/masked_lm.py + configs/experiments/wiki_books_pretrain.yaml: BertPretrainerV2 with cls_heads
      [{name: next_sentence, inner_dim: 768, activation: tanh, dropout_rate: 0.1, num_classes: 2}]
  pretraining: batch_size=512, max_seq_length=512, max_predictions_per_seq=76, num_train_steps=1_000_000,
      base_lr=1e-4, warmup_steps=10_000
      configs/experiments/wiki_books_pretrain.yaml (one phase at S=512)
  GLUE: batch_size=32, num_epochs=3, base_lr=3e-5, warmup_fraction=0.1, max_seq_length=128, init_cls_pooler=False
      configs/experiments/glue_mnli_matched.yaml (global_batch_size 32, 3 epochs, warmup_steps ~10% of
      train_steps, seq_length 128), finetuning_experiments.py bert/sentence_prediction (initial_learning_rate
      3e-5), tasks/sentence_prediction.py (init_cls_pooler default False)

`bert_paper` reproduces the BERT paper as google-research/bert runs it (optimization.py, modeling.py,
run_pretraining.py, run_classifier.py):

  optimizer.name='adamw', bias_correction='none', eps=1e-6, b1=0.9, b2=0.999, weight_decay=0.01 (not on
      LayerNorm / layer_norm / bias), grad_clip_norm=1.0 global
      optimization.py create_optimizer + AdamWeightDecayOptimizer (m / (sqrt(v) + eps), no bias correction;
      tf.clip_by_global_norm(grads, 1.0)). (On TPUs its CrossShardOptimizer sums gradients clipped per shard:
      grad_clip_scope='per_replica_sum'.)
  schedule.decay='linear', decay_from='step_0', warmup='linear', end_lr=0
      optimization.py: polynomial_decay(init_lr, global_step, num_train_steps, power=1) overridden during warm-up
      by init_lr x global_step / num_warmup_steps (0 at step 0; at the end of a 10% warm-up the rate drops from
      ~base_lr to 0.9 x base_lr)
  model.hidden_act='gelu_tanh', nsp_head='encoder_pooler'
      modeling.py gelu (the tanh approximation); run_pretraining.py get_next_sentence_output (one dense layer,
      cls/seq_relationship, on the pooled output)
  pretraining: batch_size=256, phase 1 max_seq_length=128 / max_predictions_per_seq=20 for 900k steps, phase 2
      (`,phase2`) 512 / 80 for 100k steps starting from phase 1, base_lr=1e-4, warmup_steps=10_000
      the paper (section A.2: 90% of the steps at 128, the rest at 512; batch 256; lr 1e-4, 10k warm-up) and
      the README's run_pretraining.py flags
  GLUE: batch_size=32, num_epochs=3, base_lr=2e-5, warmup_fraction=0.1
      the paper (section A.3: batch 32, 3 epochs, the best of {5e-5, 4e-5, 3e-5, 2e-5} on dev per task: override
      schedule.base_lr) and run_classifier.py (warmup_proportion 0.1)
  GLUE classifier_pooler='encoder'
      run_classifier.py create_model: model.get_pooled_output() (the encoder's pooler, which NSP trained), then
      a fresh output layer; while Model Garden (classifier_pooler='fresh') builds BertClassifier(
      use_encoder_pooler=False) in tasks/sentence_prediction.py: its own dense + tanh on [CLS], TruncatedNormal(0.02)
      (models/bert_classifier.py), the encoder's pooler unused unless init_cls_pooler

`scenic` reproduces Scenic BERT (google-research/scenic `scenic/projects/baselines/bert`; S below is
configs/bert_pretraining_config.py, L layers.py, M model.py, T trainer.py, U train_utils.py, G
configs/glue/tasks/bert_mrpc_config.py); sizes Ti/S/B/L are `models.architecture.SCENIC_SIZES` (S lines 26-30):

  optimizer.name='adamw' with weight_decay=0, bias_correction='standard', b1=0.9, b2=0.999, eps=1e-8
      S lines 131-136: optax_name 'scale_by_adam' (b1 0.9, b2 0.999; optax's default eps 1e-8, bias-corrected),
      no weight-decay rule (scenic/train_lib/optax.py adds decay only for config.optimizer.weight_decay)
  optimizer.grad_clip_norm=1.0, grad_clip_scope='per_replica_pmean'
      S lines 145-147 (max_grad_norm 1.0); T lines 109-114: each device's gradient clipped (jax clip_grads), then
      lax.pmean: on one device global clipping
  schedule.warmup='linear', decay='linear', decay_from='warmup_end', end_lr=0, base_lr=1e-4, warmup_steps=10_000
      S lines 153-162: 'constant * linear_warmup * linear_decay' = base_lr x min(1, step / W) x
      max(0, 1 - (step - W) / (T - W)) (scenic/train_lib/lr_schedules.py compound_lr_scheduler)
  model: pre_norm=True, embedding_size (Ti/S 128), nsp_head='scenic_head', hidden_act='gelu_tanh',
      layer_norm_eps=1e-6, dropout 0.1
      S lines 113-127 (pre_norm True; head.hidden_size = HIDDEN_SIZE); M lines 72-79 (ClassificationHead with
      hidden_sizes (H, H), tanh); L lines 164-171 (Stem: LayerNorm at the embedding width, then
      embedding_projection), 199 (flax nn.gelu: approximate=True), 250-320 (flax nn.LayerNorm: epsilon 1e-6;
      pre-LN blocks, encoder_norm)
  pretraining: batch_size=512, max_seq_length=512, max_predictions_per_seq=76, num_train_steps=1_000_000,
      dataset.shuffle_buffer=100, rng_seed=42, few-shot every 50_000 steps
      S lines 41, 47-48, 56, 139, 142, 150-151 (glue_fewshot every 50k: sst2, mnli matched / mismatched)
  GLUE: batch_size=32, num_epochs=3, base_lr=3e-5, warmup_fraction=0.1, classifier_pooler='encoder'
      G lines 39, 86-101 (MRPC: 342 steps = 3 epochs, 34 warm-up steps, 3e-5, the same optimizer); Scenic's
      classifier restores both NSP head layers (G line 75): ours restores the first (the pooler) and starts the
      second fresh, as our classifier is one dense on the pooled output

Not reproduced: Scenic initialises attention and MLP kernels xavier_uniform (MLP biases normal(1e-6)) where we
draw truncated normal 0.02; its masked-LM head's activation is always flax's tanh GELU (ours: hidden_act, which
the recipe sets to the same).
"""

from __future__ import annotations

from typing import Any, Dict

import ml_collections

RECIPES = ('model_garden', 'bert_paper', 'scenic')
DEFAULT_RECIPE = 'model_garden'
# LayerNorm parameters and biases: both references exclude 'LayerNorm', 'layer_norm' and 'bias' (re.search on TF
# variable names); our LayerNorm parameters are named scale/bias under *layer_norm*.
NO_DECAY = (r'LayerNorm', r'layer_norm', r'bias$', r'(^|/)scale$')


def check(recipe: str) -> str:
  """`recipe` when it is one of RECIPES; else a ValueError naming them."""
  if recipe not in RECIPES:
    raise ValueError(f'Unknown recipe {recipe!r}; use one of {RECIPES}.')
  return recipe


# The meaning of each `config.optimizer` field (what --print_config prints beside it).
OPTIMIZER_DOCS: Dict[str, str] = {
    'optimizer.name': "'adamw' (its Adam form: bias_correction), 'lamb' or 'sgd'",
    'optimizer.weight_decay': 'decoupled weight decay (not on LayerNorm or biases)',
    'optimizer.b1': 'Adam beta1',
    'optimizer.b2': 'Adam beta2',
    'optimizer.eps': 'Adam epsilon',
    'optimizer.grad_clip_norm': 'global-norm gradient clipping (0: none)',
    'optimizer.grad_clip_scope': "'global' (norm of the mean gradient), Model Garden's 'per_replica_sum' / '_mean' "
                                 "or Scenic's 'per_replica_pmean' (clip each replica's, then average)",
    'optimizer.no_decay_patterns': 'regexes of the parameter names without weight decay (LayerNorm, biases)',
    'optimizer.bias_correction': "'keras' (Model Garden's legacy Adam), 'none' (original BERT) or 'standard'",
}


def optimizer_config(recipe: str) -> ml_collections.ConfigDict:
  """`config.optimizer` of the recipe (see the module docstring for the sources)."""
  fields: Dict[str, Any] = {'name': 'adamw', 'b1': 0.9, 'b2': 0.999, 'weight_decay': 0.01,
                            'no_decay_patterns': NO_DECAY, 'grad_clip_norm': 1.0, 'grad_clip_scope': 'global'}
  if check(recipe) == 'model_garden':
    fields.update(bias_correction='keras', eps=1e-7)
  elif recipe == 'scenic':
    fields.update(bias_correction='standard', eps=1e-8, weight_decay=0.0, grad_clip_scope='per_replica_pmean')
  else:
    fields.update(bias_correction='none', eps=1e-6)
  return ml_collections.ConfigDict(fields)


# The meaning of each `config.schedule` field.
SCHEDULE_DOCS: Dict[str, str] = {
    'schedule.base_lr': 'peak learning rate',
    'schedule.warmup_steps': 'warm-up steps',
    'schedule.warmup': "'linear' (from 0, BERT paper) or 'polynomial' (Model Garden's PolynomialWarmUp)",
    'schedule.warmup_power': "power of the 'polynomial' warm-up",
    'schedule.decay_from': "'step_0' (decay over all steps, both references) or 'warmup_end'",
    'schedule.power': 'power of the polynomial decay (1: linear)',
    'schedule.warmup_fraction': 'warm-up as a fraction of the training steps (when warmup_steps is 0 or absent)',
    'schedule.decay': "after warm-up: 'linear', 'polynomial', 'cosine' or 'constant'",
    'schedule.end_lr': 'learning rate at the last step',
}


def schedule_config(recipe: str, base_lr: float, **warmup: Any) -> ml_collections.ConfigDict:
  """`config.schedule`: linear decay to 0 over all steps from step 0 (scenic: from the end of warm-up), the recipe's
  warm-up (warmup_steps or warmup_fraction in `warmup`)."""
  fields: Dict[str, Any] = {'base_lr': base_lr, 'decay': 'linear', 'decay_from': 'step_0', 'end_lr': 0.0,
                            'power': 1.0, 'warmup_power': 1.0, **warmup}
  fields['warmup'] = 'polynomial' if check(recipe) == 'model_garden' else 'linear'
  if recipe == 'scenic':
    fields['decay_from'] = 'warmup_end'
  return ml_collections.ConfigDict(fields)


def model_fields(recipe: str) -> Dict[str, Any]:
  """The `config.model` fields the recipe sets: the activation and the next-sentence head (scenic: also pre-LN
  and flax's LayerNorm epsilon; the embedding width is the size's, `architecture.SCENIC_SIZES`)."""
  if check(recipe) == 'scenic':
    return {'hidden_act': 'gelu_tanh', 'nsp_head': 'scenic_head', 'pre_norm': True, 'layer_norm_eps': 1e-6}
  nsp_head = 'classification_head' if recipe == 'model_garden' else 'encoder_pooler'
  return {'hidden_act': 'gelu_tanh', 'nsp_head': nsp_head}


# GLUE: where the classifier's pooler (dense + tanh on [CLS]) starts when fine-tuning from init_from: 'encoder' =
# the checkpoint's pooler, 'fresh' = newly initialised (see the module docstring).
CLASSIFIER_POOLER = {'model_garden': 'fresh', 'bert_paper': 'encoder', 'scenic': 'encoder'}


def scenic_pretraining(size: str) -> Dict[str, Any]:
  """Every field `pretrain.py:SIZE,scenic` sets, for Scenic's size Ti, S, B or L (see the module docstring):
  {'model': config.model, 'optimizer', 'schedule' (ConfigDicts), 'batch_size', 'max_seq_length',
  'max_predictions_per_seq', 'num_train_steps', 'shuffle_buffer', 'rng_seed', 'fewshot_every'}."""
  from projects.bert.models import architecture

  batch, seq_len, preds, steps, base_lr, warmup = PRETRAINING['scenic']
  return {'model': architecture.scenic_model_config(size, **model_fields('scenic')),
          'optimizer': optimizer_config('scenic'), 'schedule': schedule_config('scenic', base_lr, warmup_steps=warmup),
          'batch_size': batch, 'max_seq_length': seq_len, 'max_predictions_per_seq': preds, 'num_train_steps': steps,
          'shuffle_buffer': 100, 'rng_seed': 42, 'fewshot_every': 50_000}


# Pretraining: (batch_size, max_seq_length, max_predictions_per_seq, num_train_steps, base_lr, warmup_steps).
PRETRAINING = {
    'model_garden': (512, 512, 76, 1_000_000, 1e-4, 10_000),
    'bert_paper': (256, 128, 20, 900_000, 1e-4, 10_000),
    'bert_paper_phase2': (256, 512, 80, 100_000, 1e-4, 10_000),
    'scenic': (512, 512, 76, 1_000_000, 1e-4, 10_000),
}
# GLUE fine-tuning: (batch_size, num_epochs, base_lr, warmup_fraction).
GLUE = {
    'model_garden': (32, 3.0, 3e-5, 0.1),
    'bert_paper': (32, 3.0, 2e-5, 0.1),
    'scenic': (32, 3.0, 3e-5, 0.1),
}
