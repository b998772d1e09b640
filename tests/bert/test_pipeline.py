"""The shared input pipeline holds for every builder: the SQuAD builder's train iterator carries the resume
fingerprint and checks token ids as GLUE's and pretraining's do, and a truncated record file's error reads cleanly."""

import os
import shutil

import ml_collections
import pytest
from etils import epath

from core import checkpoint as checkpoint_lib
from core.registry import DATASETS
from projects.bert.datasets import records, squad_format, squad_writer
from tests.bert import data_utils, squad_data

SEQ, STRIDE, QUERY = 48, 16, 12


@pytest.fixture(scope='module')
def squad_records(tmp_path_factory):
  """(records dir, vocab size) of SQuAD v1.1 data written by `prepare squad`."""
  root = tmp_path_factory.mktemp('pipeline_squad')
  files = [squad_data.squad_files('v1.1')[k] for k in ('train', 'dev')]
  vocab = data_utils.write_vocab(root / 'vocab.txt', squad_data.texts(*files) * 2)
  squad_writer.prepare_squad(*squad_data.write_squad_files(root / 'json', 'v1.1'), vocab, str(root / 'records'),
                             max_seq_length=SEQ, doc_stride=STRIDE, max_query_length=QUERY)
  return str(root / 'records'), len(data_utils.read_vocab(vocab))


def squad_config(data_dir, batch_size=8, vocab_size=None, **dataset):
  config = ml_collections.ConfigDict({
      'batch_size': batch_size, 'eval_batch_size': 8,
      'dataset': dict({'version': 'v1.1', 'data_dir': data_dir, 'shuffle_buffer': 16}, **dataset)})
  if vocab_size is not None:
    config.model = ml_collections.ConfigDict({'vocab_size': vocab_size, 'type_vocab_size': 2})
  config.lock()
  return config


def _save_position(iterator, directory):
  checkpoint_lib.InputStateHandler().save(epath.Path(directory), checkpoint_lib.InputStateSave(iterator))


def _restore(iterator, directory):
  return checkpoint_lib.InputStateHandler().restore(epath.Path(directory), checkpoint_lib.InputStateRestore(iterator))


def test_squad_resume_into_another_batch_size_or_train_file_is_refused(squad_records, tmp_path):
  data_dir, _ = squad_records
  build = DATASETS.get('bert_squad')
  saved = build(squad_config(data_dir)).train_iter
  next(saved)
  _save_position(saved, tmp_path / 'input')
  with pytest.raises(ValueError, match=r'(?s)input pipeline differs .*global_batch_size: 8 -> 16.*'
                                       r'restore_input=False'):
    _restore(build(squad_config(data_dir, batch_size=16)).train_iter, tmp_path / 'input')
  other = tmp_path / 'other'
  shutil.copytree(data_dir, other)
  with pytest.raises(ValueError, match=r"(?s)input pipeline differs .*train_files: .*removed \[.*{0}.*added "
                                       r"\[.*other/{0}".format(squad_format.TRAIN_RECORDS)):
    _restore(build(squad_config(data_dir, train_file=str(other / squad_format.TRAIN_RECORDS))).train_iter,
             tmp_path / 'input')
  # The same pipeline resumes at the saved position.
  resumed = _restore(build(squad_config(data_dir)).train_iter, tmp_path / 'input')
  assert resumed.fingerprint['dataset'] == 'bert_squad/v1.1'
  assert (next(resumed)['input_ids'] == next(saved)['input_ids']).all()


def test_squad_token_ids_beyond_the_vocab_are_refused(squad_records):
  data_dir, vocab_size = squad_records
  build = DATASETS.get('bert_squad')
  assert next(build(squad_config(data_dir, vocab_size=vocab_size)).train_iter)['input_ids'].max() < vocab_size
  small = vocab_size // 4  # the records hold ids up to about vocab_size: made with a larger vocab than the model's
  ds = build(squad_config(data_dir, vocab_size=small))
  with pytest.raises(ValueError, match=rf'(?s){squad_format.TRAIN_RECORDS}.* hold input_ids up to \d+, but '
                                       rf'config.model.vocab_size is {small}.*larger vocabulary'):
    next(ds.train_iter)
  with pytest.raises(ValueError, match=rf'{squad_format.EVAL_RECORDS}.* hold input_ids up to \d+, but '
                                       rf'config.model.vocab_size is {small}'):
    list(ds.valid_iter())


def test_a_truncated_record_file_error_has_no_stray_quote(squad_records, tmp_path):
  data_dir, _ = squad_records
  cut = str(tmp_path / 'cut.tfrecord')
  shutil.copy(os.path.join(data_dir, squad_format.TRAIN_RECORDS), cut)
  offset = data_utils.truncate_inside_record(cut, 3)
  with pytest.raises(ValueError) as e:
    records.count_records(cut)
  assert str(e.value) == (f'{cut} is corrupt or truncated (truncated record at byte {offset}: read less bytes than '
                          f'requested); re-create it with `python -m projects.bert.datasets.prepare`.')
  ds = DATASETS.get('bert_squad')(squad_config(data_dir, train_file=cut))  # the first record reads
  with pytest.raises(ValueError) as e:
    for _ in range(4):
      next(ds.train_iter)
  assert str(e.value).startswith(f"Reading the records of '{cut}' failed: truncated record at byte {offset}: read "
                                 f"less bytes than requested. A file is corrupt, truncated")
  assert "'" not in str(e.value).split('failed: ', 1)[1].split('. A file')[0]


def test_squad_lengths_default_to_the_records_and_every_mismatch_is_named_at_once(squad_records):
  data_dir, _ = squad_records
  from projects.bert.configs import squad as squad_configs
  defaults = squad_configs.get_config('v1.1').dataset
  lengths = {f: defaults[f] for f in ('max_seq_length', 'doc_stride', 'max_query_length')}
  build = DATASETS.get('bert_squad')
  ds = build(squad_config(data_dir, **lengths))  # the config's defaults read records written at other lengths
  assert ds.meta_data.max_seq_length == SEQ
  assert (ds.meta_data.extra['doc_stride'], ds.meta_data.extra['max_query_length']) == (STRIDE, QUERY)
  with pytest.raises(ValueError) as raised:
    build(squad_config(data_dir, max_seq_length=384, doc_stride=128, max_query_length=64))
  text = str(raised.value)
  assert f'max_seq_length={SEQ}, doc_stride={STRIDE}, max_query_length={QUERY}' in text
  assert '--max_seq_length=384 --doc_stride=128 --max_query_length=64' in text
  assert '--config.dataset.max_seq_length=0 --config.dataset.doc_stride=0 --config.dataset.max_query_length=0' in text
