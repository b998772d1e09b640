"""Length-grouped train batches (`config.dataset.train_length_buckets`, `length_buckets.train_batches` through the
shared train pipeline): every record once per epoch in batches of the global batch size, shapes from the bucket set
holding each batch's real tokens, a bucket's batches random draws of it, shuffled and deterministic for a seed, an
exact resume mid-megabatch, a resume into the option changed refused naming it, two processes agreeing on every
step's padded length with rows partitioning the global batch, grouped rows (COPA's) kept together, and a tiny
fine-tuning run whose loss falls."""

import collections
import importlib
import math
import os
import random

import ml_collections
import numpy as np
import pytest
from etils import epath

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, errors
from core import checkpoint as checkpoint_lib
from projects.bert.configs import glue as glue_configs
from projects.bert.datasets import classification, length_buckets, pipeline, pretraining, records, span_qa
from tests.bert import data_utils

S = 64  # buckets 16, 32, 64
N_TRAIN, BATCH, MEGABATCH = 64, 8, 2
POSITIVE, NEGATIVE = ('good', 'great', 'fine'), ('bad', 'poor', 'awful')
FILLER = 'the a movie film very quite long short story actors plot scene music ending'.split()


def _rows(rng, n):
  """SST-2 rows of varied length (most short, some for the 32 and 64 buckets, some truncated), each unique, the label
  carried by which of two word sets occurs (learnable)."""
  rows, seen = [], set()
  while len(rows) < n:
    words = rng.choice((rng.randint(1, 4), rng.randint(1, 4), rng.randint(6, 12), rng.randint(14, 40)))
    label = rng.randrange(2)
    # Every other word from the label's set: a signal a tiny model picks up in a few dozen steps.
    text = [rng.choice(POSITIVE if label else NEGATIVE) if i % 2 else rng.choice(FILLER) for i in range(words + 1)]
    if tuple(text) not in seen:
      seen.add(tuple(text))
      rows.append((' '.join(text), str(label)))
  return rows


@pytest.fixture(scope='module')
def sst2(tmp_path_factory):
  """(records dir, vocab path) of an SST-2-layout task with N_TRAIN unique train sentences of varied length."""
  from projects.bert.datasets import glue_writer

  root = str(tmp_path_factory.mktemp('train_buckets'))
  rng = random.Random(5)
  folder = os.path.join(root, 'glue', 'SST-2')
  os.makedirs(folder)
  for name, n in (('train.tsv', N_TRAIN), ('dev.tsv', 32)):
    with open(os.path.join(folder, name), 'w') as f:
      f.write('sentence\tlabel\n' + ''.join(f'{t}\t{y}\n' for t, y in _rows(rng, n)))
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n' + ''.join(f'{i}\t{t}\n' for i, (t, _) in enumerate(_rows(rng, 8))))
  vocab = data_utils.write_vocab(os.path.join(root, 'vocab.txt'), [' '.join(FILLER + list(POSITIVE + NEGATIVE))] * 2)
  out = os.path.join(root, 'records')
  glue_writer.prepare_glue('sst2', os.path.join(root, 'glue'), vocab, out, max_seq_length=S)
  return out, vocab


def build(records_dir, bucketed=True, seed=0, process_index=None, process_count=None, batch=BATCH,
          megabatch=MEGABATCH):
  config = {'batch_size': batch, 'eval_batch_size': batch, 'dataset': {
      'task': 'sst2', 'data_dir': records_dir, 'seed': seed, 'shuffle_buffer': N_TRAIN,
      'train_length_buckets': bucketed, 'train_megabatch': megabatch}}
  return classification.build(ml_collections.ConfigDict(config), process_index=process_index,
                              process_count=process_count)


def _examples(batch):
  """The rows of a batch as (real tokens, label) tuples."""
  n = batch['input_mask'].sum(-1)
  return [(tuple(ids[:k]), int(y)) for ids, k, y in zip(batch['input_ids'], n, batch['label_ids'])]


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


@pytest.fixture(scope='module')
def file_order(sst2):
  """The train records in file order, as (real tokens, label)."""
  batches = build(sst2[0], bucketed=False).valid_iter('train')
  return [e for b in batches for e, m in zip(_examples(b), b['batch_mask']) if m > 0]


def test_every_record_once_per_epoch_in_full_batches_of_bucket_shapes(sst2, file_order):
  assert len(set(file_order)) == N_TRAIN
  per_epoch = N_TRAIN // BATCH
  batches = _take(build(sst2[0]).train_iter, 2 * per_epoch)
  widths = []
  for b in batches:
    assert {k: v.shape[0] for k, v in b.items()} == dict.fromkeys(b, BATCH)  # every step: BATCH examples
    width = b['input_ids'].shape[1]
    assert b['input_mask'].shape == b['segment_ids'].shape == (BATCH, width)
    longest = int(b['input_mask'].sum(-1).max())
    assert width in length_buckets.bucket_lengths(S) and longest <= width  # the real tokens fit ...
    assert width == min(w for w in length_buckets.bucket_lengths(S) if w >= longest)  # ... in the smallest bucket
    widths.append(width)
  assert len(set(widths)) > 1  # grouped: several shapes
  for epoch in range(2):
    seen = [e for b in batches[epoch * per_epoch:(epoch + 1) * per_epoch] for e in _examples(b)]
    assert collections.Counter(seen) == collections.Counter(file_order)  # each record exactly once, none cut
  first, second = ([e for b in batches[i * per_epoch:(i + 1) * per_epoch] for e in _examples(b)] for i in (0, 1))
  assert first != file_order and first != second  # shuffled, anew each epoch


def test_a_bucket_s_batches_are_random_draws_of_it_not_runs_of_one_length(sst2, file_order):
  # Grouped by bucket, in the shuffled stream's order inside it: an exact-length sort would make every batch's
  # lengths non-decreasing and put equal lengths (one passage's questions, in SQuAD) side by side.
  batches = _take(build(sst2[0], megabatch=N_TRAIN // BATCH).train_iter, 4 * (N_TRAIN // BATCH))
  lengths = [[len(e[0]) for e in _examples(b)] for b in batches]
  assert sum(row != sorted(row) for row in lengths) > len(lengths) // 2


def test_megabatches_spanning_epochs_still_take_every_record_once_per_epoch(sst2, file_order):
  # Megabatches of 3 batches (24 records) against 64 records: over lcm(64, 24) = 192 records, each comes 3 times.
  megabatch = 3
  span = math.lcm(N_TRAIN, megabatch * BATCH)
  batches = _take(build(sst2[0], megabatch=megabatch).train_iter, span // BATCH)
  seen = collections.Counter(e for b in batches for e in _examples(b))
  assert seen == collections.Counter({e: span // N_TRAIN for e in file_order})


def test_deterministic_for_a_seed_and_different_for_another(sst2):
  def first(seed):
    return [e for b in _take(build(sst2[0], seed=seed).train_iter, 6) for e in _examples(b)]
  assert first(0) == first(0)
  assert first(1) != first(0)


def _save(iterator, directory):
  checkpoint_lib.InputStateHandler().save(epath.Path(directory), checkpoint_lib.InputStateSave(iterator))


def _restore(iterator, directory):
  return checkpoint_lib.InputStateHandler().restore(epath.Path(directory), checkpoint_lib.InputStateRestore(iterator))


def test_resume_mid_megabatch_is_exact_and_a_changed_option_is_refused(sst2, tmp_path):
  saved = build(sst2[0]).train_iter
  _take(saved, 5)  # inside the third megabatch of two batches
  _save(saved, tmp_path / 'input')
  want = _take(saved, 6)
  restored = _restore(build(sst2[0]).train_iter, tmp_path / 'input')
  for a, b in zip(want, _take(restored, 6)):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  with pytest.raises(errors.ConfigError, match=r'input pipeline differs .*train_length_buckets: .*-> null'):
    _restore(build(sst2[0], bucketed=False).train_iter, tmp_path / 'input')
  with pytest.raises(errors.ConfigError, match=r'train_length_buckets\.megabatch: 2 -> 4'):
    _restore(build(sst2[0], megabatch=4).train_iter, tmp_path / 'input')
  plain = build(sst2[0], bucketed=False).train_iter
  next(plain)
  _save(plain, tmp_path / 'plain')
  with pytest.raises(errors.ConfigError, match=r'train_length_buckets: null -> '):
    _restore(build(sst2[0]).train_iter, tmp_path / 'plain')


def test_two_processes_share_each_steps_length_and_split_the_global_batch(sst2):
  one = _take(build(sst2[0]).train_iter, 8)
  parts = [_take(build(sst2[0], process_index=i, process_count=2).train_iter, 8) for i in range(2)]
  for whole, p0, p1 in zip(one, *parts):
    assert p0['input_ids'].shape == p1['input_ids'].shape == (BATCH // 2, whole['input_ids'].shape[1])
    for k in whole:
      np.testing.assert_array_equal(np.concatenate([p0[k], p1[k]]), whole[k])


def test_the_option_off_gives_todays_padded_batches(sst2):
  plain = build(sst2[0], bucketed=False).train_iter
  assert all(b['input_ids'].shape == (BATCH, S) for b in _take(plain, 3))
  assert 'train_length_buckets' not in plain.fingerprint  # checkpoints written before the option still resume


def test_grouped_rows_stay_together_and_take_their_longest_row(sst2):
  # Two consecutive records as one example (COPA's layout): [B, 2, width], width holding the longer row.
  files = [f for f in (os.path.join(sst2[0], n) for n in os.listdir(sst2[0])) if 'train' in os.path.basename(f)
           and f.endswith('record')]
  spec = classification.record_spec(S, regression=False)
  it = pipeline.train_iterator(files, spec=spec, dataset='pairs', host_batch=4, process_index=0, process_count=1,
                               length_buckets=True, megabatch=2, num_examples=N_TRAIN // 2, rows_per_example=2,
                               compression=records.common_compression(files), seed=0, shuffle_buffer=8,
                               cycle_length=1)
  seen = []
  for b in _take(it, N_TRAIN // 2 // 4):
    width = b['input_ids'].shape[-1]
    assert b['input_ids'].shape == b['input_mask'].shape == (4, 2, width) and b['label_ids'].shape == (4, 2)
    longest = int(b['input_mask'].sum(-1).max())
    assert width == min(w for w in length_buckets.bucket_lengths(S) if w >= longest)
    seen += [tuple(map(tuple, ids)) for ids in b['input_ids'][:, :, :16]]
  assert len(set(seen)) == N_TRAIN // 2  # every pair once in an epoch


def test_per_token_features_exclude_masked_lm_positions():
  spec = pretraining.record_spec(20, 20)  # max_predictions_per_seq equal to the length: still per prediction
  assert length_buckets.seq_keys_of(spec) == ('input_ids', 'input_mask', 'segment_ids')


@pytest.mark.parametrize('config_file,variant,grouped', [
    ('glue', 'mrpc', True), ('glue', 'sst2,bert_paper', True), ('glue_suite', 'tiny', True), ('squad', 'v1.1', False),
    ('superglue', 'rte', False), ('xtreme', 'xnli', False), ('pretrain', 'tiny', False)])
def test_grouped_training_is_the_default_where_a_seed_table_backs_it(config_file, variant, grouped):
  # GLUE has a MiniLM seed table at SST-2 lengths (benchmarks/README.md); the others keep padded batches until theirs.
  config = importlib.import_module(f'projects.bert.configs.{config_file}').get_config(variant)
  dataset = config.finetune.dataset if config_file == 'glue_suite' else config.dataset
  assert bool(dataset.train_length_buckets) is grouped


def test_tiny_glue_run_with_grouped_batches_learns(sst2, tmp_path):
  records_dir, vocab = sst2
  config = glue_configs.get_config('sst2,tiny')
  assert config.dataset.train_length_buckets  # GLUE's default (benchmarks/README.md: its seed table)
  config.model.vocab_size = len(data_utils.read_vocab(vocab))
  config.dataset.data_dir = records_dir
  config.dataset.max_seq_length = S
  config.dataset.shuffle_buffer = N_TRAIN
  config.dataset.train_megabatch = MEGABATCH
  config.batch_size = BATCH
  config.eval_batch_size = 32
  config.num_epochs = 0.0
  config.num_train_steps = 32
  config.evals.glue = None  # the loss is the check here; evaluation has its own tests
  config.log_every = 8
  config.schedule.base_lr = 2e-3
  config.checkpoint.async_save = False
  workdir = tmp_path / 'run'
  app.train_and_evaluate(config, str(workdir))
  loss = data_utils.scalars(workdir, 'train/loss')
  steps = sorted(loss)
  assert loss[steps[-1]] < 0.8 * loss[steps[0]], loss
  # tokens/s counts the positions each grouped batch computes (its bucket width), not batch * max_seq_length.
  tokens, examples = (data_utils.scalars(workdir, f'train/{k}_per_sec') for k in ('tokens', 'examples'))
  widths = {step: tokens[step] / examples[step] for step in tokens}
  assert all(min(length_buckets.bucket_lengths(S)) - 1e-3 <= w <= S + 1e-3 for w in widths.values()), widths
  assert min(widths.values()) < S - 1, widths  # the sentences are short: some window's batches were cut


def test_squad_and_pretraining_batches_keep_their_positions_inside_the_cut(tmp_path):
  # SQuAD's start/end and pretraining's masked_lm_positions point at real tokens, so they stay inside each batch's
  # bucket; masked_lm_* are per prediction and keep their length.
  from projects.bert.datasets import squad_writer
  from tests.bert import squad_data
  files = [squad_data.squad_files('v1.1')[k] for k in ('train', 'dev')]
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt', squad_data.texts(*files) * 2)
  squad_writer.prepare_squad(*squad_data.write_squad_files(tmp_path / 'json', 'v1.1'), vocab,
                             str(tmp_path / 'squad'), max_seq_length=64, doc_stride=16, max_query_length=12)
  config = ml_collections.ConfigDict({'batch_size': 8, 'eval_batch_size': 8, 'dataset': {
      'version': 'v1.1', 'data_dir': str(tmp_path / 'squad'), 'shuffle_buffer': 16, 'train_length_buckets': True}})
  squad = span_qa.build(config)
  widths = set()
  for b in _take(squad.train_iter, 12):
    width = b['input_ids'].shape[1]
    widths.add(width)
    assert width in length_buckets.bucket_lengths(64)
    assert (b['start_positions'] < width).all() and (b['end_positions'] < width).all()
    assert (b['start_positions'] <= b['end_positions']).all()
  pt_files, _ = data_utils.make_pretraining_records(tmp_path / 'pt', max_seq_length=32, max_predictions_per_seq=5,
                                                   num_files=1)
  config = ml_collections.ConfigDict({'batch_size': 8, 'dataset': {
      'train_files': pt_files[0], 'max_seq_length': 32, 'max_predictions_per_seq': 5, 'shuffle_buffer': 64,
      'train_length_buckets': True, 'train_megabatch': 4}})
  for b in _take(pretraining.build(config).train_iter, 8):
    width = b['input_ids'].shape[1]
    widths.add(width)
    assert b['masked_lm_positions'].shape == b['masked_lm_ids'].shape == b['masked_lm_weights'].shape == (8, 5)
    assert (b['masked_lm_positions'][b['masked_lm_weights'] > 0] < width).all()
  assert len(widths) > 1
