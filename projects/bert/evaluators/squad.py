"""`squad`: SQuAD v1.1 / v2.0 dev-set scores of the weights being trained or evaluated, and the best of them kept.

Config (`config.evals.squad`): every (steps between evaluations; 0: only at the end), save_best (True: while
training, keep the parameters of the best dev F1 in workdir/best/), and the decoding: n_best_size (20),
max_answer_length (30 tokens), null_score_diff_threshold (SQuAD 2.0; 0.0), as Model Garden's
QuestionAnsweringConfig and the BERT paper.

One pass over the eval features gathers the span logits (a length-bucketed pass, `config.dataset.eval_length_buckets`,
gives each batch's at its bucket length L: `full_length_span_logits` fills positions L..S-1 with
`squad_metrics.BEYOND_BUCKET_LOGIT`, so every feature decodes from [S] lists, in split order, as a padded pass's);
`squad_metrics` decodes them with Model Garden's
`squad_lib.postprocess_output` (n-best spans mapped back to the paragraph's text; v2.0's null answer when its score
beats the best span's by more than the threshold) and scores the answers with the official evaluation scripts
(Model Garden's `squad_evaluate_v1_1` / `squad_evaluate_v2_0`), in percent: exact_match and f1 (the main metric);
v2.0's exact_match / f1 at the null-odds threshold best on dev (the official threshold analysis; Model Garden's
and the BERT paper's headline) with best_threshold_for_* beside them, and, labelled, *_as_predicted and
has_answer_* / no_answer_* of the answers as written at `null_score_diff_threshold`. The files of the official
format are written by `squad_predict`. `final` and `best_on_dev` as for GLUE (`dev_scores`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from core.train_step import make_predict_step
from projects.bert.tasks import squad_metrics
from projects.bert.datasets import squad_format
from projects.bert.evaluators.dev_scores import DevScoresEvaluator

# Model Garden's QuestionAnsweringConfig defaults (the BERT paper's decoding).
DECODING = {'n_best_size': 20, 'max_answer_length': 30, 'null_score_diff_threshold': 0.0}


def decoding_settings(name: str, config: Any, context: EvalContext, other_fields: Sequence[str]) -> Dict[str, Any]:
  """The decoding fields of `config.evals.{name}`, else of the run's `squad` entry, else `DECODING`. A field that is
  neither these, `other_fields`, `type` nor `every` is an error: a misspelt setting would silently do nothing."""
  known = {'type', 'every', *DECODING, *other_fields}
  unknown = sorted(set(config.keys()) - known)
  if unknown:
    raise errors.ConfigError(f'config.evals.{name} has unknown fields {unknown}; it reads {sorted(known)}.')
  squad_entry = (context.config.get('evals') or {}).get('squad') or {}
  out = {}
  for field, default in DECODING.items():
    value = config.get(field)
    if value is None:
      value = squad_entry.get(field)
    out[field] = type(default)(default if value is None else value)
  if out['n_best_size'] < 1 or out['max_answer_length'] < 1:
    raise errors.ConfigError(f'config.evals.{name}: n_best_size={out["n_best_size"]} and max_answer_length='
                             f'{out["max_answer_length"]} must be positive (upstream: 20 and 30).')
  return out


def full_length_span_logits(predict_step: Callable, seq_len: int) -> Callable:
  """`predict_step(params, batch)` -> span logits [B, L, 2] for batches cut to L <= `seq_len` tokens (length-bucketed
  passes) -> the same step giving [B, seq_len, 2], positions L.. filled with `squad_metrics.BEYOND_BUCKET_LOGIT`.

  Why fill rather than decode the first L: upstream's decoding (`postprocess_output`) then reads the same [S] lists
  as for a padded pass, unchanged, and the gathered outputs keep one shape to concatenate. The fill ranks below
  every computed logit, and its positions lie past every feature's tokens, so they are never an answer.
  """
  @jax.jit
  def fill(logits: jax.Array) -> jax.Array:
    pad = ((0, 0), (0, seq_len - logits.shape[1]), (0, 0))
    return jnp.pad(logits, pad, constant_values=squad_metrics.BEYOND_BUCKET_LOGIT)

  def step(params: Any, batch: Any) -> jax.Array:
    logits = predict_step(params, batch)
    return logits if logits.shape[1] == seq_len else fill(logits)
  return step


class SquadDev:
  """The run's SQuAD dev set and how its answers are decoded: `predict(params)` -> (predictions, nbest, null_odds),
  `score(predictions, null_odds)` -> the official scores. Shared by `squad` and `squad_predict`; `other_fields`
  are the config fields of the evaluator besides the decoding ones."""

  def __init__(self, name: str, config: Any, context: EvalContext, other_fields: Sequence[str]):
    from projects.bert.datasets import span_qa as squad  # TensorFlow: loaded when a SQuAD evaluator is built

    dataset = context.dataset
    if dataset is None or dataset.valid_iter is None or 'version_2_with_negative' not in dataset.meta_data.extra:
      raise errors.ConfigError(f'config.evals.{name} needs a bert_squad dataset: set config.dataset_name='
                               f'"bert_squad" and config.dataset.data_dir (the --output_dir of `python -m '
                               f'projects.bert.datasets.prepare squad`).')
    self.context = context
    self.settings = decoding_settings(name, config, context, other_fields)
    self.data = squad.load_eval_data(dataset.meta_data)
    self.version = squad_format.version_of(self.data.version_2_with_negative)
    self.predict_step = full_length_span_logits(make_predict_step(context.model, context.params_shardings,
                                                                  context.mesh), dataset.meta_data.max_seq_length)

  def predict(self, params: Any) -> Tuple[Dict[str, str], Dict[str, Any], Dict[str, float]]:
    gathered = evaluation.gather_predictions(self.predict_step, params, self.context.dataset.valid_iter(),
                                             self.context.mesh, keep=('unique_ids',))
    return squad_metrics.decode(self.data.examples, self.data.features, gathered['unique_ids'], gathered['outputs'],
                                do_lower_case=self.data.do_lower_case,
                                version_2_with_negative=self.data.version_2_with_negative, **self.settings)

  def score(self, predictions: Dict[str, str], null_odds: Optional[Dict[str, float]]) -> Dict[str, float]:
    return squad_metrics.score_predictions(self.data, predictions, null_odds)


@registry.EVALUATORS.register('squad')
class SquadEvaluator(DevScoresEvaluator):
  """Official SQuAD dev scores; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    self.dev = SquadDev(name, config, context, other_fields=('save_best',))
    self.task_name, self.main_key = context.dataset.meta_data.task, squad_metrics.MAIN_METRIC
    super().__init__(name, config, context)

  def evaluate(self, params: Any) -> Dict[str, float]:
    predictions, _, null_odds = self.dev.predict(params)
    return self.dev.score(predictions, null_odds)

  def task_summary(self) -> Dict[str, Any]:
    return {'version': self.dev.version, 'decoding': dict(self.dev.settings)}
