"""`bert_xtreme`: the XTREME records of the fine-tuned sentence-pair (XNLI, PAWS-X) and tagging (UD-POS, PAN-X)
tasks that `prepare xtreme` writes, for the zero-shot protocol: train on the English records, evaluate every
language of the task, one eval split per language.

Config (`config.dataset`, defaults in `default_config()`):
  task            'xnli', 'pawsx', 'udpos' or 'panx' (tasks/xtreme.py spellings accepted: 'PAWS-X', 'ud-pos')
  data_dir        the --output_dir of `prepare xtreme` (its {task}_meta_data names the files)
  languages       dev / test languages to read ('' or []: every language the meta data lists); a language
                  without dev data (UD-POS kk, th, tl, yo) is read for test only
  max_seq_length  checked against the meta data (None or 0: taken from it)
  shuffle_buffer, seed
  eval_length_buckets  True (default): eval batches grouped by length, as `bert_glue`'s

Batches (host-local numpy). Sentence pairs, as `bert_glue`'s: input_ids, input_mask, segment_ids int32 [B, S];
label_ids int32 [B]; example_id int32 [B] (the example's position in its language's file, -1 on padding);
batch_mask float32 [B]. Tagging, tagging_data_lib's records: input_ids, input_mask, segment_ids int32 [B, S];
label_ids int32 [B, S] (-1 where not scored: [CLS], [SEP], padding, non-first WordPieces; test records hold 0 on
first pieces); sentence_id, sub_sentence_id int32 [B] (a sentence longer than S - 2 WordPieces is split into
records 0, 1, ... of one sentence_id, numbered from 0 in its file); batch_mask float32 [B]. A split's size is its
record count; `extra['num_sentences']` gives its sentences.
`valid_iter(lang, num_examples=None)` / `test_iter(lang, ...)` pass once over one language's dev / test records in
file order (default: English, else the first language); `valid_iter('train')` passes over the train records. Every
language's batches take the same few shapes ([B, S] without eval_length_buckets; tagging is never bucketed), so
the compiled eval steps serve them all.

Meta data: eval_splits / test_splits are the languages (task order), eval_sizes / test_sizes their record counts;
extra holds benchmark 'xtreme', kind, label_list, languages, main_eval_language, missing (languages the download
folder lacked when the records were written), without_dev (the task's languages that have no dev data in
xtreme's layout), num_sentences (tagging: {'eval' | 'test': {lang: sentences}}), do_lower_case, meta_data_file and
vocab_file.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Sequence

import ml_collections
import tensorflow as tf
from absl import logging

from core import errors
from core.dataset import Dataset, DatasetMetaData
from projects.bert.datasets import classification, pipeline, prelude, records
from projects.bert.tasks import xtreme

BENCHMARK = 'xtreme'
KINDS = (xtreme.SENTENCE_PAIR, xtreme.TAGGING)  # the fine-tuned kinds whose records this builder reads
TASKS = tuple(name for name, task in xtreme.XTREME_TASKS.items() if task.kind in KINDS)


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'task': '',
      'data_dir': '',
      'languages': '',
      'max_seq_length': None,
      'shuffle_buffer': 10_000,
      'seed': 0,
      'eval_length_buckets': True,  # prelude.EvalPasses: eval batches grouped by length
      **prelude.TRAIN_GROUPING_DEFAULTS,  # train batches grouped by length (off here; the configs turn it on)
  })


def prepare_command(task_name: str, out_dir: str = 'OUT_DIR') -> str:
  return (f'python -m projects.bert.datasets.prepare xtreme --task={task_name} --xtreme_dir=XTREME_DIR '
          f'--vocab_file=VOCAB --output_dir={out_dir}')


def xtreme_task(name: str, kinds: Sequence[str], builder: str) -> xtreme.XtremeTask:
  """The XTREME task `name` if its kind is one of `kinds` (what `builder` reads); ConfigError otherwise."""
  names = [n for n, t in xtreme.XTREME_TASKS.items() if t.kind in kinds]
  if not name:
    raise errors.ConfigError(f'config.dataset.task is not set; XTREME tasks of {builder}: {", ".join(names)}.')
  try:
    task = xtreme.get_task(name)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  if task.kind not in kinds:
    raise errors.ConfigError(f'config.dataset.task={name!r} is an XTREME {task.kind} task; {builder} reads the tasks '
                             f'{", ".join(names)}.')
  return task


def finetuned_task(name: str) -> xtreme.XtremeTask:
  """The XTREME sentence-pair or tagging task `name`; ConfigError for another task or kind."""
  return xtreme_task(name, KINDS, 'bert_xtreme')


def read_meta_data(path: str, task: xtreme.XtremeTask) -> Dict[str, Any]:
  """The `prepare xtreme` meta data at `path`, checked to be `task`'s records."""
  meta = records.read_meta_json(
      path, ('task', 'kind', 'max_seq_length', 'train_data_size', 'label_list', 'files', 'eval_data_sizes'),
      missing=(f'XTREME meta data {path!r} does not exist. Write it (with the records) by running:\n  '
               f'{prepare_command(task.name, os.path.dirname(path) or ".")}'),
      writers='`prepare xtreme`', command=prepare_command(task.name))
  problems = []
  if meta['task'] != task.name:
    problems.append(f'task is {meta["task"]!r}, config.dataset.task is {task.name!r}')
  if meta['kind'] != task.kind:
    problems.append(f'kind is {meta["kind"]!r}, not {task.kind!r}')
  if list(meta['label_list'] or []) != list(task.labels):
    problems.append(f'label_list is {meta["label_list"]}, XTREME {task.name} has {list(task.labels)}')
  if not meta['files'].get('train'):
    problems.append('files lists no train records')
  uncounted = [lang for kind in ('eval', 'test') for lang in meta['files'].get(kind) or {}
               if lang not in (meta.get(f'{kind}_num_examples') or {})]  # tagging: sentences per language
  if task.kind == xtreme.TAGGING and uncounted:
    problems.append('eval_num_examples / test_num_examples (sentences per language) are missing')
  if problems:
    raise errors.DataError(f'{path} does not describe the XTREME {task.name} records: {"; ".join(problems)}. '
                           f'Point config.dataset.data_dir at the {task.name} data, or re-create it with:\n  '
                           f'{prepare_command(task.name)}')
  return meta


def chosen_languages(given: Any, available: Sequence[str], task: xtreme.XtremeTask, meta_path: str) -> List[str]:
  """config.dataset.languages ('de,zh', a list, or empty = all) among `available` (task order): the languages
  with dev or test records."""
  if not given:
    return list(available)
  wanted = [s.strip() for s in given.split(',')] if isinstance(given, str) else [str(s) for s in given]
  wanted = [lang for lang in wanted if lang]
  absent = [lang for lang in wanted if lang not in available]
  if absent:
    raise errors.ConfigError(f'config.dataset.languages names {", ".join(absent)}, which {meta_path} has no '
                             f'records for; it has {", ".join(available)} (XTREME {task.name}: '
                             f'{", ".join(task.languages)}). Re-run prepare with these languages in the download '
                             f'folder, or leave them out.')
  return [lang for lang in available if lang in wanted]


def tagging_record_spec(max_seq_length: int) -> records.RecordSpec:
  """tagging_data_lib's features (module docstring); batch_mask comes from is_real_example, absent: 1."""
  return {
      **{k: records.Feature(k, 'int', max_seq_length) for k in ('input_ids', 'input_mask', 'segment_ids', 'label_ids')},
      **{k: records.Feature(k, 'int', 1, scalar=True) for k in ('sentence_id', 'sub_sentence_id')},
      'is_real_example': records.Feature('is_real_example', 'int', 1, scalar=True, required=False, default=1),
  }


@prelude.builder('bert_xtreme', default_config)
def build(ctx: prelude.BuilderContext, config: ml_collections.ConfigDict) -> Dataset:
  """Builds an XTREME sentence-pair or tagging dataset (see the module docstring)."""
  cfg = ctx.cfg
  task = finetuned_task(cfg.task)
  if not cfg.data_dir:
    raise errors.ConfigError(f'Set config.dataset.data_dir to the --output_dir of:\n  {prepare_command(task.name)}')
  meta_path = os.path.join(cfg.data_dir, f'{task.name}_meta_data')
  meta = read_meta_data(meta_path, task)
  seq_len = int(meta['max_seq_length'])
  if cfg.max_seq_length and int(cfg.max_seq_length) != seq_len:
    raise errors.DataError(f'{meta_path} says max_seq_length={seq_len} but config.dataset.max_seq_length='
                           f'{cfg.max_seq_length}: re-run prepare with --max_seq_length={cfg.max_seq_length}, or set '
                           f'config.dataset.max_seq_length={seq_len} (or 0 to take it from the meta data).')
  model = config.get('model')
  model_labels = model.get('num_labels') if model is not None else None
  if model_labels and int(model_labels) != task.num_labels:
    raise errors.ConfigError(f'config.model.num_labels={model_labels} but XTREME {task.name} has {task.num_labels} '
                             f'labels; set it to {task.num_labels}, or 0 to take it from the meta data.')

  base = os.path.dirname(meta_path)
  listed = meta['files']

  def path_of(name: str, what: str) -> str:
    path = name if os.path.isabs(name) or '://' in name else os.path.join(base, name)
    if not tf.io.gfile.exists(path):
      raise errors.MissingFileError(f'The XTREME {task.name} {what} records {path!r}, listed in {meta_path}, do not '
                                    f'exist. Write them again with:\n  {prepare_command(task.name, base)}')
    return path

  present = {kind: [lang for lang in task.languages if lang in (listed.get(kind) or {})] for kind in ('eval', 'test')}
  chosen = chosen_languages(cfg.languages, [lang for lang in task.languages if any(
      lang in langs for langs in present.values())], task, meta_path)
  eval_langs, test_langs = ([lang for lang in present[kind] if lang in chosen] for kind in ('eval', 'test'))
  files: Dict[str, Any] = {'train': path_of(listed['train'], 'train'),
                           'eval': {lang: path_of(listed['eval'][lang], f'dev ({lang})') for lang in eval_langs},
                           'test': {lang: path_of(listed['test'][lang], f'test ({lang})') for lang in test_langs}}
  sizes = {kind: {lang: int((meta.get(f'{kind}_data_sizes') or {})[lang]) for lang in files[kind]}
           for kind in ('eval', 'test')}
  train_size = int(meta['train_data_size'])

  spec = classification.record_spec(seq_len, regression=False) if task.kind == xtreme.SENTENCE_PAIR else (
      tagging_record_spec(seq_len))
  fix = (f'the meta data {meta_path} says max_seq_length={seq_len}; re-create the records and the meta data '
         f'together with:\n  {prepare_command(task.name)}')
  all_files = [files['train'], *files['eval'].values(), *files['test'].values()]
  compression = records.check_first_records([(p, spec) for p in all_files], fix=fix)

  train_iter = ctx.train_iterator([files['train']], spec=spec, dataset=f'bert_xtreme/{task.name}',
                                  compression=compression, cycle_length=1,
                                  add_batch_fields=prelude.mask_from_is_real_example,
                                  warn_few_files=False,  # one English train file is XTREME's layout
                                  num_examples=int(meta['train_data_size']))
  # Tagging's eval outputs are per token ([B, S, labels]): its batches keep one shape (not length-bucketed).
  passes = prelude.EvalPasses(ctx, spec, compression, meta_path, prepare_command(task.name),
                              bucketable=task.kind != xtreme.TAGGING)

  def language_iter(kind: str, available: Mapping[str, str]):
    default = xtreme.TARGET_LANGUAGE if xtreme.TARGET_LANGUAGE in available else next(iter(available), None)
    return passes.split_iterator(
        kind, available, sizes[kind], default, (files['train'], train_size),
        describe=lambda lang: f'the XTREME {task.name} {kind} records of {lang!r}',
        missing=lambda lang: errors.DataError(f'XTREME {task.name} has no {"dev" if kind == "eval" else kind} '
                                              f'records for {lang!r}; it has {", ".join(available)}.'))

  meta_data = DatasetMetaData(
      task=task.name,
      input_specs=pipeline.input_specs(
          {k: f for k, f in spec.items() if k != 'is_real_example'}, {'batch_mask': ((), 'float32')}),
      num_train_examples=train_size,
      num_labels=task.num_labels,
      max_seq_length=seq_len,
      **ctx.split_fields(files, sizes),
      extra={
          'benchmark': BENCHMARK,
          'kind': task.kind,
          'label_list': list(task.labels),
          'languages': list(meta.get('languages') or []),
          'main_eval_language': meta.get('main_eval_language'),
          'missing': meta.get('missing') or {},
          'without_dev': list((meta.get('without_split') or {}).get('dev') or task.languages_without(xtreme.DEV)),
          **({'num_sentences': {kind: {lang: int(meta[f'{kind}_num_examples'][lang]) for lang in files[kind]}
                                for kind in ('eval', 'test')}} if task.kind == xtreme.TAGGING else {}),
          'do_lower_case': meta.get('do_lower_case'),
          'meta_data_file': meta_path,
          'vocab_file': meta.get('vocab_file'),
      })
  if meta.get('do_lower_case'):  # the records were lower-cased: wrong for mBERT's cased vocabulary
    logging.warning('%s says do_lower_case=true: the records are lower-cased, which suits an uncased model only. '
                    'mBERT is cased: re-run `prepare xtreme` without --do_lower_case=true for it.', meta_path)
  logging.info('bert_xtreme %s: train %d, dev %s, test %s, S=%d.', task.name, train_size, sizes['eval'],
               sizes['test'], seq_len)
  return Dataset(train_iter=train_iter, valid_iter=language_iter('eval', files['eval']) if files['eval'] else None,
                 test_iter=language_iter('test', files['test']) if files['test'] else None, meta_data=meta_data)
