"""`bert_xtreme_qa`: the XTREME question-answering records (XQuAD, MLQA, TyDiQA-GoldP) that `prepare xtreme` writes,
for the zero-shot protocol: train on the English SQuAD-format records (SQuAD v1.1 train; TyDiQA: its English GoldP
train), decode and score every language of the task, one eval / test split per language.

Config (`config.dataset`, defaults in `default_config()`):
  task            'xquad', 'mlqa' or 'tydiqa' (tasks/xtreme.py spellings accepted: 'TyDiQA-GoldP')
  data_dir        the --output_dir of `prepare xtreme` (its {task}_meta_data names the files)
  languages       dev / test languages to read ('' or []: every language the meta data lists)
  max_seq_length, doc_stride, max_query_length   checked against the meta data (None or 0: taken from it)
  shuffle_buffer, seed
  eval_length_buckets  False (default, as `bert_squad`'s: span_qa.EVAL_LENGTH_BUCKETS says why); True: eval / test
                  batches grouped by length, [B, L] for each batch's bucket length L (`prelude.EvalPasses`)

Which splits a task has (tasks/xtreme.py, as xtreme's download folder holds them): XQuAD dev is SQuAD v1.1 dev
(English only) and its test the 11 XQuAD languages; MLQA has dev and test in its 7 languages; TyDiQA-GoldP has no
dev, its test split is the official GoldP dev set of 9 languages. Test JSON keeps its answers where the download
has them (all three do), so the test split can be scored too.

Batches are `bert_squad`'s (`span_qa.py`): input_ids, input_mask, segment_ids int32 [B, S]; train batches also
start_positions, end_positions, is_impossible int32 [B] and batch_mask 1; eval / test batches unique_ids int32 [B]
(-1 on padding rows) and batch_mask float32 [B]. `valid_iter(lang)` / `test_iter(lang)` pass once over one
language's features in record order (default: English, else the first language). Every language's batches have the
same shape [B, S], so one compiled step serves them all (with eval_length_buckets: a few shapes, [B, L] for each
bucket length L, with their split positions; the span logits go back to [S] before decoding).
`eval_data(meta_data, kind, lang)` loads what decoding maps a language's predictions back through (questions,
features, the SQuAD JSON).

Meta data: eval_splits / test_splits are the languages (task order), eval_sizes / test_sizes their feature counts;
files {'train': path, 'eval' | 'test': {lang: {'records', 'features', 'json'}}}; extra holds benchmark 'xtreme',
kind, languages, main_eval_language, missing (languages the download folder lacked when the records were written),
num_questions ({'eval' | 'test': {lang: questions}}), doc_stride, max_query_length, do_lower_case, meta_data_file,
vocab_file and prediction_writer ('xtreme_qa_predict', what mode 'predict' runs by default).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

import ml_collections
import tensorflow as tf
from absl import logging

from core import errors
from core.dataset import Dataset, DatasetMetaData
from projects.bert.datasets import pipeline, prelude, records, span_qa, xtreme_pairs
from projects.bert.tasks import xtreme

QA_TASKS = tuple(name for name, task in xtreme.XTREME_TASKS.items() if task.kind == xtreme.SPAN_QA)
KINDS = ('eval', 'test')  # record-file names of the dev and test splits (xtreme_records.EVAL / TEST)
_LENGTHS = ('max_seq_length', 'doc_stride', 'max_query_length')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'task': '', 'data_dir': '', 'languages': '', 'max_seq_length': None,
                                    'doc_stride': None, 'max_query_length': None, 'shuffle_buffer': 10_000,
                                    'seed': 0, 'eval_length_buckets': span_qa.EVAL_LENGTH_BUCKETS,
                                    **prelude.TRAIN_GROUPING_DEFAULTS})


def qa_task(name: str) -> xtreme.XtremeTask:
  """The XTREME QA task `name`; ConfigError for another task or kind."""
  return xtreme_pairs.xtreme_task(name, (xtreme.SPAN_QA,), 'bert_xtreme_qa')


def read_meta_data(path: str, task: xtreme.XtremeTask) -> Dict[str, Any]:
  """The `prepare xtreme` meta data at `path`, checked to be `task`'s QA records."""
  command = xtreme_pairs.prepare_command(task.name, os.path.dirname(path) or '.')
  meta = records.read_meta_json(
      path, ('task', 'kind', 'max_seq_length', 'train_data_size', 'files', 'eval_data_sizes', 'test_data_sizes'),
      missing=f'XTREME meta data {path!r} does not exist. Write it (with the records) by running:\n  {command}',
      writers='`prepare xtreme`', command=command)
  problems = []
  if meta['task'] != task.name:
    problems.append(f'task is {meta["task"]!r}, config.dataset.task is {task.name!r}')
  if meta['kind'] != xtreme.SPAN_QA:
    problems.append(f'kind is {meta["kind"]!r}, not {xtreme.SPAN_QA!r}')
  if not meta['files'].get('train'):
    problems.append('files lists no train records')
  if problems:
    raise errors.DataError(f'{path} does not describe the XTREME {task.name} records: {"; ".join(problems)}. '
                           f'Point config.dataset.data_dir at the {task.name} data, or re-create it with:\n  '
                           f'{xtreme_pairs.prepare_command(task.name)}')
  return meta


def _check_lengths(meta: Mapping[str, Any], path: str, cfg: ml_collections.ConfigDict, task_name: str) -> None:
  for field in _LENGTHS:
    want = cfg.get(field)
    if want and field in meta and int(want) != int(meta[field]):
      raise errors.DataError(f'{path} says {field}={meta[field]} but config.dataset.{field}={want}: re-run `prepare '
                             f'xtreme --task={task_name}` with --{field}={want}, or set config.dataset.{field}='
                             f'{meta[field]} (or 0 to take it from the meta data).')


def eval_data(meta_data: DatasetMetaData, kind: str, lang: str) -> span_qa.SquadEvalData:
  """The questions, features and SQuAD JSON of `lang`'s `kind` ('eval' or 'test') split of a `bert_xtreme_qa`
  dataset (its meta data); DataError when the files do not belong together."""
  files = meta_data.files[kind][lang]
  sizes = meta_data.eval_sizes if kind == 'eval' else meta_data.test_sizes
  return span_qa.read_eval_data(
      files['json'], files['features'], files['records'], sizes[lang], version_2_with_negative=False,
      do_lower_case=bool(meta_data.extra.get('do_lower_case')),
      fix=(f'the files come from different `prepare xtreme` runs: re-create them together '
           f'({meta_data.extra["meta_data_file"]})'))


@prelude.builder('bert_xtreme_qa', default_config)
def build(ctx: prelude.BuilderContext, config: ml_collections.ConfigDict) -> Dataset:
  """Builds an XTREME QA dataset (see the module docstring)."""
  cfg = ctx.cfg
  task = qa_task(cfg.task)
  fix_command = xtreme_pairs.prepare_command(task.name)
  if not cfg.data_dir:
    raise errors.ConfigError(f'Set config.dataset.data_dir to the --output_dir of:\n  {fix_command}')
  meta_path = os.path.join(cfg.data_dir, f'{task.name}_meta_data')
  meta = read_meta_data(meta_path, task)
  _check_lengths(meta, meta_path, cfg, task.name)
  seq_len = int(meta['max_seq_length'])
  base, listed = os.path.dirname(meta_path), meta['files']

  def path_of(name: str, what: str) -> str:
    path = name if os.path.isabs(name) or '://' in name else os.path.join(base, name)
    if not tf.io.gfile.exists(path):
      raise errors.MissingFileError(f'The XTREME {task.name} {what} {path!r}, listed in {meta_path}, does not '
                                    f'exist. Write the records again with:\n  '
                                    f'{xtreme_pairs.prepare_command(task.name, base)}')
    return path

  available = {kind: [lang for lang in task.languages if lang in (listed.get(kind) or {})] for kind in KINDS}
  if cfg.languages:  # the chosen languages, of whichever split has them
    chosen = xtreme_pairs.chosen_languages(cfg.languages, sorted(set(available['eval']) | set(available['test']),
                                                                 key=task.languages.index), task, meta_path)
    available = {kind: [lang for lang in langs if lang in chosen] for kind, langs in available.items()}
  roles = {'records': 'records', 'features': 'eval features', 'json': 'SQuAD JSON'}
  files: Dict[str, Any] = {'train': path_of(listed['train'], 'train records')}
  for kind in KINDS:
    files[kind] = {lang: {role: path_of(listed[kind][lang][role], f'{kind} {what} of {lang!r}')
                          for role, what in roles.items()} for lang in available[kind]}
  sizes = {kind: {lang: int(meta[f'{kind}_data_sizes'][lang]) for lang in files[kind]} for kind in KINDS}
  train_size = int(meta['train_data_size'])

  fix = (f'the meta data {meta_path} says max_seq_length={seq_len}; re-create the records and the meta data '
         f'together with:\n  {fix_command}')
  train_spec, eval_spec = span_qa.train_record_spec(seq_len), span_qa.eval_record_spec(seq_len)
  checked = [(files['train'], train_spec)] + [(f['records'], eval_spec) for kind in KINDS for f in files[kind].values()]
  compression = records.check_first_records(checked, allowed_extra=span_qa.EXTRA_FEATURES, fix=fix)

  train_iter = ctx.train_iterator([files['train']], spec=train_spec, dataset=f'bert_xtreme_qa/{task.name}',
                                  compression=compression, cycle_length=1, add_batch_fields=span_qa.add_train_mask,
                                  warn_few_files=False,  # one English train file is XTREME's layout
                                  num_examples=int(meta['train_data_size']))
  # One pass per language's file, built once; grouped by length with config.dataset.eval_length_buckets.
  passes = prelude.EvalPasses(ctx, eval_spec, compression, meta_path, fix_command, pad_values={'unique_ids': -1},
                              mask_from=None)

  def language_iter(kind: str):
    langs = list(files[kind])
    default = xtreme.TARGET_LANGUAGE if xtreme.TARGET_LANGUAGE in langs else next(iter(langs), None)
    split_name = 'dev' if kind == 'eval' else 'test'

    def make(lang: Optional[str] = None):
      lang = default if lang is None else lang
      if lang not in files[kind]:
        raise errors.DataError(f'XTREME {task.name} has no {split_name} records for {lang!r}; it has '
                               f'{", ".join(langs)}.')
      return passes(files[kind][lang]['records'], sizes[kind][lang], None, f'{kind}_data_sizes[{lang!r}]')
    return make if langs else None

  flat_files = {'train': files['train'], **{kind: {lang: f['records'] for lang, f in files[kind].items()}
                                            for kind in KINDS}}
  meta_data = DatasetMetaData(
      task=task.name,
      input_specs=pipeline.input_specs({k: v for k, v in train_spec.items() if k != 'unique_ids'},
                                       {'batch_mask': ((), 'float32')}),
      num_train_examples=train_size,  # features (windows), what an epoch passes over
      max_seq_length=seq_len,
      **{**ctx.split_fields(flat_files, sizes), 'files': files},
      extra={
          'benchmark': xtreme_pairs.BENCHMARK,
          'kind': task.kind,
          'languages': list(meta.get('languages') or []),
          'main_eval_language': meta.get('main_eval_language'),
          'missing': meta.get('missing') or {},
          'num_questions': {kind: {lang: int((meta.get(f'{kind}_num_examples') or {}).get(lang, 0))
                                   for lang in files[kind]} for kind in KINDS},
          'doc_stride': meta.get('doc_stride'),
          'max_query_length': meta.get('max_query_length'),
          'do_lower_case': bool(meta.get('do_lower_case')),
          'meta_data_file': meta_path,
          'vocab_file': meta.get('vocab_file'),
          'prediction_writer': 'xtreme_qa_predict',
      })
  missing = sorted({lang for langs in (meta.get('missing') or {}).values() for lang in langs})
  if missing:  # named, not a crash: the run scores the languages it has (xtreme#34)
    logging.warning('XTREME %s: no data for %s in the download folder when %s was written; these languages are '
                    'skipped.', task.name, ', '.join(missing), meta_path)
  if meta.get('do_lower_case'):
    logging.warning('%s says do_lower_case=true: the records are lower-cased, which suits an uncased model only. '
                    'mBERT is cased: re-run `prepare xtreme` without --do_lower_case=true for it.', meta_path)
  logging.info('bert_xtreme_qa %s: train %d features, dev %s, test %s, S=%d.', task.name, train_size,
               sizes['eval'], sizes['test'], seq_len)
  return Dataset(train_iter=train_iter, valid_iter=language_iter('eval'), test_iter=language_iter('test'),
                 meta_data=meta_data)

