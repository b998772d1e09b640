"""SQuAD fine-tuning on the shared core loop: `bert_squad_trainer`.

Two modes (`config.mode`):
  train  fine-tune `bert_question_answering` from `config.init_from` (the span head starts fresh) or resume from
         workdir/checkpoints; score the dev set (`config.evals.squad`) every `every` steps and after the last one;
         keep the parameters of the best dev F1 in workdir/best/ (with that evaluation's prediction files in
         workdir/best/predictions/); workdir/predictions/ holds the files of the latest evaluation.
  eval   no training: score saved parameters (workdir/best, else the latest checkpoint, else config.init_from),
         files in workdir/eval_predictions/, scores in results.json under 'evaluation'.

`config.evals.squad`: every (steps between evaluations; 0: only at the end), n_best_size, max_answer_length,
null_score_diff_threshold (SQuAD 2.0), save_best. The scores (`squad_metrics`) are the official SQuAD v1.1 / v2.0
evaluation's, in percent; results.json: {'task', 'version', 'main_metric': 'f1', 'history': [{'step', scores...}],
'best': {'step', 'value', 'metrics'}, 'final', 'num_train_steps', ...}.

The evaluation itself is `SquadEvaluator` (`run(state, step)` yields (name, value) pairs, `summary()`), written to
the evaluator protocol of the planned `core.evaluators` so that it moves there as `projects/bert/evaluators/squad.py`.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import jax
import ml_collections
from absl import logging
from clu import metric_writers

from core import atomic, errors, evaluation, loop, params_io, registry
from core import sharding as sharding_lib
from core.dataset import Dataset
from core.model import BaseModel
from core.setup import example_batch_from_meta, setup_training
from core.train_step import make_predict_step
from projects.bert import squad_metrics
from projects.bert.datasets import squad, squad_format
from projects.bert.trainers import common, finetune_trainer

MODES = ('train', 'eval')
RESULTS_FILE = 'results.json'
BEST_DIR = finetune_trainer.BEST_DIR
PREDICTIONS_DIR = 'predictions'  # the latest evaluation's files (train mode)
EVAL_PREDICTIONS_DIR = 'eval_predictions'  # eval mode's files


def default_eval_config() -> ml_collections.ConfigDict:
  """`config.evals.squad`: upstream's decoding defaults (Model Garden's QuestionAnsweringConfig, the BERT paper)."""
  return ml_collections.ConfigDict({'every': 0, 'n_best_size': 20, 'max_answer_length': 30,
                                    'null_score_diff_threshold': 0.0, 'save_best': True})


def eval_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.evals.squad` over its defaults; unknown fields are an error (a typo would silently do nothing)."""
  merged = default_eval_config()
  given = (config.get('evals') or {}).get('squad') or {}
  given = given.to_dict() if hasattr(given, 'to_dict') else dict(given)
  unknown = sorted(set(given) - set(merged) - {'type'})
  if unknown:
    raise errors.ConfigError(f'config.evals.squad has unknown fields {unknown}; it reads {sorted(merged)}.')
  merged.update({k: v for k, v in given.items() if k != 'type'})
  return merged


class SquadEvaluator:
  """Dev-set scores of the parameters being trained or evaluated (see the module docstring).

  `run(state, step)` gathers the span logits of every eval feature, decodes and scores them (`squad_metrics`),
  writes the prediction files into `out_dir` (first process), keeps the best parameters by F1 when `best_dir` is
  set, and yields (name, value) pairs; `history` lists every evaluation.
  """

  def __init__(self, settings: ml_collections.ConfigDict, model: BaseModel, dataset: Dataset, mesh: Any,
               params_shardings: Any, out_dir: str, best_dir: Optional[str] = None):
    if dataset is None or dataset.valid_iter is None:
      raise errors.ConfigError('config.evals.squad needs a bert_squad dataset: set config.dataset_name="bert_squad" '
                               'and config.dataset.data_dir (the --output_dir of `prepare squad`).')
    self.settings, self.dataset, self.mesh, self.out_dir = settings, dataset, mesh, out_dir
    self.every = int(settings.every or 0)
    self.eval_data = squad.load_eval_data(dataset.meta_data)
    self.predict_step = make_predict_step(model, params_shardings, mesh)
    self.task = dataset.meta_data['task']
    self.best = (finetune_trainer.BestParams(best_dir, squad_metrics.MAIN_METRIC, self.task)
                 if best_dir and settings.save_best else None)
    self.history: List[Dict[str, float]] = []

  def evaluate(self, params: Any, out_dir: Optional[str]) -> Dict[str, float]:
    """The official scores of `params` on the dev set; prediction files into `out_dir` (None: no files)."""
    gathered = evaluation.gather_predictions(self.predict_step, params, self.dataset.valid_iter(), self.mesh,
                                             keep=('unique_ids',))
    return squad_metrics.squad_scores(
        gathered['unique_ids'], gathered['outputs'], self.eval_data, n_best_size=int(self.settings.n_best_size),
        max_answer_length=int(self.settings.max_answer_length),
        null_score_diff_threshold=float(self.settings.null_score_diff_threshold),
        out_dir=out_dir if jax.process_index() == 0 else None)

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    t0 = time.time()
    metrics = self.evaluate(state.params, self.out_dir)
    self.history.append({'step': step, **metrics})
    values = dict(metrics)
    if self.best is not None:
      if self.best.update(step, metrics, state.params) and jax.process_index() == 0:
        _copy_files(self.out_dir, os.path.join(self.best.directory, PREDICTIONS_DIR))  # beside the best params
      values[f'best_on_dev/{squad_metrics.MAIN_METRIC}'] = self.best.value
    logging.info('SQuAD %s dev at step %d (%.1f s): %s%s', self.version, step, time.time() - t0,
                 {k: round(v, 2) for k, v in metrics.items()},
                 f' (best f1 {self.best.value:.2f} at step {self.best.step})' if self.best else '')
    return values.items()

  @property
  def version(self) -> str:
    return squad_format.version_of(self.eval_data.version_2_with_negative)

  def summary(self) -> Dict[str, Any]:
    out: Dict[str, Any] = {'task': self.task, 'version': self.version,
                           'main_metric': squad_metrics.MAIN_METRIC, 'history': self.history}
    if self.history:
      out['final'] = {k: v for k, v in self.history[-1].items() if k != 'step'}
    if self.best is not None:
      out['best'] = self.best.as_dict()
    return out


def _copy_files(src_dir: str, dst_dir: str) -> None:
  """Copies the files of `src_dir` into `dst_dir`, each written beside and renamed."""
  from etils import epath

  for src in epath.Path(src_dir).iterdir():
    atomic.write_text(epath.Path(dst_dir) / src.name, src.read_text())


def run_mode(config: ml_collections.ConfigDict) -> str:
  mode = config.get('mode') or 'train'
  if mode not in MODES:
    raise errors.ConfigError(f'config.mode={mode!r}; SQuAD runs are one of {MODES} (SQuAD\'s test sets are hidden: '
                             f'eval writes the dev predictions).')
  return mode


@registry.TRAINERS.register('bert_squad_trainer')
def train(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Dataset, workdir: str,
          writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  """Fine-tunes or evaluates on SQuAD (see the module docstring); returns what results.json holds."""
  model = model_cls(config, dataset.meta_data)
  settings = eval_config(config)
  if run_mode(config) == 'eval':
    return _evaluate_saved(rng, config, model, dataset, settings, workdir, writer)
  return _fine_tune(rng, config, model, dataset, settings, workdir, writer)


def _fine_tune(rng: jax.Array, config: ml_collections.ConfigDict, model: BaseModel, dataset: Dataset,
               settings: ml_collections.ConfigDict, workdir: str,
               writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  t0 = time.time()
  meta = dataset.meta_data
  steps = finetune_trainer.num_train_steps(config, meta)
  if not config.get('init_from'):
    logging.warning('config.init_from is empty: fine-tuning SQuAD from RANDOM weights (expect F1 near 0). Point it '
                    'at a converted checkpoint or a pretraining workdir.')
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(meta),
                         num_train_steps=steps, workdir=workdir, rng=rng, train_iter=dataset.train_iter,
                         load_pretrained=common.pretrained_loader(config))
  evaluator = SquadEvaluator(settings, model, dataset, setup.mesh, setup.state_shardings.params,
                             os.path.join(workdir, PREDICTIONS_DIR), os.path.join(workdir, BEST_DIR))
  # A resumed run extends the history it wrote before (evaluations up to the restored step).
  previous = finetune_trainer._read_json(os.path.join(workdir, RESULTS_FILE))  # pylint: disable=protected-access
  start = setup.resumed_from or 0
  if previous.get('task') == evaluator.task:
    evaluator.history = [h for h in previous.get('history', []) if h.get('step', 0) <= start]
  base = {'num_train_steps': steps, 'init_from': config.get('init_from'), 'resumed_from': setup.resumed_from}

  def evaluate(state: Any, step: int) -> Mapping[str, float]:
    values = dict(evaluator.run(state, step))
    common.write_json(workdir, RESULTS_FILE, {**base, **evaluator.summary(), 'done': False})
    return values

  state, info = loop.train_loop(
      state=setup.state, train_step=setup.train_step, train_iter=dataset.train_iter, mesh=setup.mesh,
      num_train_steps=steps, writer=writer, checkpointer=setup.checkpointer,
      checkpoint_every=config.get('checkpoint_every', 1000), log_every=config.get('log_every', 100),
      evaluators=[('squad', evaluator.every, evaluate)], examples_per_step=config.batch_size,
      tokens_per_step=config.batch_size * meta['max_seq_length'])
  setup.checkpointer.close()
  results = {**base, **evaluator.summary(), 'step': info.get('end_step', int(jax.device_get(state.step))),
             'preempted': info['preempted'], 'done': not info['preempted'], 'wall_time_s': time.time() - t0}
  common.write_json(workdir, RESULTS_FILE, results)
  best = evaluator.best
  logging.info('SQuAD fine-tuning %s at step %d: final %s; best f1 %s at step %s.',
               'stopped (preempted)' if info['preempted'] else 'done', results['step'], results.get('final'),
               best.value if best and not math.isinf(best.value) else None, best.step if best else None)
  return results


def _evaluate_saved(rng: jax.Array, config: ml_collections.ConfigDict, model: BaseModel, dataset: Dataset,
                    settings: ml_collections.ConfigDict, workdir: str,
                    writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  path = finetune_trainer.saved_params_path(config, workdir)
  source, source_meta = params_io.read_pretrained(path)
  mesh = sharding_lib.create_mesh()
  params, shardings = finetune_trainer._load_params_into(  # pylint: disable=protected-access
      model, mesh, config, source, rng, source_name=path)
  evaluator = SquadEvaluator(settings, model, dataset, mesh, shardings, os.path.join(workdir, EVAL_PREDICTIONS_DIR))
  step = int(source_meta.get('step') or 0)
  metrics = evaluator.evaluate(params, evaluator.out_dir)
  results = finetune_trainer._read_json(os.path.join(workdir, RESULTS_FILE))  # pylint: disable=protected-access
  results.setdefault('task', evaluator.task)
  results['evaluation'] = {'source': path, 'step': step, 'main_metric': squad_metrics.MAIN_METRIC,
                           'metrics': metrics, 'predictions': evaluator.out_dir}
  writer.write_scalars(step, {f'eval_only/{k}': v for k, v in metrics.items() if math.isfinite(v)})
  writer.flush()
  logging.info('SQuAD evaluation of %s: %s', path, metrics)
  common.write_json(workdir, RESULTS_FILE, results)
  return results
