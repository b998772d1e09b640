r"""The few-step MiniLM learning tests' recipes over seeds, with padded and with length-grouped train batches
(`config.dataset.train_length_buckets`), through `core.app.train_and_evaluate` and the tests' own data and configs:

  nice -n 5 python -m benchmarks.learning_test_seeds --tests=record --seeds=0,1,2,3 \
      --output=benchmarks/results/learning_test_seeds_cpu.json

Tests (`--tests`, each with the claim its test makes):
  record  tests/bert/test_superglue_minilm.py's ReCoRD run (30 steps of batch 16 at 1e-4, S=48; bar: dev exact
          match >= 0.6, a random candidate 0.4);
  squad   tests/bert/test_squad_finetune.py's run (synthetic SQuAD, 150 steps of batch 16 at 1e-4, S=96; bar: dev
          F1 >= the one-span-per-paragraph ceiling + 10).
A seed sets `rng_seed` and `dataset.seed` (the head's init, dropout and the train order); the tests run seed 0.
`--lr` / `--steps` override the recipe (a candidate recipe is measured over the same seeds). Per run: the dev score,
whether it reaches the test's bar, the seconds; per test and mode: mean, std, runs at the bar. The JSON is rewritten
after every run, so a stopped benchmark keeps what it measured; it holds one entry per test and recipe (a
rerun replaces its own entry and keeps the others).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')  # the tests' 8 fake devices

from benchmarks import common  # noqa: E402

MODES = ('padded', 'bucketed')


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--tests', default='record,squad', help='comma-separated: record, squad')
  parser.add_argument('--seeds', default='0,1,2,3')
  parser.add_argument('--modes', default=','.join(MODES))
  parser.add_argument('--lr', type=float, default=None, help="peak learning rate (default: the test's)")
  parser.add_argument('--steps', type=int, default=None, help="train steps (default: the test's)")
  parser.add_argument('--workdir', default='', help='where data and runs go (default: a temporary folder)')
  parser.add_argument('--output', default='benchmarks/results/learning_test_seeds_cpu.json')
  return parser.parse_args(argv)


def record_runner(root: str) -> Dict[str, Any]:
  """The ReCoRD test's fixture (records and converted MiniLM) and its config, claim and score."""
  from tests.bert import test_superglue_minilm as t

  fixture = getattr(t.minilm, '__wrapped__', t.minilm)
  holder = fixture(types.SimpleNamespace(mktemp=lambda name: _folder(root, name)))
  metric, bar = t.CLAIMS['record']

  def run(config: Any, workdir: str) -> Dict[str, float]:
    from core import app
    final = app.train_and_evaluate(config, workdir)['superglue']['final']
    return {'score': final[f'validation/{metric}'], 'bar': bar}

  return {'config': lambda: t.minilm_config(holder, 'record'), 'run': run, 'metric': f'dev {metric}',
          'lr': t.LR['record'], 'steps': t.STEPS['record']}


def squad_runner(root: str) -> Dict[str, Any]:
  """The synthetic SQuAD test's fixture and its config, claim and score."""
  from tests.bert import test_squad_finetune as t
  from projects.bert.tasks import squad_metrics

  fixture = getattr(t.facts, '__wrapped__', t.facts)
  facts = fixture(types.SimpleNamespace(mktemp=lambda name: _folder(root, name)))

  def run(config: Any, workdir: str) -> Dict[str, float]:
    from core import app
    results = app.train_and_evaluate(config, workdir)
    with open(results['squad_predict']['files']['predictions']) as f:
      check = squad_metrics.question_dependence(facts.dev['data'], json.load(f))
    return {'score': results['squad']['final']['f1'], 'bar': check['one_span_ceiling_f1'] + 10.0}

  def config() -> Any:
    c = t.minilm_config(facts)
    c.evals.squad.every = 0  # one evaluation, at the end (the score the test reads is the final one)
    return c

  return {'config': config, 'run': run, 'metric': 'dev F1', 'lr': t.LR, 'steps': t.STEPS}


def _folder(root: str, name: str) -> Any:
  import pathlib
  path = pathlib.Path(root) / name
  path.mkdir(parents=True, exist_ok=True)
  return path


RUNNERS: Dict[str, Callable[[str], Dict[str, Any]]] = {'record': record_runner, 'squad': squad_runner}


def summary(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
  scores = np.array([r['score'] for r in runs], np.float64)
  return {'runs': len(runs), 'mean': round(float(scores.mean()), 3), 'std': round(float(scores.std()), 3),
          'at_bar': sum(r['at_bar'] for r in runs)}


def _entries(path: str) -> List[Dict[str, Any]]:
  """The entries already in `path` (a rerun replaces the entry of its own test and recipe, keeps the others)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f).get('entries', [])


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parse(argv)
  import projects.bert  # noqa: F401  (registers the BERT datasets, models and trainers)

  root = args.workdir or tempfile.mkdtemp(prefix='learning_test_seeds_')
  seeds = [int(s) for s in args.seeds.split(',')]
  modes = [m for m in args.modes.split(',') if m]
  command = 'python -m benchmarks.learning_test_seeds ' + ' '.join(sys.argv[1:] if argv is None else argv)
  for name in args.tests.split(','):
    runner = RUNNERS[name](os.path.join(root, name))
    lr, steps = args.lr or runner['lr'], args.steps or runner['steps']
    entry = {'test': name, 'metric': runner['metric'], 'lr': lr, 'steps': steps,
             'recipe': 'the test\'s' if (lr, steps) == (runner['lr'], runner['steps']) else 'a candidate',
             'command': command, 'environment': common.environment(), 'runs': [], 'summary': {}}
    others = [e for e in _entries(args.output) if (e['test'], e['lr'], e['steps']) != (name, lr, steps)]
    for mode in modes:
      for seed in seeds:
        config = runner['config']()
        config.rng_seed = config.dataset.seed = seed
        config.schedule.base_lr, config.num_train_steps = lr, steps
        config.dataset.train_length_buckets = mode == 'bucketed'
        start = time.time()
        scored = runner['run'](config, os.path.join(root, name, f'{mode}_{seed}_lr{lr}_n{steps}'))
        row = {'mode': mode, 'seed': seed, 'score': round(float(scored['score']), 3),
               'bar': round(float(scored['bar']), 3), 'at_bar': bool(scored['score'] >= scored['bar']),
               'seconds': round(time.time() - start)}
        entry['runs'].append(row)
        entry['summary'] = {m: summary([r for r in entry['runs'] if r['mode'] == m])
                            for m in modes if any(r['mode'] == m for r in entry['runs'])}
        print(f'{name} {mode} seed {seed}: {runner["metric"]} {row["score"]} (bar {row["bar"]}) '
              f'in {row["seconds"]} s', flush=True)
        common.write_json(args.output, {'benchmark': 'learning_test_seeds', 'entries': others + [entry]})
    print(common.format_table([{'test': name, 'lr': lr, 'steps': steps, 'mode': m, **s}
                               for m, s in entry['summary'].items()],
                              ['test', 'lr', 'steps', 'mode', 'runs', 'mean', 'std', 'at_bar']), flush=True)


if __name__ == '__main__':
  main()
