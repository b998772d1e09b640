"""The inputs of XTREME's retrieval tasks (BUCC, Tatoeba) for the `xtreme_retrieval` evaluator: per split and
language the token ids of both sides' records (`prepare xtreme`, `xtreme_records.py`) and the sentences, ids and
gold pairs they were written from, read again from the download folder, since mining works on sentences (xtreme
mines each distinct sentence once and maps mined sentences back to BUCC ids).

  sets = load_retrieval_sets('bucc2018', data_dir='data/xtreme', xtreme_dir='', languages=())
  sets['dev']['de'].source.tokens(i)      # the i-th source sentence's WordPiece ids

Tokens are held ragged (one flat int32 array and the lengths), so BUCC's ~400k sentences of 512-token records take
~4 bytes per real token instead of 2 x 512 x 4 bytes per sentence. The records and the sentence files must agree
(same count, same example ids in the same order); otherwise the error names both files and says to prepare again.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from core import errors
from projects.bert.datasets import records, xtreme_reader
from projects.bert.datasets.xtreme_pairs import prepare_command
from projects.bert.datasets.xtreme_records import SIDES, SPLIT_OF
from projects.bert.tasks import xtreme

_READ_BATCH = 4096  # records parsed at a time


@dataclasses.dataclass(frozen=True)
class SideTokens:
  """One side's records: `flat` int32 token ids of every record's real tokens, one after another; `lengths` [n] the
  real tokens of each; `example_ids` [n] int64 (BUCC: the id's number; Tatoeba: the line index); `path` the file."""

  flat: np.ndarray
  lengths: np.ndarray
  example_ids: np.ndarray
  path: str

  @property
  def offsets(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.lengths)])

  def __len__(self) -> int:
    return len(self.lengths)


@dataclasses.dataclass(frozen=True)
class RetrievalSet:
  """One split of one language: both sides' tokens and the Bitext (sentences, BUCC ids, gold) they came from."""

  task: str
  split: str  # 'dev' or 'test'
  lang: str
  source: SideTokens
  target: SideTokens
  bitext: xtreme_reader.Bitext


def read_side(path: str, max_seq_length: int, task_name: str = 'bucc2018') -> SideTokens:
  """The records of one side (input_ids, input_mask [max_seq_length], example_id [1]), ragged."""
  spec = {'input_ids': tf.io.FixedLenFeature([max_seq_length], tf.int64),
          'input_mask': tf.io.FixedLenFeature([max_seq_length], tf.int64),
          'example_id': tf.io.FixedLenFeature([1], tf.int64)}
  pieces, lengths, example_ids = [], [], []
  data = tf.data.TFRecordDataset(path).batch(_READ_BATCH).map(lambda r: tf.io.parse_example(r, spec))
  try:
    for batch in data.as_numpy_iterator():
      mask = batch['input_mask'].astype(bool)
      pieces.append(batch['input_ids'][mask].astype(np.int32))  # row-major: each record's real tokens in order
      lengths.append(mask.sum(axis=1))
      example_ids.append(batch['example_id'][:, 0])
  except tf.errors.OpError as e:
    raise errors.DataError(f'{path}: not retrieval records of max_seq_length {max_seq_length} '
                           f'({records.op_message(e)}). Write them again with:\n  '
                           f'{prepare_command(task_name)}') from None
  cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros((0,), dtype))
  return SideTokens(cat(pieces, np.int32), cat(lengths, np.int64), cat(example_ids, np.int64), path)


def read_meta(task_name: str, data_dir: str) -> Dict:
  """The task's `prepare xtreme` meta data, checked to be retrieval records."""
  task = xtreme.get_task(task_name)
  path = os.path.join(data_dir, f'{task.name}_meta_data')
  meta = records.read_meta_json(
      path, ('task', 'kind', 'max_seq_length', 'files', 'xtreme_dir'),
      missing=(f'XTREME meta data {path!r} does not exist. Write it (with the records) by running:\n  '
               f'{prepare_command(task.name, data_dir or ".")}'),
      writers='`prepare xtreme`', command=prepare_command(task.name, data_dir or '.'))
  if meta['task'] != task.name:
    raise errors.ConfigError(f'{path} holds the records of {meta["task"]}, not {task.name}: point data_dir at the '
                             f'--output_dir of `prepare xtreme --task={task.name}`.')
  return meta


def _expected_example_ids(bitext: xtreme_reader.Bitext, side: str) -> np.ndarray:
  """What `xtreme_records` writes as example_id: the BUCC id's number, else the line index."""
  ids = bitext.source_ids if side == 'source' else bitext.target_ids
  n = len(bitext.source if side == 'source' else bitext.target)
  return np.array([int(i.split('-')[1]) for i in ids], np.int64) if ids is not None else np.arange(n)


def _check_agree(tokens: SideTokens, bitext: xtreme_reader.Bitext, side: str, sentence_file: str,
                 task_name: str) -> None:
  expected = _expected_example_ids(bitext, side)
  if len(expected) != len(tokens) or not np.array_equal(expected, tokens.example_ids):
    where = (f'{len(tokens)} records for {len(expected)} lines' if len(expected) != len(tokens) else
             f'record {int(np.argmax(expected != tokens.example_ids))} has another example id than its line')
    raise errors.DataError(f'{tokens.path} and {sentence_file} disagree ({where}): the download folder changed '
                           f'since the records were written. Write them again with:\n  {prepare_command(task_name)}')


def load_retrieval_sets(task_name: str, data_dir: str, xtreme_dir: str = '', languages: Sequence[str] = (),
                        meta: Optional[Dict] = None) -> Dict[str, Dict[str, RetrievalSet]]:
  """{'dev' | 'test': {lang: RetrievalSet}} of every split and language with records (`languages`: only those);
  `xtreme_dir` '' = the download folder the records were written from (their meta data's)."""
  task = xtreme.get_task(task_name)
  meta = meta if meta is not None else read_meta(task.name, data_dir)
  xtreme_dir = xtreme_dir or meta['xtreme_dir']
  out: Dict[str, Dict[str, RetrievalSet]] = {}
  for kind, langs in meta['files'].items():
    if kind not in SPLIT_OF:
      continue
    split = SPLIT_OF[kind]
    wanted = [lang for lang in task.languages if lang in langs and (not languages or lang in languages)]
    if not wanted:
      continue
    read = xtreme_reader.read_split(xtreme_dir, task.name, split, wanted)
    if read.missing:
      raise errors.MissingFileError(
          f'XTREME {task.name} {split}: the sentence files of {", ".join(read.missing)} are gone from {xtreme_dir} '
          f'(the records were written from them; mining needs the sentences). Set xtreme_dir to the download folder.')
    for lang in wanted:
      bitext = read.examples[lang]
      files = task.files(split, lang)
      sides = {}
      for side in SIDES:
        sides[side] = read_side(os.path.join(data_dir, langs[lang][side]), int(meta['max_seq_length']), task.name)
        _check_agree(sides[side], bitext, side,
                     os.path.join(xtreme_dir, files['path' if side == 'source' else 'target']), task.name)
      out.setdefault(split, {})[lang] = RetrievalSet(task.name, split, lang, sides['source'], sides['target'], bitext)
  return out
