"""Whole sentences back from XTREME tagging records (tagging_data_lib's layout, `bert_xtreme`): the records of a
sentence longer than max_seq_length - 2 WordPieces are its sub-sentences (sub_sentence_id 0, 1, ... under one
sentence_id), and a word's tag is read at its first WordPiece, the one position with a label >= 0 (every other
position holds -1: [CLS], [SEP], padding, non-first pieces).

  gold, predicted = sentence_tags(label_ids, predicted_ids, sentence_id, sub_sentence_id, num_sentences, where)

Rows may come in any order (they are sorted by (sentence_id, sub_sentence_id)); every sentence 0..num_sentences-1
must be there with sub-sentences 0..k-1, else DataError (predictions could not follow the test file). The result
is one list of label ids per sentence, in sentence order: what evaluate.py scores (seqeval over whole sentences)
and what a submission file holds (one tag per word). No TensorFlow here: numpy only.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from core import errors


def _sorted_rows(sentence_id: np.ndarray, sub_sentence_id: np.ndarray, num_sentences: int, where: str) -> np.ndarray:
  """Row order by (sentence_id, sub_sentence_id), checked to hold sentences 0..n-1 with sub-sentences 0..k-1."""
  order = np.lexsort((sub_sentence_id, sentence_id))
  sentences, subs = sentence_id[order], sub_sentence_id[order]
  fix = 'Re-create the records with `prepare xtreme` (their meta data and files are written together).'
  present = np.unique(sentences)
  if len(present) != num_sentences or (num_sentences and (present[0] != 0 or present[-1] != num_sentences - 1)):
    missing = sorted(set(range(num_sentences)) - set(present.tolist()))[:5]
    raise errors.DataError(f'{where}: the records hold {len(present)} sentences (ids {int(present.min(initial=0))}.. '
                           f'{int(present.max(initial=-1))}) but the meta data says {num_sentences}'
                           f'{f"; missing sentence ids {missing}" if missing else ""}. {fix}')
  first_row = np.searchsorted(sentences, sentences, side='left')  # each row's sentence starts here
  bad = np.nonzero(subs != np.arange(len(order)) - first_row)[0]
  if len(bad):
    row = bad[0]
    raise errors.DataError(f'{where}: sentence {int(sentences[row])} has sub-sentence ids '
                           f'{subs[sentences == sentences[row]].tolist()}, not 0, 1, ... once each. {fix}')
  return order


def sentence_tags(label_ids: np.ndarray, predicted_ids: np.ndarray, sentence_id: np.ndarray,
                  sub_sentence_id: np.ndarray, num_sentences: int, where: str
                  ) -> Tuple[List[List[int]], List[List[int]]]:
  """(gold, predicted) label ids per whole sentence, in sentence order (module docstring).

  label_ids, predicted_ids: int [rows, seq] (label -1 where not scored); sentence_id, sub_sentence_id: int [rows];
  `where` names the records in errors.
  """
  label_ids, predicted_ids = np.asarray(label_ids), np.asarray(predicted_ids)
  if label_ids.shape != predicted_ids.shape:
    raise ValueError(f'{where}: predictions {predicted_ids.shape} and labels {label_ids.shape} differ in shape.')
  sentence_id = np.asarray(sentence_id).reshape(-1).astype(np.int64)
  order = _sorted_rows(sentence_id, np.asarray(sub_sentence_id).reshape(-1).astype(np.int64), num_sentences, where)
  scored = label_ids[order] >= 0  # [rows, seq], row-major: a sentence's words in order across its sub-sentences
  gold, predicted = label_ids[order][scored], predicted_ids[order][scored]
  words = np.bincount(sentence_id[order], weights=scored.sum(axis=1), minlength=num_sentences).astype(np.int64)
  if num_sentences == 0:
    return [], []
  bounds = np.cumsum(words)[:-1]
  return ([s.tolist() for s in np.split(gold, bounds)], [s.tolist() for s in np.split(predicted, bounds)])
