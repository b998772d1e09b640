"""`mlm_nsp`: masked-LM and next-sentence (or sentence-order) loss and accuracy of a pretraining model on held-out
records.

Config (`config.evals.mlm_nsp`): every (steps between evaluations; 0: only at the end), num_steps (batches per
evaluation, the first ones of the eval split; 0: the whole split). The records are the dataset's eval split
(`config.dataset.eval_files` of `bert_pretraining`); without any, the evaluator has nothing to score and says so.
Scalars: mlm_loss, mlm_accuracy (over masked tokens), nsp_loss, nsp_accuracy; for sentence-order records
(config.dataset.pair_task 'sop', the `pretrain.py:SIZE,sop` variant) sop_loss, sop_accuracy instead: the model's
metrics name the pair task its records hold.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

from absl import logging

from core import evaluation, registry
from core.evaluators import EvalContext, Evaluator
from core.train_step import make_eval_step


@registry.EVALUATORS.register('mlm_nsp')
class MlmNspEvaluator(Evaluator):
  """The model's own eval metrics (`get_metrics_fn`), summed over the eval batches."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.num_steps = int(config.get('num_steps') or 0) or None
    dataset = context.dataset
    self.eval_step = None
    if dataset is None or dataset.valid_iter is None:
      logging.info('%s: no eval records (config.dataset.eval_files is empty): nothing to evaluate.', name)
    else:
      self.eval_step = make_eval_step(context.model, context.params_shardings, context.mesh)
    self.last: Dict[str, Any] = {}

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    if self.eval_step is None:
      return ()
    metrics = evaluation.evaluate_metrics(self.eval_step, state.params, self.context.dataset.valid_iter(),
                                          self.context.mesh, self.num_steps)
    self.last = {'step': step, **metrics}
    logging.info('%s at step %d: %s', self.name, step, ', '.join(f'{k} {v:.4g}' for k, v in metrics.items()))
    return metrics.items()

  def summary(self) -> Dict[str, Any]:
    return dict(self.last)
