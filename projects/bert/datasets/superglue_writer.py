r"""`prepare superglue`: the official SuperGLUE jsonl files -> records and meta data per task, as `prepare glue` writes.

  python -m projects.bert.datasets.prepare superglue --task=boolq --superglue_dir=SUPERGLUE_DIR \
      --vocab_file=vocab.txt --output_dir=data/superglue --max_seq_length=128   # --task=all: every task found

(`--help` lists the flags and their defaults.) Files in OUTPUT_DIR, named as
GLUE's: {task}_train.tf_record, {task}_eval.tf_record (the 'validation' split, val.jsonl), {task}_test.tf_record
and {task}_meta_data. The diagnostics (axb, axg) have only their labelled 'test' split. Use an output folder of its
own: SuperGLUE's rte would otherwise replace GLUE's rte files (a GLUE meta data file in the way is refused).

The records (their features per task kind, the expansion of examples into rows, truncation and the fidelity to
Model Garden's processors) are described and built in superglue_rows.py. The meta data holds, per split, the
examples (`example_counts`) and the rows (`row_counts`, = the records; `*_data_size(s)` count rows too, as the
builders count records).

Processor types in the meta data: Model Garden's names for BoolQ, CB, RTE (RTESuperGLUE) and AX-g (AXg); WiC, COPA,
MultiRC, ReCoRD, WSC and AXb for the others.

Everything is written into a staging folder inside the output folder and moved into place when complete, the meta
data last (`writing.commit_outputs`, as GLUE's): an error, Ctrl-C or a full disk leaves the previous files as they
were.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any, Dict, List, Sequence

from core import logs  # noqa: F401  (before TensorFlow loads: it sets TensorFlow's C++ log level)

import tensorflow as tf
from absl import logging

from core import errors
from projects.bert.datasets import superglue_rows
from projects.bert.datasets import writing
from projects.bert.datasets.writing import PrepareError
from projects.bert.tasks import superglue as sg

BENCHMARK = 'superglue'  # in the meta data: tells it from GLUE's of the same task name (rte)
EVAL_SPLIT = sg.VALIDATION
PROCESSOR_TYPES = {'boolq': 'BoolQ', 'cb': 'CB', 'rte': 'RTESuperGLUE', 'axg': 'AXg', 'axb': 'AXb', 'wic': 'WiC',
                   'copa': 'COPA', 'multirc': 'MultiRC', 'record': 'ReCoRD', 'wsc': 'WSC'}


@dataclasses.dataclass(frozen=True)
class RecordNames:
  """File names of one task's outputs, as GLUE's (`GlueTask.record_file` / `meta_data_file`)."""

  name: str

  def record_file(self, kind: str) -> str:
    """kind: 'train', 'eval' or 'test'."""
    return f'{self.name}_{kind}.tf_record'

  @property
  def meta_data_file(self) -> str:
    return f'{self.name}_meta_data'



# ------------------------------------------------------------------------------------------------- prepare


def _split_kind(split: str) -> str:
  """The GLUE file kind of a split: train, eval (validation) or test."""
  return {sg.TRAIN: 'train', sg.VALIDATION: 'eval', sg.TEST: 'test'}[split]


def available_tasks(superglue_dir: str) -> List[str]:
  """Tasks whose first file (train.jsonl; a diagnostic's only one) is under `superglue_dir`."""
  return [name for name, t in sg.SUPERGLUE_TASKS.items()
          if os.path.isfile(os.path.join(superglue_dir, t.data_file(t.splits[0])))]


def _check_not_glue(output_dir: str, names: RecordNames) -> None:
  meta_path = os.path.join(output_dir, names.meta_data_file)
  if not tf.io.gfile.exists(meta_path):
    return
  try:
    with tf.io.gfile.GFile(meta_path) as f:
      old = json.load(f)
  except ValueError:  # damaged: it is replaced anyway
    return
  if isinstance(old, dict) and old.get('benchmark') != BENCHMARK:
    raise PrepareError(f'{meta_path} is the meta data of GLUE {names.name} (or of create_finetuning_data.py), not '
                       f'of SuperGLUE; writing here would replace those records. Pass another --output_dir (e.g. '
                       f'data/superglue) for the SuperGLUE records.')


def prepare_superglue(task_name: str, superglue_dir: str, vocab_file: str, output_dir: str,
                      max_seq_length: int = 128, do_lower_case: bool = True) -> Dict[str, Any]:
  """Writes one task's records and meta data into `output_dir` (see the module docstring); returns the meta data
  (also written as JSON, formatted as GLUE's).

  train.jsonl and val.jsonl are required (a diagnostic's one file); test.jsonl is written when it exists.
  """
  task = sg.get_task(task_name)
  writing.check_vocab(vocab_file, writing.FINETUNING_TOKENS)
  if not superglue_dir or not os.path.isdir(superglue_dir):
    raise PrepareError(f'The SuperGLUE directory {superglue_dir!r} does not exist: pass --superglue_dir=DIR, the '
                       f'official download unzipped (BoolQ/, CB/, ..., AX-b/, AX-g/ in it).')
  splits = [s for s in task.splits if s != sg.TEST or task.diagnostic
            or os.path.isfile(os.path.join(superglue_dir, task.data_file(s)))]
  if sg.TEST not in splits:
    logging.warning('SuperGLUE %s: no %s; its test records are not written.', task.official_name,
                    os.path.join(superglue_dir, task.data_file(sg.TEST)))
  encoder = superglue_rows.Encoder(vocab_file, do_lower_case, max_seq_length)
  names = RecordNames(task.name)
  tf.io.gfile.makedirs(output_dir)
  _check_not_glue(output_dir, names)
  kind = f'{BENCHMARK}-{task.name}'  # staging .prepare-superglue-rte-*: never taken for GLUE rte's
  writing.remove_abandoned_staging(output_dir, kind)  # killed runs' only: a concurrent run's stays
  staging = writing.Staging(output_dir, kind)
  try:
    try:
      meta = _write_task(task, names, superglue_dir, splits, encoder, staging.path, do_lower_case, vocab_file)
    except Exception as e:  # pylint: disable=broad-except  (a full disk arrives wrapped by TensorFlow or raw)
      full = writing.disk_full_error(e, output_dir, staging.path)
      if full is None:
        raise
      raise full from e
    writing.commit_outputs(staging.path, output_dir, names.meta_data_file, meta['files'],
                           f'SuperGLUE {task.official_name}')
  finally:
    staging.remove()
  logging.info('SuperGLUE %s: wrote %s', task.official_name, os.path.join(output_dir, names.meta_data_file))
  return meta


def _write_task(task: sg.SuperGlueTask, names: RecordNames, superglue_dir: str, splits: Sequence[str],
                encoder: superglue_rows.Encoder, out_dir: str, do_lower_case: bool, vocab_file: str) -> Dict[str, Any]:
  files: Dict[str, Any] = {'train': None, 'eval': {}, 'test': {}}
  example_counts, row_counts = {}, {}
  for split in splits:
    kind = _split_kind(split)
    n_examples, rows = superglue_rows.task_rows(task.name, superglue_dir, split, encoder)
    n_rows = superglue_rows.write_rows(os.path.join(out_dir, names.record_file(kind)), rows)
    if kind == 'train':
      files['train'] = names.record_file(kind)
    else:
      files[kind][split] = names.record_file(kind)
    example_counts[split], row_counts[split] = n_examples, n_rows
  eval_splits = [s for s in splits if _split_kind(s) == 'eval']
  test_splits = [s for s in splits if _split_kind(s) == 'test']
  labelled = [s for s in splits if s != sg.TEST or task.diagnostic]
  meta: Dict[str, Any] = {  # Model Garden's fields first (generate_tf_record_from_data_file), then GLUE's
      'processor_type': PROCESSOR_TYPES[task.name],
      'train_data_size': row_counts.get(sg.TRAIN, 0),
      'max_seq_length': encoder.max_seq_length,
      'task_type': 'bert_classification',
      'num_labels': 2 if task.kind in superglue_rows.ROW_BINARY_KINDS else task.num_labels,
  }
  if test_splits:
    meta['test_data_size'] = row_counts[sg.TEST]
  if eval_splits:
    meta['eval_data_size'] = row_counts[EVAL_SPLIT]
  meta.update({
      'benchmark': BENCHMARK,
      'task': task.name,
      'official_name': task.official_name,
      'task_kind': task.kind,
      'eval_splits': eval_splits,
      'eval_data_sizes': {s: row_counts[s] for s in eval_splits},
      'test_splits': test_splits,
      'test_data_sizes': {s: row_counts[s] for s in test_splits},
      'label_list': [0, 1] if task.kind in superglue_rows.ROW_BINARY_KINDS else list(task.labels),
      'labelled_splits': labelled,
      'example_counts': example_counts,
      'row_counts': row_counts,
      'features': list(superglue_rows.BASE_FEATURES + superglue_rows.EXTRA_FEATURES[task.kind]),
      'do_lower_case': bool(do_lower_case),
      'vocab_file': vocab_file,
      'superglue_dir': os.path.abspath(superglue_dir),  # the source, for what scoring reads from it (ReCoRD's texts)
      'files': files,
  })
  with tf.io.gfile.GFile(os.path.join(out_dir, names.meta_data_file), 'w') as f:  # as prepare glue formats it
    f.write(json.dumps(meta, indent=4) + '\n')
  return meta


# ------------------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """The flags of `prepare superglue` (prepare.py's subcommand), on `p`."""
  p.add_argument('--task', required=True,
                 help=f'one of {", ".join(sg.task_names())}, or "all": every task found in --superglue_dir')
  p.add_argument('--superglue_dir', required=True, help='the official download unzipped: BoolQ/, CB/, ..., AX-g/')
  p.add_argument('--vocab_file', required=True, help='WordPiece vocab.txt of the model to fine-tune')
  p.add_argument('--output_dir', required=True, help='a folder of its own (not GLUE\'s: rte would clash)')
  p.add_argument('--max_seq_length', type=int, default=128,
                 help='tokens per row, [CLS] and [SEP]s included; passages are cut to fit (default: %(default)s)')
  p.add_argument('--do_lower_case', type=writing.parse_bool, default=True,
                 help='true for uncased models (default: %(default)s)')
  return p


def run(args: argparse.Namespace) -> int:
  """`prepare superglue` with the parsed flags of `add_arguments`. Prints one line per task written."""
  tasks = [args.task]
  if args.task.lower() == 'all':
    tasks = available_tasks(args.superglue_dir) if os.path.isdir(args.superglue_dir) else []
    if not tasks:
      raise SystemExit(f'prepare superglue: error: no SuperGLUE task files under {args.superglue_dir!r}; pass '
                       f'--superglue_dir=DIR with BoolQ/train.jsonl, CB/train.jsonl, ... in it.')
  for name in tasks:
    try:
      meta = prepare_superglue(name, args.superglue_dir, args.vocab_file, args.output_dir, args.max_seq_length,
                               args.do_lower_case)
    except (ValueError, errors.UserError) as e:  # PrepareError, the reader's DataError / MissingFileError, tasks
      raise SystemExit(f'prepare superglue: error: {e}') from None
    print(f'{meta["task"]}: examples {meta["example_counts"]}, rows {meta["row_counts"]} -> {args.output_dir}')
  return 0
