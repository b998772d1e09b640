"""`glue`: GLUE dev-set scores of the weights being trained or evaluated, and the best of them kept.

Config (`config.evals.glue`): every (steps between evaluations; 0: only at the end), splits (default: every eval
split of the task), save_best (True: while training, keep the parameters of the best evaluation in workdir/best/).

Metrics per eval split, named '{split}/{metric}' ('validation/f1', MNLI 'matched/accuracy'): the task's official
GLUE metrics (`glue_metrics`, on the host) and the model's own eval metrics (its `loss`), from one pass.

Which number is the score: `final` (the dev metrics after the last step, the protocol number) and the optimistic
`best_on_dev` (whose parameters workdir/best holds), as `dev_scores` explains; an eval-mode run reports the `metrics`
of the weights it scored, with where they came from.
"""

from __future__ import annotations

from typing import Any, Dict, List

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from core.train_step import make_eval_step
from projects.bert.tasks import glue_metrics
from projects.bert.tasks import glue as glue_tasks
from projects.bert.evaluators.dev_scores import DevScoresEvaluator


def glue_task(context: EvalContext, evaluator: str, split_kind: str) -> glue_tasks.GlueTask:
  """The GLUE task of the run's `bert_glue` dataset, which must have `split_kind` ('eval' or 'test') splits."""
  dataset = context.dataset
  if dataset is None or getattr(dataset, 'valid_iter' if split_kind == 'eval' else 'test_iter') is None:
    raise errors.ConfigError(f'config.evals.{evaluator} needs a bert_glue dataset with {split_kind} records: set '
                             f'config.dataset_name="bert_glue" and config.dataset.task / data_dir, and write the '
                             f'records with `python -m projects.bert.datasets.prepare glue` (from dev.tsv / test.tsv).')
  return glue_tasks.get_task(dataset.meta_data.task)


@registry.EVALUATORS.register('glue')
class GlueEvaluator(DevScoresEvaluator):
  """Scores every eval split of the run's `bert_glue` dataset; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    self.task = glue_task(context, name, 'eval')
    self.splits: List[str] = list(config.get('splits') or context.dataset.meta_data.eval_splits)
    self.task_name, self.main_key = self.task.name, self.task.main_metric_key(self.splits)
    super().__init__(name, config, context)
    self.step_fn = make_eval_step(context.model, context.params_shardings, context.mesh, with_outputs=True)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{'{split}/{metric}': value} of `params` on every split of `self.splits`."""
    results: Dict[str, float] = {}
    for split in self.splits:
      model_metrics, gathered = evaluation.evaluate_split(self.step_fn, params, self.context.dataset.valid_iter(split),
                                                          self.context.mesh, keep=('label_ids',))
      metrics = {**model_metrics, **glue_metrics.compute_metrics(self.task.name, gathered['outputs'],
                                                                  gathered['label_ids'])}
      results.update({f'{split}/{k}': v for k, v in metrics.items()})
    return results

  def task_summary(self) -> Dict[str, Any]:
    return {'eval_splits': self.splits}
