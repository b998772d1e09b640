"""What the dev-set evaluators of fine-tuning (`glue`, `squad`) share: the history of a run's evaluations, its final
(protocol) score, the best_on_dev parameters, and which weights a prediction writer uses.

Which number is the score. The BERT paper and TF Model Garden report, per fine-tuning run, the dev metrics after
the last training step: that is `final` in the summary, the protocol number. `best_on_dev` is the best evaluation of
the run by the task's main metric; it is selected on the same dev set it is scored on, so it is optimistic and is
never a final score. Its parameters (workdir/best) are what eval, predict and the prediction writers use by default.
An eval-mode run reports the `metrics` of the weights it scored, with where they came from.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import jax
from absl import logging

from core import errors, params_io
from core.evaluators import EvalContext, Evaluator
from projects.bert.checkpoints import weights

PROTOCOL = ('final: the dev metrics after the last training step, the number the BERT paper and TF Model Garden '
            'report per fine-tuning run')
BEST_ON_DEV_NOTE = ('the best evaluation by the main metric, selected on the same dev set it is scored on: '
                    'optimistic, not a final score')
PREDICTION_WEIGHTS = ('best', 'final')


def _host_params(params: Any) -> Any:
  """Parameters as host numpy arrays on every process (gathered when they are sharded over hosts)."""
  if jax.process_count() == 1:
    return jax.device_get(params)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(params, tiled=True)


class BestParams:
  """The parameters of the best evaluation so far (higher `metric` is better), kept in `directory` (replaced
  atomically by `params_io.save_params`: a crash leaves the previous or the new best whole).

  Its metadata.json ({'step', 'metric', 'value', 'task', 'metrics'}) lets a resumed run continue the comparison.
  """

  def __init__(self, directory: str, metric: str, task: str):
    self.directory, self.metric, self.task = directory, metric, task
    self.step: Optional[int] = None
    self.value = -math.inf
    self.metrics: Dict[str, float] = {}
    # A crash inside save_params' swap left best.new/best.old: best/ is put back now, at the start of the run that
    # owns it, not only at its next improvement (which may never come).
    params_io.recover_params(directory)
    if params_io.has_params(directory):
      meta = params_io.load_params_metadata(directory)
      if meta.get('metric') == metric:
        self.step, self.value, self.metrics = meta['step'], float(meta['value']), meta.get('metrics', {})

  def update(self, step: int, metrics: Mapping[str, float], params: Any) -> bool:
    """Saves `params` when `metrics[self.metric]` beats the best so far (ties keep the earlier step)."""
    value = float(metrics[self.metric])
    if not value > self.value:
      return False
    self.step, self.value, self.metrics = step, value, dict(metrics)
    params_io.save_params(self.directory, _host_params(params), self.as_dict())
    logging.info('New best_on_dev %s = %.4f at step %d: parameters saved to %s.', self.metric, value, step,
                 self.directory)
    return True

  def as_dict(self) -> Dict[str, Any]:
    return {'step': self.step, 'metric': self.metric, 'value': self.value if self.step is not None else None,
            'task': self.task, 'metrics': self.metrics, 'directory': self.directory}


class DevScoresEvaluator(Evaluator):
  """Base of the dev-set evaluators: a subclass sets `task_name` and `main_key` (before calling this __init__) and
  implements `evaluate(params) -> {metric: value}`; `task_summary()` adds its own facts to the summary.

  Config fields read here: every, save_best (True: while training, keep the parameters of the best evaluation in
  workdir/best/). A resumed run extends the history it wrote before (evaluations up to the restored step).
  """

  task_name: str
  main_key: str

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.training = context.mode == 'train'
    self.best: Optional[BestParams] = None
    if self.training and config.get('save_best', True):
      self.best = BestParams(os.path.join(context.workdir, weights.BEST_DIR), self.main_key, self.task_name)
    previous = (context.results.previous.get(name) if context.results else None) or {}
    self.history: List[Dict[str, float]] = []
    if context.resumed_from is not None and previous.get('task') == self.task_name:
      self.history = [h for h in previous.get('history', []) if h.get('step', 0) <= context.resumed_from]
    self.final: Optional[Dict[str, Any]] = None
    if self.training and context.weights.get('source') == 'random':
      logging.warning('config.init_from is empty: fine-tuning %s from RANDOM weights (expect near-chance scores). '
                      'Point it at a converted checkpoint or a pretraining workdir.', self.task_name)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{metric: value} of `params` on the dev set."""
    raise NotImplementedError

  def task_summary(self) -> Dict[str, Any]:
    """The evaluator's own facts at the top of its summary (beside task and main_metric)."""
    return {}

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    metrics = self.evaluate(state.params)
    self.history.append({'step': step, **metrics})
    values = dict(metrics)
    if self.best is not None:
      self.best.update(step, metrics, state.params)
      values[f'best_on_dev/{self.main_key}'] = self.best.value
    shown = {k: round(v, 4) for k, v in metrics.items() if not k.endswith('num_examples')}
    if self.training:
      logging.info('%s dev at step %d: %s (best_on_dev %s = %.4f at step %s)', self.task_name, step, shown,
                   self.main_key, self.best.value if self.best else math.nan, self.best.step if self.best else None)
    else:
      logging.info('%s dev scores of %s: %s', self.task_name, self._weights_text(), shown)
    return values.items()

  def _weights_text(self) -> str:
    w = self.context.weights
    text = f'{w.get("path")} (step {w.get("step")})'
    if w.get('source') == 'best':
      text += ' = the best_on_dev parameters, selected on this dev set: optimistic, not a final score'
    return text

  def finalize(self, state: Any, step: int) -> None:
    if not self.training or not self.history:
      return
    last = self.history[-1]
    if last['step'] == step:
      self.final = {'step': step, 'metrics': {k: v for k, v in last.items() if k != 'step'}}
    if self.final is None:
      logging.warning('%s: no evaluation at the last step %d, so no final score.', self.task_name, step)
      return
    best = f'; best_on_dev {self.best.value:.4f} at step {self.best.step} ({BEST_ON_DEV_NOTE})' if self.best else ''
    logging.info('%s final score (protocol: dev after the last step %d): %s = %.4f%s.', self.task_name, step,
                 self.main_key, self.final['metrics'][self.main_key], best)

  def summary(self) -> Dict[str, Any]:
    out: Dict[str, Any] = {'task': self.task_name, 'main_metric': self.main_key, **self.task_summary()}
    if not self.training:
      last = self.history[-1] if self.history else {}
      out.update(weights=dict(self.context.weights), step=last.get('step'),
                 metrics={k: v for k, v in last.items() if k != 'step'})
      if self.context.weights.get('source') == 'best':
        out['note'] = 'the scored weights are the best_on_dev parameters: ' + BEST_ON_DEV_NOTE
      return out
    out.update(protocol=PROTOCOL, history=self.history)
    if self.final is not None:
      out['final'] = self.final['metrics']
      out['final_step'] = self.final['step']
    if self.best is not None:
      out['best_on_dev'] = {**self.best.as_dict(), 'note': BEST_ON_DEV_NOTE}
    return out


def check_prediction_weights(name: str, which: str) -> str:
  """`config.evals.{name}.weights` of a prediction writer: 'best' or 'final'."""
  if which not in PREDICTION_WEIGHTS:
    raise errors.ConfigError(f'config.evals.{name}.weights={which!r}; use one of {PREDICTION_WEIGHTS}.')
  return which


def prediction_params(context: EvalContext, which: str, state: Any, step: int) -> Tuple[Any, Dict[str, Any]]:
  """The parameters a prediction writer uses at the end of a run, and where they came from: with `which` 'best',
  the run's best_on_dev parameters (workdir/best) when it has them; else the weights being evaluated (the last
  ones of a training run, `step`)."""
  best = os.path.join(context.workdir, weights.BEST_DIR)
  if which == 'best' and params_io.has_params(best):
    params, meta = params_io.load_params(best)
    return jax.device_put(params, context.params_shardings), {'source': 'best', 'path': best,
                                                               'step': meta.get('step')}
  if context.mode != 'train':
    return state.params, dict(context.weights)
  return state.params, {'source': 'final', 'step': step}


class PredictionWriter(Evaluator):
  """What the prediction writers share (glue_predict, squad_predict, superglue_predict, xtreme_predict): which
  weights they predict with (`weights`: 'best' or 'final'; `prediction_params` at the end), where the files go
  (`dir` under the workdir, default `default_dir`), the files written and the weights' source for the summary.
  `predict_step` is built for writers that gather outputs themselves (`needs_predict_step`)."""

  writes_predictions = True
  default_dir = 'predictions'
  needs_predict_step = True

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.weights = check_prediction_weights(name, config.get('weights') or 'best')
    self.out_dir = os.path.join(context.workdir, config.get('dir') or self.default_dir)
    if self.needs_predict_step:
      from core.train_step import make_predict_step  # jax-jitted: built only where used
      self.predict_step = make_predict_step(context.model, context.params_shardings, context.mesh)
    self.files: Dict[str, str] = {}
    self.source: Dict[str, Any] = {}
