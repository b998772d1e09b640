"""`xtreme_predict`: the XTREME submission files of a sentence-pair (XNLI, PAWS-X) or tagging (UD-POS, PAN-X) task,
one per test language, written at the end of a run in the leaderboard layout that google-research/xtreme's
evaluate.py reads.

Config (`config.evals.xtreme_predict`): weights ('best', the default: the run's best_on_dev parameters in
workdir/best when it has them, else the weights being evaluated; 'final': the weights being evaluated), languages
(default: every test language of the dataset), dir (default 'submission', under the workdir).

Files: workdir/submission/{task}/test-{lang}.tsv (`tasks/xtreme_submission.py`), in the order of the language's
test file. Sentence pairs: one label name a line ('entailment', '1', ...; rows sorted by the records' example_id,
the example's position in that file). Tagging: one tag a line per word, a blank line after each sentence
(sentences by sentence_id, a sentence's sub-sentences joined back, each word's tag predicted at its first
WordPiece: `datasets/xtreme_tags.py`); every test language is written, those without dev data (UD-POS kk, th, tl,
yo) too. A training run writes them once it has finished; the BERT trainer's mode 'predict' runs only this kind of
evaluator.
"""

from __future__ import annotations

import os
from typing import Any, Dict

import jax
import numpy as np
from absl import logging

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from projects.bert.evaluators import dev_scores
from projects.bert.datasets import xtreme_tags
from projects.bert.evaluators.xtreme import KEEP, selected_languages, xtreme_task
from projects.bert.tasks import xtreme, xtreme_submission


def predicted_labels(task: xtreme.XtremeTask, outputs: np.ndarray, example_ids: np.ndarray, size: int,
                     where: str) -> list:
  """Label names in test-file order from logits [N, num_labels] and example ids [N] (positions 0..size-1)."""
  ids = np.asarray(example_ids).astype(np.int64).reshape(-1)
  if sorted(ids.tolist()) != list(range(size)):
    raise errors.DataError(f'{where}: the test records carry example ids that are not the positions 0..{size - 1} '
                           f'of the test file, so the submission lines could not follow it. Re-create the records '
                           f'with `prepare xtreme`.')
  order = np.argsort(ids, kind='stable')
  predictions = np.argmax(np.asarray(outputs), axis=-1).reshape(-1)[order]
  return [task.labels[int(i)] for i in predictions]


@registry.EVALUATORS.register('xtreme_predict')
class XtremePredictWriter(dev_scores.PredictionWriter):
  """Writes one submission file per test language in `finalize`; see the module docstring."""

  default_dir = 'submission'

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.task = xtreme_task(context, name, 'test')
    self.languages = selected_languages(config, list(context.dataset.meta_data.test_splits), name)

  def finalize(self, state: Any, step: int) -> None:
    params, self.source = dev_scores.prediction_params(self.context, self.weights, state, step)
    meta = self.context.dataset.meta_data
    tagging = self.task.kind == xtreme.TAGGING
    keep = KEEP[xtreme.TAGGING] if tagging else ('example_id',)  # pairs: the test-file order
    for lang in self.languages:
      gathered = evaluation.gather_predictions(self.predict_step, params, self.context.dataset.test_iter(lang),
                                               self.context.mesh, keep=keep)
      where = str(meta.files['test'][lang])
      if tagging:  # test records hold label 0 on first WordPieces: they mark the words
        _, tags = xtreme_tags.sentence_tags(gathered['label_ids'], np.argmax(gathered['outputs'], axis=-1),
                                            gathered['sentence_id'], gathered['sub_sentence_id'],
                                            meta.extra['num_sentences']['test'][lang], where)
        labels = [[self.task.labels[i] for i in sentence] for sentence in tags]
      else:
        labels = predicted_labels(self.task, gathered['outputs'], gathered['example_id'], meta.test_sizes[lang], where)
      path = os.path.join(self.out_dir, self.task.submission_file(lang))
      if jax.process_index() == 0:  # written beside, then renamed: never half a submission file
        xtreme_submission.write_submission_file(self.out_dir, self.task.name, lang, labels)
      self.files[lang] = path
      logging.info('Wrote %d %s %s predictions%s to %s (weights: %s).', len(labels), self.task.name, lang,
                   ' (sentences)' if tagging else '', path, self.source)

  def summary(self) -> Dict[str, Any]:
    return {'task': self.task.name, 'files': dict(self.files), 'weights': self.source,
            'submission_dir': self.out_dir}
