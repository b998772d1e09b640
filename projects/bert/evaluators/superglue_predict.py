"""`superglue_predict`: the SuperGLUE leaderboard file of the run's task (`tasks.superglue_submission`), written at
the end of a run.

Config (`config.evals.superglue_predict`): weights ('best', the default: the run's best_on_dev parameters in
workdir/best when it has them, else the weights being evaluated; 'final': the weights being evaluated), dir
(default 'submission', under the workdir), task (default: the run's; 'axb' or 'axg' in an RTE run, as for the
`superglue` evaluator).

File: workdir/submission/{BoolQ.jsonl, ..., AX-g.jsonl}, one JSON object a line in the test file's order, in the
format of `superglue_submission`: class predictions as the task's submission labels, MultiRC nested by passage /
question / answer, ReCoRD the text of the best-scored candidate entity of each query. The diagnostics are predicted
with the RTE run's weights (configs/superglue.py:rte has a writer for each, `task` axb / axg). The BERT
trainer's mode 'predict' runs only this kind of evaluator (the dataset's meta data names it as its writer).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Sequence

import jax
import numpy as np
from absl import logging

from core import evaluation, registry
from core.evaluators import EvalContext
from projects.bert.evaluators import dev_scores
from projects.bert.evaluators.superglue import row_scores, source_examples, task_and_dataset
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_metrics, superglue_submission

_KEEP = {sg.ANSWER_OPTIONS: ('question_idx', 'answer_idx'), sg.ENTITY_CLOZE: ('query_idx', 'candidate_index')}


def test_predictions(task: sg.SuperGlueTask, gathered: Mapping[str, np.ndarray], examples: Sequence[Any]) -> Any:
  """What `superglue_submission.submission_rows` takes, from the gathered test rows ({'outputs', 'example_id', and
  the kind's `_KEEP` fields}, padding removed, in any order): class ids aligned with `examples`; MultiRC 0/1
  aligned with the answer options in reading order; ReCoRD {query idx: entity text}."""
  ids = gathered['example_id'].tolist()
  if task.kind == sg.ENTITY_CLOZE:
    by_idx = {e.idx: e for e in examples}
    texts = [by_idx[i].candidates[k] for i, k in zip(ids, gathered['candidate_index'].tolist())]
    return superglue_metrics.record_predictions(gathered['query_idx'].tolist(), texts, row_scores(gathered['outputs']))
  classes = superglue_metrics.class_predictions(gathered['outputs']).tolist()
  if task.kind == sg.ANSWER_OPTIONS:
    keys = zip(ids, gathered['question_idx'].tolist(), gathered['answer_idx'].tolist())
    by_key = dict(zip(keys, classes))
    return np.array([by_key[e.idx, q.idx, a.idx] for e in examples for q in e.questions for a in q.answers])
  by_id = dict(zip(ids, classes))
  missing = [e.idx for e in examples if e.idx not in by_id]
  if missing:
    raise ValueError(f'{task.official_name}: no prediction for idx {missing[:5]}: the test records and the jsonl '
                     f'file differ; re-run `prepare superglue --task={task.name}`.')
  return np.array([by_id[e.idx] for e in examples])


@registry.EVALUATORS.register('superglue_predict')
class SuperGluePredictWriter(dev_scores.PredictionWriter):
  """Writes the task's leaderboard file in `finalize`; see the module docstring."""

  default_dir = 'submission'

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.task, self.dataset = task_and_dataset(context, name, config)
    self.path = ''

  def finalize(self, state: Any, step: int) -> None:
    params, self.source = dev_scores.prediction_params(self.context, self.weights, state, step)
    examples: List[Any] = source_examples(self.dataset.meta_data.extra, self.task, sg.TEST)
    keep = ('example_id',) + _KEEP.get(self.task.kind, ())
    gathered = evaluation.gather_predictions(self.predict_step, params, self.dataset.test_iter(sg.TEST),
                                             self.context.mesh, keep=keep)
    rows = superglue_submission.submission_rows(self.task.name, examples,
                                                test_predictions(self.task, gathered, examples))
    self.path = os.path.join(self.out_dir, self.task.submission_file)
    if jax.process_index() == 0:  # beside, then renamed: never half a file
      superglue_submission.write_submission(self.out_dir, self.task.name, rows)
    logging.info('Wrote %d %s leaderboard rows to %s (weights: %s).', len(rows), self.task.official_name, self.path,
                 self.source)

  def summary(self) -> Dict[str, Any]:
    return {'task': self.task.name, 'file': self.path, 'weights': self.source}
