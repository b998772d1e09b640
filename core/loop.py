"""The one train loop shared by every trainer: steps, evaluators on their cadence, metric writing, checkpoints,
preemption and divergence handling.

Trainers differ only in the model (loss), the data and the evaluators (`core.evaluators`) they pass in. A run of
zero training steps is an evaluation: its evaluators score the initial weights once.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from jax.sharding import Mesh

from core import sharding as sharding_lib
from core.checkpoint import Checkpointer
from core.evaluators import Evaluator, RunResults, run_evaluators
from core.state import TrainState


class DivergenceError(RuntimeError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


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
  """TensorBoard summaries + log lines on the first process; other processes write nothing."""
  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0, asynchronous=True)


def _check_finite(metrics: Dict[str, float], step: int, checkpointer: Optional[Checkpointer]) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    kept = checkpointer.latest_step() if checkpointer else None
    raise DivergenceError(
        f'Training diverged at step {step}: {bad}. The last good checkpoint (step {kept}) is kept; lower the '
        f'learning rate, raise warm-up, or enable gradient clipping (config.optimizer.grad_clip_norm), then rerun '
        f'the same command to resume from it.')


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
    tokens_per_step: Optional[int] = None,
    checkpoint_metadata: Optional[Dict[str, Any]] = None,
) -> Tuple[TrainState, Dict[str, Any]]:
  """Runs `train_step` from `state.step` to `num_train_steps`.

  Returns `(state, info)`; `info['preempted']` is True when a SIGTERM stopped the run after saving a
  checkpoint (rerun the same command to resume), `info['last_eval']` holds each evaluator's latest values.
  Evaluators run every `evaluator.every` steps and after the last step; their summaries go to `results`. With
  `num_train_steps` 0 the evaluators run once, on the initial weights.
  """
  start_step = int(jax.device_get(state.step))
  info: Dict[str, Any] = {'preempted': False, 'last_eval': {}, 'start_step': start_step}
  if start_step >= num_train_steps:
    if num_train_steps == 0:
      info['last_eval'] = run_evaluators(evaluators, state, start_step, writer, last=True, results=results)
    else:
      logging.info('Nothing to train: state is at step %d of %d.', start_step, num_train_steps)
    info['end_step'] = start_step
    return state, info

  hooks: List[Any] = [periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer,
                                                      every_steps=log_every)]
  pending: List[Dict[str, jax.Array]] = []
  t_log, steps_since_log = time.perf_counter(), 0

  def flush_train_metrics(step: int) -> None:
    nonlocal t_log, steps_since_log
    if not pending:
      return
    host = jax.device_get(pending)
    means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    pending.clear()
    _check_finite(means, step, checkpointer)
    elapsed = max(time.perf_counter() - t_log, 1e-9)
    scalars = {f'train/{k}': v for k, v in means.items()}
    scalars['train/steps_per_sec'] = steps_since_log / elapsed
    if examples_per_step:
      scalars['train/examples_per_sec'] = examples_per_step * steps_since_log / elapsed
    if tokens_per_step:
      scalars['train/tokens_per_sec'] = tokens_per_step * steps_since_log / elapsed
    writer.write_scalars(step, scalars)
    t_log, steps_since_log = time.perf_counter(), 0

  def save(step: int) -> None:
    if checkpointer is not None:
      flush_train_metrics(step)  # never checkpoint a diverged state
      checkpointer.save(step, state, train_iter=train_iter, metadata=checkpoint_metadata)

  with PreemptionWatcher() as preemption:
    step = start_step
    while step < num_train_steps:
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = sharding_lib.make_global_batch(next(train_iter), mesh)
        state, metrics = train_step(state, batch)
      step += 1
      steps_since_log += 1
      pending.append(metrics)
      for hook in hooks:
        hook(step)
      last = step == num_train_steps
      if step % log_every == 0 or last:
        flush_train_metrics(step)
      info['last_eval'].update(run_evaluators(evaluators, state, step, writer, last=last, results=results))
      if preemption.requested(step):
        logging.warning('SIGTERM received: saving a checkpoint at step %d and stopping.', step)
        save(step)
        info['preempted'] = True
        break
      if (checkpoint_every and step % checkpoint_every == 0) or last:
        save(step)
  writer.flush()
  if checkpointer is not None:
    checkpointer.wait()
  info['end_step'] = step
  return state, info
