r"""SuperGLUE as a suite: fine-tune one checkpoint on the 8 SuperGLUE tasks (or a list) over several seeds and write
one table. Variant: `[SIZE][,runlocal]`; without SIZE the architecture comes from `init_from`.

  python -m projects.bert.datasets.prepare superglue --task=all --superglue_dir=SUPERGLUE_DIR --vocab_file=vocab.txt \
      --output_dir=data/superglue --max_seq_length=128
  python main.py --config=projects/bert/configs/superglue_suite.py --workdir=$WD/superglue \
      --config.init_from=$WD/bert_base --config.tasks=all --config.num_seeds=3

Each (task, seed) is a run of the one trainer with configs/superglue.py's config of the task (its model, its
evaluators; RTE's also score and predict AX-b and AX-g), the fields of `finetune` below, and rng_seed =
dataset.seed = seed, in workdir/{task}/seed_{seed}. A rerun skips finished runs and resumes an interrupted one.

Writes workdir/superglue_results.json and .md: per task its official metrics as mean ± std over seeds of the dev
score after the last step, the task score (mean of its metrics), the SuperGLUE score (mean of the 8 task scores),
AX-b and AX-g (of the RTE runs) beside it, and workdir/submission/ with the leaderboard files of each task's best
seed (BoolQ.jsonl ... AX-g.jsonl: zip them for the SuperGLUE server).
"""

import ml_collections

from projects.bert.configs import superglue as superglue_configs
from projects.bert.configs import training, variants

VARIANT = variants.Spec('superglue_suite.py', sizes=True, flags=('runlocal',))

FIELD_DOCS = {
    'trainer_name': "registry name of the trainer ('bert_superglue_suite')",
    'tasks': "SuperGLUE tasks fine-tuned: 'all' (the 8 whose records are in data_dir) or a comma list",
    'num_seeds': 'runs per task, seeds 0 .. num_seeds - 1 (rng_seed and data order)',
    'init_from': "the checkpoint every run starts from (a converted checkpoint or a run's workdir)",
    'data_dir': 'the --output_dir of `prepare superglue`',
    **{f'finetune.{k}': v for k, v in superglue_configs.FIELD_DOCS.items()},
    'finetune.evals': "set per run: the task's evaluators of configs/superglue.py (dev scored after the last step)",
}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  sizes = [variant.size] if variant.size else []
  runlocal = 'runlocal' in variant.flags

  # One fine-tuning config for every task: the suite sets dataset.task, model_name, evals and the seeds per run.
  ft = superglue_configs.get_config(','.join(['rte'] + sizes + (['runlocal'] if runlocal else [])))
  ft.evals = ml_collections.ConfigDict()  # set per run: the task's (configs/superglue.py)
  return training.suite('bert_superglue_suite', 'data/superglue', ft, sized=bool(sizes) or runlocal)
