"""The sentence-embedding project trains through main.py's registries on BERT's parts: `bert_glue` records of a
paraphrase task (written by BERT's `prepare glue`), BERT's encoder started from a BERT checkpoint (`init_from`), the
`bert_trainer`.

The paraphrase data is made so that only training can find the pairs: sentence b says sentence a in another
vocabulary (every word of one list has its synonym in a second list), so the encoder it starts from, which knows no
synonym, retrieves b from a near chance, while the trained one has learnt the synonyms from the train pairs and
retrieves the dev pairs (new sentences of the same words).
"""

import json
import os
import random
import subprocess
import sys

import jax
import numpy as np
import pytest

import main
from core import app, errors, params_io, registry
from core.dataset import DatasetMetaData
from core.setup import example_batch_from_meta
from projects.bert.datasets import glue_writer
from projects.bert.models import bert_models
from projects.sentence_embedding import model as model_lib
from projects.sentence_embedding import retrieval
from projects.sentence_embedding.configs import paraphrase
from tests.bert import data_utils

# Minutes long: collected first (tests/conftest.py), so that the two xdist workers overlap it with the rest.
pytestmark = pytest.mark.long(minutes=2)


def test_project_imports_light_and_only_declares():
  # What a GPU user imports to build the model, and the config: no TensorFlow; the evaluator module loads on use.
  code = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'clu', 'orbax', 'official'):
      raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import main
main.declare_projects()
assert 'projects.sentence_embedding.retrieval' not in sys.modules
from core import registry
assert 'retrieval' in registry.EVALUATORS.names() and 'bert_glue' in registry.DATASETS.names()
registry.MODELS.get('sentence_embedding')
from projects.sentence_embedding.configs import paraphrase
for variant in ('mrpc', 'qqp,base', 'mrpc,tiny,runlocal'):
  paraphrase.get_config(variant)
'''
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': data_utils.REPO_ROOT}
  proc = subprocess.run([sys.executable, '-c', code], cwd=data_utils.REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_pair_views_cut_a_pair_into_its_two_sentences():
  # [CLS]=2 a=(10, 11) [SEP]=3 b=(20, 21, 22) [SEP]=3 pad; a second row whose b runs to the end of the window.
  ids = np.array([[2, 10, 11, 3, 20, 21, 22, 3, 0], [2, 10, 3, 20, 21, 22, 23, 24, 3]], np.int32)
  mask = (ids > 0).astype(np.int32)
  segments = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1, 1, 1]], np.int32)
  (ids_a, mask_a), (ids_b, mask_b) = jax.device_get(model_lib.pair_views(ids, mask, segments))
  assert ids_a.tolist() == ids.tolist()
  assert mask_a.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0, 0]]
  assert (ids_b * mask_b).tolist() == [[2, 20, 21, 22, 3, 0, 0, 0, 0], [2, 20, 21, 22, 23, 24, 3, 0, 0]]


def test_single_sentence_tasks_are_refused():
  with pytest.raises(errors.ConfigError, match="task='sst2' has one sentence"):
    model_lib.SentenceEmbeddingModel(None, DatasetMetaData(input_specs={}, task='sst2'))


def test_retrieval_metrics_rank_each_query_among_every_candidate():
  emb = np.zeros((3, 2, 2), np.float32)
  emb[:, 0] = [[1, 0], [0, 1], [1, 0]]
  emb[:, 1] = [[1, 0], [0.6, 0.8], [0, 1]]  # own b ranks 1st, 2nd, 3rd
  out = retrieval.retrieval_metrics(emb, np.array([1, 1, 1]), 1)
  assert out['recall_at_1'] == pytest.approx(1 / 3) and out['mrr'] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
  assert retrieval.retrieval_metrics(emb, np.array([1, 1, 0]), 1)['num_queries'] == 2
  collapsed = np.ones((3, 2, 2), np.float32)
  assert retrieval.retrieval_metrics(collapsed, np.array([1, 1, 1]), 1)['recall_at_1'] == 0
  assert retrieval.retrieval_metrics(collapsed * np.nan, np.array([1, 1, 1]), 1)['recall_at_1'] == 0
  with pytest.raises(errors.DataError, match='positive_label'):
    retrieval.retrieval_metrics(emb, np.array([0, 0, 0]), 1)


WORDS = ('red', 'blue', 'green', 'black', 'white', 'brown', 'pink', 'grey', 'gold', 'silver', 'orange', 'purple')
SYNONYMS = ('apple', 'stone', 'cloud', 'piano', 'window', 'river', 'garden', 'bridge', 'lamp', 'train', 'fox',
            'tower')


def _synonym_paraphrases(root, n_train: int, n_dev: int) -> str:
  """An MRPC-format folder (GLUE's layout) of synonym paraphrases, its vocab, and its records written by BERT's
  `prepare glue`; returns the records directory. A quarter of the pairs are no paraphrase (label 0: b says another
  sentence), which the loss must not take as targets."""
  rng = random.Random(0)
  synonym = dict(zip(WORDS, SYNONYMS))

  def pair(i: int, test: bool) -> str:
    a = [rng.choice(WORDS) for _ in range(4)]
    label = int(rng.random() > 0.25)
    b = [synonym[w] for w in (a if label else [rng.choice(WORDS) for _ in range(4)])]
    return f'{i if test else label}\t{2 * i}\t{2 * i + 1}\t{" ".join(a)} .\t{" ".join(b)} .'

  glue_dir = os.path.join(root, 'glue')
  os.makedirs(os.path.join(glue_dir, 'MRPC'))
  for name, n in (('train', n_train), ('dev', n_dev), ('test', 8)):
    header = ('index' if name == 'test' else 'Quality') + '\t#1 ID\t#2 ID\t#1 String\t#2 String'
    with open(os.path.join(glue_dir, 'MRPC', f'{name}.tsv'), 'w') as f:
      f.write('\n'.join([header] + [pair(i, name == 'test') for i in range(n)]) + '\n')
  vocab = data_utils.write_vocab(os.path.join(root, 'vocab.txt'), [' '.join(WORDS + SYNONYMS)] * 2)
  out_dir = os.path.join(root, 'records')
  glue_writer.prepare_glue('mrpc', glue_dir, vocab, out_dir, max_seq_length=16)
  return out_dir


def _bert_checkpoint(directory, config) -> str:
  """A BERT encoder's parameters (registry 'bert_encoder', random) saved as a params directory, as the converter
  writes one: what `init_from` names."""
  model = registry.MODELS.get('bert_encoder')(config, bert_models.encoder_meta_data())
  params = model.init_params(jax.random.PRNGKey(7), example_batch_from_meta(model.dataset_meta_data))
  params_io.save_params(str(directory), params, {'model': config.model.to_dict(), 'source': 'test'})
  return str(directory)


def test_trains_through_main_on_bert_parts(tmp_path):
  main.declare_projects()  # what `python main.py` does before it runs a config
  assert {'sentence_embedding', 'bert_classification'} <= set(registry.MODELS.names())
  records = _synonym_paraphrases(str(tmp_path / 'data'), n_train=256, n_dev=64)

  def config(steps: int):
    c = paraphrase.get_config('mrpc,runlocal')
    c.dataset.data_dir = records
    c.num_train_steps = steps
    c.num_epochs = 0  # steps = num_train_steps, also 0 (else 0 means one epoch)
    c.batch_size = 16
    c.eval_batch_size = 32
    c.schedule.base_lr = 1e-3  # a tiny random encoder learns in few steps only at a large rate
    c.evals.retrieval.every = 0
    return c

  init = _bert_checkpoint(tmp_path / 'bert', config(0))
  scores = {}
  for steps in (0, 24):
    c = config(steps)
    c.init_from = init
    workdir = str(tmp_path / f'run{steps}')
    results = app.train_and_evaluate(c, workdir)
    assert results['weights']['source'] == 'init_from' and results['done']
    section = results['retrieval']
    scores[steps] = section['final']['validation/recall_at_1'] if steps else section['history'][-1][
        'validation/recall_at_1']
    with open(os.path.join(workdir, 'results.json')) as f:
      assert json.load(f)['retrieval']['main_metric'] == 'validation/recall_at_1'
  losses = data_utils.scalars(str(tmp_path / 'run24'), 'train/loss')
  first, last = np.mean([losses[s] for s in sorted(losses)[:2]]), np.mean([losses[s] for s in sorted(losses)[-2:]])
  assert last < 0.7 * first, losses
  chance = section['final']['validation/chance']
  assert scores[0] < 0.2 and scores[24] > max(10 * chance, scores[0] + 0.4), (scores, chance)
