"""`main.py --help` answers at once, `--print_config` gives every field its value and meaning (each beside its
default: models/architecture.py, configs/training.py, configs/recipes.py, the config file)."""

import ast
import os
import re
import subprocess
import sys

import pytest

from core import config_help
from projects.bert.configs import demo, fewshot, glue, glue_suite, pretrain, squad, superglue, superglue_suite, xtreme

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
  # The headline (and main.py's own docstring) names every kind of run; the list names every config file.
  headline = proc.stdout.split('\n\n')[0]
  with open(os.path.join(REPO, 'main.py')) as f:
    main_doc = ast.get_docstring(ast.parse(f.read()))
  for kind in ('pretrain', 'GLUE', 'SQuAD', 'SuperGLUE', 'XTREME', 'few-shot'):
    assert kind in headline and kind in main_doc, (kind, headline, main_doc)
  configs = os.path.join(REPO, 'projects', 'bert', 'configs')
  files = [f for f in os.listdir(configs)
           if f.endswith('.py') and 'def get_config' in open(os.path.join(configs, f)).read()]
  assert len(files) >= 10 and [f for f in files if f'  {f}' not in proc.stdout] == []


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


BENCHMARKS = ('GLUE', 'SQuAD', 'SuperGLUE', 'XTREME')


@pytest.mark.parametrize('module,variant,benchmark', [
    (squad, 'v1.1', 'SQuAD'), (squad, 'v2.0,runlocal', 'SQuAD'), (superglue, 'rte', 'SuperGLUE'),
    (superglue, 'copa', 'SuperGLUE'), (xtreme, 'xquad', 'XTREME'), (xtreme, 'udpos', 'XTREME'),
    (xtreme, 'bucc2018', 'XTREME')])
def test_every_field_meaning_is_true_for_its_config(module, variant, benchmark):
  """What --print_config prints beside a field names no other benchmark ('GLUE: ...' in the SQuAD config), and the
  names a config runs with (its model, its dataset builder, its task) are among the choices its help lists."""
  config = module.get_config(variant)
  docs = {name: config_help.doc_of(name, module.FIELD_DOCS) for name, _ in config_help.leaves(config)}
  others = '|'.join(b for b in BENCHMARKS if b != benchmark)
  wrong = {name: doc for name, doc in docs.items() if re.search(rf'\b({others}):', doc)}
  assert not wrong, f'{module.__name__}:{variant}: meanings of another benchmark: {wrong}'
  named = {field: config.get(field) for field in ('model_name', 'dataset_name')}
  if 'dataset' in config and 'task' in config.dataset:
    named['dataset.task'] = config.dataset.task
  for field, value in named.items():
    if value:
      assert value in docs[field], f'{module.__name__}:{variant}: {field}={value!r} is not among {docs[field]!r}'
