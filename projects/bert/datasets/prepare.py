r"""Writes the records the BERT builders read, with the official TF-Models writers.

  # Pretraining: runs official/nlp/data/create_pretraining_data.py; any of its flags may follow.
  python -m projects.bert.datasets.prepare pretraining --input_file=corpus/*.txt --vocab_file=vocab.txt \
      --output_file=data/pretraining/train-0.tfrecord,data/pretraining/train-1.tfrecord \
      --max_seq_length=128 --max_predictions_per_seq=20 --masked_lm_prob=0.15 --dupe_factor=5

  # GLUE: reads the official GLUE TSVs (GLUE_DIR/MRPC/train.tsv, ...) and writes, in OUTPUT_DIR,
  # {task}_train.tf_record, {task}_eval[_split].tf_record, {task}_test[_split].tf_record and {task}_meta_data.
  python -m projects.bert.datasets.prepare glue --task=mrpc --glue_dir=GLUE_DIR --vocab_file=vocab.txt \
      --output_dir=data/glue --max_seq_length=128          # --task=all: every task found in GLUE_DIR

The GLUE records come from the official writer (`classifier_data_lib.generate_tf_record_from_data_file` and
`file_based_convert_examples_to_features`) fed by `GlueTsvProcessor`, which reads the TSV layouts of the task
table (`glue_tasks.py`): upstream's `create_finetuning_data.py` reads GLUE only through TFDS (a download). The meta
data holds the fields upstream writes plus task, eval_splits, eval_data_sizes, test_splits, test_data_sizes,
label_list, do_lower_case, vocab_file and files (record file names relative to the meta data).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from projects.bert.datasets import glue_tasks, records
from projects.bert.datasets.glue_tasks import GlueTask, TsvLayout

PRETRAINING_MODULE = 'official.nlp.data.create_pretraining_data'


class PrepareError(ValueError):
  """A problem with the inputs of `prepare`, with what to do about it."""


def _require_file(path: str, what: str, fix: str) -> None:
  if not path:
    raise PrepareError(f'No {what} given: {fix}')
  if not tf.io.gfile.exists(path):
    raise PrepareError(f'The {what} {path!r} does not exist: {fix}')


# ------------------------------------------------------------------------------------------------------ GLUE


def find_tsv(glue_dir: str, layout: TsvLayout) -> Optional[str]:
  """The first existing candidate of `layout.paths` under `glue_dir`, also accepting `glue_dir` = the task folder."""
  for rel in layout.paths:
    for path in (os.path.join(glue_dir, rel), os.path.join(glue_dir, os.path.basename(rel))):
      if tf.io.gfile.exists(path):
        return path
  return None


def _make_processor(task: GlueTask, glue_dir: str):
  """A `classifier_data_lib.DataProcessor` for `task` that reads the official GLUE TSVs of `glue_dir`.

  The upstream processors read GLUE through TFDS; this one reads the files, so it is built here from the table.
  """
  from official.nlp.data import classifier_data_lib
  from official.nlp.tools import tokenization

  class GlueTsvProcessor(classifier_data_lib.DataProcessor):
    """Examples of one GLUE task from its TSVs; `eval_split` / `test_split` pick the dev and test files."""

    def __init__(self):
      super().__init__(process_text_fn=tokenization.convert_to_unicode)
      self.task = task
      self.is_regression = task.is_regression
      self.label_type = float if task.is_regression else None
      self.eval_split = task.main_eval_split
      self.test_split = task.main_test_split

    def get_train_examples(self, data_dir):
      return self.read_examples(task.train, 'train')

    def get_dev_examples(self, data_dir):
      return self.read_examples(task.eval_splits[self.eval_split], f'dev_{self.eval_split}')

    def get_test_examples(self, data_dir):
      return self.read_examples(task.test_splits[self.test_split], f'test_{self.test_split}')

    def get_labels(self):
      return list(task.labels) if task.labels else None

    def get_processor_name(self):  # pylint: disable=arguments-differ  (an instance method suffices)
      return task.processor_name

    def read_examples(self, layout: TsvLayout, set_type: str) -> List[Any]:
      path = find_tsv(glue_dir, layout)
      if path is None:
        raise PrepareError(f'GLUE {task.name}: none of {[os.path.join(glue_dir, p) for p in layout.paths]} exists. '
                           f'--glue_dir must be the GLUE data folder (with {layout.paths[0].split("/")[0]}/ in it).')
      with tf.io.gfile.GFile(path, 'r') as f:
        rows = list(csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE))
      if layout.header:
        rows = rows[1:]
      examples, skipped = [], 0
      for line_no, row in enumerate(rows, start=2 if layout.header else 1):
        if not row or len(row) < max(layout.min_columns, 1):
          skipped += 1
          continue
        try:
          text_a = self.process_text_fn(row[layout.text_a])
          text_b = self.process_text_fn(row[layout.text_b]) if layout.text_b is not None else None
        except IndexError:
          raise PrepareError(f'{path}:{line_no} has {len(row)} columns; GLUE {task.name} has its text in columns '
                             f'{layout.text_a}{"" if layout.text_b is None else f" and {layout.text_b}"}.') from None
        label = self._label(row, layout, path, line_no)
        example_id = None
        if layout.index is not None and row[layout.index].strip().lstrip('-').isdigit():
          example_id = int(row[layout.index])
        examples.append(classifier_data_lib.InputExample(guid=f'{set_type}-{len(examples)}', text_a=text_a,
                                                         text_b=text_b, label=label, example_id=example_id))
      if skipped:
        logging.warning('%s: skipped %d malformed lines.', path, skipped)
      logging.info('%s: %d examples.', path, len(examples))
      return examples

    def _label(self, row: Sequence[str], layout: TsvLayout, path: str, line_no: int) -> Any:
      if layout.label is None:  # unlabelled test data: a placeholder label, as upstream writes
        return 0.0 if task.is_regression else task.labels[0]
      value = row[layout.label].strip()
      if task.is_regression:
        try:
          return float(value)
        except ValueError:
          raise PrepareError(f'{path}:{line_no}: the score {value!r} is not a number.') from None
      if value not in task.labels:
        raise PrepareError(f'{path}:{line_no}: label {value!r} is not one of GLUE {task.name} labels '
                           f'{list(task.labels)}.')
      return value

  return GlueTsvProcessor()


def prepare_glue(task_name: str, glue_dir: str, vocab_file: str, output_dir: str, max_seq_length: int = 128,
                 do_lower_case: bool = True) -> Dict[str, Any]:
  """Writes one task's records and meta data into `output_dir`; returns the meta data (also written as JSON).

  Train and every eval split are required; test splits are written when their TSV exists (MNLI's 'ax' when
  diagnostic/diagnostic.tsv or AX.tsv is there).
  """
  from official.nlp.data import classifier_data_lib
  from official.nlp.tools import tokenization

  task = glue_tasks.get_task(task_name)
  _require_file(vocab_file, 'vocab file', 'pass --vocab_file=PATH/vocab.txt (the WordPiece vocabulary of the '
                'model you fine-tune, e.g. the vocab.txt next to a BERT checkpoint).')
  if not glue_dir or not tf.io.gfile.isdir(glue_dir):
    raise PrepareError(f'The GLUE directory {glue_dir!r} does not exist: pass --glue_dir=DIR, the folder with the '
                       f'GLUE task folders (CoLA/, SST-2/, MRPC/, ... as the GLUE download unpacks them).')
  for layout in [task.train, *task.eval_splits.values()]:
    if find_tsv(glue_dir, layout) is None:
      raise PrepareError(f'GLUE {task.name}: {os.path.join(glue_dir, layout.paths[0])} does not exist. --glue_dir '
                         f'must hold {layout.paths[0].split("/")[0]}/ with the official GLUE TSV files.')
  test_splits = [s for s, layout in task.test_splits.items() if find_tsv(glue_dir, layout) is not None]
  for split in task.test_splits:
    if split not in test_splits:
      logging.warning('GLUE %s: no test file for split %r (%s); not written.', task.name, split,
                      task.test_splits[split].paths)

  tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
  processor = _make_processor(task, glue_dir)
  tf.io.gfile.makedirs(output_dir)
  out = lambda name: os.path.join(output_dir, name)
  files: Dict[str, Any] = {'train': task.record_file('train'), 'eval': {}, 'test': {}}
  files['eval'] = {s: task.record_file('eval', s) for s in task.eval_splits}
  files['test'] = {s: task.record_file('test', s) for s in test_splits}

  main_test = task.main_test_split if task.main_test_split in test_splits else None
  meta = classifier_data_lib.generate_tf_record_from_data_file(
      processor, glue_dir, tokenizer, train_data_output_path=out(files['train']),
      eval_data_output_path=out(files['eval'][task.main_eval_split]),
      test_data_output_path=out(files['test'][main_test]) if main_test else None, max_seq_length=max_seq_length)
  eval_sizes = {task.main_eval_split: meta['eval_data_size']}
  test_sizes = {main_test: meta['test_data_size']} if main_test else {}

  label_type = float if task.is_regression else None
  for kind, splits, sizes, read in (
      ('eval', [s for s in task.eval_splits if s != task.main_eval_split], eval_sizes,
       lambda s: processor.read_examples(task.eval_splits[s], f'dev_{s}')),
      ('test', [s for s in test_splits if s != main_test], test_sizes,
       lambda s: processor.read_examples(task.test_splits[s], f'test_{s}'))):
    for split in splits:  # the writer handles one eval / test file; the other splits go through its converter
      examples = read(split)
      classifier_data_lib.file_based_convert_examples_to_features(
          examples, processor.get_labels(), max_seq_length, tokenizer, out(files[kind][split]), label_type,
          processor.featurize_example)
      sizes[split] = len(examples)

  meta.update({
      'task': task.name,
      'eval_splits': list(task.eval_splits),
      'eval_data_sizes': {s: eval_sizes[s] for s in task.eval_splits},
      'test_splits': [s for s in task.test_splits if s in test_splits],
      'test_data_sizes': {s: test_sizes[s] for s in task.test_splits if s in test_splits},
      'label_list': list(task.labels) if task.labels else None,
      'do_lower_case': bool(do_lower_case),
      'vocab_file': vocab_file,
      'files': files,
  })
  with tf.io.gfile.GFile(out(task.meta_data_file), 'w') as f:  # formatted as create_finetuning_data.py does
    f.write(json.dumps(meta, indent=4) + '\n')
  logging.info('GLUE %s: wrote %s', task.name, out(task.meta_data_file))
  return meta


def available_tasks(glue_dir: str) -> List[str]:
  """Tasks whose train TSV is under `glue_dir`."""
  return [name for name, task in glue_tasks.GLUE_TASKS.items()
          if tf.io.gfile.exists(os.path.join(glue_dir, task.train.paths[0]))]


# ------------------------------------------------------------------------------------------------ pretraining


def _flag_value(args: Sequence[str], name: str) -> Optional[str]:
  value = None
  for i, arg in enumerate(args):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and i + 1 < len(args) and not args[i + 1].startswith('--'):
      value = args[i + 1]
  return value


def prepare_pretraining(args: Sequence[str]) -> Dict[str, int]:
  """Runs create_pretraining_data.py with `args` (its flags) and returns {output file: number of records}.

  The inputs are checked first, so a wrong path fails here with the fix rather than deep in the script.
  """
  args = list(args)
  input_spec, vocab, output_spec = (_flag_value(args, n) for n in ('input_file', 'vocab_file', 'output_file'))
  _require_file(vocab or '', 'vocab file', 'pass --vocab_file=PATH/vocab.txt (the WordPiece vocabulary, one '
                'token a line).')
  if not input_spec:
    raise PrepareError('No --input_file given: pass the raw text (one sentence a line, documents separated by '
                       'blank lines) as a file, glob pattern or comma-separated list.')
  for pattern in input_spec.split(','):
    if not tf.io.gfile.glob(pattern):
      raise PrepareError(f'--input_file {pattern!r} matches no files: check the path.')
  if not output_spec:
    raise PrepareError('No --output_file given: pass the record file(s) to write (comma-separated for several).')
  outputs = [p for p in output_spec.split(',') if p]
  for path in outputs:
    if os.path.dirname(path):
      tf.io.gfile.makedirs(os.path.dirname(path))
  cmd = [sys.executable, '-m', PRETRAINING_MODULE, *args]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f'{PRETRAINING_MODULE} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')
  return {path: records.count_records(path, records.compression_of(path)) for path in outputs}


# ------------------------------------------------------------------------------------------------------- CLI


def _bool(value: str) -> bool:
  if value.lower() in ('1', 'true', 'yes', 't', 'y'):
    return True
  if value.lower() in ('0', 'false', 'no', 'f', 'n'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {value!r}')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m projects.bert.datasets.prepare',
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  sub.add_parser('pretraining', help='run create_pretraining_data.py; its flags follow (--input_file=... '
                 '--vocab_file=... --output_file=... --max_seq_length=...)', add_help=False)
  glue = sub.add_parser('glue', help='GLUE TSVs -> records and meta data')
  glue.add_argument('--task', required=True, help=f'one of {", ".join(glue_tasks.task_names())}, or "all"')
  glue.add_argument('--glue_dir', required=True, help='folder holding CoLA/, SST-2/, MRPC/, ... (GLUE layout)')
  glue.add_argument('--vocab_file', required=True, help='WordPiece vocab.txt of the model to fine-tune')
  glue.add_argument('--output_dir', required=True)
  glue.add_argument('--max_seq_length', type=int, default=128)
  glue.add_argument('--do_lower_case', type=_bool, default=True, help='true for uncased models')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  logging.set_verbosity(logging.INFO)
  if argv[:1] == ['pretraining']:
    if {'-h', '--help', '--helpshort'} & set(argv[1:]):
      print('usage: python -m projects.bert.datasets.prepare pretraining --input_file=... --vocab_file=... '
            f'--output_file=... [flags of {PRETRAINING_MODULE}]:')
      subprocess.run([sys.executable, '-m', PRETRAINING_MODULE, '--helpshort'], check=False)
      return 0
    try:
      counts = prepare_pretraining(argv[1:])
    except PrepareError as e:
      raise SystemExit(f'prepare pretraining: error: {e}') from None
    for path, n in counts.items():
      print(f'{path}: {n} records')
    return 0
  args = _parser().parse_args(argv)
  tasks = [args.task]
  if args.task.lower() == 'all':
    tasks = available_tasks(args.glue_dir) if tf.io.gfile.isdir(args.glue_dir) else []
    if not tasks:
      raise SystemExit(f'prepare glue: error: no GLUE task folders under {args.glue_dir!r}; pass --glue_dir=DIR '
                       f'with CoLA/, SST-2/, MRPC/, ... in it.')
  for name in tasks:
    try:
      meta = prepare_glue(name, args.glue_dir, args.vocab_file, args.output_dir, args.max_seq_length,
                          args.do_lower_case)
    except ValueError as e:  # PrepareError and unknown tasks: the message says what to do
      raise SystemExit(f'prepare glue: error: {e}') from None
    print(f'{meta["task"]}: train {meta["train_data_size"]}, eval {meta["eval_data_sizes"]}, '
          f'test {meta["test_data_sizes"]} -> {args.output_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
