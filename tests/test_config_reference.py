"""README.md's config reference table against the configs: every field it documents exists in the config it names
and can be set from the command line, and every field a dataset builder reads is in its config."""

import os
import re
import sys

import pytest
from absl import flags
from ml_collections import config_dict, config_flags

from projects.bert.datasets import classification as glue_dataset
from projects.bert.datasets import pretraining as pretraining_dataset
from projects.bert.datasets import span_qa as squad_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {'pretraining': 'projects/bert/configs/pretrain.py:tiny', 'GLUE': 'projects/bert/configs/glue.py:mrpc',
           'few-shot': 'projects/bert/configs/fewshot.py:sst2', 'SQuAD': 'projects/bert/configs/squad.py:v1.1',
           'GLUE suite': 'projects/bert/configs/glue_suite.py:tiny'}


def documented_fields():
  """[(qualifier or None, 'a.b')] from the first column of README.md's config reference table."""
  text = open(os.path.join(REPO, 'README.md')).read()
  table = text.split('## Config reference', 1)[1].split('\n## ', 1)[0]
  fields = []
  for row in re.findall(r'^\| (.+?) \| .* \|$', table, flags=re.M):
    if row in ('field', '---'):
      continue
    qualifier = None
    for part in re.split(r',\s*(?![^`]*`(?:[^`]*`[^`]*`)*[^`]*$)', row):  # the comma-separated items of the cell
      m = re.match(r'(?:(pretraining|GLUE suite|GLUE|few-shot|SQuAD) )?`([^`]+)`$', part.strip())
      assert m, f'README config table: cannot read {part!r} in row {row!r}'
      qualifier = m.group(1)
      prefix = ''
      for name in m.group(2).split(','):
        name = name.strip()
        if '.' in name:
          prefix = name.rsplit('.', 1)[0] + '.'
          fields.append((qualifier, name))
        else:
          fields.append((qualifier, prefix + name))
  return fields


def _sample_value(value):
  """A command-line value of the field's type, or None for fields that are not set from the command line."""
  if isinstance(value, config_dict.FieldReference):  # a typed field, possibly unset (a placeholder)
    value = value.get() if value.get() is not None else {int: 0, float: 0.0, str: '', bool: False}.get(
        value.get_type())
  if isinstance(value, bool):
    return 'true'
  if isinstance(value, int):
    return '3'
  if isinstance(value, float):
    return '0.5'
  if isinstance(value, str):
    return 'x'
  return None


def override(config_arg, field, value):
  """Parses `--config=config_arg --config.field=value` as main.py does; returns the config."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=fv, lock_config=True)
  argv = ['prog', f'--config={os.path.join(REPO, config_arg)}', f'--config.{field}={value}']
  saved, sys.argv = sys.argv, argv  # config_flags reads the override flags from sys.argv
  try:
    fv(argv)
  finally:
    sys.argv = saved
  return fv.config


def _lookup(config, field):
  node = config
  for part in field.split('.'):
    if node is None or part not in node:
      return KeyError
    node = node[part] if not isinstance(node, config_dict.ConfigDict) else node.get_ref(part) if isinstance(
        node._fields[part], config_dict.FieldReference) else node[part]  # pylint: disable=protected-access
  return node


def test_the_readme_table_lists_fields():
  fields = documented_fields()
  assert ('pretraining', 'dataset.cycle_length') in fields and ('GLUE', 'model.num_labels') in fields
  assert (None, 'model.hidden_size') in fields and (None, 'checkpoint.restore_input') in fields
  assert len(fields) > 50


@pytest.mark.parametrize('qualifier,field', documented_fields())
def test_documented_field_exists_and_is_settable(qualifier, field):
  candidates = [CONFIGS[qualifier]] if qualifier else list(CONFIGS.values())
  found = []
  for config_arg in candidates:
    path, variant = config_arg.split(':')
    module = os.path.basename(path)[:-len('.py')]
    config = __import__(f'projects.bert.configs.{module}', fromlist=['get_config']).get_config(variant)
    value = _lookup(config, field)
    if value is KeyError:
      continue
    found.append(config_arg)
    sample = _sample_value(value)
    if sample is not None:  # tuples, blocks and None-valued fields are set in config files
      parsed = override(config_arg, field, sample)
      got = _lookup(parsed, field)
      got = got.get() if isinstance(got, config_dict.FieldReference) else got
      assert str(got).lower() in (sample, '3.0'), (field, config_arg)
  assert found, f'README documents {field!r} ({qualifier or "any config"}), but no config has it: {candidates}'


@pytest.mark.parametrize('builder,config_arg', [(pretraining_dataset, CONFIGS['pretraining']),
                                                (glue_dataset, CONFIGS['GLUE']), (squad_dataset, CONFIGS['SQuAD'])])
def test_every_field_a_dataset_builder_reads_is_in_its_config(builder, config_arg):
  path, variant = config_arg.split(':')
  module = os.path.basename(path)[:-len('.py')]
  config = __import__(f'projects.bert.configs.{module}', fromlist=['get_config']).get_config(variant)
  missing = sorted(set(builder.default_config()) - set(config.dataset))
  assert not missing, f'{config_arg} lacks config.dataset fields {missing}: they cannot be set with --config.dataset.*'


def test_optional_fields_take_a_value_from_the_command_line():
  # Fields whose default is "unset" are typed, so a command line can set them.
  assert override(CONFIGS['GLUE'], 'model.num_labels', '3').model.num_labels == 3
  runlocal = override('projects/bert/configs/glue.py:mrpc,runlocal', 'dataset.max_seq_length', '64')
  assert runlocal.dataset.max_seq_length == 64
  assert override(CONFIGS['pretraining'], 'dataset.max_seq_length', '0').dataset.max_seq_length == 0
