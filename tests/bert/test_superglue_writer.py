"""`prepare superglue` (datasets/superglue_writer.py, its rows built by superglue_rows.py) on generated official-format
folders: every task's records and meta data, the row expansion, marked spans through truncation, equality with Model
Garden's processors (BoolQ, CB, RTE, WiC, AX-g; fed the rows as TFDS would), and malformed input."""

import errno
import importlib.util
import json
import os
import random
import re
import types

import numpy as np
import pytest
import tensorflow as tf

from core.errors import DataError, UserError
from projects.bert.datasets import classification, pipeline, prepare, records, writing
from projects.bert.datasets import superglue_reader as reader
from projects.bert.datasets import superglue_rows
from projects.bert.datasets import superglue_writer as writer
from projects.bert.datasets.writing import PrepareError
from projects.bert.tasks import superglue as sg
from tests.bert import data_utils, superglue_data

SEQ = 64
SIZES = {'train': 12, 'validation': 8, 'test': 4}
KIND_FILE = {'train': 'train', 'validation': 'eval', 'test': 'test'}


def _folder_texts(root):
  texts = []
  for folder, _, names in os.walk(root):
    for name in names:
      with open(os.path.join(folder, name)) as f:
        texts.append(f.read())
  return texts


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  """(superglue_dir, vocab, output_dir): all ten tasks written by prepare_superglue (words seen twice are whole
  tokens in the vocab, rarer ones split into pieces)."""
  root = tmp_path_factory.mktemp('sgw')
  sg_dir = superglue_data.write_superglue_dir(str(root / 'superglue'), train_size=SIZES['train'],
                                              eval_size=SIZES['validation'], test_size=SIZES['test'])
  vocab = data_utils.write_vocab(root / 'vocab.txt', data_utils.default_texts() + _folder_texts(sg_dir))
  out = str(root / 'out')
  assert writer.available_tasks(sg_dir) == sg.task_names()
  metas = {name: writer.prepare_superglue(name, sg_dir, vocab, out, SEQ) for name in sg.task_names()}
  return types.SimpleNamespace(sg_dir=sg_dir, vocab=vocab, out=out, metas=metas,
                               encoder=superglue_rows.Encoder(vocab, True, SEQ))


def read_records(path):
  rows = []
  for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
    example = tf.train.Example.FromString(raw)
    rows.append({k: list(v.int64_list.value) for k, v in example.features.feature.items()})
  return rows


def split_records(data, task, split):
  return read_records(os.path.join(data.out, f'{task}_{KIND_FILE[split]}.tf_record'))


def ids_of(data, text):
  return data.encoder.tokenizer.convert_tokens_to_ids(data.encoder.tokenize(text))


# --- files, meta data, counts -------------------------------------------------------------------------------------


def test_files_and_meta_data_of_every_task(data):
  for name, task in sg.SUPERGLUE_TASKS.items():
    meta = data.metas[name]
    with open(os.path.join(data.out, f'{name}_meta_data')) as f:
      assert json.load(f) == meta
    assert meta['benchmark'] == 'superglue' and meta['task'] == name and meta['task_kind'] == task.kind
    assert meta['max_seq_length'] == SEQ and meta['task_type'] == 'bert_classification'
    assert meta['processor_type'] == writer.PROCESSOR_TYPES[name]
    assert meta['features'] == list(superglue_rows.BASE_FEATURES + superglue_rows.EXTRA_FEATURES[task.kind])
    splits = list(task.splits)
    assert list(meta['example_counts']) == splits and list(meta['row_counts']) == splits
    for split in splits:
      rows = split_records(data, name, split)
      assert len(rows) == meta['row_counts'][split], (name, split)
      assert meta['example_counts'][split] == (SIZES['validation'] if task.diagnostic else SIZES[split])
      assert all(sorted(r) == sorted(meta['features']) for r in rows)
      assert all(len(r[k]) == SEQ for r in rows for k in ('input_ids', 'input_mask', 'segment_ids'))
      assert all(r['label_ids'][0] in range(meta['num_labels']) for r in rows)
    if task.diagnostic:
      assert meta['files'] == {'train': None, 'eval': {}, 'test': {'test': f'{name}_test.tf_record'}}
      assert meta['train_data_size'] == 0 and meta['eval_splits'] == [] and meta['labelled_splits'] == ['test']
    else:
      assert meta['files'] == {'train': f'{name}_train.tf_record', 'eval': {'validation': f'{name}_eval.tf_record'},
                               'test': {'test': f'{name}_test.tf_record'}}
      assert meta['train_data_size'] == meta['row_counts']['train']
      assert meta['eval_data_sizes'] == {'validation': meta['row_counts']['validation']}
      assert meta['labelled_splits'] == ['train', 'validation']
    assert meta['test_data_sizes'] == {'test': meta['row_counts']['test']}
  assert not [n for n in os.listdir(data.out) if n.startswith('.')]  # no staging folder left behind
  # The expansions: COPA 2 rows an example, MultiRC one per answer option, ReCoRD one per (query, distinct entity).
  for split in SIZES:
    assert data.metas['copa']['row_counts'][split] == 2 * SIZES[split]
    multirc = reader.read_split(data.sg_dir, 'multirc', split)
    assert data.metas['multirc']['row_counts'][split] == len(reader.answer_options(multirc)) > 3 * SIZES[split]
    record = reader.read_split(data.sg_dir, 'record', split)
    assert data.metas['record']['row_counts'][split] == len(reader.entity_candidates(record))
  assert data.metas['cb']['label_list'] == ['entailment', 'contradiction', 'neutral']
  assert data.metas['boolq']['label_list'] == [False, True] and data.metas['record']['label_list'] == [0, 1]


def test_sentence_pairs_are_glue_records(data):
  spec = classification.record_spec(SEQ, regression=False)
  for name in ('boolq', 'cb', 'rte', 'axb', 'axg'):
    for split in sg.get_task(name).splits:
      path = os.path.join(data.out, f'{name}_{KIND_FILE[split]}.tf_record')
      records.check_record(path, records.read_first_example(path), spec)  # no extra feature: bert_glue reads them
  parse = pipeline.make_batch_parser(spec)  # bert_glue's parser, on a whole file
  path = os.path.join(data.out, 'boolq_train.tf_record')
  batch = next(iter(tf.data.TFRecordDataset(path).batch(SIZES['train']).map(parse)))
  assert batch['input_ids'].shape == (SIZES['train'], SEQ) and batch['label_ids'].shape == (SIZES['train'],)
  assert batch['example_id'].numpy().tolist() == [e.idx for e in reader.read_split(data.sg_dir, 'boolq', 'train')]
  cb = split_records(data, 'cb', 'validation')
  for example, row in zip(reader.read_split(data.sg_dir, 'cb', 'validation'), cb):
    assert row['example_id'] == [example.idx] and row['label_ids'] == [example.label]
    first = ids_of(data, example.text_a)
    assert row['input_ids'][:len(first) + 2] == [data.encoder.tokenizer.vocab['[CLS]'], *first,
                                                 data.encoder.tokenizer.vocab['[SEP]']]
  assert {r['label_ids'][0] for r in split_records(data, 'boolq', 'test')} == {0}  # the placeholder


# --- task kinds ----------------------------------------------------------------------------------------------------


def test_wic_marks_the_word_in_each_sentence(data):
  bank = ids_of(data, 'bank')[0]
  for split in SIZES:
    examples = reader.read_split(data.sg_dir, 'wic', split)
    for example, row in zip(examples, split_records(data, 'wic', split)):
      p1, p2 = row['word_position_1'][0], row['word_position_2'][0]
      assert row['input_ids'][p1] == row['input_ids'][p2] == bank
      assert row['segment_ids'][p1] == 0 and row['segment_ids'][p2] == 1
      assert p1 == 1 + len(data.encoder.tokenize(example.sentence1[:example.start1]))
      assert row['label_ids'] == [example.label or 0]


def test_copa_two_rows_per_example(data):
  examples = reader.read_split(data.sg_dir, 'copa', 'validation')
  rows = split_records(data, 'copa', 'validation')
  for k, example in enumerate(examples):
    pair = rows[2 * k:2 * k + 2]
    assert [r['example_id'][0] for r in pair] == [example.idx] * 2
    assert [r['choice_index'][0] for r in pair] == [0, 1]
    assert [r['label_ids'][0] for r in pair] == [int(example.label == 0), int(example.label == 1)]
    for row, choice in zip(pair, example.choices):
      second = [t for t, s, m in zip(row['input_ids'], row['segment_ids'], row['input_mask']) if s == 1 and m]
      assert second[:-1] == ids_of(data, choice)
    question = 'cause' if example.question == 'cause' else 'result'
    assert ids_of(data, question)[0] in pair[0]['input_ids']


def test_multirc_one_row_per_answer(data):
  examples = reader.read_split(data.sg_dir, 'multirc', 'validation')
  rows = split_records(data, 'multirc', 'validation')
  options = reader.answer_options(examples)
  assert [(r['example_id'][0], r['question_idx'][0], r['answer_idx'][0], r['label_ids'][0]) for r in rows] == [
      (o.passage_idx, o.question_idx, o.answer_idx, o.label) for o in options]
  for row, option in zip(rows, options):
    second = [t for t, s, m in zip(row['input_ids'], row['segment_ids'], row['input_mask']) if s == 1 and m]
    assert second[:-1] == ids_of(data, f'{option.question} {option.answer}')
  by_question = {}
  for r in rows:
    by_question.setdefault(r['question_idx'][0], []).append(r['label_ids'][0])
  assert any(sum(labels) == 0 for labels in by_question.values())  # a question with every answer false


def test_record_one_row_per_distinct_candidate(data):
  examples = reader.read_split(data.sg_dir, 'record', 'validation')
  rows = split_records(data, 'record', 'validation')
  expected = [(e.idx, q.idx, k, int(c in q.answers)) for e in examples for q in e.queries
              for k, c in enumerate(e.candidates)]
  assert [(r['example_id'][0], r['query_idx'][0], r['candidate_index'][0], r['label_ids'][0]) for r in rows] == expected
  assert all(sum(1 for x in expected if x[1] == q.idx and x[3]) == 2 for e in examples for q in e.queries)
  e, row = examples[0], rows[0]
  second = [t for t, s, m in zip(row['input_ids'], row['segment_ids'], row['input_mask']) if s == 1 and m]
  assert second[:-1] == ids_of(data, e.queries[0].query.replace('@placeholder', e.candidates[0]))
  first = [t for t, s, m in zip(row['input_ids'], row['segment_ids'], row['input_mask']) if s == 0 and m]
  assert first[1:-1] == ids_of(data, e.passage.replace('@highlight\n', '- '))
  assert not set(ids_of(data, 'highlight')) & set(first)
  assert {r['label_ids'][0] for r in split_records(data, 'record', 'test')} == {0}


def test_wsc_span_positions(data):
  for split in SIZES:
    examples = reader.read_split(data.sg_dir, 'wsc', split)
    for example, row in zip(examples, split_records(data, 'wsc', split)):
      assert set(row['segment_ids']) == {0}
      s1, e1, s2, e2 = (row[k][0] for k in ('span1_start', 'span1_end', 'span2_start', 'span2_end'))
      assert row['input_ids'][s1:e1] == ids_of(data, example.span1_text)
      assert row['input_ids'][s2:e2] == ids_of(data, 'he')
      assert row['label_ids'] == [example.label or 0]


# --- truncation ----------------------------------------------------------------------------------------------------


def test_truncate_pair_is_model_gardens_without_spans():
  from official.nlp.data import classifier_data_lib
  rng = random.Random(0)
  for _ in range(200):
    a, b = [f'a{i}' for i in range(rng.randint(0, 30))], [f'b{i}' for i in range(rng.randint(0, 30))]
    budget = rng.randint(1, 40)
    ours, theirs = (list(a), list(b)), (list(a), list(b))
    superglue_rows.truncate_pair(*ours, budget)
    classifier_data_lib._truncate_seq_pair(*theirs, budget)  # pylint: disable=protected-access
    assert ours == theirs
  a, b = list('abcdefghij'), list('xyz')
  superglue_rows.truncate_pair(a, b, 8, keep_a=7)  # a holds a span up to its 7th token: then b gives up its tokens
  assert a == list('abcdefg') and b == ['x']  # Model Garden's: a[:5], b whole
  with pytest.raises(superglue_rows._SpanTooLong):  # pylint: disable=protected-access
    superglue_rows.truncate_pair(list('abcdefghij'), list('xyz'), 8, keep_a=9)


def _wic_row(idx, s1, s2, word='bank'):
  return {'word': word, 'sentence1': s1, 'sentence2': s2, 'idx': idx, 'label': True, 'start1': s1.index(word),
          'end1': s1.index(word) + len(word), 'start2': s2.index(word), 'end2': s2.index(word) + len(word)}


def test_truncation_keeps_marked_spans(data, tmp_path):
  long1 = 'the river was cold and the fish swam far away from the old boats near the bank .'
  short2 = 'the bank was full of cash that day .'
  sg_dir = str(tmp_path / 'sg')
  for split in ('train', 'val'):
    superglue_data.write_jsonl(os.path.join(sg_dir, 'WiC', f'{split}.jsonl'), [_wic_row(0, long1, short2)])
  out = str(tmp_path / 'out')
  up_to_word = len(data.encoder.tokenize(long1[:long1.index(' .')]))  # sentence1's tokens up to its 'bank'
  seq = 3 + up_to_word + 2 + 1  # room for both words and one more token of sentence2
  assert len(data.encoder.tokenize(long1)) + len(data.encoder.tokenize(short2)) > seq - 3
  writer.prepare_superglue('wic', sg_dir, data.vocab, out, seq)
  (row,) = read_records(os.path.join(out, 'wic_train.tf_record'))
  bank = ids_of(data, 'bank')[0]
  assert row['input_ids'][row['word_position_1'][0]] == bank == row['input_ids'][row['word_position_2'][0]]
  # Model Garden's rule alone would have cut the end of the longer sentence, the word with it.
  a, b = data.encoder.tokenize(long1), data.encoder.tokenize(short2)
  from official.nlp.data import classifier_data_lib
  classifier_data_lib._truncate_seq_pair(a, b, seq - 3)  # pylint: disable=protected-access
  assert 'bank' not in a
  # Too short for both words: refused, naming the file and the example.
  with pytest.raises(PrepareError, match=rf'WiC/train\.jsonl: example idx 0: .*--max_seq_length={seq - 2}'):
    writer.prepare_superglue('wic', sg_dir, data.vocab, str(tmp_path / 'out2'), seq - 2)
  # WSC: spans at the end of a long text: the window moves to keep them.
  text = ' '.join(['the farmer sat in the garden and the sun was warm .'] * 3)
  text += ' The baker waited because he was late .'
  words = text.split()
  wsc = {'text': text, 'idx': 5, 'label': True, 'target': {'span1_index': len(words) - 8, 'span1_text': 'The baker',
                                                           'span2_index': len(words) - 4, 'span2_text': 'he'}}
  for split in ('train', 'val'):
    superglue_data.write_jsonl(os.path.join(sg_dir, 'WSC', f'{split}.jsonl'), [wsc])
  assert len(data.encoder.tokenize(text)) > seq - 2
  writer.prepare_superglue('wsc', sg_dir, data.vocab, out, seq)
  (row,) = read_records(os.path.join(out, 'wsc_train.tf_record'))
  assert row['input_ids'][row['span1_start'][0]:row['span1_end'][0]] == ids_of(data, 'The baker')
  assert row['input_ids'][row['span2_start'][0]:row['span2_end'][0]] == ids_of(data, 'he')
  assert row['input_ids'][0] == data.encoder.tokenizer.vocab['[CLS]'] and sum(row['input_mask']) == seq
  wsc['target']['span1_index'] = 0  # the spans lie further apart than the sequence holds
  superglue_data.write_jsonl(os.path.join(sg_dir, 'WSC', 'train.jsonl'), [wsc])
  with pytest.raises(PrepareError, match=r'WSC/train\.jsonl: example idx 5: the text from one span to the other'):
    writer.prepare_superglue('wsc', sg_dir, data.vocab, out, seq)


def test_token_span_of_characters(data):
  enc = data.encoder
  text = 'We rode to the banks of the river.'
  tokens = enc.tokenize(text)
  start = text.index('banks')
  first, last = enc.token_span(text, start, start + 4, tokens)  # 'bank' inside 'banks'
  assert tokens[first] == 'bank' and last - first == 1
  first, last = enc.token_span(text, start + 1, start + 3, tokens)  # within one token: that token
  assert (first, last) == (tokens.index('bank'), tokens.index('bank') + 1)
  assert enc.token_span(text, 2, 3, tokens) is None  # a space holds no token


# --- Model Garden's processors -------------------------------------------------------------------------------------

_SPLIT_FILES = {'train': 'train.jsonl', 'validation': 'val.jsonl', 'test': 'test.jsonl'}


def _fake_tfds_load(sg_dir):
  """`tfds.load('super_glue/NAME', split=...)` as TFDS serves the official files: its features as bytes / ints,
  the label as TFDS's ClassLabel id (TFDS's own label classes and label cast), -1 on test, in a shuffled order."""
  from tensorflow_datasets.text import super_glue as tfds_super_glue
  configs = {c.name: c for c in tfds_super_glue.SuperGlue.BUILDER_CONFIGS}

  def load(name, split, try_gcs=False):
    del try_gcs
    config = configs[name.split('/', 1)[1]]
    task = sg.get_task(config.name)
    with open(os.path.join(sg_dir, task.official_name, _SPLIT_FILES[split])) as f:
      lines = [json.loads(line) for line in f]
    rows = []
    for line in lines:
      row = {k: line[k].encode() if isinstance(line[k], str) else np.int32(line[k]) for k in config.features}
      row['idx'] = np.int32(line['idx'])
      row['label'] = np.int64(list(config.label_classes).index(tfds_super_glue._cast_label(line['label']))
                              if 'label' in line else -1)
      rows.append(row)
    random.Random(split).shuffle(rows)
    return types.SimpleNamespace(as_numpy_iterator=lambda: iter(rows))

  return load


def _model_garden_records(processor, examples, tmp_path, name):
  """Model Garden's records of `examples` ({idx: record}), written by its own writer."""
  from official.nlp.data import classifier_data_lib
  from official.nlp.tools import tokenization
  path = str(tmp_path / f'{name}.tf_record')
  tokenizer = tokenization.FullTokenizer(vocab_file=processor.vocab, do_lower_case=True)
  classifier_data_lib.file_based_convert_examples_to_features(examples, processor.get_labels(), SEQ, tokenizer, path,
                                                              None, processor.featurize_example)
  rows = read_records(path)
  return {int(e.guid.split('-')[-1]): row for e, row in zip(examples, rows)}


def _ours_by_idx(data, task, split):
  return {r['example_id'][0]: r for r in split_records(data, task, split)}


@pytest.mark.parametrize('task,processor_name', [('boolq', 'BoolQProcessor'), ('cb', 'CBProcessor'),
                                                 ('rte', 'SuperGLUERTEProcessor')])
def test_sentence_pairs_equal_model_garden(data, tmp_path, monkeypatch, task, processor_name):
  from official.nlp.data import classifier_data_lib
  monkeypatch.setattr(classifier_data_lib.tfds, 'load', _fake_tfds_load(data.sg_dir))
  processor = getattr(classifier_data_lib, processor_name)()
  processor.vocab = data.vocab
  for split, get in (('train', processor.get_train_examples), ('validation', processor.get_dev_examples),
                     ('test', processor.get_test_examples)):
    theirs = _model_garden_records(processor, get(None), tmp_path, f'{task}_{split}')
    ours = _ours_by_idx(data, task, split)
    assert sorted(theirs) == sorted(ours) and len(ours) == SIZES[split]
    for idx, row in ours.items():
      for key in ('input_ids', 'input_mask', 'segment_ids'):
        assert row[key] == theirs[idx][key], (task, split, idx, key)
      if split != 'test':  # test labels are placeholders, theirs differ (BoolQ: 1)
        assert row['label_ids'] == theirs[idx]['label_ids'], (task, split, idx)
  assert {r['label_ids'][0] for r in _ours_by_idx(data, task, 'train').values()} == set(
      range(sg.get_task(task).num_labels))


def test_model_garden_label_names_against_tfds(data, monkeypatch):
  """BoolQ's and CB's class names are out of TFDS's order: names wrong, ids (what the records hold) right."""
  from official.nlp.data import classifier_data_lib
  from tensorflow_datasets.text import super_glue as tfds_super_glue
  tfds_classes = {c.name: list(c.label_classes) for c in tfds_super_glue.SuperGlue.BUILDER_CONFIGS}
  monkeypatch.setattr(classifier_data_lib.tfds, 'load', _fake_tfds_load(data.sg_dir))
  boolq = classifier_data_lib.BoolQProcessor()
  assert tfds_classes['boolq'] == ['False', 'True'] and boolq.get_labels() == ['True', 'False']
  by_idx = {int(e.guid.split('-')[1]): e for e in boolq.get_train_examples(None)}
  for example in reader.read_split(data.sg_dir, 'boolq', 'train'):
    theirs = by_idx[example.idx]
    assert theirs.label == ('True' if example.label == 0 else 'False')  # a false example is named 'True' ...
    assert boolq.get_labels().index(theirs.label) == example.label  # ... and written as id 0, TFDS's False
  assert {e.label for e in boolq.get_test_examples(None)} == {'False'}  # the placeholder: id 1
  cb = classifier_data_lib.CBProcessor()
  assert tfds_classes['cb'] == list(sg.get_task('cb').labels) != cb.get_labels()
  by_idx = {int(e.guid.split('-')[1]): e for e in cb.get_train_examples(None)}
  named = {(example.label, by_idx[example.idx].label) for example in reader.read_split(data.sg_dir, 'cb', 'train')}
  assert named == {(0, 'entailment'), (1, 'neutral'), (2, 'contradiction')}  # contradiction is named 'neutral'


def test_model_garden_wic_is_not_wired(data):
  """create_finetuning_data maps 'wic' to the WNLI processor; WiCProcessor claims RTE's processor name and no
  labels."""
  from official.nlp.data import classifier_data_lib
  spec = importlib.util.find_spec('official.nlp.data.create_finetuning_data')
  with open(spec.origin) as f:
    source = f.read()
  assert re.search(r'"wic":\s*classifier_data_lib\.WnliProcessor', source)
  assert classifier_data_lib.WiCProcessor.get_processor_name() == 'RTESuperGLUE'
  assert classifier_data_lib.WiCProcessor().get_labels() == []


def test_wic_pair_equals_model_garden(data, tmp_path, monkeypatch):
  """Model Garden's WiC records are our pair followed by the word as a third segment of type id 2, which BERT's
  2-row token-type table cannot embed; the pair part is equal token for token, and the labels are."""
  from official.nlp.data import classifier_data_lib
  monkeypatch.setattr(classifier_data_lib.tfds, 'load', _fake_tfds_load(data.sg_dir))
  processor = classifier_data_lib.WiCProcessor()
  processor.vocab = data.vocab
  word = ids_of(data, 'bank')
  for split, get in (('train', processor.get_train_examples), ('validation', processor.get_dev_examples),
                     ('test', processor.get_test_examples)):
    theirs = _model_garden_records(processor, get(None), tmp_path, f'wic_{split}')
    ours = _ours_by_idx(data, 'wic', split)
    assert sorted(theirs) == sorted(ours)
    for idx, row in ours.items():
      n = sum(row['input_mask'])
      assert theirs[idx]['input_ids'][:n] == row['input_ids'][:n]
      assert theirs[idx]['segment_ids'][:n] == row['segment_ids'][:n]
      assert theirs[idx]['input_ids'][n:n + len(word) + 1] == word + [data.encoder.tokenizer.vocab['[SEP]']]
      assert set(theirs[idx]['segment_ids'][n:n + len(word) + 1]) == {2}
      assert row['label_ids'] == theirs[idx]['label_ids']


def test_axg_equals_model_garden(data, tmp_path):
  from official.nlp.data import classifier_data_lib
  processor = classifier_data_lib.AXgProcessor()  # reads AX-g.jsonl itself: no TFDS
  processor.vocab = data.vocab
  theirs = _model_garden_records(processor, processor.get_test_examples(os.path.join(data.sg_dir, 'AX-g')),
                                 tmp_path, 'axg')
  ours = _ours_by_idx(data, 'axg', 'test')
  assert sorted(theirs) == sorted(ours) and len(ours) == SIZES['validation']
  for idx, row in ours.items():
    for key in ('input_ids', 'input_mask', 'segment_ids', 'label_ids'):
      assert row[key] == theirs[idx][key], (idx, key)
  assert {r['label_ids'][0] for r in ours.values()} == {0, 1}  # real labels: the diagnostics are labelled


# --- bad input, reruns, the command line ---------------------------------------------------------------------------


def test_malformed_file_fails_and_leaves_the_old_records(data, tmp_path):
  sg_dir = superglue_data.write_superglue_dir(str(tmp_path / 'sg'), train_size=4, eval_size=2, test_size=2,
                                              tasks=['CB'])
  out = str(tmp_path / 'out')
  writer.prepare_superglue('cb', sg_dir, data.vocab, out, SEQ)
  before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
  path = os.path.join(sg_dir, 'CB', 'val.jsonl')
  with open(path) as f:
    lines = f.readlines()
  row = json.loads(lines[1])
  row['label'] = 'maybe'
  lines[1] = json.dumps(row) + '\n'
  with open(path, 'w') as f:
    f.writelines(lines)
  with pytest.raises(DataError) as info:
    writer.prepare_superglue('cb', sg_dir, data.vocab, out, SEQ)
  message = str(info.value)
  assert path in message and 'line 2' in message and '"label"' in message and 'maybe' in message
  assert {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)} == before  # nothing half-written
  os.remove(path)
  with pytest.raises(UserError, match='CB/val.jsonl'):
    writer.prepare_superglue('cb', sg_dir, data.vocab, out, SEQ)


def test_rerun_without_test_file_drops_old_test_records(data, tmp_path):
  sg_dir = superglue_data.write_superglue_dir(str(tmp_path / 'sg'), train_size=4, eval_size=2, test_size=2,
                                              tasks=['RTE'])
  out = str(tmp_path / 'out')
  writer.prepare_superglue('rte', sg_dir, data.vocab, out, SEQ)
  assert os.path.exists(os.path.join(out, 'rte_test.tf_record'))
  os.remove(os.path.join(sg_dir, 'RTE', 'test.jsonl'))
  meta = writer.prepare_superglue('rte', sg_dir, data.vocab, out, SEQ)
  assert meta['test_splits'] == [] and meta['files']['test'] == {}
  assert sorted(os.listdir(out)) == ['rte_eval.tf_record', 'rte_meta_data', 'rte_train.tf_record']


def test_refuses_to_replace_glue_records(data, tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'rte_meta_data').write_text(json.dumps({'processor_type': 'RTE', 'task': 'rte'}))
  with pytest.raises(PrepareError, match='GLUE rte.*another --output_dir'):
    writer.prepare_superglue('rte', data.sg_dir, data.vocab, str(out), SEQ)


def test_command_line(data, tmp_path, capsys):
  sg_dir = superglue_data.write_superglue_dir(str(tmp_path / 'sg'), train_size=4, eval_size=2, test_size=2,
                                              tasks=['COPA', 'AX-b'])
  out = str(tmp_path / 'out')
  assert prepare.main(['superglue', '--task=all', f'--superglue_dir={sg_dir}', f'--vocab_file={data.vocab}',
                                f'--output_dir={out}', '--max_seq_length=32']) == 0
  printed = capsys.readouterr().out
  assert 'copa: examples' in printed and 'axb: examples' in printed
  assert sorted(n for n in os.listdir(out) if n.endswith('_meta_data')) == ['axb_meta_data', 'copa_meta_data']
  with pytest.raises(SystemExit, match=r'prepare superglue: error: .*no such file'):
    prepare.main(['superglue', '--task=boolq', f'--superglue_dir={sg_dir}', f'--vocab_file={data.vocab}',
                  f'--output_dir={out}'])
  with pytest.raises(SystemExit, match='vocab file'):
    prepare.main(['superglue', '--task=copa', f'--superglue_dir={sg_dir}', '--vocab_file=/nonexistent/vocab.txt',
                  f'--output_dir={out}'])
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  with pytest.raises(SystemExit, match=r"prepare superglue: error: The vocab file '.*empty.txt' is empty"):
    prepare.main(['superglue', '--task=copa', f'--superglue_dir={sg_dir}', f'--vocab_file={empty}',
                  f'--output_dir={tmp_path / "out2"}'])
  assert not (tmp_path / 'out2').exists()  # checked before anything is written
  help_text = prepare._parser('superglue')._subparsers._group_actions[0].choices['superglue'].format_help()
  assert '--superglue_dir' in help_text and '(default: 128)' in help_text and '(default: True)' in help_text


def test_a_full_disk_keeps_the_old_records_and_names_the_file(data, tmp_path, monkeypatch):
  sg_dir = superglue_data.write_superglue_dir(str(tmp_path / 'sg'), train_size=4, eval_size=2, test_size=2,
                                              tasks=['WiC'])
  out = str(tmp_path / 'out')
  writer.prepare_superglue('wic', sg_dir, data.vocab, out, SEQ)
  before = {n: open(os.path.join(out, n), 'rb').read() for n in sorted(os.listdir(out))}
  real_write_rows = superglue_rows.write_rows

  def full_on_eval(path, rows):
    if path.endswith('_eval.tf_record'):
      raise OSError(errno.ENOSPC, 'No space left on device', path)
    return real_write_rows(path, rows)

  monkeypatch.setattr(superglue_rows, 'write_rows', full_on_eval)
  with pytest.raises(PrepareError) as info:
    writer.prepare_superglue('wic', sg_dir, data.vocab, out, SEQ)
  assert str(info.value).startswith(f'No space left on device while writing {out}/wic_eval.tf_record: nothing was '
                                    f'replaced')
  assert {n: open(os.path.join(out, n), 'rb').read() for n in sorted(os.listdir(out))} == before  # no staging


def test_commit_outputs_reads_nested_file_maps(tmp_path):
  staging, out = tmp_path / 'staging', tmp_path / 'out'
  staging.mkdir()
  out.mkdir()
  old = {'train': 'x_train', 'eval': {'en': {'validation': 'x_en_eval'}, 'de': {'validation': 'x_de_eval'}}}
  for name in writing.output_file_names(old):
    (out / name).write_text('old')
  (out / 'x_meta_data').write_text(json.dumps({'files': old}))
  new = {'train': 'x_train', 'eval': {'en': {'validation': 'x_en_eval'}}, 'test': None}
  assert writing.output_file_names(new) == ['x_train', 'x_en_eval']
  for name in ['x_train', 'x_en_eval', 'x_meta_data']:
    (staging / name).write_text('new')
  writing.commit_outputs(str(staging), str(out), 'x_meta_data', new, 'X')
  assert {p.name: p.read_text() for p in out.iterdir()} == {'x_train': 'new', 'x_en_eval': 'new',
                                                            'x_meta_data': 'new'}  # x_de_eval: no longer listed
