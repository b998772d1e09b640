"""`xtreme`: zero-shot cross-lingual dev scores of an XTREME sentence-pair (XNLI, PAWS-X) or tagging (UD-POS,
PAN-X) task: the model fine-tuned on English is scored on the dev records of every language of the run's
`bert_xtreme` dataset, in one evaluation.

Config (`config.evals.xtreme`): every (steps between evaluations; 0: only at the end), languages (default: every
dev language of the dataset), save_best (True: while training, keep the parameters of the best evaluation in
workdir/best/).

Metrics, as google-research/xtreme's evaluate.py computes them (percentages, `tasks/xtreme_metrics.py`), per
language and as the task average over the scored languages, 'average/{metric}' ('average/metric' is evaluate.py's
task score avg_metric; 'average/{main metric}' is the main metric):
  sentence pairs  '{lang}/accuracy', and the model's '{lang}/loss'.
  tagging         '{lang}/f1', precision, recall: seqeval's chunks over whole sentences (a sentence's
                  sub-sentence records joined back, each word's tag the prediction at its first WordPiece:
                  `datasets/xtreme_tags.py`), for PAN-X entities and for UD-POS as evaluate.py scores it too; and the
                  model's '{lang}/loss', '{lang}/token_accuracy' over first WordPieces.
'{lang}/num_examples' counts the scored examples (tagging: sentences). Every language's batches have one shape, so
the one compiled eval step serves every language. The summary adds `per_language`, {lang: {metric: value}} of the
last evaluation, one entry per language, and `without_dev`: the dataset's test languages that have no dev records
(UD-POS kk, th, tl, yo), named and skipped here as xtreme's run_tag.py skips them ("Language ... does not exist"),
and predicted for the submission by `xtreme_predict`.

Which number is the score: `final` (after the last step, the protocol number) and the optimistic `best_on_dev`, as
`dev_scores` explains. xtreme's scripts select the checkpoint on the English dev set; here best_on_dev selects on the
language average (set `languages` to 'en' to select on English alone).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
from absl import logging

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from core.train_step import make_eval_step
from projects.bert.datasets import xtreme_pairs, xtreme_tags
from projects.bert.evaluators.dev_scores import DevScoresEvaluator
from projects.bert.tasks import xtreme, xtreme_metrics

AVERAGE = 'average'  # the key prefix of the task average over languages
# The batch fields an evaluation keeps besides the outputs, per task kind.
KEEP = {xtreme.SENTENCE_PAIR: ('label_ids',),
        xtreme.TAGGING: ('label_ids', 'sentence_id', 'sub_sentence_id')}


def xtreme_task(context: EvalContext, evaluator: str, split_kind: str) -> xtreme.XtremeTask:
  """The XTREME task of the run's `bert_xtreme` dataset, which must have `split_kind` records."""
  dataset = context.dataset
  if (dataset is None or getattr(dataset, 'valid_iter' if split_kind == 'eval' else 'test_iter') is None
      or dataset.meta_data.extra.get('benchmark') != xtreme_pairs.BENCHMARK):
    raise errors.ConfigError(f'config.evals.{evaluator} needs a bert_xtreme dataset with {split_kind} records: set '
                             f'config.dataset_name="bert_xtreme" and config.dataset.task / data_dir, and write the '
                             f'records with:\n  {xtreme_pairs.prepare_command("xnli")}')
  return xtreme_pairs.finetuned_task(dataset.meta_data.task)


def selected_languages(config: Any, available: List[str], evaluator: str) -> List[str]:
  """config.evals.{evaluator}.languages ('de,zh' or a list; empty: all of `available`), in `available`'s order."""
  given = config.get('languages')
  if not given:
    return list(available)
  wanted = [s.strip() for s in given.split(',')] if isinstance(given, str) else [str(s) for s in given]
  unknown = [lang for lang in wanted if lang and lang not in available]
  if unknown:
    raise errors.ConfigError(f'config.evals.{evaluator}.languages names {", ".join(unknown)}; the dataset has '
                             f'records for {", ".join(available)}.')
  return [lang for lang in available if lang in wanted]


def gold_and_predicted(task: xtreme.XtremeTask, gathered: Dict[str, np.ndarray], num_sentences: int, where: str
                       ) -> Tuple[list, list]:
  """(gold, predicted) label names of one language from an evaluation pass's gathered rows: per example (sentence
  pairs: logits [N, labels], label_ids [N]) or per whole sentence (tagging: logits [rows, S, labels], label_ids
  [rows, S], sentence_id / sub_sentence_id [rows]; `num_sentences` sentences)."""
  labels = np.asarray(task.labels)
  predictions = np.argmax(np.asarray(gathered['outputs']), axis=-1)
  if task.kind == xtreme.TAGGING:
    gold, predicted = xtreme_tags.sentence_tags(gathered['label_ids'], predictions, gathered['sentence_id'],
                                                gathered['sub_sentence_id'], num_sentences, where)
    return [labels[s].tolist() for s in gold], [labels[s].tolist() for s in predicted]
  return labels[np.asarray(gathered['label_ids']).reshape(-1)].tolist(), labels[predictions.reshape(-1)].tolist()


@registry.EVALUATORS.register('xtreme')
class XtremeEvaluator(DevScoresEvaluator):
  """Scores every dev language of the run's `bert_xtreme` dataset; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    self.task = xtreme_task(context, name, 'eval')
    meta = context.dataset.meta_data
    self.languages = selected_languages(config, list(meta.eval_splits), name)
    self.without_dev = [lang for lang in meta.test_splits if lang not in meta.eval_splits]
    if self.without_dev:
      logging.info('XTREME %s: no dev data for %s (as in xtreme\'s layout: %s); skipped for dev scores, predicted '
                   'for the submission.', self.task.name, ', '.join(self.without_dev),
                   ', '.join(meta.extra.get('without_dev') or []) or 'none')
    self.task_name, self.main_key = self.task.name, f'{AVERAGE}/{self.task.main_metric}'
    super().__init__(name, config, context)
    # One jitted step: every language's batches are [eval batch, S], so it compiles once for all of them.
    self.step_fn = make_eval_step(context.model, context.params_shardings, context.mesh, with_outputs=True)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{'{lang}/{metric}': value} of `params` on every language, and {'average/{metric}': language mean}."""
    results: Dict[str, float] = {}
    per_language: Dict[str, Dict[str, float]] = {}
    meta = self.context.dataset.meta_data
    for lang in self.languages:
      model_metrics, gathered = evaluation.evaluate_split(self.step_fn, params, self.context.dataset.valid_iter(lang),
                                                          self.context.mesh, keep=KEEP[self.task.kind])
      gold, predicted = gold_and_predicted(self.task, gathered, (meta.extra.get('num_sentences') or {}).get(
          'eval', {}).get(lang, 0), str(meta.files['eval'][lang]))
      per_language[lang] = xtreme_metrics.score_language(self.task.name, gold, predicted, lang)
      results.update({f'{lang}/{k}': v for k, v in {**model_metrics, **per_language[lang]}.items()})
      results[f'{lang}/num_examples'] = float(len(gold))
    averages = xtreme_metrics.task_average(self.task.name, per_language)
    results.update({f'{AVERAGE}/{k[len("avg_"):]}': v for k, v in averages.items()})  # avg_metric -> average/metric
    return results

  def task_summary(self) -> Dict[str, Any]:
    out: Dict[str, Any] = {'benchmark': 'xtreme', 'languages': self.languages, 'units': 'percent',
                           'without_dev': self.without_dev}
    if self.history:
      last = self.history[-1]
      out['per_language'] = {lang: {k.split('/', 1)[1]: v for k, v in last.items()
                                    if k.startswith(f'{lang}/') and not k.endswith('num_examples')}
                             for lang in self.languages}
    return out
