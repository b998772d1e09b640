"""`bert_glue_suite`: GLUE as one command. Fine-tunes a checkpoint on every task present (or a list) over N seeds,
each (task, seed) a run of the one trainer (`bert_trainer`) in workdir/{task}/seed_{seed}, and writes one table
(glue_results.json, glue_results.md) and the submission files of each task's best seed (workdir/submission/).
See configs/glue_suite.py.

The runs share this process. Measured on a shared 2-core CPU with MiniLM runs of 8 steps: one run as its own
`main.py` process took 92 s, of which its trainer 66 s (26 s of Python, TensorFlow and JAX start-up); in the suite
each run took 64-71 s, start to next start. At real size start-up is small beside training either way, and
in-process a multi-host suite is the same command on every host, with no launcher of its own.

Resuming: the sub-run rule of `projects.bert.runs.subruns`: a finished run is skipped, an interrupted one resumes
from its checkpoint (the trainer's own resume), and a finished or started run whose config.json differs from the
config the suite would run now is refused rather than mixed into the table. Each run's config is configs/glue.py's,
loaded by path (`core.app.load_config`), with `config.finetune`'s fields.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any, Dict, List, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from core import app, errors, registry
from core.evaluators import read_json, write_json
from core.setup import write_run_config
from projects.bert.runs import subruns
from projects.bert.tasks import glue as glue_tasks

# The config file of each (task, seed) run, loaded by path with the task as its variant.
GLUE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'glue.py')

RESULTS_JSON = 'glue_results.json'
RESULTS_MD = 'glue_results.md'
SUBMISSION_DIR = 'submission'
# The BERT paper's Table 1 "Average" leaves WNLI out ("the problematic WNLI set") and counts MNLI-m and MNLI-mm as
# two entries of the average, with each task's main metric (F1 for MRPC/QQP, Spearman for STS-B).
BERT_PAPER_EXCLUDED = ('wnli',)
_METRIC_NAMES = {glue_tasks.ACCURACY: 'accuracy', glue_tasks.F1: 'F1', glue_tasks.MATTHEWS: 'MCC',
                 glue_tasks.PEARSON: 'Pearson', glue_tasks.SPEARMAN: 'Spearman'}
_TASK_NAMES = {'cola': 'CoLA', 'sst2': 'SST-2', 'mrpc': 'MRPC', 'qqp': 'QQP', 'stsb': 'STS-B', 'mnli': 'MNLI',
               'qnli': 'QNLI', 'rte': 'RTE', 'wnli': 'WNLI'}


def task_list(tasks: str, data_dir: str) -> List[str]:
  """The tasks of `config.tasks`: 'all' = every task whose records are in `data_dir` (in GLUE's order), else a comma
  list of task names (`subruns.task_list`)."""
  return subruns.task_list(tasks, data_dir, known=glue_tasks.task_names(),
                           canonical=lambda name: glue_tasks.get_task(name).name,
                           meta_data_file=lambda name: glue_tasks.get_task(name).meta_data_file, benchmark='glue',
                           title='GLUE', example='cola,mrpc,stsb')


def run_config(config: ml_collections.ConfigDict, task: str, seed: int) -> ml_collections.ConfigDict:
  """The `bert_trainer` config of one (task, seed): `config.finetune` with the task's model and data and the seed."""
  run = ml_collections.ConfigDict(config.finetune.to_dict())  # unlocked copy, references resolved
  defaults = app.load_config(f'{GLUE_CONFIG}:{task}')
  run.dataset.task = defaults.dataset.task
  run.model_name = defaults.model_name
  run.rng_seed = seed
  run.dataset.seed = seed
  run.mode = 'train'
  return run


def metric_keys(task: str) -> List[str]:
  """'{split}/{metric}' of every GLUE metric of `task` on every dev split ('validation/f1', 'matched/accuracy')."""
  spec = glue_tasks.get_task(task)
  return [f'{split}/{metric}' for split in spec.eval_splits for metric in spec.metrics]


def fine_tune(run: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """One (task, seed) run in `workdir` under the sub-run rule (`subruns.run`): its results, recorded when it
  finished earlier, else trained (resumed from its checkpoint when one is there)."""

  def train(directory: str) -> Dict[str, Any]:
    with app.workdir_lock(directory):
      app.check_workdir_config(run, directory)
      return app.train_and_evaluate(run, directory)

  return subruns.run(workdir, train, name=f'{workdir} ({run.dataset.task}, seed {run.rng_seed})', config=run)['result']


def final_metrics(results: Mapping[str, Any], task: str, workdir: str) -> Dict[str, float]:
  """The task's GLUE metrics after the last step (`glue.final`) of a run's results."""
  final = (results.get('glue') or {}).get('final')
  if not final:
    raise errors.DataError(f'{os.path.join(workdir, "results.json")} has no glue.final (the dev score after the last '
                           f'step): the run did not evaluate at its end. Delete {workdir} and rerun to redo it.')
  return {k: float(final[k]) for k in metric_keys(task)}


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
  """Mean and sample standard deviation (ddof=1; 0 for one seed)."""
  v = np.asarray(values, np.float64)
  return {'mean': float(v.mean()), 'std': float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def task_score(metrics: Mapping[str, float]) -> float:
  """GLUE's per-task score: the mean of the task's metrics (MRPC/QQP accuracy and F1, STS-B Pearson and Spearman,
  MNLI matched and mismatched accuracy); the metric itself for the others."""
  return float(np.mean(list(metrics.values())))


def glue_table(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> Dict[str, Any]:
  """The suite's table from {task: {seed: {'{split}/{metric}': value}}} (each run's final dev metrics).

  Per task: the per-seed metrics, mean ± std of each, the task score per seed and its mean ± std, the best seed (by
  task score; ties: the lower seed). `glue_score`: the GLUE paper's macro average of the task scores over the tasks
  present. `bert_paper_average`: the BERT paper's Table 1 average (each task's main metric, MNLI-m and MNLI-mm as
  two entries, WNLI left out). Values are fractions, as in results.json.
  """
  tasks: Dict[str, Any] = {}
  for task, by_seed in runs.items():
    seeds = sorted(by_seed)
    keys = metric_keys(task)
    scores = {s: task_score(by_seed[s]) for s in seeds}
    tasks[task] = {
        'seeds': seeds,
        'metrics': {k: {'per_seed': [by_seed[s][k] for s in seeds], **_mean_std([by_seed[s][k] for s in seeds])}
                    for k in keys},
        'score': {'per_seed': [scores[s] for s in seeds], **_mean_std(list(scores.values()))},
        'best_seed': max(seeds, key=lambda s: (scores[s], -s)),
    }
  glue_tasks_in = list(tasks)
  out: Dict[str, Any] = {'tasks': tasks}
  out['glue_score'] = {
      'value': float(np.mean([tasks[t]['score']['mean'] for t in glue_tasks_in])) if tasks else math.nan,
      'tasks': glue_tasks_in,
      'how': 'GLUE paper: the unweighted mean over tasks of each task\'s score (the mean of its metrics)'}
  entries = []
  for task in tasks:
    if task in BERT_PAPER_EXCLUDED:
      continue
    spec = glue_tasks.get_task(task)
    for split in spec.eval_splits:  # MNLI: matched and mismatched, two entries
      entries.append((task, tasks[task]['metrics'][f'{split}/{spec.main_metric}']['mean']))
  out['bert_paper_average'] = {
      'value': float(np.mean([v for _, v in entries])) if entries else math.nan,
      'tasks': list(dict.fromkeys(t for t, _ in entries)),
      'how': 'BERT paper, Table 1: the mean of the main metrics (MRPC/QQP F1, STS-B Spearman, CoLA MCC, accuracy '
             'elsewhere; MNLI-m and MNLI-mm as two entries), WNLI left out'}
  return out


def _pct(x: float) -> str:
  return f'{100 * x:.1f}'


def table_markdown(table: Mapping[str, Any], protocol: str) -> str:
  """The table as markdown, in percent (one decimal), mean ± sample std over seeds."""
  lines = ['| task | metric | mean ± std | per seed | task score | best seed |', '|---|---|---|---|---|---|']
  for task, t in table['tasks'].items():
    keys = list(t['metrics'])
    for i, key in enumerate(keys):
      m = t['metrics'][key]
      split, metric = key.split('/')
      name = _METRIC_NAMES[metric] if split in ('validation',) else f'{split} {_METRIC_NAMES[metric]}'
      score = f'{_pct(t["score"]["mean"])} ± {_pct(t["score"]["std"])}' if i == 0 else ''
      lines.append(f'| {_TASK_NAMES[task] if i == 0 else ""} | {name} | {_pct(m["mean"])} ± {_pct(m["std"])} | '
                   f'{", ".join(_pct(v) for v in m["per_seed"])} | {score} | {t["best_seed"] if i == 0 else ""} |')
  for key in ('glue_score', 'bert_paper_average'):
    avg = table[key]
    label = 'GLUE score' if key == 'glue_score' else 'BERT-paper average'
    lines.append(f'| **{label}** | | **{_pct(avg["value"])}** | | | |')
  notes = [f'Dev scores (percent) of {protocol}; mean ± sample standard deviation over the seeds '
           f'{", ".join(map(str, _all_seeds(table)))}; task score = mean of the task\'s metrics.']
  for key in ('glue_score', 'bert_paper_average'):
    avg = table[key]
    notes.append(f'{"GLUE score" if key == "glue_score" else "BERT-paper average"}: {avg["how"]}; tasks: '
                 f'{", ".join(_TASK_NAMES[t] for t in avg["tasks"]) or "none"}.')
  return '\n'.join(lines) + '\n\n' + '\n'.join(notes) + '\n'


def _all_seeds(table: Mapping[str, Any]) -> List[int]:
  return sorted({s for t in table['tasks'].values() for s in t['seeds']})


def _copy(src: str, dst: str) -> None:
  """Copies `src` to `dst` beside-then-rename, so a crash never leaves half a submission file."""
  tmp = dst + '.tmp'
  shutil.copyfile(src, tmp)
  os.replace(tmp, dst)


def submission_files(run: ml_collections.ConfigDict, workdir: str, out_dir: str) -> Dict[str, str]:
  """The test-set submission files of the run in `workdir` (predict mode, its final weights), copied to `out_dir`;
  {split: path in out_dir}. Predicts once: a finished predict_results.json of the same weights is reused."""
  done = read_json(os.path.join(workdir, 'predict_results.json'))
  section = done.get('glue_predict') or {}
  files = section.get('files') or {}
  trained = (subruns.finished(workdir) or {}).get('result') or {}
  if not (done.get('done') and done.get('step') == trained.get('step') and files
          and all(os.path.exists(p) for p in files.values())):
    predict = ml_collections.ConfigDict(run.to_dict())
    predict.mode = 'predict'
    with app.workdir_lock(workdir):
      files = app.train_and_evaluate(predict, workdir)['glue_predict']['files']
  os.makedirs(out_dir, exist_ok=True)
  copied = {}
  for split, path in files.items():
    if jax.process_index() == 0:
      _copy(path, os.path.join(out_dir, os.path.basename(path)))
    copied[split] = os.path.join(out_dir, os.path.basename(path))
  return copied


def _has_test_records(run: ml_collections.ConfigDict) -> bool:
  dataset = registry.DATASETS.get(run.dataset_name)(run)
  return dataset.test_iter is not None


@subruns.suite_trainer('bert_glue_suite')
def run_suite(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Runs every (task, seed) of configs/glue_suite.py; writes glue_results.{json,md} and submission/."""
  t0 = time.time()
  tasks = task_list(config.tasks, config.data_dir)
  num_seeds = int(config.num_seeds)
  if not config.init_from:
    logging.warning('config.init_from is empty: every task fine-tunes RANDOM weights (near-chance scores).')
  logging.info('GLUE suite: %s x %d seeds from %s, in %s.', ', '.join(tasks), num_seeds, config.init_from or 'random',
               workdir)
  run_dirs = subruns.seed_run_dirs(workdir, tasks, num_seeds, lambda task, seed: run_config(config, task, seed))
  write_run_config(config, workdir)
  metrics: Dict[str, Dict[int, Dict[str, float]]] = {}
  for task in tasks:
    for seed, run_dir in run_dirs[task].items():
      logging.info('=== %s, seed %d (%s) ===', task, seed, run_dir)
      results = fine_tune(run_config(config, task, seed), run_dir)
      metrics.setdefault(task, {})[seed] = final_metrics(results, task, run_dir)

  table = glue_table(metrics)
  submission: Dict[str, Any] = {}
  out_dir = os.path.join(workdir, SUBMISSION_DIR)
  for task in tasks:
    best = table['tasks'][task]['best_seed']
    run = run_config(config, task, best)
    if not _has_test_records(run):
      logging.warning('%s has no test records: no submission file (prepare glue writes them from test.tsv).', task)
      continue
    submission[task] = {'seed': best, 'workdir': run_dirs[task][best],
                        'files': submission_files(run, run_dirs[task][best], out_dir)}
  for task, t in table['tasks'].items():
    t['workdirs'] = [run_dirs[task][s] for s in t['seeds']]
  protocol = 'each run after its last training step (glue.final in its results.json; the BERT paper\'s protocol)'
  summary = {'init_from': config.init_from, 'protocol': protocol, **table, 'submission': submission,
             'submission_dir': out_dir if submission else None, 'wall_time_s': time.time() - t0}
  markdown = table_markdown(table, protocol)
  if submission:
    chosen = ', '.join(f'{_TASK_NAMES[t]}: seed {s["seed"]}' for t, s in submission.items())
    markdown += (f'Submission files (test sets, best seed of each task by task score, its final weights): {out_dir} '
                 f'({chosen}).\n')
  write_json(os.path.join(workdir, RESULTS_JSON), summary)
  if jax.process_index() == 0:
    from core import atomic
    atomic.write_text(os.path.join(workdir, RESULTS_MD), markdown)
  logging.info('GLUE suite done in %.0f s: %s, %s.', summary['wall_time_s'], os.path.join(workdir, RESULTS_JSON),
               os.path.join(workdir, RESULTS_MD))
  print(markdown, flush=True)  # the table, once, on stdout
  return summary
