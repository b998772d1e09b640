"""Record files of the BERT dataset builders: finding them, their meta data, and checking them before any pipeline.

Each builder describes its records as a `{batch key: Feature}` spec; `check_first_records` checks the first record
of every file against it (so a wrong file fails before training with the file named, not deep inside tf.data).
`pipeline.py` builds the tf.data pipelines over the files checked here.

`prepare pretraining` records which shards it wrote together in each output folder's `.prepare_manifest.json`,
marking a set `pending` before its files move into place and `complete` after; `refuse_pending_sets` refuses files
of a set whose move a kill interrupted (old and new shards side by side).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from core import errors

FileSpec = Union[str, Sequence[str]]
MANIFEST = '.prepare_manifest.json'  # which pretraining record files one `prepare pretraining` run wrote together
_GLOB_CHARS = ('*', '?', '[')
_GZIP_MAGIC = b'\x1f\x8b\x08'


@dataclasses.dataclass(frozen=True)
class Feature:
  """One feature of a record and how it appears in a batch.

  `name` is its name in the records, `kind` 'int' (int64_list) or 'float' (float_list), `length` the number of
  values per record (None: any, the caller infers it), `scalar` whether the batch holds it as `[B]` rather than
  `[B, length]`, `dtype` the batch dtype; `required=False` features are filled with `default` when absent.
  """

  name: str
  kind: str
  length: Optional[int]
  scalar: bool = False
  dtype: tf.DType = tf.int32
  required: bool = True
  default: Any = 0


RecordSpec = Mapping[str, Feature]  # batch key -> feature


# ------------------------------------------------------------------------------------------------------ files


def expand_file_patterns(spec: FileSpec, field: str) -> List[str]:
  """Paths from a comma-separated string or a list of paths / glob patterns (local or any tf.io.gfile path).

  Patterns expand to their sorted matches. A pattern that matches nothing or a path that does not exist raises
  FileNotFoundError naming it and the config field.
  """
  if isinstance(spec, str):
    items = [s.strip() for s in spec.split(',')]
  else:
    items = [str(s).strip() for s in (spec or ())]
  items = [s for s in items if s]
  if not items:
    raise errors.ConfigError(f'config.dataset.{field} is empty: give a file, a glob pattern, or a '
                             f'comma-separated list.')
  files: List[str] = []
  for item in items:
    if any(c in item for c in _GLOB_CHARS):
      matches = sorted(tf.io.gfile.glob(item))
      if not matches:
        raise errors.MissingFileError(f'config.dataset.{field}: the pattern {item!r} matches no files. Check the path, '
                                      f'or create the records with `python -m projects.bert.datasets.prepare`.')
      files.extend(matches)
    else:
      if not tf.io.gfile.exists(item):
        raise errors.MissingFileError(f'config.dataset.{field}: the file {item!r} does not exist. Check the path, or '
                                      f'create the records with `python -m projects.bert.datasets.prepare`.')
      files.append(item)
  return list(dict.fromkeys(files))  # the same file named twice is read once


def read_meta_json(path: str, required: Sequence[str], *, missing: str, writers: str, command: str) -> Dict[str, Any]:
  """The meta-data JSON object at `path`, with the `required` fields. Errors name the file and say how to write it:
  `missing` is the message when it does not exist, `writers` what writes such files, `command` the one to run."""
  if not tf.io.gfile.exists(path):
    raise errors.MissingFileError(missing)
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise errors.DataError(f'{path} is not valid JSON meta data ({e}).') from None
  for key in required:
    if key not in meta:
      raise errors.DataError(f'{path} lacks the field {key!r}: it is not the meta data of {writers}. Re-create it '
                             f'with:\n  {command}')
  return meta


def compression_of(path: str) -> str:
  """'GZIP' for gzip-compressed record files (create_pretraining_data --gzip_compress), else ''."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    return 'GZIP' if f.read(3) == _GZIP_MAGIC else ''


def common_compression(files: Sequence[str]) -> str:
  kinds = {f: compression_of(f) for f in files}
  if len(set(kinds.values())) > 1:
    gz = [f for f, k in kinds.items() if k]
    raise errors.DataError(f'Some record files are gzip-compressed ({gz[:3]}...) and others are not; '
                           f're-create them with the same --gzip_compress setting.')
  return next(iter(kinds.values()))


def op_message(e: tf.errors.OpError) -> str:
  """The useful part of a TF error message (without the function-node and op-name wrapping).

  TensorFlow's record reader says "truncated record at 580' failed with Read less bytes than requested" (a stray
  quote in its format string): that becomes "truncated record at byte 580: read less bytes than requested".
  """
  message = re.sub(r'\{\{.*?\}\}\s*', '', e.message or str(e))
  message = re.sub(r'\s*\[Op:[^\]]*\].*$', '', message, flags=re.S).strip()
  return re.sub(r"truncated record at (\d+)' failed with (\w)", lambda m: f'truncated record at byte {m.group(1)}: '
                f'{m.group(2).lower()}', message)


def describe_files(files: Sequence[str]) -> str:
  return repr(files[0]) if len(files) == 1 else f'{len(files)} files ({files[0]!r}, ...)'


# ------------------------------------------------------------------------------------------------- validation


def read_first_example(path: str, compression: str = '') -> tf.train.Example:
  """The first record of `path` as a tf.train.Example; ValueError naming the file if it cannot be read."""
  try:
    raw = next(iter(tf.data.TFRecordDataset(path, compression_type=compression).take(1)), None)
  except (tf.errors.DataLossError, tf.errors.OpError) as e:
    raise errors.DataError(f'{path} is not a readable TFRecord file ({op_message(e)}). It is corrupt or truncated, '
                           f'or not a record file; re-create it with `python -m projects.bert.datasets.prepare`.'
                           ) from None
  if raw is None:
    raise errors.DataError(f'{path} holds no records; re-create it with `python -m projects.bert.datasets.prepare`.')
  try:
    return tf.train.Example.FromString(raw.numpy())
  except Exception as e:  # protobuf's DecodeError has no stable import path
    raise errors.DataError(f'The first record of {path} is not a tf.train.Example ({e}).') from None


def record_features(example: tf.train.Example) -> Dict[str, Tuple[str, int]]:
  """{name: (kind, number of values)} of a parsed record; kind is 'int', 'float' or 'bytes'."""
  kinds = {'int64_list': 'int', 'float_list': 'float', 'bytes_list': 'bytes'}
  found = {}
  for name, feature in example.features.feature.items():
    which = feature.WhichOneof('kind')
    found[name] = (kinds.get(which, str(which)), len(getattr(feature, which).value) if which else 0)
  return found


def check_record(path: str, example: tf.train.Example, spec: RecordSpec, *, allowed_extra: Sequence[str] = (),
                 fix: str = '') -> Dict[str, int]:
  """Checks one record against `spec`: feature names, kinds and lengths. Returns {record name: length}.

  Raises ValueError naming the file, each difference (missing, unexpected, wrong kind, wrong length), and `fix`.
  """
  found = record_features(example)
  expected = {f.name: f for f in spec.values()}
  problems = []
  missing = [n for n, f in expected.items() if f.required and n not in found]
  if missing:
    problems.append(f'missing features {missing}')
  unexpected = sorted(set(found) - set(expected) - set(allowed_extra))
  if unexpected:
    problems.append(f'unexpected features {unexpected}')
  for name, feature in expected.items():
    if name not in found:
      continue
    kind, length = found[name]
    if kind != feature.kind:
      problems.append(f'{name!r} holds {kind} values, expected {feature.kind}')
    elif feature.length is not None and length != feature.length:
      problems.append(f'{name!r} has {length} values, expected {feature.length}')
  if problems:
    expected_desc = ', '.join(f'{n}[{f.length if f.length is not None else "?"}]' for n, f in expected.items())
    found_desc = ', '.join(f'{n}[{length}]' for n, (_, length) in sorted(found.items()))
    raise errors.DataError(f'{path}: the records do not match what this dataset reads: {"; ".join(problems)}.\n'
                           f'  expected: {expected_desc}\n  found:    {found_desc}'
                           + (f'\n  fix: {fix}' if fix else ''))
  return {n: length for n, (_, length) in found.items()}


def count_records(path: str, compression: str = '') -> int:
  """Number of records in one file; ValueError naming the file when it is corrupt or truncated."""
  ds = tf.data.TFRecordDataset(path, compression_type=compression)
  try:
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1).numpy())
  except tf.errors.OpError as e:
    raise errors.DataError(f'{path} is corrupt or truncated ({op_message(e)}); re-create it with '
                           f'`python -m projects.bert.datasets.prepare`.') from None




def check_first_records(files_and_specs: Sequence[Tuple[str, RecordSpec]], *, allowed_extra: Sequence[str] = (),
                        fix: str = '') -> str:
  """Checks the first record of every file against its spec (`check_record`); returns their common compression."""
  compression = common_compression([path for path, _ in files_and_specs])
  for path, spec in files_and_specs:
    check_record(path, read_first_example(path, compression), spec, allowed_extra=allowed_extra, fix=fix)
  return compression


# ------------------------------------------------------------------------------------------ prepare manifests


def read_manifest(folder: str) -> List[Dict[str, Any]]:
  """The runs of `prepare pretraining` recorded in `folder` ([] when none, or when the manifest is damaged).

  Each run is {'outputs': [file names], 'args': [flags], 'state': 'pending' | 'complete', 'replaces': [file
  names of earlier sets it removes]}; runs written before the state existed count as complete.
  """
  path = os.path.join(folder, MANIFEST)
  if not tf.io.gfile.exists(path):
    return []
  try:
    with tf.io.gfile.GFile(path) as f:
      runs = json.load(f).get('runs', [])
  except (ValueError, AttributeError):
    return []
  return [r for r in runs if isinstance(r, dict)]


def refuse_pending_sets(files: Sequence[str], field: str) -> None:
  """DataError when any of `files` belongs to a `prepare pretraining` set whose files did not all move into place
  (a kill between its renames leaves new and old shards side by side, which would train on a mix of two runs)."""
  by_folder: Dict[str, List[str]] = {}
  for path in files:
    by_folder.setdefault(os.path.dirname(path) or '.', []).append(os.path.basename(path))
  for folder, names in by_folder.items():
    for run in read_manifest(folder):
      if run.get('state', 'complete') == 'complete':
        continue
      hit = sorted(set(names) & (set(run.get('outputs', [])) | set(run.get('replaces', []))))
      if hit:
        command = 'python -m projects.bert.datasets.prepare pretraining ' + ' '.join(run.get('args', []))
        raise errors.DataError(
            f'config.dataset.{field}: {os.path.join(folder, hit[0])} belongs to a record set that `prepare '
            f'pretraining` was interrupted while moving into place ({os.path.join(folder, MANIFEST)} marks '
            f'{len(run.get("outputs", []))} files pending): the folder may hold shards of two runs side by side. '
            f'Rerun the prepare command to write the set again:\n  {command}')
