"""The generic entry point: flags, multi-host start-up, workdir set-up, and dispatch through the registries.

`main.py` imports the projects (which fill the registries) and calls `run()`. The config comes from
`--config=path.py[:variant]` with `--config.field=value` overrides. A training run writes it to workdir/config.json
once its state is set up (`core.setup`). `--config.mode=eval` or `predict` in a workdir that holds a run uses that
run's config.json instead, taking only the mode and the weights source (`init_from`) from the command line, and
never rewrites it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import traceback
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from core import logs  # before TensorFlow loads: it sets TensorFlow's C++ log level
from core import config_help, errors, registry
from core.workdir_lock import WorkdirLock, WorkdirNotWritableError

# JAX is imported where it is used: `main.py --help` and `--print_config` answer without loading it.

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, optionally `path.py:variant`.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and results.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0 for multi-process runs without a cluster auto-detect.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index (multi-process runs).')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Run in a workdir whose config.json names another trainer, model or dataset.')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Also log the libraries\' INFO lines (orbax, JAX, TensorFlow\'s C++ start-up, the upstream '
    'data writers); by default only ours and everyone\'s warnings and errors.')
_PRINT_CONFIG = flags.DEFINE_bool(
    'print_config', False, 'Print every field of --config (with its overrides) with its value and meaning, then exit '
    '(no --workdir needed).')
_VERBOSE_ERRORS = flags.DEFINE_bool(
    'verbose_errors', False, 'Also print the traceback of errors whose message says what to fix (bad input, config, '
    'workdir, a full disk).')

# Fields that define what a workdir's checkpoints are; changing others (steps, eval cadence) is a normal resume.
IDENTITY_FIELDS = ('trainer_name', 'model_name', 'dataset_name', 'model')
# Modes that score the run in a workdir rather than train: they use its config.json with only these fields taken
# from the command line, and the evaluators' own fields (`evals.NAME.FIELD`: what to score or write, e.g. a
# prediction writer's outputs), which do not change what the checkpoints are.
EVAL_MODES = ('eval', 'predict')
EVAL_OVERRIDES = ('mode', 'init_from')
EVAL_OVERRIDE_PREFIX = 'evals.'


def load_config(config_file: str) -> ml_collections.ConfigDict:
  """The config of `path.py[:variant]` as `--config` loads it, without overrides (`core.config_help.load_config`):
  runs of runs build their sub-runs' configs with it, from the config files by path, not by import."""
  return config_help.load_config(config_file)


def hide_accelerators_from_tensorflow() -> None:
  """TF would otherwise reserve GPU memory that JAX needs; tf.data runs on the CPU anyway."""
  try:
    import tensorflow as tf
    tf.config.set_visible_devices([], 'GPU')
    tf.config.set_visible_devices([], 'TPU')
  except (ImportError, RuntimeError, ValueError):  # TF absent, or already initialised.
    pass


def initialize_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """Starts JAX's multi-process runtime when launched as several processes; a no-op for one process.

  On TPU VMs and SLURM/Kubernetes clusters JAX detects the cluster itself; elsewhere pass the three flags.
  """
  import jax
  if coordinator_address is not None:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  elif any(k in os.environ for k in ('TPU_WORKER_HOSTNAMES', 'SLURM_JOB_ID', 'JAX_COORDINATOR_ADDRESS',
                                     'OMPI_COMM_WORLD_SIZE')):
    jax.distributed.initialize()
  if jax.process_count() > 1:
    # Line the processes up and open the collectives now, while they are in step: on CPU the Gloo context is set up
    # at the first collective with a fixed 30 s window, which a slow start-up on a loaded host can miss.
    from jax.experimental import multihost_utils
    jax._src.distributed.global_state.client.wait_at_barrier('scenic_bert_start', 10 * 60 * 1000)  # pylint: disable=protected-access
    multihost_utils.sync_global_devices('scenic_bert_start')


def _holds_checkpoint(workdir: str) -> bool:
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir))


def _identity(config: Dict[str, Any]) -> Dict[str, Any]:
  """The IDENTITY_FIELDS of a config as JSON; unset (None) fields are left out, so adding an optional field to a
  config does not make older workdirs look like another run's."""

  def drop_none(x: Any) -> Any:
    return {k: drop_none(v) for k, v in x.items() if v is not None} if isinstance(x, dict) else x

  return {k: drop_none(config.get(k)) for k in IDENTITY_FIELDS}


def _conflicts(old: Any, new: Any) -> bool:
  """Whether `new` (a config's identity, unset fields left out) says something else than `old` (the run's): a field
  the new config leaves unset is the run's (a project fills it in, e.g. the architecture from init_from)."""
  if new is None:
    return False
  if isinstance(old, dict) and isinstance(new, dict):
    return any(_conflicts(old.get(k), v) for k, v in new.items())
  return old != new


def check_workdir_config(config: ml_collections.ConfigDict, workdir: str, allow_change: bool = False) -> None:
  """Refuses to mix runs: a workdir that holds checkpoints and whose config.json differs in IDENTITY_FIELDS belongs
  to another run. Without a checkpoint there is nothing to mix up (a run that failed before its first checkpoint
  does not block the corrected command). A damaged config.json is reported in any case (`core.setup`)."""
  from core.setup import read_run_config

  saved = None if allow_change else read_run_config(workdir)
  if saved is None or not _holds_checkpoint(workdir):
    return
  old, new = _identity(saved.to_dict()), _identity(json.loads(config.to_json_best_effort()))
  differs = [k for k in IDENTITY_FIELDS if _conflicts(old.get(k), new.get(k))]
  if differs:
    details = '; '.join(f'{k}: {json.dumps(old.get(k))[:200]} -> {json.dumps(new.get(k))[:200]}' for k in differs)
    raise errors.ConfigError(f'{os.path.join(workdir, "config.json")} belongs to another run ({details}). Use a new '
                             f'--workdir, or pass --allow_config_change to reuse this one (its checkpoints must fit '
                             f'the new model).')


@contextlib.contextmanager
def workdir_lock(workdir: str, mode: str = 'train') -> Iterator[None]:
  """Holds `workdir` for this run (`core.workdir_lock`); all processes of a multi-host run fail together when
  another run holds it (only process 0 takes the lock). A workdir that cannot be written is refused, in an eval
  `mode` with the way to score it from a writable one (`config_for_run`)."""
  import jax
  lock, busy = WorkdirLock(workdir), None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except WorkdirNotWritableError as e:
      if mode not in EVAL_MODES:
        raise
      raise WorkdirNotWritableError(
          f'{workdir} cannot be written ({e.__cause__.strerror if isinstance(e.__cause__, OSError) else e}): '
          f'mode={mode} writes {mode}_results.json, its summaries and any predictions into its --workdir. To '
          f'{mode} the run in this read-only workdir, give a writable --workdir and name this one as the weights '
          f'source: --workdir=<a new folder> --config.mode={mode} --config.init_from={workdir}. Its config.json '
          f'and its best parameters (else its latest checkpoint) are read as in its own workdir, and nothing is '
          f'written into {workdir}.') from e
    except errors.WorkdirBusyError as e:
      busy = e
  if jax.process_count() > 1:
    import numpy as np
    from jax.experimental import multihost_utils
    if int(multihost_utils.broadcast_one_to_all(np.int32(busy is not None))) and busy is None:
      busy = errors.WorkdirBusyError(f'{workdir} is in use by another run (process 0 says which).')
  if busy is not None:
    raise busy
  try:
    yield
  finally:
    lock.release()


def report_error(exc: BaseException, verbose: bool = False, last: bool = False) -> bool:
  """Prints a user-fixable error (`core.errors.UserError`, or a full disk) as one `error: ...` paragraph.

  With `last` (the process exits next), everything written to stderr from then on goes nowhere and the report goes
  to the real stderr on a line of its own: libraries' background work that failed with the error (orbax's
  asynchronous writes on a full disk: their threads' 'Event loop is closed' tracebacks, their futures' 'exception
  was never retrieved' lines) writes while the report is printed and while the interpreter shuts down, and would
  split or bury it. --verbose_errors (`verbose`) prints the traceback and keeps that output.
  Returns False for other errors, which the caller re-raises (their traceback is the report).
  """
  full = errors.disk_full_error(exc)
  if not isinstance(exc, errors.UserError) and full is None:
    return False
  if verbose:
    traceback.print_exception(exc)
  if isinstance(exc, errors.UserError):
    message = str(exc)
  else:
    where = getattr(full, 'filename', None) or getattr(exc, 'filename', None)
    message = (f'No space left on device{f" writing {where}" if where else ""}. Free space on that disk (or give '
               f'the run a --workdir on another one), then rerun the same command: it resumes from the newest '
               f'complete checkpoint.')
  logging.flush()
  sys.stdout.flush()
  if not last or verbose:
    print(f'error: {message}', file=sys.stderr, flush=True)
    return True
  sys.stderr.flush()
  real = os.dup(sys.stderr.fileno())
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, sys.stderr.fileno())
  os.close(devnull)
  # A background thread may have left half a line (a traceback's indent) on stderr: start on a fresh line.
  os.write(real, f'\nerror: {message}\n'.encode())
  os.close(real)
  return True


def config_for_run(config: ml_collections.ConfigDict, workdir: str,
                   overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """The config a run uses: `config`, except in an eval mode (`config.mode` in EVAL_MODES) in a workdir with a
  config.json: that run's config, with only EVAL_OVERRIDES and the evaluators' fields (`evals.*`) taken from
  `overrides` (the command line's `--config.x=y`); other overrides are ignored, with a warning. An eval mode in a
  workdir without a config.json whose `init_from` is a run's workdir of the same kind (trainer and dataset) uses
  that run's config the same way: how a run on a read-only share is scored from a writable workdir."""
  from core.setup import read_run_config

  mode = config.get('mode') or 'train'
  saved = read_run_config(workdir) if mode in EVAL_MODES else None
  source = workdir
  if saved is None and mode in EVAL_MODES and config.get('init_from') and '://' not in str(config.init_from):
    # A fresh workdir scoring another run (one on a read-only share, say): that run's config, when it is of the
    # kind the command names (same trainer and dataset; a config of another kind keeps the command's, as before).
    other = read_run_config(config.init_from)
    if other is not None and all(other.get(k) == config.get(k) for k in ('trainer_name', 'dataset_name')):
      saved, source = other, config.init_from
  if saved is None:
    return config
  ignored = sorted(k for k in overrides if k not in EVAL_OVERRIDES and not k.startswith(EVAL_OVERRIDE_PREFIX))
  if ignored:
    logging.warning('mode=%s uses the config of the run in %s; ignoring the overrides %s (only %s apply).', mode,
                    source, ignored, [*EVAL_OVERRIDES, EVAL_OVERRIDE_PREFIX + '*'])
  saved.mode = mode
  if 'init_from' in overrides or source != workdir:
    saved.init_from = config.init_from
  for key in overrides:
    if key.startswith(EVAL_OVERRIDE_PREFIX):
      _take_evaluator_field(saved, config, key.split('.')[1:])
  logging.info('mode=%s: the config of %s/config.json (%s); the weights are the run\'s own when it has any, else '
               'init_from=%r (the trainer names those it uses).', mode, source, saved.get('trainer_name'),
               saved.get('init_from'))
  return saved


def _take_evaluator_field(saved: ml_collections.ConfigDict, given: ml_collections.ConfigDict,
                          path: List[str]) -> None:
  """Sets `saved.evals.<path>` to the command line's value; an evaluator the run had not configured comes whole
  from the command line's config (its defaults with the override)."""
  name, *field = path
  if saved.get('evals') is None:
    saved.evals = ml_collections.ConfigDict()
  if saved.evals.get(name) is None or not field:
    saved.evals[name] = given.evals[name]
    return
  node, given_node = saved.evals[name], given.evals[name]
  for part in field[:-1]:
    node, given_node = node[part], given_node[part]
  node[field[-1]] = given_node[field[-1]]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """Builds the dataset, model class and trainer that the config names, and runs the trainer.

  Registered trainers are called as `trainer(rng=, config=, model_cls=, dataset=, workdir=, writer=)` (Scenic's
  signature), with the config their optional `resolve_config` attribute returns; a trainer whose config has no
  dataset_name or model_name gets None for them.
  """
  import jax
  from core.loop import create_writer

  trainer = registry.TRAINERS.get(config.trainer_name)
  # A trainer may complete its config before the data is built from it (`trainer.resolve_config(config)`; BERT:
  # the architecture of the weights at init_from, whose vocabulary bounds the records' token ids).
  resolve = getattr(trainer, 'resolve_config', None)
  if resolve is not None:
    config = resolve(config)
  dataset_name = config.get('dataset_name')
  model_name = config.get('model_name')
  dataset = registry.DATASETS.get(dataset_name)(config) if dataset_name else None
  model_cls = registry.MODELS.get(model_name) if model_name else None
  writer = create_writer(workdir)
  rng = jax.random.PRNGKey(config.get('rng_seed', 0))
  try:
    return trainer(rng=rng, config=config, model_cls=model_cls, dataset=dataset, workdir=workdir, writer=writer)
  finally:
    writer.close()


def _config_flag_error(exc: BaseException, argv: Sequence[str]) -> Optional[errors.UserError]:
  """The user's mistake behind a failure to parse --config and its overrides, as a UserError; None for others.

  ml_collections raises them from inside absl's flag parsing, as tracebacks: the config file's own errors (an unknown
  variant word: a UserError in the exception's chain) and an override of a field the config does not have.
  """
  found, seen = None, exc
  while seen is not None:  # the innermost: ml_collections re-raises the file's error with a traceback as its text
    if isinstance(seen, errors.UserError):
      found = seen
    seen = seen.__cause__ or seen.__context__
  if found is not None:
    return found
  if isinstance(exc, (AttributeError, KeyError)):
    config_arg = next((a for a in argv if a.startswith('--config=')), '--config=...')
    overrides = [a.split('=', 1)[0] for a in argv if a.startswith('--config.')]
    named = [o for o in overrides if o.rsplit('.', 1)[-1] in str(exc)] or overrides
    hint = re.search(r'Did you mean "([^"]+)"', str(exc))
    return errors.ConfigError(
        f'{", ".join(named)}: the config has no such field (a misspelt or misplaced name)'
        f'{f"; did you mean {hint.group(1)!r}?" if hint else "."} '
        f'`python main.py {config_arg} --print_config` lists every field with its meaning.')
  return None


def _parse_flags(argv: Sequence[str]) -> Sequence[str]:
  """absl's flag parsing, with the config's errors (see `_config_flag_error`) reported as one `error:` paragraph."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    user_error = _config_flag_error(e, argv)
    if user_error is None:
      raise
    report_error(user_error)
    sys.exit(1)


def run(main: Optional[Callable[[ml_collections.ConfigDict, str], Any]] = None, usage: Optional[str] = None) -> None:
  """Parses flags and runs `main(config, workdir)` (default: `train_and_evaluate`). `--help` prints `usage` (default:
  the docstring of `__main__`) and this module's flags."""

  def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logs.configure(_VERBOSE.value)
    try:
      # A file that failed to load is a stand-in whose every attribute raises: report it here, not as a traceback.
      _CONFIG.value.keys  # noqa: B018
    except OSError:
      report_error(errors.MissingFileError(
          f'The config file {config_flags.get_config_filename(FLAGS["config"])!r} does not exist: give '
          f'--config=projects/<project>/configs/<file>.py[:variant] (`python main.py --help` lists them).'))
      sys.exit(1)
    if _PRINT_CONFIG.value:
      if _CONFIG.value is None:
        raise app.UsageError('--print_config prints the config of --config=path.py[:variant]; give one.')
      print(config_help.describe(_CONFIG.value, config_flags.get_config_filename(FLAGS['config'])))
      return
    if _CONFIG.value is None or _WORKDIR.value is None:
      raise app.UsageError('Both --config=path.py[:variant] and --workdir=DIR are required.')
    import jax
    hide_accelerators_from_tensorflow()
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    config, workdir = _CONFIG.value, _WORKDIR.value
    logging.info('JAX process %d / %d, %d local / %d global devices (%s).', jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count(), jax.default_backend())
    try:
      # The lock is held for the whole run, eval and predict included: a second run in this workdir (or an
      # evaluation while it trains) would read or overwrite checkpoints, best/ and results being written.
      with workdir_lock(workdir, config.get('mode') or 'train'):
        config = config_for_run(config, workdir, config_flags.get_override_values(FLAGS['config']))
        check_workdir_config(config, workdir, _ALLOW_CONFIG_CHANGE.value)
        (main or train_and_evaluate)(config, workdir)
    except Exception as e:  # pylint: disable=broad-except
      if not report_error(e, _VERBOSE_ERRORS.value, last=True):
        raise
      sys.exit(1)

  if {'-h', '--help', '--helpshort'} & set(sys.argv[1:]):
    # Ours, without parsing or loading anything more: absl's lists only the main module's flags (none).
    print(config_help.usage(usage or getattr(sys.modules.get('__main__'), '__doc__', None) or '', FLAGS, __name__))
    return
  app.run(_main, flags_parser=_parse_flags)
