r"""`prepare xtreme`: the XTREME download folder -> per task, English train records and per-language dev / test
records with one meta-data JSON, in the conventions of `prepare glue` (one output folder, `{task}_...` file names,
written beside and renamed into place, the meta data last).

  prepare_xtreme('panx', xtreme_dir='download', vocab_file='mbert/vocab.txt', output_dir='data/xtreme')

What each task kind's records hold, their schemas and the record files' names are `xtreme_records.py`'s; this module
reads the inputs (`xtreme_reader.py`), checks lengths and languages, has `xtreme_records.write_records` write the
records into a staging folder, adds the meta data and renames them into place.

Files in `output_dir`: the record files `xtreme_records.record_file` names ({task}_train.tf_record,
{task}_{eval|test}_{lang}.tf_record, QA's _features.jsonl and .json beside them, retrieval's one file per side) and
{task}_meta_data, JSON, below.

Meta data: Model Garden's fields (processor_type, task_type, max_seq_length, train_data_size, num_labels,
label_list; tagging: label_type, label_shape; QA: max_query_length, doc_stride, version_2_with_negative) and ours:
task, title, kind, group, languages (those written), eval_languages / test_languages, eval_data_sizes /
test_data_sizes (records per language; retrieval {lang: {side: n}}), eval_num_examples / test_num_examples
(sentences or questions before sub-sentence splitting / doc-stride windows), main_eval_language ('en' when
written), missing ({split: languages whose files are absent}), without_split ({split: languages XTREME has no such
data for, e.g. UD-POS dev kk, th, tl, yo}), train_source, do_lower_case, vocab_file, xtreme_dir and files (the
names above, relative to the meta data: {'train': name, 'eval': {lang: name | {role: name}}, 'test': {...}}).

Command line (hooked into `prepare.py` as its `xtreme` sub-command, `bert-prepare xtreme`):
  bert-prepare xtreme --task={xnli,pawsx,udpos,panx,xquad,mlqa,tydiqa,bucc,tatoeba,all} --xtreme_dir=DIR \
      --vocab_file=V --output_dir=OUT [--max_seq_length=N] [--do_lower_case=false] [--languages=de,zh] \
      [--mnli_dir=GLUE_DIR] [--doc_stride=128] [--max_query_length=64]
`add_arguments(sub_parser)` declares these flags and `run(args)` runs them (one summary line per task).

mBERT conventions: cased WordPiece (do_lower_case=False, the default here), CJK characters split one a token by
the upstream BasicTokenizer. max_seq_length defaults per kind to xtreme's scripts: 128 (pairs, tagging), 384 (QA,
doc_stride 128, max_query_length 64), 512 (retrieval, run_bucc2018.sh's MAXL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from core import errors
from projects.bert.datasets import squad_writer, writing, xtreme_reader, xtreme_records
from projects.bert.datasets.writing import PrepareError
from projects.bert.datasets.xtreme_records import EVAL, SPLIT_OF, TEST, record_file
from projects.bert.tasks import xtreme

ALL = 'all'

DEFAULT_MAX_SEQ_LENGTH = {xtreme.SENTENCE_PAIR: 128, xtreme.TAGGING: 128, xtreme.SPAN_QA: 384,
                          xtreme.BITEXT_MINING: 512, xtreme.SENTENCE_RETRIEVAL: 512}
# Model Garden's processor names (the `processor_type` its writers record) and task types.
PROCESSOR_TYPES = {'xnli': 'XTREME-XNLI', 'pawsx': 'XTREME-PAWS-X', 'udpos': 'udpos', 'panx': 'panx',
                   'xquad': 'squad', 'mlqa': 'squad', 'tydiqa': 'squad', 'bucc2018': 'BUCC', 'tatoeba': 'TATOEBA'}
STAGING_KIND = 'xtreme'  # staging folders: <output_dir>/.prepare-xtreme-<task>-<hex> (writing.Staging)
COMMAND_DESCRIPTION = ('Writes, per XTREME task, English train records and per-language dev / test records with one '
                       '{task}_meta_data into --output_dir; languages missing from --xtreme_dir are named and '
                       'skipped. mBERT is cased: --do_lower_case=false is the default.')
TASK_TYPES = {xtreme.SENTENCE_PAIR: 'bert_classification', xtreme.TAGGING: 'tagging', xtreme.SPAN_QA: 'bert_squad',
              xtreme.BITEXT_MINING: 'retrieval', xtreme.SENTENCE_RETRIEVAL: 'retrieval'}


def meta_data_file(task_name: str) -> str:
  return f'{xtreme.get_task(task_name).name}_meta_data'


# ------------------------------------------------------------------------------------------------------ checks


def _check_lengths(kind: str, max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
  if kind == xtreme.SPAN_QA:
    squad_writer.check_lengths(max_seq_length, doc_stride, max_query_length)
  elif max_seq_length < (4 if kind == xtreme.SENTENCE_PAIR else 3):
    raise PrepareError(f'--max_seq_length={max_seq_length} leaves no room for a WordPiece besides [CLS] and '
                       f'[SEP]: use at least {4 if kind == xtreme.SENTENCE_PAIR else 3} (xtreme uses '
                       f'{DEFAULT_MAX_SEQ_LENGTH[kind]}).')


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
  """The reader's MissingFileError (a FileNotFoundError) as a PrepareError, so that every input problem is one."""
  try:
    yield
  except errors.MissingFileError as e:
    raise PrepareError(str(e)) from None


def _wanted(task: xtreme.XtremeTask, split: str,
            languages: Optional[Sequence[str]]) -> Tuple[List[str], Tuple[str, ...]]:
  """(languages of `languages` (default: all the task's) that have `split`, those that have none in XTREME)."""
  has = set(task.split_languages(split))
  chosen = languages or task.languages
  return [lang for lang in chosen if lang in has], tuple(lang for lang in chosen if lang not in has)


def _read(xtreme_dir: str, task: xtreme.XtremeTask, split: str,
          languages: Optional[Sequence[str]]) -> xtreme_reader.XtremeSplit:
  """One split for `languages`; a split none of whose files exist is an empty split with every language missing."""
  wanted, without = _wanted(task, split, languages)
  if not wanted:
    return xtreme_reader.XtremeSplit(task.name, split, {}, (), without)
  try:
    return xtreme_reader.read_split(xtreme_dir, task.name, split, languages)
  except errors.MissingFileError as e:
    logging.warning('XTREME %s: %s', task.name, e)
    return xtreme_reader.XtremeSplit(task.name, split, {}, tuple(wanted), without)


def _qa_languages(xtreme_dir: str, task: xtreme.XtremeTask, split: str,
                  languages: Optional[Sequence[str]]) -> xtreme_reader.XtremeSplit:
  """Which languages have `split`'s SQuAD JSON (the writer reads it); missing ones are named in a warning."""
  wanted, without = _wanted(task, split, languages)
  present = {lang: os.path.join(xtreme_dir, task.files(split, lang)['path']) for lang in wanted}
  missing = tuple(lang for lang, path in present.items() if not tf.io.gfile.exists(path))
  if missing:
    logging.warning('XTREME %s %s: no data for %s (missing %s); these languages are skipped.', task.name, split,
                    ', '.join(missing), ', '.join(present[lang] for lang in missing[:3]))
  return xtreme_reader.XtremeSplit(task.name, split, {lang: present[lang] for lang in wanted if lang not in missing},
                                   missing, without)


# ------------------------------------------------------------------------------------------------------ writing


def _read_inputs(task: xtreme.XtremeTask, xtreme_dir: str, languages: Optional[Sequence[str]],
                 mnli_dir: Optional[str]) -> Dict[str, xtreme_reader.XtremeSplit]:
  """{split: what `xtreme_reader` read}: English train (required; not read here where it comes from `mnli_dir` or,
  for QA, where squad_lib reads the file) and dev / test for `languages` (missing ones named and skipped)."""
  data: Dict[str, xtreme_reader.XtremeSplit] = {}
  with _user_errors():
    if task.kind == xtreme.SPAN_QA:
      train = os.path.join(xtreme_dir, task.files(xtreme.TRAIN, 'en')['path'])
      if not tf.io.gfile.exists(train):
        raise PrepareError(f'XTREME {task.name} trains on {task.train_data}, but {train} does not exist. Download '
                           f'it with xtreme\'s scripts/download_data.sh and pass its download folder.')
    elif task.is_trained and not (task.kind == xtreme.SENTENCE_PAIR and mnli_dir):
      data[xtreme.TRAIN] = xtreme_reader.read_split(xtreme_dir, task.name, xtreme.TRAIN)
    for split in (xtreme.DEV, xtreme.TEST):
      if split in task.splits:  # QA: only which languages have the JSON (squad_lib reads it in the writer)
        read = _qa_languages if task.kind == xtreme.SPAN_QA else _read
        data[split] = read(xtreme_dir, task, split, languages)
  if not task.is_trained and not any(data[split].examples for split in data):
    raise PrepareError(f'No XTREME {task.name} data in {xtreme_dir}: none of its files exists (e.g. '
                       f'{os.path.join(xtreme_dir, task.files(xtreme.TEST, task.languages[0])["path"])}). Download '
                       f'it with xtreme\'s scripts/download_data.sh and pass its download folder.')
  return data


def _prepare_one(task: xtreme.XtremeTask, xtreme_dir: str, vocab_file: str, output_dir: str,
                 max_seq_length: Optional[int], do_lower_case: bool, languages: Optional[Sequence[str]],
                 mnli_dir: Optional[str], doc_stride: int, max_query_length: int) -> Dict[str, Any]:
  from official.nlp.tools import tokenization

  max_seq_length = int(max_seq_length or DEFAULT_MAX_SEQ_LENGTH[task.kind])
  _check_lengths(task.kind, max_seq_length, doc_stride, max_query_length)
  if languages:
    unknown = [lang for lang in languages if lang not in task.languages]
    if len(unknown) == len(languages):
      raise errors.ConfigError(f'--languages={",".join(languages)}: none is a language of XTREME {task.name}; its '
                               f'languages: {", ".join(task.languages)}.')
    if unknown:
      logging.warning('XTREME %s has no language %s; writing %s.', task.name, ', '.join(unknown),
                      ', '.join(lang for lang in languages if lang not in unknown))
    languages = [lang for lang in languages if lang in task.languages]
  data = _read_inputs(task, xtreme_dir, languages, mnli_dir)

  tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
  tf.io.gfile.makedirs(output_dir)
  # Written into a staging folder, renamed into place when complete (writing.py): an error, Ctrl-C or a full disk
  # before then leaves the previous records and meta data as they were. Killed runs' staging folders go.
  kind = f'{STAGING_KIND}-{task.name}'
  writing.remove_abandoned_staging(output_dir, kind)
  staging = writing.Staging(output_dir, kind)
  try:
    try:
      meta = _write_all(task, data, tokenizer, staging.path, max_seq_length=max_seq_length, mnli_dir=mnli_dir,
                        xtreme_dir=xtreme_dir, vocab_file=vocab_file, doc_stride=doc_stride,
                        max_query_length=max_query_length, do_lower_case=do_lower_case)
    except Exception as e:  # pylint: disable=broad-except  (a full disk arrives wrapped by TensorFlow or raw)
      full = writing.disk_full_error(e, output_dir, staging.path)
      if full is None:
        raise
      raise full from e
    writing.commit_outputs(staging.path, output_dir, meta_data_file(task.name), meta['files'])
  finally:
    staging.remove()
  logging.info('XTREME %s: wrote %s', task.name, os.path.join(output_dir, meta_data_file(task.name)))
  return meta


def _write_all(task: xtreme.XtremeTask, data: Mapping[str, xtreme_reader.XtremeSplit], tokenizer: Any, out: str, *,
               max_seq_length: int, mnli_dir: Optional[str], xtreme_dir: str, vocab_file: str, doc_stride: int,
               max_query_length: int, do_lower_case: bool) -> Dict[str, Any]:
  """Writes the task's records and meta data into the folder `out`; returns the meta data."""
  result = xtreme_records.write_records(
      task, data, tokenizer, out, max_seq_length=max_seq_length, mnli_dir=mnli_dir, xtreme_dir=xtreme_dir,
      vocab_file=vocab_file, doc_stride=doc_stride, max_query_length=max_query_length, do_lower_case=do_lower_case)
  meta = _meta(task, data, result, max_seq_length, do_lower_case, vocab_file, xtreme_dir)
  with tf.io.gfile.GFile(os.path.join(out, meta_data_file(task.name)), 'w') as f:
    f.write(json.dumps(meta, indent=4, ensure_ascii=False) + '\n')  # formatted as create_finetuning_data.py
  return meta


def _meta(task: xtreme.XtremeTask, data: Mapping[str, xtreme_reader.XtremeSplit], result: Dict[str, Any],
          max_seq_length: int, do_lower_case: bool, vocab_file: str, xtreme_dir: str) -> Dict[str, Any]:
  files = {kind: result.get('files', {}).get(kind, {}) for kind in (EVAL, TEST)}
  if task.is_trained:
    files = {'train': record_file(task.name, xtreme.TRAIN), **files}
  eval_languages = [lang for lang in task.languages if lang in files[EVAL]]
  test_languages = [lang for lang in task.languages if lang in files[TEST]]
  split_data = {kind: data.get(SPLIT_OF[kind]) for kind in (EVAL, TEST)}
  meta = {
      'processor_type': PROCESSOR_TYPES[task.name],
      'task_type': TASK_TYPES[task.kind],
      'max_seq_length': max_seq_length,
      **{k: v for k, v in result.items() if k != 'files'},
      'task': task.name,
      'title': task.title,
      'kind': task.kind,
      'group': task.group,
      'languages': [lang for lang in task.languages if lang in set(eval_languages) | set(test_languages)],
      'eval_languages': eval_languages,
      'test_languages': test_languages,
      'eval_data_sizes': result.get('eval_data_sizes', {}),
      'test_data_sizes': result.get('test_data_sizes', {}),
      'eval_num_examples': result.get('eval_num_examples', {}),
      'test_num_examples': result.get('test_num_examples', {}),
      'main_eval_language': xtreme.TARGET_LANGUAGE if xtreme.TARGET_LANGUAGE in eval_languages else None,
      'missing': {SPLIT_OF[k]: list(s.missing) for k, s in split_data.items() if s is not None},
      'without_split': {SPLIT_OF[k]: list(s.without_split) if s is not None else list(task.languages)
                        for k, s in split_data.items()},
      'do_lower_case': bool(do_lower_case),
      'vocab_file': os.path.abspath(vocab_file) if '://' not in vocab_file else vocab_file,
      'xtreme_dir': xtreme_dir,
      'files': files,
  }
  if not task.is_trained:
    meta['train_data_size'] = 0
  return meta


def available_tasks(xtreme_dir: str) -> List[str]:
  """Tasks with a sub-folder in the download folder (`all` prepares these and names the others)."""
  found = []
  for name, task in xtreme.XTREME_TASKS.items():
    folder = task.splits[xtreme.TEST].path.split('/')[0]
    if tf.io.gfile.isdir(os.path.join(xtreme_dir, folder)):
      found.append(name)
  return found


def prepare_xtreme(task: str, xtreme_dir: str, vocab_file: str, output_dir: str, max_seq_length: Optional[int] = None,
                   do_lower_case: bool = False, *, languages: Optional[Sequence[str]] = None,
                   mnli_dir: Optional[str] = None, doc_stride: int = 128,
                   max_query_length: int = 64) -> Dict[str, Dict[str, Any]]:
  """Writes the records and meta data of XTREME `task` (a name of `tasks/xtreme.py`, or 'all': every task whose
  folder is in `xtreme_dir`) into `output_dir`; returns {task: meta data} (each also written there).

  `max_seq_length` None: the kind's default (module docstring); `languages` restricts the dev / test languages
  (default: all the task's); `mnli_dir`, a GLUE folder, gives XNLI's English train as GLUE's MNLI/train.tsv.
  Missing languages are named in a warning and in the meta data ('missing') and skipped. Input problems raise
  PrepareError / DataError (ValueErrors) naming the file, line and field.
  """
  writing.check_vocab(vocab_file, writing.FINETUNING_TOKENS)
  if not xtreme_dir or not tf.io.gfile.isdir(xtreme_dir):
    raise PrepareError(f'The XTREME directory {xtreme_dir!r} does not exist: pass --xtreme_dir=DIR, the download '
                       f'folder that xtreme\'s scripts/download_data.sh writes (with xnli/, pawsx/, udpos/, ... in '
                       f'it).')
  if str(task).lower() == ALL:
    names = available_tasks(xtreme_dir)
    if not names:
      raise PrepareError(f'No XTREME task folders under {xtreme_dir!r} ({", ".join(xtreme.task_names())}): pass '
                         f'the download folder of xtreme\'s scripts/download_data.sh.')
    absent = [n for n in xtreme.task_names() if n not in names]
    if absent:
      logging.warning('XTREME: no folder for %s in %s; these tasks are skipped.', ', '.join(absent), xtreme_dir)
  else:
    names = [xtreme.get_task(task).name]
  if languages and str(task).lower() == ALL:
    without = [n for n in names if not set(languages) & set(xtreme.get_task(n).languages)]
    if without:
      logging.warning('XTREME: %s have none of the languages %s; skipped.', ', '.join(without), ', '.join(languages))
    names = [n for n in names if n not in without]
  return {name: _prepare_one(xtreme.get_task(name), xtreme_dir, vocab_file, output_dir, max_seq_length,
                             do_lower_case, languages, mnli_dir, doc_stride, max_query_length) for name in names}


def summary_line(meta: Mapping[str, Any], output_dir: Optional[str] = None) -> str:
  """What `prepare xtreme` prints per task."""
  missing = sorted({lang for langs in meta.get('missing', {}).values() for lang in langs})
  return (f'{meta["task"]}: train {meta.get("train_data_size", 0)}, eval {meta["eval_data_sizes"]}, test '
          f'{meta["test_data_sizes"]}' + (f'; missing {", ".join(missing)}' if missing else '')
          + (f' -> {output_dir}' if output_dir else ''))



# ------------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """The flags of `prepare xtreme` on `parser` (the sub-parser `prepare.py` adds)."""
  boolean = writing.parse_bool
  parser.add_argument('--task', required=True, help=f'one of {", ".join(xtreme.task_names())} (bucc = bucc2018), '
                      f'or "all": every task whose folder is in --xtreme_dir')
  parser.add_argument('--xtreme_dir', required=True, help="the download folder of xtreme's "
                      'scripts/download_data.sh (xnli/, pawsx/, udpos/, panx/, squad/, xquad/, mlqa/, tydiqa/, '
                      'bucc2018/, tatoeba/)')
  parser.add_argument('--vocab_file', required=True, help='WordPiece vocab.txt of the model (mBERT: cased)')
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--max_seq_length', type=int, default=None,
                      help='default per task kind: 128 (pairs, tagging), 384 (QA), 512 (retrieval)')
  parser.add_argument('--do_lower_case', type=boolean, default=False, help='false for mBERT (cased)')
  parser.add_argument('--languages', default='', help='comma-separated dev/test languages (default: all)')
  parser.add_argument('--mnli_dir', default='', help="XNLI only: a GLUE folder whose MNLI/train.tsv is the "
                      'English train (default: xnli/train-en.tsv, the same MNLI train as xtreme writes it)')
  parser.add_argument('--doc_stride', type=int, default=128, help='QA: tokens between paragraph window starts')
  parser.add_argument('--max_query_length', type=int, default=64, help='QA: questions are cut to this many tokens')
  return parser


def run(args: argparse.Namespace) -> int:
  """Runs `prepare xtreme` with parsed `args`; prints one summary line per task. Input problems: SystemExit with
  the message (as `prepare glue` does)."""
  try:
    metas = prepare_xtreme(args.task, args.xtreme_dir, args.vocab_file, args.output_dir, args.max_seq_length,
                           args.do_lower_case, languages=[s for s in args.languages.split(',') if s] or None,
                           mnli_dir=args.mnli_dir or None, doc_stride=args.doc_stride,
                           max_query_length=args.max_query_length)
  except ValueError as e:  # PrepareError, DataError, ConfigError, unknown tasks: the message says what to do
    raise SystemExit(f'prepare xtreme: error: {e}') from None
  for meta in metas.values():
    print(summary_line(meta, args.output_dir))
  return 0
