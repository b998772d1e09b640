"""What every `prepare` writer shares: its error class, the input-file and vocabulary checks, the staging folders
the outputs are written into before they move into place, the commit that moves them (`commit_outputs`), the
disk-full message and the command line's boolean flags (`parse_bool`).

Outputs are written into a staging folder inside the output folder (the same file system, so renames are atomic)
and renamed into place when complete: an error, Ctrl-C or a full disk before that leaves the previous outputs as
they were. A staging folder of a run that is still going holds a lock (`.lock`, flock'ed while the run lives), so a
new run removes the staging folders of killed runs and leaves those of running ones alone.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from typing import Any, List, Mapping, Optional, Sequence

import tensorflow as tf
from absl import logging

from core import errors

STAGING_PREFIX = '.prepare-'  # every writer's staging folders start so (`prepare glue`: .prepare-<task>-<hex>)
_LOCK = '.lock'
_LEGACY_STAGING = re.compile(r'^\.prepare-[0-9a-f]{8}$')  # `prepare pretraining`'s staging before it held a lock
_UNLOCKED_GRACE_S = 60.0  # a staging folder without its lock file yet is another run's only this long after mkdir

# The tokens every BERT input uses ([CLS] a [SEP] b [SEP], [UNK] for unknown words, [PAD] = id 0 of the padding);
# pretraining also masks with [MASK].
FINETUNING_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]')
PRETRAINING_TOKENS = FINETUNING_TOKENS + ('[MASK]',)


class PrepareError(errors.DataError):
  """A problem with the inputs or outputs of `prepare`, with what to do about it."""


def parse_bool(value: str) -> bool:
  """A command line's boolean flag value (--do_lower_case=false); argparse's error otherwise."""
  if value.lower() in ('1', 'true', 'yes', 't', 'y'):
    return True
  if value.lower() in ('0', 'false', 'no', 'f', 'n'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {value!r}')


def require_file(path: str, what: str, fix: str) -> None:
  """PrepareError unless `path` is given and exists."""
  if not path:
    raise PrepareError(f'No {what} given: {fix}')
  if not tf.io.gfile.exists(path):
    raise PrepareError(f'The {what} {path!r} does not exist: {fix}')


def check_vocab(path: str, needed: Sequence[str] = FINETUNING_TOKENS) -> int:
  """Checks that the WordPiece vocabulary at `path` exists and holds the `needed` special tokens; returns its size.

  Without the check, a vocabulary lacking one (an empty file, a vocab of another tokenizer) fails deep inside the
  upstream tokenizer with a bare KeyError '[CLS]'.
  """
  fix = ('pass --vocab_file=PATH/vocab.txt, the WordPiece vocabulary of the model (one token a line, e.g. the '
         'vocab.txt next to a BERT checkpoint).')
  require_file(path, 'vocab file', fix)
  with tf.io.gfile.GFile(path, 'rb') as f:
    tokens = {line.strip() for line in f.read().decode('utf-8', errors='replace').splitlines()}
  tokens.discard('')
  missing = [t for t in needed if t not in tokens]
  if missing:
    fix = fix[0].upper() + fix[1:]
    if not tokens:
      raise PrepareError(f'The vocab file {path!r} is empty; BERT inputs need the tokens {", ".join(needed)}. {fix}')
    raise PrepareError(f'The vocab file {path!r} holds {len(tokens)} tokens but lacks {", ".join(missing)}, which '
                       f'BERT inputs need. {fix}')
  return len(tokens)


def disk_full_error(exc: BaseException, output_dir: str, staging: Optional[str] = None) -> Optional[PrepareError]:
  """The PrepareError for a full disk (or quota) in `exc` while writing into `output_dir` (through the staging
  folder `staging`, whose files are named by their final path), else None."""
  full = errors.disk_full_error(exc)
  if full is None:
    return None
  where = str(full.filename or output_dir)
  if staging and where.startswith(staging.rstrip('/') + '/'):
    where = os.path.join(output_dir, where[len(staging.rstrip('/')) + 1:])
  return PrepareError(f'No space left on device while writing {where}: nothing was replaced, the previous outputs '
                      f'in {output_dir} are kept (the new files were written beside them and removed). Free space '
                      f'(the new files need about as much as the old ones), or pass another output folder.')


def _is_local(path: str) -> bool:
  return '://' not in path


class Staging:
  """A staging folder `<folder>/.prepare-<kind>-<hex>`, locked while this process lives (local folders)."""

  def __init__(self, folder: str, kind: str):
    self.path = os.path.join(folder, f'{STAGING_PREFIX}{kind}-{uuid.uuid4().hex[:8]}')
    tf.io.gfile.makedirs(self.path)
    self._lock_fd = None
    if _is_local(self.path):
      self._lock_fd = os.open(os.path.join(self.path, _LOCK), os.O_CREAT | os.O_RDWR, 0o644)
      fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # released by the kernel when this process ends, however it ends

  def remove(self) -> None:
    if self._lock_fd is not None:
      os.close(self._lock_fd)
      self._lock_fd = None
    if tf.io.gfile.exists(self.path):
      tf.io.gfile.rmtree(self.path)


def _is_abandoned(path: str) -> bool:
  """Whether the local staging folder `path` belongs to a run that has ended (its lock is free)."""
  lock = os.path.join(path, _LOCK)
  if not os.path.exists(lock):
    try:
      return time.time() - os.path.getmtime(path) > _UNLOCKED_GRACE_S
    except OSError:
      return False
  try:
    fd = os.open(lock, os.O_RDWR)
  except OSError:
    return False
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
      return False  # a running prepare holds it
    raise
  finally:
    os.close(fd)


def remove_abandoned_staging(folder: str, kind: str) -> List[str]:
  """Removes the staging folders of `kind` ('pretraining', a GLUE task, 'xtreme-<task>') in `folder` that killed
  runs left (and older, lock-less ones); those of runs still going are kept. Returns the removed paths."""
  if not tf.io.gfile.isdir(folder):
    return []
  removed = []
  for name in tf.io.gfile.listdir(folder):
    name = name.rstrip('/')
    path = os.path.join(folder, name)
    legacy = kind == 'pretraining' and _LEGACY_STAGING.match(name)
    if not (legacy or name.startswith(f'{STAGING_PREFIX}{kind}-')):
      continue
    if not _is_local(path):
      logging.warning('%s may be the staging folder of an interrupted prepare run: remove it if no prepare is '
                      'running.', path)
      continue
    if legacy or _is_abandoned(path):
      logging.warning('Removing %s: the staging folder of an interrupted prepare run.', path)
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
  return removed


def output_file_names(files: Any) -> List[str]:
  """The file names in a meta data 'files' entry, nested as deep as the writer nests it ({'train': name,
  'eval': {split: name}, ...}; {language: {split: name}} for a multilingual writer); None entries skipped."""
  if isinstance(files, Mapping):
    return [name for value in files.values() for name in output_file_names(value)]
  if isinstance(files, (list, tuple)):
    return [name for value in files for name in output_file_names(value)]
  return [files] if files else []


def commit_outputs(staging: str, output_dir: str, meta_data_file: str, files: Any, what: str = '') -> None:
  """Moves complete outputs from `staging` into `output_dir`: the files named in `files` (a meta data 'files'
  entry, see `output_file_names`), then the meta data file `meta_data_file`, last. `what` names the data in logs.

  The old meta data goes first, so that a crash while the files move leaves no meta data (the builder then says to
  run prepare) rather than old meta data beside new records. Files the old meta data listed and the new one does
  not (a test split no longer there) are removed.
  """
  meta_path = os.path.join(output_dir, meta_data_file)
  old_files: List[str] = []
  if tf.io.gfile.exists(meta_path):
    try:
      with tf.io.gfile.GFile(meta_path) as f:
        old = json.load(f)
      old_files = output_file_names(old.get('files') or {}) if isinstance(old, dict) else []
    except ValueError:  # damaged: it is replaced anyway
      pass
    tf.io.gfile.remove(meta_path)
  new_files = output_file_names(files)
  for name in new_files:
    tf.io.gfile.rename(os.path.join(staging, name), os.path.join(output_dir, name), overwrite=True)
  tf.io.gfile.rename(os.path.join(staging, meta_data_file), meta_path, overwrite=True)
  for name in sorted(set(old_files) - set(new_files)):
    if tf.io.gfile.exists(os.path.join(output_dir, name)):
      logging.info('Removing %s: the new %s data has no such file.', os.path.join(output_dir, name),
                   what or meta_data_file)
      tf.io.gfile.remove(os.path.join(output_dir, name))
