"""`glue_predict`: the GLUE submission files (`index<TAB>prediction`) of the test splits, written at the end of a run.

Config (`config.evals.glue_predict`): weights ('best', the default: the run's best_on_dev parameters in
workdir/best when it has them, else the weights being evaluated; 'final': the weights being evaluated), splits
(default: every test split of the dataset), dir (default 'predictions', under the workdir), outputs ('labels', the
default: the submission files only; 'probabilities' or 'logits': also, per split, DIR/{outputs}/{submission file}
with `index<TAB>{label}...`: each label's softmax probability or logit per example; STS-B's 'logits' are the
unclipped scores).

Files: workdir/predictions/{the task's submission file of each split}, e.g. SST-2.tsv, or MNLI-m.tsv, MNLI-mm.tsv and
AX.tsv. Classification predictions are label names (e.g. 'not_entailment'), STS-B predictions scores clipped to
[0, 5]; rows are sorted by the GLUE index of the test file. A training run writes them once it has finished; the
BERT trainer's mode 'predict' runs only this kind of evaluator.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np
from absl import logging

from core import atomic, errors, evaluation, registry
from core.evaluators import EvalContext
from projects.bert.tasks import glue_metrics
from projects.bert.tasks import glue as glue_tasks
from projects.bert.evaluators import dev_scores
from projects.bert.evaluators.glue import glue_task

# GLUE's STS-B scores are similarities in [0, 5]; the server expects predictions in that range.
STSB_RANGE = (0.0, 5.0)


OUTPUTS = ('labels', 'probabilities', 'logits')  # what `outputs` may ask for besides the submission files


def prediction_rows(task: glue_tasks.GlueTask, outputs: np.ndarray, example_ids: Optional[np.ndarray]
                    ) -> List[Tuple[int, str]]:
  """(index, prediction) rows of a GLUE submission file, sorted by index.

  Classification predictions are label names (task.labels, e.g. 'not_entailment' or '1'); STS-B predictions are
  scores clipped to [0, 5]. Without example ids the index is the row number.
  """
  outputs = np.asarray(outputs)
  ids = _row_ids(outputs, example_ids)
  if task.is_regression:
    values = [f'{v:.6f}' for v in np.clip(outputs.reshape(-1), *STSB_RANGE)]
  else:
    values = [task.labels[i] for i in glue_metrics.predictions_from_outputs(task.name, outputs)]
  return sorted(zip(ids.tolist(), values))


def output_rows(task: glue_tasks.GlueTask, outputs: np.ndarray, example_ids: Optional[np.ndarray], kind: str
                ) -> Tuple[str, List[Tuple[int, str]]]:
  """(header, rows sorted by index) of a per-example `kind` file ('probabilities' or 'logits'): one column per
  label (STS-B: one 'score' column of unclipped scores, 'logits' only). outputs: float [N, labels] or [N]."""
  outputs = np.asarray(outputs, np.float64)
  ids = _row_ids(outputs, example_ids)
  if task.is_regression:
    columns, values = ['score'], outputs.reshape(-1, 1)
  else:
    columns, values = list(task.labels), outputs.reshape(len(outputs), -1)
    if kind == 'probabilities':
      shifted = np.exp(values - values.max(axis=-1, keepdims=True))
      values = shifted / shifted.sum(axis=-1, keepdims=True)
  rows = sorted(zip(ids.tolist(), ['\t'.join(f'{v:.6g}' for v in row) for row in values]))
  return '\t'.join(['index'] + columns), rows


def _row_ids(outputs: np.ndarray, example_ids: Optional[np.ndarray]) -> np.ndarray:
  """The GLUE index of each row: the example ids, or the row numbers for records without them."""
  ids = None if example_ids is None else np.asarray(example_ids).astype(np.int64)
  if ids is None or (len(ids) and np.all(ids < 0)):  # records without example_id (the builder fills -1)
    if jax.process_count() > 1:
      logging.warning('The test records carry no example_id: with %d processes the rows are not in file order, so '
                      'the submission indices are wrong. Re-create the records with `prepare glue`.',
                      jax.process_count())
    ids = np.arange(len(outputs))
  return ids


@registry.EVALUATORS.register('glue_predict')
class GluePredictWriter(dev_scores.PredictionWriter):
  """Writes one submission TSV per test split in `finalize`; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.task = glue_task(context, name, 'test')
    self.splits: List[str] = list(config.get('splits') or context.dataset.meta_data.test_splits)
    self.outputs = config.get('outputs') or 'labels'
    if self.outputs not in OUTPUTS or (self.outputs == 'probabilities' and self.task.is_regression):
      allowed = ('labels', 'logits') if self.task.is_regression else OUTPUTS
      raise errors.ConfigError(f'config.evals.{name}.outputs={self.outputs!r}; use one of {allowed} '
                               f'({self.task.name}).')

  def finalize(self, state: Any, step: int) -> None:
    params, self.source = dev_scores.prediction_params(self.context, self.weights, state, step)
    for split in self.splits:
      gathered = evaluation.gather_predictions(self.predict_step, params, self.context.dataset.test_iter(split),
                                               self.context.mesh, keep=('example_id',))
      rows = prediction_rows(self.task, gathered['outputs'], gathered.get('example_id'))
      path = os.path.join(self.out_dir, self.task.submission_files[split])
      if jax.process_index() == 0:  # beside, then renamed: a crash never leaves half a submission file
        atomic.write_text(path, 'index\tprediction\n' + ''.join(f'{i}\t{p}\n' for i, p in rows))
      self.files[split] = path
      if self.outputs != 'labels':
        header, extra = output_rows(self.task, gathered['outputs'], gathered.get('example_id'), self.outputs)
        extra_path = os.path.join(self.out_dir, self.outputs, self.task.submission_files[split])
        if jax.process_index() == 0:
          atomic.write_text(extra_path, header + '\n' + ''.join(f'{i}\t{v}\n' for i, v in extra))
        self.files[f'{split}/{self.outputs}'] = extra_path
      logging.info('Wrote %d %s predictions of split %s to %s (weights: %s).', len(rows), self.task.name, split, path,
                   self.source)

  def summary(self) -> Dict[str, Any]:
    return {'task': self.task.name, 'files': dict(self.files), 'weights': self.source}
