"""`squad_predict`: SQuAD prediction files in the official formats, written at the end of a run.

Config (`config.evals.squad_predict`): weights ('best', the default: the run's best_on_dev parameters in workdir/best
when it has them, else the weights being evaluated; 'final': the weights being evaluated), dir (default
'predictions', under the workdir), and the decoding fields of `squad` (n_best_size, max_answer_length,
null_score_diff_threshold; unset: those of the run's `config.evals.squad`, else upstream's).

Files: workdir/predictions/predictions.json ({question id: answer text}, what the official evaluation script and the
SQuAD leaderboard read), nbest_predictions.json ({id: [{text, probability, start_logit, end_logit}, ...]}) and, for
v2.0, null_odds.json ({id: null score - best span score}, the official v2.0 script's --na-prob-file). The questions
are those of the dataset's eval JSON (SQuAD's test sets are hidden: a submission runs the code on them); since the
dev JSON has answers, the summary also holds the official scores of the files written. A training run writes them
once it has finished; the BERT trainer's mode 'predict' runs only this kind of evaluator.
"""

from __future__ import annotations

from typing import Any, Dict

import jax
from absl import logging

from core import registry
from core.evaluators import EvalContext
from projects.bert.tasks import squad_metrics
from projects.bert.evaluators import dev_scores
from projects.bert.evaluators.squad import SquadDev


@registry.EVALUATORS.register('squad_predict')
class SquadPredictWriter(dev_scores.PredictionWriter):
  """Writes the prediction files in `finalize`; see the module docstring."""

  needs_predict_step = False  # SquadDev predicts

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    self.dev = SquadDev(name, config, context, other_fields=('weights', 'dir'))
    self.scores: Dict[str, float] = {}

  def finalize(self, state: Any, step: int) -> None:
    params, self.source = dev_scores.prediction_params(self.context, self.weights, state, step)
    predictions, nbest, null_odds = self.dev.predict(params)
    v2 = self.dev.data.version_2_with_negative
    if jax.process_index() == 0:  # each file beside, then renamed: a crash never leaves half a file
      self.files = squad_metrics.write_prediction_files(self.out_dir, predictions, nbest, null_odds, v2)
    self.scores = self.dev.score(predictions, null_odds)
    logging.info('Wrote the SQuAD %s predictions of %d questions to %s (weights: %s); their official dev scores: %s',
                 self.dev.version, len(predictions), self.out_dir, self.source,
                 {k: round(v, 2) for k, v in self.scores.items()})

  def summary(self) -> Dict[str, Any]:
    return {'version': self.dev.version, 'files': dict(self.files), 'weights': self.source,
            'decoding': dict(self.dev.settings), 'dev_scores': dict(self.scores)}
