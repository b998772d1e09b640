"""Console commands (`pip install -e .`: bert-train, bert-prepare, bert-convert) work from any directory."""

import os
import subprocess
import sys
import tomllib

import pytest

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


@pytest.mark.parametrize('args, says', [
    (['--config=projects/bert/configs/glue.py:mrpc,huge', '--workdir=W'], "unknown word 'huge'"),
    (['--config=projects/bert/configs/squad.py:v3', '--print_config'], "unknown VERSION 'v3'"),
    (['--config=projects/bert/configs/glue.py:mrpc', '--workdir=W', '--config.model.hiden_size=3'],
     "--config.model.hiden_size: the config has no such field (a misspelt or misplaced name); did you mean "
     "'hidden_size'?"),
    (['--config=projects/bert/configs/glue.py:mrpc', '--workdir=W', '--config.nope=3'], '--config.nope: the config'),
    (['--config=projects/bert/configs/nope.py', '--workdir=W'], "config file 'projects/bert/configs/nope.py' does "
     'not exist'),
])
def test_config_mistakes_are_one_error_paragraph_not_a_traceback(tmp_path, args, says):
  """Mistakes in --config and its overrides surface inside absl's flag parsing; they end as `error: ...`."""
  args = [a.replace('=W', f'={tmp_path / "w"}') for a in args]
  proc = subprocess.run([sys.executable, 'main.py', *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and says in last, proc.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'w')


_HELP_PROBE = '''
import sys
from projects.bert.datasets import prepare
for argv in ([ '--help'], ['glue', '--help'], ['squad', '--help']):
  try:
    prepare.main(argv)
  except SystemExit:
    pass
print('tensorflow loaded:', 'tensorflow' in sys.modules)
'''


def test_prepare_help_imports_no_tensorflow_and_shows_the_defaults():
  proc = subprocess.run([sys.executable, '-c', _HELP_PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().endswith('tensorflow loaded: False')
  assert '(default: 128)' in proc.stdout and '(default: 384)' in proc.stdout and '(default: True)' in proc.stdout
  assert '(default: None)' not in proc.stdout  # required flags have none to show


def test_prepare_prints_what_it_wrote_and_no_info_lines_unless_verbose(tmp_path, caplog):
  import logging as std_logging

  from absl import logging

  from projects.bert.datasets import prepare
  from tests.bert import data_utils
  data = data_utils.write_glue_task_dir(tmp_path / 'glue', 'wnli', n_train=4, n_dev=2, n_test=2)
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt')
  argv = ['glue', '--task=wnli', f'--glue_dir={data.glue_dir}', f'--vocab_file={vocab}', '--max_seq_length=24']
  before = logging.get_verbosity()
  with caplog.at_level('INFO'):
    prepare.main(argv + [f'--output_dir={tmp_path / "quiet"}'])
    assert not [r.getMessage() for r in caplog.records if r.levelno < std_logging.WARNING]
    assert logging.get_verbosity() == before  # the caller's logging is left as it was
    prepare.main(argv + [f'--output_dir={tmp_path / "verbose"}', '--verbose'])
  assert any('wnli' in r.getMessage() for r in caplog.records if r.levelno == std_logging.INFO)
