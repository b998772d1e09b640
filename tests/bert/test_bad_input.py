"""Bad input at the model/checkpoint boundary: each a clear error naming the file and the fix."""

import os

import jax
import ml_collections
import pytest

from core import params_io
from core.dataset import DatasetMetaData
from core.registry import DATASETS, MODELS
from core.setup import example_batch_from_meta, setup_training
from projects.bert.models import architecture as common
from projects.bert.configs import pretrain as pretrain_configs
from projects.bert.checkpoints import weights
from tests.bert import data_utils


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  return data_utils.make_pretraining_records(tmp_path_factory.mktemp('bad_input'), max_seq_length=32,
                                             max_predictions_per_seq=5)


def _config(records, **model):
  files, vocab = records
  config = pretrain_configs.get_config('tiny')
  config.dataset.train_files = ','.join(files)
  config.dataset.max_seq_length = 32
  config.dataset.max_predictions_per_seq = 5
  config.batch_size = 8
  config.model = common.model_config('tiny', vocab_size=len(data_utils.read_vocab(vocab)), hidden_size=32,
                                     num_heads=2, intermediate_size=64, **model)
  config.checkpoint.async_save = False
  return config


def test_records_of_a_larger_vocab_than_the_embedding_are_refused(records):
  config = _config(records)
  dataset = DATASETS.get('bert_pretraining')(config)
  config.model.vocab_size = 20
  with pytest.raises(ValueError, match=r'(?s)pretrain-0.tfrecord.*token id \d+ but config.model.vocab_size is 20'):
    MODELS.get('bert_pretraining')(config, dataset.meta_data)


def test_glue_vocab_file_larger_than_the_embedding_is_refused(records, tmp_path):
  _, vocab = records
  config = ml_collections.ConfigDict({'model': common.model_config('tiny', vocab_size=10, num_labels=2)})
  with pytest.raises(ValueError, match=rf'{vocab} .*has \d+ tokens but config.model.vocab_size is 10'):
    MODELS.get('bert_classification')(config, DatasetMetaData(input_specs={}, num_labels=2,
                                                              extra={'vocab_file': vocab}))


def _setup(config, workdir, dataset):
  model = MODELS.get('bert_pretraining')(config, dataset.meta_data)
  return setup_training(config=config, model=model, example_batch=example_batch_from_meta(dataset.meta_data),
                        num_train_steps=4, workdir=str(workdir), rng=jax.random.PRNGKey(0),
                        train_iter=dataset.train_iter, load_pretrained=weights.init_from_loader(config))


def test_checkpoint_of_another_model_size_is_refused(records, tmp_path):
  config = _config(records)
  dataset = DATASETS.get('bert_pretraining')(config)
  setup = _setup(config, tmp_path, dataset)
  setup.checkpointer.save(0, setup.state)
  setup.checkpointer.close()
  bigger = _config(records)
  bigger.model.hidden_size = 64
  with pytest.raises(ValueError, match=rf'(?s)Checkpoint {tmp_path}/checkpoints/0 does not match.*fresh --workdir'):
    _setup(bigger, tmp_path, DATASETS.get('bert_pretraining')(bigger))


def test_init_from_another_model_size_names_the_variable(records, tmp_path):
  config = _config(records)
  dataset = DATASETS.get('bert_pretraining')(config)
  model = MODELS.get('bert_pretraining')(config, dataset.meta_data)
  params = model.init_params(jax.random.PRNGKey(0), example_batch_from_meta(dataset.meta_data))
  params_io.save_params(str(tmp_path / 'small'), params, {'model': config.model.to_dict()})
  bigger = _config(records)
  bigger.model.hidden_size = 64
  bigger.init_from = str(tmp_path / 'small')
  with pytest.raises(ValueError, match=r"(?s)small: variable 'bert/.*' has shape .* but the model expects"):
    _setup(bigger, tmp_path / 'run', DATASETS.get('bert_pretraining')(bigger))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints' / '0')
  assert params_io.load_params(str(tmp_path / 'small'))[0]['bert']['word_embeddings']['embedding'].shape[1] == 32
