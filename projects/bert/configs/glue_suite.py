r"""GLUE as a suite: fine-tune one checkpoint on every GLUE task present (or a list) over several seeds, and write one
table. Variant: `[SIZE][,runlocal]`; without SIZE the architecture comes from `init_from` (its metadata.json or
its run's config.json).

  python -m projects.bert.datasets.prepare glue --task=all --glue_dir=glue_data --vocab_file=vocab.txt \
      --output_dir=data/glue --max_seq_length=128
  python main.py --config=projects/bert/configs/glue_suite.py --workdir=$WD/glue \
      --config.init_from=$WD/p2 --config.tasks=all --config.num_seeds=3

Each (task, seed) is a run of the project's one trainer (`bert_trainer`) with the config `finetune` below, the
task's model and data, and rng_seed = dataset.seed = seed, in workdir/{task}/seed_{seed}. A rerun of the same
command skips finished runs, resumes an interrupted one from its checkpoint, and refuses a finished or started run
whose config differs from the one it would run now (use a new --workdir to change hyperparameters).

Writes workdir/glue_results.json and workdir/glue_results.md: per task its GLUE metrics (MCC for CoLA,
Pearson/Spearman for STS-B, accuracy/F1 for MRPC and QQP, MNLI matched/mismatched accuracy, accuracy elsewhere) as
mean ± std over seeds of the dev score after the last step (the BERT paper's protocol, `glue.final` of each run's
results.json), the task score (the mean of its metrics), the GLUE score (the GLUE paper's macro average of the task
scores) and the BERT paper's Table-1 average (main metrics, MNLI-m and -mm as two entries, WNLI left out), each
naming the tasks it averages. The test-set submission files (predict mode) of the best seed of each task, by its
task score, are collected in workdir/submission/ (zip them for the GLUE server).
"""

import ml_collections

from projects.bert.configs import glue as glue_configs
from projects.bert.configs import training, variants

# What --print_config prints beside each field: these, and configs/glue.py's for `finetune`.
FIELD_DOCS = {
    'trainer_name': "registry name of the trainer ('bert_glue_suite')",
    'tasks': "GLUE tasks fine-tuned: 'all' (those whose records are in data_dir) or a comma list",
    'num_seeds': 'runs per task, seeds 0 .. num_seeds - 1 (rng_seed and data order)',
    'init_from': "the checkpoint every run starts from (a converted checkpoint or a run's workdir)",
    'data_dir': 'the --output_dir of `prepare glue`',
    **{f'finetune.{k}': v for k, v in glue_configs.FIELD_DOCS.items()},
}


VARIANT = variants.Spec('glue_suite.py', sizes=True, flags=('runlocal',))


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  sizes = [variant.size] if variant.size else []
  runlocal = 'runlocal' in variant.flags

  # One GLUE fine-tuning config (configs/glue.py) for every task: the suite sets dataset.task, model_name
  # (bert_classification, or bert_regression for STS-B) and the seeds per run. Override any field for all tasks, e.g.
  # --config.finetune.schedule.base_lr=3e-5.
  ft = glue_configs.get_config(','.join(['mrpc'] + sizes + (['runlocal'] if runlocal else [])))
  # The table uses the dev score after the last step only: no evaluations in between, no best/ copies per run.
  ft.evals.glue.every = 0
  ft.evals.glue.save_best = False
  return training.suite('bert_glue_suite', 'data/glue', ft, sized=bool(sizes) or runlocal)
