r"""Evaluation throughput of the XTREME PAN-X zero-shot pass: the `xtreme` evaluator scoring every one of PAN-X's 40
languages in one evaluation (records through `bert_xtreme`, the one compiled eval step, sub-sentences joined back,
seqeval F1 per language and the average), as a training run calls it.

  python benchmarks/xtreme_tagging.py --size=minilm --sentences=64 \
      --output=benchmarks/results/xtreme_panx_eval_cpu.json

Data: tests/bert/xtreme_data.py's generated PAN-X folder (en, de, ru, ar, zh), whose dev and test files are copied
under the names of the other 35 PAN-X languages (each language's words are one of the five's), `--sentences` a
file, then `prepare xtreme --task=panx` at S=128. Every record is padded to S, so the cost per record does not
depend on the words: what is measured is the pass, not the content. Model: random weights of --size ('minilm':
MiniLM-L6-H384's shape, 6 layers, H 384, 12 heads, FFN 1536; or a SIZE of models/architecture.py), float32, one
host device, eval batch --eval_batch_size.

Measured inside one run (`core.app.train_and_evaluate` with 0 training steps, the evaluator timed where the run
calls it): `cold_s`, the first pass (tracing and compiling the eval step, building 40 input pipelines); then
--repeats warm passes, the fastest counting: `warm_s` and examples/s (examples = sentences, as evaluate.py counts
them; `records` = rows after sub-sentence splitting); and in the same process, the peer: the model pass alone
(`evaluation.evaluate_split` over the same 40 languages: pipeline, eval step, gathering), and `scoring_s`, the
host-side work the evaluator adds on those gathered rows (joining sub-sentences, first-WordPiece tags, seqeval per
language), timed by itself: `scoring_share` = scoring_s / warm_s. On shared CPUs, warm_s and model_pass_s move by
tens of percent between passes (see load_average_1m), so compare them only by ratio within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')  # TF reads records on the host
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (benchmarks/common.py)

import projects.bert  # noqa: E402,F401  (declares the BERT datasets, models, trainers and evaluators)
from core import app, evaluation  # noqa: E402
from projects.bert.configs import xtreme as xtreme_config  # noqa: E402
from projects.bert.datasets import xtreme_writer  # noqa: E402
from projects.bert.evaluators import xtreme as xtreme_evaluator  # noqa: E402
from projects.bert.models import architecture  # noqa: E402
from projects.bert.tasks import xtreme, xtreme_metrics  # noqa: E402
from tests.bert import xtreme_data  # noqa: E402
from tests.bert.test_xtreme_pairs import _write_vocab  # noqa: E402

MINILM = {'num_layers': 6, 'hidden_size': 384, 'num_heads': 12, 'intermediate_size': 1536}  # MiniLM-L6-H384


def make_panx(root: str, sentences: int, seq_len: int) -> Dict[str, Any]:
  """A 40-language PAN-X download folder and its records (module docstring)."""
  xtreme_dir = xtreme_data.write_xtreme_dir(os.path.join(root, 'download'), ['panx'], examples=sentences)
  generated = [lang for lang in xtreme_data.LANGUAGES if lang in xtreme.PANX_LANGUAGES]
  for i, lang in enumerate(lang for lang in xtreme.PANX_LANGUAGES if lang not in generated):
    source = generated[i % len(generated)]
    for split in ('dev', 'test'):
      shutil.copy(os.path.join(xtreme_dir, 'panx', f'{split}-{source}.tsv'),
                  os.path.join(xtreme_dir, 'panx', f'{split}-{lang}.tsv'))
  vocab, vocab_size = _write_vocab(os.path.join(root, 'vocab.txt'), xtreme_dir)
  out = os.path.join(root, 'records')
  t0 = time.perf_counter()
  meta = xtreme_writer.prepare_xtreme('panx', xtreme_dir, vocab, out, seq_len)['panx']
  return {'out': out, 'vocab_size': vocab_size, 'meta': meta, 'prepare_s': time.perf_counter() - t0}


def run(args: argparse.Namespace) -> Dict[str, Any]:
  root = tempfile.mkdtemp(prefix='xtreme_panx_')
  try:
    data = make_panx(root, args.sentences, args.seq_len)
    config = xtreme_config.get_config('panx')
    shape = MINILM if args.size == 'minilm' else {k: v for k, v in architecture.model_config(args.size).items()
                                                  if k in architecture.SIZE_FIELDS}
    config.model.update(vocab_size=data['vocab_size'], **shape)
    config.dataset.update(data_dir=data['out'], max_seq_length=args.seq_len)
    config.update(num_train_steps=0, num_epochs=None, eval_batch_size=args.eval_batch_size)
    config.checkpoint.async_save = False
    timings: Dict[str, Any] = {}
    evaluate = xtreme_evaluator.XtremeEvaluator.evaluate

    def timed(self, params):
      t0 = time.perf_counter()
      results = evaluate(self, params)
      timings['cold_s'] = time.perf_counter() - t0
      warm, model_pass, scoring = [], [], []
      meta = self.context.dataset.meta_data
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        evaluate(self, params)
        warm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gathered = {lang: evaluation.evaluate_split(  # the peer: the same passes without the host-side scoring
            self.step_fn, params, self.context.dataset.valid_iter(lang), self.context.mesh,
            keep=xtreme_evaluator.KEEP[self.task.kind])[1] for lang in self.languages}
        model_pass.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for lang, rows in gathered.items():  # what the evaluator adds: join sub-sentences, seqeval per language
          gold, predicted = xtreme_evaluator.gold_and_predicted(
              self.task, rows, meta.extra['num_sentences']['eval'][lang], lang)
          xtreme_metrics.score_language(self.task.name, gold, predicted, lang)
        scoring.append(time.perf_counter() - t0)
      timings.update(warm_s_all=warm, model_pass_s_all=model_pass, scoring_s_all=scoring,
                     languages=list(self.languages))
      return results

    xtreme_evaluator.XtremeEvaluator.evaluate = timed
    try:
      summary = app.train_and_evaluate(config, os.path.join(root, 'workdir'))['xtreme']
    finally:
      xtreme_evaluator.XtremeEvaluator.evaluate = evaluate
  finally:
    shutil.rmtree(root, ignore_errors=True)

  meta = data['meta']
  sentences = sum(meta['eval_num_examples'].values())
  records = sum(meta['eval_data_sizes'].values())
  warm_s, model_s, scoring_s = (min(timings[k]) for k in ('warm_s_all', 'model_pass_s_all', 'scoring_s_all'))
  return {
      'languages': len(timings['languages']), 'sentences': sentences, 'records': records,
      'seq_len': args.seq_len, 'eval_batch_size': args.eval_batch_size,
      'model': args.size if args.size != 'minilm' else 'MiniLM-L6-H384 shape (random weights)',
      'model_shape': shape,
      'cold_s': timings['cold_s'], 'warm_s': warm_s, 'examples_per_s': sentences / warm_s,
      'records_per_s': records / warm_s,
      'model_pass_s': model_s, 'model_pass_examples_per_s': sentences / model_s,
      'scoring_s': scoring_s, 'scoring_share': scoring_s / warm_s,
      'warm_s_all': timings['warm_s_all'], 'model_pass_s_all': timings['model_pass_s_all'],
      'scoring_s_all': timings['scoring_s_all'],
      'prepare_s': data['prepare_s'], 'average_f1_random_weights': summary['final']['average/f1'],
  }


def main(argv: List[str] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', default='minilm', help="'minilm' or a SIZE of models/architecture.py")
  parser.add_argument('--sentences', type=int, default=64, help='sentences per dev file (each of 40 languages)')
  parser.add_argument('--seq_len', type=int, default=128)
  parser.add_argument('--eval_batch_size', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=2, help='warm passes (the fastest counts)')
  parser.add_argument('--output', default='benchmarks/results/xtreme_panx_eval_cpu.json')
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.sentences < 1:
    parser.error('--repeats and --sentences must be at least 1.')
  load_before = os.getloadavg()  # these CPUs are shared: the load says how much of them the run had
  row = run(args)
  row['load_average_1m'] = {'before': load_before[0], 'after': os.getloadavg()[0], 'cpu_count': os.cpu_count()}
  print(common.format_table([row], ['languages', 'sentences', 'records', 'model', 'cold_s', 'warm_s',
                                    'examples_per_s', 'model_pass_examples_per_s', 'scoring_s', 'scoring_share']))
  common.write_json(args.output, {'benchmark': 'xtreme_panx_eval', 'command': 'python ' + ' '.join(sys.argv),
                                  'environment': common.environment(), 'results': [row]})
  print(f'wrote {args.output}')


if __name__ == '__main__':
  main()
