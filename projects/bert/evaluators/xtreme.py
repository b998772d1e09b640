"""`xtreme`: zero-shot cross-lingual dev scores of an XTREME sentence-pair task (XNLI, PAWS-X): the model fine-tuned
on English is scored on the dev records of every language of the run's `bert_xtreme` dataset, in one evaluation.

Config (`config.evals.xtreme`): every (steps between evaluations; 0: only at the end), languages (default: every
dev language of the dataset), save_best (True: while training, keep the parameters of the best evaluation in
workdir/best/).

Metrics, as google-research/xtreme's evaluate.py computes them (percentages, `tasks/xtreme_metrics.py`): per
language '{lang}/accuracy' (and the model's '{lang}/loss'), and the task average over the scored languages,
'average/accuracy' (evaluate.py's avg_accuracy = the task score 'avg_metric'), the main metric. Every language's
batches have one shape, so the one compiled eval step serves every language. The summary adds `per_language`,
{lang: {metric: value}} of the last evaluation, one entry per language.

Which number is the score: `final` (after the last step, the protocol number) and the optimistic `best_on_dev`, as
`dev_scores` explains. xtreme's scripts select the checkpoint on the English dev set; here best_on_dev selects on the
language average (set `languages` to 'en' to select on English alone).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from core.train_step import make_eval_step
from projects.bert.datasets import xtreme_pairs
from projects.bert.evaluators.dev_scores import DevScoresEvaluator
from projects.bert.tasks import xtreme, xtreme_metrics

AVERAGE = 'average'  # the key prefix of the task average over languages


def xtreme_pair_task(context: EvalContext, evaluator: str, split_kind: str) -> xtreme.XtremeTask:
  """The XTREME sentence-pair task of the run's `bert_xtreme` dataset, which must have `split_kind` records."""
  dataset = context.dataset
  if (dataset is None or getattr(dataset, 'valid_iter' if split_kind == 'eval' else 'test_iter') is None
      or dataset.meta_data.extra.get('benchmark') != xtreme_pairs.BENCHMARK):
    raise errors.ConfigError(f'config.evals.{evaluator} needs a bert_xtreme dataset with {split_kind} records: set '
                             f'config.dataset_name="bert_xtreme" and config.dataset.task / data_dir, and write the '
                             f'records with:\n  {xtreme_pairs.prepare_command("xnli")}')
  return xtreme_pairs.pair_task(dataset.meta_data.task)


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


def language_scores(task: xtreme.XtremeTask, outputs: np.ndarray, label_ids: np.ndarray) -> Dict[str, float]:
  """evaluate.py's scores of one language from logits [N, num_labels] and gold label ids [N]."""
  predictions = np.argmax(np.asarray(outputs), axis=-1).reshape(-1)
  labels = list(task.labels)
  return xtreme_metrics.accuracy([labels[int(i)] for i in np.asarray(label_ids).reshape(-1)],
                                 [labels[int(i)] for i in predictions])


@registry.EVALUATORS.register('xtreme')
class XtremeEvaluator(DevScoresEvaluator):
  """Scores every dev language of the run's `bert_xtreme` dataset; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    self.task = xtreme_pair_task(context, name, 'eval')
    self.languages = selected_languages(config, list(context.dataset.meta_data.eval_splits), name)
    self.task_name, self.main_key = self.task.name, f'{AVERAGE}/{self.task.main_metric}'
    super().__init__(name, config, context)
    # One jitted step: every language's batches are [eval batch, S], so it compiles once for all of them.
    self.step_fn = make_eval_step(context.model, context.params_shardings, context.mesh, with_outputs=True)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{'{lang}/{metric}': value} of `params` on every language, and {'average/{metric}': language mean}."""
    results: Dict[str, float] = {}
    per_language: Dict[str, Dict[str, float]] = {}
    for lang in self.languages:
      model_metrics, gathered = evaluation.evaluate_split(self.step_fn, params, self.context.dataset.valid_iter(lang),
                                                          self.context.mesh, keep=('label_ids',))
      per_language[lang] = language_scores(self.task, gathered['outputs'], gathered['label_ids'])
      results.update({f'{lang}/{k}': v for k, v in {**model_metrics, **per_language[lang]}.items()})
      results[f'{lang}/num_examples'] = float(len(gathered['label_ids']))
    averages = xtreme_metrics.task_average(self.task.name, per_language)
    results.update({f'{AVERAGE}/{k[len("avg_"):]}': v for k, v in averages.items()})  # avg_metric -> average/metric
    return results

  def task_summary(self) -> Dict[str, Any]:
    out: Dict[str, Any] = {'benchmark': 'xtreme', 'languages': self.languages, 'units': 'percent'}
    if self.history:
      last = self.history[-1]
      out['per_language'] = {lang: {k.split('/', 1)[1]: v for k, v in last.items()
                                    if k.startswith(f'{lang}/') and not k.endswith('num_examples')}
                             for lang in self.languages}
    return out
