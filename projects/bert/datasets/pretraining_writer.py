r"""`prepare pretraining`: runs TF-Models' create_pretraining_data.py (any of its flags may follow) and moves the
record files it writes into place as one set.

  python -m projects.bert.datasets.prepare pretraining --input_file=corpus/*.txt --vocab_file=vocab.txt \
      --output_file=data/pretraining/train-0.tfrecord,data/pretraining/train-1.tfrecord \
      --max_seq_length=128 --max_predictions_per_seq=20 --masked_lm_prob=0.15 --dupe_factor=5

The inputs are checked first (input files, the vocabulary's special tokens), so a wrong path fails here with the
fix rather than deep in the script. The script runs as a child process that ends with this one
(`child_process.py`) and writes into a staging folder beside the outputs (`writing.py`; a new run removes those
that killed runs left). Each output folder's `.prepare_manifest.json` (`records.MANIFEST`) lists the sets of files
written together. A run marks its set `pending` there before the first file moves into place and `complete` after
the last one has moved and the files of the earlier set it replaces are gone, so a kill between the renames (old
and new shards side by side) is refused by the `bert_pretraining` builder, and a rerun of the command redoes it.
Crash points: before `pending`: the previous files as they were; between the renames: the set refused until a
rerun; after `complete`: the new set.

`--sentence_order=true` (ours; default false) writes ALBERT's sentence-order prediction (SOP) pairs instead of
next-sentence ones: the child is then `sop_pretraining_writer.py` (upstream's module with only the pair creation
replaced; same flags, same feature names, `next_sentence_labels` 1 = swapped). The manifest's entry of each set
says which pair task its records hold (`pair_task`: 'nsp' or 'sop'; an entry without one is NSP), which the
`bert_pretraining` builder checks against `config.dataset.pair_task`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from core import atomic
from projects.bert.datasets import child_process, records, writing
from projects.bert.datasets.writing import PrepareError

MODULE = 'official.nlp.data.create_pretraining_data'
SOP_MODULE = 'projects.bert.datasets.sop_pretraining_writer'  # upstream's, with ALBERT's sentence-order pairs
SENTENCE_ORDER_FLAG = 'sentence_order'  # ours: removed from the flags the child gets
_STAGING_KIND = 'pretraining'


def _flag_value(args: Sequence[str], name: str) -> Optional[str]:
  value = None
  for i, arg in enumerate(args):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and i + 1 < len(args) and not args[i + 1].startswith('--'):
      value = args[i + 1]
  return value


def _sentence_order(args: Sequence[str]) -> bool:
  """Whether `args` ask for sentence-order pairs: --sentence_order=true (or a bare --sentence_order; absl's
  --nosentence_order is false)."""
  value = _flag_value(args, SENTENCE_ORDER_FLAG)
  if value is None:
    return f'--{SENTENCE_ORDER_FLAG}' in args and f'--no{SENTENCE_ORDER_FLAG}' not in args
  try:
    return writing.parse_bool(value)
  except argparse.ArgumentTypeError:
    raise PrepareError(f'--{SENTENCE_ORDER_FLAG}={value}: expected true (sentence-order pairs, ALBERT\'s SOP) or '
                       f'false (next-sentence pairs, the default).') from None


def prepare_pretraining(args: Sequence[str]) -> Dict[str, int]:
  """Runs create_pretraining_data.py with `args` (its flags) and returns {output file: number of records}.

  `--sentence_order=true` among `args` runs `SOP_MODULE` instead (see the module docstring).
  """
  args = list(args)
  pair_task = 'sop' if _sentence_order(args) else 'nsp'
  module = SOP_MODULE if pair_task == 'sop' else MODULE
  input_spec, vocab, output_spec = (_flag_value(args, n) for n in ('input_file', 'vocab_file', 'output_file'))
  writing.check_vocab(vocab or '', writing.PRETRAINING_TOKENS)
  if not input_spec:
    raise PrepareError('No --input_file given: pass the raw text (one sentence a line, documents separated by '
                       'blank lines) as a file, glob pattern or comma-separated list.')
  for pattern in input_spec.split(','):
    if not tf.io.gfile.glob(pattern):
      raise PrepareError(f'--input_file {pattern!r} matches no files: check the path.')
  if not output_spec:
    raise PrepareError('No --output_file given: pass the record file(s) to write (comma-separated for several).')
  outputs = [p for p in output_spec.split(',') if p]
  folders = sorted({os.path.dirname(p) or '.' for p in outputs})
  for folder in folders:
    tf.io.gfile.makedirs(folder)
    writing.remove_abandoned_staging(folder, _STAGING_KIND)
  stagings = {folder: writing.Staging(folder, _STAGING_KIND) for folder in folders}
  staged = {p: os.path.join(stagings[os.path.dirname(p) or '.'].path, os.path.basename(p)) for p in outputs}
  if len(set(staged.values())) < len(staged):
    raise PrepareError(f'--output_file names a file twice: {output_spec}')
  try:
    child_args = [a for a in _without_flag(_with_flag(args, 'output_file', ','.join(staged.values())),
                                           SENTENCE_ORDER_FLAG) if a != f'--no{SENTENCE_ORDER_FLAG}']
    proc = child_process.run_child([sys.executable, '-m', module, *child_args])
    if proc.returncode:
      raise RuntimeError(f'{module} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')
    _move_into_place(outputs, staged, args, pair_task)
  finally:
    for staging in stagings.values():
      staging.remove()
  return {path: records.count_records(path, records.compression_of(path)) for path in outputs}


def _rename(src: str, dst: str) -> None:
  if '://' in dst:
    tf.io.gfile.rename(src, dst, overwrite=True)
  else:
    os.replace(src, dst)  # atomic on a POSIX file system


def _move_into_place(outputs: Sequence[str], staged: Dict[str, str], args: Sequence[str],
                     pair_task: str = 'nsp') -> None:
  """Renames the complete `staged` files onto `outputs` as one set (see the module docstring); the set's manifest
  entry records its `pair_task` ('nsp' or 'sop').

  A rerun with fewer shards (train-0..2 then train-0..1) would otherwise leave train-2 for a glob to read: the
  files an earlier run wrote together with any of `outputs`, and this run does not write, are removed. Files of
  unrelated runs into the same folder (one run per input shard) are kept.
  """
  by_folder: Dict[str, List[str]] = {}
  for path in outputs:
    by_folder.setdefault(os.path.dirname(path) or '.', []).append(os.path.basename(path))
  sets: Dict[str, Dict[str, Any]] = {}
  for folder, names in by_folder.items():
    kept, replaces = [], set()
    for run in records.read_manifest(folder):
      if set(run.get('outputs', [])) & set(names):  # an earlier set of these files (a pending one is redone)
        if run.get('state', 'complete') != 'complete':
          logging.warning('Redoing the record set that an interrupted prepare left pending in %s.', folder)
        replaces |= set(run.get('outputs', [])) | set(run.get('replaces', []))
      else:
        kept.append(run)
    sets[folder] = {'kept': kept, 'names': sorted(names), 'replaces': sorted(replaces - set(names))}
    _write_manifest(folder, kept + [{'outputs': sorted(names), 'args': list(args), 'state': 'pending',
                                     'replaces': sets[folder]['replaces'], 'pair_task': pair_task}])
  for path in outputs:
    _rename(staged[path], path)
  for folder, entry in sets.items():
    for name in entry['replaces']:
      stale = os.path.join(folder, name)
      if tf.io.gfile.exists(stale):
        logging.warning('Removing %s: an earlier run wrote it together with files this run replaced.', stale)
        tf.io.gfile.remove(stale)
    _write_manifest(folder, entry['kept'] + [{'outputs': entry['names'], 'args': list(args), 'state': 'complete',
                                              'pair_task': pair_task}])


def _write_manifest(folder: str, runs: List[Dict[str, Any]]) -> None:
  atomic.write_json(os.path.join(folder, records.MANIFEST), {'runs': runs})


def _with_flag(args: Sequence[str], name: str, value: str) -> List[str]:
  """`args` with every occurrence of --name (as --name=v or --name v) set to `value`."""
  out, skip = [], False
  for i, arg in enumerate(args):
    if skip:
      skip = False
      continue
    if arg.startswith(f'--{name}='):
      arg = f'--{name}={value}'
    elif arg == f'--{name}' and i + 1 < len(args):
      arg, skip = f'--{name}={value}', True
    out.append(arg)
  return out


def _without_flag(args: Sequence[str], name: str) -> List[str]:
  """`args` without --name (as --name=v, or --name v when v is not a flag)."""
  out, skip = [], False
  for i, arg in enumerate(args):
    if skip:
      skip = False
    elif arg == f'--{name}':
      skip = i + 1 < len(args) and not args[i + 1].startswith('--')
    elif not arg.startswith(f'--{name}='):
      out.append(arg)
  return out
