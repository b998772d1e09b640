"""The XTREME suite over all nine tasks, each kind's evaluator behind the suite's one contract (runs/xtreme_suite.py):
sentence pairs, tagging, QA and retrieval runs of a one-layer tiny model (one seed, two steps) on a generated folder
(tests/bert/xtreme_data.py: en, de, zh) give a complete table, the four group means, the XTREME score and a
leaderboard folder with every task's files."""

import os

import numpy as np
import pytest

import projects.bert  # noqa: F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app
from projects.bert.configs import xtreme_suite as suite_configs
from projects.bert.datasets import xtreme_writer
from projects.bert.runs import xtreme_suite
from projects.bert.tasks import xtreme, xtreme_metrics, xtreme_submission
from tests.bert import xtreme_data
from tests.bert.test_xtreme_retrieval_eval import _write_labels

LANGUAGES = ('en', 'de', 'zh')
N = 8  # examples per file
SEQ_LEN = {xtreme.SPAN_QA: 64}  # the others 32
pytestmark = pytest.mark.long(minutes=2)


@pytest.fixture(scope='module')
def suite(tmp_path_factory):
  root = tmp_path_factory.mktemp('xtreme_all')
  download = xtreme_data.write_xtreme_dir(str(root / 'download'), None, LANGUAGES, examples=N)
  vocab, vocab_size = xtreme_data.write_vocab(root / 'vocab.txt', download, continuation_pieces=False)
  labels = str(root / 'labels')  # the retrieval test gold, withheld from the download as xtreme's is
  _write_labels(download, labels)
  records = str(root / 'records')
  for name, task in xtreme.XTREME_TASKS.items():
    xtreme_writer.prepare_xtreme(name, download, vocab, records, SEQ_LEN.get(task.kind, 32), doc_stride=32,
                                 max_query_length=16)
  config = suite_configs.get_config('tiny')
  config.data_dir = records
  config.num_seeds = 1
  for run in config.runs.values():
    run.model.vocab_size = vocab_size
    run.model.num_layers = 1
    if 'xtreme_retrieval' in run.evals:
      run.evals.xtreme_retrieval.update(batch_size=8, block=16, labels_dir=labels)
      continue
    run.checkpoint.async_save = False
    for field in ('max_seq_length', 'doc_stride', 'max_query_length'):  # 0: the records' lengths
      if field in run.dataset:
        run.dataset[field] = 0
    run.dataset.shuffle_buffer = N
    run.batch_size = run.eval_batch_size = 8
    run.num_epochs = 0.0
    run.num_train_steps = 2
    run.checkpoint_every = run.log_every = 2
  workdir = str(root / 'xtreme')
  return workdir, app.train_and_evaluate(config, workdir)


def test_every_task_kind_fills_the_table_and_the_xtreme_score(suite):
  _, summary = suite
  assert list(summary['tasks']) == list(xtreme.XTREME_TASKS) and not summary['missing']
  scores = {name: t['score']['mean'] for name, t in summary['tasks'].items()}
  for name, t in summary['tasks'].items():
    assert t['languages'] and all(0.0 <= cell['mean'] <= 100.0 for cell in t['languages'].values()), name
  # The four groups and the score: means of the task scores, as evaluate.py (not a mean of the group means).
  for group, g in summary['groups'].items():
    assert g['tasks'] == list(xtreme.GROUP_TASKS[group]) and g['value'] == pytest.approx(
        np.mean([scores[n] for n in g['tasks']])), group
  assert summary['xtreme_score']['value'] == pytest.approx(np.mean(list(scores.values())))
  assert summary['xtreme_score']['value'] == pytest.approx(xtreme_metrics.xtreme_summary(scores)['xtreme_score'])


def test_the_leaderboard_folder_has_every_task_in_evaluate_py_layout(suite):
  workdir, summary = suite
  folder = summary['submission_dir']
  assert sorted(os.listdir(folder)) == sorted(t.name for t in xtreme.XTREME_TASKS.values())
  for name, task in xtreme.XTREME_TASKS.items():
    files = summary['submission'][name]['files']
    assert files, name
    for lang, path in files.items():
      assert path == os.path.join(folder, task.submission_file(lang)) and os.path.exists(path)
      assert xtreme_submission.read_submission_file(name, path), (name, lang)  # evaluate.py's reader reads it


def test_a_run_without_gold_labels_is_reported_unscored_not_as_a_broken_run(tmp_path):
  results = {'xtreme_retrieval': {'task': 'tatoeba', 'per_language': {}, 'files': {'de': 'x/test-de.tsv'},
                                  'final': {'submission files': 1}}}
  with pytest.raises(xtreme_suite.Unscored, match='labels_dir'):
    xtreme_suite.run_scores(results, 'tatoeba', str(tmp_path))
