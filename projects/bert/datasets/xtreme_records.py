r"""XTREME's records, per task kind, in Model Garden's formats: what `prepare xtreme` (`xtreme_writer.py`) writes into
its staging folder, and the names of the record files.

  result = write_records(task, data, tokenizer, out, max_seq_length=128, mnli_dir=None, xtreme_dir='download',
                         vocab_file='mbert/vocab.txt', doc_stride=128, max_query_length=64, do_lower_case=False)

Records are Model Garden's, written by its own functions on the examples `datasets/xtreme_reader.py` reads (so a
malformed line fails with its file, line and field, and a missing language is named and skipped):
  xnli, pawsx     classifier_data_lib's converter (XtremeXnliProcessor / XtremePawsxProcessor's examples: guids,
                  label lists, test placeholder labels 'contradiction' / '0'); XNLI's English train is MNLI train:
                  xnli/train-en.tsv (what xtreme's utils_preprocess.py writes from XNLI-MT's multinli.train.en.tsv),
                  or GLUE's MNLI/train.tsv when `mnli_dir` (a GLUE folder) is given.
  udpos, panx     tagging_data_lib.write_example_to_file: label -1 on [CLS], [SEP], padding and every non-first
                  WordPiece of a word; a sentence longer than max_seq_length - 2 WordPieces is split into
                  sub-sentences (sub_sentence_id 0, 1, ...); test files without labels get label 0 on first pieces.
  xquad, mlqa,    squad_lib, through `squad_writer.py`: train records from SQuAD v1.1 train (TyDiQA: its English
  tydiqa          GoldP train) as create_finetuning_data.py writes them; per language and split the eval records,
                  the eval features decoding needs and a copy of the SQuAD JSON (answers kept for scoring).
  bucc2018,       sentence_retrieval_lib's featurisation: one record per sentence of each side (source language,
  tatoeba         English) with example_id = BUCC's id number (`de-000000042` -> 42) or Tatoeba's line index.

`record_file(task, kind, lang, role)` names the files ({lang} a language, {side} 'source' or 'target'):
  {task}_train.tf_record                          English training records (trained tasks)
  {task}_eval_{lang}.tf_record                    dev records (xquad 'en': SQuAD v1.1 dev; tydiqa has none)
  {task}_test_{lang}.tf_record                    test records
  {task}_{eval|test}_{lang}_features.jsonl        QA: eval features (`squad_format.py`), in record order
  {task}_{eval|test}_{lang}.json                  QA: the SQuAD JSON of that language and split
  {task}_{eval|test}_{lang}_{side}.tf_record      retrieval: one file per side (BUCC has eval = dev and test)

Record schemas (int64 features; S = max_seq_length):
  pairs       input_ids, input_mask, segment_ids [S], label_ids [1], is_real_example [1], example_id [1]
              (example_id: the example's position in its file)
  tagging     input_ids, input_mask, segment_ids, label_ids [S] (-1 where not scored), sentence_id [1] (from 0 in
              its file), sub_sentence_id [1]
  QA train    unique_ids, input_ids, input_mask, segment_ids, paragraph_mask, class_index, start_positions,
              end_positions, is_impossible (squad_lib, is_training=True); QA eval: no positions
  retrieval   input_ids, input_mask, segment_ids [S], is_real_example [1], example_id [1] (no label)

`write_records` returns the kind's part of the meta data: Model Garden's fields (train_data_size, num_labels,
label_list; tagging: label_type, label_shape; QA: squad_lib's), train_source, and per split 'files',
'{split}_data_sizes' and '{split}_num_examples' ({lang: ...}); `xtreme_writer.py` completes it.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from projects.bert.datasets import squad_writer, xtreme_reader
from projects.bert.datasets.writing import PrepareError
from projects.bert.tasks import xtreme

EVAL, TEST = 'eval', 'test'  # record-file names of the dev and test splits (GLUE's 'eval' for dev)
SPLIT_OF = {EVAL: xtreme.DEV, TEST: xtreme.TEST}
SIDES = ('source', 'target')  # retrieval: the task language's sentences, the English ones

_MNLI_TRAIN = 'MNLI/train.tsv'


def record_file(task_name: str, kind: str, lang: str = xtreme.TARGET_LANGUAGE, role: Optional[str] = None) -> str:
  """The name of a records file: kind 'train', 'eval' or 'test'; `role` a retrieval side ('source' / 'target')."""
  name = xtreme.get_task(task_name).name
  if kind == xtreme.TRAIN:
    return f'{name}_train.tf_record'
  if kind not in (EVAL, TEST):
    raise ValueError(f'kind must be train, eval or test, got {kind!r}.')
  return f'{name}_{kind}_{lang}{f"_{role}" if role else ""}.tf_record'


def write_records(task: xtreme.XtremeTask, data: Mapping[str, xtreme_reader.XtremeSplit], tokenizer: Any, out: str, *,
                  max_seq_length: int, mnli_dir: Optional[str], xtreme_dir: str, vocab_file: str, doc_stride: int,
                  max_query_length: int, do_lower_case: bool) -> Dict[str, Any]:
  """Writes the records of `task` ({split: what `xtreme_reader` read}; QA: the languages whose JSON exists) into the
  folder `out`; returns the kind's part of the meta data (module docstring)."""
  with squad_writer.quiet_absl():  # the converters log examples at INFO
    if task.kind == xtreme.SENTENCE_PAIR:
      return _write_pairs(task, data, tokenizer, out, max_seq_length, mnli_dir, xtreme_dir)
    if task.kind == xtreme.TAGGING:
      return _write_tags(task, data, tokenizer, out, max_seq_length, xtreme_dir)
    if task.kind == xtreme.SPAN_QA:
      return _write_qa(task, xtreme_dir, vocab_file, tokenizer, out,
                       {kind: list(data[SPLIT_OF[kind]].examples) if SPLIT_OF[kind] in data else []
                        for kind in (EVAL, TEST)},
                       max_seq_length, doc_stride, max_query_length, do_lower_case)
    return _write_retrieval(task, data, tokenizer, out, max_seq_length)


# ------------------------------------------------------------------------------------------------ sentence pairs


def _pair_examples(pairs: Sequence[xtreme_reader.SentencePair], task: xtreme.XtremeTask, guid: str,
                   labelled: bool) -> List[Any]:
  """Model Garden's InputExamples of XtremeXnliProcessor / XtremePawsxProcessor (test: placeholder labels[0])."""
  from official.nlp.data import classifier_data_lib

  return [classifier_data_lib.InputExample(guid=f'{guid}-{i}', text_a=p.text_a, text_b=p.text_b,
                                           label=p.label if labelled else task.labels[0])
          for i, p in enumerate(pairs)]


def _mnli_train(mnli_dir: str) -> Tuple[List[Any], str]:
  """MNLI train from a GLUE folder (MNLI/train.tsv) through `prepare glue`'s reader; example ids are positions."""
  from projects.bert.datasets import glue_writer
  from projects.bert.tasks import glue

  task = glue.get_task('mnli')
  path = glue_writer.find_tsv(mnli_dir, task.train)
  if path is None:
    raise PrepareError(f'--mnli_dir={mnli_dir!r} holds no {_MNLI_TRAIN}: pass the GLUE data folder (with MNLI/ in '
                       f'it), or leave --mnli_dir out to train on xnli/train-en.tsv (MNLI train, as xtreme writes '
                       f'it).')
  examples = glue_writer.make_processor(task, mnli_dir).read_examples(task.train, 'train')
  for example in examples:
    example.example_id = None  # GLUE's index column: the XTREME records number examples by position
  return examples, path


def _write_pairs(task: xtreme.XtremeTask, data: Mapping[str, xtreme_reader.XtremeSplit], tokenizer: Any,
                 out: str, max_seq_length: int, mnli_dir: Optional[str], xtreme_dir: str) -> Dict[str, Any]:
  from official.nlp.data import classifier_data_lib

  def write(examples: List[Any], name: str) -> int:
    classifier_data_lib.file_based_convert_examples_to_features(examples, list(task.labels), max_seq_length,
                                                                tokenizer, os.path.join(out, name))
    return len(examples)

  if mnli_dir:
    train, source = _mnli_train(mnli_dir)
  else:
    train = _pair_examples(data[xtreme.TRAIN].examples['en'], task, 'train', True)
    source = os.path.join(xtreme_dir, task.files(xtreme.TRAIN, 'en')['path'])
  result = {'train_data_size': write(train, record_file(task.name, xtreme.TRAIN)), 'train_source': source}
  for kind in (EVAL, TEST):
    for lang, pairs in data[SPLIT_OF[kind]].examples.items():
      name = record_file(task.name, kind, lang)
      n = write(_pair_examples(pairs, task, f'{SPLIT_OF[kind]}-{lang}', kind == EVAL), name)
      _add(result, kind, lang, name, n, n)
  result.update(num_labels=task.num_labels, label_list=list(task.labels))
  return result


def _add(result: Dict[str, Any], kind: str, lang: str, files: Any, size: Any, examples: int) -> None:
  result.setdefault('files', {}).setdefault(kind, {})[lang] = files
  result.setdefault(f'{kind}_data_sizes', {})[lang] = size
  result.setdefault(f'{kind}_num_examples', {})[lang] = examples


# ------------------------------------------------------------------------------------------------------ tagging


def _tag_examples(sentences: Sequence[xtreme_reader.TaggedSentence], task: xtreme.XtremeTask) -> List[Any]:
  """tagging_data_lib's InputExamples (_read_one_file's: label ids in the task's order, 0 where unlabelled)."""
  from official.nlp.data import tagging_data_lib

  ids = {label: i for i, label in enumerate(task.labels)}
  return [tagging_data_lib.InputExample(
      sentence_id=s.sentence_id, words=list(s.tokens),
      label_ids=[ids[label] for label in s.labels] if s.labels is not None else [0] * len(s.tokens))
      for s in sentences]


def _write_tags(task: xtreme.XtremeTask, data: Mapping[str, xtreme_reader.XtremeSplit], tokenizer: Any, out: str,
                max_seq_length: int, xtreme_dir: str) -> Dict[str, Any]:
  from official.nlp.data import tagging_data_lib
  from official.nlp.tools import tokenization

  def write(sentences: Sequence[xtreme_reader.TaggedSentence], name: str) -> int:
    return tagging_data_lib.write_example_to_file(
        _tag_examples(sentences, task), tokenizer, max_seq_length, os.path.join(out, name),
        text_preprocessing=tokenization.convert_to_unicode)  # what create_finetuning_data.py passes

  train = data[xtreme.TRAIN].examples['en']
  result = {'train_data_size': write(train, record_file(task.name, xtreme.TRAIN)), 'train_num_examples': len(train),
            'train_source': os.path.join(xtreme_dir, task.files(xtreme.TRAIN, 'en')['path'])}
  for kind in (EVAL, TEST):
    for lang, sentences in data[SPLIT_OF[kind]].examples.items():
      name = record_file(task.name, kind, lang)
      _add(result, kind, lang, name, write(sentences, name), len(sentences))
  result.update(num_labels=task.num_labels, label_list=list(task.labels), label_type='int',
                label_shape=[max_seq_length])
  return result


# ---------------------------------------------------------------------------------------------------------- QA


def _check_ids(path: str, data: Sequence[Mapping[str, Any]]) -> int:
  """Question ids must be unique (predictions are keyed by id); returns the number of questions."""
  seen: Dict[str, str] = {}
  for a, article in enumerate(data):
    for p, paragraph in enumerate(article['paragraphs']):
      for q, qa in enumerate(paragraph['qas']):
        where = f'data[{a}].paragraphs[{p}].qas[{q}]'
        if qa['id'] in seen:
          raise PrepareError(f'{path}: {where}, field id: {qa["id"]!r} is also the id of {seen[qa["id"]]}; '
                             f'predictions are keyed by id, so ids must be unique. Download the file again.')
        seen[qa['id']] = where
  return len(seen)


def _write_qa(task: xtreme.XtremeTask, xtreme_dir: str, vocab_file: str, tokenizer: Any, out: str,
              languages: Mapping[str, Sequence[str]], max_seq_length: int, doc_stride: int, max_query_length: int,
              do_lower_case: bool) -> Dict[str, Any]:
  from official.nlp.data import squad_lib

  from projects.bert.datasets import squad_format

  train_file = os.path.join(xtreme_dir, task.files(xtreme.TRAIN, 'en')['path'])
  stats = squad_writer.check_squad_json(train_file, {'data': xtreme_reader.read_squad(train_file)}, training=True,
                                        version_2_with_negative=False)
  with squad_writer.quiet_absl():  # squad_lib logs every feature's tokens
    result = squad_lib.generate_tf_record_from_json_file(
        input_file_path=train_file, vocab_file_path=vocab_file,
        output_path=os.path.join(out, record_file(task.name, xtreme.TRAIN)), max_seq_length=max_seq_length,
        do_lower_case=do_lower_case, max_query_length=max_query_length, doc_stride=doc_stride,
        version_2_with_negative=False)
  result.update(train_num_examples=stats['questions'], train_source=train_file)
  for kind in (EVAL, TEST):
    for lang in languages[kind]:
      path = os.path.join(xtreme_dir, task.files(SPLIT_OF[kind], lang)['path'])
      _check_ids(path, xtreme_reader.read_squad(path))
      base = record_file(task.name, kind, lang)[:-len('.tf_record')]
      names = {'records': f'{base}.tf_record', 'features': f'{base}_features.jsonl', 'json': f'{base}.json'}
      scratch = os.path.join(out, f'.{base}')
      tf.io.gfile.makedirs(scratch)
      with squad_writer.quiet_absl():
        questions, features = squad_writer.write_eval(
            path, tokenizer, scratch, max_seq_length=max_seq_length, doc_stride=doc_stride,
            max_query_length=max_query_length, version_2_with_negative=False)
      tf.io.gfile.rename(os.path.join(scratch, squad_format.EVAL_RECORDS), os.path.join(out, names['records']))
      tf.io.gfile.rename(os.path.join(scratch, squad_format.EVAL_FEATURES), os.path.join(out, names['features']))
      tf.io.gfile.rmtree(scratch)
      tf.io.gfile.copy(path, os.path.join(out, names['json']))
      _add(result, kind, lang, names, features, questions)
  return result


# --------------------------------------------------------------------------------------------------- retrieval


def _retrieval_examples(sentences: Sequence[str], ids: Optional[Sequence[str]], set_type: str) -> List[Any]:
  """sentence_retrieval_lib's InputExamples: BUCC's example_id is its id's number, Tatoeba's the line index."""
  from official.nlp.data import classifier_data_lib

  return [classifier_data_lib.InputExample(guid=f'{set_type}-{i}', text_a=sentence,
                                           example_id=int(ids[i].split('-')[1]) if ids is not None else i)
          for i, sentence in enumerate(sentences)]


def _write_retrieval(task: xtreme.XtremeTask, data: Mapping[str, xtreme_reader.XtremeSplit], tokenizer: Any,
                     out: str, max_seq_length: int) -> Dict[str, Any]:
  from official.nlp.data import classifier_data_lib

  result: Dict[str, Any] = {}
  for kind in (EVAL, TEST):
    set_type = 'sample' if kind == EVAL else 'test'  # BuccProcessor's guids
    for lang, bitext in data.get(SPLIT_OF[kind], xtreme_reader.XtremeSplit('', '', {}, (), ())).examples.items():
      names, sizes = {}, {}
      for side, sentences, ids in (('source', bitext.source, bitext.source_ids),
                                   ('target', bitext.target, bitext.target_ids)):
        names[side] = record_file(task.name, kind, lang, side)
        examples = _retrieval_examples(sentences, ids, set_type)
        classifier_data_lib.file_based_convert_examples_to_features(examples, None, max_seq_length, tokenizer,
                                                                    os.path.join(out, names[side]), None)
        sizes[side] = len(examples)
      _add(result, kind, lang, names, sizes, sizes['source'])
      if bitext.gold is not None:
        result.setdefault('eval_gold_pairs', {})[lang] = len(bitext.gold)
  return result
