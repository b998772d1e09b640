r"""Wall time of a few-shot sweep: reading, embedding (compile and steady state), and the ridge probes of each
protocol (ours, Scenic's, or both over one embedding pass).

  python -m benchmarks.fewshot --sizes=base,large --dtypes=float32,bfloat16 --pool=20000 --eval=10000 --seq=128 \
      --output=benchmarks/results/fewshot_gpu.json                                       # synthetic tokens
  python -m benchmarks.fewshot --init_from=/tmp/minilm --records=data/glue --task=sst2    # real records
  python -m benchmarks.fewshot --sizes=base --pool=2000 --eval=1000 --classes=2 --protocols=both \
      --output=benchmarks/results/fewshot_protocols_cpu.json                             # both protocols' cost
  python -m benchmarks.fewshot --sizes=base --pool=2000 --eval=1000 --classes=2 --protocols=ours,scenic \
      --probes_only --output=benchmarks/results/fewshot_probes_cpu.json                  # the probes alone

With synthetic tokens (random ids, random lengths and labels) only the embedding and the probes are timed; with
`--records` (a `prepare.py glue` output directory) the sweep runs through the evaluator's own input path and the
read is timed too. The splits are embedded once and every (k, seed) fit reuses the features; the table also shows
what re-embedding the splits for every fit would cost at the measured throughput. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import ml_collections
import numpy as np


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m benchmarks.fewshot', description=__doc__.split('\n')[0])
  p.add_argument('--sizes', default='base', help='Model sizes (configs/common.py) when --init_from is not given.')
  p.add_argument('--init_from', default='', help='Converted checkpoint or workdir (architecture and weights).')
  p.add_argument('--dtypes', default='float32', help='Compute dtypes, comma-separated: float32, bfloat16.')
  p.add_argument('--feature', default='mean', choices=('mean', 'pooled', 'nsp'), help='Our protocol\'s feature.')
  p.add_argument('--protocols', default='ours', help='Comma-separated rows: ours, scenic, both.')
  p.add_argument('--scenic_shots', default='1,5,10,25,100,500,1000', help='Scenic protocol shots (per class).')
  p.add_argument('--records', default='', help='Records dir of `prepare.py glue`; empty: synthetic tokens.')
  p.add_argument('--task', default='sst2', help='GLUE task of --records.')
  p.add_argument('--pool', type=int, default=20_000, help='Train pool size (examples embedded once).')
  p.add_argument('--eval', type=int, default=10_000, help='Eval examples (synthetic; with --records: a cap).')
  p.add_argument('--seq', type=int, default=128, help='Sequence length (synthetic).')
  p.add_argument('--classes', type=int, default=3, help='Number of classes (synthetic).')
  p.add_argument('--batch', type=int, default=256, help='Global batch of the embedding pass.')
  p.add_argument('--shots', default='1,2,4,8,16,32')
  p.add_argument('--seeds', type=int, default=5)
  p.add_argument('--probes_only', action='store_true',
                 help='Time the probes alone, on random features of the encoder\'s hidden size (no embedding).')
  p.add_argument('--output', default='/tmp/fewshot_benchmark.json')
  return p.parse_args(argv)


def _synthetic_inputs(args: argparse.Namespace, vocab_size: int):
  """TaskInputs of random token batches (host-local; one process) and labels."""
  from projects.bert.fewshot.inputs import TaskInputs

  rng = np.random.default_rng(0)

  def batches(n: int) -> List[Dict[str, np.ndarray]]:
    out = []
    for start in range(0, n, args.batch):
      real = min(args.batch, n - start)
      lengths = rng.integers(args.seq // 4, args.seq + 1, size=args.batch)
      mask = (np.arange(args.seq)[None, :] < lengths[:, None]).astype(np.int32)
      ids = rng.integers(1000, vocab_size, size=(args.batch, args.seq)).astype(np.int32) * mask
      labels = np.arange(start, start + args.batch, dtype=np.int32) % args.classes  # every class present
      out.append({'input_ids': ids, 'input_mask': mask, 'segment_ids': np.zeros_like(ids), 'label_ids': labels,
                  'batch_mask': (np.arange(args.batch) < real).astype(np.float32)})
    return out

  return TaskInputs(task='synthetic', num_classes=args.classes, main_split='validation',
                    train_batches=batches(args.pool), eval_batches={'validation': batches(args.eval)},
                    train_size=args.pool, eval_sizes={'validation': args.eval})


def _random_features(args: argparse.Namespace, features: Sequence[str], hidden: int) -> Dict[str, Any]:
  """{feature: TaskFeatures} of random [pool / eval, hidden] features with a weak class signal (--probes_only)."""
  from projects.bert.fewshot import probes as fewshot

  rng = np.random.default_rng(0)
  centres = rng.normal(size=(args.classes, hidden)) * 0.1
  def draw(n):
    y = np.arange(n) % args.classes
    return (centres[y] + rng.normal(size=(n, hidden))).astype(np.float32), y
  (tx, ty), (ex, ey) = draw(args.pool), draw(args.eval)
  return {f: fewshot.TaskFeatures('synthetic', args.classes, tx, ty, {'validation': ex}, {'validation': ey})
          for f in features}


def run(args: argparse.Namespace, size: str, dtype: str, protocol: str = 'ours') -> Dict[str, Any]:
  """One sweep of `protocol` on the encoder of `size` (or --init_from) computing in `dtype`; returns its timings."""
  import projects.bert  # noqa: F401  (registers the datasets)
  from core import sharding as sharding_lib
  from projects.bert.fewshot import probes as fewshot, scenic as fewshot_scenic
  from projects.bert.tasks import glue_metrics
  from projects.bert.checkpoints import weights
  from projects.bert.models import architecture as common
  from projects.bert.configs import fewshot as fewshot_config
  from projects.bert.fewshot import embedding as fewshot_embedding, inputs as fewshot_inputs

  shots = [int(k) for k in args.shots.split(',')]
  config = weights.resolve_model_config(ml_collections.ConfigDict(
      {'init_from': args.init_from, 'model': None if args.init_from else common.model_config(size)}))
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  model_config.dtype = dtype
  params = {'bert': fewshot.init_encoder_params(model_config, jax.random.PRNGKey(0))}
  if args.init_from:
    params, _ = weights.load_weights(params, args.init_from, model_config=model_config, keep=('bert', 'nsp_head'))
  mesh = sharding_lib.create_mesh()
  params = jax.device_put(params, sharding_lib.replicated(mesh))
  block = fewshot_config.fewshot_block([args.task] if args.records else ['sst2'], data_dir=args.records,
                                       shots=tuple(shots), num_seeds=args.seeds, feature=args.feature,
                                       train_pool_size=args.pool, eval_size=args.eval, batch_size=args.batch,
                                       protocol=protocol)
  block.scenic.shots = tuple(int(k) for k in args.scenic_shots.split(','))
  features = fewshot_inputs.needed_features(block)

  if args.probes_only:
    by_feature = _random_features(args, features, model_config.hidden_size)
    inputs = fewshot_inputs.TaskInputs(task='synthetic', num_classes=args.classes, main_split='validation',
                                       train_batches=[{'input_ids': np.zeros((1, args.seq), np.int32)}],
                                       eval_batches={'validation': []}, train_size=args.pool,
                                       eval_sizes={'validation': args.eval})
    read_s = compile_s = embed_s = float('nan')
  else:
    t0 = time.perf_counter()
    if args.records:
      inputs = fewshot_inputs.load_task_inputs(block, args.task)
    else:
      inputs = _synthetic_inputs(args, model_config.vocab_size)
    read_s = time.perf_counter() - t0
    feature_fn = fewshot.make_feature_fn(model_config, features, mesh)

    # Compile on one batch of each split (every batch has the same shape), then time the whole pass.
    warm = dataclasses.replace(inputs, train_batches=inputs.train_batches[:1],
                               eval_batches={s: b[:1] for s, b in inputs.eval_batches.items()})
    t0 = time.perf_counter()
    fewshot_embedding.embed_task(feature_fn, params, warm, mesh, features)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    by_feature = fewshot_embedding.embed_task(feature_fn, params, inputs, mesh, features)
    embed_s = time.perf_counter() - t0
    batches = len(inputs.train_batches) + sum(len(b) for b in inputs.eval_batches.values())
    compile_s = max(first_s - embed_s * (1 + len(inputs.eval_batches)) / batches, 0.0)
  score_fn = glue_metrics.main_score if args.records else fewshot.accuracy_score
  selected = fewshot_inputs.protocols(block)
  probe_s = scenic_s = 0.0
  if 'ours' in selected:
    t0 = time.perf_counter()
    fewshot.fewshot_sweep(by_feature[args.feature], shots, list(range(args.seeds)), block.l2_regs, score_fn=score_fn)
    probe_s = time.perf_counter() - t0
  if 'scenic' in selected:
    data = by_feature[block.scenic.feature]
    t0 = time.perf_counter()
    fewshot_scenic.scenic_fewshot({data.task: (data.train_features, data.train_labels, data.num_classes,
                                               {s: (x, data.eval_labels[s]) for s, x in data.eval_features.items()})},
                                  block.scenic.shots, block.scenic.l2_regs, block.scenic.seed)
    scenic_s = time.perf_counter() - t0

  n_embedded = inputs.train_size + sum(inputs.eval_sizes.values())
  fits = len(shots) * args.seeds if 'ours' in selected else 0
  return {
      'encoder': args.init_from or size, 'hidden': model_config.hidden_size, 'layers': model_config.num_layers,
      'dtype': dtype, 'protocol': protocol, 'features': '+'.join(features),
      'seq_len': int(inputs.train_batches[0]['input_ids'].shape[1]), 'pool': inputs.train_size,
      'data': 'random features' if args.probes_only else args.records or 'synthetic',
      'eval': sum(inputs.eval_sizes.values()), 'fits': fits, 'l2_regs': len(block.l2_regs),
      'scenic_solves': len(block.scenic.shots) * len(block.scenic.l2_regs) if 'scenic' in selected else 0,
      'read_s': read_s, 'compile_s': compile_s, 'embed_s': embed_s,
      'examples_per_s': n_embedded / embed_s, 'probe_s': probe_s, 'ms_per_fit': 1e3 * probe_s / max(fits, 1),
      'scenic_s': scenic_s, 'sweep_s': read_s + compile_s + embed_s + probe_s + scenic_s,
      # What the sweep would take if every (k, seed) fit embedded the splits again, at the measured throughput.
      'reembed_s': fits * embed_s + probe_s,
  }


COLUMNS = ('encoder', 'dtype', 'protocol', 'features', 'seq_len', 'pool', 'eval', 'fits', 'scenic_solves', 'read_s',
           'compile_s', 'embed_s', 'examples_per_s', 'probe_s', 'ms_per_fit', 'scenic_s', 'sweep_s', 'reembed_s')


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  from benchmarks import common

  args = _parse(argv)
  sizes = [args.init_from] if args.init_from else [s for s in args.sizes.split(',') if s]
  rows = [run(args, size, dtype, protocol) for size in sizes for dtype in args.dtypes.split(',') if dtype
          for protocol in args.protocols.split(',') if protocol]
  env = {**common.environment(), 'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}',
         'jax': jax.__version__}
  print(f"Few-shot sweep on {env['device']}: ours shots {args.shots} x {args.seeds} seeds, {args.feature} features; "
        f"Scenic shots {args.scenic_shots} x 30 regularisers, nsp features; each split embedded once per row "
        f"('reembed_s': if every fit of ours embedded them again).")
  print(common.format_table(rows, COLUMNS))
  payload = {'benchmark': 'fewshot', 'environment': env, 'args': vars(args), 'rows': rows}
  common.write_json(args.output, payload)
  print(f'Wrote {args.output}')
  return payload


if __name__ == '__main__':
  main(sys.argv[1:])
