"""`init_from` carries its architecture (`checkpoints.weights.resolve_model_config`): unset fields come from the
checkpoint's metadata.json or the run's config.json; fields the user set must agree with it."""

import json

import pytest

from core import errors
from projects.bert.checkpoints import weights
from projects.bert.models import architecture as common
from projects.bert.configs import glue


def _params_dir(tmp_path, **model_overrides):
  """A directory with only the metadata.json the converter writes (the architecture is all that is read here)."""
  path = tmp_path / 'ckpt'
  path.mkdir()
  model = common.model_config('mini', hidden_act='gelu_tanh', vocab_size=1000, **model_overrides).to_dict()
  (path / 'metadata.json').write_text(json.dumps({'model': model, 'source': 'test'}))
  return str(path), model


def _glue_config(variant, init_from, **model_fields):
  config = glue.get_config(variant)
  config.init_from = init_from
  for key, value in model_fields.items():
    config.model[key] = value
  return config


def test_unset_architecture_comes_from_the_checkpoint(tmp_path):
  path, source = _params_dir(tmp_path)
  config = _glue_config('mrpc', path)
  config.model.hidden_dropout_prob = 0.2  # the run's own field stays
  resolved = weights.resolve_model_config(config)
  for field in common.ARCHITECTURE_FIELDS:
    assert resolved.model[field] == source[field], field
  assert resolved.model.hidden_dropout_prob == 0.2
  assert resolved.model.num_labels is None  # from the dataset, later


def test_a_pretraining_workdir_gives_its_config_json(tmp_path):
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text(json.dumps({'model': common.model_config('tiny', vocab_size=99).to_dict()}))
  resolved = weights.resolve_model_config(_glue_config('sst2', str(run)))
  assert (resolved.model.hidden_size, resolved.model.num_layers, resolved.model.vocab_size) == (128, 2, 99)


def test_a_field_set_against_the_checkpoint_is_a_config_error(tmp_path):
  path, _ = _params_dir(tmp_path)
  with pytest.raises(errors.ConfigError, match=r'model\.hidden_size=768 \(checkpoint: 256\).*metadata\.json'):
    weights.resolve_model_config(_glue_config('mrpc', path, hidden_size=768))
  with pytest.raises(errors.ConfigError, match=r'model\.num_layers=12 \(checkpoint: 4\)'):
    weights.resolve_model_config(_glue_config('mrpc,base', path))
  # A SIZE names only the sizes: the activation and vocabulary still come from the checkpoint.
  resolved = weights.resolve_model_config(_glue_config('mrpc,mini', path))
  assert (resolved.model.hidden_act, resolved.model.vocab_size) == ('gelu_tanh', 1000)
  # A source that leaves a field unset (None) says nothing about it.
  meta = tmp_path / 'ckpt' / 'metadata.json'
  meta.write_text(json.dumps({'model': {**json.loads(meta.read_text())['model'], 'hidden_act': None}}))
  assert weights.resolve_model_config(_glue_config('mrpc', path, hidden_act='gelu')).model.hidden_act == 'gelu'
  # Set to the checkpoint's value: agrees, no error.
  assert weights.resolve_model_config(_glue_config('mrpc', path, hidden_size=256)).model.num_layers == 4


def test_without_init_from_the_size_or_base():
  base = weights.resolve_model_config(_glue_config('mrpc', '')).model
  assert {f: base[f] for f in common.ARCHITECTURE_FIELDS} == {
      f: common.model_config('base')[f] for f in common.ARCHITECTURE_FIELDS}
  small = weights.resolve_model_config(_glue_config('mrpc,small', '')).model
  assert (small.hidden_size, small.num_layers, small.hidden_act) == (512, 4, 'gelu')
  # A hidden size alone: the heads and feed-forward width follow it.
  custom = weights.resolve_model_config(_glue_config('mrpc', '', hidden_size=256)).model
  assert (custom.num_heads, custom.intermediate_size, custom.num_layers) == (4, 1024, 12)


def test_a_workdir_resumed_with_unset_fields_is_the_same_run(tmp_path):
  from core import app
  path, source = _params_dir(tmp_path)
  config = _glue_config('mrpc', path)
  (tmp_path / 'ckpt' / 'checkpoints' / '5').mkdir(parents=True)
  saved = weights.resolve_model_config(config)
  (tmp_path / 'ckpt' / 'config.json').write_text(saved.to_json_best_effort())
  app.check_workdir_config(config, str(tmp_path / 'ckpt'))  # unset fields: the run's
  config.model.hidden_size = 768
  with pytest.raises(errors.ConfigError, match='belongs to another run'):
    app.check_workdir_config(config, str(tmp_path / 'ckpt'))
