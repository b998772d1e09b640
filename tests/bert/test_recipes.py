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
