r"""BUCC mining time: the `xtreme_retrieval` evaluator's two costs on a synthetic BUCC-like set, embedding (the
encoder up to the retrieval layer, sentences sorted by length into power-of-two buckets) and margin mining (the
blocked k-NN on the default device in both directions, ratio margins, the greedy 'max' selection).

  python -m benchmarks.xtreme_retrieval --n=20000 --dim=384 --layers=6 --embed=2048 --peer_n=4000 \
      --output=benchmarks/results/xtreme_bucc_mining_cpu.json

Measured: embedding throughput (sentences/s after compilation) of a random encoder of --dim / --layers (MiniLM-L6's
shape by default) on --embed sentences whose lengths follow BUCC's (log-normal, median ~30 WordPieces); mining time of
--n source x --n English embeddings of width --dim, where --n / 2 sources are noisy copies of English rows (planted
pairs, whose recovery is reported so the timing is of real mining); and, as the peer in the same run, the numpy
reference k-NN (`tasks/xtreme_retrieval.knn`) against the device one on --peer_n x --peer_n.

Extrapolated (separately, by rule, not measured): BUCC's largest test language has ~400k sentences a side. The k-NN
is two [n, m] sweeps, so its time scales with n * m * dim: x (400k / n)^2 x (768 / dim) for mBERT. Embedding scales
with the sentences (and the model's cost per token: ~4x MiniLM-L6's per layer for a 768-wide layer, 8 of 12 layers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, Optional, Sequence

import jax
import numpy as np

from benchmarks import common

BUCC_SENTENCES = 400_000  # the largest BUCC test side, about (ru-en / de-en training sets)


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m benchmarks.xtreme_retrieval', description=__doc__.split('\n')[0])
  p.add_argument('--n', type=int, default=20_000, help='Sentences a side of the mining set.')
  p.add_argument('--dim', type=int, default=384, help='Embedding width (and the encoder\'s hidden size).')
  p.add_argument('--layers', type=int, default=6, help='Encoder layers (the retrieval layer: floor(7 L / 12)).')
  p.add_argument('--embed', type=int, default=2048, help='Sentences embedded for the throughput figure.')
  p.add_argument('--batch', type=int, default=128, help='Embedding batch.')
  p.add_argument('--block', type=int, default=4096, help='k-NN block rows.')
  p.add_argument('--peer_n', type=int, default=4000, help='Sentences a side for the numpy-vs-device k-NN peer.')
  p.add_argument('--output', default='/tmp/xtreme_bucc_mining.json')
  return p.parse_args(argv)


def _lengths(rng: np.random.Generator, n: int) -> np.ndarray:
  """BUCC-like sentence lengths in WordPieces with [CLS] and [SEP]: log-normal, median ~30, within [4, 512]."""
  return np.clip(np.round(rng.lognormal(np.log(30), 0.45, n)), 4, 512).astype(np.int64)


def time_embedding(args: argparse.Namespace) -> Dict[str, Any]:
  from core import sharding as sharding_lib
  from projects.bert.datasets.xtreme_retrieval_inputs import SideTokens
  from projects.bert.evaluators import xtreme_retrieval as ev
  from projects.bert.fewshot import probes
  from projects.bert.models import architecture, hidden_states

  model = architecture.model_config('base', hidden_size=args.dim, num_layers=args.layers, num_heads=12,
                                    intermediate_size=4 * args.dim).to_dict()
  layer = hidden_states.default_layer(args.layers)
  mesh = sharding_lib.create_mesh()
  params = hidden_states.layer_params(probes.init_encoder_params(model, jax.random.PRNGKey(0)), layer)
  fn = hidden_states.layer_embedding_fn(model, layer, 'mean', mesh)
  rng = np.random.default_rng(0)
  lengths = _lengths(rng, args.embed)
  side = SideTokens(rng.integers(5, 30000, int(lengths.sum())).astype(np.int32), lengths,
                    np.arange(args.embed), 'synthetic')
  t0 = time.perf_counter()
  ev.embed_side(fn, params, side, mesh, args.batch, 512)  # compiles every bucket shape
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  ev.embed_side(fn, params, side, mesh, args.batch, 512)
  steady = time.perf_counter() - t0
  return {'sentences': args.embed, 'mean_tokens': float(lengths.mean()), 'layers_run': layer + 1, 'layer': layer,
          'hidden': args.dim, 'batch': args.batch, 'first_pass_s': first, 'steady_s': steady,
          'sentences_per_s': args.embed / steady}


def _planted(rng: np.random.Generator, n: int, dim: int):
  y = rng.standard_normal((n, dim)).astype(np.float32)
  x = rng.standard_normal((n, dim)).astype(np.float32)
  pairs = n // 2
  x[:pairs] = y[:pairs] + 0.8 * rng.standard_normal((pairs, dim)).astype(np.float32)  # translations: noisy copies
  return x, y, pairs


def time_mining(args: argparse.Namespace) -> Dict[str, Any]:
  from projects.bert.tasks import xtreme_knn, xtreme_retrieval

  x, y, pairs = _planted(np.random.default_rng(1), args.n, args.dim)
  knn_s = []

  def timed_knn(a, b, k, *, block):
    t0 = time.perf_counter()
    out = xtreme_knn.knn_device(a, b, k, block=block)
    knn_s.append(time.perf_counter() - t0)
    return out

  xtreme_knn.knn_device(x[:args.block], y[:args.block], 4, block=args.block)  # compile the block shape
  t0 = time.perf_counter()
  mined = xtreme_retrieval.mine(x, y, block=args.block, knn_fn=timed_knn)
  total = time.perf_counter() - t0
  found = sum(1 for _, i, j in mined if i == j and i < pairs)
  return {'n': args.n, 'm': args.n, 'dim': args.dim, 'block': args.block, 'mine_s': total, 'knn_s': sum(knn_s),
          'margin_and_selection_s': total - sum(knn_s), 'mined_pairs': len(mined), 'planted_pairs': pairs,
          'planted_pairs_mined': found}


def time_peer(args: argparse.Namespace) -> Dict[str, Any]:
  from projects.bert.tasks import xtreme_knn, xtreme_retrieval

  x, y, _ = _planted(np.random.default_rng(2), args.peer_n, args.dim)
  x, y = xtreme_retrieval.normalize(x), xtreme_retrieval.normalize(y)
  block = min(args.block, args.peer_n)
  xtreme_knn.knn_device(x, y, 4, block=block)  # compile
  t0 = time.perf_counter()
  _, device_inds = xtreme_knn.knn_device(x, y, 4, block=block)
  device_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  _, numpy_inds = xtreme_retrieval.knn(x, y, 4, block=block)
  numpy_s = time.perf_counter() - t0
  return {'n': args.peer_n, 'dim': args.dim, 'block': block, 'device_knn_s': device_s, 'numpy_knn_s': numpy_s,
          'device_speedup': numpy_s / device_s, 'same_neighbours': bool(np.array_equal(device_inds, numpy_inds))}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  args = _parse(argv)
  embedding, mining, peer = time_embedding(args), time_mining(args), time_peer(args)
  scale_knn = (BUCC_SENTENCES / args.n) ** 2 * (768 / args.dim)
  payload = {
      'command': 'python -m benchmarks.xtreme_retrieval ' + ' '.join(sys.argv[1:] if argv is None else argv),
      'environment': common.environment(), 'device': str(jax.devices()[0]),
      'load_average_1_5_15': list(os.getloadavg()),  # these CPUs are shared: the figures are as loaded as this
      'measured': {'embedding': embedding, 'mining': mining, 'peer_knn': peer},
      'extrapolated': {
          'rule': f'k-NN time x (n_bucc / n)^2 x (768 / dim) with n_bucc = {BUCC_SENTENCES} a side; '
                  'embedding time x n_bucc / sentences (this model; mBERT costs more per token)',
          'bucc_knn_s_mbert_width': mining['knn_s'] * scale_knn,
          'bucc_embed_s_per_side_this_model': BUCC_SENTENCES / embedding['sentences_per_s']},
  }
  print(common.format_table([{'what': 'embed (sentences/s)', 'value': embedding['sentences_per_s']},
                             {'what': f'mine {args.n}x{args.n} (s)', 'value': mining['mine_s']},
                             {'what': '  of which k-NN (s)', 'value': mining['knn_s']},
                             {'what': f'planted pairs mined (of {mining["planted_pairs"]})',
                              'value': mining['planted_pairs_mined']},
                             {'what': f'k-NN {args.peer_n}^2 device vs numpy (x)', 'value': peer['device_speedup']}],
                            ['what', 'value']))
  common.write_json(args.output, payload)
  return payload


if __name__ == '__main__':
  main()
