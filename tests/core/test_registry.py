"""Registries: register, get, duplicate names, and unknown names listing the known ones."""

import pytest

from core.registry import Registry


def test_register_and_get():
  reg = Registry('widget')

  @reg.register('a')
  def a():
    return 1

  assert reg.get('a') is a
  assert 'a' in reg and reg.names() == ['a']


def test_unknown_name_lists_known_names():
  reg = Registry('trainer')
  reg.register('bert_pretrainer')(object)
  reg.register('bert_glue_trainer')(dict)
  with pytest.raises(KeyError, match=r"Unknown trainer 'bert_pretrainr'.*bert_glue_trainer, bert_pretrainer"):
    reg.get('bert_pretrainr')


def test_duplicate_registration_fails():
  reg = Registry('model')
  reg.register('m')(object)
  with pytest.raises(ValueError, match="already registered"):
    reg.register('m')(dict)


def test_declared_name_imports_its_module_on_first_get(tmp_path, monkeypatch):
  (tmp_path / 'declared_widget_mod.py').write_text(
      'from tests.core import test_registry as t\n'
      't.LAZY.register("w")(dict)\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  LAZY.declare('w', 'declared_widget_mod')
  assert 'w' in LAZY and LAZY.names() == ['w']
  assert LAZY.get('w') is dict


def test_declared_module_that_does_not_register_fails_clearly():
  reg = Registry('model')
  reg.declare('ghost', 'json')  # a module that registers nothing
  with pytest.raises(ValueError, match="json was declared to register model 'ghost' but did not"):
    reg.get('ghost')


LAZY = Registry('widget')
