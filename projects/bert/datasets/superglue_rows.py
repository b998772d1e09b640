r"""SuperGLUE examples -> records: the row expansion per task kind, tokenizing, truncation and the record layout
that `prepare superglue` (superglue_writer.py) writes and the `bert_superglue` builder reads.

Every record holds the features of Model Garden's classifier writer, in its order: input_ids, input_mask,
segment_ids [max_seq_length] ([CLS] a [SEP] b [SEP], segment ids 0 then 1, zero padding), label_ids (a label id of
`tasks.superglue`, in TFDS order; 0 as placeholder where a test file has no labels), is_real_example (1) and
example_id (the official `idx` of the jsonl line the row comes from), and then, per task kind:
  sentence_pair    BoolQ (question, passage), CB / RTE / AX-g (premise, hypothesis), AX-b (sentence1, sentence2):
                   nothing more. This is exactly the GLUE record format: the `bert_glue` builder's spec reads them.
  word_in_context  WiC (sentence1, sentence2): word_position_1, word_position_2: the index in input_ids of the
                   first sub-token of the marked word (start1/end1, start2/end2) in each sentence.
  multiple_choice  COPA: 2 rows per example, one per choice, consecutive: a = premise + the question as a phrase
                   ('What was the cause of this?' / 'What happened as a result?'), b = the choice;
                   choice_index 0/1; label_ids 1 on the right choice's row; example_id groups the two rows.
  answer_options   MultiRC: one row per answer option: a = the passage, b = question + ' ' + answer; example_id the
                   passage idx, question_idx and answer_idx; label_ids the answer's 0/1.
  entity_cloze     ReCoRD: one row per (query, distinct candidate entity), candidates in order of first mention
                   (`RecordExample.candidates`, whose text the predictor looks up by candidate_index): a = the passage
                   ('@highlight\n' markers written as '- '), b = the query with @placeholder replaced by the entity;
                   example_id the passage idx, query_idx, candidate_index; label_ids 1 when the entity is a gold
                   answer.
  span_pair        WSC: one sequence [CLS] text [SEP]; span1_start, span1_end, span2_start, span2_end: token
                   positions in input_ids, end exclusive, of the noun phrase (span1: len(span1_text.split()) words
                   from word span1_index of text.split()) and the pronoun (span2). The word indices win over the span
                   texts, which the official file sometimes spells otherwise (TFDS 'wsc', not 'wsc.fixed').
The expansion into rows is done once, here; the meta data (superglue_writer.py) counts, per split, both the examples
(`example_counts`) and the rows (`row_counts`, = the records).

Truncation: pairs lose tokens from the end of the longer text first, as Model Garden's `_truncate_seq_pair`. A marked
span is never cut: the side holding it stops at the span's end and the other side gives up tokens instead (WiC); the
WSC text keeps a window that covers both spans; MultiRC and ReCoRD cut only the passage (the answer / candidate is in
the second text). When that cannot fit, PrepareError names the file, the example's idx and the fix
(--max_seq_length). A character span maps to the tokens that overlap it (a word-piece that starts outside but
reaches into it included).

Fidelity (tests/bert/test_superglue_writer.py): for BoolQ, CB, RTE and AX-g, input_ids, input_mask, segment_ids and
label_ids equal what Model Garden's processors (official.nlp.data.classifier_data_lib: BoolQProcessor, CBProcessor,
SuperGLUERTEProcessor, AXgProcessor, in tf-models-official 2.20) write for the same rows, fed as TFDS feeds them; for
WiC (WiCProcessor) the sentence pair is the same, token for token. What we found wrong or odd in Model Garden:
  - create_finetuning_data.py maps --classification_task_name=wic to WnliProcessor (GLUE's WNLI, read through
    TFDS 'glue/wnli'): it never writes WiC records. WiCProcessor exists but is wired to no task name.
  - WiCProcessor.get_processor_name() returns 'RTESuperGLUE' (RTE's), so WiC meta data passes for RTE's; and its
    get_labels() returns [], so the meta data says num_labels 0.
  - WiCProcessor appends the word as a third segment ([CLS] s1 [SEP] s2 [SEP] word [SEP]) with segment id 2: BERT
    checkpoints have type_vocab_size 2, so that id indexes past the token-type table (an error on CPU, silent zeros
    on GPU). It marks no position of the word, and its truncation may cut the word out of a sentence. We write the
    pair with the word's positions instead (the SuperGLUE paper's formulation) and type ids 0/1.
  - BoolQProcessor names the classes ['True', 'False'] and looks the TFDS id up in that list (TFDS: 0 = False), so
    a false example is named 'True'; the id it writes, the name's index, is TFDS's again (0 = False). CBProcessor
    likewise names ['entailment', 'neutral', 'contradiction'] against TFDS's ['entailment', 'contradiction',
    'neutral']: names wrong, ids right. Their test placeholders differ ('False' -> id 1 for BoolQ, 'entailment' ->
    0 for CB and RTE); ours is 0 everywhere, and meta data `labelled_splits` says which splits carry labels.
  - There is no Model Garden processor for COPA, MultiRC, ReCoRD, WSC or AX-b.

A row is built from an example of `superglue_reader`; `task_rows` gives one split's rows as they come and
`write_rows` writes them as tf.train.Examples.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from core import logs  # noqa: F401  (before TensorFlow loads: it sets TensorFlow's C++ log level)

import tensorflow as tf

from projects.bert.datasets import superglue_reader as reader
from projects.bert.datasets import writing
from projects.bert.datasets.writing import PrepareError
from projects.bert.tasks import superglue as sg

COPA_QUESTIONS = {'cause': 'What was the cause of this?', 'effect': 'What happened as a result?'}
RECORD_HIGHLIGHT = ('@highlight\n', '- ')  # ReCoRD passages end in bullet lines marked so
BASE_FEATURES = ('input_ids', 'input_mask', 'segment_ids', 'label_ids', 'is_real_example', 'example_id')
EXTRA_FEATURES: Dict[str, Tuple[str, ...]] = {
    sg.SENTENCE_PAIR: (),
    sg.WORD_IN_CONTEXT: ('word_position_1', 'word_position_2'),
    sg.MULTIPLE_CHOICE: ('choice_index',),
    sg.ANSWER_OPTIONS: ('question_idx', 'answer_idx'),
    sg.ENTITY_CLOZE: ('query_idx', 'candidate_index'),
    sg.SPAN_PAIR: ('span1_start', 'span1_end', 'span2_start', 'span2_end'),
}
ROW_BINARY_KINDS = (sg.MULTIPLE_CHOICE, sg.ANSWER_OPTIONS, sg.ENTITY_CLOZE)  # label_ids: is this row's option right


@dataclasses.dataclass
class Row:
  """One record: int features, each a list ([max_seq_length] for the sequences, one value for the rest)."""

  input_ids: List[int]
  input_mask: List[int]
  segment_ids: List[int]
  label: int
  example_id: int
  extra: Dict[str, int] = dataclasses.field(default_factory=dict)

  def features(self) -> 'collections.OrderedDict[str, List[int]]':
    out = collections.OrderedDict([('input_ids', self.input_ids), ('input_mask', self.input_mask),
                                   ('segment_ids', self.segment_ids), ('label_ids', [self.label]),
                                   ('is_real_example', [1]), ('example_id', [self.example_id])])
    out.update((k, [v]) for k, v in self.extra.items())
    return out


class _SpanTooLong(Exception):
  """The marked spans cannot fit; the caller names the example."""


def truncate_pair(tokens_a: List[str], tokens_b: List[str], max_length: int, *, keep_a: int = 0, keep_b: int = 0,
                  only_a: bool = False) -> None:
  """Cuts tokens off the ends, in place, until len(a) + len(b) <= max_length: from the longer first (b on a tie),
  as Model Garden's `_truncate_seq_pair`, but never below keep_a / keep_b tokens (a marked span's end), and only
  from a when `only_a`. With nothing to keep the result is Model Garden's. Raises _SpanTooLong when stuck."""
  while len(tokens_a) + len(tokens_b) > max_length:
    can_a, can_b = len(tokens_a) > keep_a, len(tokens_b) > keep_b and not only_a
    if can_a and (len(tokens_a) > len(tokens_b) or not can_b):
      tokens_a.pop()
    elif can_b:
      tokens_b.pop()
    else:
      raise _SpanTooLong()


class Encoder:
  """Tokenizes and packs texts into rows of `max_seq_length` ids with a WordPiece vocab."""

  def __init__(self, vocab_file: str, do_lower_case: bool, max_seq_length: int):
    from official.nlp.tools import tokenization

    writing.check_vocab(vocab_file, writing.FINETUNING_TOKENS)
    self.tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
    if max_seq_length < 8:
      raise PrepareError(f'--max_seq_length={max_seq_length} is too small for [CLS] a [SEP] b [SEP]; use 128 (or '
                         f'more for BoolQ, MultiRC and ReCoRD, whose passages are long).')
    self.max_seq_length = max_seq_length

  def tokenize(self, text: str) -> List[str]:
    return self.tokenizer.tokenize(text)

  def _boundary(self, text: str, char: int, tokens: Sequence[str]) -> Tuple[int, bool]:
    """(n, inside): the tokens of text[:char] agree with the first n of `tokens`; inside when char falls within
    token n (text[:char] tokenizes to more than the n shared tokens)."""
    prefix = self.tokenize(text[:char])
    n = 0
    while n < min(len(prefix), len(tokens)) and prefix[n] == tokens[n]:
      n += 1
    return n, n < len(prefix)

  def token_span(self, text: str, start: int, end: int, tokens: Sequence[str]) -> Optional[Tuple[int, int]]:
    """[first, last + 1) of the tokens of `text` (tokenized: `tokens`) that overlap the characters [start, end);
    None when the span holds no token (only spaces)."""
    if not self.tokenize(text[start:end]):
      return None
    first, _ = self._boundary(text, start, tokens)
    last, inside = self._boundary(text, end, tokens)
    last += int(inside)
    if first >= last:  # one token covers both boundaries and its prefix tokenized alike (an [UNK] word)
      first = last - 1
    return (first, last)

  def pack(self, tokens_a: Sequence[str], tokens_b: Optional[Sequence[str]]) -> Tuple[List[int], List[int], List[int]]:
    """(input_ids, input_mask, segment_ids), each [max_seq_length]: [CLS] a [SEP] (b [SEP]), zero-padded."""
    tokens = ['[CLS]', *tokens_a, '[SEP]']
    segments = [0] * len(tokens)
    if tokens_b is not None:
      tokens += [*tokens_b, '[SEP]']
      segments += [1] * (len(tokens_b) + 1)
    if len(tokens) > self.max_seq_length:
      raise AssertionError(f'{len(tokens)} tokens packed into {self.max_seq_length}')  # truncation comes first
    ids = self.tokenizer.convert_tokens_to_ids(tokens)
    pad = self.max_seq_length - len(ids)
    return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad


# --------------------------------------------------------------------------------------- rows per task kind


class _Rows:
  """Builds the rows of one file's examples; errors name the file and the example."""

  def __init__(self, task: sg.SuperGlueTask, encoder: Encoder, path: str):
    self.task, self.encoder, self.path = task, encoder, path
    self.pair_budget = encoder.max_seq_length - 3  # [CLS] a [SEP] b [SEP]

  def fail(self, idx: Any, problem: str) -> PrepareError:
    return PrepareError(f'{self.path}: example idx {idx}: {problem}')

  def too_long(self, idx: Any, what: str) -> PrepareError:
    return self.fail(idx, f'{what} does not fit in --max_seq_length={self.encoder.max_seq_length} tokens with '
                          f'[CLS] and [SEP]s; pass a larger --max_seq_length (e.g. {2 * self.encoder.max_seq_length}).')

  def label(self, label: Optional[int]) -> int:
    return 0 if label is None else label  # the placeholder of unlabelled test rows

  def pair_row(self, a: List[str], b: List[str], label: int, example_id: int, **extra: int) -> Row:
    ids, mask, segments = self.encoder.pack(a, b)
    return Row(ids, mask, segments, label, example_id, dict(extra))

  def sentence_pair(self, e: reader.SentencePairExample) -> List[Row]:
    a, b = self.encoder.tokenize(e.text_a), self.encoder.tokenize(e.text_b)
    truncate_pair(a, b, self.pair_budget)
    return [self.pair_row(a, b, self.label(e.label), e.idx)]

  def word_in_context(self, e: reader.WicExample) -> List[Row]:
    a, b = self.encoder.tokenize(e.sentence1), self.encoder.tokenize(e.sentence2)
    spans = []
    for n, (text, tokens, start, end) in enumerate(((e.sentence1, a, e.start1, e.end1),
                                                    (e.sentence2, b, e.start2, e.end2)), start=1):
      span = self.encoder.token_span(text, start, end, tokens)
      if span is None:
        raise self.fail(e.idx, f'sentence{n}[{start}:{end}] = {text[start:end]!r} (start{n}/end{n}) holds no '
                               f'token: the offsets must mark the word {e.word!r}.')
      spans.append(span)
    try:
      truncate_pair(a, b, self.pair_budget, keep_a=spans[0][1], keep_b=spans[1][1])
    except _SpanTooLong:
      raise self.too_long(e.idx, f'the two sentences up to the marked word {e.word!r}') from None
    return [self.pair_row(a, b, self.label(e.label), e.idx, word_position_1=1 + spans[0][0],
                          word_position_2=len(a) + 2 + spans[1][0])]

  def multiple_choice(self, e: reader.CopaExample) -> List[Row]:
    context = self.encoder.tokenize(f'{e.premise} {COPA_QUESTIONS[e.question]}')
    rows = []
    for k, choice in enumerate(e.choices):
      a, b = list(context), self.encoder.tokenize(choice)
      truncate_pair(a, b, self.pair_budget)
      rows.append(self.pair_row(a, b, 0 if e.label is None else int(e.label == k), e.idx, choice_index=k))
    return rows

  def answer_options(self, e: reader.MultiRcExample) -> List[Row]:
    passage = self.encoder.tokenize(e.passage)
    rows = []
    for option in reader.answer_options([e]):
      a, b = list(passage), self.encoder.tokenize(f'{option.question} {option.answer}')
      try:
        truncate_pair(a, b, self.pair_budget, keep_a=1, only_a=True)
      except _SpanTooLong:
        raise self.too_long(e.idx, f'question idx {option.question_idx} with answer idx {option.answer_idx}') from None
      rows.append(self.pair_row(a, b, self.label(option.label), e.idx, question_idx=option.question_idx,
                                answer_idx=option.answer_idx))
    return rows

  def entity_cloze(self, e: reader.RecordExample) -> List[Row]:
    passage = self.encoder.tokenize(e.passage.replace(*RECORD_HIGHLIGHT))
    rows = []
    for q in e.queries:
      gold = set(q.answers)
      for k, entity in enumerate(e.candidates):
        a, b = list(passage), self.encoder.tokenize(q.query.replace(reader.PLACEHOLDER, entity))
        try:
          truncate_pair(a, b, self.pair_budget, keep_a=1, only_a=True)
        except _SpanTooLong:
          raise self.too_long(e.idx, f'query idx {q.idx} with candidate {entity!r}') from None
        label = int(entity in gold) if gold else 0
        rows.append(self.pair_row(a, b, label, e.idx, query_idx=q.idx, candidate_index=k))
    return rows

  def span_pair(self, e: reader.WscExample) -> List[Row]:
    tokens = self.encoder.tokenize(e.text)
    words = [m.span() for m in re.finditer(r'\S+', e.text)]
    spans = []
    for n, index, text in (('1', e.span1_index, e.span1_text), ('2', e.span2_index, e.span2_text)):
      count = max(1, len(text.split()))
      if index + count > len(words):
        raise self.fail(e.idx, f'target.span{n}_index {index} with the {count} words of span{n}_text {text!r} '
                               f'ends past the {len(words)} words of the text (indices count text.split()).')
      span = self.encoder.token_span(e.text, words[index][0], words[index + count - 1][1], tokens)
      if span is None:
        raise self.fail(e.idx, f'span{n} ({text!r}) holds no token.')
      spans.append(span)
    budget = self.encoder.max_seq_length - 2
    lo, hi = min(s for s, _ in spans), max(t for _, t in spans)
    if hi - lo > budget:
      raise self.too_long(e.idx, 'the text from one span to the other')
    end = min(len(tokens), max(budget, hi))  # keep the start of the text unless a span lies beyond the budget
    begin = max(0, end - budget)
    ids, mask, segments = self.encoder.pack(tokens[begin:end], None)
    shift = 1 - begin  # [CLS] comes first
    return [Row(ids, mask, segments, self.label(e.label), e.idx,
                {'span1_start': spans[0][0] + shift, 'span1_end': spans[0][1] + shift,
                 'span2_start': spans[1][0] + shift, 'span2_end': spans[1][1] + shift})]

  def rows(self, examples: Sequence[reader.Example]) -> Iterator[Row]:
    """The rows of `examples`, one example's at a time (ReCoRD's train split expands to about 1.3M rows: they are
    written as they come, not held)."""
    build = getattr(self, self.task.kind)
    for example in examples:
      yield from build(example)


def task_rows(task_name: str, superglue_dir: str, split: str, encoder: Encoder) -> Tuple[int, Iterator[Row]]:
  """(number of examples, their rows) of one split of a task: the expansion `prepare_superglue` writes. The file is
  read and checked first; the rows are built as the iterator is consumed."""
  task = sg.get_task(task_name)
  examples = reader.read_split(superglue_dir, task.name, split)
  return len(examples), _Rows(task, encoder, os.path.join(superglue_dir, task.data_file(split))).rows(examples)


def write_rows(path: str, rows: Iterable[Row]) -> int:
  """Writes `rows` as tf.train.Examples of int64 features (Model Garden's writer's layout); returns how many."""
  count = 0
  with tf.io.TFRecordWriter(path) as writer:
    for row in rows:
      feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for k, v in row.features().items()}
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
      count += 1
  return count
