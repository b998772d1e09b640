"""Length-bucketed SQuAD evaluation (`config.dataset.eval_length_buckets` on `bert_squad`): the dev features grouped
by length, their span logits filled back to [S] (`evaluators/squad.full_length_span_logits`) and decoded in split
order by the unchanged upstream decoding. A padded and a bucketed pass of the `squad` evaluator's own `SquadDev`
give the same predictions, n-best texts and (within float32 rounding) logits wherever no position beyond a feature's
bucket enters the padded run's n-best; `squad_metrics.top_positions_beyond_buckets` finds the features where one
does, the only ones that may differ.

The data: the hand-written SQuAD 2.0 dev file (long paragraphs: full windows) and generated one- and two-sentence
paragraphs (short windows), at S=64: batches of width 32 and 64. The model: a tiny random span model.
"""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from core import evaluation, registry
from core.dataset import SPLIT_POSITION, DatasetMetaData
from core.evaluators import EvalContext
from core.setup import example_batch_from_meta
from core.sharding import create_mesh
from core.train_step import make_predict_step
from projects.bert.configs import squad as squad_configs
from projects.bert.datasets import span_qa, squad_writer, xtreme_qa
from projects.bert.evaluators.squad import SquadDev, full_length_span_logits
from projects.bert.tasks import squad_metrics
from tests.bert import data_utils, squad_data

SEQ, STRIDE, QUERY, BATCH = 64, 24, 16, 8  # BATCH: a multiple of the 8 test devices


def _dev_json():
  """The hand-written v2.0 dev file and 12 short generated paragraphs (as v2.0 questions with answers)."""
  dev = squad_data.squad_files('v2.0')['dev']
  for seed, sentences in ((0, ('born',)), (1, ('born', 'job'))):
    for article in squad_data.fact_squad('dev', 6, seed=seed, people_per_paragraph=1, sentences=sentences)['data']:
      dev['data'].append({'title': f'{article["title"]}-{seed}', 'paragraphs': [
          {'context': p['context'], 'qas': [dict(qa, id=f'{seed}-{qa["id"]}', is_impossible=False) for qa in p['qas']]}
          for p in article['paragraphs']]})
  return dev


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  """(records dir, vocab size)."""
  root = tmp_path_factory.mktemp('squad_buckets')
  files = {'train': squad_data.squad_files('v2.0')['train'], 'dev': _dev_json()}
  vocab = data_utils.write_vocab(root / 'vocab.txt', squad_data.texts(files['train'], files['dev']) * 2)
  paths = squad_data.write_squad_files(root / 'json', 'v2.0', files)
  squad_writer.prepare_squad(*paths, vocab, str(root / 'records'), version_2_with_negative=True, max_seq_length=SEQ,
                             doc_stride=STRIDE, max_query_length=QUERY)
  return str(root / 'records'), len(data_utils.read_vocab(vocab))


def build(data_dir, bucketed, **kw):
  config = ml_collections.ConfigDict({'batch_size': BATCH, 'eval_batch_size': BATCH, 'dataset': {
      'version': 'v2.0', 'data_dir': data_dir, 'eval_length_buckets': bucketed}})
  return span_qa.build(config, **kw)


@pytest.fixture(scope='module')
def tiny(records):
  """(config, model, random params, mesh) of a tiny span model over the records' vocab."""
  config = squad_configs.get_config('v2.0,tiny')
  config.model.vocab_size = records[1]
  model = registry.MODELS.get(config.model_name)(config, DatasetMetaData(input_specs={}))
  batch = example_batch_from_meta(DatasetMetaData(
      input_specs={k: ((SEQ,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))
  return config, model, jax.jit(model.init_params)(jax.random.PRNGKey(1), batch), create_mesh()


def test_the_option_is_off_by_default_and_groups_features_when_on(records):
  assert span_qa.default_config().eval_length_buckets is False
  assert xtreme_qa.default_config().eval_length_buckets is False
  assert squad_configs.get_config('v1.1').dataset.eval_length_buckets is False
  padded, bucketed = build(records[0], False), build(records[0], True)
  plain, grouped = list(padded.valid_iter()), list(bucketed.valid_iter())
  assert all(b['input_ids'].shape == (BATCH, SEQ) and SPLIT_POSITION not in b for b in plain)
  assert len(grouped) == len(plain) == padded.meta_data.num_eval_batches['dev']
  widths = [b['input_ids'].shape[1] for b in grouped]
  assert widths == sorted(widths) and set(widths) == {32, 64}, widths
  rows = {k: np.concatenate([b[k] for b in plain]) for k in plain[0]}
  for b in grouped:
    real, width = b['batch_mask'] > 0, b['input_ids'].shape[1]
    pos = b[SPLIT_POSITION][real]
    np.testing.assert_array_equal(b['unique_ids'][real], rows['unique_ids'][pos])
    np.testing.assert_array_equal(b['input_ids'][real], rows['input_ids'][pos, :width])
    assert not rows['input_mask'][pos, width:].any()  # only padding was cut
    assert (b['unique_ids'][~real] == -1).all()
  n = padded.meta_data.eval_sizes['dev']
  assert sorted(np.concatenate([b[SPLIT_POSITION][b['batch_mask'] > 0] for b in grouped])) == list(range(n))
  # Two processes plan the same batches and share the features between them.
  per_process = [list(build(records[0], True, process_index=i, process_count=2).valid_iter()) for i in range(2)]
  assert [b['input_ids'].shape for b in per_process[0]] == [b['input_ids'].shape for b in per_process[1]]
  ids = np.concatenate([b['unique_ids'][b['batch_mask'] > 0] for bs in per_process for b in bs])
  assert sorted(ids) == sorted(rows['unique_ids'][rows['batch_mask'] > 0])


def test_top_positions_beyond_buckets():
  logits = np.zeros((3, 8, 2), np.float32)
  logits[:, :, 0] = np.arange(8)[::-1]  # start: position 0 best
  logits[:, :, 1] = np.arange(8)[::-1]
  logits[1, 6, 1] = 100.0  # feature 1: an end beyond its width 4 is the best end
  logits[2, :, :] = 0.0  # feature 2: all tied: upstream's stable ranking takes positions 0, 1, 2
  widths = np.array([4, 4, 3])
  np.testing.assert_array_equal(squad_metrics.top_positions_beyond_buckets(logits, widths, 3), [False, True, False])
  np.testing.assert_array_equal(squad_metrics.top_positions_beyond_buckets(logits, widths, 5), [True, True, True])
  with pytest.raises(ValueError, match=r'widths \[N\]'):
    squad_metrics.top_positions_beyond_buckets(logits, widths[:2])


def _dev(dataset, tiny, tmp_path, n_best_size):
  config, model, _, mesh = tiny
  context = EvalContext(config=config, model=model, dataset=dataset, mesh=mesh, params_shardings=None,
                        workdir=str(tmp_path))
  return SquadDev('squad', ml_collections.ConfigDict({'n_best_size': n_best_size}), context, other_fields=())


def _texts(nbest):
  return {qid: [e['text'] for e in entries] for qid, entries in nbest.items()}


@pytest.mark.parametrize('n_best_size', [20, 2])
def test_bucketed_predictions_are_the_padded_ones_where_no_padding_enters_the_n_best(records, tiny, tmp_path,
                                                                                    n_best_size):
  _, model, params, mesh = tiny
  padded, bucketed = build(records[0], False), build(records[0], True)
  want_dev, got_dev = _dev(padded, tiny, tmp_path, n_best_size), _dev(bucketed, tiny, tmp_path, n_best_size)
  want, got = want_dev.predict(params), got_dev.predict(params)  # (predictions, nbest, null_odds)

  # The padded pass's logits, and each feature's bucket length in the bucketed pass.
  features = want_dev.data.features
  step = full_length_span_logits(make_predict_step(model, None, mesh), SEQ)
  gathered = evaluation.gather_predictions(step, params, padded.valid_iter(), mesh, keep=('unique_ids',))
  assert gathered['unique_ids'].tolist() == [f.unique_id for f in features]
  widths = span_qa.bucket_widths(bucketed.valid_iter(), len(features))
  beyond = squad_metrics.top_positions_beyond_buckets(gathered['outputs'], widths, n_best_size)

  # 1. The bucketed run is the padded logits seen through the buckets (positions past each width filled), for every
  # question: the fill and the split order are right.
  seen = np.array(gathered['outputs'])
  for i, w in enumerate(widths):
    seen[i, w:] = squad_metrics.BEYOND_BUCKET_LOGIT
  through = squad_metrics.decode(want_dev.data.examples, features, gathered['unique_ids'], seen,
                                 n_best_size=n_best_size, do_lower_case=True, version_2_with_negative=True)
  assert got[0] == through[0] and _texts(got[1]) == _texts(through[1])
  for qid, entries in got[1].items():
    for e, t in zip(entries, through[1][qid]):
      assert e['start_logit'] == pytest.approx(t['start_logit'], abs=1e-5)
      assert e['end_logit'] == pytest.approx(t['end_logit'], abs=1e-5)
  np.testing.assert_allclose([got[2][q] for q in sorted(got[2])], [through[2][q] for q in sorted(got[2])], atol=1e-5)

  # 2. Against the padded run: the same answers, n-best texts and logits for every question none of whose features
  # has a position beyond its bucket among its n-best; questions where one does may differ.
  flagged = {features[i].qas_id for i in np.flatnonzero(beyond)}
  clean = [qid for qid in want[0] if qid not in flagged]
  narrow = {features[i].qas_id for i in np.flatnonzero(widths < SEQ)}
  assert len(clean) >= 5, (len(clean), len(flagged))
  # At n-best 20 a random head ranks some of positions 32.. of a width-32 feature in its top 20: all such features
  # are flagged. At n-best 2 some narrow features are clean too: a check of the cut, not only of the order.
  assert n_best_size == 20 or set(clean) & narrow, (len(clean), len(flagged))
  assert {q: got[0][q] for q in clean} == {q: want[0][q] for q in clean}
  assert {q: t for q, t in _texts(got[1]).items() if q in clean} == {q: t for q, t in _texts(want[1]).items()
                                                                       if q in clean}
  for qid in clean:
    for e, w in zip(got[1][qid], want[1][qid]):
      assert e['start_logit'] == pytest.approx(w['start_logit'], abs=1e-5)
      assert e['probability'] == pytest.approx(w['probability'], abs=1e-5)
    assert got[2][qid] == pytest.approx(want[2][qid], abs=1e-5)
  differing = {q for q in want[0] if got[0][q] != want[0][q] or _texts(got[1])[q] != _texts(want[1])[q]}
  assert differing <= flagged
  if not flagged:  # then the whole prediction files are the padded run's
    for out, result in (('padded', want), ('bucketed', got)):
      squad_metrics.write_prediction_files(str(tmp_path / out), *result, True)
    assert (json.load(open(tmp_path / 'padded' / squad_metrics.PREDICTIONS_FILE))
            == json.load(open(tmp_path / 'bucketed' / squad_metrics.PREDICTIONS_FILE)))


# ------------------------------------------------------------------------------------------ bert_xtreme_qa


@pytest.fixture(scope='module')
def mlqa(tmp_path_factory):
  """(records dir, vocab size) of generated MLQA-like folders (en, de, zh) at S=48."""
  from projects.bert.datasets import xtreme_writer
  from tests.bert import xtreme_data

  root = tmp_path_factory.mktemp('mlqa_buckets')
  xtreme_dir = xtreme_data.write_xtreme_dir(str(root / 'download'), ['mlqa'], ('en', 'de', 'zh'), examples=24)
  texts = [open(os.path.join(d, f), encoding='utf-8').read() for d, _, names in os.walk(xtreme_dir) for f in names]
  vocab = data_utils.write_vocab(root / 'vocab.txt', texts)  # every character, and the words seen twice
  xtreme_writer.prepare_xtreme('mlqa', xtreme_dir, vocab, str(root / 'records'), 48, doc_stride=16,
                               max_query_length=16)
  return str(root / 'records'), len(data_utils.read_vocab(vocab))


def test_xtreme_qa_languages_decode_bucketed_passes_as_padded_ones(mlqa):
  from projects.bert.evaluators.xtreme_qa import QaLanguages

  config = squad_configs.get_config('v1.1,tiny')
  config.model.vocab_size = mlqa[1]
  model = registry.MODELS.get(config.model_name)(config, DatasetMetaData(input_specs={}))
  batch = example_batch_from_meta(DatasetMetaData(
      input_specs={k: ((48,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))
  params, mesh = jax.jit(model.init_params)(jax.random.PRNGKey(2), batch), create_mesh()
  step = make_predict_step(model, None, mesh)
  out = {}
  for bucketed in (False, True):
    dataset = xtreme_qa.build(ml_collections.ConfigDict({'batch_size': BATCH, 'eval_batch_size': BATCH, 'dataset': {
        'task': 'mlqa', 'data_dir': mlqa[0], 'eval_length_buckets': bucketed}}))
    context = EvalContext(config=ml_collections.ConfigDict({}), model=model, dataset=dataset, mesh=mesh,
                          params_shardings=None, workdir='')
    qa = QaLanguages('xtreme_qa', ml_collections.ConfigDict({'languages': '', 'n_best_size': 1}), context, 'eval',
                     ('languages',), step)
    out[bucketed] = (dataset, qa, {lang: qa.predict(params, lang) for lang in qa.languages})
  (padded, qa, want), (bucketed, _, got) = out[False], out[True]
  assert qa.languages == ['en', 'de', 'zh'] and got.keys() == want.keys()
  compared = 0
  for lang in qa.languages:
    widths = span_qa.bucket_widths(bucketed.valid_iter(lang), padded.meta_data.eval_sizes[lang])
    assert widths.min() < 48  # some batches are cut
    logits = evaluation.gather_predictions(qa.predict_step, params, padded.valid_iter(lang), mesh,
                                           keep=('unique_ids',))['outputs']
    flagged = {qa.data[lang].features[i].qas_id
               for i in np.flatnonzero(squad_metrics.top_positions_beyond_buckets(logits, widths, 1))}
    clean = [q for q in want[lang] if q not in flagged]
    assert {q: got[lang][q] for q in clean} == {q: want[lang][q] for q in clean}
    compared += len(clean)
  assert compared >= 20, compared
