"""The README's main job at its smallest setting, end to end, and a rerun that skips the finished stages."""

import json
import os
import subprocess
import sys

import pytest

# Minutes long: collected first (tests/conftest.py), so that the two xdist workers overlap it with the rest.
pytestmark = pytest.mark.long(minutes=9)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _demo(workdir):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, 'main.py', '--config=projects/bert/configs/demo.py:smoke',
                         f'--workdir={workdir}'], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def test_demo_smoke_end_to_end_then_skips_finished_stages(tmp_path):
  proc = _demo(tmp_path)
  summary = json.load(open(tmp_path / 'summary.json'))
  stages = summary['stages']
  assert set(stages) == {'data', 'pretrain', 'convert', 'finetune', 'fewshot'}
  assert stages['pretrain']['result']['step'] == 10
  assert os.path.isdir(tmp_path / 'pretrain' / 'checkpoints' / '10')
  # Fine-tuned from the real pretrained MiniLM: dev sentences use adjectives never seen in training.
  glue = stages['finetune']['result']['glue']
  assert glue['best_on_dev']['value'] > 0.8
  assert glue['final']['validation/accuracy'] > 0.8 and glue['final_step'] == 6  # the protocol number
  assert os.path.exists(tmp_path / 'finetune' / 'predictions' / 'SST-2.tsv')
  fewshot = stages['fewshot']['result']
  assert (fewshot['minilm']['fewshot']['scalars']['sst2/8shot'] >
          fewshot['random_tiny']['fewshot']['scalars']['sst2/8shot'] + 0.15)
  assert any(f.endswith('.png') for f in os.listdir(tmp_path / 'fewshot' / 'minilm'))
  assert 'wall s' in proc.stdout and 'minilm' in proc.stdout  # the summary table
  assert 'wall s' not in proc.stderr  # printed once, not logged too
  assert 'final' in proc.stdout and '(protocol)' in proc.stdout and 'best_on_dev' in proc.stdout  # issue 20
  again = _demo(tmp_path)
  for stage in ('data', 'pretrain', 'convert', 'finetune', 'fewshot'):
    assert f'Stage {stage} finished earlier' in again.stderr
