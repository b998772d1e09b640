"""XTREME's retrieval tasks end to end (`evaluators/xtreme_retrieval.py`): records of tests/bert/xtreme_data.py
folders, a tiny random encoder, and every number checked against a direct computation (the full encoder's output
mean-pooled by hand, the numpy mining and nearest-neighbour reference, xtreme_metrics' threshold and F1) on the same
embeddings; the intermediate-layer embedding (`models/hidden_states.py`) and the blocked device k-NN
(`tasks/xtreme_knn.py`) against their references."""

import dataclasses
import functools
import os
import types

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')
pytest.importorskip('official.nlp.data.classifier_data_lib')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from core import app, errors  # noqa: E402
from core import sharding as sharding_lib  # noqa: E402
from core.evaluators import EvalContext  # noqa: E402
from projects.bert.configs import xtreme as xtreme_config  # noqa: E402
from projects.bert.datasets import xtreme_retrieval_inputs as inputs  # noqa: E402
from projects.bert.datasets import xtreme_writer  # noqa: E402
from projects.bert.evaluators import xtreme_retrieval as ev  # noqa: E402
from projects.bert.fewshot import probes  # noqa: E402
from projects.bert.models import architecture, hidden_states, modeling  # noqa: E402
from projects.bert.tasks import xtreme_knn, xtreme_metrics, xtreme_retrieval, xtreme_submission  # noqa: E402
from tests.bert import xtreme_data  # noqa: E402
from tests.bert.test_xtreme_writer import _write_vocab  # noqa: E402

LANGUAGES = ('en', 'de', 'zh')
MODEL = architecture.model_config('tiny').to_dict()  # 2 layers: the default layer floor(7 * 2 / 12) = 1, the last
SEQ, ROWS = 64, 16  # records' length (xtreme's 512 costs a CPU more); the direct pass's rows (>= every side's)


def _english(sentence, lang):
  """A generated sentence word by word in English (the lexicon inverted; Chinese matched longest word first)."""
  words = {entry[lang]: entry['en'] for entry in xtreme_data._LEXICON.values()}
  if lang not in xtreme_data.NO_SPACE_LANGUAGES:
    return ' '.join(words[w] for w in sentence.split(' '))
  out, i = [], 0
  while i < len(sentence):
    word = max((w for w in words if sentence.startswith(w, i)), key=len)
    out.append(words[word])
    i += len(word)
  return ' '.join(out)


def _bucc_gold(xtreme_dir, lang, split):
  """The generator's rule: source and English ids with the same number are translations."""
  files = {side: os.path.join(xtreme_dir, 'bucc2018', f'{lang}-en.{split}.{side}') for side in (lang, 'en')}
  ids = {side: [line.split('\t')[0] for line in open(path, encoding='utf-8')] for side, path in files.items()}
  english = {i.split('-')[1] for i in ids['en']}
  return {(i, f'en-{i.split("-")[1]}') for i in ids[lang] if i.split('-')[1] in english}


def _write_labels(xtreme_dir, labels_dir):
  """evaluate.py's label files of the generated test sets (which, like xtreme's, withhold them)."""
  for lang in ('de', 'zh'):
    pairs = sorted(_bucc_gold(xtreme_dir, lang, 'test'))
    xtreme_submission.write_submission_file(labels_dir, 'bucc2018', lang, pairs)
    with open(os.path.join(xtreme_dir, 'tatoeba', f'{lang}-en.{lang}'), encoding='utf-8') as f:
      source = [line.rstrip('\n') for line in f]
    with open(os.path.join(xtreme_dir, 'tatoeba', f'{lang}-en.en'), encoding='utf-8') as f:
      target = [line.rstrip('\n') for line in f]
    xtreme_submission.write_submission_file(labels_dir, 'tatoeba', lang,
                                            [target.index(_english(s, lang)) for s in source])


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_retrieval')
  xtreme_dir = xtreme_data.write_xtreme_dir(str(root / 'download'), ['bucc', 'tatoeba'], LANGUAGES, examples=10)
  vocab = _write_vocab(root / 'vocab.txt', xtreme_dir)
  out = str(root / 'records')
  for task in ('bucc', 'tatoeba'):
    xtreme_writer.prepare_xtreme(task, xtreme_dir, vocab, out, max_seq_length=SEQ)
  labels = str(root / 'labels')
  _write_labels(xtreme_dir, labels)
  n = sum(1 for _ in open(vocab, encoding='utf-8'))
  model = tuple(sorted({**MODEL, 'vocab_size': n}.items()))  # hashable: _full_encoder's cache key
  params = probes.init_encoder_params(dict(model), jax.random.PRNGKey(0))
  return {'root': root, 'xtreme_dir': xtreme_dir, 'out': out, 'labels': labels, 'model': model, 'params': params}


def _evaluator(data, variant, workdir, **fields):
  config = xtreme_config.get_config(f'{variant},runlocal')
  config.model = dict(data['model'])
  entry = config.evals.xtreme_retrieval
  entry.update(data_dir=data['out'], labels_dir=data['labels'], **fields)
  context = EvalContext(config=config, model=None, dataset=None, mesh=sharding_lib.create_mesh(),
                        params_shardings=None, workdir=str(workdir))
  return ev.XtremeRetrievalEvaluator('xtreme_retrieval', entry, context)


def _direct_embeddings(data, side):
  """The full (2-layer) encoder's last layer, mean-pooled over input_mask by hand, on the records' full length."""
  n, offsets = len(side), side.offsets
  ids = np.zeros((ROWS, SEQ), np.int32)
  for i in range(n):
    ids[i, :side.lengths[i]] = side.flat[offsets[i]:offsets[i + 1]]
  mask = (ids > 0).astype(np.int32)  # [PAD] is id 0 and no real token is
  sequence, _ = _full_encoder(data['model'])({'params': data['params']}, ids, mask, np.zeros_like(ids))
  m = mask[..., None].astype(np.float32)
  return ((np.asarray(sequence, np.float32) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1))[:n]


@functools.lru_cache(maxsize=2)
def _full_encoder(model):
  return jax.jit(modeling.BertEncoder(modeling.BertConfig.from_model_config(dict(model))).apply)


@pytest.fixture(scope='module')
def bucc(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('bucc_run')
  evaluator = _evaluator(data, 'bucc', workdir)
  scalars = dict(evaluator.run(types.SimpleNamespace(params={'bert': data['params']}), 0))
  return evaluator, scalars


def test_bucc_threshold_from_dev_gold_and_test_pairs_equal_the_numpy_reference(data, bucc):
  evaluator, scalars = bucc
  assert evaluator.layer == 1 and evaluator.pooling == 'mean'
  for lang in ('de', 'zh'):
    per_split = {}
    for split in ('dev', 'test'):
      s = evaluator.sets[split][lang]
      x, y = _direct_embeddings(data, s.source), _direct_embeddings(data, s.target)
      mined = xtreme_retrieval.mine_sentences(x, y, s.bitext.source, s.bitext.target)  # numpy k-NN
      per_split[split] = xtreme_metrics.bucc_candidate_scores(
          mined, xtreme_metrics.unique_sentence_ids(s.bitext.source_ids, s.bitext.source),
          xtreme_metrics.unique_sentence_ids(s.bitext.target_ids, s.bitext.target))
    gold = evaluator.sets['dev'][lang].bitext.gold
    assert set(gold) == _bucc_gold(data['xtreme_dir'], lang, 'dev')  # the rule _write_labels uses for test
    threshold = xtreme_metrics.bucc_threshold(per_split['dev'], gold)
    assert scalars[f'{lang}/threshold'] == pytest.approx(threshold, abs=1e-5)
    dev = xtreme_metrics.bucc_f1(gold, xtreme_metrics.bucc_extract(per_split['dev'], threshold))
    assert scalars[f'{lang}/dev/f1'] == pytest.approx(dev['f1'])
    expected = set(xtreme_metrics.bucc_extract(per_split['test'], threshold))
    path = os.path.join(evaluator.out_dir, 'bucc2018', f'test-{lang}.tsv')
    written = xtreme_submission.read_submission_file('bucc2018', path)
    assert {tuple(line.split('\t')) for line in written} == expected
    labels = xtreme_submission.read_submission_file(
        'bucc2018', os.path.join(data['labels'], 'bucc2018', f'test-{lang}.tsv'))
    test = xtreme_metrics.score_language('bucc2018', labels, written, lang)
    assert scalars[f'{lang}/test/f1'] == pytest.approx(test['f1'])
  # A random encoder still mines German pairs (names are shared words): the pipeline is not scoring noise.
  assert scalars['de/dev/f1'] > 20
  for split in ('dev', 'test'):
    assert scalars[f'average/{split}/f1'] == pytest.approx(np.mean([scalars[f'{lang}/{split}/f1']
                                                                   for lang in ('de', 'zh')]))
  summary = evaluator.summary()
  assert summary['scored_split'] == 'test' and set(summary['per_language']) == {'de', 'zh'}
  assert summary['score'] == pytest.approx(scalars['average/test/f1'])


def test_tatoeba_nearest_english_lines_and_accuracy_equal_the_numpy_reference(data, tmp_path):
  evaluator = _evaluator(data, 'tatoeba', tmp_path, block=3)  # several k-NN blocks per side
  scalars = dict(evaluator.run(types.SimpleNamespace(params={'bert': data['params']}), 0))
  for lang in ('de', 'zh'):
    s = evaluator.sets['test'][lang]
    nearest = xtreme_retrieval.nearest(_direct_embeddings(data, s.source), _direct_embeddings(data, s.target))
    written = xtreme_submission.read_submission_file('tatoeba', os.path.join(tmp_path, 'submission', 'tatoeba',
                                                                              f'test-{lang}.tsv'))
    assert written == [str(i) for i in nearest]
    labels = xtreme_submission.read_submission_file('tatoeba', os.path.join(data['labels'], 'tatoeba',
                                                                             f'test-{lang}.tsv'))
    assert scalars[f'{lang}/test/accuracy'] == pytest.approx(100.0 * np.mean(np.array(labels) == np.array(written)))
  assert scalars['average/test/accuracy'] == pytest.approx(
      np.mean([scalars[f'{lang}/test/accuracy'] for lang in ('de', 'zh')]))


def test_main_runs_no_training_and_reports_every_language(data, tmp_path):
  config = xtreme_config.get_config('bucc,runlocal')
  config.model = dict(data['model'])
  config.evals.xtreme_retrieval.update(data_dir=data['out'], languages='de', pooling='cls', layer=0)
  run = app.train_and_evaluate(config, str(tmp_path))
  result = run['xtreme_retrieval']
  assert run['step'] == 0 and result['layer'] == 0 and result['pooling'] == 'cls'
  assert result['languages'] == {'dev': ['de'], 'test': ['de']} and result['scored_split'] == 'dev'
  assert 'optimistic' in result['note'] and set(result['thresholds']) == {'de'}
  assert os.path.exists(os.path.join(tmp_path, 'submission', 'bucc2018', 'test-de.tsv'))


def test_layer_embedding_is_the_layer_output_pooled_whatever_the_padding():
  mesh = sharding_lib.create_mesh()
  params = probes.init_encoder_params(MODEL, jax.random.PRNGKey(1))
  rng = np.random.RandomState(0)
  lengths = np.array([16, 9, 3, 12])
  ids = np.where(np.arange(16)[None] < lengths[:, None], rng.randint(5, 100, (4, 16)), 0).astype(np.int32)
  batch = {'input_ids': ids, 'input_mask': (ids > 0).astype(np.int32), 'segment_ids': np.zeros_like(ids)}
  config = modeling.BertConfig.from_model_config(MODEL)
  one_layer = modeling.BertEncoder(dataclasses.replace(config, num_layers=1))
  first, _ = one_layer.apply({'params': hidden_states.layer_params(params, 0)}, ids, batch['input_mask'])
  cls = hidden_states.layer_embedding_fn(MODEL, 0, 'cls', mesh)(hidden_states.layer_params(params, 0), batch)
  np.testing.assert_allclose(np.asarray(cls), np.asarray(first)[:, 0], atol=1e-6)
  mean = hidden_states.layer_embedding_fn(MODEL, 0, 'mean', mesh)(params, batch)
  m = batch['input_mask'][..., None]
  np.testing.assert_allclose(np.asarray(mean), (np.asarray(first) * m).sum(1) / m.sum(1), atol=1e-6)
  # Padding a sentence further (a wider bucket) leaves its embedding as it was.
  wide = {k: np.pad(v, ((0, 0), (0, 16))) for k, v in batch.items()}
  np.testing.assert_allclose(hidden_states.layer_embedding_fn(MODEL, 1, 'mean', mesh)(params, wide),
                             hidden_states.layer_embedding_fn(MODEL, 1, 'mean', mesh)(params, batch), atol=1e-5)
  assert [hidden_states.default_layer(n) for n in (12, 24, 6, 2)] == [7, 14, 3, 1]
  with pytest.raises(ValueError, match='layers 0 .. 1'):
    hidden_states.layer_embedding_fn(MODEL, 2, 'mean', mesh)
  assert [ev.bucket_length(n, 512) for n in (1, 8, 9, 100, 300, 600)] == [8, 8, 16, 128, 512, 512]


def _eqn_output_sizes(jaxpr):
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      yield int(np.prod(var.aval.shape))
    for sub in jax.core.jaxprs_in_params(eqn.params):
      yield from _eqn_output_sizes(sub)


def test_device_knn_equals_the_numpy_reference_with_bounded_blocks():
  rng = np.random.RandomState(0)
  x, y = rng.randn(300, 16).astype(np.float32), rng.randn(250, 16).astype(np.float32)
  y[7] = y[3]  # a tie: the lower index first, as the reference
  x[5] = y[3]
  x, y = xtreme_retrieval.normalize(x), xtreme_retrieval.normalize(y)
  for block in (64, 1000):
    sims, inds = xtreme_knn.knn_device(x, y, 4, block=block)
    ref_sims, ref_inds = xtreme_retrieval.knn(x, y, 4, block=block)
    np.testing.assert_array_equal(inds, ref_inds)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-6)
  assert list(inds[5, :2]) == [3, 7]
  # The search's largest array is one block of candidates, [block, block + k], never [n, m].
  block, k = 64, 4
  y_blocks = jnp.zeros((-(-250 // block), block, 16), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda xb, yb: xtreme_knn._block_top_k(xb, yb, jnp.int32(250), k))(
      jnp.zeros((block, 16), jnp.float32), y_blocks).jaxpr
  assert max(_eqn_output_sizes(jaxpr)) == block * (block + k) < 300 * 250


def test_records_that_disagree_with_the_sentences_are_refused(data, tmp_path):
  import shutil
  xtreme_dir = str(tmp_path / 'download')
  shutil.copytree(data['xtreme_dir'], xtreme_dir)
  for name, line in (('de-en.de', 'Anna sieht'), ('de-en.en', 'Anna sees')):  # a pair more than the records hold
    with open(os.path.join(xtreme_dir, 'tatoeba', name), 'a', encoding='utf-8') as f:
      f.write(line + '\n')
  with pytest.raises(errors.DataError, match=r'tatoeba_test_de_source\.tf_record and .*de-en\.de disagree'):
    inputs.load_retrieval_sets('tatoeba', data['out'], xtreme_dir, ['de'])
  with pytest.raises(errors.ConfigError, match=r'pooling.*mean'):
    _evaluator(data, 'bucc', tmp_path, pooling='max')
  with pytest.raises(errors.ConfigError, match='not a retrieval task'):
    _evaluator(data, 'bucc', tmp_path, task='xnli')


def test_retrieval_configs_train_nothing_and_document_every_field():
  from core import config_help

  for variant, task in (('bucc', 'bucc2018'), ('tatoeba,base', 'tatoeba'), ('tatoeba,runlocal', 'tatoeba')):
    config = xtreme_config.get_config(variant)
    assert (config.num_train_steps, config.model_name, config.evals.xtreme_retrieval.task) == (0, 'bert_encoder', task)
    undocumented = {field for field, _ in config_help.leaves(config)
                    if config_help.doc_of(field, xtreme_config.FIELD_DOCS) == config_help.UNDOCUMENTED}
    assert not undocumented, f'xtreme.py:{variant}: give these a meaning in FIELD_DOCS: {undocumented}'
  assert xtreme_config.get_config('bucc').model is None  # the architecture of init_from
