"""The SuperGLUE task table: every fact about a task in one place (files, fields, labels, metrics, submission).

Data is the official download, unzipped into one directory (read offline):
  {BoolQ,CB,COPA,MultiRC,ReCoRD,RTE,WiC,WSC}/{train,val,test}.jsonl, AX-b/AX-b.jsonl, AX-g/AX-g.jsonl
Splits are named 'train', 'validation' (val.jsonl) and 'test', as GLUE's are here. The two diagnostics have only a
'test' split, labelled; they are predicted with the RTE model, as the benchmark prescribes (`predicted_with`).

Task kinds (the SuperGLUE paper's BERT formulations, Wang et al. 2019, section 5):
  sentence_pair    BoolQ (question, passage), CB and RTE and AX-g (premise, hypothesis), AX-b (sentence1,
                   sentence2): a classifier on [CLS]
  word_in_context  WiC: a sentence pair plus the marked word's character spans (start inclusive, end exclusive)
  multiple_choice  COPA: one scalar per (premise, choice), softmax over the two choices
  answer_options   MultiRC: an independent binary score per (passage, question, answer)
  entity_cloze     ReCoRD: an independent score per (passage, query, candidate entity); the best-scored wins
  span_pair        WSC: a classifier over the pooled tokens of span1 (a noun phrase) and span2 (a pronoun)

Labels: `labels` are the values the data files hold, in label-id order (a JSON boolean, an integer or a string, as
the file writes it); `submission_labels` are what the leaderboard file writes for each id: BoolQ and WiC
"false"/"true", WSC "False"/"True", COPA and MultiRC 0/1, the NLI tasks their label names. ReCoRD has no label
list: its label is the text of the chosen entity.

The id orders are those of TFDS `super_glue`, which Model Garden's processors also index by: BoolQ 0 = false,
CB 0 entailment / 1 contradiction / 2 neutral. (Model Garden's BoolQ and CB processors name the classes in
another order, ["True", "False"] and ["entailment", "neutral", "contradiction"], and look the TFDS id up in that
list, so their label names are wrong but the ids they write agree with these.) AX-b and AX-g share RTE's ids.

Metrics (`superglue_metrics` computes them; values are fractions, the leaderboard prints percentages):
  BoolQ, COPA, RTE, WiC, WSC  accuracy
  CB                          accuracy and macro-F1 over the three classes
  MultiRC                     F1a (binary F1 over all answer options) and exact match per question
  ReCoRD                      token F1 and exact match, each the max over a query's gold answers
  AX-b                        Matthews correlation
  AX-g                        gender parity and accuracy
A task's score is the mean of its metrics; the SuperGLUE score is the mean of the 8 task scores (the diagnostics
are reported beside it, not in it).

Submission files (one per task, zip-ready, named `submission_file`): one JSON object a line, `{"idx": ...,
"label": ...}` with the label in `submission_labels`; MultiRC one line per passage, nested
`{"idx": p, "passage": {"questions": [{"idx": q, "answers": [{"idx": a, "label": 0|1}]}]}}`; ReCoRD one line per
query, `{"idx": query idx, "label": entity text}`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

# Task kinds.
SENTENCE_PAIR = 'sentence_pair'
WORD_IN_CONTEXT = 'word_in_context'
MULTIPLE_CHOICE = 'multiple_choice'
ANSWER_OPTIONS = 'answer_options'
ENTITY_CLOZE = 'entity_cloze'
SPAN_PAIR = 'span_pair'
TASK_KINDS = (SENTENCE_PAIR, WORD_IN_CONTEXT, MULTIPLE_CHOICE, ANSWER_OPTIONS, ENTITY_CLOZE, SPAN_PAIR)

# Metric names (`superglue_metrics`); SCORE is a task's leaderboard number, the mean of its metrics.
ACCURACY = 'accuracy'
MACRO_F1 = 'macro_f1'
F1A = 'f1a'
EXACT_MATCH = 'exact_match'
F1 = 'f1'
MATTHEWS = 'matthews_corr'
GENDER_PARITY = 'gender_parity'
SCORE = 'score'

TRAIN = 'train'
VALIDATION = 'validation'
TEST = 'test'
_SPLIT_FILES = {TRAIN: 'train.jsonl', VALIDATION: 'val.jsonl', TEST: 'test.jsonl'}


@dataclasses.dataclass(frozen=True)
class SuperGlueTask:
  """One SuperGLUE task or diagnostic.

  `official_name` names its folder in the download and its submission file; `text_fields` are the data fields
  that hold its text, in the order the model reads them (for sentence_pair: text_a, text_b); `metrics` are its
  official metrics in the leaderboard's order; `diagnostic` tasks have only a labelled 'test' split and are
  predicted with the model of `predicted_with`.
  """

  name: str
  official_name: str
  kind: str
  text_fields: Tuple[str, ...]
  labels: Optional[Tuple[Any, ...]]
  submission_labels: Optional[Tuple[Any, ...]]
  metrics: Tuple[str, ...]
  diagnostic: bool = False
  predicted_with: Optional[str] = None

  def __post_init__(self):
    if self.kind not in TASK_KINDS:
      raise ValueError(f'{self.name}: unknown task kind {self.kind!r}; known: {TASK_KINDS}.')
    if (self.labels is None) != (self.submission_labels is None) or (
        self.labels is not None and len(self.labels) != len(self.submission_labels)):
      raise ValueError(f'{self.name}: labels and submission_labels must match one to one.')

  @property
  def splits(self) -> Tuple[str, ...]:
    return (TEST,) if self.diagnostic else (TRAIN, VALIDATION, TEST)

  def data_file(self, split: str) -> str:
    """Path of `split`'s jsonl file relative to the SuperGLUE directory, e.g. 'BoolQ/val.jsonl'."""
    if split not in self.splits:
      raise ValueError(f'{self.official_name} has no split {split!r}; its splits: {", ".join(self.splits)}.')
    if self.diagnostic:
      return f'{self.official_name}/{self.official_name}.jsonl'
    return f'{self.official_name}/{_SPLIT_FILES[split]}'

  @property
  def submission_file(self) -> str:
    """Name of the leaderboard file for its test predictions, e.g. 'BoolQ.jsonl'."""
    return f'{self.official_name}.jsonl'

  @property
  def num_labels(self) -> Optional[int]:
    """Classes of its label (None for ReCoRD, whose label is an entity's text)."""
    return None if self.labels is None else len(self.labels)

  @property
  def in_score(self) -> bool:
    """Whether its score counts towards the SuperGLUE score (the 8 tasks; not the diagnostics)."""
    return not self.diagnostic

  @property
  def main_metric(self) -> str:
    """What fine-tuning selects on: the task score (the mean of its metrics), or its one metric (a diagnostic,
    never trained on, names its first metric: it has no score)."""
    return self.metrics[0] if len(self.metrics) == 1 or self.diagnostic else SCORE


_BOOL = (False, True)
_BINARY = (0, 1)
_NLI2 = ('entailment', 'not_entailment')
_CB = ('entailment', 'contradiction', 'neutral')

SUPERGLUE_TASKS: Dict[str, SuperGlueTask] = {t.name: t for t in [
    SuperGlueTask('boolq', 'BoolQ', SENTENCE_PAIR, ('question', 'passage'), _BOOL, ('false', 'true'), (ACCURACY,)),
    SuperGlueTask('cb', 'CB', SENTENCE_PAIR, ('premise', 'hypothesis'), _CB, _CB, (ACCURACY, MACRO_F1)),
    SuperGlueTask('copa', 'COPA', MULTIPLE_CHOICE, ('premise', 'choice1', 'choice2', 'question'), _BINARY, _BINARY,
                  (ACCURACY,)),
    SuperGlueTask('multirc', 'MultiRC', ANSWER_OPTIONS, ('passage', 'question', 'answer'), _BINARY, _BINARY,
                  (F1A, EXACT_MATCH)),
    SuperGlueTask('record', 'ReCoRD', ENTITY_CLOZE, ('passage', 'query'), None, None, (F1, EXACT_MATCH)),
    SuperGlueTask('rte', 'RTE', SENTENCE_PAIR, ('premise', 'hypothesis'), _NLI2, _NLI2, (ACCURACY,)),
    SuperGlueTask('wic', 'WiC', WORD_IN_CONTEXT, ('sentence1', 'sentence2'), _BOOL, ('false', 'true'), (ACCURACY,)),
    SuperGlueTask('wsc', 'WSC', SPAN_PAIR, ('text',), _BOOL, ('False', 'True'), (ACCURACY,)),
    SuperGlueTask('axb', 'AX-b', SENTENCE_PAIR, ('sentence1', 'sentence2'), _NLI2, _NLI2, (MATTHEWS,),
                  diagnostic=True, predicted_with='rte'),
    SuperGlueTask('axg', 'AX-g', SENTENCE_PAIR, ('premise', 'hypothesis'), _NLI2, _NLI2, (GENDER_PARITY, ACCURACY),
                  diagnostic=True, predicted_with='rte'),
]}
# The 8 tasks of the SuperGLUE score, and the two diagnostics reported beside it.
SCORED_TASKS = tuple(name for name, t in SUPERGLUE_TASKS.items() if t.in_score)
DIAGNOSTIC_TASKS = tuple(name for name, t in SUPERGLUE_TASKS.items() if t.diagnostic)


def task_names() -> List[str]:
  return list(SUPERGLUE_TASKS)


def _key(name: str) -> str:
  return str(name).lower().replace('-', '').replace('_', '')


def get_task(name: str) -> SuperGlueTask:
  """The task for `name`, case-insensitive, with or without a dash ('AX-b' == 'axb', 'ReCoRD' == 'record')."""
  key = _key(name)
  if key not in SUPERGLUE_TASKS:
    raise ValueError(f'Unknown SuperGLUE task {name!r}; known tasks: {", ".join(SUPERGLUE_TASKS)}.')
  return SUPERGLUE_TASKS[key]


def submission_files() -> Mapping[str, str]:
  """{task name: leaderboard file name} of all ten: BoolQ.jsonl ... AX-g.jsonl."""
  return {name: t.submission_file for name, t in SUPERGLUE_TASKS.items()}
