r"""`prepare`: writes the records the BERT builders read, one writer per benchmark, with the official TF-Models
writers.

  # Pretraining (pretraining_writer.py): runs official/nlp/data/create_pretraining_data.py; its flags follow.
  python -m projects.bert.datasets.prepare pretraining --input_file=corpus/*.txt --vocab_file=vocab.txt \
      --output_file=data/pretraining/train-0.tfrecord,data/pretraining/train-1.tfrecord \
      --max_seq_length=128 --max_predictions_per_seq=20 --masked_lm_prob=0.15 --dupe_factor=5
  # ... --sentence_order=true: ALBERT's sentence-order pairs (SOP) instead of next-sentence ones, for
  # pretrain.py:SIZE,sop (sop_pretraining_writer.py; same flags and features, next_sentence_labels 1 = swapped).

  # GLUE (glue_writer.py): reads the official GLUE TSVs (GLUE_DIR/MRPC/train.tsv, ...) and writes, in OUTPUT_DIR,
  # {task}_train.tf_record, {task}_eval[_split].tf_record, {task}_test[_split].tf_record and {task}_meta_data.
  python -m projects.bert.datasets.prepare glue --task=mrpc --glue_dir=GLUE_DIR --vocab_file=vocab.txt \
      --output_dir=data/glue --max_seq_length=128          # --task=all: every task found in GLUE_DIR

  # SuperGLUE (superglue_writer.py): the official jsonl files (SUPERGLUE_DIR/BoolQ/train.jsonl, ...) -> records
  # per task kind (COPA, MultiRC, ReCoRD expanded into one row per option) and meta data, named as GLUE's.
  python -m projects.bert.datasets.prepare superglue --task=boolq --superglue_dir=SUPERGLUE_DIR \
      --vocab_file=vocab.txt --output_dir=data/superglue --max_seq_length=128   # --task=all: every task found

  # SQuAD v1.1 / v2.0 JSON (squad_writer.py) -> train/eval records, eval features and meta data.
  python -m projects.bert.datasets.prepare squad --train_file=train-v1.1.json --eval_file=dev-v1.1.json \
      --vocab_file=vocab.txt --output_dir=data/squad_v1.1 --version_2_with_negative=false \
      --max_seq_length=384 --doc_stride=128 --max_query_length=64

  # Generated SQuAD-format data, offline (synthetic_squad.py): OUTPUT_DIR/train-v1.1.json and dev-v1.1.json in
  # the official layout (dev's people, places, jobs and foods never occur in train), for `prepare squad` above.
  python -m projects.bert.datasets.prepare synthetic_squad --output_dir=data/synthetic_squad \
      --train_paragraphs=500 --dev_paragraphs=50 --people_per_paragraph=2 --seed=0 --version=v1.1

  # XTREME (xtreme_writer.py): the folder xtreme's scripts/download_data.sh writes -> per task English train and
  # per-language dev / test records, {task}_meta_data (--task=all: every task folder found in XTREME_DIR).
  python -m projects.bert.datasets.prepare xtreme --task=xnli --xtreme_dir=XTREME_DIR --vocab_file=mbert/vocab.txt \
      --output_dir=data/xtreme          # cased (mBERT): --do_lower_case=false is the default here

  Each command prints what it wrote; --verbose (any command) also logs INFO lines, the writers' and the libraries'
  (e.g. the upstream writer's `*** Example ***` dumps). `--help` loads no TensorFlow and shows each flag's default.

Every writer checks its inputs (and the vocabulary's special tokens) before it writes, writes into a staging folder
and moves complete outputs into place (`writing.py`): an error, Ctrl-C or a full disk leaves the previous outputs.
Errors the user can fix end the command with one `prepare <command>: error: ...` line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Optional, Sequence

from absl import logging

from core import logs  # before TensorFlow loads: it sets TensorFlow's C++ log level
from projects.bert.tasks import glue as glue_tasks

# TensorFlow and the writers load when a command runs, not for --help (seconds of imports).
__all__ = ['main']  # and PrepareError, loaded on first use (module __getattr__)


def __getattr__(name: str):  # `prepare.PrepareError`, as before the writers loaded lazily
  if name == 'PrepareError':
    from projects.bert.datasets.writing import PrepareError
    return PrepareError
  raise AttributeError(name)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
  """The description as written, and each optional flag's default beside its help."""

  def _get_help_string(self, action: argparse.Action) -> str:
    if action.required or action.default is None:
      return action.help or ''
    return super()._get_help_string(action)


def _bool(value: str) -> bool:
  from projects.bert.datasets import writing
  return writing.parse_bool(value)


def _parser(command: str = '') -> argparse.ArgumentParser:
  """The CLI's parser; the flags of `superglue` and `xtreme` (defined by their writers, which need TensorFlow) only
  when `command` is that one."""
  parser = argparse.ArgumentParser(prog='python -m projects.bert.datasets.prepare',
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  sub.add_parser('pretraining', help='run create_pretraining_data.py; its flags follow (--input_file=... '
                 '--vocab_file=... --output_file=... --max_seq_length=...; --sentence_order=true: ALBERT\'s SOP '
                 'pairs)', add_help=False)
  glue = sub.add_parser('glue', help='GLUE TSVs -> records and meta data', formatter_class=_Formatter,
                        description='GLUE TSVs (the official layout) -> records and meta data per task.')
  glue.add_argument('--task', required=True,
                    help=f'one of {", ".join(glue_tasks.task_names())}, or "all": every task found in --glue_dir')
  glue.add_argument('--glue_dir', required=True, help='folder holding CoLA/, SST-2/, MRPC/, ... (GLUE layout)')
  glue.add_argument('--vocab_file', required=True, help='WordPiece vocab.txt of the model to fine-tune')
  glue.add_argument('--output_dir', required=True, help='where the records and {task}_meta_data go')
  glue.add_argument('--max_seq_length', type=int, default=128, help='tokens per example, [CLS] and [SEP]s included')
  glue.add_argument('--do_lower_case', type=_bool, default=True, help='true for uncased models')
  superglue = sub.add_parser('superglue', help='SuperGLUE jsonl -> records and meta data per task',
                             formatter_class=_Formatter,
                             description='SuperGLUE jsonl (the official download) -> records and meta data per task.')
  squad = sub.add_parser('squad', help='SQuAD v1.1 / v2.0 JSON -> records, eval features and meta data',
                         formatter_class=_Formatter,
                         description='SQuAD v1.1 / v2.0 JSON -> train/eval records, eval features and meta data.')
  squad.add_argument('--train_file', required=True, help='train-v1.1.json or train-v2.0.json')
  squad.add_argument('--eval_file', required=True, help='dev-v1.1.json or dev-v2.0.json')
  squad.add_argument('--vocab_file', required=True, help='WordPiece vocab.txt of the model to fine-tune')
  squad.add_argument('--output_dir', required=True, help='one folder per SQuAD version, e.g. data/squad_v1.1')
  squad.add_argument('--version_2_with_negative', type=_bool, default=False, help='true for SQuAD 2.0 files')
  squad.add_argument('--max_seq_length', type=int, default=384, help='tokens per paragraph window')
  squad.add_argument('--doc_stride', type=int, default=128, help='tokens between the starts of paragraph windows')
  squad.add_argument('--max_query_length', type=int, default=64, help='questions are cut to this many tokens')
  squad.add_argument('--do_lower_case', type=_bool, default=True, help='true for uncased models')
  synthetic = sub.add_parser(
      'synthetic_squad', help='generated SQuAD-format train/dev JSON (offline), for `prepare squad`',
      formatter_class=_Formatter, description='Generated SQuAD-format train-VERSION.json and dev-VERSION.json: '
      'paragraphs about several people, every fact of every person asked; dev entities never occur in train.')
  synthetic.add_argument('--output_dir', required=True, help='where train-VERSION.json and dev-VERSION.json go')
  synthetic.add_argument('--train_paragraphs', type=int, default=500, help='train paragraphs (5 questions a person)')
  synthetic.add_argument('--dev_paragraphs', type=int, default=50, help='dev paragraphs, from held-out entities')
  synthetic.add_argument('--people_per_paragraph', type=int, default=2, help='people a paragraph describes (>= 2)')
  synthetic.add_argument('--seed', type=int, default=0, help='the same seed gives the same files')
  synthetic.add_argument('--version', default='v1.1', choices=('v1.1', 'v2.0'),
                         help='v2.0 adds one unanswerable question a paragraph (someone it does not mention)')
  xtreme = sub.add_parser('xtreme', help='the XTREME download folder -> per task English train and per-language '
                          'dev / test records and meta data', formatter_class=_Formatter)
  if command == 'superglue':
    from projects.bert.datasets import superglue_writer
    superglue_writer.add_arguments(superglue)
  if command == 'xtreme':
    from projects.bert.datasets import xtreme_writer
    xtreme.description = xtreme_writer.COMMAND_DESCRIPTION
    xtreme_writer.add_arguments(xtreme)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = logs.VERBOSE_FLAG in argv  # any command: the libraries' INFO lines (the writers' example dumps) too
  argv = [a for a in argv if a != logs.VERBOSE_FLAG]
  previous = logging.get_verbosity()
  logs.configure(verbose)
  if not verbose:  # the command prints what it wrote; the writers' INFO lines are for --verbose
    logging.set_verbosity(logging.WARNING)
  try:
    return _run(argv)
  finally:
    logging.set_verbosity(previous)


def _run(argv: Sequence[str]) -> int:
  if argv[:1] == ['pretraining']:
    from projects.bert.datasets import pretraining_writer
    from projects.bert.datasets.writing import PrepareError
    if {'-h', '--help', '--helpshort'} & set(argv[1:]):
      print('usage: python -m projects.bert.datasets.prepare pretraining --input_file=... --vocab_file=... '
            f'--output_file=... [--sentence_order=false] [flags of {pretraining_writer.MODULE}]:\n'
            '  --sentence_order: true writes ALBERT\'s sentence-order pairs (two adjacent parts of a document, '
            'swapped half the time; next_sentence_labels 1 = swapped) for pretrain.py:SIZE,sop\n'
            '    (default: false, next-sentence pairs)')
      subprocess.run([sys.executable, '-m', pretraining_writer.MODULE, '--helpshort'], check=False)
      return 0
    try:
      counts = pretraining_writer.prepare_pretraining(list(argv[1:]))
    except PrepareError as e:
      raise SystemExit(f'prepare pretraining: error: {e}') from None
    for path, n in counts.items():
      print(f'{path}: {n} records')
    return 0
  args = _parser(argv[0] if argv else '').parse_args(argv)
  if args.command == 'superglue':
    from projects.bert.datasets import superglue_writer
    return superglue_writer.run(args)
  if args.command == 'xtreme':
    from projects.bert.datasets import xtreme_writer
    return xtreme_writer.run(args)
  if args.command == 'synthetic_squad':
    from projects.bert.datasets import synthetic_squad
    try:
      written = synthetic_squad.write_files(
          args.output_dir, train_paragraphs=args.train_paragraphs, dev_paragraphs=args.dev_paragraphs,
          seed=args.seed, people_per_paragraph=args.people_per_paragraph, version=args.version)
    except (ValueError, OSError) as e:
      raise SystemExit(f'prepare synthetic_squad: error: {e}') from None
    for split, (path, n) in written.items():
      print(f'{path}: {n} {split} questions')
    return 0
  from projects.bert.datasets import writing
  if args.command == 'squad':
    from projects.bert.datasets import squad_writer
    try:
      writing.check_vocab(args.vocab_file, writing.FINETUNING_TOKENS)  # before squad_writer reads anything
      meta = squad_writer.prepare_squad(
          args.train_file, args.eval_file, args.vocab_file, args.output_dir,
          version_2_with_negative=args.version_2_with_negative, max_seq_length=args.max_seq_length,
          doc_stride=args.doc_stride, max_query_length=args.max_query_length, do_lower_case=args.do_lower_case)
    except ValueError as e:  # PrepareError and file checks
      raise SystemExit(f'prepare squad: error: {e}') from None
    print(squad_writer.summary_line(meta, args.output_dir))
    return 0
  import tensorflow as tf
  from projects.bert.datasets import glue_writer
  tasks = [args.task]
  if args.task.lower() == 'all':
    tasks = glue_writer.available_tasks(args.glue_dir) if tf.io.gfile.isdir(args.glue_dir) else []
    if not tasks:
      raise SystemExit(f'prepare glue: error: no GLUE task folders under {args.glue_dir!r}; pass --glue_dir=DIR '
                       f'with CoLA/, SST-2/, MRPC/, ... in it.')
  for name in tasks:
    try:
      meta = glue_writer.prepare_glue(name, args.glue_dir, args.vocab_file, args.output_dir, args.max_seq_length,
                                      args.do_lower_case)
    except ValueError as e:  # PrepareError and unknown tasks: the message says what to do
      raise SystemExit(f'prepare glue: error: {e}') from None
    print(f'{meta["task"]}: train {meta["train_data_size"]}, eval {meta["eval_data_sizes"]}, '
          f'test {meta["test_data_sizes"]} -> {args.output_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
