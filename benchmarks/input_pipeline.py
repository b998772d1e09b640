r"""Input-pipeline throughput of the BERT dataset builders (examples/s), on data made by the official writers.

  python benchmarks/input_pipeline.py --output=/tmp/input_pipeline.json [--batch_size=256 --num_batches=200]

Writes pretraining records (official create_pretraining_data.py on a corpus resampled from the test corpus, S=128,
P=20), an MRPC-format GLUE task (our prepare path, S=128) and one SuperGLUE task of each task kind (`prepare
superglue` on tests/bert/superglue_data.py's generated folders, S=128: BoolQ sentence pairs, WiC, COPA (an example
is its two choice rows), MultiRC answer options and ReCoRD candidates (a row each: expanded at prepare time), WSC)
into --data_dir (a temporary folder by default), then times `train_iter` (repeated, shuffled) and one or more full
`valid_iter` passes of each builder after a warm-up, on the host only (no accelerator work). Prints a table and
writes the rows as JSON.

With --train_step_json (the JSON of benchmarks/train_step.py), each row is also set against what this project's
train step consumes at the same sequence length: `headroom` = pipeline examples/s / the fastest measured step's
examples/s (above 1, the input keeps up with that step). The pipeline and the step compete for the same cores in a
real run, so a headroom near 1 on the CPU means the input would slow training.

  python benchmarks/input_pipeline.py --train_step_json=benchmarks/results/train_step_cpu.json \
      --output=benchmarks/results/input_pipeline_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')  # the input pipeline runs on the CPU; keep TF off GPUs
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (benchmarks/common.py)
import ml_collections  # noqa: E402

from core.registry import DATASETS  # noqa: E402
from projects.bert import datasets  # noqa: E402,F401  (registers the builders)
from tests.bert import data_utils  # noqa: E402


def make_pretraining_data(data_dir: str, num_documents: int, num_files: int, seed: int = 0) -> Dict[str, Any]:
  """Official pretraining records (S=128, P=20) from `num_documents` documents resampled from the test corpus."""
  rng = random.Random(seed)
  sentences = [s for doc in data_utils.CORPUS_DOCUMENTS for s in doc]
  documents = [[rng.choice(sentences) for _ in range(rng.randint(8, 16))] for _ in range(num_documents)]
  corpus = data_utils.write_corpus(os.path.join(data_dir, 'corpus.txt'), documents)
  vocab = data_utils.write_vocab(os.path.join(data_dir, 'vocab.txt'))
  files = [os.path.join(data_dir, f'pretrain-{i}.tfrecord') for i in range(num_files)]
  t0 = time.perf_counter()
  data_utils.run_official_pretraining([
      f'--input_file={corpus}', f'--vocab_file={vocab}', f'--output_file={",".join(files)}', '--max_seq_length=128',
      '--max_predictions_per_seq=20', '--masked_lm_prob=0.15', '--dupe_factor=2', '--random_seed=1'])
  return {'files': files, 'vocab': vocab, 'write_s': time.perf_counter() - t0}


def make_glue_data(data_dir: str, vocab: str, n_train: int, n_dev: int) -> Dict[str, Any]:
  t0 = time.perf_counter()
  out_dir, _ = data_utils.make_glue_records(data_dir, 'mrpc', vocab_path=vocab, max_seq_length=128, n_train=n_train,
                                            n_dev=n_dev, n_test=16)
  return {'data_dir': out_dir, 'write_s': time.perf_counter() - t0}


SUPERGLUE_TASKS = ('boolq', 'wic', 'copa', 'multirc', 'record', 'wsc')  # one of each task kind


def make_superglue_data(data_dir: str, vocab: str, n_train: int, n_dev: int) -> Dict[str, Any]:
  from projects.bert.datasets import superglue_writer
  from tests.bert import superglue_data
  t0 = time.perf_counter()
  sg_dir = superglue_data.write_superglue_dir(os.path.join(data_dir, 'jsonl'), train_size=n_train, eval_size=n_dev,
                                              test_size=8, tasks=['BoolQ', 'WiC', 'COPA', 'MultiRC', 'ReCoRD', 'WSC'])
  out_dir = os.path.join(data_dir, 'records')
  for task in SUPERGLUE_TASKS:
    superglue_writer.prepare_superglue(task, sg_dir, vocab, out_dir, max_seq_length=128)
  return {'data_dir': out_dir, 'write_s': time.perf_counter() - t0}


def _cycle(make_iter) -> Iterator[Dict[str, Any]]:
  while True:
    yield from make_iter()


def time_batches(it: Iterator[Dict[str, Any]], num_batches: int, warmup: int) -> Dict[str, float]:
  """Seconds for `num_batches` batches after `warmup` batches; rows counted from the batches themselves."""
  for _ in range(warmup):
    next(it)
  rows = 0
  t0 = time.perf_counter()
  for _ in range(num_batches):
    batch = next(it)
    rows += len(batch['input_ids'])
  elapsed = time.perf_counter() - t0
  return {'batches': num_batches, 'examples': rows, 'seconds': elapsed, 'examples_per_s': rows / elapsed,
          'batches_per_s': num_batches / elapsed}


def run(args: argparse.Namespace) -> List[Dict[str, Any]]:
  data_dir = args.data_dir or tempfile.mkdtemp(prefix='bert_input_bench_')
  pt = make_pretraining_data(os.path.join(data_dir, 'pretraining'), args.num_documents, args.num_files)
  gl = make_glue_data(os.path.join(data_dir, 'glue'), pt['vocab'], args.glue_train, args.glue_dev)
  sgl = make_superglue_data(os.path.join(data_dir, 'superglue'), pt['vocab'], args.superglue_train,
                            args.superglue_dev)
  batch = {'batch_size': args.batch_size, 'eval_batch_size': args.batch_size}
  builders = {
      'bert_pretraining': ('bert_pretraining', ml_collections.ConfigDict(dict(batch, dataset={
          'train_files': pt['files'], 'eval_files': pt['files'], 'shuffle_buffer': args.shuffle_buffer}))),
      'bert_glue': ('bert_glue', ml_collections.ConfigDict(dict(batch, dataset={
          'task': 'mrpc', 'data_dir': gl['data_dir'], 'shuffle_buffer': args.shuffle_buffer}))),
      **{f'bert_superglue/{task}': ('bert_superglue', ml_collections.ConfigDict(dict(batch, dataset={
          'task': task, 'data_dir': sgl['data_dir'], 'shuffle_buffer': args.shuffle_buffer})))
         for task in SUPERGLUE_TASKS},
  }
  rows = []
  for label, (name, config) in builders.items():
    t0 = time.perf_counter()
    ds = DATASETS.get(name)(config)
    build_s = time.perf_counter() - t0
    seq = ds.meta_data.max_seq_length
    size = ds.meta_data.eval_sizes[ds.meta_data.eval_splits[0]]
    for split, it in (('train', ds.train_iter), ('eval', _cycle(ds.valid_iter))):
      result = time_batches(it, args.num_batches, args.warmup)
      rows.append(dict(builder=label, split=split, batch_size=args.batch_size, max_seq_length=seq,
                       build_s=build_s, eval_split_size=size if split == 'eval' else None, **result))
  return rows


def train_step_consumption(path: str) -> Dict[int, Dict[str, Any]]:
  """Per sequence length, the fastest configuration of our train step in a train_step.py JSON (examples/s)."""
  with open(path) as f:
    result = json.load(f)
  best: Dict[int, Dict[str, Any]] = {}
  for row in result.get('rows', []):
    if row.get('peer') != 'ours' or not row.get('ok'):
      continue
    eps = row['batch'] / row['step_s']
    if row['seq_len'] not in best or eps > best[row['seq_len']]['examples_per_s']:
      best[row['seq_len']] = {'examples_per_s': eps, 'size': row['size'], 'batch': row['batch'],
                              'dtype': row['dtype'], 'backend': result.get('backend')}
  if not best:
    raise SystemExit(f'{path}: no successful rows of peer "ours"; run benchmarks/train_step.py with --peers=ours '
                     'and --output first')
  return best


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--output', default='input_pipeline.json', help='JSON file for the results')
  parser.add_argument('--data_dir', default='', help='where to write the data (default: a temporary folder)')
  parser.add_argument('--batch_size', type=int, default=256, help='global (= host, one process) batch size')
  parser.add_argument('--num_batches', type=int, default=200)
  parser.add_argument('--warmup', type=int, default=10)
  parser.add_argument('--shuffle_buffer', type=int, default=10_000)
  parser.add_argument('--num_documents', type=int, default=400, help='pretraining corpus size')
  parser.add_argument('--num_files', type=int, default=4, help='pretraining record files')
  parser.add_argument('--glue_train', type=int, default=4000)
  parser.add_argument('--glue_dev', type=int, default=1000)
  parser.add_argument('--superglue_train', type=int, default=400, help='examples per SuperGLUE task (rows: more)')
  parser.add_argument('--superglue_dev', type=int, default=100)
  parser.add_argument('--train_step_json', default='',
                      help="benchmarks/train_step.py's JSON: compare with the step's consumption")
  args = parser.parse_args()

  consumption = train_step_consumption(args.train_step_json) if args.train_step_json else {}
  rows = run(args)
  for r in rows:
    step = consumption.get(r['max_seq_length'])
    if step:
      r['train_step'] = step
      r['headroom'] = r['examples_per_s'] / step['examples_per_s']
  header = (f'{"builder":24} {"split":6} {"batch":>6} {"seq":>4} {"batches":>8} {"examples/s":>11} {"batches/s":>10}'
            f' {"step ex/s":>10} {"headroom":>9}')
  print(header)
  print('-' * len(header))
  for r in rows:
    step = r.get('train_step')
    step_cells = (f' {step["examples_per_s"]:10.1f} {r["headroom"]:8.0f}x' if step else f' {"-":>10} {"-":>9}')
    print(f'{r["builder"]:24} {r["split"]:6} {r["batch_size"]:6d} {r["max_seq_length"]:4d} {r["batches"]:8d} '
          f'{r["examples_per_s"]:11.0f} {r["batches_per_s"]:10.1f}' + step_cells)
  for seq, step in sorted(consumption.items()):
    print(f'step ex/s at S={seq}: our {step["size"]} {step["dtype"]} step, batch {step["batch"]}, on '
          f'{step["backend"]} ({args.train_step_json})')
  result = {'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(), 'python': platform.python_version()},
            'args': vars(args), 'rows': rows}
  common.write_json(args.output, result)
  print(f'wrote {args.output}')


if __name__ == '__main__':
  main()
