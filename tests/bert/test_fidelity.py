"""Our training against TF Model Garden's, side by side on this CPU: benchmarks/fidelity.py --quick (~2.5 min).

The full run (larger batches, Model Garden as shipped next to the patched one, 5-seed fine-tuning runs) is the
benchmark: python benchmarks/fidelity.py --output=benchmarks/results/fidelity_cpu.json.
"""

import json
import os
import subprocess
import sys

import pytest

# Minutes long: collected first (tests/conftest.py), so that the two xdist workers overlap it with the rest.
pytestmark = pytest.mark.long(minutes=8)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def fidelity(tmp_path_factory):
  pytest.importorskip('official')
  output = tmp_path_factory.mktemp('fidelity') / 'fidelity.json'
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu',
             CUDA_VISIBLE_DEVICES='', PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, os.path.join('benchmarks', 'fidelity.py'), '--quick',
                         '--checks=optimizer,pretraining,glue_exact', f'--output={output}'], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=1200)
  assert output.exists(), proc.stderr[-4000:]
  payload = json.loads(output.read_text())
  print(proc.stdout)
  return {check: [r for r in payload['rows'] if r['check'] == check] for check in ('optimizer', 'pretraining',
                                                                                   'glue_exact')}


def test_optimizer_schedule_and_clipping_match_model_garden(fidelity):
  """100 steps of the same gradients: Model Garden's factory (bert/pretraining, bert/sentence_prediction) on 1 and
  2 replicas vs our recipe with global and per-replica clipping."""
  rows = fidelity['optimizer']
  assert len(rows) == 4
  for row in rows:
    assert row['steps'] == 100 and row['lr_bitwise_equal'], row
    assert row['params_max_rel_err'] <= 1e-6, row
    assert row['decay_mask_mismatches'] == [] and row['decayed'] > 0 and row['not_decayed'] > 0, row
    assert 0 < row['clipped_steps'] < 100, row  # clipping acted on some steps, not all


def test_pretraining_losses_match_model_garden(fidelity):
  (row,) = fidelity['pretraining']
  assert row['same_batches'] and row['steps'] == 50
  assert row['mlm_max_rel_diff'] <= 1e-4 and row['nsp_max_rel_diff'] <= 1e-4, row
  assert row['mlm_loss_first_last'][1] < 0.9 * row['mlm_loss_first_last'][0]  # it trained
  assert row['final_params_max_rel_err'] <= 1e-4, row
  # The encoder's pooler gets no gradient under the next_sentence head: Keras skips it, and so do we.
  assert row['unused_encoder_pooler_unchanged'], row


@pytest.mark.parametrize('pooler', ['init_cls_pooler', 'fresh'])
@pytest.mark.parametrize('task', ['mrpc', 'stsb'])
def test_glue_losses_and_dev_metric_match_model_garden(fidelity, task, pooler):
  """With init_cls_pooler and with Model Garden's default (BertClassifier(use_encoder_pooler=False): a fresh
  pooler, our model_garden recipe's classifier_pooler='fresh')."""
  (row,) = [r for r in fidelity['glue_exact'] if r['task'] == task and r['model_garden_patched']
            and r['pooler'] == pooler]
  assert row['same_batches'] and row['steps'] == 50 and row['pooler_as_expected']
  assert row['loss_max_rel_diff'] <= 1e-4, row
  assert abs(row['dev_metric_ours'] - row['dev_metric_model_garden']) <= 1e-4, row
  assert row['dev_outputs_max_rel_diff'] <= 1e-4, row
  first, last = row['loss_first_last']
  # It trained: with the pooler NSP trained the loss falls within 50 quick steps; a fresh pooler starts the
  # classifier from scratch and its last-step loss is noisy, so there the check is that training moved it.
  assert last < first if pooler == 'init_cls_pooler' else abs(last - first) > 1e-3, row
