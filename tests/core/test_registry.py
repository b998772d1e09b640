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
