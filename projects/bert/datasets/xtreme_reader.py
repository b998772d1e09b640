"""Readers of the XTREME download folder (the layout google-research/xtreme's scripts/download_data.sh writes; the
files and formats of each task are in `tasks/xtreme.py`).

`read_split(xtreme_dir, task, split)` reads one split of a task for every language present: a language whose files
are missing is named in a warning and skipped, never a crash (xtreme#34); a language that has no such split by
design (UD-POS dev: kk, th, tl, yo) is skipped with an info line. Both are listed in the result. A malformed line
raises `DataError` naming the file, the line and the field, and what to do.

What each kind reads, line for line as the upstream readers do (so records written from it can equal theirs):
  sentence pairs  split at tabs with no unquoting (Model Garden's and xtreme's `_read_tsv` use csv with
                  quotechar=None, so a field csv.writer quoted keeps its quotes); XNLI's 'contradictory' is read as
                  'contradiction' (Model Garden's XtremeXnliProcessor). Test lines may lack the label.
  tags            `token\\tlabel`, or `token` alone in test files; a blank line ends a sentence (several blank
                  lines end one); tokens and labels stripped; sentence ids count from 0 per file (Model Garden's
                  tagging_data_lib._read_one_file).
  SQuAD JSON      the 'data' list, its structure checked (articles > paragraphs > context, qas > id, question,
                  answers), so a bad file fails here with its JSON path rather than deep inside a writer.
  BUCC            `id\\tsentence` lines, ids `{lang}-{number}` (Model Garden parses the number); dev gold pairs.
  Tatoeba         one sentence a line, source and English files of equal length.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from core.errors import ConfigError, DataError, MissingFileError
from projects.bert.tasks import xtreme


@dataclasses.dataclass(frozen=True)
class SentencePair:
  """One XNLI / PAWS-X example; `label` is None in a test file without labels; `line` is 1-based."""

  text_a: str
  text_b: str
  label: Optional[str]
  line: int


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
  """One UD-POS / PAN-X sentence: its tokens and their labels (None in a test file without labels), its id (count
  from 0 in its file) and the line of its first token (1-based)."""

  tokens: Tuple[str, ...]
  labels: Optional[Tuple[str, ...]]
  sentence_id: int
  line: int


@dataclasses.dataclass(frozen=True)
class Bitext:
  """The two sides of a retrieval set: source-language and English sentences, their ids (BUCC; None for Tatoeba,
  whose ids are line numbers) and the gold (source id, English id) pairs (BUCC dev; None where withheld)."""

  source: Tuple[str, ...]
  target: Tuple[str, ...]
  source_ids: Optional[Tuple[str, ...]] = None
  target_ids: Optional[Tuple[str, ...]] = None
  gold: Optional[Tuple[Tuple[str, str], ...]] = None


@dataclasses.dataclass(frozen=True)
class XtremeSplit:
  """One split of a task: `examples[lang]` for each language read (a list of SentencePair / TaggedSentence, a SQuAD
  'data' list, or a Bitext), `missing` the languages whose files are absent, `without_split` the languages that
  have no such split in XTREME."""

  task: str
  split: str
  examples: Dict[str, Any]
  missing: Tuple[str, ...]
  without_split: Tuple[str, ...]


# ----------------------------------------------------------------------------------------------------- line files


def _lines(path: str) -> List[str]:
  """The file's lines without their line ends ('\\n' or csv.writer's '\\r\\n')."""
  try:
    with open(path, encoding='utf-8') as f:
      return [line.rstrip('\n').rstrip('\r') for line in f]
  except UnicodeDecodeError as e:
    raise DataError(f'{path}: not UTF-8 text (byte {e.start}). XTREME files are UTF-8; download the task again '
                    'with xtreme\'s scripts/download_data.sh.') from e


def read_sentence_pairs(path: str, labels: Sequence[str], *, labelled: bool = True) -> List[SentencePair]:
  """`text_a\\ttext_b\\tlabel` lines (label optional where `labelled` is False); labels must be in `labels`."""
  known = set(labels)
  pairs = []
  for number, line in enumerate(_lines(path), start=1):
    fields = line.split('\t')
    expected = '3 (text_a, text_b, label)' if labelled else '2 or 3 (text_a, text_b[, label])'
    if len(fields) not in ((3,) if labelled else (2, 3)):
      raise DataError(f'{path}, line {number}: {len(fields)} tab-separated fields, expected {expected}. Fix or '
                      'remove the line (a tab inside a sentence splits it).')
    label = fields[2].strip() if len(fields) == 3 else None
    if label == 'contradictory':  # XNLI's original name; the XTREME files and Model Garden say 'contradiction'
      label = 'contradiction'
    if label is not None and label not in known:
      raise DataError(f'{path}, line {number}, field label: {label!r} is not one of {", ".join(labels)}.')
    pairs.append(SentencePair(fields[0], fields[1], label, number))
  return pairs


def read_tagged_sentences(path: str, labels: Sequence[str], *, labelled: bool = True) -> List[TaggedSentence]:
  """Sentences of `token\\tlabel` lines (`token` alone allowed where `labelled` is False), blank-line separated."""
  known = set(labels)
  sentences: List[TaggedSentence] = []
  tokens: List[str] = []
  tags: List[Optional[str]] = []
  first_line = 0

  def finish() -> None:
    if not tokens:
      return
    has_labels = [t is not None for t in tags]
    if any(has_labels) and not all(has_labels):
      raise DataError(f'{path}, sentence from line {first_line}: some tokens have labels and some do not; give '
                      'every token of a sentence a label, or none (test files).')
    sentences.append(TaggedSentence(tuple(tokens), tuple(tags) if all(has_labels) else None, len(sentences),
                                    first_line))
    tokens.clear()
    tags.clear()

  for number, line in enumerate(_lines(path), start=1):
    if not line:
      finish()
      continue
    fields = line.split('\t')
    if len(fields) > 2 or (labelled and len(fields) != 2):
      raise DataError(f'{path}, line {number}: {len(fields)} tab-separated fields, expected '
                      f'{"2 (token, label)" if labelled else "1 or 2 (token[, label])"}; a blank line ends a '
                      'sentence.')
    label = fields[1].strip() if len(fields) == 2 else None
    if label is not None and label not in known:
      raise DataError(f'{path}, line {number}, field label: {label!r} is not one of {", ".join(labels)}.')
    if not tokens:
      first_line = number
    tokens.append(fields[0].strip())
    tags.append(label)
  finish()
  return sentences


# ----------------------------------------------------------------------------------------------------- SQuAD JSON


def _require(value: Any, kind: type, path: str, where: str, what: str) -> Any:
  if not isinstance(value, kind):
    raise DataError(f'{path}, {where}: expected {what}, found {type(value).__name__}. The file is not in SQuAD '
                    'v1.1 format; download it again with xtreme\'s scripts/download_data.sh.')
  return value


def read_squad(path: str) -> List[Dict[str, Any]]:
  """The 'data' list of a SQuAD-format JSON file, its structure checked (see the module docstring)."""
  try:
    with open(path, encoding='utf-8') as f:
      document = json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f'{path}, line {e.lineno}: not valid JSON ({e.msg}). Download the file again.') from e
  except UnicodeDecodeError as e:
    raise DataError(f'{path}: not UTF-8 text (byte {e.start}). Download the file again.') from e
  _require(document, dict, path, 'top level', "an object with a 'data' list")
  data = _require(document.get('data'), list, path, 'field data', 'a list of articles')
  for a, article in enumerate(data):
    paragraphs = _require(_require(article, dict, path, f'data[{a}]', 'an article object').get('paragraphs'),
                          list, path, f'data[{a}].paragraphs', 'a list')
    for p, paragraph in enumerate(paragraphs):
      where = f'data[{a}].paragraphs[{p}]'
      _require(paragraph, dict, path, where, 'a paragraph object')
      _require(paragraph.get('context'), str, path, f'{where}.context', 'a string')
      for q, qa in enumerate(_require(paragraph.get('qas'), list, path, f'{where}.qas', 'a list')):
        _require(qa, dict, path, f'{where}.qas[{q}]', 'a question object')
        _require(qa.get('id'), str, path, f'{where}.qas[{q}].id', 'a string')
        _require(qa.get('question'), str, path, f'{where}.qas[{q}].question', 'a string')
        answers = _require(qa.get('answers'), list, path, f'{where}.qas[{q}].answers', 'a list')
        for n, answer in enumerate(answers):
          at = f'{where}.qas[{q}].answers[{n}]'
          _require(_require(answer, dict, path, at, 'an answer object').get('text'), str, path, f'{at}.text',
                   'a string')
  return data


# ----------------------------------------------------------------------------------------------------- retrieval

_BUCC_ID = re.compile(r'^[a-z]{2}-\d+$')


def read_bucc_sentences(path: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
  """(ids, sentences) of a BUCC `{lang}-en.{split}.{lang}` / `.en` file of `id\\tsentence` lines."""
  ids, sentences = [], []
  for number, line in enumerate(_lines(path), start=1):
    fields = line.split('\t')
    if len(fields) != 2:
      raise DataError(f'{path}, line {number}: {len(fields)} tab-separated fields, expected 2 (id, sentence).')
    if not _BUCC_ID.match(fields[0]):
      raise DataError(f'{path}, line {number}, field id: {fields[0]!r} is not a BUCC id like "de-000000001".')
    ids.append(fields[0])
    sentences.append(fields[1])
  return tuple(ids), tuple(sentences)


def read_bucc_gold(path: str) -> Tuple[Tuple[str, str], ...]:
  """The (source id, English id) pairs of a BUCC `.gold` file."""
  pairs = []
  for number, line in enumerate(_lines(path), start=1):
    fields = line.split('\t')
    if len(fields) != 2 or not all(_BUCC_ID.match(f) for f in fields):
      raise DataError(f'{path}, line {number}: expected two BUCC ids "src_id<TAB>en_id", found {line!r}.')
    pairs.append((fields[0], fields[1]))
  return tuple(pairs)


def read_tatoeba(source_path: str, target_path: str) -> Bitext:
  """A Tatoeba language: its source sentences and the (sorted) English sentences, one a line, equally many."""
  source, target = _lines(source_path), _lines(target_path)
  if len(source) != len(target):
    raise DataError(f'{source_path} has {len(source)} lines but {target_path} has {len(target)}: each source '
                    'sentence has one English translation. Download tatoeba again.')
  return Bitext(tuple(source), tuple(target))


# ----------------------------------------------------------------------------------------------------- per task


def _read_language(task: xtreme.XtremeTask, split: str, files: Dict[str, str]) -> Any:
  labelled = split != xtreme.TEST
  if task.kind == xtreme.SENTENCE_PAIR:
    return read_sentence_pairs(files['path'], task.labels, labelled=labelled)
  if task.kind == xtreme.TAGGING:
    return read_tagged_sentences(files['path'], task.labels, labelled=labelled)
  if task.kind == xtreme.SPAN_QA:
    return read_squad(files['path'])
  if task.kind == xtreme.BITEXT_MINING:
    source_ids, source = read_bucc_sentences(files['path'])
    target_ids, target = read_bucc_sentences(files['target'])
    gold = read_bucc_gold(files['gold']) if 'gold' in files else None
    return Bitext(source, target, source_ids, target_ids, gold)
  return read_tatoeba(files['path'], files['target'])


def read_split(xtreme_dir: str, task_name: str, split: str,
               languages: Optional[Sequence[str]] = None) -> XtremeSplit:
  """Split `split` ('train' / 'dev' / 'test') of task `task_name` for `languages` (default: all the task's) from
  the XTREME download folder `xtreme_dir` (see the module docstring for what is skipped and what raises)."""
  task = xtreme.get_task(task_name)
  if split not in task.splits:
    raise ConfigError(f'XTREME task {task.name} has no {split!r} split; it has {", ".join(task.splits)}.')
  wanted = tuple(languages) if languages else task.languages
  unknown = [lang for lang in wanted if lang not in task.languages]
  if unknown:
    raise ConfigError(f'{", ".join(unknown)}: not languages of XTREME task {task.name}; its languages: '
                      f'{", ".join(task.languages)}.')
  has_split = task.split_languages(split)
  without_split = tuple(lang for lang in wanted if lang not in has_split)
  if without_split:
    logging.info('XTREME %s has no %s data for %s (as in xtreme); skipped.', task.name, split,
                 ', '.join(without_split))
  examples: Dict[str, Any] = {}
  missing: List[str] = []
  expected: List[str] = []
  for lang in wanted:
    if lang in without_split:
      continue
    files = {role: os.path.join(xtreme_dir, rel) for role, rel in task.files(split, lang).items()}
    absent = [p for p in files.values() if not os.path.isfile(p)]
    if absent:
      missing.append(lang)
      expected.extend(absent)
      continue
    examples[lang] = _read_language(task, split, files)
  if missing and not examples:
    raise MissingFileError(f'No {task.name} {split} data in {xtreme_dir}: none of {", ".join(expected[:3])}'
                           f'{" ..." if len(expected) > 3 else ""} exists. Download it with xtreme\'s '
                           f'scripts/download_data.sh (it writes {task.name}/ under its download/ folder) and '
                           f'pass that folder.')
  if missing:
    logging.warning('XTREME %s %s: no data for %s (missing %s%s); these languages are skipped.', task.name, split,
                    ', '.join(missing), ', '.join(expected[:3]), ' ...' if len(expected) > 3 else '')
  return XtremeSplit(task.name, split, examples, tuple(missing), without_split)
