"""The one rule for the sub-runs of a run of runs (the demo's stages, the GLUE suite's (task, seed) runs, and the
suites to come): skip what finished, resume what was interrupted, refuse a directory of other settings.

  done = subruns.run(os.path.join(workdir, 'mrpc', 'seed_0'), lambda d: app.train_and_evaluate(cfg, d),
                     name='mrpc seed 0', config=cfg)
  done['result'], done['wall_time_s']

A sub-run owns one directory. `run`:
  1. refuses it (`errors.ConfigError`) when `config` is given and the directory's config.json is of another run:
     a field both hold differs, other than logging and checkpointing (`check_settings`; callers that run many
     sub-runs call it for all of them first, so a wrong workdir is refused at once, not after hours);
  2. skips it when it finished (`finished`): returns what was recorded, and runs nothing;
  3. else runs `fn(directory)`: a training run resumes from its checkpoints by itself (the trainer's own resume);
     a result that says `preempted` raises `SubrunInterrupted` (the same command resumes it);
  4. records it finished: `DONE_FILE` = {'result': fn's result, 'wall_time_s': its wall time}.

When is a sub-run finished: a training run (its directory holds the trainer's results.json) when results.json says
`done` in mode 'train' (a DONE_FILE beside an unfinished results.json does not count: the run was reset or its
results are of a resumed, unfinished attempt); any other sub-run (data writing, conversion, a group of runs) when
DONE_FILE is there.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import ml_collections
from absl import logging
from flax import traverse_util

from core import errors, registry
from core.evaluators import read_json, write_json
from core.setup import CONFIG_FILE, read_run_config

DONE_FILE = 'stage_done.json'
RESULTS_FILE = 'results.json'  # what the trainer writes (`done`, `mode`, `wall_time_s`, its evaluators' sections)
# Fields that do not change a run's result: a finished run with other values is still the same run.
BOOKKEEPING = ('mode', 'log_every', 'checkpoint_every', 'checkpoint.')


class SubrunInterrupted(errors.UserError, RuntimeError):
  """A sub-run stopped early (preemption): the same command resumes it."""


def _flat(d: Mapping[str, Any]) -> Dict[str, Any]:
  return traverse_util.flatten_dict(json.loads(json.dumps(d)), sep='.')


def check_settings(config: ml_collections.ConfigDict, directory: str) -> None:
  """Refuses `directory` when its config.json is of another run than `config` (a field both have differs, other than
  logging and checkpointing): its results would be reported as those of the new config."""
  saved = read_run_config(directory)
  if saved is None:
    return
  old, new = _flat(saved.to_dict()), _flat(json.loads(config.to_json_best_effort()))
  differs = [k for k in sorted(new) if k in old and old[k] != new[k] and not k.startswith(BOOKKEEPING)]
  if differs:
    details = '; '.join(f'{k}: {old[k]!r} -> {new[k]!r}' for k in differs[:5])
    raise errors.ConfigError(f'{os.path.join(directory, CONFIG_FILE)} is of another run ({details}). Finished and '
                             f'interrupted runs of a workdir are skipped or resumed as they are: use a new --workdir '
                             f'for other settings (or delete {directory} to redo that run).')


def finished(directory: str) -> Optional[Dict[str, Any]]:
  """{'result', 'wall_time_s'} of the finished sub-run in `directory` (see the module docstring), else None."""
  results = read_json(os.path.join(directory, RESULTS_FILE))
  marker = read_json(os.path.join(directory, DONE_FILE))
  if results:  # a training run: the trainer's results.json says whether it finished
    if not (results.get('done') and results.get('mode') == 'train'):
      return None
    return marker or {'result': results, 'wall_time_s': results.get('wall_time_s', 0.0)}
  return marker or None


def run(directory: str, fn: Callable[[str], Dict[str, Any]], name: str,
        config: Optional[ml_collections.ConfigDict] = None) -> Dict[str, Any]:
  """The sub-run `fn(directory)` under the rule of the module docstring; returns {'result', 'wall_time_s'}.

  `name` names it in the log ('Stage pretrain', 'mrpc seed 0'); `config`, when the sub-run is a training run, is
  the config it runs with (its directory is refused when it holds a run of other settings).
  """
  if config is not None:
    check_settings(config, directory)
  done = finished(directory)
  if done is not None:
    logging.info('%s finished earlier (%s): skipping.', name, directory)
    return done
  logging.info('=== %s ===', name)
  t0 = time.time()
  result = fn(directory)
  if result.get('preempted'):
    raise SubrunInterrupted(f'{name} stopped at step {result.get("step")} (preempted), in {directory}. Rerun the '
                            f'same command: finished runs are skipped and this one resumes from its checkpoint.')
  done = {'result': result, 'wall_time_s': time.time() - t0}
  write_json(os.path.join(directory, DONE_FILE), done)
  return done


def seed_run_dirs(workdir: str, tasks: Sequence[str], num_seeds: Any,
                  run_config: Callable[[str, int], ml_collections.ConfigDict]) -> Dict[str, Dict[int, str]]:
  """{task: {seed: workdir/{task}/seed_{seed}}} of a suite's runs, each checked against `run_config(task, seed)`
  (`check_settings`) before anything runs: a workdir of other settings is refused at once, not after hours."""
  num_seeds = int(num_seeds)
  if num_seeds < 1:
    raise errors.ConfigError(f'config.num_seeds={num_seeds}: use 1 or more.')
  dirs = {t: {s: os.path.join(workdir, t, f'seed_{s}') for s in range(num_seeds)} for t in tasks}
  for task, by_seed in dirs.items():
    for seed, directory in by_seed.items():
      check_settings(run_config(task, seed), directory)
  return dirs


def task_list(tasks: str, data_dir: str, *, known: Sequence[str], canonical: Callable[[str], str],
              meta_data_file: Callable[[str], str], benchmark: str, title: str, example: str) -> List[str]:
  """The tasks of a suite's `config.tasks`: 'all' = every task of `known` whose meta data (`meta_data_file(task)`)
  is in `data_dir`, in that order; else a comma list of names, each made canonical by `canonical` (a ValueError or
  ConfigError for an unknown or unsuitable name, which names the fix). `benchmark` ('glue', 'superglue') names the
  `prepare` command, `title` ('GLUE', 'SuperGLUE') the data; `example` is a comma list to suggest."""
  if str(tasks).strip().lower() == 'all':
    found = [t for t in known if os.path.exists(os.path.join(data_dir, meta_data_file(t)))]
    if not found:
      raise errors.MissingFileError(f'config.tasks=all but {data_dir} holds no {title} records: write them with '
                                    f'`python -m projects.bert.datasets.prepare {benchmark} --task=all '
                                    f'--output_dir={data_dir} ...`, or set config.data_dir.')
    return found
  names = []
  for name in str(tasks).split(','):
    if name.strip():
      try:
        names.append(canonical(name.strip()))
      except ValueError as e:
        raise errors.ConfigError(f'config.tasks={tasks!r}: {e}') from None
  if not names:
    raise errors.ConfigError(f"config.tasks is empty: use 'all' or a comma list such as '{example}'.")
  return list(dict.fromkeys(names))


def suite_trainer(name: str) -> Callable[[Callable[[ml_collections.ConfigDict, str], Dict[str, Any]]],
                                         Callable[..., Dict[str, Any]]]:
  """Registers `fn(config, workdir) -> results` as the trainer `name` of a run of runs: each sub-run builds its own
  model, data and writer from the registries, so the trainer's rng, model, dataset and writer go unused."""
  def wrap(fn: Callable[[ml_collections.ConfigDict, str], Dict[str, Any]]) -> Callable[..., Dict[str, Any]]:
    @functools.wraps(fn)
    def trainer(*, rng: Any, config: ml_collections.ConfigDict, model_cls: Any, dataset: Any, workdir: str,
                writer: Any) -> Dict[str, Any]:
      del rng, model_cls, dataset, writer
      return fn(config, workdir)
    registry.TRAINERS.register(name)(trainer)
    return trainer
  return wrap
