"""`superglue`: SuperGLUE dev-set scores (`superglue_metrics`, the official ones) of the weights being trained or
evaluated, and the best of them kept.

Config (`config.evals.superglue`): every (steps between evaluations; 0: only at the end), split (default: the
task's labelled dev split, 'validation'; a diagnostic's labelled 'test'), save_best (True: while training, keep the
parameters of the best evaluation in workdir/best/), task (default: the run's; 'axb' or 'axg' in an RTE run: the
diagnostic, scored with the RTE model as the benchmark prescribes, from its records in the same data_dir).
configs/superglue.py:rte has both diagnostics as `superglue_axb` and `superglue_axg` (save_best False).

Metrics, named '{split}/{metric}' ('validation/f1a', 'validation/score'): the task's official metrics and its score
(the mean of them; fine-tuning selects on it), and the model's own eval loss, from one pass. The row scores are
grouped as the benchmark scores them: MultiRC's answer options by (passage idx, question idx) for exact match,
ReCoRD's candidates by (passage idx, query idx), the best-scored one's entity text against the gold answers (the
texts come from the jsonl file the records were made from, `superglue_dir` in their meta data), AX-g's pairs by idx.

Which number is the score: `final` (the dev metrics after the last step, the protocol number) and the optimistic
`best_on_dev`, as `dev_scores` explains.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from absl import logging

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from core.train_step import make_eval_step
from projects.bert.datasets import superglue_reader as reader
from projects.bert.evaluators.dev_scores import DevScoresEvaluator
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_metrics

# The batch fields a task kind's scoring reads, besides the outputs.
_KEEP = {sg.ANSWER_OPTIONS: ('question_idx',), sg.ENTITY_CLOZE: ('query_idx', 'candidate_index')}


def superglue_task(context: EvalContext, evaluator: str) -> sg.SuperGlueTask:
  """The SuperGLUE task of the run's `bert_superglue` dataset."""
  dataset = context.dataset
  if dataset is None or dataset.meta_data.extra.get('benchmark') != 'superglue':
    raise errors.ConfigError(f'config.evals.{evaluator} needs a bert_superglue dataset: set config.dataset_name='
                             f'"bert_superglue" and config.dataset.task / data_dir, and write the records with '
                             f'`python -m projects.bert.datasets.prepare superglue`.')
  return sg.get_task(dataset.meta_data.task)


def task_and_dataset(context: EvalContext, evaluator: str, config: Any) -> Tuple[sg.SuperGlueTask, Any]:
  """The task an evaluator scores and its dataset: the run's, or (config `task`) a diagnostic predicted with the
  run's task (AX-b, AX-g with RTE), built as the run's dataset with that task, from the same data_dir."""
  task = superglue_task(context, evaluator)
  if not config.get('task') or sg.get_task(config.task).name == task.name:
    return task, context.dataset
  other = sg.get_task(config.task)
  if other.predicted_with != task.name:
    raise errors.ConfigError(f'config.evals.{evaluator}.task={config.task!r} in a {task.name} run: only the '
                             f'diagnostics are scored with another task\'s model (axb and axg with rte).')
  run_config = context.config.copy_and_resolve_references()
  with run_config.unlocked():
    run_config.dataset.task = other.name
  try:
    dataset = registry.DATASETS.get(context.config.dataset_name)(run_config)
  except errors.MissingFileError as e:
    raise errors.ConfigError(f'config.evals.{evaluator} scores {other.official_name} with the {task.name} model '
                             f'(the benchmark\'s prescription), but {e} Prepare it into the same data_dir.') from None
  logging.info('%s: %s scored with the %s model.', evaluator, other.official_name, task.name)
  return other, dataset


def source_examples(meta_extra: Mapping[str, Any], task: sg.SuperGlueTask, split: str) -> List[Any]:
  """The examples of `split` read from the jsonl file the records were made from (meta data `superglue_dir`)."""
  folder = meta_extra.get('superglue_dir')
  if not folder:
    raise errors.DataError(f'{meta_extra.get("meta_data_file")} names no superglue_dir: SuperGLUE {task.name} is '
                           f'scored against its jsonl file; re-write the records with `python -m '
                           f'projects.bert.datasets.prepare superglue --task={task.name} ...`.')
  return reader.read_split(folder, task.name, split)


def row_scores(outputs: np.ndarray) -> np.ndarray:
  """float [N]: how much a row-binary classifier believes the row is right (positive minus negative logit)."""
  outputs = np.asarray(outputs, np.float64)
  return outputs[:, 1] - outputs[:, 0]


def dev_metrics(task: sg.SuperGlueTask, gathered: Mapping[str, np.ndarray], examples: Sequence[Any] = ()
                ) -> Dict[str, float]:
  """The official metrics of one labelled split from the gathered rows ({'outputs', 'label_ids', 'example_id', and
  the kind's `_KEEP` fields}, padding removed); `examples`: the split's source examples (ReCoRD, AX-g)."""
  outputs, labels, ids = gathered['outputs'], gathered['label_ids'], gathered['example_id']
  if task.kind == sg.ANSWER_OPTIONS:
    questions = list(zip(ids.tolist(), gathered['question_idx'].tolist()))
    return superglue_metrics.compute_metrics(task.name, outputs, labels, question_ids=questions)
  if task.kind == sg.ENTITY_CLOZE:
    by_idx = {e.idx: e for e in examples}
    queries = list(zip(ids.tolist(), gathered['query_idx'].tolist()))
    texts = [by_idx[i].candidates[k] for i, k in zip(ids.tolist(), gathered['candidate_index'].tolist())]
    predictions = superglue_metrics.record_predictions(queries, texts, row_scores(outputs))
    gold = {(e.idx, q.idx): list(q.answers) for e in examples for q in e.queries}
    return superglue_metrics.compute_metrics(task.name, predictions, gold)
  if task.name == 'axg':
    hypotheses = {e.idx: e.text_b for e in examples}
    return superglue_metrics.compute_metrics(task.name, outputs, labels, idx=ids.tolist(),
                                             hypotheses=[hypotheses[i] for i in ids.tolist()])
  return superglue_metrics.compute_metrics(task.name, outputs, labels)


@registry.EVALUATORS.register('superglue')
class SuperGlueEvaluator(DevScoresEvaluator):
  """Scores the labelled dev split of the run's `bert_superglue` dataset; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    self.task, self.dataset = task_and_dataset(context, name, config)
    meta = self.dataset.meta_data
    self.split = config.get('split') or (sg.TEST if self.task.diagnostic else sg.VALIDATION)
    splits = meta.test_splits if self.task.diagnostic else meta.eval_splits
    if self.split not in splits:
      raise errors.ConfigError(f'config.evals.{name}.split={self.split!r}: SuperGLUE {self.task.name} has the '
                               f'labelled splits {list(splits)}.')
    self.task_name, self.main_key = self.task.name, f'{self.split}/{self.task.main_metric}'
    if self.task.diagnostic:  # never selects weights: that is the task's own dev score
      config = config.copy_and_resolve_references()
      with config.unlocked():
        config.save_best = False
    super().__init__(name, config, context)
    self.step_fn = make_eval_step(context.model, context.params_shardings, context.mesh, with_outputs=True)
    self.examples = (source_examples(meta.extra, self.task, self.split)
                     if self.task.kind == sg.ENTITY_CLOZE or self.task.name == 'axg' else [])

  def batches(self) -> Any:
    dataset = self.dataset
    return (dataset.test_iter if self.task.diagnostic else dataset.valid_iter)(self.split)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{'{split}/{metric}': value} of `params`."""
    keep: Tuple[str, ...] = ('label_ids', 'example_id') + _KEEP.get(self.task.kind, ())
    model_metrics, gathered = evaluation.evaluate_split(self.step_fn, params, self.batches(), self.context.mesh,
                                                        keep=keep)
    metrics = {**model_metrics, **dev_metrics(self.task, gathered, self.examples)}
    return {f'{self.split}/{k}': v for k, v in metrics.items()}

  def task_summary(self) -> Dict[str, Any]:
    return {'split': self.split, 'official_name': self.task.official_name}
