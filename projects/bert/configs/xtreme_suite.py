r"""XTREME as a suite: the nine tasks of one checkpoint, several seeds where a task fine-tunes, one table and the
leaderboard folder. Variant: `[SIZE][,RECIPE][,runlocal]`, passed on to every task's config; without SIZE the
architecture comes from `init_from` (mBERT converted: leave SIZE out).

  bert-prepare xtreme --task=all --xtreme_dir=XTREME_DIR --vocab_file=mbert/vocab.txt --output_dir=data/xtreme
  python main.py --config=projects/bert/configs/xtreme_suite.py --workdir=$WD/xtreme \
      --config.init_from=$WD/mbert --config.num_seeds=3
  python main.py --config=projects/bert/configs/xtreme_suite.py --workdir=$WD/xtreme \
      --config.init_from=$WD/mbert --config.tasks=xnli,pawsx --config.runs.xnli.schedule.base_lr=3e-5

`runs.{task}` is configs/xtreme.py's config of the task (`xtreme.py:TASK[,SIZE][,RECIPE][,runlocal]`) for every
task whose kind configs/xtreme.py writes (KIND_CONFIGS), with the suite's `init_from` and `data_dir`; the suite
sets the seed per run (rng_seed, and dataset.seed where the dataset has one) and trains without prediction writers.
Tasks whose kind has no config yet are not in `runs`: the suite names them missing. Every run is scored once, after
its last step (the protocol number, as in the GLUE suite: evaluators' `every` 0, no best/ copies); `writers.{task}`
are the prediction writers that the task's `predict` variant adds (weights 'final'), run once in predict mode on the
run whose files go to submission/.

Each (task, seed) runs in workdir/{task}/seed_{seed} (retrieval: seed_0 only); a rerun skips finished runs, resumes
an interrupted one and refuses a run of other settings (runs/subruns.py). Writes workdir/xtreme_results.json and
.md (task x language, task averages, group means, the XTREME score) and workdir/submission/ (runs/xtreme_suite.py).
"""

import ml_collections

from projects.bert.configs import variants
from projects.bert.configs import xtreme as xtreme_configs
from projects.bert.tasks import xtreme as xtreme_tasks

VARIANT = variants.Spec('xtreme_suite.py', sizes=True, recipes=True, flags=('runlocal',))

FIELD_DOCS = {
    'trainer_name': "registry name of the trainer ('bert_xtreme_suite')",
    'tasks': "XTREME tasks run: 'all' (the nine; those without a config or records are named and skipped) or a "
             "comma list (bucc = bucc2018)",
    'num_seeds': 'runs per fine-tuned task, seeds 0 .. num_seeds - 1 (rng_seed and data order); retrieval runs once',
    'init_from': "the checkpoint every run starts from (a converted checkpoint, e.g. mBERT, or a run's workdir)",
    'data_dir': 'the --output_dir of `bert-prepare xtreme` (one {task}_meta_data per prepared task)',
    'submission_seed': "whose run fills submission/: 'en' (the seed with the best English score: zero-shot model "
                       "selection sees English dev data only), 'average' (best language average) or a seed number",
    **{f'runs.*.{k}': v for k, v in xtreme_configs.FIELD_DOCS.items()},
    'runs.*': "configs/xtreme.py's config of the task (set any field for one task: --config.runs.xnli.FIELD=V)",
    'writers.*': "prediction writers of the task's `predict` variant, run on the submission run (weights 'final')",
}


def _suite_run(task: str, words: list, config: ml_collections.ConfigDict):
  """(train config, prediction writers) of `task`: configs/xtreme.py's, scored after the last step only."""
  run = xtreme_configs.get_config(','.join([task, *words]))
  predicting = xtreme_configs.get_config(','.join([task, *words, 'predict']))
  writers = ml_collections.ConfigDict({name: entry.to_dict() for name, entry in predicting.evals.items()
                                       if name not in run.evals and entry is not None})
  for entry in run.evals.values():
    if entry is None:
      continue
    if 'every' in entry:
      entry.every = 0
    if 'save_best' in entry:
      entry.save_best = False
  for entry in [*run.evals.values(), *writers.values()]:
    if entry is not None and 'weights' in entry:
      entry.weights = 'final'  # the suite's runs keep no best/ copy
  run.init_from = config.get_ref('init_from')
  if 'data_dir' in run.get('dataset', {}):
    run.dataset.data_dir = config.get_ref('data_dir')
  for entry in run.evals.values():  # retrieval reads its records in its evaluator (no dataset)
    if entry is not None and 'data_dir' in entry:
      entry.data_dir = config.get_ref('data_dir')
  return run, writers


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  words = [w for w in (variant.size, variant.recipe) if w]
  words += ['runlocal'] if 'runlocal' in variant.flags else []

  config = ml_collections.ConfigDict()
  config.trainer_name = 'bert_xtreme_suite'
  config.tasks = 'all'
  config.num_seeds = 3
  config.init_from = ml_collections.FieldReference('', field_type=str)
  config.data_dir = ml_collections.FieldReference('data/xtreme', field_type=str)
  config.submission_seed = 'en'
  config.runs = ml_collections.ConfigDict()
  config.writers = ml_collections.ConfigDict()
  # One config per task whose kind configs/xtreme.py writes; the others are reported missing by the suite.
  for name, task in xtreme_tasks.XTREME_TASKS.items():
    if task.kind in xtreme_configs.KIND_CONFIGS:
      config.runs[name], config.writers[name] = _suite_run(name, words, config)
  return config
