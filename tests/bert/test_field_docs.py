"""`main.py --help` answers at once, `--print_config` gives every field its value and meaning (each beside its
default: models/architecture.py, configs/training.py, configs/recipes.py, the config file)."""

import os
import subprocess
import sys

import pytest

from core import config_help
from projects.bert.configs import demo, fewshot, glue, glue_suite, pretrain, squad, superglue, superglue_suite

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = ((pretrain, 'tiny,fewshot'), (pretrain, 'base,bert_paper,phase2'), (glue, 'mrpc,predict'),
            (glue, 'stsb,small'), (glue, 'mrpc,bert_paper'), (fewshot, 'scenic'), (squad, 'v2.0'),
            (squad, 'v1.1,runlocal'), (glue_suite, 'tiny'),
            (fewshot, 'sst2+rte,tiny'), (fewshot, 'all'), (demo, 'smoke'), (superglue, 'copa,predict'),
            (superglue, 'rte'), (superglue, 'wsc,tiny,runlocal'), (superglue_suite, ''), (superglue_suite, 'tiny'))


@pytest.mark.parametrize('module,variant', VARIANTS)
def test_every_field_of_every_config_has_a_meaning(module, variant):
  config = module.get_config(variant)
  missing = [name for name, _ in config_help.leaves(config)
             if config_help.doc_of(name, module.FIELD_DOCS) == config_help.UNDOCUMENTED]
  assert not missing, f'{module.__name__}:{variant}: give these a meaning beside their default: {missing}'


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_print_config_lists_each_field_with_value_and_meaning_overrides_included():
  proc = _main('--config=projects/bert/configs/glue.py:mrpc', '--config.schedule.base_lr=3e-5', '--print_config')
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  fields = dict(config_help.leaves(glue.get_config('mrpc')))
  # A field's meaning follows its value on the same line, or on the next one when the value is long.
  described = {line.split(' = ')[0] for i, line in enumerate(lines) if ' = ' in line and not line.startswith('#')
               and ('  # ' in line or (i + 1 < len(lines) and lines[i + 1].lstrip().startswith('# ')))}
  assert described == set(fields)
  assert any(line.startswith('schedule.base_lr = 3e-05') and '# peak learning rate' in line for line in lines)
  assert any(line.startswith('model.hidden_size = None') and 'init_from' in line for line in lines)
  assert config_help.UNDOCUMENTED not in proc.stdout


def test_help_is_useful_and_loads_no_jax():
  code = ("import runpy, sys; sys.argv = ['main.py', '--help']; runpy.run_path('main.py', run_name='__main__'); "
          "assert 'jax' not in sys.modules and 'tensorflow' not in sys.modules, 'loaded for --help'")
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for needle in ('--config', '--workdir', '--print_config', '--verbose', 'glue.py:TASK', '--config.FIELD=VALUE'):
    assert needle in proc.stdout, needle


def test_model_and_dataset_names_list_every_registered_one():
  from core import registry
  from projects.bert.configs import training
  import projects.bert  # noqa: F401  (declares the names)
  for kind, field in ((registry.MODELS, 'model_name'), (registry.DATASETS, 'dataset_name')):
    names = [n for n in kind.names() if n.startswith('bert_')]
    missing = [n for n in names if n not in training.DOCS[field]]
    assert names and not missing, f'configs/training.py DOCS[{field!r}] lacks {missing}'
  assert squad.FIELD_DOCS['model_name'] == training.DOCS['model_name']  # one meaning, one owner


def test_model_field_meanings_live_beside_their_defaults():
  from projects.bert.models import architecture
  model = architecture.model_config('base')
  assert set(model) == set(architecture.MODEL_FIELDS)
  for module, variant in VARIANTS:
    for name in model:
      if module not in (glue_suite, superglue_suite, demo):
        assert module.FIELD_DOCS[f'model.{name}'].startswith(architecture.MODEL_FIELDS[name][1])
