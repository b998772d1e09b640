"""The official SuperGLUE jsonl files, read offline into typed examples, one type per task kind.

Where each task's file lives, which fields hold its text and what its labels are: `tasks.superglue`. The field
names are the official download's:
  BoolQ        question, passage, label (true/false)                     -> SentencePairExample(question, passage)
  CB, RTE      premise, hypothesis, label (a class name)                 -> SentencePairExample(premise, hypothesis)
  AX-b         sentence1, sentence2, label                               -> SentencePairExample(sentence1, sentence2)
  AX-g         premise, hypothesis, label, pair_id                       -> SentencePairExample(premise, hypothesis)
  COPA         premise, choice1, choice2, question (cause/effect), label (0/1: which choice) -> CopaExample
  MultiRC      passage.text, passage.questions[].question, .answers[].text/.idx/.label (0/1) -> MultiRcExample
  ReCoRD       passage.text, passage.entities[].start/.end (character offsets, end inclusive), qas[].query (with
               @placeholder), qas[].answers[].text, qas[].idx                                -> RecordExample
  WiC          word, sentence1, sentence2, start1, end1, start2, end2 (character offsets, end exclusive), label
                                                                                              -> WicExample
  WSC          text, target.span1_index/.span1_text (the noun phrase), target.span2_index/.span2_text (the pronoun;
               indices count whitespace-separated words), label (true/false)                 -> WscExample
and `idx` everywhere (AX-b writes it as a string of digits: read as an int). Labels become label ids (the index in
the task's `labels`); a test file has none (label None), except the diagnostics', which are labelled.

A malformed file is refused with a `DataError` naming the file, the line, the field and the fix: a line that is not
a JSON object, a missing field or one of the wrong type, a label outside the task's label list, an offset outside
its text, a ReCoRD query without @placeholder, a labelled split without labels, an idx that repeats (predictions
are keyed by idx: the example's, ReCoRD's query's, MultiRC's (passage, question, answer)).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from core.errors import DataError, MissingFileError
from projects.bert.tasks import superglue as sg

PLACEHOLDER = '@placeholder'


@dataclasses.dataclass(frozen=True)
class SentencePairExample:
  """BoolQ (question, passage), CB / RTE / AX-g (premise, hypothesis), AX-b (sentence1, sentence2)."""

  idx: int
  text_a: str
  text_b: str
  label: Optional[int]
  pair_id: Optional[int] = None  # AX-g only


@dataclasses.dataclass(frozen=True)
class WicExample:
  """The word's spans: sentence1[start1:end1] and sentence2[start2:end2] (end exclusive, as in the file)."""

  idx: int
  word: str
  sentence1: str
  sentence2: str
  start1: int
  end1: int
  start2: int
  end2: int
  label: Optional[int]


@dataclasses.dataclass(frozen=True)
class CopaExample:
  """label 0: choice1 is the more plausible cause/effect of the premise; 1: choice2."""

  idx: int
  premise: str
  choice1: str
  choice2: str
  question: str  # 'cause' or 'effect'
  label: Optional[int]

  @property
  def choices(self) -> Tuple[str, str]:
    return (self.choice1, self.choice2)


@dataclasses.dataclass(frozen=True)
class MultiRcAnswer:
  idx: int
  text: str
  label: Optional[int]  # 1: a correct answer


@dataclasses.dataclass(frozen=True)
class MultiRcQuestion:
  idx: int
  question: str
  answers: Tuple[MultiRcAnswer, ...]


@dataclasses.dataclass(frozen=True)
class MultiRcExample:
  """One passage with its questions, each with its answer options (each scored on its own)."""

  idx: int
  passage: str
  questions: Tuple[MultiRcQuestion, ...]


@dataclasses.dataclass(frozen=True)
class RecordEntity:
  """A mention of an entity in the passage: passage[start:end] == text (end exclusive here; the file's is
  inclusive)."""

  start: int
  end: int
  text: str


@dataclasses.dataclass(frozen=True)
class RecordQuery:
  idx: int
  query: str  # holds @placeholder once
  answers: Tuple[str, ...]  # the gold texts (several surface forms may be right); () in a test file


@dataclasses.dataclass(frozen=True)
class RecordExample:
  idx: int
  passage: str
  entities: Tuple[RecordEntity, ...]
  queries: Tuple[RecordQuery, ...]

  @property
  def candidates(self) -> Tuple[str, ...]:
    """The distinct entity texts in order of first mention: what a query's @placeholder is chosen from (an entity
    mentioned several times is one candidate)."""
    return tuple(dict.fromkeys(e.text for e in self.entities))


@dataclasses.dataclass(frozen=True)
class WscExample:
  """span1 (a noun phrase) and span2 (a pronoun) start at the given word of text.split()."""

  idx: int
  text: str
  span1_index: int
  span1_text: str
  span2_index: int
  span2_text: str
  label: Optional[int]  # 1: the pronoun refers to span1


Example = Union[SentencePairExample, WicExample, CopaExample, MultiRcExample, RecordExample, WscExample]


@dataclasses.dataclass(frozen=True)
class AnswerOption:
  """One MultiRC row: a (passage, question, answer) scored on its own."""

  passage_idx: int
  question_idx: int
  answer_idx: int
  passage: str
  question: str
  answer: str
  label: Optional[int]

  @property
  def question_key(self) -> Tuple[int, int]:
    """What exact match groups by (`superglue_metrics.multirc_metrics` question_ids)."""
    return (self.passage_idx, self.question_idx)


@dataclasses.dataclass(frozen=True)
class EntityCandidate:
  """One ReCoRD row: a (passage, query, candidate entity); label 1 when the entity is one of the gold answers."""

  passage_idx: int
  query_idx: int
  passage: str
  query: str
  entity: str
  label: Optional[int]


def answer_options(examples: Sequence[MultiRcExample]) -> List[AnswerOption]:
  """MultiRC examples flattened into their answer options, in reading order (the order the leaderboard file and
  `superglue_submission.submission_rows` use)."""
  return [AnswerOption(e.idx, q.idx, a.idx, e.passage, q.question, a.text, a.label)
          for e in examples for q in e.questions for a in q.answers]


def entity_candidates(examples: Sequence[RecordExample]) -> List[EntityCandidate]:
  """ReCoRD examples flattened into one row per (query, distinct entity text): an entity mentioned several times
  is one candidate. Labels are None in a test file (no answers)."""
  rows = []
  for e in examples:
    for q in e.queries:
      gold = set(q.answers)
      rows.extend(EntityCandidate(e.idx, q.idx, e.passage, q.query, entity, int(entity in gold) if gold else None)
                  for entity in e.candidates)
  return rows


class _Line:
  """One line of a file: typed field access whose errors name the file, the line and the field."""

  def __init__(self, path: str, number: int, task: sg.SuperGlueTask, labelled: bool):
    self.path, self.number, self.task, self.labelled = path, number, task, labelled

  def error(self, field: str, problem: str, fix: str = '') -> DataError:
    fix = fix or f'the official {self.task.official_name} files have it; re-extract the download'
    return DataError(f'{self.path}, line {self.number}: field "{field}" {problem}; {fix}.')

  def get(self, obj: Dict[str, Any], key: str, where: str, kind: type, optional: bool = False) -> Any:
    field = f'{where}{key}'
    if key not in obj:
      if optional:
        return None
      raise self.error(field, 'is missing')
    value = obj[key]
    if key == 'idx' and isinstance(value, str) and value.isdigit():
      return int(value)  # AX-b writes idx as a string of digits
    # bool is an int in Python: an int field must not take true/false, nor a bool field 0/1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
      raise self.error(field, f'is {json.dumps(value)[:80]}, not {_KIND_NAMES[kind]}')
    return value

  def label(self, obj: Dict[str, Any], where: str = '') -> Optional[int]:
    """The label id of obj['label'] (None when absent from an unlabelled split)."""
    field = f'{where}label'
    if 'label' not in obj:
      if self.labelled:
        raise self.error(field, 'is missing',
                         f'the train and val files of {self.task.official_name} are labelled: check that this is '
                         f'the right file')
      return None
    value = obj['label']
    for label_id, known in enumerate(self.task.labels):
      if type(value) is type(known) and value == known:
        return label_id
    raise self.error(field, f'is {json.dumps(value)}, not one of {json.dumps(list(self.task.labels))}',
                     f'{self.task.official_name} labels are written as the official files write them')

  def offsets(self, text: str, start: int, end: int, field: str) -> None:
    if not 0 <= start < end <= len(text):
      raise self.error(field, f'is [{start}, {end}), outside the {len(text)} characters of its text or empty')


_KIND_NAMES = {str: 'a string', int: 'an integer', bool: 'true or false', dict: 'a JSON object',
               list: 'a JSON list'}


def _sentence_pair(line: _Line, row: Dict[str, Any]) -> SentencePairExample:
  field_a, field_b = line.task.text_fields
  pair_id = line.get(row, 'pair_id', '', int, optional=True) if line.task.name == 'axg' else None
  return SentencePairExample(idx=line.get(row, 'idx', '', int), text_a=line.get(row, field_a, '', str),
                             text_b=line.get(row, field_b, '', str), label=line.label(row), pair_id=pair_id)


def _wic(line: _Line, row: Dict[str, Any]) -> WicExample:
  values = {k: line.get(row, k, '', str) for k in ('word', 'sentence1', 'sentence2')}
  values.update({k: line.get(row, k, '', int) for k in ('start1', 'end1', 'start2', 'end2')})
  for n in ('1', '2'):
    line.offsets(values[f'sentence{n}'], values[f'start{n}'], values[f'end{n}'], f'start{n}/end{n}')
  return WicExample(idx=line.get(row, 'idx', '', int), label=line.label(row), **values)


def _copa(line: _Line, row: Dict[str, Any]) -> CopaExample:
  question = line.get(row, 'question', '', str)
  if question not in ('cause', 'effect'):
    raise line.error('question', f'is {question!r}, not "cause" or "effect"')
  return CopaExample(idx=line.get(row, 'idx', '', int), premise=line.get(row, 'premise', '', str),
                     choice1=line.get(row, 'choice1', '', str), choice2=line.get(row, 'choice2', '', str),
                     question=question, label=line.label(row))


def _multirc(line: _Line, row: Dict[str, Any]) -> MultiRcExample:
  passage = line.get(row, 'passage', '', dict)
  questions = []
  for q, question in enumerate(line.get(passage, 'questions', 'passage.', list)):
    where = f'passage.questions[{q}].'
    if not isinstance(question, dict):
      raise line.error(where[:-1], 'is not a JSON object')
    answers = []
    for a, answer in enumerate(line.get(question, 'answers', where, list)):
      a_where = f'{where}answers[{a}].'
      if not isinstance(answer, dict):
        raise line.error(a_where[:-1], 'is not a JSON object')
      answers.append(MultiRcAnswer(idx=line.get(answer, 'idx', a_where, int),
                                   text=line.get(answer, 'text', a_where, str), label=line.label(answer, a_where)))
    if not answers:
      raise line.error(f'{where}answers', 'is empty', 'every MultiRC question has answer options to score')
    questions.append(MultiRcQuestion(idx=line.get(question, 'idx', where, int),
                                     question=line.get(question, 'question', where, str), answers=tuple(answers)))
  if not questions:
    raise line.error('passage.questions', 'is empty', 'every MultiRC passage has questions')
  return MultiRcExample(idx=line.get(row, 'idx', '', int), passage=line.get(passage, 'text', 'passage.', str),
                        questions=tuple(questions))


def _record(line: _Line, row: Dict[str, Any]) -> RecordExample:
  passage = line.get(row, 'passage', '', dict)
  text = line.get(passage, 'text', 'passage.', str)
  entities = []
  for e, entity in enumerate(line.get(passage, 'entities', 'passage.', list)):
    where = f'passage.entities[{e}]'
    if not isinstance(entity, dict):
      raise line.error(where, 'is not a JSON object')
    start, end = line.get(entity, 'start', where + '.', int), line.get(entity, 'end', where + '.', int)
    line.offsets(text, start, end + 1, where + '.start/end')  # the file's end is inclusive
    entities.append(RecordEntity(start=start, end=end + 1, text=text[start:end + 1]))
  if not entities:
    raise line.error('passage.entities', 'is empty', 'every ReCoRD passage lists the entities a query chooses from')
  queries = []
  for q, qa in enumerate(line.get(row, 'qas', '', list)):
    where = f'qas[{q}].'
    if not isinstance(qa, dict):
      raise line.error(where[:-1], 'is not a JSON object')
    query = line.get(qa, 'query', where, str)
    if query.count(PLACEHOLDER) != 1:
      raise line.error(f'{where}query', f'holds {PLACEHOLDER} {query.count(PLACEHOLDER)} times, not once',
                       'a ReCoRD query is a cloze with one @placeholder for the entity')
    answers = line.get(qa, 'answers', where, list, optional=True) or []
    texts = []
    for a, answer in enumerate(answers):
      if not isinstance(answer, dict):
        raise line.error(f'{where}answers[{a}]', 'is not a JSON object')
      texts.append(line.get(answer, 'text', f'{where}answers[{a}].', str))
    if line.labelled and not texts:
      raise line.error(f'{where}answers', 'is missing or empty',
                       'the train and val files of ReCoRD give each query its gold answers: check that this is the '
                       'right file')
    queries.append(RecordQuery(idx=line.get(qa, 'idx', where, int), query=query, answers=tuple(texts)))
  if not queries:
    raise line.error('qas', 'is empty', 'every ReCoRD passage has queries')
  return RecordExample(idx=line.get(row, 'idx', '', int), passage=text, entities=tuple(entities),
                       queries=tuple(queries))


def _wsc(line: _Line, row: Dict[str, Any]) -> WscExample:
  target = line.get(row, 'target', '', dict)
  spans = {}
  for n in ('1', '2'):
    index = line.get(target, f'span{n}_index', 'target.', int)
    if index < 0:
      raise line.error(f'target.span{n}_index', f'is {index}, a negative word index')
    spans[f'span{n}_index'] = index
    spans[f'span{n}_text'] = line.get(target, f'span{n}_text', 'target.', str)
  return WscExample(idx=line.get(row, 'idx', '', int), text=line.get(row, 'text', '', str), label=line.label(row),
                    **spans)


_PARSERS = {sg.SENTENCE_PAIR: _sentence_pair, sg.WORD_IN_CONTEXT: _wic, sg.MULTIPLE_CHOICE: _copa,
            sg.ANSWER_OPTIONS: _multirc, sg.ENTITY_CLOZE: _record, sg.SPAN_PAIR: _wsc}


def _prediction_keys(example: Example) -> List[Tuple[str, Any]]:
  """(field, key) of each thing a prediction is written for: predictions and submissions are keyed by them, so
  each must be unique in its file."""
  if isinstance(example, RecordExample):
    return [('qas[].idx', q.idx) for q in example.queries]
  if isinstance(example, MultiRcExample):
    return [('passage.questions[].answers[].idx', (example.idx, q.idx, a.idx))
            for q in example.questions for a in q.answers]
  return [('idx', example.idx)]


def read_file(path: str, task: str, *, labelled: bool) -> List[Example]:
  """The examples of one jsonl file of `task`; `labelled`: every row must carry its label(s)."""
  t = sg.get_task(task)
  if not os.path.isfile(path):
    raise MissingFileError(f'{path}: no such file; the {t.official_name} files are read from the official '
                           f'SuperGLUE download, unzipped (e.g. {t.data_file(t.splits[0])} under the directory).')
  parse = _PARSERS[t.kind]
  examples: List[Example] = []
  first_line: Dict[Any, int] = {}
  with open(path, encoding='utf-8') as f:
    for number, text in enumerate(f, start=1):
      if not text.strip():
        continue
      line = _Line(path, number, t, labelled)
      try:
        row = json.loads(text)
      except json.JSONDecodeError as e:
        raise DataError(f'{path}, line {number}: not JSON ({e.msg} at column {e.colno}); each line of a SuperGLUE '
                        f'file is one JSON object: re-extract the download.') from None
      if not isinstance(row, dict):
        raise DataError(f'{path}, line {number}: a JSON {type(row).__name__}, not an object; each line of a '
                        f'SuperGLUE file is one JSON object.')
      example = parse(line, row)
      for field, key in _prediction_keys(example):
        if key in first_line:
          raise line.error(field, f'repeats {key!r} of line {first_line[key]}',
                           'predictions are keyed by it: each must be unique in its file')
        first_line[key] = number
      examples.append(example)
  if not examples:
    raise DataError(f'{path}: no examples (the file is empty); re-extract the {t.official_name} download.')
  return examples


def read_split(superglue_dir: str, task: str, split: str) -> List[Example]:
  """The examples of `split` ('train', 'validation' or 'test') of `task` under the unzipped download.

  train and validation must be labelled; test is read without labels, or with them where the file has them (the
  diagnostics).
  """
  t = sg.get_task(task)
  path = os.path.join(superglue_dir, t.data_file(split))
  if not os.path.isfile(path):
    raise MissingFileError(f'{path}: no such file; the SuperGLUE directory (--superglue_dir) must be the official '
                           f'download, unzipped, with {t.data_file(split)} in it.')
  return read_file(path, t.name, labelled=split != sg.TEST)
