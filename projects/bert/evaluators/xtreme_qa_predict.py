"""`xtreme_qa_predict`: the XTREME submission files of a QA task (XQuAD, MLQA, TyDiQA-GoldP), one per test language,
written at the end of a run in the leaderboard layout that google-research/xtreme's evaluate.py reads.

Config (`config.evals.xtreme_qa_predict`): weights ('best', the default: the run's best_on_dev parameters in
workdir/best when it has them, else the weights being evaluated; 'final': the weights being evaluated), languages
(default: every test language of the dataset), dir (default 'submission', under the workdir), and the decoding
fields of `xtreme_qa` (n_best_size, max_answer_length).

Files: workdir/submission/{task}/test-{lang}.json (`tasks/xtreme_submission.py`): {question id: answer text}, one
answer for every question of the language's test JSON (xtreme's predict_qa.sh writes the same from run_squad.py's
predictions). Where a test JSON carries gold answers (XQuAD, MLQA test and TyDiQA-GoldP's public sets do), the
summary also holds `test_scores`: evaluate.py's scores of the files written (per language, the language means and
avg_metric). A training run writes them once it has finished; the BERT trainer's mode 'predict' runs this writer
(the dataset names it).
"""

from __future__ import annotations

import os
from typing import Any, Dict

import jax
from absl import logging

from core import errors, registry
from core.evaluators import EvalContext
from projects.bert.evaluators import dev_scores
from projects.bert.evaluators.xtreme_qa import QaLanguages, has_answers, language_results, per_language_of
from projects.bert.tasks import xtreme_submission


def question_ids(dataset: Any) -> list:
  """The question ids of a SQuAD JSON's 'data', in file order."""
  return [qa['id'] for article in dataset for paragraph in article['paragraphs'] for qa in paragraph['qas']]


@registry.EVALUATORS.register('xtreme_qa_predict')
class XtremeQaPredictWriter(dev_scores.PredictionWriter):
  """Writes one submission file per test language in `finalize`; see the module docstring."""

  default_dir = 'submission'

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.qa = QaLanguages(name, config, context, 'test', ('weights', 'dir', 'languages'), self.predict_step)
    self.test_scores: Dict[str, Any] = {}

  def finalize(self, state: Any, step: int) -> None:
    params, self.source = dev_scores.prediction_params(self.context, self.weights, state, step)
    task, scored, counts = self.qa.task, {}, {}
    for lang in self.qa.languages:
      predictions = self.qa.predict(params, lang)
      data = self.qa.data[lang]
      ids = question_ids(data.dataset)
      if set(predictions) != set(ids):  # decoding answers every question it has a feature of
        raise errors.DataError(f'{self.context.dataset.meta_data.files["test"][lang]["features"]}: answers for '
                               f'{len(set(predictions) & set(ids))} of the {len(ids)} questions of '
                               f'{self.context.dataset.meta_data.files["test"][lang]["json"]}; re-create the '
                               f'records with `prepare xtreme --task={task.name}`.')
      path = os.path.join(self.out_dir, task.submission_file(lang))
      if jax.process_index() == 0:  # written beside, then renamed: never half a submission file
        xtreme_submission.write_submission_file(self.out_dir, task.name, lang, predictions)
      self.files[lang] = path
      if has_answers(data.dataset):
        scored[lang], counts[lang] = self.qa.score(lang, predictions), len(ids)
      logging.info('Wrote %d %s %s answers to %s (weights: %s).', len(predictions), task.name, lang, path,
                   self.source)
    if scored:
      flat = language_results(scored, task.name, counts)
      self.test_scores = {'per_language': per_language_of(flat, list(scored)),
                          **{k: v for k, v in flat.items() if k.startswith('average/')},
                          'unscored': [lang for lang in self.qa.languages if lang not in scored]}
      logging.info('%s test scores of the files written (evaluate.py): %s', task.name,
                   {k: round(v, 2) for k, v in flat.items() if k.startswith('average/')})

  def summary(self) -> Dict[str, Any]:
    out = {'task': self.qa.task.name, 'files': dict(self.files), 'weights': self.source,
           'submission_dir': self.out_dir, 'missing': self.qa.missing, 'decoding': dict(self.qa.settings)}
    if self.test_scores:
      out['test_scores'] = self.test_scores
    return out
