"""`prepare glue`: the official GLUE TSVs -> the records and meta data that `bert_glue` reads.

  python -m projects.bert.datasets.prepare glue --task=mrpc --glue_dir=GLUE_DIR --vocab_file=vocab.txt \
      --output_dir=data/glue --max_seq_length=128          # --task=all: every task found in GLUE_DIR

writes, in OUTPUT_DIR, {task}_train.tf_record, {task}_eval[_split].tf_record, {task}_test[_split].tf_record and
{task}_meta_data. The records come from the official writer (`classifier_data_lib.generate_tf_record_from_data_file`
and `file_based_convert_examples_to_features`) fed by `GlueTsvProcessor`, which reads the TSV layouts of the task
table (`tasks/glue.py`): upstream's `create_finetuning_data.py` reads GLUE only through TFDS (a download). The meta
data holds the fields upstream writes plus task, eval_splits, eval_data_sizes, test_splits, test_data_sizes,
label_list, do_lower_case, vocab_file and files (record file names relative to the meta data).

Everything is written into a staging folder first (`writing.py`) and moved into place when complete, the meta data
last: an error, Ctrl-C or a full disk before that leaves the previous data as it was.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from projects.bert.datasets import writing
from projects.bert.datasets.writing import PrepareError
from projects.bert.tasks import glue as glue_tasks
from projects.bert.tasks.glue import GlueTask, TsvLayout


def find_tsv(glue_dir: str, layout: TsvLayout) -> Optional[str]:
  """The first existing candidate of `layout.paths` under `glue_dir`, also accepting `glue_dir` = the task folder."""
  for rel in layout.paths:
    for path in (os.path.join(glue_dir, rel), os.path.join(glue_dir, os.path.basename(rel))):
      if tf.io.gfile.exists(path):
        return path
  return None


def _utf8_lines(path: str) -> List[str]:
  """The lines of a text file (split on newlines only: GLUE text holds other line-break characters), each checked
  to be UTF-8; PrepareError naming the line and byte otherwise."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  lines = []
  for line_no, raw in enumerate(data.split(b'\n'), start=1):
    try:
      lines.append(raw.decode('utf-8') + '\n')
    except UnicodeDecodeError as e:
      raise PrepareError(f'{path}:{line_no}: byte {e.start + 1} ({raw[e.start:e.start + 1]!r}) is not UTF-8 '
                         f'({e.reason}). GLUE files are UTF-8: re-download the file, or convert it (e.g. `iconv -f '
                         f'latin1 -t utf-8`).') from None
  if lines and lines[-1] == '\n':
    lines.pop()  # the empty piece after the final newline
  return lines


def _column(row: Sequence[str], index: int, what: str, path: str, line_no: int, task: GlueTask) -> str:
  """`row[index]`, or PrepareError naming the line when the row is too short."""
  try:
    return row[index]
  except IndexError:
    raise PrepareError(f'{path}:{line_no} has {len(row)} tab-separated columns, but GLUE {task.name} has its {what} '
                       f'in column {index + 1 if index >= 0 else len(row) + index + 1}: the line is cut short (or a '
                       f'tab is missing). Fix or remove the line, or re-download the file.') from None


def make_processor(task: GlueTask, glue_dir: str):
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
      rows = list(csv.reader(_utf8_lines(path), delimiter='\t', quoting=csv.QUOTE_NONE))
      if layout.header:
        rows = rows[1:]
      examples, skipped = [], 0
      for line_no, row in enumerate(rows, start=2 if layout.header else 1):
        if not row or len(row) < max(layout.min_columns, 1):
          skipped += 1
          continue
        column = lambda i, what: _column(row, i, what, path, line_no, task)  # noqa: E731
        text_a = self.process_text_fn(column(layout.text_a, 'first text'))
        text_b = self.process_text_fn(column(layout.text_b, 'second text')) if layout.text_b is not None else None
        label = self._label(column(layout.label, 'label') if layout.label is not None else None, path, line_no)
        example_id = None
        if layout.index is not None and column(layout.index, 'index').strip().lstrip('-').isdigit():
          example_id = int(row[layout.index])
        examples.append(classifier_data_lib.InputExample(guid=f'{set_type}-{len(examples)}', text_a=text_a,
                                                         text_b=text_b, label=label, example_id=example_id))
      if skipped:
        logging.warning('%s: skipped %d malformed lines.', path, skipped)
      logging.info('%s: %d examples.', path, len(examples))
      return examples

    def _label(self, value: Optional[str], path: str, line_no: int) -> Any:
      if value is None:  # unlabelled test data: a placeholder label, as upstream writes
        return 0.0 if task.is_regression else task.labels[0]
      value = value.strip()
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
  from official.nlp.tools import tokenization

  task = glue_tasks.get_task(task_name)
  writing.check_vocab(vocab_file, writing.FINETUNING_TOKENS)
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
  processor = make_processor(task, glue_dir)
  tf.io.gfile.makedirs(output_dir)
  # Everything is written into a staging folder first; the old records and meta data stay untouched until the new
  # ones are complete (an error or Ctrl-C before that changes nothing). Killed runs' staging folders go.
  writing.remove_abandoned_staging(output_dir, task.name)
  staging = writing.Staging(output_dir, task.name)
  try:
    try:
      meta = _write_glue(task, processor, tokenizer, glue_dir, staging.path, test_splits, max_seq_length,
                         do_lower_case, vocab_file)
    except Exception as e:  # pylint: disable=broad-except  (a full disk arrives wrapped by TensorFlow or raw)
      full = writing.disk_full_error(e, output_dir, staging.path)
      if full is None:
        raise
      raise full from e
    writing.commit_outputs(staging.path, output_dir, task.meta_data_file, meta['files'], f'GLUE {task.name}')
  finally:
    staging.remove()
  logging.info('GLUE %s: wrote %s', task.name, os.path.join(output_dir, task.meta_data_file))
  return meta


def _write_glue(task: GlueTask, processor: Any, tokenizer: Any, glue_dir: str, out_dir: str, test_splits: List[str],
                max_seq_length: int, do_lower_case: bool, vocab_file: str) -> Dict[str, Any]:
  """Writes the task's records and meta data into `out_dir`; returns the meta data."""
  from official.nlp.data import classifier_data_lib

  out = lambda name: os.path.join(out_dir, name)  # noqa: E731
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
  return meta


def available_tasks(glue_dir: str) -> List[str]:
  """Tasks whose train TSV is under `glue_dir`."""
  return [name for name, task in glue_tasks.GLUE_TASKS.items()
          if tf.io.gfile.exists(os.path.join(glue_dir, task.train.paths[0]))]
