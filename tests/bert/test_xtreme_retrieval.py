"""XTREME's retrieval protocol (numpy reference): blocked k-NN, ratio-margin mining, Tatoeba nearest neighbours."""

import numpy as np
import pytest

from projects.bert.datasets import xtreme_reader
from projects.bert.tasks import xtreme_metrics as m
from projects.bert.tasks import xtreme_retrieval as rt
from tests.bert import xtreme_data


def _literal_mine(x, y, k):
  """xtreme's mine_bitext ('max', ratio margin, cosine), loop by loop, on dense similarities."""
  x, y = rt.normalize(x), rt.normalize(y)
  sim = x @ y.T
  kx, ky = min(len(y), k), min(len(x), k)
  x2y_ind = np.argsort(-sim, axis=1, kind='stable')[:, :kx]
  y2x_ind = np.argsort(-sim.T, axis=1, kind='stable')[:, :ky]
  x2y_mean = np.take_along_axis(sim, x2y_ind, axis=1).mean(axis=1)
  y2x_mean = np.take_along_axis(sim.T, y2x_ind, axis=1).mean(axis=1)
  candidates = []
  for i in range(len(x)):
    scores = [sim[i, j] / ((x2y_mean[i] + y2x_mean[j]) / 2) for j in x2y_ind[i]]
    candidates.append((max(scores), i, int(x2y_ind[i][int(np.argmax(scores))])))
  for j in range(len(y)):
    scores = [sim[i, j] / ((y2x_mean[j] + x2y_mean[i]) / 2) for i in y2x_ind[j]]
    candidates.append((max(scores), int(y2x_ind[j][int(np.argmax(scores))]), j))
  order = sorted(range(len(candidates)), key=lambda c: -candidates[c][0])
  kept, seen_x, seen_y = [], set(), set()
  for c in order:
    score, i, j = candidates[c]
    if i not in seen_x and j not in seen_y:
      seen_x.add(i)
      seen_y.add(j)
      if score > 0:
        kept.append((score, i, j))
  return kept


def test_blocked_knn_equals_dense_top_k():
  rng = np.random.default_rng(0)
  x, y = rt.normalize(rng.normal(size=(37, 8))), rt.normalize(rng.normal(size=(53, 8)))
  sims, inds = rt.knn(x, y, 5, block=7)
  dense = x @ y.T
  expected = np.argsort(-dense, axis=1, kind='stable')[:, :5]
  np.testing.assert_array_equal(inds, expected)
  np.testing.assert_allclose(sims, np.take_along_axis(dense, expected, axis=1), rtol=1e-6)
  with pytest.raises(ValueError, match=r'k must be in \[1, 53\]'):
    rt.knn(x, y, 54)


def test_knn_ties_go_to_the_lower_index_across_blocks():
  y = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
  for block in (1, 2, 8):
    _, inds = rt.knn(np.array([[1.0, 0.0], [0.0, 1.0]]), y, 2, block=block)
    np.testing.assert_array_equal(inds, [[1, 3], [0, 2]])


def test_margin_mining_by_hand():
  # x0 = e1; y0 = e1, y1 = (0.8, 0.6). k = 2: x0's neighbours mean 0.9; y0's 1.0, y1's 0.8.
  # score(x0, y0) = 1 / ((0.9 + 1.0) / 2) = 1 / 0.95; score(x0, y1) = 0.8 / 0.85; y1 loses to y0 for x0.
  mined = rt.mine(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.8, 0.6]]), k=2)
  assert len(mined) == 1
  assert mined[0][1:] == (0, 0) and mined[0][0] == pytest.approx(1 / 0.95)


def test_mining_equals_xtreme_loop_by_loop():
  rng = np.random.default_rng(1)
  base = rng.normal(size=(30, 16))
  x = base[:25] + 0.3 * rng.normal(size=(25, 16))  # 25 sources, 20 with a translation among y
  y = np.concatenate([base[5:25], rng.normal(size=(8, 16))]) + 0.3 * rng.normal(size=(28, 16))
  ours = rt.mine(x, y, k=4, block=6)
  theirs = _literal_mine(x, y, 4)
  assert [(i, j) for _, i, j in ours] == [(i, j) for _, i, j in theirs]
  np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in theirs], rtol=1e-5)


def test_nearest_is_cosine_not_inner_product():
  x = np.array([[1.0, 0.1], [0.0, 1.0]])
  y = np.array([[10.0, 10.0], [1.0, 0.0], [0.0, 0.5]])  # y0 has the largest inner products, not the best cosine
  np.testing.assert_array_equal(rt.nearest(x, y), [1, 2])


def _bag_of_concepts(sentences, lang):
  """A language-independent embedding: counts of the lexicon's concepts (an ideal multilingual encoder)."""
  words = {word: n for n, by_lang in enumerate(xtreme_data._LEXICON.values()) for word in by_lang.values()}
  out = np.zeros((len(sentences), len(words) + 1))
  for row, sentence in enumerate(sentences):
    tokens = sentence.split()
    if lang in xtreme_data.NO_SPACE_LANGUAGES:  # Chinese words of one or two characters: match greedily
      tokens, text = [], sentence
      while text:
        size = 2 if text[:2] in words else 1
        tokens.append(text[:size])
        text = text[size:]
    for token in tokens:
      out[row, words.get(token, len(words))] += 1
  return out + 1e-3  # no all-zero rows


def test_bucc_pipeline_recovers_the_generated_pairs(tmp_path):
  root = xtreme_data.write_xtreme_dir(str(tmp_path), ['bucc'], ['zh', 'de'], examples=15)
  for lang in ('zh', 'de'):
    dev = xtreme_reader.read_split(root, 'bucc', 'dev', [lang]).examples[lang]
    candidates = rt.mine_sentences(_bag_of_concepts(dev.source, lang), _bag_of_concepts(dev.target, 'en'),
                                   dev.source, dev.target)
    scores = m.bucc_candidate_scores(candidates, m.unique_sentence_ids(dev.source_ids, dev.source),
                                     m.unique_sentence_ids(dev.target_ids, dev.target))
    threshold = m.bucc_threshold(scores, dev.gold)
    assert len(dev.gold) == 15 and set(dev.gold) <= set(scores)
    assert m.bucc_f1(dev.gold, m.bucc_extract(scores, threshold))['f1'] == pytest.approx(100.0)
    # Each side's unpaired sentence finds its best match already taken: 'max' mining keeps pairs one-to-one.
    assert set(scores) == set(dev.gold)


def test_mine_sentences_mines_each_distinct_sentence_once():
  x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  y = np.array([[0.0, 1.0], [1.0, 0.1]])
  mined = rt.mine_sentences(x, y, ['a', 'a', 'b'], ['B', 'A'], k=1)
  assert sorted((s, t) for _, s, t in mined) == [('a', 'A'), ('b', 'B')]
  with pytest.raises(ValueError, match='3 / 2 embeddings for 2 / 2 sentences'):
    rt.mine_sentences(x, y, ['a', 'b'], ['A', 'B'])
