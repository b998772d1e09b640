r"""`prepare squad`: SQuAD v1.1 / v2.0 JSON -> the records, eval features and meta data of `squad_format.py`.

  python -m projects.bert.datasets.prepare squad --train_file=train-v1.1.json --eval_file=dev-v1.1.json \
      --vocab_file=vocab.txt --output_dir=data/squad_v1.1 --version_2_with_negative=false \
      --max_seq_length=384 --doc_stride=128 --max_query_length=64

The train records are what `create_finetuning_data.py --fine_tuning_task_type=squad` writes: its function
(`squad_lib.generate_tf_record_from_json_file`) runs here in-process. The eval side is what Model Garden's question
answering task does before it evaluates (`read_squad_examples` + `convert_examples_to_features` with
is_training=False), with the features decoding needs written beside the records instead of kept in memory.

The inputs are checked first (JSON layout, ids, answer offsets, is_impossible a boolean, one answer per training
question, the version flag against the file and the file against itself, and how many training questions the
upstream reader would drop: `MAX_DROPPED_FRACTION`), so a wrong file fails with its name, the question and the fix
rather than deep in the writer or, worse, with fewer or wrongly labelled features at exit status 0. Everything is
written into a staging folder inside the output folder and renamed into place when complete, the meta data last: an
interrupted run leaves the previous data as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import tensorflow as tf
from absl import logging

from projects.bert.datasets import squad_format, writing
from projects.bert.datasets.writing import PrepareError

# Inside the output folder (the same file system, so renames are atomic), named as `prepare glue` names its own.


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
  """absl at WARNING: squad_lib logs its first 20 features token by token at INFO (hundreds of lines)."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(level)


# ---------------------------------------------------------------------------------------------------- checks


def read_squad_json(path: str, flag: str) -> Dict[str, Any]:
  """The SQuAD JSON at `path` (named by the command-line `flag`); PrepareError when absent or not JSON."""
  if not path:
    raise PrepareError(f'No --{flag} given: pass the SQuAD JSON file (train-v1.1.json, dev-v2.0.json, ...).')
  if not tf.io.gfile.exists(path):
    raise PrepareError(f'--{flag}={path!r} does not exist: pass the SQuAD JSON file (train-v1.1.json, '
                          f'dev-v2.0.json, ... as https://rajpurkar.github.io/SQuAD-explorer/ serves them).')
  with tf.io.gfile.GFile(path, 'r') as f:
    text = f.read()
  try:
    dataset = json.loads(text)
  except json.JSONDecodeError as e:
    raise PrepareError(f'{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); a SQuAD file is one JSON '
                          f'object {{"version": ..., "data": [...]}}.') from None
  if not isinstance(dataset, dict) or not isinstance(dataset.get('data'), list):
    raise PrepareError(f'{path} has no "data" list at the top: it is not a SQuAD file ({{"version": ..., '
                          f'"data": [{{"title", "paragraphs": [{{"context", "qas": [...]}}]}}]}}).')
  return dataset


def check_squad_json(path: str, dataset: Mapping[str, Any], *, training: bool,
                     version_2_with_negative: bool) -> Dict[str, int]:
  """Checks what the upstream reader relies on; returns {'questions', 'unanswerable', 'misaligned'}.

  Errors (PrepareError) name the file, the question (its place and id) and the fix: a version flag that
  contradicts the file, missing fields, duplicate ids, an answer outside its paragraph, and, for training, a
  question with other than one answer. Answers whose text differs from the paragraph at answer_start are counted
  (upstream skips those it cannot find in the paragraph's words) and logged.
  """
  declared = str(dataset.get('version', '')).strip().lower().lstrip('v')
  flag = f'--version_2_with_negative={"true" if version_2_with_negative else "false"}'
  # Which questions say which version: the advice must not send the user from one flag value to the other and back.
  qas = [qa for article in dataset['data'] if isinstance(article, dict)
         for paragraph in (article.get('paragraphs') or []) if isinstance(paragraph, dict)
         for qa in (paragraph.get('qas') or []) if isinstance(qa, dict)]
  impossible_ids = [qa.get('id') for qa in qas if qa.get('is_impossible') is True]
  if declared.startswith('2') and not version_2_with_negative:
    if qas and not any('is_impossible' in qa for qa in qas):
      raise PrepareError(f'{path} declares SQuAD version {dataset["version"]!r}, but none of its questions has the '
                         f'"is_impossible" field every SQuAD 2.0 question has: the file contradicts itself. If it is '
                         f'SQuAD 1.1 data, set its "version" to "1.1" and pass --version_2_with_negative=false; if '
                         f'it is SQuAD 2.0 data, give every question its is_impossible.')
    raise PrepareError(f'{path} is SQuAD version {dataset["version"]!r} but {flag}: pass '
                       f'--version_2_with_negative=true for SQuAD 2.0 files.')
  if declared.startswith('1') and version_2_with_negative:
    if impossible_ids:
      raise PrepareError(f'{path} declares SQuAD version {dataset["version"]!r}, but {len(impossible_ids)} of its '
                         f'questions are unanswerable (is_impossible true, a SQuAD 2.0 field; first: '
                         f'{impossible_ids[0]!r}): the file contradicts itself. If it is SQuAD 2.0 data, set its '
                         f'"version" to "v2.0" and pass --version_2_with_negative=true; if it is SQuAD 1.1 data, '
                         f'remove the unanswerable questions.')
    raise PrepareError(f'{path} is SQuAD version {dataset["version"]!r} but {flag}: pass '
                       f'--version_2_with_negative=false for SQuAD 1.1 files.')
  stats = {'questions': 0, 'unanswerable': 0, 'misaligned': 0}
  seen: Dict[str, str] = {}

  def fail(where: str, problem: str) -> None:
    raise PrepareError(f'{path}: {where}: {problem}')

  for i, article in enumerate(dataset['data']):
    paragraphs = article.get('paragraphs') if isinstance(article, dict) else None
    if not isinstance(paragraphs, list):
      fail(f'data[{i}]', 'has no "paragraphs" list.')
    for j, paragraph in enumerate(paragraphs):
      where_p = f'data[{i}].paragraphs[{j}]'
      if not isinstance(paragraph, dict) or not isinstance(paragraph.get('context'), str):
        fail(where_p, 'has no "context" string.')
      if not isinstance(paragraph.get('qas'), list):
        fail(where_p, 'has no "qas" list.')
      context = paragraph['context']
      for k, qa in enumerate(paragraph['qas']):
        where = f'{where_p}.qas[{k}]'
        if not isinstance(qa, dict) or not isinstance(qa.get('id'), str) or not isinstance(qa.get('question'), str):
          fail(where, 'needs an "id" and a "question" string.')
        where = f'{where} (id {qa["id"]!r})'
        if qa['id'] in seen:
          fail(where, f'the id is used twice (also at {seen[qa["id"]]}); predictions are keyed by id, so ids must be '
                      f'unique.')
        seen[qa['id']] = where
        answers = qa.get('answers')
        if not isinstance(answers, list):
          fail(where, 'has no "answers" list.')
        impossible = qa.get('is_impossible', False)
        if not isinstance(impossible, bool):
          fail(where, f'is_impossible is {impossible!r} ({type(impossible).__name__}), not true or false: SQuAD '
                      f'files hold a JSON boolean there, and the upstream reader takes any non-empty value, "false" '
                      f'included, as true (the question would be written as unanswerable). Make it a boolean (e.g. '
                      f'"false" -> false, "true" -> true; a converted file?) and run prepare again.')
        if impossible and not version_2_with_negative:
          if declared.startswith('1'):  # the flag agrees with the declared version; the question does not
            fail(where, f'is_impossible is true (a SQuAD 2.0 question), but the file declares version '
                        f'{dataset["version"]!r}: the file contradicts itself. If it is SQuAD 2.0 data, set its '
                        f'"version" to "v2.0" and pass --version_2_with_negative=true; if it is SQuAD 1.1 data, '
                        f'remove the unanswerable questions.')
          fail(where, f'is_impossible is true (a SQuAD 2.0 question) but {flag}: pass '
                      f'--version_2_with_negative=true.')
        if training and version_2_with_negative and 'is_impossible' not in qa:
          if declared.startswith('2'):
            fail(where, f'has no "is_impossible" field, which every SQuAD 2.0 training question has, but the file '
                        f'declares version {dataset["version"]!r}: the file contradicts itself. If it is SQuAD 1.1 '
                        f'data, set its "version" to "1.1" and pass --version_2_with_negative=false; if it is SQuAD '
                        f'2.0 data, give every question its is_impossible.')
          fail(where, 'has no "is_impossible" field, which SQuAD 2.0 training reads: is this a SQuAD 1.1 file? '
                      'Then pass --version_2_with_negative=false.')
        if not impossible and training and len(answers) != 1:
          fail(where, f'has {len(answers)} answers; training reads exactly one per answerable question (dev files '
                      f'list several): pass the train file as --train_file and the dev file as --eval_file.')
        if not impossible and not answers and not version_2_with_negative:
          fail(where, 'has no answers: SQuAD 1.1 scores every question against its answers.')
        for a, answer in enumerate(answers):
          if (not isinstance(answer, dict) or not isinstance(answer.get('text'), str)
              or not isinstance(answer.get('answer_start'), int)):
            fail(where, f'answers[{a}] needs a "text" string and an integer "answer_start".')
          start, text = answer['answer_start'], answer['text']
          if not text.strip() or start < 0 or start + len(text) > len(context):
            fail(where, f'answers[{a}] ({text!r} at character {start}) is empty or outside its paragraph of '
                        f'{len(context)} characters.')
          if context[start:start + len(text)] != text:
            stats['misaligned'] += 1
            logging.warning('%s: %s: answers[%d] %r differs from the paragraph at character %d (%r).', path, where, a,
                            text, start, context[start:start + len(text)])
        stats['questions'] += 1
        stats['unanswerable'] += int(bool(impossible) or not answers)
  if not stats['questions']:
    raise PrepareError(f'{path} holds no questions.')
  return stats


# Model Garden's training reader (`squad_lib.read_squad_examples`) drops, with a log line, a question whose answer it
# cannot find in the paragraph's words at answer_start. A few such answers are tolerated (at most this fraction of
# the questions, rounded down: none in a file of under 1000 questions), as the official train files have a handful
# that whitespace tokenization splits differently; more means wrong offsets, and the training file would silently
# lose them (all of them: an empty file).
MAX_DROPPED_FRACTION = 0.001


def check_training_questions_kept(path: str, dataset: Mapping[str, Any], *, version_2_with_negative: bool) -> int:
  """Runs the upstream training reader on the file at `path` (`dataset`, already checked by `check_squad_json`) and
  fails, naming the count and the first ids, when it drops more questions than `MAX_DROPPED_FRACTION` allows;
  returns how many it drops."""
  from official.nlp.data import squad_lib

  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # one "Could not find answer" line per dropped question: summarised below
  try:
    kept = {e.qas_id for e in squad_lib.read_squad_examples(path, is_training=True,
                                                            version_2_with_negative=version_2_with_negative)}
  finally:
    logging.set_verbosity(level)
  ids = [qa['id'] for article in dataset['data'] for paragraph in article['paragraphs'] for qa in paragraph['qas']]
  dropped = [i for i in ids if i not in kept]
  allowed = int(MAX_DROPPED_FRACTION * len(ids))
  if len(dropped) > allowed:
    raise PrepareError(
        f'{path}: {len(dropped)} of {len(ids)} training questions would be dropped by the training writer, which '
        f'cannot find their answer text in the paragraph at answer_start (first ids: '
        f'{", ".join(map(repr, dropped[:5]))}); at most {allowed} may be (a fraction of {MAX_DROPPED_FRACTION:g}). '
        f'Fix their answer_start (the character offset of the answer text in its "context"; a file converted from '
        f'another format may count bytes or words), or remove those questions, and run prepare again.')
  if dropped:
    logging.warning('%s: %d of %d training questions are dropped by the training writer (their answer is not found '
                    'at answer_start): %s.', path, len(dropped), len(ids), ', '.join(dropped[:5]))
  return len(dropped)


def check_lengths(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
  """The window arithmetic of squad_lib needs room for at least one paragraph token after the question."""
  if max_query_length < 1 or doc_stride < 1:
    raise PrepareError(f'--max_query_length={max_query_length} and --doc_stride={doc_stride} must be positive.')
  if max_seq_length < max_query_length + 4:
    raise PrepareError(f'--max_seq_length={max_seq_length} leaves no paragraph tokens after a question of up to '
                          f'--max_query_length={max_query_length} tokens, [CLS] and two [SEP]: use at least '
                          f'{max_query_length + 4} (the BERT recipe: 384 and 64).')


# --------------------------------------------------------------------------------------------------- writing


def write_eval(eval_file: str, tokenizer: Any, out_dir: str, *, max_seq_length: int, doc_stride: int,
                max_query_length: int, version_2_with_negative: bool) -> Tuple[int, int]:
  """Eval records + features file in `out_dir`, as Model Garden's QA task prepares its eval data; returns
  (examples, features)."""
  from official.nlp.data import squad_lib

  examples = squad_lib.read_squad_examples(eval_file, is_training=False,
                                           version_2_with_negative=version_2_with_negative)
  writer = squad_lib.FeatureWriter(os.path.join(out_dir, squad_format.EVAL_RECORDS), is_training=False)
  records: List[Dict[str, Any]] = []

  def keep(feature: Any, is_padding: bool) -> None:
    del is_padding  # batch_size=1 below: upstream adds no padding features (our eval input pads batches itself)
    writer.process_feature(feature)
    records.append(squad_format.feature_record(feature, examples[feature.example_index].qas_id))

  squad_lib.convert_examples_to_features(examples=examples, tokenizer=tokenizer, max_seq_length=max_seq_length,
                                         doc_stride=doc_stride, max_query_length=max_query_length, is_training=False,
                                         output_fn=keep, batch_size=1)
  writer.close()
  squad_format.write_eval_features(os.path.join(out_dir, squad_format.EVAL_FEATURES), records)
  return len(examples), len(records)


def _write_all(train_file: str, eval_file: str, vocab_file: str, out_dir: str, *, version_2_with_negative: bool,
               max_seq_length: int, doc_stride: int, max_query_length: int, do_lower_case: bool,
               stats: Mapping[str, Mapping[str, int]]) -> Dict[str, Any]:
  from official.nlp.data import squad_lib
  from official.nlp.tools import tokenization

  with quiet_absl():
    meta = squad_lib.generate_tf_record_from_json_file(
        input_file_path=train_file, vocab_file_path=vocab_file,
        output_path=os.path.join(out_dir, squad_format.TRAIN_RECORDS), max_seq_length=max_seq_length,
        do_lower_case=do_lower_case, max_query_length=max_query_length, doc_stride=doc_stride,
        version_2_with_negative=version_2_with_negative)
    tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
    eval_examples, eval_features = write_eval(
        eval_file, tokenizer, out_dir, max_seq_length=max_seq_length, doc_stride=doc_stride,
        max_query_length=max_query_length, version_2_with_negative=version_2_with_negative)
  tf.io.gfile.copy(eval_file, os.path.join(out_dir, squad_format.EVAL_JSON), overwrite=True)
  meta.update({
      'version': squad_format.version_of(version_2_with_negative),
      'train_num_examples': stats['train']['questions'],
      'eval_data_size': eval_features,
      'eval_num_examples': eval_examples,
      'do_lower_case': bool(do_lower_case),
      'vocab_file': os.path.abspath(vocab_file) if '://' not in vocab_file else vocab_file,
      'source_files': {'train': train_file, 'eval': eval_file},
      'files': {'train': squad_format.TRAIN_RECORDS, 'eval': squad_format.EVAL_RECORDS,
                'eval_features': squad_format.EVAL_FEATURES, 'eval_json': squad_format.EVAL_JSON},
  })
  with tf.io.gfile.GFile(os.path.join(out_dir, squad_format.META_DATA), 'w') as f:  # as create_finetuning_data
    f.write(json.dumps(meta, indent=4) + '\n')
  return meta


def prepare_squad(train_file: str, eval_file: str, vocab_file: str, output_dir: str, *,
                  version_2_with_negative: bool = False, max_seq_length: int = 384, doc_stride: int = 128,
                  max_query_length: int = 64, do_lower_case: bool = True) -> Dict[str, Any]:
  """Writes the SQuAD data of `squad_format.py` into `output_dir`; returns the meta data (also written there)."""
  writing.check_vocab(vocab_file, writing.FINETUNING_TOKENS)  # a missing file, or one without [CLS] etc.
  check_lengths(max_seq_length, doc_stride, max_query_length)
  stats = {}
  for role, path, flag in (('train', train_file, 'train_file'), ('eval', eval_file, 'eval_file')):
    dataset = read_squad_json(path, flag)
    stats[role] = check_squad_json(path, dataset, training=role == 'train',
                                   version_2_with_negative=version_2_with_negative)
    if role == 'train':
      stats[role]['dropped'] = check_training_questions_kept(path, dataset,
                                                             version_2_with_negative=version_2_with_negative)
  tf.io.gfile.makedirs(output_dir)
  # Killed runs' staging folders go; a concurrent run's (its lock held) stay.
  writing.remove_abandoned_staging(output_dir, 'squad')
  staging = writing.Staging(output_dir, 'squad')
  try:
    try:
      meta = _write_all(train_file, eval_file, vocab_file, staging.path,
                        version_2_with_negative=version_2_with_negative, max_seq_length=max_seq_length,
                        doc_stride=doc_stride, max_query_length=max_query_length, do_lower_case=do_lower_case,
                        stats=stats)
    except Exception as e:  # pylint: disable=broad-except  (a full disk arrives wrapped by TensorFlow or raw)
      full = writing.disk_full_error(e, output_dir, staging.path)
      if full is None:
        raise
      raise full from e
    writing.commit_outputs(staging.path, output_dir, squad_format.META_DATA, meta['files'], 'SQuAD')
  finally:
    staging.remove()
  logging.info('SQuAD %s: train %d questions -> %d features, eval %d questions -> %d features; wrote %s',
               meta['version'], meta['train_num_examples'], meta['train_data_size'], meta['eval_num_examples'],
               meta['eval_data_size'], os.path.join(output_dir, squad_format.META_DATA))
  return meta


def summary_line(meta: Mapping[str, Any], output_dir: Optional[str] = None) -> str:
  """What `prepare squad` prints when done."""
  return (f'SQuAD {meta["version"]}: train {meta["train_num_examples"]} questions -> {meta["train_data_size"]} '
          f'features, eval {meta["eval_num_examples"]} questions -> {meta["eval_data_size"]} features'
          + (f' -> {output_dir}' if output_dir else ''))
