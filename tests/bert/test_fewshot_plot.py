"""Issue 30, point 6: Scenic-protocol few-shot results are plotted (alone, or beside ours, each line naming its
protocol and feature), and the results section and the run's last line say what each protocol ran (its feature and
support sets), not our protocol's fields for a Scenic-only run. A tiny random encoder on a small task: seconds."""

import json
import os

import jax
import pytest
from clu import metric_writers

import projects.bert  # noqa: F401  (declares the datasets, models and evaluators)
from core import errors, registry
from projects.bert.configs import fewshot as fewshot_config
from projects.bert.fewshot import plot as fewshot_plot
from projects.bert.models import architecture as common
from projects.bert.trainers import bert_trainer as trainer
from tests.bert import data_utils

PNG = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def records_dir(tmp_path_factory):
  out, _ = data_utils.make_glue_records(tmp_path_factory.mktemp('fsplot'), 'sst2', n_train=40, n_dev=24)
  return out


def _run(records_dir, workdir, protocol, monkeypatch):
  """A zero-step run of the few-shot config on a tiny random encoder: (its `fewshot` section, the evaluator, the
  run's last line's account of what was evaluated)."""
  config = fewshot_config.get_config('sst2')
  config.model = common.model_config('tiny')
  block = config.evals.fewshot
  block.update(protocol=protocol, shots=(1, 2), num_seeds=2, batch_size=16)
  block.dataset.data_dir = records_dir
  block.scenic.update(shots=(1, 4), headline='')
  evaluators = []
  real_build = trainer.build_evaluators
  def build(*args, **kwargs):
    evaluators.extend(real_build(*args, **kwargs))
    return evaluators
  monkeypatch.setattr(trainer, 'build_evaluators', build)
  results = trainer.train(rng=jax.random.PRNGKey(0), config=config, model_cls=registry.MODELS.get(config.model_name),
                          dataset=None, workdir=str(workdir),
                          writer=metric_writers.MultiWriter([]))
  return results['fewshot'], trainer.evaluated(evaluators)


def test_scenic_only_run_is_plotted_and_says_what_it_ran(records_dir, tmp_path, monkeypatch):
  section, last_line = _run(records_dir, tmp_path / 'scenic', 'scenic', monkeypatch)
  scenic = section['scenic']
  # A random encoder has no next-sentence head: the encoder's pooler stands in for Scenic's pre-logits, and one
  # support set per shot count was drawn.
  assert scenic['feature'] == 'nsp' and scenic['feature_source'].startswith("stand-in: the encoder's pooled")
  assert scenic['support_sets'] == 1 and scenic['shots'] == [1, 4]
  assert 'ours' not in section and 'feature' not in section and 'num_seeds' not in section and not section['tasks']
  assert scenic['splits']['sst2'] == {'task': 'sst2', 'split': 'validation', 'majority': pytest.approx(
      scenic['splits']['sst2']['majority'])} and 0.2 < scenic['splits']['sst2']['majority'] < 0.8
  assert 'Scenic feature nsp stand-in: encoder pooler' in last_line and 'Scenic support sets 1' in last_line
  assert 'num_seeds' not in last_line and 'ours' not in last_line and 'mean' not in last_line
  with open(tmp_path / 'scenic' / 'fewshot.png', 'rb') as f:
    assert f.read(8) == PNG

  # The CLI draws the Scenic-only run from its results file: accuracy per shot count, no spread.
  label, lines = fewshot_plot.read_entries(f'scenic={tmp_path / "scenic"}')
  assert label == 'scenic' and list(lines) == ['sst2 scenic']
  line = lines['sst2 scenic']
  assert line['protocol'] == 'scenic' and line['metric'] == 'accuracy' and line['task'] == 'sst2'
  assert line['line'] == 'validation, Scenic (nsp stand-in: encoder pooler, 1 support set)'
  assert {int(k): v['mean'] for k, v in line['shots'].items()} == {
      int(k): a for k, a in scenic['accuracy']['sst2'].items()}
  assert all('std' not in v for v in line['shots'].values())
  out = fewshot_plot.main([f'scenic={tmp_path / "scenic"}', '--output', str(tmp_path / 'cli.png')])
  with open(out, 'rb') as f:
    assert f.read(8) == PNG


def test_both_protocols_each_say_their_own_and_are_drawn_apart(records_dir, tmp_path, monkeypatch):
  section, last_line = _run(records_dir, tmp_path / 'both', 'both', monkeypatch)
  assert section['ours'] == {'feature': 'mean', 'support_sets': 2, 'shots': [1, 2], 'note': section['ours']['note']}
  assert section['scenic']['feature'] == 'nsp' and section['scenic']['support_sets'] == 1
  assert 'ours feature mean, ours support sets 2' in last_line and 'Scenic support sets 1' in last_line
  with open(tmp_path / 'both' / 'results.json') as f:
    written = json.load(f)['fewshot']
  lines = fewshot_plot.section_entries(written)
  assert sorted(lines) == ['sst2', 'sst2 scenic']
  assert lines['sst2']['line'] == 'validation, ours (mean probe, 2 seeds)' and 'protocol' not in lines['sst2']
  assert lines['sst2 scenic']['protocol'] == 'scenic' and 'Scenic (nsp' in lines['sst2 scenic']['line']
  assert lines['sst2']['shots']['2']['std'] >= 0 and lines['sst2']['majority'] == pytest.approx(
      lines['sst2 scenic']['majority'])  # one baseline: the same majority class, scored by accuracy

  # Ours alone keeps its legend (the split), as before.
  ours_only = {k: v for k, v in written.items() if k != 'scenic'}
  assert fewshot_plot.section_entries(ours_only)['sst2']['line'] == 'validation'
  with pytest.raises(errors.DataError, match='no few-shot results'):
    fewshot_plot.read_entries(str(tmp_path / 'both'), section='probes')
  assert os.path.exists(tmp_path / 'both' / 'fewshot.png')
