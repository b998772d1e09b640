"""The one train loop shared by every trainer: steps, evaluators on their cadence, metric writing, checkpoints,
preemption and divergence handling.

Trainers differ only in the model (loss), the data and the evaluators (`core.evaluators`) they pass in. A run of
zero training steps is an evaluation: its evaluators score the initial weights once.
"""

from __future__ import annotations

import errno
import re
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from jax.sharding import Mesh

from core import errors, logs
from core import sharding as sharding_lib
from core.checkpoint import Checkpointer
from core.evaluators import Evaluator, RunResults, run_evaluators
from core.state import TrainState


# A parameter norm this many times its value at the start of the run counts as divergence: such weights are never
# saved (a blow-up can leave finite but useless weights, e.g. 4e10, a step before the loss becomes NaN).
MAX_PARAM_NORM_GROWTH = 100.0
# A progress line at least this often, whatever log_every says (a slow step or a large log_every would otherwise
# leave the log silent for minutes).
LOG_EVERY_SECONDS = 30.0


class DivergenceError(errors.UserError, RuntimeError):
  """A metric became NaN or infinite, or the parameters exploded; no checkpoint of such a state is written."""


class PreemptionWatcher:
  """Turns SIGTERM (a preemption notice on cloud VMs) into a flag the loop checks between steps."""

  def __init__(self):
    self._event = threading.Event()
    self._previous = None

  def __enter__(self) -> 'PreemptionWatcher':
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def requested(self, step: int, sync_every: int = 10) -> bool:
    """True once any process got SIGTERM; processes agree every `sync_every` steps (all must save together)."""
    local = self._event.is_set()
    if jax.process_count() == 1:
      return local
    if step % sync_every:
      return False
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array(local, np.int32))))


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard summaries on the first process; other processes write nothing. The log gets the loop's progress
  line and each evaluator's own line instead of clu's dump of every scalar."""
  writers = [metric_writers.SummaryWriter(workdir)] if jax.process_index() == 0 else []
  return metric_writers.AsyncMultiWriter(writers)


def progress_line(step: int, num_train_steps: int, metrics: Mapping[str, float], steps_per_sec: float,
                  examples_per_sec: Optional[float] = None, compiling: bool = False) -> str:
  """`step 120/1000 (12.0%) | loss 2.341, accuracy 0.51 | 4.05 steps/s, 130 examples/s | ETA 0:03:37`: the rates
  and the ETA are those of the steps since the previous line (`compiling`: they include the first step's
  compilation, which the line says)."""
  shown = ', '.join(f'{k} {metrics[k]:.4g}' for k in sorted(metrics, key=lambda k: (k != 'loss', k)))
  rates = f'{steps_per_sec:.3g} steps/s' + (f', {examples_per_sec:.4g} examples/s' if examples_per_sec else '')
  eta = logs.format_duration((num_train_steps - step) / steps_per_sec) if steps_per_sec > 0 else '?'
  return (f'step {step}/{num_train_steps} ({100.0 * step / max(num_train_steps, 1):.1f}%) | {shown} | {rates} | '
          f'ETA {eta}' + (' (with compilation)' if compiling else ''))


def _first_divergence(steps: Sequence[Mapping[str, Any]], first_step: int,
                      max_param_norm: Optional[float]) -> Optional[Tuple[int, Dict[str, float]]]:
  """(step, {metric: value}) of the first of `steps` (per-step host metrics, the first at `first_step`) with a
  non-finite metric or a `param_norm` above `max_param_norm`; None when all are fine."""
  for i, metrics in enumerate(steps):
    bad = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0 and not np.isfinite(v)}
    norm = metrics.get('param_norm')
    if max_param_norm and norm is not None and np.isfinite(norm) and norm > max_param_norm:
      bad['param_norm'] = float(norm)
    if bad:
      return first_step + i, bad
  return None


def _finish_saves(checkpointer: Optional[Checkpointer]) -> Tuple[Optional[int], Optional[BaseException]]:
  """Lets in-flight asynchronous saves commit (or fail); returns (newest step complete on disk, the save error)."""
  if checkpointer is None:
    return None, None
  failure = None
  try:
    checkpointer.wait()
  except Exception as e:  # pylint: disable=broad-except  (reported with the step that is on disk)
    failure = e
  try:
    return checkpointer.step_on_disk(), failure
  except Exception:  # pylint: disable=broad-except
    return None, failure


def _on_disk(step: Optional[int], checkpointer: Optional[Checkpointer]) -> str:
  if checkpointer is None:
    return 'This run writes no checkpoints.'
  if step is None:
    return f'No checkpoint is on disk yet ({checkpointer.directory}).'
  return f'The newest complete checkpoint on disk is step {step} ({checkpointer.directory}/{step}).'


def _rerun(step: Optional[int], checkpointer: Optional[Checkpointer]) -> str:
  """What the rerun `_on_disk` just described starts from: one statement, whether or not a checkpoint exists."""
  if checkpointer is None or step is None:
    return 'it starts from the beginning'
  return 'it resumes from that checkpoint'


def train_loop(
    *,
    state: TrainState,
    train_step: Callable[[TrainState, Dict[str, jax.Array]], Tuple[TrainState, Dict[str, jax.Array]]],
    train_iter: Iterator[Dict[str, np.ndarray]],
    mesh: Mesh,
    num_train_steps: int,
    writer: metric_writers.MetricWriter,
    checkpointer: Optional[Checkpointer] = None,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    evaluators: Sequence[Evaluator] = (),
    results: Optional[RunResults] = None,
    examples_per_step: Optional[int] = None,
    tokens_per_step: Union[None, int, Callable[[Mapping[str, np.ndarray]], int]] = None,
    checkpoint_metadata: Optional[Dict[str, Any]] = None,
    max_param_norm_growth: Optional[float] = MAX_PARAM_NORM_GROWTH,
    log_every_s: Optional[float] = LOG_EVERY_SECONDS,
) -> Tuple[TrainState, Dict[str, Any]]:
  """Runs `train_step` from `state.step` to `num_train_steps`.

  Returns `(state, info)`; `info['preempted']` is True when a SIGTERM stopped the run after saving a
  checkpoint (rerun the same command to resume), `info['last_eval']` holds each evaluator's latest values.
  A progress line comes every `log_every` steps (the metrics written), and also after any step that ends
  `log_every_s` seconds or more after the previous line (logged only; single-process runs).
  `tokens_per_step` (for `train/tokens_per_sec`) is a number, or a function of each host batch giving the tokens
  the step computes over all processes (batches whose width varies: length-grouped training).
  Evaluators run every `evaluator.every` steps and after the last step; their summaries go to `results`. With
  `num_train_steps` 0 the evaluators run once, on the initial weights.

  Every step's metrics are checked before a checkpoint is written: a non-finite metric (`train_step`'s metrics
  include the norms of the new parameters and of the update) or a `param_norm` above `max_param_norm_growth` times
  its value at the start raises `DivergenceError`, so no checkpoint ever holds such a state. Whatever stops the
  loop, asynchronous saves in flight are let finish before the error propagates, and the error says which step
  is complete on disk.
  """
  start_step = int(jax.device_get(state.step))
  info: Dict[str, Any] = {'preempted': False, 'last_eval': {}, 'start_step': start_step}
  if start_step >= num_train_steps:
    if num_train_steps == 0:
      info['last_eval'] = run_evaluators(evaluators, state, start_step, writer, last=True, results=results)
    else:
      where = f' ({checkpointer.directory})' if checkpointer is not None else ''
      logging.warning('Nothing to train: the state%s is at step %d of num_train_steps=%d. Raise num_train_steps to '
                      'train further; to start a new phase from these weights, use a new --workdir with '
                      '--config.init_from set to this one.', where, start_step, num_train_steps)
    info['end_step'] = start_step
    return state, info

  pending: List[Dict[str, jax.Array]] = []
  single_process = jax.process_count() == 1
  t_log, steps_since_log = time.perf_counter(), 0
  count_tokens = tokens_per_step if callable(tokens_per_step) else None
  tokens_since_log = 0
  t_progress = t_log  # the last progress line that wrote no metrics
  max_param_norm = None
  if max_param_norm_growth:  # one reduction on device, no copy of the parameters to the host
    start_norm = float(jax.jit(optax.global_norm)(state.params))
    max_param_norm = max_param_norm_growth * max(start_norm, 1e-6)

  def flush_train_metrics(step: int) -> None:
    nonlocal t_log, steps_since_log, tokens_since_log
    if not pending:
      return
    host = jax.device_get(pending)
    pending.clear()
    diverged = _first_divergence(host, step - len(host) + 1, max_param_norm)
    if diverged is not None:
      raise _Diverged(step, *diverged)
    means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    elapsed = max(time.perf_counter() - t_log, 1e-9)
    scalars = {f'train/{k}': v for k, v in means.items()}
    scalars['train/steps_per_sec'] = steps_since_log / elapsed
    if examples_per_step:
      scalars['train/examples_per_sec'] = examples_per_step * steps_since_log / elapsed
    if count_tokens is not None:
      scalars['train/tokens_per_sec'] = tokens_since_log / elapsed
    elif tokens_per_step:
      scalars['train/tokens_per_sec'] = tokens_per_step * steps_since_log / elapsed
    writer.write_scalars(step, scalars)
    logging.info('%s', progress_line(step, num_train_steps, means, scalars['train/steps_per_sec'],
                                     scalars.get('train/examples_per_sec'), compiling=step - len(host) == start_step))
    t_log, steps_since_log, tokens_since_log = time.perf_counter(), 0, 0

  def progress_only(step: int) -> None:
    """The progress line of an overdue window (`log_every_s`): logged only, so the metrics written (their steps and
    the windows they average) do not depend on timing."""
    nonlocal t_progress
    host = jax.device_get(pending)  # one copy of the window (not one per metric)
    means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    rate = steps_since_log / max(time.perf_counter() - t_log, 1e-9)
    logging.info('%s', progress_line(step, num_train_steps, means, rate,
                                     examples_per_step * rate if examples_per_step else None,
                                     compiling=step - len(pending) == start_step))
    t_progress = time.perf_counter()

  def save(step: int) -> None:
    if checkpointer is not None:
      flush_train_metrics(step)  # never checkpoint a diverged state
      checkpointer.save(step, state, train_iter=train_iter, metadata=checkpoint_metadata)

  step = start_step
  try:
    with PreemptionWatcher() as preemption:
      while step < num_train_steps:
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          host_batch = next(train_iter)
          if count_tokens is not None:
            tokens_since_log += count_tokens(host_batch)
          batch = sharding_lib.make_global_batch(host_batch, mesh)
          state, metrics = train_step(state, batch)
        step += 1
        steps_since_log += 1
        pending.append(metrics)
        last = step == num_train_steps
        # Checked before evaluators run too: an evaluator may save the parameters (the glue evaluator's best/).
        if step % log_every == 0 or last or any(ev.due(step, last) for ev in evaluators):
          flush_train_metrics(step)
        elif log_every_s and single_process and time.perf_counter() - max(t_log, t_progress) >= log_every_s:
          progress_only(step)
        info['last_eval'].update(run_evaluators(evaluators, state, step, writer, last=last, results=results))
        if preemption.requested(step):
          logging.warning('SIGTERM received: saving a checkpoint at step %d and stopping.', step)
          save(step)
          info['preempted'] = True
          break
        if (checkpoint_every and step % checkpoint_every == 0) or last:
          save(step)
    writer.flush()
    on_disk, failure = _finish_saves(checkpointer)
    if failure is not None:
      raise failure
  except BaseException as e:  # pylint: disable=broad-except  (KeyboardInterrupt too: let good saves commit)
    replacement = _stopped(e, step, checkpointer, max_param_norm_growth)
    if replacement is e:
      raise
    raise replacement from (None if isinstance(e, _Diverged) else e)
  info['end_step'] = step
  return state, info


_UNWRITABLE = {errno.EACCES: 'Permission denied', errno.EPERM: 'Operation not permitted',
               errno.EROFS: 'Read-only file system'}


def _unwritable(exc: Optional[BaseException], checkpointer: Optional[Checkpointer]) -> Optional[OSError]:
  """The OSError (a read-only file system, a permission) in `exc` or the errors it was raised from that names a path
  in the workdir (checkpoints, best/, results): a write of this run that the file system refused. Orbax and
  TensorStore wrap the OS error in their own; their messages keep its text and path."""
  if checkpointer is None:
    return None
  workdir = str(checkpointer.directory.parent)
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE and str(exc.filename or '').startswith(workdir):
      return exc
    for code, text in _UNWRITABLE.items():
      path = re.search(r'(?:^|[\s\'"(])(' + re.escape(workdir) + r'[^\s;,:\'"]*)', str(exc))
      if text in str(exc) and path:
        return OSError(code, text, path.group(1))
    exc = exc.__cause__ or exc.__context__
  return None


class _Diverged(Exception):
  """Raised inside the loop when divergence is found; becomes a `DivergenceError` once saves are finished."""

  def __init__(self, step: int, first_step: int, bad: Dict[str, float]):
    super().__init__(step, first_step, bad)
    self.step, self.first_step, self.bad = step, first_step, bad


def _stopped(exc: BaseException, step: int, checkpointer: Optional[Checkpointer],
             max_param_norm_growth: Optional[float]) -> BaseException:
  """The error to raise for `exc`, which stopped the loop at `step`, once in-flight saves are finished: it says
  which checkpoint is complete on disk (user errors in their message, other errors in a log line before their
  traceback)."""
  on_disk, failure = _finish_saves(checkpointer)
  full = errors.disk_full_error(exc) or (errors.disk_full_error(failure) if failure is not None else None)
  if isinstance(exc, _Diverged):
    bad = ', '.join(f'{k}={v:.4g}' for k, v in exc.bad.items())
    return DivergenceError(
        f'Training diverged at step {exc.step} (first at step {exc.first_step}: {bad}; param_norm is limited to '
        f'{max_param_norm_growth or 0:g}x its value at the start). {_on_disk(on_disk, checkpointer)} No checkpoint is '
        f'written before its parameters and update are checked finite and not exploding. Lower the learning rate '
        f'(--config.schedule.base_lr), raise warm-up, or enable gradient clipping '
        f'(--config.optimizer.grad_clip_norm), then rerun the same command with the change: '
        f'{_rerun(on_disk, checkpointer)} with the new settings.')
  if full is not None:
    where = getattr(full, 'filename', None) or (checkpointer.directory if checkpointer is not None else '')
    return errors.UserError(
        f'No space left on device writing {where} at step {step}. {_on_disk(on_disk, checkpointer)} Free space '
        f'on that disk (or use a --workdir on another one), then rerun the same command: '
        f'{_rerun(on_disk, checkpointer)}.')
  unwritable = _unwritable(failure, checkpointer) or _unwritable(exc, checkpointer)
  if unwritable is not None:
    return errors.UserError(
        f'{unwritable.filename} cannot be written ({unwritable.strerror}) at step {step}: the workdir became '
        f'read-only or its permissions changed. {_on_disk(on_disk, checkpointer)} Make the workdir writable again '
        f'(or copy it to a writable disk and give that --workdir), then rerun the same command: '
        f'{_rerun(on_disk, checkpointer)}.')
  if failure is not None:
    logging.error('A checkpoint save in flight failed too: %s', failure)
  if isinstance(exc, errors.UserError):
    try:
      return type(exc)(f'{exc}\nTraining stopped at step {step}. {_on_disk(on_disk, checkpointer)} Rerun the '
                       f'same command after the fix: {_rerun(on_disk, checkpointer)}.')
    except TypeError:  # a subclass with another constructor
      return exc
  logging.error('Training stopped at step %d by %s. %s', step, type(exc).__name__, _on_disk(on_disk, checkpointer))
  return exc
