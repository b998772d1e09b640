"""The one variant parser (configs/variants.py) as every config file uses it, and configs as leaves: production code
loads them by path (`core.app.load_config`), never by import."""

import os
import re

import pytest

from core import app, errors
from projects.bert.configs import demo, fewshot, glue, glue_suite, pretrain, squad, variants

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, 'projects', 'bert', 'configs')


def test_every_config_file_declares_its_variant():
  for module in (demo, fewshot, glue, glue_suite, pretrain, squad):
    assert isinstance(module.VARIANT, variants.Spec), module.__name__
    assert module.VARIANT.file == os.path.basename(module.__file__)
  assert glue.VARIANT.usage() == 'TASK[,SIZE][,RECIPE][,predict][,runlocal]'
  assert glue_suite.VARIANT.usage() == '[SIZE][,runlocal]'
  assert squad.VARIANT.usage() == 'VERSION[,SIZE][,runlocal]'


def test_words_in_any_order_after_the_leading_one():
  v = variants.parse('SST-2,runlocal,bert_paper,small', glue.VARIANT)
  assert (v.lead, v.size, v.recipe, v.flags) == ('sst2', 'small', 'bert_paper', frozenset({'runlocal'}))
  v = variants.parse('', glue.VARIANT)
  assert (v.lead, v.size, v.recipe, v.flags) == ('mrpc', '', 'model_garden', frozenset())
  assert variants.parse('v2.0', squad.VARIANT).recipe == ''  # SQuAD follows no selectable recipe
  assert variants.parse(' tiny , runlocal ', glue_suite.VARIANT).size == 'tiny'
  assert variants.parse('sst2+RTE', fewshot.VARIANT).lead == 'sst2+rte'


@pytest.mark.parametrize('module,arg,problem', [
    (glue, 'mrpc,huge', "unknown word 'huge'"),
    (glue, 'mrpc,tiny,base', "two sizes ['tiny', 'base']"),
    (glue, 'nope', "unknown TASK 'nope'"),
    (pretrain, 'base,fast,phase3', "unknown words 'fast', 'phase3'"),
    (pretrain, 'base,model_garden,bert_paper', 'two recipes'),
    (pretrain, 'gigantic', "unknown SIZE 'gigantic'"),
    (squad, 'v1.1,bert_paper', "unknown word 'bert_paper'"),  # SQuAD takes no RECIPE
    (fewshot, 'sst2+nope', "unknown TASKS 'sst2+nope'"),
    (glue_suite, 'mrpc', "unknown word 'mrpc'"),
    (demo, 'fast', "unknown SETTING 'fast'"),
])
def test_an_unknown_word_gets_one_error_listing_the_known_ones(module, arg, problem):
  with pytest.raises(variants.VariantError) as raised:
    module.get_config(arg)
  message = str(raised.value)
  assert isinstance(raised.value, errors.ConfigError) and isinstance(raised.value, ValueError)
  assert message.startswith(f"Variant {arg!r} of {module.VARIANT.file}: {problem}"), message
  assert f'Expected {module.VARIANT.file}:{module.VARIANT.usage()}' in message
  spec = module.VARIANT
  for word in spec.lead_words + spec.flags:
    assert word in message
  if spec.sizes:
    assert 'SIZE one of tiny, mini, small, medium, base, large' in message
  if spec.recipes:
    assert 'RECIPE one of model_garden, bert_paper' in message


def test_load_config_by_path_is_get_config_of_the_variant():
  by_path = app.load_config(os.path.join(CONFIGS, 'glue.py:stsb,tiny'))
  assert by_path.to_dict() == glue.get_config('stsb,tiny').to_dict()
  assert app.load_config(os.path.join(CONFIGS, 'squad.py')).to_dict() == squad.get_config().to_dict()
  with pytest.raises(errors.MissingFileError, match='nope.py does not exist'):
    app.load_config(os.path.join(CONFIGS, 'nope.py:x'))


def test_production_code_never_imports_configs():
  pattern = re.compile(r'^\s*(from projects\.bert\.configs\b|import projects\.bert\.configs\b|'
                       r'from projects\.bert import .*\bconfigs\b)', re.M)
  found = []
  for top in ('core', 'projects'):
    for root, _, files in os.walk(os.path.join(REPO, top)):
      if 'configs' in os.path.relpath(root, REPO).split(os.sep):  # every project's configs are leaves
        continue
      for name in files:
        if name.endswith('.py') and pattern.search(open(os.path.join(root, name)).read()):
          found.append(os.path.relpath(os.path.join(root, name), REPO))
  assert not found, f'load these configs by path (core.app.load_config) instead: {found}'


def test_help_lists_every_config_file_and_its_words():
  from projects.bert import cli
  for module in (demo, fewshot, glue, glue_suite, pretrain, squad):
    spec = module.VARIANT
    assert f'{spec.file}:' in cli.__doc__ or f'{spec.file}[:' in cli.__doc__, spec.file
    for word in spec.flags + (('RECIPE',) if spec.recipes else ()) + (('SIZE',) if spec.sizes else ()):
      assert word in cli.__doc__, (spec.file, word)
