"""`bert_superglue_suite`: SuperGLUE as one command. Fine-tunes a checkpoint on the 8 tasks (or a list) over N seeds,
each (task, seed) a run of the one trainer in workdir/{task}/seed_{seed} (configs/superglue.py's config of the task,
with `config.finetune`'s fields), and writes one table (superglue_results.json, superglue_results.md) and the
leaderboard files of each task's best seed in workdir/submission/ (zip-ready: BoolQ.jsonl ... AX-g.jsonl; AX-b and
AX-g come from the RTE run, as the benchmark prescribes). See configs/superglue_suite.py.

Resuming is GLUE's suite's (`glue_suite.fine_tune`, the sub-run rule of `runs.subruns`): finished runs are skipped,
an interrupted one resumes from its checkpoint, a run of other settings is refused.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Dict, List, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from core import app, atomic, errors
from core.evaluators import read_json, write_json
from core.setup import write_run_config
from projects.bert.runs import subruns
from projects.bert.runs.glue_suite import fine_tune
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_metrics

SUPERGLUE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
                                'superglue.py')
RESULTS_JSON = 'superglue_results.json'
RESULTS_MD = 'superglue_results.md'
SUBMISSION_DIR = 'submission'
_DIAGNOSTIC_KEYS = {'axb': ('test/matthews_corr',), 'axg': ('test/gender_parity', 'test/accuracy')}


def _scored_task(name: str) -> str:
  task = sg.get_task(name)
  if task.diagnostic:
    raise errors.ConfigError(f'{task.official_name} is scored with the RTE runs; list rte instead.')
  return task.name


def task_list(tasks: str, data_dir: str) -> List[str]:
  """'all' = the 8 scored tasks whose records are in `data_dir`; else a comma list of scored task names
  (`subruns.task_list`)."""
  return subruns.task_list(tasks, data_dir, known=sg.SCORED_TASKS, canonical=_scored_task,
                           meta_data_file=lambda name: f'{name}_meta_data', benchmark='superglue',
                           title='SuperGLUE', example='boolq,cb,rte')


def run_config(config: ml_collections.ConfigDict, task: str, seed: int) -> ml_collections.ConfigDict:
  """One (task, seed) run: `config.finetune` with the task's model, data and evaluators (configs/superglue.py's:
  RTE's score and predict the diagnostics) and the seed; dev scored only after the last step, no best/ copy."""
  run = ml_collections.ConfigDict(config.finetune.to_dict())
  defaults = app.load_config(f'{SUPERGLUE_CONFIG}:{task}')
  run.dataset.task = defaults.dataset.task
  run.model_name = defaults.model_name
  run.evals = ml_collections.ConfigDict(defaults.evals.to_dict())
  run.evals.superglue.every = 0
  run.evals.superglue.save_best = False
  for entry in run.evals.values():
    if entry.get('weights'):
      entry.weights = 'final'  # the suite's runs keep no best/ copy
  run.rng_seed = run.dataset.seed = seed
  run.mode = 'train'
  return run


def final_metrics(results: Mapping[str, Any], section: str, keys: Sequence[str], workdir: str) -> Dict[str, float]:
  final = (results.get(section) or {}).get('final')
  if not final:
    raise errors.DataError(f'{os.path.join(workdir, "results.json")} has no {section}.final: the run did not '
                           f'evaluate at its end. Delete {workdir} and rerun to redo it.')
  return {k: float(final[k]) for k in keys}


def _mean_std(values: Sequence[float]) -> Dict[str, Any]:
  v = np.asarray(values, np.float64)
  return {'per_seed': [float(x) for x in v], 'mean': float(v.mean()),
          'std': float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def superglue_table(runs: Mapping[str, Mapping[int, Mapping[str, float]]],
                    diagnostics: Mapping[str, Mapping[int, Mapping[str, float]]]) -> Dict[str, Any]:
  """From {task: {seed: {'validation/{metric}': value}}} and {diagnostic: {seed: {'test/{metric}': value}}}: per task
  each metric and the task score as mean ± std over seeds and the best seed (by task score; ties: the lower seed);
  the SuperGLUE score (mean of the 8 task scores; None unless all 8 ran); the diagnostics beside it."""
  tasks: Dict[str, Any] = {}
  for task, by_seed in runs.items():
    seeds = sorted(by_seed)
    scores = {s: superglue_metrics.task_score(task, {k.split('/')[1]: v for k, v in by_seed[s].items()})
              for s in seeds}
    tasks[task] = {'seeds': seeds, 'metrics': {k: _mean_std([by_seed[s][k] for s in seeds]) for k in by_seed[seeds[0]]},
                   'score': _mean_std([scores[s] for s in seeds]),
                   'best_seed': max(seeds, key=lambda s: (scores[s], -s))}
  complete = all(t in tasks for t in sg.SCORED_TASKS)
  score = superglue_metrics.superglue_score({t: v['score']['mean'] for t, v in tasks.items()}) if complete else None
  return {'tasks': tasks,
          'superglue_score': {'value': score, 'how': 'the mean of the 8 task scores (two-metric tasks averaged '
                              'first)' + ('' if complete else f'; not computed: only {", ".join(tasks)} ran')},
          'diagnostics': {d: {k: _mean_std([by_seed[s][k] for s in sorted(by_seed)])
                              for k in _DIAGNOSTIC_KEYS[d]} for d, by_seed in diagnostics.items()}}


def _pct(x: float) -> str:
  return f'{100 * x:.1f}'


def table_markdown(table: Mapping[str, Any]) -> str:
  lines = ['| task | metric | mean ± std | per seed | task score | best seed |', '|---|---|---|---|---|---|']
  for task, t in table['tasks'].items():
    for i, (key, m) in enumerate(t['metrics'].items()):
      head = (sg.get_task(task).official_name, f'{_pct(t["score"]["mean"])} ± {_pct(t["score"]["std"])}',
              str(t['best_seed'])) if i == 0 else ('', '', '')
      lines.append(f'| {head[0]} | {key.split("/")[1]} | {_pct(m["mean"])} ± {_pct(m["std"])} | '
                   f'{", ".join(_pct(v) for v in m["per_seed"])} | {head[1]} | {head[2]} |')
  value = table['superglue_score']['value']
  lines.append(f'| **SuperGLUE score** | | **{_pct(value) if value is not None else "n/a"}** | | | |')
  for d, metrics in table['diagnostics'].items():
    for key, m in metrics.items():
      lines.append(f'| {sg.get_task(d).official_name} (RTE runs) | {key.split("/")[1]} | {_pct(m["mean"])} ± '
                   f'{_pct(m["std"])} | {", ".join(_pct(v) for v in m["per_seed"])} | | |')
  how = table['superglue_score']['how']
  return '\n'.join(lines) + f'\n\nDev scores (percent) after each run\'s last step; SuperGLUE score: {how}.\n'


def submission_files(run: ml_collections.ConfigDict, workdir: str, out_dir: str) -> Dict[str, str]:
  """The leaderboard files of the run in `workdir` (its final weights; predicted once, reused when its
  predict_results.json is of the same step), copied to `out_dir`; {task: path in out_dir}."""
  done = read_json(os.path.join(workdir, 'predict_results.json'))
  trained = (subruns.finished(workdir) or {}).get('result') or {}
  files = {v['task']: v['file'] for v in done.values() if isinstance(v, dict) and v.get('file')}
  if not (done.get('done') and done.get('step') == trained.get('step') and files
          and all(os.path.exists(p) for p in files.values())):
    predict = ml_collections.ConfigDict(run.to_dict())
    predict.mode = 'predict'
    with app.workdir_lock(workdir):
      results = app.train_and_evaluate(predict, workdir)
    files = {v['task']: v['file'] for v in results.values() if isinstance(v, dict) and v.get('file')}
  os.makedirs(out_dir, exist_ok=True)
  copied = {}
  for task, path in files.items():
    dst = os.path.join(out_dir, os.path.basename(path))
    if jax.process_index() == 0:  # beside, then renamed: never half a file
      shutil.copyfile(path, dst + '.tmp')
      os.replace(dst + '.tmp', dst)
    copied[task] = dst
  return copied


@subruns.suite_trainer('bert_superglue_suite')
def run_suite(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Runs every (task, seed) of configs/superglue_suite.py; writes superglue_results.{json,md} and submission/."""
  t0 = time.time()
  tasks = task_list(config.tasks, config.data_dir)
  run_dirs = subruns.seed_run_dirs(workdir, tasks, config.num_seeds, lambda task, seed: run_config(config, task, seed))
  write_run_config(config, workdir)
  metrics: Dict[str, Dict[int, Dict[str, float]]] = {}
  diagnostics: Dict[str, Dict[int, Dict[str, float]]] = {}
  for task in tasks:
    keys = [f'validation/{m}' for m in sg.get_task(task).metrics]
    for seed, run_dir in run_dirs[task].items():
      logging.info('=== %s, seed %d (%s) ===', task, seed, run_dir)
      results = fine_tune(run_config(config, task, seed), run_dir)
      metrics.setdefault(task, {})[seed] = final_metrics(results, 'superglue', keys, run_dir)
      for d in (d for d in sg.DIAGNOSTIC_TASKS if sg.get_task(d).predicted_with == task):
        diagnostics.setdefault(d, {})[seed] = final_metrics(results, f'superglue_{d}', _DIAGNOSTIC_KEYS[d], run_dir)
  table = superglue_table(metrics, diagnostics)
  out_dir = os.path.join(workdir, SUBMISSION_DIR)
  submission = {}
  for task in tasks:
    best = table['tasks'][task]['best_seed']
    submission[task] = {'seed': best, 'files': submission_files(run_config(config, task, best),
                                                                run_dirs[task][best], out_dir)}
  summary = {'init_from': config.init_from, **table, 'submission': submission, 'submission_dir': out_dir,
             'wall_time_s': time.time() - t0}
  markdown = table_markdown(table) + f'Leaderboard files (best seed of each task): {out_dir}.\n'
  write_json(os.path.join(workdir, RESULTS_JSON), summary)
  if jax.process_index() == 0:
    atomic.write_text(os.path.join(workdir, RESULTS_MD), markdown)
  print(markdown, flush=True)
  return summary
