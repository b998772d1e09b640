"""Length-bucketed evaluation (`datasets/length_buckets.py` through `prelude.EvalPasses`): the same predictions,
logits within float32 rounding and the same submission rows as the padded passes, outputs in file order, a bounded
number of compiled shapes, every process planning the same batches, and the option off giving today's batches."""

import os
import random

import jax
import ml_collections
import numpy as np
import pytest

from core import evaluation, registry
from core.dataset import SPLIT_POSITION, DatasetMetaData
from core.setup import example_batch_from_meta
from core.sharding import create_mesh
from core.train_step import make_eval_step, make_predict_step
from projects.bert.configs import glue as glue_configs
from projects.bert.datasets import classification, length_buckets
from projects.bert.evaluators.glue_predict import prediction_rows
from projects.bert.fewshot.inputs import TaskInputs, pool_tokens
from projects.bert.tasks import glue as glue_tasks
from tests.bert import data_utils

S = 64  # buckets 16, 32, 64
WORDS = 'the a good bad movie film very quite long short story actors plot scene music ending'.split()


def _rows(rng, n):
  """SST-2 rows of varied length: mostly short, some long enough for the 32 and 64 buckets (and truncated)."""
  rows = []
  for _ in range(n):
    words = rng.choice((rng.randint(1, 8), rng.randint(1, 8), rng.randint(12, 26), rng.randint(30, 70)))
    rows.append((' '.join(rng.choice(WORDS) for _ in range(words)), str(rng.randrange(2))))
  return rows


@pytest.fixture(scope='module')
def sst2(tmp_path_factory):
  """(records dir, vocab size) of an SST-2-layout task with 45 dev and 37 test examples of varied length."""
  from projects.bert.datasets import glue_writer

  root = str(tmp_path_factory.mktemp('buckets'))
  rng = random.Random(3)
  folder = os.path.join(root, 'glue', 'SST-2')
  os.makedirs(folder)
  for name, n in (('train.tsv', 20), ('dev.tsv', 45)):
    with open(os.path.join(folder, name), 'w') as f:
      f.write('sentence\tlabel\n' + ''.join(f'{t}\t{y}\n' for t, y in _rows(rng, n)))
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n' + ''.join(f'{i}\t{t}\n' for i, (t, _) in enumerate(_rows(rng, 37))))
  vocab = data_utils.write_vocab(os.path.join(root, 'vocab.txt'), [' '.join(WORDS)])
  out = os.path.join(root, 'records')
  glue_writer.prepare_glue('sst2', os.path.join(root, 'glue'), vocab, out, max_seq_length=S)
  return out, len(data_utils.read_vocab(vocab))


def build(records, bucketed, process_index=None, process_count=None):
  config = ml_collections.ConfigDict({'batch_size': 8, 'eval_batch_size': 8, 'dataset': {
      'task': 'sst2', 'data_dir': records, 'eval_length_buckets': bucketed}})
  return classification.build(config, process_index=process_index, process_count=process_count)


def test_bucket_lengths():
  assert length_buckets.bucket_lengths(128) == (16, 32, 64, 128)
  assert length_buckets.bucket_lengths(384) == (16, 32, 64, 128, 256, 384)
  assert length_buckets.bucket_lengths(16) == (16,)
  assert length_buckets.bucket_lengths(40) == (16, 32, 40)


def test_batches_are_the_padded_rows_grouped_by_length(sst2):
  padded, bucketed = build(sst2[0], False), build(sst2[0], True)
  for split_iter in ('valid_iter', 'test_iter'):
    plain = list(getattr(padded, split_iter)())
    grouped = list(getattr(bucketed, split_iter)())
    assert all(b['input_ids'].shape == (8, S) and SPLIT_POSITION not in b for b in plain)  # the option off: today's
    assert len(grouped) == len(plain)  # = meta_data.num_eval_batches, on every process
    rows = {k: np.concatenate([b[k] for b in plain]) for k in plain[0]}
    widths = []
    for b in grouped:
      width = b['input_ids'].shape[1]
      real = b['batch_mask'] > 0
      longest = b['input_mask'][real].sum(-1).max()
      assert width == min(w for w in length_buckets.bucket_lengths(S) if w >= longest)
      pos = b[SPLIT_POSITION][real]
      for k in ('input_ids', 'input_mask', 'segment_ids'):
        np.testing.assert_array_equal(b[k][real], rows[k][pos, :width])
        assert not rows[k][pos, width:].any()  # nothing but padding was cut
      for k in ('label_ids', 'example_id'):
        np.testing.assert_array_equal(b[k][real], rows[k][pos])
      assert (b[SPLIT_POSITION][~real] == -1).all() and (b['example_id'][~real] == -1).all()
      widths.append(width)
    positions = np.concatenate([b[SPLIT_POSITION][b['batch_mask'] > 0] for b in grouped])
    assert sorted(positions) == list(range(int(rows['batch_mask'].sum())))
    assert widths == sorted(widths) and len(set(widths)) >= 2, widths  # several buckets, shortest first


def test_processes_plan_the_same_batches(sst2):
  per_process = [list(build(sst2[0], True, i, 2).valid_iter()) for i in range(2)]
  assert len(per_process[0]) == len(per_process[1]) == 6  # 45 examples, global batch 8 (4 a process)
  assert [b['input_ids'].shape for b in per_process[0]] == [b['input_ids'].shape for b in per_process[1]]
  positions = np.concatenate([b[SPLIT_POSITION][b['batch_mask'] > 0] for bs in per_process for b in bs])
  assert sorted(positions) == list(range(45))


@pytest.fixture(scope='module')
def tiny(sst2):
  """(model, random params, mesh) of a tiny classifier over the task's vocab."""
  config = glue_configs.get_config('sst2,tiny')
  config.model.vocab_size = sst2[1]
  model = registry.MODELS.get(config.model_name)(config, DatasetMetaData(input_specs={}, num_labels=2))
  batch = example_batch_from_meta(DatasetMetaData(
      input_specs={k: ((S,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))
  return model, jax.jit(model.init_params)(jax.random.PRNGKey(0), batch), create_mesh()


def test_bucketed_eval_and_predictions_equal_the_padded_ones(sst2, tiny):
  model, params, mesh = tiny
  padded, bucketed = build(sst2[0], False), build(sst2[0], True)
  task = glue_tasks.get_task('sst2')
  predict = make_predict_step(model, None, mesh)
  compiled = []
  for split_iter, keep in (('valid_iter', ('label_ids',)), ('test_iter', ('example_id',))):
    before = predict._cache_size()
    want = evaluation.gather_predictions(predict, params, getattr(padded, split_iter)(), mesh, keep=keep)
    compiled.append(predict._cache_size() - before)
    before = predict._cache_size()
    got = evaluation.gather_predictions(predict, params, getattr(bucketed, split_iter)(), mesh, keep=keep)
    compiled.append(predict._cache_size() - before)
    np.testing.assert_allclose(got['outputs'], want['outputs'], rtol=1e-5, atol=1e-5)  # float32 rounding
    np.testing.assert_array_equal(np.argmax(got['outputs'], -1), np.argmax(want['outputs'], -1))
    for k in keep:  # in file order again
      np.testing.assert_array_equal(got[k], want[k])
    if split_iter == 'test_iter':  # the same submission file
      assert (prediction_rows(task, got['outputs'], got['example_id'])
              == prediction_rows(task, want['outputs'], want['example_id']))
  # One shape padded (compiled once); a handful bucketed, each compiled once (the test split reuses dev's).
  assert compiled[0] == 1 and 2 <= compiled[1] <= len(length_buckets.bucket_lengths(S)) and compiled[3] <= 1
  step = make_eval_step(model, None, mesh, with_outputs=True)
  want_metrics, want = evaluation.evaluate_split(step, params, padded.valid_iter(), mesh)
  got_metrics, got = evaluation.evaluate_split(step, params, bucketed.valid_iter(), mesh)
  np.testing.assert_array_equal(got['label_ids'], want['label_ids'])
  assert got_metrics.keys() == want_metrics.keys()
  for k in want_metrics:
    assert got_metrics[k] == pytest.approx(want_metrics[k], rel=1e-5, abs=1e-6)


def test_fewshot_pool_tokens_are_the_padded_ones(sst2):
  def inputs(ds):
    return TaskInputs(task='sst2', num_classes=2, main_split='validation', train_batches=list(ds.valid_iter('train')),
                      eval_batches={}, train_size=20, eval_sizes={}, seq_len=S)
  want, got = pool_tokens(inputs(build(sst2[0], False))), pool_tokens(inputs(build(sst2[0], True)))
  assert got.keys() == want.keys() and want['input_ids'].shape == (20, S)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])
