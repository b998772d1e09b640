"""The BERT dataset builders on records written by the official TF-Models scripts: every field round-trips,
eval passes cover each example once (also over several simulated processes), the train input resumes exactly,
and bad inputs fail with errors that name the file and the fix."""

import json
import math
import os
import shutil

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from core.registry import DATASETS
from projects.bert.datasets import classification as glue, pretraining
from projects.bert.tasks import glue as glue_tasks
from tests.bert import data_utils

TASK_SEQ_LEN = {'rte': 16}  # short enough that the official writer truncates pairs
GLUE_TASKS = list(glue_tasks.GLUE_TASKS)


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return tmp_path_factory.mktemp('datasets')


@pytest.fixture(scope='module')
def pt(workdir):
  """(record files, vocab) from the official create_pretraining_data.py."""
  return data_utils.make_pretraining_records(workdir / 'pt', max_seq_length=32, max_predictions_per_seq=5)


@pytest.fixture(scope='module')
def glue_data(workdir, pt):
  """task -> (records dir, GlueTaskData) for every GLUE task, through our prepare path."""
  vocab = pt[1]
  return {task: data_utils.make_glue_records(workdir / task, task, vocab_path=vocab,
                                             max_seq_length=TASK_SEQ_LEN.get(task, 32), n_train=24, n_dev=13,
                                             n_test=11, seed=1)
          for task in GLUE_TASKS}


def raw_records(path, compression=''):
  """Every record of a file parsed with tf.train.Example, independently of the builders: {name: [N, ...]}."""
  out = {}
  for raw in tf.data.TFRecordDataset(path, compression_type=compression):
    ex = tf.train.Example.FromString(raw.numpy())
    for name, feature in ex.features.feature.items():
      kind = feature.WhichOneof('kind')
      out.setdefault(name, []).append(list(getattr(feature, kind).value))
  return {k: np.asarray(v) for k, v in out.items()}


def pt_config(files, **dataset):
  config = ml_collections.ConfigDict({'batch_size': 16, 'eval_batch_size': 16,
                                      'dataset': dict({'train_files': files}, **dataset)})
  config.lock()  # as core.app passes it: builders must not add fields
  return config


def glue_config(task, data_dir, batch_size=8, **dataset):
  # The padded passes in file order, which these tests read row by row (test_length_buckets: the grouped ones).
  dataset.setdefault('eval_length_buckets', False)
  return ml_collections.ConfigDict({'batch_size': batch_size, 'eval_batch_size': 16,
                                    'dataset': dict({'task': task, 'data_dir': data_dir}, **dataset)})


def concat_real(batches):
  """Concatenates the batches' rows where batch_mask is 1."""
  keep = np.concatenate([b['batch_mask'] for b in batches]) > 0
  return {k: np.concatenate([b[k] for b in batches])[keep] for k in batches[0] if k != 'batch_mask'}


PT_KEYS = {'input_ids': np.int32, 'input_mask': np.int32, 'segment_ids': np.int32, 'masked_lm_positions': np.int32,
           'masked_lm_ids': np.int32, 'masked_lm_weights': np.float32, 'next_sentence_labels': np.int32}


# ---------------------------------------------------------------------------------------------- pretraining


def test_pretraining_eval_pass_round_trips_every_field(pt):
  files, vocab_path = pt
  ds = DATASETS.get('bert_pretraining')(pt_config(','.join(files), eval_files=files))
  raw = {k: np.concatenate([raw_records(f)[k] for f in files]) for k in PT_KEYS}
  n = len(raw['input_ids'])
  assert n > 40
  meta = ds.meta_data
  assert (meta.max_seq_length, meta.extra['max_predictions_per_seq']) == (32, 5)
  assert meta.eval_sizes == {'validation': n} and meta.eval_splits == ('validation',)
  assert meta.input_specs['masked_lm_weights'] == ((5,), 'float32') and meta.task == 'pretraining'

  batches = list(ds.valid_iter())
  assert len(batches) == math.ceil(n / 16) == meta.num_eval_batches['validation']
  for b in batches:
    assert b['batch_mask'].shape == (16,) and b['batch_mask'].dtype == np.float32
    for k, dtype in PT_KEYS.items():
      assert b[k].dtype == dtype and b[k].shape[0] == 16, k
  assert batches[-1]['batch_mask'].sum() == n - 16 * (len(batches) - 1)
  got = concat_real(batches)
  for k in PT_KEYS:
    np.testing.assert_array_equal(got[k], raw[k].reshape(got[k].shape), err_msg=k)

  # The records are BERT inputs over our vocab: [CLS] a [SEP] b [SEP], masks and predictions consistent.
  vocab = data_utils.read_vocab(vocab_path)
  for i in range(n):
    length = int(got['input_mask'][i].sum())
    np.testing.assert_array_equal(got['input_mask'][i][:length], 1)
    assert np.all(got['input_ids'][i][length:] == 0)
    n_pred = int(got['masked_lm_weights'][i].sum())
    positions = got['masked_lm_positions'][i][:n_pred]
    assert n_pred >= 1 and np.all((positions > 0) & (positions < length))
    # Unmasked tokens (masked ones may be replaced by any vocab entry, [SEP] included).
    tokens = [vocab[t] for p, t in enumerate(got['input_ids'][i][:length]) if p not in positions]
    assert tokens[0] == '[CLS]' and tokens[-1] == '[SEP]' and tokens.count('[SEP]') == 2
    sep = int(np.argmax(got['segment_ids'][i]))  # first position of sentence B
    assert vocab[got['input_ids'][i][sep - 1]] == '[SEP]' or sep - 1 in positions
    assert got['next_sentence_labels'][i] in (0, 1)


def test_pretraining_train_batches_cover_the_records(pt):
  files, _ = pt
  ds = DATASETS.get('bert_pretraining')(pt_config(files, shuffle_buffer=8, seed=3))
  raw = {k: np.concatenate([raw_records(f)[k] for f in files]) for k in PT_KEYS}
  keys = {tuple(row) for row in raw['input_ids']}
  assert ds.valid_iter is None and ds.test_iter is None
  seen = set()
  for _ in range(3 * math.ceil(len(keys) / 16)):
    b = next(ds.train_iter)
    assert set(b) == set(PT_KEYS)
    assert b['input_ids'].shape == (16, 32) and b['masked_lm_ids'].shape == (16, 5)
    for k, dtype in PT_KEYS.items():
      assert b[k].dtype == dtype
    rows = {tuple(r) for r in b['input_ids']}
    assert rows <= keys
    seen |= rows
  assert seen == keys


def assert_resumes_exactly(build, config, path, skip):
  """Saves a train iterator after `skip` batches; a new pipeline restored from it yields the same next batches."""
  first = build(config).train_iter
  for _ in range(skip):
    next(first)
  first.save(str(path))
  expected = [next(first) for _ in range(4)]
  resumed = build(config).train_iter
  resumed.restore(str(path))
  for e in expected:
    got = next(resumed)
    for k in e:
      np.testing.assert_array_equal(got[k], e[k], err_msg=k)
  return expected


def test_pretraining_resumes_exactly(pt, tmp_path):
  files, _ = pt
  build = DATASETS.get('bert_pretraining')
  config = pt_config(files, shuffle_buffer=32, seed=7)
  expected = assert_resumes_exactly(build, config, tmp_path / 'it', skip=5)
  fresh = next(build(config).train_iter)
  other_seed = next(build(pt_config(files, shuffle_buffer=32, seed=8)).train_iter)
  assert not np.array_equal(fresh['input_ids'], expected[0]['input_ids'])
  assert not np.array_equal(fresh['input_ids'], other_seed['input_ids'])


@pytest.mark.parametrize('num_processes', [2, 4])
def test_pretraining_processes_share_the_data(pt, num_processes):
  """2 processes: one file each; 4 processes (> 2 files): every process keeps every 4th record."""
  files, _ = pt
  per_file = [raw_records(f)['input_ids'] for f in files]
  all_rows = np.concatenate(per_file)
  config = pt_config(files, eval_files=files, shuffle_buffer=8)
  builds = [pretraining.build(config, process_index=i, process_count=num_processes) for i in range(num_processes)]
  host_batch = 16 // num_processes

  train_rows = []
  for i, ds in enumerate(builds):
    rows = np.concatenate([next(ds.train_iter)['input_ids'] for _ in range(6)])
    assert rows.shape == (6 * host_batch, 32)
    train_rows.append({tuple(r) for r in rows})
    if num_processes == 2:
      assert train_rows[-1] <= {tuple(r) for r in per_file[i]}
  for i in range(num_processes):
    for j in range(i + 1, num_processes):
      assert not train_rows[i] & train_rows[j]

  eval_batches = [list(ds.valid_iter()) for ds in builds]
  assert len({len(b) for b in eval_batches}) == 1 and len(eval_batches[0]) == math.ceil(len(all_rows) / 16)
  assert all(b['input_ids'].shape == (host_batch, 32) for bs in eval_batches for b in bs)
  real = np.concatenate([concat_real(bs)['input_ids'] for bs in eval_batches])
  assert sorted(map(tuple, real)) == sorted(map(tuple, all_rows))


def test_pretraining_bad_inputs_name_the_file(pt, glue_data, tmp_path):
  files, _ = pt
  build = DATASETS.get('bert_pretraining')
  with pytest.raises(FileNotFoundError, match='does-not-exist.tfrecord'):
    build(pt_config([files[0], str(tmp_path / 'does-not-exist.tfrecord')]))
  with pytest.raises(FileNotFoundError, match=r'nothing-\*.tfrecord.*matches no files'):
    build(pt_config(str(tmp_path / 'nothing-*.tfrecord')))
  with pytest.raises(ValueError, match=r'(?s)pretrain-0.tfrecord.*has 32 values, expected 64.*max_seq_length=32'):
    build(pt_config(files, max_seq_length=64))
  with pytest.raises(ValueError, match=r"(?s)'masked_lm_ids' has 5 values, expected 20.*max_predictions_per_seq=5"):
    build(pt_config(files, max_predictions_per_seq=20))
  glue_train = os.path.join(glue_data['mrpc'][0], 'mrpc_train.tf_record')
  with pytest.raises(ValueError, match=r"(?s)mrpc_train.tf_record.*missing features \['masked_lm_positions'"):
    build(pt_config(files, eval_files=glue_train))

  garbage = tmp_path / 'garbage.tfrecord'
  garbage.write_bytes(b'this is not a record file' * 10)
  with pytest.raises(ValueError, match='garbage.tfrecord is not a readable TFRecord'):
    build(pt_config([files[0], str(garbage)]))
  truncated = tmp_path / 'truncated.tfrecord'
  data = open(files[0], 'rb').read()
  truncated.write_bytes(data[:len(data) // 2])
  ds = build(pt_config(str(truncated)))  # the first record is intact: the damage shows when read
  with pytest.raises(ValueError, match='truncated.tfrecord'):
    for _ in range(20):
      next(ds.train_iter)
  with pytest.raises(ValueError, match='truncated.tfrecord'):
    build(pt_config(files, eval_files=str(truncated)))  # eval records are counted: the damage shows at build
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    build(ml_collections.ConfigDict({'batch_size': 12, 'dataset': {'train_files': files}}))


def test_prepare_pretraining_v2_names_and_gzip(pt, tmp_path):
  """The prepare helper runs the official script; its v2-named, gzip-compressed records read like the others."""
  from projects.bert.datasets import prepare, pretraining_writer
  _, vocab = pt
  corpus = data_utils.write_corpus(tmp_path / 'corpus.txt')
  out = [str(tmp_path / 'v2-0.tfrecord.gz'), str(tmp_path / 'v2-1.tfrecord.gz')]
  args = [f'--input_file={corpus}', f'--vocab_file={vocab}', f'--output_file={",".join(out)}',
          '--max_seq_length=24', '--max_predictions_per_seq=4', '--dupe_factor=1', '--gzip_compress=true',
          '--use_v2_feature_names=true']
  counts = pretraining_writer.prepare_pretraining(args)
  assert set(counts) == set(out) and sum(counts.values()) > 10
  ds = DATASETS.get('bert_pretraining')(pt_config(out, eval_files=out, max_seq_length=24))
  assert ds.meta_data.extra['compression'] == 'GZIP' and ds.meta_data.extra['feature_names'] == 'v2'
  got = concat_real(list(ds.valid_iter()))
  raw = [raw_records(f, 'GZIP') for f in out]
  np.testing.assert_array_equal(got['input_ids'], np.concatenate([r['input_word_ids'] for r in raw]))
  np.testing.assert_array_equal(got['segment_ids'], np.concatenate([r['input_type_ids'] for r in raw]))
  assert next(ds.train_iter)['input_ids'].shape == (16, 24)

  with pytest.raises(SystemExit, match=r'(?s)vocab file .*missing-vocab.txt.* does not exist.*--vocab_file'):
    prepare.main(['pretraining', f'--input_file={corpus}', f'--vocab_file={tmp_path}/missing-vocab.txt',
                  f'--output_file={tmp_path}/x.tfrecord'])
  with pytest.raises(SystemExit, match='no-such-corpus.txt.*matches no files'):
    prepare.main(['pretraining', f'--input_file={tmp_path}/no-such-corpus.txt', f'--vocab_file={vocab}',
                  f'--output_file={tmp_path}/x.tfrecord'])


# ----------------------------------------------------------------------------------------------------- GLUE


def expected_features(tokenizer, example, seq_len):
  """What the BERT classifier writer must produce for `example`: [CLS] a [SEP] (b [SEP]), longest-first
  truncation, zero padding; returns (input_ids, input_mask, segment_ids)."""
  a = tokenizer.tokenize(example.text_a)
  b = tokenizer.tokenize(example.text_b) if example.text_b else []
  budget = seq_len - (3 if b else 2)
  while len(a) + len(b) > budget:
    (a if len(a) > len(b) else b).pop()
  tokens, segments = ['[CLS]'] + a + ['[SEP]'], [0] * (len(a) + 2)
  if b:
    tokens += b + ['[SEP]']
    segments += [1] * (len(b) + 1)
  ids = tokenizer.convert_tokens_to_ids(tokens)
  pad = seq_len - len(ids)
  return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad


def check_split(batches, examples, task, tokenizer, seq_len, labelled, ids):
  assert all(b['input_ids'].shape == (16, seq_len) for b in batches)
  assert len(batches) == math.ceil(len(examples) / 16)
  padding = np.concatenate([b['batch_mask'] for b in batches]) == 0
  assert padding.sum() == 16 * len(batches) - len(examples)
  assert np.all(np.concatenate([b['example_id'] for b in batches])[padding] == -1)
  got = concat_real(batches)
  assert len(got['input_ids']) == len(examples)
  for i, ex in enumerate(examples):
    input_ids, input_mask, segment_ids = expected_features(tokenizer, ex, seq_len)
    np.testing.assert_array_equal(got['input_ids'][i], input_ids)
    np.testing.assert_array_equal(got['input_mask'][i], input_mask)
    np.testing.assert_array_equal(got['segment_ids'][i], segment_ids)
  np.testing.assert_array_equal(got['example_id'], ids)
  if labelled and task.is_regression:
    assert got['label_ids'].dtype == np.float32
    np.testing.assert_allclose(got['label_ids'], [ex.label for ex in examples], atol=1e-6)
  elif labelled:
    assert got['label_ids'].dtype == np.int32
    np.testing.assert_array_equal(got['label_ids'], [task.labels.index(ex.label) for ex in examples])


@pytest.mark.parametrize('task_name', GLUE_TASKS)
def test_glue_every_split_round_trips(glue_data, pt, task_name):
  from official.nlp.tools import tokenization
  out_dir, data = glue_data[task_name]
  task = glue_tasks.get_task(task_name)
  seq_len = TASK_SEQ_LEN.get(task_name, 32)
  tokenizer = tokenization.FullTokenizer(pt[1], do_lower_case=True)
  ds = DATASETS.get('bert_glue')(glue_config(task_name, out_dir))
  meta = ds.meta_data
  assert meta.task == task_name and meta.max_seq_length == seq_len
  assert meta.extra['task_type'] == ('regression' if task_name == 'stsb' else 'classification')
  assert meta.num_labels == (1 if task_name == 'stsb' else len(data_utils._CLS_LABELS[task_name]))
  assert meta.num_train_examples == len(data.train) == 24
  assert meta.eval_splits == tuple(data.eval) and meta.test_splits == tuple(data.test)
  assert meta.eval_sizes == {s: len(v) for s, v in data.eval.items()}
  assert meta.test_sizes == {s: len(v) for s, v in data.test.items()}
  assert meta.input_specs['label_ids'] == ((), 'float32' if task.is_regression else 'int32')

  for split, examples in data.eval.items():
    check_split(list(ds.valid_iter(split)), examples, task, tokenizer, seq_len, True, np.arange(len(examples)))
  for split, examples in data.test.items():
    check_split(list(ds.test_iter(split)), examples, task, tokenizer, seq_len, False, [e.index for e in examples])
  main_eval = list(ds.valid_iter())
  np.testing.assert_array_equal(concat_real(main_eval)['input_ids'],
                                concat_real(list(ds.valid_iter(meta.eval_splits[0])))['input_ids'])
  # The first n records of a split, and one ordered pass over train (what few-shot pools are drawn from).
  first = list(ds.valid_iter(meta.eval_splits[0], num_examples=5))
  assert len(first) == 1 and first[0]['batch_mask'].sum() == 5
  np.testing.assert_array_equal(concat_real(first)['input_ids'], concat_real(main_eval)['input_ids'][:5])
  train_pass = concat_real(list(ds.valid_iter('train')))
  np.testing.assert_array_equal(train_pass['input_ids'],
                                [expected_features(tokenizer, ex, seq_len)[0] for ex in data.train])
  assert meta.extra['vocab_file'] == pt[1]  # what the model checks its vocab size against

  expected_train = {tuple(expected_features(tokenizer, ex, seq_len)[0]) for ex in data.train}
  rows = set()
  for _ in range(6):
    b = next(ds.train_iter)
    assert b['input_ids'].shape == (8, seq_len) and np.all(b['batch_mask'] == 1)
    assert set(b) == {'input_ids', 'input_mask', 'segment_ids', 'label_ids', 'example_id', 'batch_mask'}
    rows |= {tuple(r) for r in b['input_ids']}
  assert rows <= expected_train and len(rows) == len(expected_train)
  with pytest.raises(ValueError, match=f"no eval split 'nope'.*{meta.eval_splits[0]}"):
    ds.valid_iter('nope')


def test_glue_task_table_matches_the_official_processors():
  from official.nlp.data import classifier_data_lib as cdl
  upstream = {'cola': cdl.ColaProcessor, 'sst2': cdl.SstProcessor, 'mrpc': cdl.MrpcProcessor,
              'qqp': cdl.QqpProcessor, 'mnli': cdl.MnliProcessor, 'qnli': cdl.QnliProcessor, 'rte': cdl.RteProcessor,
              'wnli': cdl.WnliProcessor}
  for name, processor in upstream.items():
    task = glue_tasks.get_task(name)
    assert list(task.labels) == processor.get_labels(None), name  # label ids must match upstream checkpoints
    assert task.processor_name == processor.get_processor_name()
  assert glue_tasks.get_task('STS-B').is_regression and cdl.StsBProcessor.get_processor_name() == 'STS-B'
  assert list(glue_tasks.get_task('mnli').labels) == cdl.AxProcessor.get_labels(None)
  with pytest.raises(ValueError, match='AX is predicted with the MNLI model'):
    glue_tasks.get_task('ax')


def upstream_only(meta_path, dest, drop_test=False):
  """Keeps only the fields create_finetuning_data.py writes (no files, no per-split sizes)."""
  meta = json.load(open(meta_path))
  keep = ('processor_type', 'train_data_size', 'max_seq_length', 'test_data_size', 'task_type', 'num_labels',
          'label_type', 'eval_data_size')
  meta = {k: v for k, v in meta.items() if k in keep and not (drop_test and k == 'test_data_size')}
  with open(dest, 'w') as f:
    f.write(json.dumps(meta, indent=4) + '\n')
  return str(dest)


def test_glue_reads_upstream_meta_data_with_explicit_files(glue_data, tmp_path):
  out_dir, data = glue_data['mnli']
  meta_file = upstream_only(os.path.join(out_dir, 'mnli_meta_data'), tmp_path / 'MNLI_meta_data')
  path = lambda name: os.path.join(out_dir, name)
  config = glue_config('MNLI', '', meta_data_file=meta_file, train_file=path('mnli_train.tf_record'),
                       eval_files={'matched': path('mnli_eval_matched.tf_record'),
                                   'mismatched': path('mnli_eval_mismatched.tf_record')},
                       test_files=path('mnli_test_matched.tf_record'))
  ds = DATASETS.get('bert_glue')(config)
  assert ds.meta_data.eval_sizes == {'matched': 13, 'mismatched': 13}  # mismatched: counted
  assert ds.meta_data.test_splits == ('matched',) and ds.meta_data.num_labels == 3
  assert len(concat_real(list(ds.valid_iter('mismatched')))['label_ids']) == 13

  # Upstream's AX meta data (MNLI train/dev, AX test) is read by task mnli, its test file as split 'ax'.
  ax_meta = json.load(open(meta_file))
  ax_meta['processor_type'] = 'AX'
  ax_file = tmp_path / 'AX_meta_data'
  ax_file.write_text(json.dumps(ax_meta))
  config = glue_config('mnli', '', meta_data_file=str(ax_file), train_file=path('mnli_train.tf_record'),
                       eval_files=path('mnli_eval_matched.tf_record'), test_files=path('mnli_test_ax.tf_record'))
  ds = DATASETS.get('bert_glue')(config)
  assert ds.meta_data.test_splits == ('ax',) and ds.meta_data.extra['submission_files'] == {'ax': 'AX.tsv'}
  ids = concat_real(list(ds.test_iter()))['example_id']
  np.testing.assert_array_equal(ids, [e.index for e in data.test['ax']])

  # Upstream meta data in a directory laid out as prepare writes it: the files are found by name.
  sst_dir = tmp_path / 'sst2'
  shutil.copytree(glue_data['sst2'][0], sst_dir)
  upstream_only(sst_dir / 'sst2_meta_data', sst_dir / 'sst2_meta_data')
  ds = DATASETS.get('bert_glue')(glue_config('sst-2', str(sst_dir)))
  assert ds.meta_data.eval_sizes == {'validation': 13} and ds.meta_data.test_sizes == {'test': 11}


def test_glue_meta_data_must_agree_with_config_and_records(glue_data, pt, tmp_path):
  out_dir, _ = glue_data['mrpc']
  build = DATASETS.get('bert_glue')
  with pytest.raises(ValueError, match=r'(?s)mrpc_meta_data says max_seq_length=32 but config.dataset.max_seq_length'
                                       r'=64.*--max_seq_length=64.*max_seq_length=32'):
    build(glue_config('mrpc', out_dir, max_seq_length=64))
  with pytest.raises(ValueError, match=r"processor_type 'MRPC', but config.dataset.task is 'cola'"):
    build(glue_config('cola', '', meta_data_file=os.path.join(out_dir, 'mrpc_meta_data')))
  config = glue_config('mrpc', out_dir)
  config.model = ml_collections.ConfigDict({'num_labels': 3})
  with pytest.raises(ValueError, match=r'config.model.num_labels=3 but .*mrpc_meta_data .*has 2 labels'):
    build(config)
  with pytest.raises(FileNotFoundError, match=r'(?s)nowhere/qnli_meta_data.*prepare glue --task=qnli'):
    build(glue_config('qnli', str(tmp_path / 'nowhere')))
  with pytest.raises(ValueError, match='Unknown GLUE task'):
    build(glue_config('squad', out_dir))

  bad_dir = tmp_path / 'bad'
  shutil.copytree(out_dir, bad_dir)
  meta = json.load(open(bad_dir / 'mrpc_meta_data'))
  meta['eval_data_sizes']['validation'] = 20
  (bad_dir / 'mrpc_meta_data').write_text(json.dumps(meta))
  ds = build(glue_config('mrpc', str(bad_dir)))
  with pytest.raises(ValueError, match=r'mrpc_eval.tf_record holds 13 records but .* has 20'):
    ds.valid_iter()
  meta['num_labels'] = 3
  (bad_dir / 'mrpc_meta_data').write_text(json.dumps(meta))
  with pytest.raises(ValueError, match='num_labels is 3, task mrpc has 2 labels'):
    build(glue_config('mrpc', str(bad_dir)))

  with pytest.raises(ValueError, match=r"(?s)pretrain-0.tfrecord.*missing features \['label_ids'\].*unexpected "
                                       r"features \['masked_lm_ids'"):
    build(glue_config('mrpc', out_dir, train_file=pt[0][0]))
  # Records of another length than the meta data says (written with --max_seq_length=16).
  with pytest.raises(ValueError, match=r"(?s)rte_train.tf_record.*'input_ids' has 16 values, expected 32"):
    build(glue_config('mrpc', out_dir, train_file=os.path.join(glue_data['rte'][0], 'rte_train.tf_record')))
  (bad_dir / 'mrpc_test.tf_record').unlink()
  (bad_dir / 'mrpc_meta_data').write_text(open(os.path.join(out_dir, 'mrpc_meta_data')).read())
  with pytest.raises(FileNotFoundError, match=r"(?s)mrpc test \(test\) records .*mrpc_test.tf_record"):
    build(glue_config('mrpc', str(bad_dir)))


def test_glue_processes_run_the_same_eval_batches(glue_data):
  out_dir, data = glue_data['qnli']
  builds = [glue.build(glue_config('qnli', out_dir), process_index=i, process_count=2) for i in range(2)]
  per_process = [list(ds.valid_iter()) for ds in builds]
  assert len(per_process[0]) == len(per_process[1]) == 1  # 13 examples, global batch 16
  assert all(b['input_ids'].shape == (8, 32) for bs in per_process for b in bs)
  ids = sorted(np.concatenate([concat_real(bs)['example_id'] for bs in per_process]))
  assert ids == list(range(len(data.eval['validation'])))
  test_ids = np.concatenate([concat_real(list(ds.test_iter()))['example_id'] for ds in builds])
  assert sorted(test_ids) == sorted(e.index for e in data.test['test'])
  train = [{tuple(r) for _ in range(3) for r in next(ds.train_iter)['input_ids']} for ds in builds]
  assert not train[0] & train[1]  # one train file: each process keeps its own records


def test_glue_train_resumes_exactly(glue_data, tmp_path):
  out_dir, _ = glue_data['stsb']
  # 7 batches of 8 from 24 examples: the saved position is inside the third epoch.
  assert_resumes_exactly(DATASETS.get('bert_glue'), glue_config('stsb', out_dir, seed=4), tmp_path / 'it', skip=7)


def test_prepare_glue_cli(pt, tmp_path):
  """The documented command, in a subprocess; and its errors for a missing vocab or GLUE directory."""
  from projects.bert.datasets import prepare
  data = data_utils.write_glue_task_dir(tmp_path / 'GLUE', 'wnli', n_train=10, n_dev=5, n_test=4)
  out = tmp_path / 'out'
  proc = data_utils.run_prepare_cli(['glue', '--task=all', f'--glue_dir={data.glue_dir}', f'--vocab_file={pt[1]}',
                                     f'--output_dir={out}', '--max_seq_length=24'])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'wnli: train 10' in proc.stdout
  meta = json.load(open(out / 'wnli_meta_data'))
  assert meta['train_data_size'] == 10 and meta['eval_data_size'] == 5 and meta['test_data_size'] == 4
  assert meta['processor_type'] == 'WNLI' and meta['task_type'] == 'bert_classification'
  assert sorted(os.listdir(out)) == ['wnli_eval.tf_record', 'wnli_meta_data', 'wnli_test.tf_record',
                                     'wnli_train.tf_record']

  common = [f'--output_dir={tmp_path}/o', '--task=wnli']
  with pytest.raises(SystemExit, match=r'(?s)vocab file .*no-vocab.txt.* does not exist.*--vocab_file'):
    prepare.main(['glue', f'--glue_dir={data.glue_dir}', f'--vocab_file={tmp_path}/no-vocab.txt', *common])
  with pytest.raises(SystemExit, match=r'(?s)GLUE directory .*no-glue.* does not exist.*--glue_dir'):
    prepare.main(['glue', f'--glue_dir={tmp_path}/no-glue', f'--vocab_file={pt[1]}', *common])
  with pytest.raises(SystemExit, match=r'(?s)GLUE rte: .*RTE/train.tsv does not exist'):
    prepare.main(['glue', f'--glue_dir={data.glue_dir}', f'--vocab_file={pt[1]}', f'--output_dir={tmp_path}/o',
                  '--task=rte'])
