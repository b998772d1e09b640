"""The SQuAD task table: each version's official files, metrics and prediction files in one place.

SQuAD v1.1 (Rajpurkar et al., 2016) and v2.0 (Rajpurkar et al., 2018, with unanswerable questions) are one task
each; the test sets are hidden, so the dev file is the one scored here and predictions.json (+ null_odds.json for
v2.0) is what the leaderboard's evaluation reads. How `prepare squad` lays out the records is
`datasets/squad_format.py`; how answers are decoded and scored is `tasks/squad_metrics.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

EXACT_MATCH = 'exact_match'
F1 = 'f1'
PREDICTIONS_FILE = 'predictions.json'
NBEST_FILE = 'nbest_predictions.json'
NULL_ODDS_FILE = 'null_odds.json'


@dataclasses.dataclass(frozen=True)
class SquadVersion:
  """One SQuAD version: its official file names, whether it has unanswerable questions, the metrics the official
  script reports (in percent) with the main one, and the prediction files it is scored from."""
  name: str
  version_2_with_negative: bool
  metrics: Tuple[str, ...]
  prediction_files: Tuple[str, ...]
  main_metric: str = F1

  @property
  def train_file(self) -> str:
    return f'train-{self.name}.json'  # the official download's names

  @property
  def dev_file(self) -> str:
    return f'dev-{self.name}.json'


VERSIONS: Dict[str, SquadVersion] = {v.name: v for v in (
    SquadVersion('v1.1', False, metrics=(EXACT_MATCH, F1),
                 prediction_files=(PREDICTIONS_FILE, NBEST_FILE)),
    # The headline is at the null-odds threshold best on dev (`squad_metrics`), the predictions as written beside it.
    SquadVersion('v2.0', True,
                 metrics=(EXACT_MATCH, F1, 'best_threshold_for_exact_match', 'best_threshold_for_f1',
                          'exact_match_as_predicted', 'f1_as_predicted', 'has_answer_exact_match', 'has_answer_f1',
                          'no_answer_exact_match', 'no_answer_f1'),
                 prediction_files=(PREDICTIONS_FILE, NBEST_FILE, NULL_ODDS_FILE)),
)}


def get_version(name: str) -> SquadVersion:
  """The version of a name ('1.1', 'v2', 'V2.0', ...); ValueError listing the known ones."""
  key = str(name).strip().lower().lstrip('v')
  key = {'1': '1.1', '2': '2.0'}.get(key, key)
  if f'v{key}' not in VERSIONS:
    raise ValueError(f'Unknown SQuAD version {name!r}; known: {", ".join(VERSIONS)}.')
  return VERSIONS[f'v{key}']
