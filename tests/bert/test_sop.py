"""Sentence-order prediction (ALBERT's SOP) beside NSP: `prepare pretraining --sentence_order=true` writes pairs of
adjacent parts of one document, swapped half the time (label 1 = swapped), masked as upstream masks; its set is
marked 'sop'; the `bert_pretraining` builder refuses records of the other pair task; `pretrain.py:tiny,sop` trains
on them and logs sop_* metrics (no nsp_* ones).

The corpus: documents of numbered two-token sentences ('d007s03 more'; each document's first one 'd007s00 begin',
its last 'd007s05 end'), so that every record's sentences can be traced back to their document and place in it.
"""

import json
import os
import re
import shutil
import subprocess

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from core import errors
from core.registry import DATASETS
from projects.bert.datasets import pretraining_writer, records
from tests.bert import data_utils

pytestmark = pytest.mark.long(minutes=2)  # ~40 s of CPU (90-110 s wall on a shared 2-core VM): a child writer, 30 steps

SEQ, PREDS = 17, 3  # 14 tokens of pairs: two-token sentences never need truncating (see `sop` below)
NUM_DOCS = 120
_SENTENCE = re.compile(r'd(\d{3})s(\d{2})$')


def _documents():
  """NUM_DOCS documents of 2..7 two-token sentences, and a last one of a single sentence (which gives no pair)."""
  docs = [[f'd{d:03d}s{k:02d} {_cue(k, 2 + d % 6)}' for k in range(2 + d % 6)] for d in range(NUM_DOCS)]
  return docs + [[f'd{NUM_DOCS:03d}s00 begin']]


def _cue(k, n):
  """The second token of sentence k of n: what makes the order learnable."""
  return 'begin' if k == 0 else 'end' if k == n - 1 else 'more'


@pytest.fixture(scope='module')
def sop(tmp_path_factory):
  """Two SOP record files written by `prepare pretraining --sentence_order=true` (the real child process)."""
  tmp = tmp_path_factory.mktemp('sop')
  docs = _documents()
  vocab = data_utils.write_vocab(tmp / 'vocab.txt', [])  # the special tokens and the characters ...
  with open(vocab, 'a') as f:  # ... and every sentence's tokens
    f.write('\n'.join(['begin', 'more', 'end'] + [s.split()[0] for doc in docs for s in doc]) + '\n')
  corpus = data_utils.write_corpus(tmp / 'corpus.txt', docs)
  files = [str(tmp / 'out' / f'sop-{i}.tfrecord') for i in range(2)]
  counts = pretraining_writer.prepare_pretraining([
      f'--input_file={corpus}', f'--vocab_file={vocab}', f'--output_file={",".join(files)}', '--sentence_order=true',
      f'--max_seq_length={SEQ}', f'--max_predictions_per_seq={PREDS}', '--masked_lm_prob=0.15', '--dupe_factor=4',
      '--random_seed=7', '--do_lower_case=true'])
  assert sorted(counts) == files and min(counts.values()) > 100
  return files, vocab


def _examples(files, vocab):
  """Each record as (original tokens, segment ids, label, masked positions, tokens as written)."""
  words = data_utils.read_vocab(vocab)
  out = []
  for raw in tf.data.TFRecordDataset(files):
    f = tf.train.Example.FromString(raw.numpy()).features.feature
    ids = list(f['input_ids'].int64_list.value)
    n = sum(f['input_mask'].int64_list.value)
    written = [words[i] for i in ids[:n]]
    original = list(written)
    positions = []
    for pos, label_id, weight in zip(f['masked_lm_positions'].int64_list.value, f['masked_lm_ids'].int64_list.value,
                                     f['masked_lm_weights'].float_list.value):
      if weight:
        original[pos] = words[label_id]
        positions.append(pos)
    out.append((original, list(f['segment_ids'].int64_list.value[:n]), f['next_sentence_labels'].int64_list.value[0],
                positions, written))
  return out


def _sentences(tokens):
  """[(document, sentence number)] of a segment's tokens (two tokens a sentence: its number, then begin / more)."""
  assert len(tokens) % 2 == 0, tokens
  out = []
  for number, cue in zip(tokens[::2], tokens[1::2]):
    d, k = map(int, _SENTENCE.match(number).groups())
    assert (cue == 'begin') == (k == 0) and cue in ('begin', 'more', 'end'), tokens
    out.append((d, k))
  return out


def test_sop_pairs_are_adjacent_parts_of_one_document_swapped_half_the_time(sop):
  files, vocab = sop
  examples = _examples(files, vocab)
  swapped, docs_seen = 0, set()
  for original, segments, label, _, _ in examples:
    assert original[0] == '[CLS]' and original[-1] == '[SEP]'
    sep = original.index('[SEP]')
    assert segments == [0] * (sep + 1) + [1] * (len(original) - sep - 1)
    a, b = _sentences(original[1:sep]), _sentences(original[sep + 1:-1])
    assert a and b
    assert len({d for d, _ in a + b}) == 1, (a, b)  # one document
    for part in (a, b):
      assert [k for _, k in part] == list(range(part[0][1], part[0][1] + len(part)))  # consecutive sentences
    first, second = (b, a) if label else (a, b)  # label 1: B precedes A in the document
    assert first[-1][1] + 1 == second[0][1], (label, a, b)  # adjacent: nothing between them, nothing swapped back
    swapped += label
    docs_seen.add(a[0][0])
  assert 0.4 < swapped / len(examples) < 0.6, (swapped, len(examples))
  assert docs_seen == set(range(NUM_DOCS))  # every document of two sentences or more; not the one-sentence one


def test_sop_records_are_masked_as_upstream_masks(sop):
  files, vocab = sop
  masked = 0
  as_mask = 0
  for original, _, _, positions, written in _examples(files, vocab):
    # create_masked_lm_predictions: round(15% of the tokens), at least 1, at most P; never [CLS] / [SEP]; sorted
    assert len(positions) == min(PREDS, max(1, int(round(len(original) * 0.15))))
    assert positions == sorted(positions) and all(original[p] not in ('[CLS]', '[SEP]') for p in positions)
    assert all(w == o for i, (w, o) in enumerate(zip(written, original)) if i not in positions)
    masked += len(positions)
    as_mask += sum(written[p] == '[MASK]' for p in positions)
  assert 0.7 < as_mask / masked < 0.9, (as_mask, masked)  # 80% [MASK], 10% kept, 10% a random word


def test_the_set_is_marked_sop_and_the_child_gets_no_sentence_order_flag(sop, tmp_path, monkeypatch):
  files, vocab = sop
  run = records.read_manifest(os.path.dirname(files[0]))[-1]
  assert run['pair_task'] == 'sop' and run['state'] == 'complete' and '--sentence_order=true' in run['args']
  commands = []

  def copying_writer(cmd, **kwargs):  # stands in for the child: copies the SOP files to the outputs
    commands.append(cmd)
    outputs = [a.split('=', 1)[1] for a in cmd if a.startswith('--output_file=')][0].split(',')
    for src, dst in zip(files, outputs):
      shutil.copy(src, dst)
    return subprocess.CompletedProcess(cmd, 0, '', '')

  monkeypatch.setattr(pretraining_writer.child_process.subprocess, 'run', copying_writer)
  out = tmp_path / 'nsp'
  flags = [f'--input_file={files[0]}', f'--vocab_file={vocab}', f'--output_file={out}/a.tfrecord']
  for off in (['--sentence_order', 'false'], ['--nosentence_order'], []):
    pretraining_writer.prepare_pretraining(flags + off)
    assert pretraining_writer.MODULE in commands[-1] and not any('sentence_order' in a for a in commands[-1])
    assert records.read_manifest(str(out))[-1]['pair_task'] == 'nsp'
  pretraining_writer.prepare_pretraining(flags[:2] + [f'--output_file={out}/b.tfrecord', '--sentence_order'])
  assert pretraining_writer.SOP_MODULE in commands[-1] and not any('sentence_order' in a for a in commands[-1])
  assert [r['pair_task'] for r in records.read_manifest(str(out))] == ['nsp', 'sop']
  with pytest.raises(errors.DataError, match=r'--sentence_order=maybe: expected true .*or false'):
    pretraining_writer.prepare_pretraining(flags + ['--sentence_order=maybe'])


def _config(files, vocab, pair_task=None):
  dataset = {'train_files': ','.join(files), 'shuffle_buffer': 8}
  if pair_task:
    dataset['pair_task'] = pair_task
  config = ml_collections.ConfigDict({'batch_size': 8, 'dataset': dataset,
                                      'model': {'vocab_size': len(data_utils.read_vocab(vocab)), 'type_vocab_size': 2}})
  config.lock()
  return config


def test_the_builder_refuses_records_of_the_other_pair_task_naming_file_field_and_fix(sop, tmp_path):
  files, vocab = sop
  build = DATASETS.get('bert_pretraining')
  assert build(_config(files, vocab, 'sop')).meta_data.extra['pair_task'] == 'sop'
  with pytest.raises(errors.DataError) as e:
    build(_config(files, vocab))  # the default: NSP
  message = str(e.value)
  for needle in ('config.dataset.train_files', files[0], 'sentence-order prediction (SOP) records', records.MANIFEST,
                 "config.dataset.pair_task is 'nsp'", 'pretrain.py:SIZE,sop', '--config.dataset.pair_task=sop'):
    assert needle in message, (needle, message)
  # A file no manifest names (written by create_pretraining_data.py itself, or an older set): NSP records.
  os.makedirs(tmp_path / 'plain')
  plain = str(tmp_path / 'plain' / 'a.tfrecord')
  shutil.copy(files[0], plain)
  assert build(_config([plain], vocab)).meta_data.extra['pair_task'] == 'nsp'
  with pytest.raises(errors.DataError) as e:
    build(_config([plain], vocab, 'sop'))
  message = str(e.value)
  for needle in (plain, 'next-sentence prediction (NSP) records', f'no {tmp_path}/plain/{records.MANIFEST} names it',
                 "config.dataset.pair_task is 'sop'", '--sentence_order=true',
                 '--config.dataset.pair_task=nsp'):
    assert needle in message, (needle, message)
  # A set written before the mark existed: NSP too.
  with open(tmp_path / 'plain' / records.MANIFEST, 'w') as f:
    json.dump({'runs': [{'outputs': ['a.tfrecord'], 'args': [], 'state': 'complete'}]}, f)
  with pytest.raises(errors.DataError, match=r'NSP\) records \(.*has no pair-task mark for its set'):
    build(_config([plain], vocab, 'sop'))
  with pytest.raises(errors.ConfigError, match=r"pair_task='order': expected one of nsp, sop"):
    build(_config(files, vocab, 'order'))


def test_pretrain_tiny_sop_trains_and_logs_sop_metrics(sop, tmp_path):
  from core import app
  from projects.bert.configs import pretrain
  files, vocab = sop
  steps = 30
  config = pretrain.get_config('tiny,sop')
  assert config.dataset.pair_task == 'sop' and pretrain.get_config('tiny').dataset.pair_task == 'nsp'
  config.dataset.update(train_files=files[0], eval_files=files[1], max_seq_length=SEQ, max_predictions_per_seq=PREDS,
                        shuffle_buffer=256)
  config.model.update(vocab_size=len(data_utils.read_vocab(vocab)), hidden_size=64, num_heads=2,
                      intermediate_size=128)
  config.update(batch_size=16, eval_batch_size=16, num_train_steps=steps, log_every=1, checkpoint_every=steps)
  config.schedule.update(base_lr=2e-3, warmup_steps=5)
  config.evals.mlm_nsp.update(every=steps, num_steps=4)
  config.checkpoint.async_save = False
  workdir = str(tmp_path / 'run')
  results = app.train_and_evaluate(config, workdir)['mlm_nsp']
  assert {'sop_loss', 'sop_accuracy', 'mlm_loss', 'mlm_accuracy'} <= set(results)
  assert not any('nsp' in k for k in results) and 0 <= results['sop_accuracy'] <= 1
  evaluated = data_utils.scalars(workdir, 'mlm_nsp/sop_accuracy')
  assert list(evaluated) == [steps] and evaluated[steps] == pytest.approx(results['sop_accuracy'], abs=1e-6)
  assert sorted(data_utils.scalars(workdir, 'train/sop_loss')) == list(range(1, steps + 1))
  assert not data_utils.scalars(workdir, 'train/nsp_loss')
  # The loss is MLM + SOP; in tens of CPU steps the MLM part falls (learning the order takes more: a model must
  # tie a token to its segment, and did so on some seeds only within 60 steps).
  loss, mlm = data_utils.scalars(workdir, 'train/loss'), data_utils.scalars(workdir, 'train/mlm_loss')
  first, last = np.mean([mlm[s] for s in range(1, 6)]), np.mean([mlm[s] for s in range(steps - 4, steps + 1)])
  assert last < 0.85 * first, (first, last)
  sop_loss = data_utils.scalars(workdir, 'train/sop_loss')
  assert loss[steps] == pytest.approx(mlm[steps] + sop_loss[steps], rel=1e-4)
