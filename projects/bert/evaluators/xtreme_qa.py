"""`xtreme_qa`: zero-shot cross-lingual scores of an XTREME QA task (XQuAD, MLQA, TyDiQA-GoldP): the model fine-tuned
on English answers the questions of every language of the run's `bert_xtreme_qa` dataset, in one evaluation.

Config (`config.evals.xtreme_qa`): every (steps between evaluations; 0: only at the end), split ('dev' or 'test':
which split's languages are scored; default 'dev'), languages (default: every language of that split), save_best
(True: while training, keep the parameters of the best evaluation in workdir/best/), and SQuAD's decoding fields
n_best_size (20) and max_answer_length (30 tokens), as xtreme's run_squad.py and Model Garden decode.

Decoding is SQuAD's (`squad_metrics.decode`: n-best spans of every window mapped back to the paragraph's text), on
the span logits of one compiled predict step: every language's batches are [eval batch, S] (with
`config.dataset.eval_length_buckets`, a few bucket lengths L, their logits filled back to S as `squad`'s are).
Scores, as google-research/xtreme's evaluate.py computes them (percentages, `tasks/xtreme_metrics.py`): per language
'{lang}/exact_match' and '{lang}/f1' (XQuAD, TyDiQA: the SQuAD v1.1 script; MLQA: MLQA's script with that
language's normalisation) and '{lang}/num_examples' (questions); the language means 'average/exact_match' and
'average/f1' (the main metric, which best_on_dev selects on), and 'average/metric', evaluate.py's task score
avg_metric = (mean EM + mean F1) / 2, which is also what the XTREME QA group mean averages. The summary adds
`per_language` ({lang: {metric: value}} of the last evaluation) and `missing` (languages the download folder lacked
when `prepare xtreme` ran: named and skipped).

Which split: XQuAD's dev is SQuAD v1.1 dev (English), its 11 languages are test only; MLQA has dev and test in 7
languages; TyDiQA-GoldP has only test (its official dev set). xtreme's scripts train for a fixed number of epochs and
report the test languages (their public answers): that is split 'test' with `final`, the protocol number. Selecting
on a split also scored (best_on_dev) is optimistic, as `dev_scores` explains; the XTREME configs select only on
dev. The submission files are `xtreme_qa_predict`'s.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from core import errors, evaluation, registry
from core.evaluators import EvalContext
from projects.bert.evaluators.dev_scores import DevScoresEvaluator
from projects.bert.evaluators.squad import decoding_settings, full_length_span_logits
from projects.bert.evaluators.xtreme import AVERAGE, selected_languages
from projects.bert.tasks import squad_metrics, xtreme, xtreme_metrics

SPLITS = {'dev': 'eval', 'test': 'test'}  # config.evals.*.split -> the dataset's split kind


def xtreme_qa_task(context: EvalContext, evaluator: str, kind: str) -> xtreme.XtremeTask:
  """The XTREME QA task of the run's `bert_xtreme_qa` dataset, which must have `kind` ('eval' / 'test') records."""
  dataset = context.dataset
  if (dataset is None or dataset.meta_data.extra.get('benchmark') != 'xtreme'
      or dataset.meta_data.extra.get('kind') != xtreme.SPAN_QA):
    raise errors.ConfigError(f'config.evals.{evaluator} needs a bert_xtreme_qa dataset: set config.dataset_name='
                             f'"bert_xtreme_qa" and config.dataset.task / data_dir, and write the records with:\n  '
                             f'python -m projects.bert.datasets.prepare xtreme --task=mlqa --xtreme_dir=XTREME_DIR '
                             f'--vocab_file=VOCAB --output_dir=OUT_DIR')
  task = xtreme.get_task(dataset.meta_data.task)
  if getattr(dataset, 'valid_iter' if kind == 'eval' else 'test_iter') is None:
    which = 'dev' if kind == 'eval' else 'test'
    raise errors.ConfigError(f'config.evals.{evaluator}: the XTREME {task.name} records have no {which} split '
                             f'(XQuAD dev is English only, TyDiQA-GoldP has test only); score split '
                             f'{"test" if which == "dev" else "dev"} instead, or re-run prepare with its files in the '
                             f'download folder.')
  return task


def has_answers(dataset: Sequence[Mapping[str, Any]]) -> bool:
  """Whether any question of a SQuAD JSON's 'data' has a gold answer text (xtreme's hidden test sets have none)."""
  return any(answer.get('text') for article in dataset for paragraph in article['paragraphs']
             for qa in paragraph['qas'] for answer in qa.get('answers') or ())


class QaLanguages:
  """One split of the run's `bert_xtreme_qa` dataset, language by language: the eval data decoding needs, and
  `predict(params, lang)` -> {question id: answer text}, `score(lang, predictions)` -> evaluate.py's scores.
  Shared by `xtreme_qa` and `xtreme_qa_predict`; `other_fields` are the evaluator's fields besides decoding."""

  def __init__(self, name: str, config: Any, context: EvalContext, kind: str, other_fields: Sequence[str],
               predict_step: Any):
    from projects.bert.datasets import xtreme_qa as qa_data  # TensorFlow: loaded when the evaluator is built

    self.context, self.kind = context, kind
    self.task = xtreme_qa_task(context, name, kind)
    meta = context.dataset.meta_data
    self.predict_step = full_length_span_logits(predict_step, meta.max_seq_length)  # length-bucketed batches: [S]
    self.settings = decoding_settings(name, config, context, other_fields)
    self.languages = selected_languages(config, list(meta.eval_splits if kind == 'eval' else meta.test_splits),
                                        name)
    self.data = {lang: qa_data.eval_data(meta, kind, lang) for lang in self.languages}
    self.missing = sorted({lang for langs in (meta.extra.get('missing') or {}).values() for lang in langs})

  def batches(self, lang: str) -> Any:
    dataset = self.context.dataset
    return (dataset.valid_iter if self.kind == 'eval' else dataset.test_iter)(lang)

  def predict(self, params: Any, lang: str) -> Dict[str, str]:
    """{question id: answer text} of every question of `lang`, decoded from one pass of the predict step."""
    gathered = evaluation.gather_predictions(self.predict_step, params, self.batches(lang), self.context.mesh,
                                             keep=('unique_ids',))
    data = self.data[lang]
    predictions, _, _ = squad_metrics.decode(
        data.examples, data.features, gathered['unique_ids'], gathered['outputs'], do_lower_case=data.do_lower_case,
        version_2_with_negative=False, n_best_size=self.settings['n_best_size'],
        max_answer_length=self.settings['max_answer_length'])
    return predictions

  def score(self, lang: str, predictions: Mapping[str, str]) -> Dict[str, float]:
    """{'exact_match', 'f1'} of `predictions` on `lang` (MLQA: with `lang`'s normalisation)."""
    return xtreme_metrics.score_language(self.task.name, self.data[lang].dataset, predictions, lang)


def language_results(per_language: Mapping[str, Mapping[str, float]], task_name: str,
                     num_questions: Mapping[str, int]) -> Dict[str, float]:
  """Flat results of per-language scores: '{lang}/{metric}', '{lang}/num_examples' and 'average/{metric}' (with
  'average/metric', evaluate.py's avg_metric)."""
  results: Dict[str, float] = {}
  for lang, scores in per_language.items():
    results.update({f'{lang}/{k}': v for k, v in scores.items()})
    results[f'{lang}/num_examples'] = float(num_questions[lang])
  averages = xtreme_metrics.task_average(task_name, per_language)
  results.update({f'{AVERAGE}/{k[len("avg_"):]}': v for k, v in averages.items()})  # avg_metric -> average/metric
  return results


@registry.EVALUATORS.register('xtreme_qa')
class XtremeQaEvaluator(DevScoresEvaluator):
  """Scores every language of one split of the run's `bert_xtreme_qa` dataset; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    from core.train_step import make_predict_step

    split = config.get('split') or 'dev'
    if split not in SPLITS:
      raise errors.ConfigError(f'config.evals.{name}.split={split!r}; use one of {", ".join(SPLITS)}.')
    self.split = split
    # One jitted step: every language's batches are [eval batch, S] (or of a few bucket lengths), so it compiles
    # once (a few times) for all of them.
    step = make_predict_step(context.model, context.params_shardings, context.mesh)
    self.qa = QaLanguages(name, config, context, SPLITS[split], ('save_best', 'split', 'languages'), step)
    if split == 'test':
      unanswered = [lang for lang, data in self.qa.data.items() if not has_answers(data.dataset)]
      if unanswered:
        raise errors.ConfigError(f'config.evals.{name}: the {self.qa.task.name} test JSON of '
                                 f'{", ".join(unanswered)} has no gold answers to score (a hidden test set); score '
                                 f'split dev, or leave these out with config.evals.{name}.languages.')
    self.task_name, self.main_key = self.qa.task.name, f'{AVERAGE}/{xtreme.F1}'
    super().__init__(name, config, context)

  def evaluate(self, params: Any) -> Dict[str, float]:
    """{'{lang}/{metric}': value} of `params` on every language, and {'average/{metric}': language mean}."""
    per_language = {lang: self.qa.score(lang, self.qa.predict(params, lang)) for lang in self.qa.languages}
    counts = {lang: sum(len(p['qas']) for a in self.qa.data[lang].dataset for p in a['paragraphs'])
              for lang in self.qa.languages}
    return language_results(per_language, self.task_name, counts)

  def task_summary(self) -> Dict[str, Any]:
    out: Dict[str, Any] = {'benchmark': 'xtreme', 'split': self.split, 'languages': self.qa.languages,
                           'missing': self.qa.missing, 'units': 'percent', 'decoding': dict(self.qa.settings),
                           'task_score': 'average/metric = (average/exact_match + average/f1) / 2 (evaluate.py)'}
    if self.history:
      last = self.history[-1]
      out['per_language'] = per_language_of(last, self.qa.languages)
    return out


def per_language_of(results: Mapping[str, float], languages: List[str]) -> Dict[str, Dict[str, float]]:
  """{lang: {metric: value}} of flat results (num_examples left out)."""
  return {lang: {k.split('/', 1)[1]: v for k, v in results.items()
                 if k.startswith(f'{lang}/') and not k.endswith('num_examples')} for lang in languages}
