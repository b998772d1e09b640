"""`prepare xtreme` records (datasets/xtreme_writer.py, datasets/xtreme_records.py) on folders of
tests/bert/xtreme_data.py, with a tiny cased vocabulary holding Latin, Cyrillic, Arabic and Chinese characters:
features, per-language counts, meta data, and byte equality with Model Garden's writers (classifier_data_lib's XTREME
processors, tagging_data_lib, sentence_retrieval_lib, squad_lib) on the same files."""

import json
import logging
import os
import shutil

import pytest

tf = pytest.importorskip('tensorflow')
pytest.importorskip('official.nlp.data.tagging_data_lib')

from core.errors import DataError  # noqa: E402
from projects.bert.datasets import xtreme_records as xr  # noqa: E402
from projects.bert.datasets import xtreme_writer as w  # noqa: E402
from projects.bert.datasets.prepare import PrepareError  # noqa: E402
from projects.bert.tasks import xtreme  # noqa: E402
from tests.bert import data_utils, xtreme_data  # noqa: E402

N = 6
SPECIAL = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')
# Whole words in the vocab (cased); every other word is split into character pieces.
WORDS = ('Anna', 'Omar', 'York', 'New', 'cat', 'house', 'red', 'sees', 'Haus', 'кошка', 'дом', 'بيت', 'not', 'lives',
         'in', 'Where', 'does', 'live')


def _write_vocab(path, xtreme_dir):
  chars = set()
  for root, _, files in os.walk(xtreme_dir):
    for name in files:
      with open(os.path.join(root, name), encoding='utf-8') as f:
        chars.update(c for c in f.read() if not c.isspace())
  chars = sorted(chars)
  vocab = list(SPECIAL) + list(WORDS) + chars + [f'##{c}' for c in chars]
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(dict.fromkeys(vocab)) + '\n')
  return str(path)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_writer')
  xtreme_dir = xtreme_data.write_xtreme_dir(str(root / 'download'), examples=N)
  vocab = _write_vocab(root / 'vocab.txt', xtreme_dir)
  out = str(root / 'out')
  metas = w.prepare_xtreme('all', xtreme_dir, vocab, out, max_seq_length=None)
  return {'root': root, 'xtreme_dir': xtreme_dir, 'vocab': vocab, 'out': out, 'metas': metas}


def _records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def _parsed(path):
  out = []
  for raw in _records(path):
    example = tf.train.Example.FromString(raw)
    out.append({k: list(v.int64_list.value) for k, v in example.features.feature.items()})
  return out


def _tokenizer(vocab):
  from official.nlp.tools import tokenization
  return tokenization.FullTokenizer(vocab_file=vocab, do_lower_case=False)


def _langs(task_name):
  return [lang for lang in xtreme_data.LANGUAGES if lang in xtreme.get_task(task_name).languages]


# ------------------------------------------------------------------------------------------------ mBERT tokens


def test_cased_wordpiece_and_chinese_characters_split_one_a_token(env):
  tok = _tokenizer(env['vocab'])
  assert tok.tokenize('安娜住在哪里？') == ['安', '娜', '住', '在', '哪', '里', '？']
  assert tok.tokenize('Anna anna') == ['Anna', 'a', '##n', '##n', '##a']  # cased: 'anna' is not 'Anna'
  assert tok.tokenize('Katze кошка') == ['K', '##a', '##t', '##z', '##e', 'кошка']
  # The Chinese test records hold one id per character: the text has no spaces, the tokenizer splits it.
  first = _parsed(os.path.join(env['out'], xr.record_file('xnli', 'test', 'zh')))[0]
  with open(os.path.join(env['xtreme_dir'], 'xnli', 'test-zh.tsv'), encoding='utf-8') as f:
    text_a = f.readline().split('\t')[0]
  ids = tok.convert_tokens_to_ids(['[CLS]'] + list(text_a) + ['[SEP]'])
  assert first['input_ids'][:len(ids)] == ids
  assert ' ' not in text_a


# -------------------------------------------------------------------------------------------------- meta data


def test_meta_data_lists_languages_counts_and_files(env):
  out, metas = env['out'], env['metas']
  assert sorted(metas) == sorted(xtreme.task_names())
  for name, meta in metas.items():
    task = xtreme.get_task(name)
    with open(os.path.join(out, w.meta_data_file(name)), encoding='utf-8') as f:
      assert json.load(f) == meta
    assert meta['task'] == name and meta['kind'] == task.kind and meta['do_lower_case'] is False
    generated = _langs(name)
    assert meta['test_languages'] == [lang for lang in task.languages if lang in generated]
    assert meta['missing']['test'] == [lang for lang in task.languages if lang not in generated]
    for kind in ('eval', 'test'):
      for lang, size in meta[f'{kind}_data_sizes'].items():
        entry = meta['files'][kind][lang]
        if task.kind in (xtreme.BITEXT_MINING, xtreme.SENTENCE_RETRIEVAL):
          for side in xr.SIDES:
            assert len(_records(os.path.join(out, entry[side]))) == size[side] == N + (1 if name == 'bucc2018' else 0)
        elif task.kind == xtreme.SPAN_QA:
          assert len(_records(os.path.join(out, entry['records']))) == size
          with open(os.path.join(out, entry['features']), encoding='utf-8') as f:
            assert sum(1 for _ in f) == size
          assert meta[f'{kind}_num_examples'][lang] == N
        else:
          assert len(_records(os.path.join(out, entry))) == size
          assert meta[f'{kind}_num_examples'][lang] == N
    if task.is_trained:
      assert meta['train_data_size'] == len(_records(os.path.join(out, meta['files']['train']))) >= N
      assert meta['main_eval_language'] == ('en' if name != 'tydiqa' else None)
  assert not tf.io.gfile.glob(os.path.join(out, '.prepare-*'))
  assert metas['xnli']['processor_type'] == 'XTREME-XNLI' and metas['xnli']['num_labels'] == 3
  assert metas['xnli']['eval_languages'] == ['ar', 'de', 'en', 'ru', 'zh']
  assert metas['xnli']['train_source'].endswith(os.path.join('xnli', 'train-en.tsv'))
  assert metas['udpos']['without_split']['dev'] == list(xtreme.UDPOS_WITHOUT_DEV)
  assert metas['udpos']['label_shape'] == [128] and metas['panx']['label_list'] == list(xtreme.PANX_LABELS)
  assert metas['xquad']['eval_languages'] == ['en'] and metas['xquad']['max_seq_length'] == 384
  assert metas['tydiqa']['eval_languages'] == [] and metas['tydiqa']['without_split']['dev'] == list(
      xtreme.TYDIQA_LANGUAGES)
  assert metas['bucc2018']['eval_gold_pairs'] == {lang: N for lang in ('de', 'ru', 'zh')}
  assert metas['tatoeba']['max_seq_length'] == 512 and 'train' not in metas['tatoeba']['files']
  assert 'missing fr' in w.summary_line(metas['bucc2018'])


# --------------------------------------------------------------------------------------- equal to Model Garden


def _restricted(cls, languages, **kwargs):
  processor = cls(**kwargs)
  processor.supported_languages = list(languages)  # upstream reads every language's file; ours has five
  processor.languages = list(languages)
  return processor


@pytest.mark.parametrize('name', ['xnli', 'pawsx'])
def test_sentence_pair_records_equal_model_gardens(env, tmp_path, name):
  from official.nlp.data import classifier_data_lib

  cls = {'xnli': classifier_data_lib.XtremeXnliProcessor, 'pawsx': classifier_data_lib.XtremePawsxProcessor}[name]
  processor = _restricted(cls, _langs(name))
  upstream = classifier_data_lib.generate_tf_record_from_data_file(
      processor, os.path.join(env['xtreme_dir'], name), _tokenizer(env['vocab']),
      train_data_output_path=str(tmp_path / 'train'), eval_data_output_path=str(tmp_path / 'eval'),
      test_data_output_path=str(tmp_path / 'test-{}'), max_seq_length=128)
  out, meta = env['out'], env['metas'][name]
  assert _records(os.path.join(out, xr.record_file(name, 'train'))) == _records(str(tmp_path / 'train'))
  assert _records(os.path.join(out, xr.record_file(name, 'eval', 'en'))) == _records(str(tmp_path / 'eval'))
  for lang in _langs(name):
    assert _records(os.path.join(out, xr.record_file(name, 'test', lang))) == _records(str(tmp_path / f'test-{lang}'))
    assert meta['test_data_sizes'][lang] == upstream[f'test_{lang}_data_size']
  assert meta['train_data_size'] == upstream['train_data_size']
  assert {k: meta[k] for k in ('processor_type', 'task_type', 'num_labels')} == {
      k: upstream[k] for k in ('processor_type', 'task_type', 'num_labels')}
  first = _parsed(str(tmp_path / 'train'))[0]
  assert first['example_id'] == [0] and first['label_ids'][0] in range(len(xtreme.get_task(name).labels))


@pytest.mark.parametrize('name', ['udpos', 'panx'])
def test_tagging_records_equal_model_gardens_with_sub_sentences(env, tmp_path, name):
  from official.nlp.data import tagging_data_lib
  from official.nlp.tools import tokenization

  seq = 8  # short: sentences of up to six words, some split into pieces, need sub-sentences
  out = str(tmp_path / 'ours')
  meta = w.prepare_xtreme(name, env['xtreme_dir'], env['vocab'], out, max_seq_length=seq)[name]
  cls = {'udpos': tagging_data_lib.UdposProcessor, 'panx': tagging_data_lib.PanxProcessor}[name]
  upstream = tagging_data_lib.generate_tf_record_from_data_file(
      _restricted(cls, _langs(name)), os.path.join(env['xtreme_dir'], name), _tokenizer(env['vocab']), seq,
      str(tmp_path / 'train'), str(tmp_path / 'eval'), str(tmp_path / 'test-{}'), tokenization.convert_to_unicode)
  assert _records(os.path.join(out, xr.record_file(name, 'train'))) == _records(str(tmp_path / 'train'))
  assert _records(os.path.join(out, xr.record_file(name, 'eval', 'en'))) == _records(str(tmp_path / 'eval'))
  for lang in _langs(name):
    assert _records(os.path.join(out, xr.record_file(name, 'test', lang))) == _records(str(tmp_path / f'test-{lang}'))
  assert meta['train_data_size'] == upstream['train_data_size'] and meta['test_data_sizes'] == upstream[
      'test_data_size']
  # -1 on [CLS], [SEP], padding and non-first pieces; sub-sentences numbered 0, 1, ... within a sentence.
  vocab = data_utils.read_vocab(env['vocab'])
  records = _parsed(os.path.join(out, xr.record_file(name, 'eval', 'ru')))
  assert max(r['sub_sentence_id'][0] for r in records) >= 1
  assert len(records) > meta['eval_num_examples']['ru'] == N
  for r in records:
    tokens = [vocab[i] for i in r['input_ids']]
    for token, mask, label in zip(tokens, r['input_mask'], r['label_ids']):
      scored = mask and token not in ('[CLS]', '[SEP]') and not token.startswith('##')
      assert (label >= 0) == bool(scored), (tokens, r['label_ids'])
  assert any(vocab[i].startswith('##') for r in records for i in r['input_ids'])  # words split into pieces
  ids = [(r['sentence_id'][0], r['sub_sentence_id'][0]) for r in records]
  assert ids == sorted(ids) and [s for s, _ in ids if _ == 0] == list(range(N))


def test_retrieval_records_equal_model_gardens(env, tmp_path):
  from official.nlp.data import sentence_retrieval_lib as srl

  tok = _tokenizer(env['vocab'])
  for name, cls, splits in (('bucc2018', srl.BuccProcessor, ('eval', 'test')), ('tatoeba', srl.TatoebaProcessor,
                                                                                 ('test',))):
    upstream_dir = tmp_path / name
    upstream = srl.generate_sentence_retrevial_tf_record(
        _restricted(cls, _langs(name)), os.path.join(env['xtreme_dir'], name), tok,
        eval_data_output_path=str(upstream_dir) if 'eval' in splits else None,
        test_data_output_path=str(upstream_dir), max_seq_length=512)
    meta = env['metas'][name]
    for split in splits:
      mg_split = 'dev' if split == 'eval' else 'test'
      for lang in _langs(name):
        for side, mg_side in (('source', lang), ('target', 'en')):
          ours = os.path.join(env['out'], xr.record_file(name, split, lang, side))
          assert _records(ours) == _records(str(upstream_dir / f'{lang}-en-{mg_side}.{mg_split}.tfrecords'))
          assert meta[f'{split}_data_sizes'][lang][side] == upstream[f'number_{split}_data'][f'{lang}-en.{mg_side}']
  # BUCC's example ids are the numbers of its sentence ids, so mined pairs map back to them.
  record = _parsed(os.path.join(env['out'], xr.record_file('bucc2018', 'eval', 'de', 'source')))[0]
  with open(os.path.join(env['xtreme_dir'], 'bucc2018', 'de-en.dev.de'), encoding='utf-8') as f:
    assert record['example_id'] == [int(f.readline().split('\t')[0].split('-')[1])]
  assert 'label_ids' not in record


def test_qa_records_are_squad_libs_per_language(env, tmp_path):
  from official.nlp.data import squad_lib

  meta = env['metas']['mlqa']
  squad_lib.generate_tf_record_from_json_file(
      os.path.join(env['xtreme_dir'], 'squad', 'train-v1.1.json'), env['vocab'], str(tmp_path / 'train'),
      max_seq_length=384, do_lower_case=False, max_query_length=64, doc_stride=128)
  assert _records(os.path.join(env['out'], xr.record_file('mlqa', 'train'))) == _records(str(tmp_path / 'train'))
  assert meta['eval_languages'] == meta['test_languages'] == ['en', 'de', 'ar', 'zh']
  files = meta['files']['test']['zh']
  with open(os.path.join(env['out'], files['features']), encoding='utf-8') as f:
    features = [json.loads(line) for line in f]
  with open(os.path.join(env['out'], files['json']), encoding='utf-8') as f:
    data = json.load(f)['data']
  assert [ft['qas_id'] for ft in features] == [qa['id'] for p in data[0]['paragraphs'] for qa in p['qas']]
  context = data[0]['paragraphs'][0]['context']
  # Chinese: one WordPiece per character of the paragraph (no spaces in it).
  assert features[0]['tokens'][features[0]['doc_offset']:-1] == [c for c in context if not c.isspace()]
  record = _parsed(os.path.join(env['out'], files['records']))[0]
  assert 'start_positions' not in record and record['unique_ids'] == [features[0]['unique_id']]


def test_xnli_english_train_from_a_glue_mnli_folder(env, tmp_path):
  glue = data_utils.write_glue_task_dir(tmp_path / 'glue', 'mnli', n_train=10)
  meta = w.prepare_xtreme('xnli', env['xtreme_dir'], env['vocab'], str(tmp_path / 'out'), 64, mnli_dir=glue.glue_dir,
                          languages=['en', 'zh'])['xnli']
  assert meta['train_data_size'] == 10 and meta['train_source'].endswith(os.path.join('MNLI', 'train.tsv'))
  records = _parsed(os.path.join(tmp_path, 'out', xr.record_file('xnli', 'train')))
  assert [r['example_id'][0] for r in records] == list(range(10))
  assert [r['label_ids'][0] for r in records] == [xtreme.XNLI_LABELS.index(e.label) for e in glue.train]
  assert meta['test_languages'] == ['en', 'zh'] and meta['missing']['test'] == []
  with pytest.raises(PrepareError, match='MNLI/train.tsv'):
    w.prepare_xtreme('xnli', env['xtreme_dir'], env['vocab'], str(tmp_path / 'out2'), mnli_dir=str(tmp_path))


# ---------------------------------------------------------------------------------- missing data and errors


def test_missing_languages_are_named_skipped_and_their_old_files_removed(env, tmp_path, caplog):
  xtreme_dir = str(tmp_path / 'download')
  shutil.copytree(env['xtreme_dir'], xtreme_dir)
  out = str(tmp_path / 'out')
  w.prepare_xtreme('panx', xtreme_dir, env['vocab'], out)
  assert os.path.exists(os.path.join(out, xr.record_file('panx', 'test', 'ar')))
  os.remove(os.path.join(xtreme_dir, 'panx', 'test-ar.tsv'))
  os.remove(os.path.join(xtreme_dir, 'panx', 'dev-ar.tsv'))
  with caplog.at_level(logging.WARNING):
    meta = w.prepare_xtreme('panx', xtreme_dir, env['vocab'], out)['panx']
  assert 'ar' in meta['missing']['test'] and 'ar' in meta['missing']['dev'] and 'ar' not in meta['languages']
  assert any('ar' in r.getMessage() and 'skipped' in r.getMessage() for r in caplog.records)
  assert not os.path.exists(os.path.join(out, xr.record_file('panx', 'test', 'ar')))  # the earlier run's
  assert os.path.exists(os.path.join(out, xr.record_file('panx', 'test', 'zh')))
  # A task whose folder is absent is named and skipped by 'all'; asked for alone, it is an error naming a file.
  shutil.rmtree(os.path.join(xtreme_dir, 'bucc2018'))
  for folder in ('xnli', 'pawsx', 'udpos', 'panx', 'xquad', 'mlqa', 'tydiqa', 'squad'):
    shutil.rmtree(os.path.join(xtreme_dir, folder))
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert list(w.prepare_xtreme('all', xtreme_dir, env['vocab'], out)) == ['tatoeba']
  assert any('bucc2018' in r.getMessage() for r in caplog.records)
  with pytest.raises(PrepareError, match=r'bucc2018.*de-en\.test\.de'):
    w.prepare_xtreme('bucc', xtreme_dir, env['vocab'], out)
  with pytest.raises(PrepareError, match=r'panx/train-en\.tsv'):
    w.prepare_xtreme('panx', xtreme_dir, env['vocab'], out)


def test_bad_input_names_file_line_and_field_and_keeps_the_old_outputs(env, tmp_path):
  xtreme_dir = str(tmp_path / 'download')
  shutil.copytree(env['xtreme_dir'], xtreme_dir)
  out = str(tmp_path / 'out')
  w.prepare_xtreme('xnli', xtreme_dir, env['vocab'], out, 32)
  meta_path = os.path.join(out, w.meta_data_file('xnli'))
  before = {name: open(os.path.join(out, name), 'rb').read() for name in os.listdir(out)}
  path = os.path.join(xtreme_dir, 'xnli', 'dev-de.tsv')
  with open(path, encoding='utf-8', newline='') as f:
    lines = f.read().split('\r\n')
  lines[2] = lines[2].rsplit('\t', 1)[0] + '\tmaybe'
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write('\r\n'.join(lines))
  with pytest.raises(DataError, match=r'dev-de\.tsv, line 3, field label: .maybe.'):
    w.prepare_xtreme('xnli', xtreme_dir, env['vocab'], out, 32)
  assert {name: open(os.path.join(out, name), 'rb').read() for name in os.listdir(out)} == before
  assert os.path.exists(meta_path)
  with pytest.raises(PrepareError, match='vocab file'):
    w.prepare_xtreme('xnli', xtreme_dir, str(tmp_path / 'none.txt'), out)
  bad_vocab = tmp_path / 'vocab.txt'
  bad_vocab.write_text('[PAD]\n[UNK]\nAnna\n')
  with pytest.raises(PrepareError, match=r'lacks \[CLS\], \[SEP\]'):
    w.prepare_xtreme('xnli', xtreme_dir, str(bad_vocab), out)
  with pytest.raises(PrepareError, match='XTREME directory'):
    w.prepare_xtreme('xnli', str(tmp_path / 'nowhere'), env['vocab'], out)
  with pytest.raises(PrepareError, match='max_seq_length=2'):
    w.prepare_xtreme('udpos', xtreme_dir, env['vocab'], out, 2)
  with pytest.raises(ValueError, match='none is a language of XTREME pawsx'):
    w.prepare_xtreme('pawsx', xtreme_dir, env['vocab'], out, languages=['ar', 'ru'])
  with pytest.raises(ValueError, match='Unknown XTREME task'):
    w.prepare_xtreme('xcopa', xtreme_dir, env['vocab'], out)
  # A duplicated question id in a QA file.
  mlqa = os.path.join(xtreme_dir, 'mlqa', 'MLQA_V1', 'test', 'test-context-de-question-de.json')
  with open(mlqa, encoding='utf-8') as f:
    document = json.load(f)
  document['data'][0]['paragraphs'][1]['qas'][0]['id'] = document['data'][0]['paragraphs'][0]['qas'][0]['id']
  with open(mlqa, 'w', encoding='utf-8') as f:
    json.dump(document, f)
  with pytest.raises(PrepareError, match=r'test-context-de-question-de\.json: data\[0\]\.paragraphs\[1\]\.qas\[0\], '
                                         r'field id'):
    w.prepare_xtreme('mlqa', xtreme_dir, env['vocab'], str(tmp_path / 'qa'), languages=['de'])
  assert not tf.io.gfile.glob(os.path.join(out, '.prepare-*')) and not os.listdir(tmp_path / 'qa')


def test_command_line_flags_and_withheld_test_answers(env, tmp_path, capsys):
  import argparse

  # xtreme's QA test files may come without answers: the eval records need none.
  xtreme_dir = xtreme_data.write_xtreme_dir(str(tmp_path / 'download'), ['xquad'], ('en', 'zh'), examples=3,
                                            blank_test_answers=True)
  parser = w.add_arguments(argparse.ArgumentParser())
  out = str(tmp_path / 'out')
  args = parser.parse_args(['--task=xquad', f'--xtreme_dir={xtreme_dir}', f'--vocab_file={env["vocab"]}',
                            f'--output_dir={out}', '--max_seq_length=64', '--max_query_length=16',
                            '--doc_stride=16', '--languages=zh'])
  assert w.run(args) == 0
  printed = capsys.readouterr().out
  assert printed.startswith('xquad: train ') and f'-> {out}' in printed
  with open(os.path.join(out, w.meta_data_file('xquad')), encoding='utf-8') as f:
    meta = json.load(f)
  assert meta['test_languages'] == ['zh'] and meta['test_num_examples'] == {'zh': 3}
  assert meta['max_seq_length'] == 64 and meta['doc_stride'] == 16 and meta['do_lower_case'] is False
  args = parser.parse_args(['--task=panx', f'--xtreme_dir={xtreme_dir}', f'--vocab_file={env["vocab"]}',
                            f'--output_dir={out}'])
  with pytest.raises(SystemExit, match=r'prepare xtreme: error: .*panx/train-en\.tsv'):
    w.run(args)


def test_bert_prepare_xtreme_sub_command_and_its_help(env, tmp_path, capsys):
  from projects.bert.datasets import prepare

  with pytest.raises(SystemExit) as e:
    prepare.main(['xtreme', '--help'])
  assert e.value.code == 0
  shown = ' '.join(capsys.readouterr().out.split())
  for flag in ('--task', '--xtreme_dir', '--vocab_file', '--output_dir', '--mnli_dir'):
    assert flag in shown
  assert '(default: False)' in shown and '(default: 128)' in shown and '(default: 64)' in shown  # defaults shown
  out = str(tmp_path / 'out')
  assert prepare.main(['xtreme', '--task=pawsx', f'--xtreme_dir={env["xtreme_dir"]}', f'--vocab_file={env["vocab"]}',
                       f'--output_dir={out}', '--max_seq_length=32', '--languages=en,zh']) == 0
  assert capsys.readouterr().out.startswith(f'pawsx: train {N}, eval ')
  with open(os.path.join(out, w.meta_data_file('pawsx')), encoding='utf-8') as f:
    meta = json.load(f)
  assert meta['eval_languages'] == ['en', 'zh'] and meta['max_seq_length'] == 32 and meta['do_lower_case'] is False
  with pytest.raises(SystemExit, match=r"prepare xtreme: error: The XTREME directory '/nowhere'"):
    prepare.main(['xtreme', '--task=pawsx', '--xtreme_dir=/nowhere', f'--vocab_file={env["vocab"]}',
                  f'--output_dir={out}'])


def test_a_full_disk_names_the_file_and_keeps_the_old_outputs_and_killed_runs_staging_goes(env, tmp_path,
                                                                                            monkeypatch):
  import errno

  from official.nlp.data import classifier_data_lib

  out = str(tmp_path / 'out')
  w.prepare_xtreme('xnli', env['xtreme_dir'], env['vocab'], out, 32, languages=['en', 'de'])
  # A killed run's staging folder (no lock held, older than the grace period) is removed by the next run.
  killed = os.path.join(out, '.prepare-xtreme-xnli-0badf00d')
  os.makedirs(killed)
  os.utime(killed, (0, 0))
  before = {name: open(os.path.join(out, name), 'rb').read() for name in os.listdir(out) if not name.startswith('.')}
  written = []

  def full_disk(examples, label_list, max_seq_length, tokenizer, output_file, *args, **kwargs):
    if written:
      raise OSError(errno.ENOSPC, 'No space left on device', output_file)
    written.append(output_file)  # the train file is written; the disk fills on the first dev file
    return real(examples, label_list, max_seq_length, tokenizer, output_file, *args, **kwargs)

  real = classifier_data_lib.file_based_convert_examples_to_features
  monkeypatch.setattr(classifier_data_lib, 'file_based_convert_examples_to_features', full_disk)
  with pytest.raises(PrepareError) as e:
    w.prepare_xtreme('xnli', env['xtreme_dir'], env['vocab'], out, 48, languages=['en', 'de'])
  assert str(e.value).startswith(f'No space left on device while writing {out}/xnli_eval_en.tf_record: nothing was '
                                 f'replaced, the previous outputs in {out} are kept')
  assert sorted(os.listdir(out)) == sorted(before)  # no staging folder left, the killed run's gone too
  assert {name: open(os.path.join(out, name), 'rb').read() for name in os.listdir(out)} == before
