"""The training recipes (configs/recipes.py) as the pretraining and GLUE configs apply them."""

import pytest

from core import optimizers
from projects.bert.configs import glue, pretrain, recipes


def test_model_garden_is_the_default_pretraining_recipe():
  config = pretrain.get_config('base')
  assert config.recipe == 'model_garden'
  assert (config.batch_size, config.dataset.max_seq_length, config.dataset.max_predictions_per_seq,
          config.num_train_steps) == (512, 512, 76, 1_000_000)
  assert config.schedule.base_lr == 1e-4 and config.schedule.warmup_steps == 10_000
  assert (config.schedule.warmup, config.schedule.decay_from) == ('polynomial', 'step_0')
  assert (config.optimizer.bias_correction, config.optimizer.eps, config.optimizer.grad_clip_norm) == ('keras', 1e-7,
                                                                                                       1.0)
  assert (config.model.hidden_act, config.model.nsp_head) == ('gelu_tanh', 'classification_head')
  lr = optimizers.learning_rate_schedule(config.schedule, config.num_train_steps)
  assert float(lr(10_000)) == pytest.approx(0.99 * 1e-4) and float(lr(0)) == pytest.approx(0.99e-4 / 10_000)


def test_bert_paper_pretraining_has_two_phases():
  one, two = pretrain.get_config('base,bert_paper'), pretrain.get_config('base,bert_paper,phase2')
  assert (one.batch_size, one.dataset.max_seq_length, one.dataset.max_predictions_per_seq) == (256, 128, 20)
  assert (two.dataset.max_seq_length, two.dataset.max_predictions_per_seq) == (512, 80)
  assert one.num_train_steps + two.num_train_steps == 1_000_000
  assert (one.optimizer.bias_correction, one.optimizer.eps, one.schedule.warmup) == ('none', 1e-6, 'linear')
  assert one.model.nsp_head == 'encoder_pooler'
  lr = optimizers.learning_rate_schedule(one.schedule, one.num_train_steps)
  assert float(lr(0)) == 0.0 and float(lr(10_000)) == pytest.approx(1e-4 * (1 - 10_000 / 900_000))
  with pytest.raises(ValueError, match='phase2 is the second phase of the bert_paper recipe'):
    pretrain.get_config('base,phase2')


@pytest.mark.parametrize('recipe,lr,eps', [('model_garden', 3e-5, 1e-7), ('bert_paper', 2e-5, 1e-6)])
def test_glue_recipes(recipe, lr, eps):
  config = glue.get_config(f'mrpc,{recipe}') if recipe != 'model_garden' else glue.get_config('mrpc')
  assert config.recipe == recipe and config.schedule.base_lr == lr and config.optimizer.eps == eps
  assert (config.batch_size, config.num_epochs, config.schedule.warmup_fraction) == (32, 3.0, 0.1)
  assert config.init_cls_pooler is False
  assert glue.get_config(f'mrpc,tiny,runlocal,{recipe}').model.nsp_head == recipes.model_fields(recipe)['nsp_head']


def test_unknown_and_duplicate_recipes_are_refused():
  with pytest.raises(ValueError, match='RECIPE'):
    glue.get_config('mrpc,tf1')
  with pytest.raises(ValueError, match='two recipes'):
    pretrain.get_config('base,model_garden,bert_paper')
  with pytest.raises(ValueError, match='RECIPE'):
    pretrain.get_config('base,fast')


def test_scenic_recipe_traces_scenics_pretraining_config():
  fields = recipes.scenic_pretraining('S')
  model, opt, sched = fields['model'], fields['optimizer'], fields['schedule']
  assert (model.num_layers, model.hidden_size, model.num_heads, model.intermediate_size, model.embedding_size) == (
      12, 256, 4, 1024, 128)
  assert (model.pre_norm, model.nsp_head, model.hidden_act, model.layer_norm_eps) == (True, 'scenic_head',
                                                                                       'gelu_tanh', 1e-6)
  assert (fields['batch_size'], fields['max_seq_length'], fields['max_predictions_per_seq'],
          fields['num_train_steps'], fields['fewshot_every'], fields['shuffle_buffer']) == (
              512, 512, 76, 1_000_000, 50_000, 100)
  # scale_by_adam (b1 0.9, b2 0.999, optax's eps 1e-8, bias-corrected), no weight decay, clip 1.0 per replica
  # then the mean.
  assert (opt.name, opt.bias_correction, opt.b1, opt.b2, opt.eps, opt.weight_decay) == (
      'adamw', 'standard', 0.9, 0.999, 1e-8, 0.0)
  assert (opt.grad_clip_norm, optimizers.per_replica_clipping(opt)) == (1.0, (1.0, 'pmean'))
  # Scenic's compound 'constant * linear_warmup * linear_decay' (lr_schedules.py), value by value.
  lr = optimizers.learning_rate_schedule(sched, fields['num_train_steps'])
  total, warm, base = 1_000_000, 10_000, 1e-4
  for step in (0, 1, 5_000, 9_999, 10_000, 10_001, 500_000, 999_999, 1_000_000):
    scenic = base * min(1.0, step / warm) * max(0.0, 1.0 - max(0.0, (step - warm) / (total - warm)))
    assert float(lr(step)) == pytest.approx(scenic, rel=1e-6, abs=1e-12), step
  for size, (layers, hidden) in {'Ti': (6, 128), 'B': (12, 768), 'L': (24, 1024)}.items():
    m = recipes.scenic_pretraining(size)['model']
    assert (m.num_layers, m.hidden_size, m.embedding_size) == (layers, hidden, 0)  # E = H: no projection


@pytest.mark.parametrize('recipe,pooler', [('model_garden', 'fresh'), ('bert_paper', 'encoder')])
def test_glue_classifier_pooler_follows_the_recipe(recipe, pooler, tmp_path):
  """Model Garden's sentence_prediction: BertClassifier(use_encoder_pooler=False), a fresh pooler; google-research/
  bert's run_classifier: the encoder's pooled output, so the checkpoint's pooler."""
  import jax
  import numpy as np

  from core import params_io
  from projects.bert.checkpoints import weights
  from projects.bert.models import architecture, bert_models

  config = glue.get_config(f'mrpc,{recipe}')
  assert config.classifier_pooler == pooler == recipes.CLASSIFIER_POOLER[recipe]
  model_config = architecture.model_config('tiny', num_labels=2)
  model = bert_models.BertClassificationModel(type(config)({'model': model_config}), None)
  batch = {k: np.ones((1, 8), np.int32) for k in ('input_ids', 'input_mask', 'segment_ids')}
  fresh = jax.device_get(model.init_params(jax.random.PRNGKey(0), batch))
  source = jax.tree_util.tree_map(lambda x: x + 1.0, fresh)  # a "checkpoint" that differs from the fresh state
  params_io.save_params(str(tmp_path / 'ckpt'), source, metadata={'model': model_config.to_dict()})
  run = type(config)({'model': model_config, 'init_from': str(tmp_path / 'ckpt'), 'init_heads': False,
                      'classifier_pooler': config.classifier_pooler})
  loaded = weights.InitFromLoader(run)(fresh)
  want = fresh if pooler == 'fresh' else source
  np.testing.assert_array_equal(loaded['bert']['pooler']['kernel'], want['bert']['pooler']['kernel'])
  np.testing.assert_array_equal(loaded['bert']['layer_0']['intermediate']['kernel'],
                                source['bert']['layer_0']['intermediate']['kernel'])  # the rest is loaded
  with pytest.raises(ValueError, match='classifier_pooler'):
    weights.InitFromLoader(type(config)({**run.to_dict(), 'classifier_pooler': 'nsp'}))


def test_pretrain_scenic_sizes_take_scenic_bert_and_its_recipe():
  from projects.bert.configs import pretrain, variants
  from projects.bert.models import architecture

  config = pretrain.get_config('S,scenic')
  layers, hidden, heads, inter, emb = architecture.SCENIC_SIZES['S']
  assert (config.model.num_layers, config.model.hidden_size, config.model.num_heads,
          config.model.intermediate_size, config.model.embedding_size) == (layers, hidden, heads, inter, emb)
  assert config.model.pre_norm and config.model.nsp_head == 'scenic_head'
  assert config.optimizer.weight_decay == 0.0 and config.optimizer.grad_clip_scope == 'per_replica_pmean'
  assert (config.batch_size, config.dataset.max_seq_length, config.dataset.max_predictions_per_seq,
          config.num_train_steps, config.schedule.base_lr, config.schedule.warmup_steps) == (
              512, 512, 76, 1_000_000, 1e-4, 10_000)
  assert pretrain.get_config('Ti,scenic').model.embedding_size == 0  # Ti's tables are as wide as its hidden size
  assert pretrain.get_config('B,scenic,fewshot').evals.fewshot.every == 50_000
  with pytest.raises(variants.VariantError, match='use S,scenic'):
    pretrain.get_config('S')
