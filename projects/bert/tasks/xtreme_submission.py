"""The XTREME submission folder: its files, written and read as google-research/xtreme's evaluate.py reads them, and
the scores of a submission against a label folder of the same layout (what evaluate.py prints).

Layout: one sub-folder per task (udpos panx xnli pawsx xquad mlqa tydiqa bucc2018 tatoeba), one file per language
of the task, `test-{lang}.tsv` (`test-{lang}.json` for QA). Formats (one prediction per test example, in the test
file's order):
  xnli, pawsx   one label a line.
  udpos, panx   one tag a line per word of the test file, a blank line after each sentence.
  xquad, mlqa, tydiqa  JSON {question id: answer text}.
  bucc2018      `source id<TAB>English id` lines, the pairs mined from the test set.
  tatoeba       one line per source sentence: the index (from 0) of the English line retrieved for it (our
                reading of the direction; see tasks/xtreme.py).
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from core import atomic
from core.errors import DataError, MissingFileError
from projects.bert.tasks import xtreme
from projects.bert.tasks import xtreme_metrics

# ------------------------------------------------------------------------------------------------------- writing


def _check_labels(task: xtreme.XtremeTask, values: Sequence[str], where: str) -> None:
  known = set(task.labels)
  for i, value in enumerate(values):
    if value not in known:
      raise ValueError(f'{task.name} {where}{i}: {value!r} is not one of {", ".join(task.labels)}.')


def submission_text(task_name: str, predictions: Any) -> str:
  """The text of one language's submission file of `task_name` (see the module docstring for what `predictions`
  holds per task: labels, sentences of tags, {id: answer}, (source id, English id) pairs, English line indices)."""
  task = xtreme.get_task(task_name)
  if task.kind == xtreme.SENTENCE_PAIR:
    _check_labels(task, predictions, 'prediction ')
    return ''.join(f'{label}\n' for label in predictions)
  if task.kind == xtreme.TAGGING:
    for i, sentence in enumerate(predictions):
      if not sentence:
        raise ValueError(f'{task.name} sentence {i}: no tags; every test sentence has at least one word.')
      _check_labels(task, sentence, f'sentence {i}, tag ')
    return ''.join(''.join(f'{tag}\n' for tag in sentence) + '\n' for sentence in predictions)
  if task.kind == xtreme.SPAN_QA:
    bad = [qid for qid, answer in predictions.items() if not isinstance(answer, str)]
    if bad:
      raise ValueError(f'{task.name} answers must be strings; question {bad[0]!r} has {predictions[bad[0]]!r}.')
    return json.dumps(dict(predictions), ensure_ascii=False)
  if task.kind == xtreme.BITEXT_MINING:
    for pair in predictions:
      if len(pair) != 2 or any(not p or '\t' in p for p in pair):
        raise ValueError(f'bucc2018 pairs are (source id, English id); got {pair!r}.')
    return ''.join(f'{source}\t{target}\n' for source, target in predictions)
  for i, index in enumerate(predictions):
    if isinstance(index, bool) or int(index) != index or index < 0:
      raise ValueError(f'tatoeba prediction {i}: {index!r} is not an English line index (an integer >= 0).')
  return ''.join(f'{int(index)}\n' for index in predictions)


def write_submission_file(submission_dir: str, task_name: str, lang: str, predictions: Any) -> str:
  """Writes `lang`'s predictions of `task_name` into the submission folder (atomically); returns the file's path."""
  task = xtreme.get_task(task_name)
  path = os.path.join(submission_dir, task.submission_file(lang))
  atomic.write_text(path, submission_text(task.name, predictions))
  return path


# ------------------------------------------------------------------------------------------------------- reading


def _read_lines(path: str) -> List[str]:
  with open(path, encoding='utf-8') as f:
    return [line.strip() for line in f]


def read_tag_file(path: str) -> List[List[str]]:
  """Sentences of tags of a tagging submission / label file: one tag a line, a blank line after each sentence."""
  sentences: List[List[str]] = []
  sentence: List[str] = []
  for line in _read_lines(path):
    if line:
      sentence.append(line)
    else:
      sentences.append(sentence)
      sentence = []
  if sentence:
    sentences.append(sentence)
  return sentences


def read_squad_file(path: str) -> Any:
  """The 'data' list of a SQuAD JSON (labels), or the whole JSON ({id: answer} predictions)."""
  with open(path, encoding='utf-8') as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(f'{path}, line {e.lineno}: not valid JSON ({e.msg}). Write the file again.') from e
  return data['data'] if isinstance(data, dict) and 'data' in data else data


def read_submission_file(task_name: str, path: str) -> Any:
  """What `xtreme_metrics.score_language` takes for `task_name`, read from a submission or label file `path`."""
  if not os.path.exists(path):
    raise MissingFileError(f'{path} does not exist: a submission needs test-{{lang}} files for every language of '
                           f'its tasks (evaluate.py reads them all).')
  task = xtreme.get_task(task_name)
  if task.kind == xtreme.TAGGING:
    return read_tag_file(path)
  if task.kind == xtreme.SPAN_QA:
    return read_squad_file(path)
  return _read_lines(path)


# ------------------------------------------------------------------------------------------------------- scoring


def evaluate_submission(prediction_dir: str, label_dir: str,
                        task_names: Optional[Sequence[str]] = None) -> Tuple[Dict[str, float], Dict[str, Dict]]:
  """(summary, detailed) of a submission folder against a label folder of the same layout, as evaluate.py scores
  them: tasks present in both folders (or `task_names`), every language of a task; detailed[task] holds
  {metric: {lang: value}} and the 'avg_*' values; summary is `xtreme_metrics.xtreme_summary` of the task scores."""
  names = [xtreme.get_task(n).name for n in task_names] if task_names else [
      n for n in xtreme.XTREME_TASKS if os.path.isdir(os.path.join(prediction_dir, n))
      and os.path.isdir(os.path.join(label_dir, n))]
  detailed: Dict[str, Dict] = {}
  for name in names:
    task = xtreme.get_task(name)
    per_language: Dict[str, Dict[str, float]] = {}
    for lang in task.languages:
      relative = task.submission_file(lang)
      prediction_file, label_file = os.path.join(prediction_dir, relative), os.path.join(label_dir, relative)
      predictions = read_submission_file(name, prediction_file)
      labels = read_submission_file(name, label_file)
      # evaluate.py checks counts for all but QA (scored by id) and BUCC (scored as sets of pairs).
      if task.group != xtreme.QUESTION_ANSWERING and task.kind != xtreme.BITEXT_MINING and (
          len(predictions) != len(labels)):
        raise DataError(f'{prediction_file}: {len(predictions)} predictions (lines or sentences) but {label_file} '
                        f'has {len(labels)}; write one per test example, in the test file\'s order.')
      try:
        per_language[lang] = xtreme_metrics.score_language(name, labels, predictions, lang)
      except ValueError as e:
        raise DataError(f'{prediction_file} against {label_file}: {e}') from e
    scores: Dict[str, Any] = collections.defaultdict(dict)
    for lang, lang_scores in per_language.items():
      for metric, value in lang_scores.items():
        scores[metric][lang] = value
    scores.update(xtreme_metrics.task_average(name, per_language))
    detailed[name] = dict(scores)
  summary = xtreme_metrics.xtreme_summary({name: d['avg_metric'] for name, d in detailed.items()})
  return summary, detailed


def language_table(detailed: Mapping[str, Mapping[str, Any]]) -> Dict[str, Dict[str, float]]:
  """{task: {lang: score}} of `evaluate_submission`'s detailed scores: the task's main metric per language, and
  for QA (EM + F1) / 2, so that each row's mean is the task score."""
  table: Dict[str, Dict[str, float]] = {}
  for name, scores in detailed.items():
    task = xtreme.get_task(name)
    if task.group == xtreme.QUESTION_ANSWERING:
      table[name] = {lang: (scores[xtreme.EXACT_MATCH][lang] + scores[xtreme.F1][lang]) / 2
                     for lang in scores[xtreme.F1]}
    else:
      table[name] = dict(scores[task.main_metric])
  return table
