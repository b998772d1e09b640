"""`bert_pretraining`: the masked-LM + next-sentence records of TF-Models' `create_pretraining_data.py`, or the
sentence-order ones of `prepare pretraining --sentence_order=true` (`pair_task` below).

Config (`config.dataset`, defaults in `default_config()`):
  train_files              file, glob pattern, comma-separated list, or list (local, gs://, any tf.io.gfile path)
  eval_files               same, optional ('' = no eval); read once per evaluation, every record exactly once
  max_seq_length           S; checked against the records (None or 0: taken from them)
  max_predictions_per_seq  P; checked against the records (None or 0: taken from them)
  shuffle_buffer, seed     record shuffling (deterministic for a seed, so a resumed run continues exactly)
  cycle_length             files read in parallel (interleaved) per process
  eval_max_examples        read at most this many eval records (None or 0: all)
  pair_task                what `next_sentence_labels` holds: 'nsp' (next sentence, 1 = random next; default) or
                           'sop' (ALBERT's sentence order, 1 = swapped: `prepare pretraining --sentence_order=true`);
                           checked against the pair task that each file's `.prepare_manifest.json` entry records
                           (files without one, e.g. written by create_pretraining_data.py itself, are NSP)

Batches (host-local numpy, batch B = config.batch_size // process_count): input_ids, input_mask, segment_ids
int32 [B, S]; masked_lm_positions, masked_lm_ids int32 [B, P]; masked_lm_weights float32 [B, P];
next_sentence_labels int32 [B]. Eval batches (config.eval_batch_size) add batch_mask float32 [B] (0 = padding).
Meta data (`core.dataset.DatasetMetaData`): task 'pretraining', max_seq_length, the eval split 'validation' when
there are eval_files (num_train_examples is not counted: None); extra holds max_predictions_per_seq,
num_train_files, compression, feature_names ('v1'/'v2'), max_token_id_seen (in the first record of each file) and
pair_task (which names the model's pair metrics: nsp_* or sop_*).
Records written with `--use_v2_feature_names` (input_word_ids, input_type_ids) and `--gzip_compress` are read too.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import ml_collections
import tensorflow as tf
from absl import logging

from core import errors
from core.dataset import Dataset, DatasetMetaData
from projects.bert.datasets import pipeline, prelude, records

# Batch key -> record name, for the two naming schemes of create_pretraining_data.py.
_V1_NAMES = {'input_ids': 'input_ids', 'input_mask': 'input_mask', 'segment_ids': 'segment_ids'}
_V2_NAMES = {'input_ids': 'input_word_ids', 'input_mask': 'input_mask', 'segment_ids': 'input_type_ids'}


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'train_files': '',
      'eval_files': '',
      'max_seq_length': None,
      'max_predictions_per_seq': None,
      'pair_task': 'nsp',
      'shuffle_buffer': 2_000,
      'seed': 0,
      'cycle_length': 8,
      'eval_max_examples': None,
      **prelude.TRAIN_GROUPING_DEFAULTS,  # train batches grouped by length: off (rows are mostly full-length)
  })


def record_spec(max_seq_length: Optional[int], max_predictions_per_seq: Optional[int],
                v2_names: bool = False) -> records.RecordSpec:
  """The seven pretraining features (None lengths: not checked)."""
  names = _V2_NAMES if v2_names else _V1_NAMES
  seq = {key: records.Feature(names[key], 'int', max_seq_length) for key in ('input_ids', 'input_mask',
                                                                             'segment_ids')}
  return {
      **seq,
      'masked_lm_positions': records.Feature('masked_lm_positions', 'int', max_predictions_per_seq),
      'masked_lm_ids': records.Feature('masked_lm_ids', 'int', max_predictions_per_seq),
      'masked_lm_weights': records.Feature('masked_lm_weights', 'float', max_predictions_per_seq, dtype=tf.float32),
      'next_sentence_labels': records.Feature('next_sentence_labels', 'int', 1, scalar=True),
  }


PAIR_TASKS = {'nsp': 'next-sentence prediction (NSP)', 'sop': "ALBERT's sentence-order prediction (SOP)"}


def _manifest_entry(path: str, manifests: Dict[str, List[Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
  """The last `prepare pretraining` set in `path`'s folder manifest that wrote it (the one on disk), or None."""
  folder, name = os.path.dirname(path) or '.', os.path.basename(path)
  if folder not in manifests:
    manifests[folder] = records.read_manifest(folder)
  entries = [run for run in manifests[folder] if name in run.get('outputs', [])]
  return entries[-1] if entries else None


def check_pair_task(files: List[str], field: str, pair_task: str) -> None:
  """DataError naming the first of `files` whose records were written for the other pair task than `pair_task`
  (config.dataset.pair_task), with both fixes. A file's pair task is the one `prepare pretraining` recorded for its
  set in the folder's manifest; 'nsp' for files no manifest names (written by create_pretraining_data.py itself)
  and for sets written before the mark existed."""
  if pair_task not in PAIR_TASKS:
    raise errors.ConfigError(f'config.dataset.pair_task={pair_task!r}: expected one of {", ".join(PAIR_TASKS)} '
                             f'(next-sentence or sentence-order prediction; the `,sop` variant sets sop).')
  manifests: Dict[str, List[Dict[str, Any]]] = {}
  for path in files:
    entry = _manifest_entry(path, manifests)
    found = entry.get('pair_task', 'nsp') if entry else 'nsp'
    if found == pair_task:
      continue
    manifest = os.path.join(os.path.dirname(path) or '.', records.MANIFEST)
    if entry is None:
      why = f'no {manifest} names it: records of create_pretraining_data.py itself'
    elif 'pair_task' not in entry:
      why = f'{manifest} has no pair-task mark for its set: written before SOP existed'
    else:
      why = f'{manifest} marks its set pair_task {found!r}'
    if pair_task == 'sop':
      fix = ('write sentence-order records with `python -m projects.bert.datasets.prepare pretraining '
             '--sentence_order=true ...`, or pretrain with NSP on these (without the `,sop` variant, or '
             '--config.dataset.pair_task=nsp).')
    else:
      fix = ('pretrain with SOP on these (the variant pretrain.py:SIZE,sop, or --config.dataset.pair_task=sop), or '
             're-create them without --sentence_order=true.')
    raise errors.DataError(f'config.dataset.{field}: {path} holds {PAIR_TASKS[found]} records ({why}) but '
                           f'config.dataset.pair_task is {pair_task!r}: {fix}')


def _fix_hint(field: str, found: int, flag: str) -> str:
  return (f'set config.dataset.{field}={found} to read these records, or re-create them with '
          f'`python -m projects.bert.datasets.prepare pretraining ... --{flag}=<config value>`.')


def validate_files(files: List[str], compression: str, max_seq_length: Optional[int],
                   max_predictions_per_seq: Optional[int]) -> Dict[str, Any]:
  """Checks the first record of every file; returns {'max_seq_length', 'max_predictions_per_seq', 'v2_names'}.

  Lengths left None are taken from the first file and then required of the others.
  """
  seq_len, preds, v2, max_id = max_seq_length, max_predictions_per_seq, None, 0
  for path in files:
    example = records.read_first_example(path, compression)
    names = set(example.features.feature)
    file_v2 = 'input_word_ids' in names
    if v2 is None:
      v2 = file_v2
    elif v2 != file_v2:
      raise errors.DataError(f'{path} uses {"v2" if file_v2 else "v1"} feature names but {files[0]} does not; '
                             f're-create the files with the same --use_v2_feature_names setting.')
    found = records.record_features(example)
    # Infer unset lengths before the check, so that the check reports every other difference.
    seq_name = _V2_NAMES['input_ids'] if v2 else 'input_ids'
    if seq_len is None and seq_name in found:
      seq_len = found[seq_name][1]
    if preds is None and 'masked_lm_ids' in found:
      preds = found['masked_lm_ids'][1]
    hint = 'these are not the records of create_pretraining_data.py; point config.dataset.*_files at them.'
    if seq_name in found and found[seq_name][1] != seq_len:
      hint = _fix_hint('max_seq_length', found[seq_name][1], 'max_seq_length')
    elif 'masked_lm_ids' in found and found['masked_lm_ids'][1] != preds:
      hint = _fix_hint('max_predictions_per_seq', found['masked_lm_ids'][1], 'max_predictions_per_seq')
    records.check_record(path, example, record_spec(seq_len, preds, v2), fix=hint)
    for name in (seq_name, 'masked_lm_ids'):  # lets the model catch records made with a larger vocab
      max_id = max([max_id, *example.features.feature[name].int64_list.value])
  return {'max_seq_length': seq_len, 'max_predictions_per_seq': preds, 'v2_names': bool(v2),
          'max_token_id': max_id, 'checked_files': files}


@prelude.builder('bert_pretraining', default_config)
def build(ctx: prelude.BuilderContext, config: ml_collections.ConfigDict) -> Dataset:
  """Builds the pretraining dataset (see the module docstring)."""
  cfg = ctx.cfg
  train_files = records.expand_file_patterns(cfg.train_files, 'train_files')
  eval_files = records.expand_file_patterns(cfg.eval_files, 'eval_files') if cfg.eval_files else []
  records.refuse_pending_sets(train_files, 'train_files')  # a set that an interrupted `prepare` left half-moved
  records.refuse_pending_sets(eval_files, 'eval_files')
  check_pair_task(train_files, 'train_files', cfg.pair_task)  # NSP and SOP records look alike: the manifest says
  check_pair_task(eval_files, 'eval_files', cfg.pair_task)
  compression = records.common_compression(train_files + eval_files)
  # 0 means "from the records" too: a command line cannot pass None
  found = validate_files(train_files + eval_files, compression, cfg.max_seq_length or None,
                         cfg.max_predictions_per_seq or None)
  seq_len, preds = found['max_seq_length'], found['max_predictions_per_seq']
  spec = record_spec(seq_len, preds, found['v2_names'])
  train_iter = ctx.train_iterator(train_files, spec=spec, dataset='bert_pretraining', compression=compression,
                                  cycle_length=cfg.cycle_length)

  eval_sizes: Dict[str, int] = {}
  valid_iter = None
  if eval_files:
    n_eval = sum(records.count_records(f, compression) for f in eval_files)
    if cfg.eval_max_examples:
      n_eval = min(n_eval, int(cfg.eval_max_examples))
    eval_sizes['validation'] = n_eval
    # Built once: every pass re-iterates the same pipeline (no re-tracing).
    eval_ds = ctx.eval_dataset(eval_files, spec=spec, compression=compression, num_examples=n_eval)

    def valid_iter(split: Optional[str] = None):
      """One pass over the eval records: batches of eval_batch_size // process_count, with batch_mask."""
      if split not in (None, 'validation'):
        raise errors.DataError(f'Unknown pretraining eval split {split!r}; the only one is "validation".')
      return pipeline.numpy_batches(eval_ds, eval_files)

  meta = DatasetMetaData(
      task='pretraining',
      input_specs=pipeline.input_specs(spec),
      max_seq_length=seq_len,
      eval_splits=tuple(eval_sizes),
      eval_sizes=eval_sizes,
      num_eval_batches={s: ctx.num_eval_batches(n) for s, n in eval_sizes.items()},
      files={'train': train_files, 'eval': eval_files},
      extra={
          'max_predictions_per_seq': preds,
          'num_train_files': len(train_files),
          'compression': compression,
          'feature_names': 'v2' if found['v2_names'] else 'v1',
          'max_token_id_seen': found['max_token_id'],  # in the first record of each file
          'pair_task': cfg.pair_task,
      })
  logging.info('bert_pretraining: %d train files (%s), S=%d, P=%d, host batch %d; eval examples: %s.',
               len(train_files), compression or 'uncompressed', seq_len, preds, ctx.train_batch,
               eval_sizes or 'none')
  return Dataset(train_iter=train_iter, valid_iter=valid_iter, test_iter=None, meta_data=meta)
