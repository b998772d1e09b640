"""`bert_xtreme_suite`: XTREME as one command. Runs the nine tasks of one checkpoint (or a list), each (task, seed) a
run of the one trainer in workdir/{task}/seed_{seed} with configs/xtreme.py's config of the task (`config.runs`,
configs/xtreme_suite.py): num_seeds seeds for the fine-tuned tasks (xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa),
one run (seed 0) for retrieval (bucc2018, tatoeba: no training). Writes one table (xtreme_results.json and .md:
task x language, each task's average, the four group means and the XTREME score) and workdir/submission/ in the
leaderboard layout that google-research/xtreme's evaluate.py reads (udpos panx xnli pawsx xquad mlqa tydiqa bucc2018
tatoeba, test-{lang}.tsv / .json), from one chosen run per task.

Resuming is the sub-run rule of `runs.subruns`: finished runs are skipped, an interrupted one resumes from its
checkpoint, a run of other settings is refused. A task is skipped with a warning, never a crash, when its kind has no
config yet (configs/xtreme.py's KIND_CONFIGS; then it is not in `config.runs`) or when its records are not in
data_dir; the table names it missing, gives the group means that are complete and the XTREME score only when all
nine tasks ran.

The per-task contract (what a task's config and evaluators must give, whatever its kind):
  config    `config.runs[task]`: a `bert_trainer` config of mode 'train' (retrieval: 0 training steps, which
            evaluates once) with `init_from`, `rng_seed`, and `dataset.data_dir` (and `dataset.seed` where the data
            is shuffled), which the suite sets. Its data is present when `{dataset.data_dir}/{task}_meta_data` exists
            (what `bert-prepare xtreme --task=TASK` writes; a config without dataset.data_dir is taken as present).
  scores    the run's results.json (`subruns.finished`: done, mode 'train') has exactly one section S, under any
            evaluator name, with S['task'] == the task's name in tasks/xtreme.py ('bucc2018', not 'bucc') and a
            'per_language' dict. The suite reads
              S['per_language'][lang][metric]   for metric in the task's `metrics` (tasks/xtreme.py: accuracy;
                                                f1, precision, recall; exact_match, f1), in percent, per language
                                                scored (languages without data are left out);
              S['final']['average/metric']      the task score (xtreme_metrics.task_average's 'avg_metric': the
                                                language mean of the main metric; QA (mean EM + mean F1) / 2),
                                                checked against the task_average of the per-language scores.
  files     prediction writers (`writes_predictions` evaluators) in `config.runs[task].evals` or in
            `config.writers[task]` (what the task config's `predict` variant adds); none: no files for the task,
            with a warning. Training runs go without them; they run once, in mode 'predict', on the chosen run,
            whose predict_results.json has a section with 'task' == the task's name and 'files' = {lang: path of
            its test-{lang}.tsv / .json}; those are copied to submission/{task}/.

Table (values in percent, as evaluate.py prints them): per task and language the task's main score ((EM + F1) / 2
for QA, so each row's mean is the task score) as mean ± sample std over seeds, each metric too; per task its score
(the language average) over seeds; group means and the XTREME score from the mean task scores
(`xtreme_metrics.xtreme_summary`: evaluate.py averages the nine task scores, not the four groups).

The submission run of a task (`config.submission_seed`): 'en' (default) the seed with the best English score, since
zero-shot model selection may use English dev data only (xtreme's scripts select on it; the other languages'
scores are reported, not selected on); 'average' the best task score; or a seed number. Ties: the lower seed.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from core import app, atomic, errors, registry
from core.evaluators import read_json, write_json
from core.setup import write_run_config
from projects.bert.runs import subruns
from projects.bert.tasks import xtreme, xtreme_metrics

RESULTS_JSON = 'xtreme_results.json'
RESULTS_MD = 'xtreme_results.md'
SUBMISSION_DIR = 'submission'
PREDICT_RESULTS = 'predict_results.json'
TASK_SCORE_KEY = 'average/metric'
SELECTION_RULES = ('en', 'average')


def meta_data_path(data_dir: str, task: str) -> str:
  """Where `bert-prepare xtreme --task=TASK` puts the task's meta data (datasets/xtreme_writer.meta_data_file)."""
  return os.path.join(data_dir, f'{task}_meta_data')


def run_data_dir(run: ml_collections.ConfigDict) -> str:
  """The records folder a task's run reads: its dataset's, or (retrieval: no dataset) its evaluator's."""
  dirs = [(run.get('dataset') or {}).get('data_dir')] + [e.get('data_dir') for e in run.evals.values() if e]
  return next((d for d in dirs if d), '')


def plan(config: ml_collections.ConfigDict) -> Tuple[List[str], Dict[str, str]]:
  """(tasks to run, {task: why it is missing}) of `config.tasks` ('all' or a comma list), in evaluate.py's order."""
  spec = str(config.tasks).strip()
  if spec.lower() == 'all':
    wanted = list(xtreme.XTREME_TASKS)
  else:
    try:
      wanted = list(dict.fromkeys(xtreme.get_task(n.strip()).name for n in spec.split(',') if n.strip()))
    except ValueError as e:
      raise errors.ConfigError(f'config.tasks={spec!r}: {e}') from None
    if not wanted:
      raise errors.ConfigError("config.tasks is empty: use 'all' or a comma list such as 'xnli,pawsx'.")
  missing: Dict[str, str] = {}
  for name, task in xtreme.XTREME_TASKS.items():
    if name not in wanted:
      missing[name] = 'not in config.tasks'
    elif name not in config.runs:
      missing[name] = (f'no config: configs/xtreme.py has none for XTREME {task.kind} tasks yet (KIND_CONFIGS)')
    else:
      data_dir = run_data_dir(config.runs[name])
      path = meta_data_path(data_dir, name) if data_dir else ''
      if path and not os.path.exists(path):
        missing[name] = (f'no records: {path} is missing; write them with `bert-prepare xtreme --task={name} '
                         f'--xtreme_dir=XTREME_DIR --vocab_file=VOCAB --output_dir={data_dir}`')
  return [t for t in xtreme.XTREME_TASKS if t in wanted and t not in missing], missing


def _writes_predictions(name: str, entry: Any) -> bool:
  return entry is not None and registry.EVALUATORS.get(entry.get('type') or name).writes_predictions


def writers(config: ml_collections.ConfigDict, task: str) -> Dict[str, Dict[str, Any]]:
  """The prediction writers of `task`: those in `config.runs[task].evals` and `config.writers[task]`."""
  evals = {**(config.runs[task].get('evals') or {}), **(config.writers.get(task) or {})}
  return {name: entry.to_dict() for name, entry in evals.items() if _writes_predictions(name, entry)}


def run_config(config: ml_collections.ConfigDict, task: str, seed: int) -> ml_collections.ConfigDict:
  """The trainer config of one (task, seed): `config.runs[task]` (references resolved) with the seed, without
  prediction writers (the submission run predicts once, in mode 'predict')."""
  run = ml_collections.ConfigDict(config.runs[task].to_dict())
  run.rng_seed = seed
  if run.get('dataset') is not None and 'seed' in run.dataset:
    run.dataset.seed = seed
  for name in writers(config, task):
    if name in (run.get('evals') or {}):
      del run.evals[name]
  run.mode = 'train'
  return run


def train_run(run: ml_collections.ConfigDict, directory: str, name: str) -> Dict[str, Any]:
  """One sub-run under `subruns.run`: its results (recorded when it finished, else trained or resumed)."""

  def train(d: str) -> Dict[str, Any]:
    with app.workdir_lock(d):
      app.check_workdir_config(run, d)
      return app.train_and_evaluate(run, d)

  return subruns.run(directory, train, name=name, config=run)['result']


def language_score(task_name: str, scores: Mapping[str, float]) -> float:
  """A language's entry of the table: the task's main metric; QA (EM + F1) / 2 (so a row's mean is the task score)."""
  task = xtreme.get_task(task_name)
  if task.group == xtreme.QUESTION_ANSWERING:
    return (scores[xtreme.EXACT_MATCH] + scores[xtreme.F1]) / 2
  return scores[task.main_metric]


class Unscored(Exception):
  """A run that wrote its submission files but had no gold labels to score (e.g. Tatoeba's withheld test
  alignment): the task is reported missing from the table, its files still go to submission/."""


def run_scores(results: Mapping[str, Any], task_name: str, workdir: str) -> Dict[str, Any]:
  """{'per_language': {lang: {metric: value}}, 'score': task score} of a run's results (the module's contract)."""
  task = xtreme.get_task(task_name)
  where = os.path.join(workdir, subruns.RESULTS_FILE)
  sections = [k for k, v in results.items() if isinstance(v, dict) and v.get('task') == task.name
              and isinstance(v.get('per_language'), dict)]
  if len(sections) != 1:
    raise errors.DataError(f'{where}: {len(sections)} sections with task {task.name!r} and per_language '
                           f'({", ".join(sections) or "none"}); the XTREME suite reads exactly one (see '
                           f'runs/xtreme_suite.py). Give the task\'s scoring evaluator that summary.')
  section = results[sections[0]]
  final = section.get('final') or {}
  if not section['per_language'] and section.get('files'):
    raise Unscored(f'unscored: its run wrote {len(section["files"])} submission files but had no gold labels to score '
                   f'them (the leaderboard scores them; to score here give the labels in evaluate.py\'s layout, e.g. '
                   f'--config.runs.{task_name}.evals.xtreme_retrieval.labels_dir=LABELS)')
  if TASK_SCORE_KEY not in final:
    raise errors.DataError(f'{where}: {sections[0]}.final has no {TASK_SCORE_KEY!r}: the run did not evaluate at '
                           f'its end. Delete {workdir} and rerun to redo it.')
  per_language: Dict[str, Dict[str, float]] = {}
  for lang, scores in section['per_language'].items():
    absent = [m for m in task.metrics if m not in scores]
    if absent:
      raise errors.DataError(f'{where}: {sections[0]}.per_language.{lang} lacks {", ".join(absent)} (the task\'s '
                             f'metrics are {", ".join(task.metrics)}).')
    per_language[lang] = {m: float(scores[m]) for m in task.metrics}
  if not per_language:
    raise errors.DataError(f'{where}: {sections[0]}.per_language is empty: no language was scored.')
  score = float(final[TASK_SCORE_KEY])
  expected = xtreme_metrics.task_average(task.name, per_language)['avg_metric']
  if not math.isclose(score, expected, rel_tol=1e-6, abs_tol=1e-6):
    raise errors.DataError(f'{where}: {sections[0]}.final.{TASK_SCORE_KEY} = {score} but the task average of its '
                           f'per_language scores is {expected}: the evaluator must report evaluate.py\'s avg_metric.')
  return {'per_language': per_language, 'score': score}


def _mean_std(values: Sequence[float]) -> Dict[str, Any]:
  v = np.asarray(values, np.float64)
  return {'per_seed': [float(x) for x in v], 'mean': float(v.mean()),
          'std': float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def check_submission_seed(rule: Any, num_seeds: int) -> None:
  """Refuses a `config.submission_seed` that names no rule, or a seed the suite does not run."""
  text = str(rule).strip()
  if text.lstrip('-').isdigit():
    if not 0 <= int(text) < num_seeds:
      raise errors.ConfigError(f'config.submission_seed={rule!r}: the runs use seeds 0 .. {num_seeds - 1}.')
  elif text not in SELECTION_RULES:
    raise errors.ConfigError(f'config.submission_seed={rule!r}: use one of {SELECTION_RULES} or a seed number.')


def choose_seed(task_name: str, by_seed: Mapping[int, Mapping[str, Any]], rule: Any) -> Tuple[int, str]:
  """(seed, why) of the run whose predictions go to submission/ (`config.submission_seed`, module docstring)."""
  seeds = sorted(by_seed)
  text = str(rule).strip()
  if len(seeds) == 1:
    return seeds[0], 'its only run'
  check_submission_seed(rule, max(seeds) + 1)
  if text.lstrip('-').isdigit():
    return int(text), f'seed {text} (config.submission_seed)'
  if text == 'en' and all(xtreme.TARGET_LANGUAGE in by_seed[s]['per_language'] for s in seeds):
    key = {s: language_score(task_name, by_seed[s]['per_language'][xtreme.TARGET_LANGUAGE]) for s in seeds}
    why = 'the best English score: zero-shot selection sees English dev only'
  else:
    key = {s: by_seed[s]['score'] for s in seeds}
    why = 'the best language average' + (': no English score to select on' if text == 'en' else '')
  return max(seeds, key=lambda s: (key[s], -s)), why


def xtreme_table(runs: Mapping[str, Mapping[int, Mapping[str, Any]]], missing: Mapping[str, str],
                 submission_seed: Any = 'en') -> Dict[str, Any]:
  """The suite's table from {task: {seed: run_scores(...)}} and {task: why missing}: per task and language each
  metric and the language score over seeds, the task score over seeds, the chosen seed; the group means that are
  complete and the XTREME score (all nine tasks), from the mean task scores."""
  tasks: Dict[str, Any] = {}
  for name in (t for t in xtreme.XTREME_TASKS if t in runs):
    by_seed = runs[name]
    seeds = sorted(by_seed)
    task = xtreme.get_task(name)
    langs = [lang for lang in task.languages if all(lang in by_seed[s]['per_language'] for s in seeds)]
    languages = {}
    for lang in langs:
      per_seed = [by_seed[s]['per_language'][lang] for s in seeds]
      languages[lang] = {**_mean_std([language_score(name, p) for p in per_seed]),
                         'metrics': {m: _mean_std([p[m] for p in per_seed]) for m in task.metrics}}
    seed, why = choose_seed(name, by_seed, submission_seed)
    tasks[name] = {
        'title': task.title, 'group': task.group, 'seeds': seeds, 'languages': languages,
        'language_score': '(exact_match + f1) / 2' if task.group == xtreme.QUESTION_ANSWERING else task.main_metric,
        'score': _mean_std([by_seed[s]['score'] for s in seeds]), 'submission_seed': seed, 'selected_by': why}
  summary = xtreme_metrics.xtreme_summary({name: t['score']['mean'] for name, t in tasks.items()})
  groups = {}
  for group, names in xtreme.GROUP_TASKS.items():
    absent = [n for n in names if n not in tasks]
    groups[group] = {'title': xtreme.GROUP_TITLES[group], 'tasks': list(names), 'value': summary.get(group),
                     'missing': absent}
  absent = [n for n in xtreme.XTREME_TASKS if n not in tasks]
  return {'tasks': tasks, 'groups': groups,
          'xtreme_score': {'value': summary.get('xtreme_score'), 'missing': absent,
                           'how': 'the mean of the nine task scores (evaluate.py\'s all_task; QA tasks scored '
                                  '(EM + F1) / 2)' + (f'; not computed: {", ".join(absent)} missing' if absent
                                                      else '')},
          'missing': {n: missing.get(n, 'not run') for n in absent}}


def _cell(m: Optional[Mapping[str, Any]], std: bool = True) -> str:
  if m is None or m.get('mean') is None:
    return 'n/a'
  return f'{m["mean"]:.1f} ± {m["std"]:.1f}' if std else f'{m["mean"]:.1f}'


def table_markdown(table: Mapping[str, Any], init_from: str) -> str:
  """The table as markdown, percent with one decimal, mean ± sample std over seeds."""
  lines = [f'XTREME of {init_from or "random weights"}: scores in percent after each run\'s last step (the '
           f'evaluators\' final scores), mean ± sample std over seeds.', '',
           '| task | group | language score | task score | per seed | submission seed |', '|---|---|---|---|---|---|']
  for name in xtreme.XTREME_TASKS:
    task = xtreme.get_task(name)
    t = table['tasks'].get(name)
    if t is None:
      lines.append(f'| {task.title} | {xtreme.GROUP_TITLES[task.group]} | | missing | | |')
      continue
    lines.append(f'| {task.title} | {xtreme.GROUP_TITLES[task.group]} | {t["language_score"]} | {_cell(t["score"])} '
                 f'| {", ".join(f"{v:.1f}" for v in t["score"]["per_seed"])} | {t["submission_seed"]} |')
  for group, g in table['groups'].items():
    value = f'{g["value"]:.1f}' if g['value'] is not None else f'n/a (missing {", ".join(g["missing"])})'
    lines.append(f'| **{g["title"]}** (mean of {", ".join(g["tasks"])}) | | | {value} | | |')
  score = table['xtreme_score']
  lines.append(f'| **XTREME score** | | | **{score["value"]:.1f}** | | |' if score['value'] is not None else
               '| **XTREME score** | | | n/a | | |')
  lines += ['', f'XTREME score: {score["how"]}.']
  if table['missing']:
    lines += ['', 'Missing tasks:'] + [f'- {n}: {why}' for n, why in table['missing'].items()]
  for name, t in table['tasks'].items():
    langs = list(t['languages'])
    lines += ['', f'{t["title"]} per language ({t["language_score"]}; seeds {", ".join(map(str, t["seeds"]))}):', '',
              '| ' + ' | '.join(langs + ['avg']) + ' |', '|' + '---|' * (len(langs) + 1),
              '| ' + ' | '.join([_cell(t['languages'][lang]) for lang in langs] + [_cell(t['score'])]) + ' |']
  return '\n'.join(lines) + '\n'


def _prediction_files(results: Mapping[str, Any], task_name: str) -> Dict[str, str]:
  files: Dict[str, str] = {}
  for v in results.values():
    if isinstance(v, dict) and v.get('task') == task_name and isinstance(v.get('files'), dict):
      files.update(v['files'])
  return files


def submission_files(config: ml_collections.ConfigDict, task_name: str, seed: int, workdir: str,
                     out_dir: str) -> Dict[str, str]:
  """The leaderboard files of the run in `workdir` (predicted once in mode 'predict' with `config.writers[task]`,
  reused while its predict_results.json is of the trained step and its files are there), copied into
  out_dir/{task}/ (older files of the task there removed); {lang: path in out_dir}."""
  task = xtreme.get_task(task_name)
  done = read_json(os.path.join(workdir, PREDICT_RESULTS))
  trained = (subruns.finished(workdir) or {}).get('result') or {}
  files = _prediction_files(done, task.name)
  if not (done.get('done') and done.get('step') == trained.get('step') and files
          and all(os.path.exists(p) for p in files.values())):
    predict = run_config(config, task.name, seed)
    for name, entry in writers(config, task.name).items():
      predict.evals[name] = ml_collections.ConfigDict(entry)
    predict.mode = 'predict'
    with app.workdir_lock(workdir):
      files = _prediction_files(app.train_and_evaluate(predict, workdir), task.name)
  return copy_files(task, files, out_dir)


def copy_files(task: xtreme.XtremeTask, files: Mapping[str, str], out_dir: str) -> Dict[str, str]:
  """A run's prediction files {lang: path} copied into out_dir/{task}/ (the task's other files there removed)."""
  copied = {lang: os.path.join(out_dir, task.submission_file(lang)) for lang in files}
  if jax.process_index() == 0:
    folder = os.path.join(out_dir, task.name)
    os.makedirs(folder, exist_ok=True)
    for lang, path in files.items():  # beside, then renamed: never half a file
      shutil.copyfile(path, copied[lang] + '.tmp')
      os.replace(copied[lang] + '.tmp', copied[lang])
    for stale in set(os.listdir(folder)) - {os.path.basename(p) for p in copied.values()}:
      os.remove(os.path.join(folder, stale))  # another run's files (an earlier chosen seed, other languages)
  return copied


@subruns.suite_trainer('bert_xtreme_suite')
def run_suite(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Runs every (task, seed) of configs/xtreme_suite.py; writes xtreme_results.{json,md} and submission/."""
  t0 = time.time()
  tasks, missing = plan(config)
  for name, why in missing.items():
    if why != 'not in config.tasks':
      logging.warning('XTREME %s skipped: %s.', name, why)
  if not tasks:
    raise errors.MissingFileError(f'No XTREME task can run: {"; ".join(f"{n}: {w}" for n, w in missing.items())}.')
  if not config.init_from:
    logging.warning('config.init_from is empty: every task uses RANDOM weights (near-chance scores).')
  check_submission_seed(config.submission_seed, int(config.num_seeds))  # refused before anything runs
  trained = [t for t in tasks if xtreme.get_task(t).is_trained]
  dirs = {**subruns.seed_run_dirs(workdir, trained, config.num_seeds, lambda t, s: run_config(config, t, s)),
          **subruns.seed_run_dirs(workdir, [t for t in tasks if t not in trained], 1,
                                  lambda t, s: run_config(config, t, s))}
  write_run_config(config, workdir)
  logging.info('XTREME suite: %s (%d seeds where trained) from %s, in %s.', ', '.join(tasks), int(config.num_seeds),
               config.init_from or 'random weights', workdir)
  scores: Dict[str, Dict[int, Dict[str, Any]]] = {}
  scored_files: Dict[str, Dict[int, Dict[str, str]]] = {}  # retrieval's scoring evaluator writes its files itself
  for name in tasks:
    for seed, run_dir in dirs[name].items():
      results = train_run(run_config(config, name, seed), run_dir, f'XTREME {name} seed {seed} ({run_dir})')
      scored_files.setdefault(name, {})[seed] = _prediction_files(results, name)
      try:
        scores.setdefault(name, {})[seed] = run_scores(results, name, run_dir)
      except Unscored as e:
        scores.pop(name, None)
        missing[name] = str(e)
        logging.warning('XTREME %s: %s.', name, e)
        break
  table = xtreme_table(scores, missing, config.submission_seed)
  out_dir = os.path.join(workdir, SUBMISSION_DIR)
  submission: Dict[str, Any] = {}
  for name, t in table['tasks'].items():
    t['workdirs'] = [dirs[name][s] for s in t['seeds']]
    seed = t['submission_seed']
    if not writers(config, name) and scored_files[name].get(seed):
      submission[name] = {'seed': seed, 'selected_by': t['selected_by'], 'workdir': dirs[name][seed],
                          'files': copy_files(xtreme.get_task(name), scored_files[name][seed], out_dir)}
      continue
    if not writers(config, name):
      logging.warning('XTREME %s: its config has no prediction writer (in its evals or added by its `predict` '
                      'variant): no submission files.', name)
      continue
    submission[name] = {'seed': seed, 'selected_by': t['selected_by'], 'workdir': dirs[name][seed],
                        'files': submission_files(config, name, seed, dirs[name][seed], out_dir)}
  for name in [n for n in tasks if n not in table['tasks'] and scored_files.get(n, {}).get(0)]:  # unscored
    submission[name] = {'seed': 0, 'selected_by': 'the only run (unscored)', 'workdir': dirs[name][0],
                        'files': copy_files(xtreme.get_task(name), scored_files[name][0], out_dir)}
  summary = {'init_from': config.init_from, **table, 'submission': submission, 'submission_dir': out_dir,
             'wall_time_s': time.time() - t0}
  markdown = table_markdown(table, config.init_from)
  if submission:
    chosen = ', '.join(f'{n}: seed {s["seed"]} ({s["selected_by"]})' for n, s in submission.items())
    markdown += f'\nLeaderboard folder (evaluate.py\'s layout, final weights): {out_dir}; runs: {chosen}.\n'
  write_json(os.path.join(workdir, RESULTS_JSON), summary)
  if jax.process_index() == 0:
    atomic.write_text(os.path.join(workdir, RESULTS_MD), markdown)
  logging.info('XTREME suite done in %.0f s: %s, %s.', summary['wall_time_s'], os.path.join(workdir, RESULTS_JSON),
               os.path.join(workdir, RESULTS_MD))
  print(markdown, flush=True)
  return summary
