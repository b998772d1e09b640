"""The SQuAD data as `prepare squad` writes it and `bert_squad` and the SQuAD evaluation read it (no TensorFlow at
import, so configs may use the version table).

An output directory holds one SQuAD version:
  squad_train.tf_record        train features, written by Model Garden's `squad_lib` (create_finetuning_data.py's
                               writer): unique_ids, input_ids, input_mask, segment_ids, paragraph_mask, class_index,
                               start_positions, end_positions, is_impossible
  squad_eval.tf_record         eval features (the same writer, is_training=False): no positions
  squad_eval_features.jsonl    what decoding needs of each eval feature, one JSON object a line, in record order
  squad_eval.json              a copy of the eval SQuAD JSON: the examples and the official evaluation's answers
  squad_meta_data              JSON: upstream's `bert_squad` fields (task_type, train_data_size, max_seq_length,
                               max_query_length, doc_stride, version_2_with_negative) and ours (eval_data_size,
                               eval_num_examples, train_num_examples, version, do_lower_case, vocab_file, files)

Eval features: a question's paragraph may be longer than one window, so one example gives one feature per
doc-stride window. Each line of the features file is {"unique_id", "example_index", "qas_id", "doc_span_index",
"tokens", "doc_offset", "token_to_orig", "token_is_max_context"}: `tokens` are the window's WordPieces ([CLS]
question [SEP] paragraph-part [SEP]), and for its paragraph tokens (positions doc_offset, doc_offset + 1, ...)
`token_to_orig` gives the whitespace word of the paragraph each comes from and `token_is_max_context` (0/1) whether
this window is the one that sees the token with the most context (squad_lib's rule).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Iterable, List

from core import errors
from projects.bert.tasks import squad as squad_tasks

# SQuAD version -> version_2_with_negative (v2.0 has unanswerable questions); the versions are tasks/squad.py's.
VERSIONS: Dict[str, bool] = {name: v.version_2_with_negative for name, v in squad_tasks.VERSIONS.items()}

TASK_TYPE = 'bert_squad'
META_DATA = 'squad_meta_data'
TRAIN_RECORDS = 'squad_train.tf_record'
EVAL_RECORDS = 'squad_eval.tf_record'
EVAL_FEATURES = 'squad_eval_features.jsonl'
EVAL_JSON = 'squad_eval.json'
EVAL_SPLIT = 'dev'  # the one eval split: SQuAD's test sets are hidden


def get_version(name: str) -> str:
  """'v1.1' or 'v2.0' from a version name ('1.1', 'v2', 'V2.0', ...); ValueError listing the known ones."""
  return squad_tasks.get_version(name).name


def version_of(version_2_with_negative: bool) -> str:
  return 'v2.0' if version_2_with_negative else 'v1.1'


def prepare_command(version: str, out_dir: str = 'OUT_DIR') -> str:
  v = squad_tasks.VERSIONS[version]
  return (f'python -m projects.bert.datasets.prepare squad --train_file={v.train_file} '
          f'--eval_file={v.dev_file} --vocab_file=VOCAB --output_dir={out_dir} '
          f'--version_2_with_negative={str(v.version_2_with_negative).lower()} --max_seq_length=384 '
          f'--doc_stride=128 --max_query_length=64')


@dataclasses.dataclass(frozen=True)
class EvalFeature:
  """The fields of one eval feature that `squad_lib.postprocess_output` reads (named as its `InputFeatures`).

  tokens: the window's WordPieces; token_to_orig_map / token_is_max_context: {position in the window: whitespace
  word of the paragraph / whether this window is the token's max-context one}, for the paragraph positions only.
  """

  unique_id: int
  example_index: int
  qas_id: str
  doc_span_index: int
  tokens: List[str]
  token_to_orig_map: Dict[int, int]
  token_is_max_context: Dict[int, bool]


def feature_record(feature: Any, qas_id: str) -> Dict[str, Any]:
  """One line of the eval features file from a `squad_lib.InputFeatures` (or an `EvalFeature`)."""
  positions = sorted(feature.token_to_orig_map)
  offset = positions[0] if positions else len(feature.tokens)
  if positions != list(range(offset, offset + len(positions))):
    raise ValueError(f'Feature {feature.unique_id}: the paragraph tokens are not contiguous ({positions[:5]}...).')
  return {'unique_id': int(feature.unique_id), 'example_index': int(feature.example_index), 'qas_id': qas_id,
          'doc_span_index': int(feature.doc_span_index), 'tokens': list(feature.tokens), 'doc_offset': offset,
          'token_to_orig': [int(feature.token_to_orig_map[p]) for p in positions],
          'token_is_max_context': [int(bool(feature.token_is_max_context[p])) for p in positions]}


def feature_from_record(record: Dict[str, Any]) -> EvalFeature:
  offset = int(record['doc_offset'])
  return EvalFeature(
      unique_id=int(record['unique_id']), example_index=int(record['example_index']), qas_id=str(record['qas_id']),
      doc_span_index=int(record['doc_span_index']), tokens=list(record['tokens']),
      token_to_orig_map={offset + i: int(o) for i, o in enumerate(record['token_to_orig'])},
      token_is_max_context={offset + i: bool(m) for i, m in enumerate(record['token_is_max_context'])})


def write_eval_features(path: str, records: Iterable[Dict[str, Any]]) -> int:
  """Writes `feature_record`s one a line; returns how many."""
  import tensorflow as tf

  n = 0
  with tf.io.gfile.GFile(path, 'w') as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False, separators=(',', ':')) + '\n')
      n += 1
  return n


def read_eval_features(path: str) -> List[EvalFeature]:
  """The eval features file at `path`; ValueError naming the file and line when a line is not a feature."""
  import tensorflow as tf

  features = []
  with tf.io.gfile.GFile(path, 'r') as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        features.append(feature_from_record(json.loads(line)))
      except (ValueError, KeyError, TypeError) as e:
        raise errors.DataError(f'{path}:{line_no} is not a SQuAD eval feature ({type(e).__name__}: {e}); the file is '
                               f'damaged: re-create the data with `python -m projects.bert.datasets.prepare '
                               f'squad`.') from None
  return features
