"""Console commands (`pip install -e .`: bert-train, bert-prepare, bert-convert) work from any directory."""

import os
import sys
import tomllib

from projects.bert import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_paths_are_found_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  glue = os.path.join(REPO, 'projects', 'bert', 'configs', 'glue.py')
  assert cli.resolve_config_path('projects/bert/configs/glue.py:mrpc') == glue + ':mrpc'
  assert cli.resolve_config_path('glue.py:mrpc,base') == glue + ':mrpc,base'
  assert cli.resolve_config_path('nope.py:x') == 'nope.py:x'  # the loader names the missing file
  (tmp_path / 'glue.py').write_text('')
  assert cli.resolve_config_path('glue.py:mrpc') == 'glue.py:mrpc'  # a file where the user is comes first
  assert cli._with_config_resolved(['main.py', '--config', 'demo.py:smoke', '--workdir=w'])[2] == (
      os.path.join(REPO, 'projects', 'bert', 'configs', 'demo.py:smoke'))


def test_console_scripts_point_at_functions_that_exist():
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    scripts = tomllib.load(f)['project']['scripts']
  assert set(scripts) == {'bert-train', 'bert-prepare', 'bert-convert'}
  for target in scripts.values():
    module, func = target.split(':')
    __import__(module)
    assert callable(getattr(sys.modules[module], func)), target
