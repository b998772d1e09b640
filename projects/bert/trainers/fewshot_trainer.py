"""Few-shot GLUE evaluation of a BERT encoder: `bert_fewshot_evaluator`, and the periodic evaluator that the
pretraining trainer runs with a `config.fewshot` block.

For each GLUE classification task of `config.fewshot.tasks`, each k of `shots` and each of `num_seeds` seeds: k
train examples per class are drawn, a ridge probe is fitted on frozen encoder features of them (regulariser chosen
on the support set) and the task's metric is computed on the whole eval split(s). Every split is embedded once per
checkpoint, in one jitted batched forward, and the features are reused for every k, seed and regulariser.

Outputs of the trainer (workdir): `fewshot_results.json`, `fewshot.png` (metric against shots, a panel per task),
TensorBoard scalars `fewshot/{task}/{k}shot` (mean over seeds), and a table in the log. Results are keyed by task
for its main eval split and by `{task}_{split}` for the others (MNLI: 'mnli' = matched, 'mnli_mismatched').

Where the encoder comes from: `config.init_from` (a converted checkpoint or a run's workdir; its 'bert' subtree),
else random initialisation. `config.model` None takes the architecture from the checkpoint (the converter's
metadata, or the run's config.json).

The tasks' inputs are read by `fewshot_inputs`; the optional k-shot fine-tuning lives in `fewshot_finetune`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from jax.sharding import Mesh

from core import params_io, registry
from core import sharding as sharding_lib
from projects.bert import fewshot, glue_metrics
from projects.bert.trainers import common, fewshot_finetune, fewshot_inputs
from projects.bert.trainers.fewshot_inputs import TaskInputs

RESULTS_FILE = 'fewshot_results.json'
PLOT_FILE = 'fewshot.png'


# ---------------------------------------------------------------------------------------------------------------
# The ridge probe on frozen features.


def embed_task(feature_fn: Callable, encoder_params: Any, inputs: TaskInputs, mesh: Mesh) -> fewshot.TaskFeatures:
  """One forward pass over the task's pool and eval splits -> features and labels (padding removed)."""
  train = fewshot.extract_features(feature_fn, encoder_params, inputs.train_batches, mesh)
  evals = {split: fewshot.extract_features(feature_fn, encoder_params, batches, mesh)
           for split, batches in inputs.eval_batches.items()}
  return fewshot.TaskFeatures(
      task=inputs.task, num_classes=inputs.num_classes,
      train_features=train['features'][:inputs.train_size], train_labels=train['label_ids'][:inputs.train_size],
      eval_features={s: e['features'][:inputs.eval_sizes[s]] for s, e in evals.items()},
      eval_labels={s: e['label_ids'][:inputs.eval_sizes[s]] for s, e in evals.items()})


def evaluate_encoder(fs: ml_collections.ConfigDict, feature_fn: Callable, encoder_params: Any,
                     inputs: Sequence[TaskInputs], mesh: Mesh) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, float]]:
  """Embeds every task once and runs the probe sweep. Returns (entries, timings): entries keyed by task (main
  split) or '{task}_{split}', each {'task', 'split', 'metric', 'shots': {k: {'mean', 'std', 'per_seed', 'l2'}}};
  timings {'embed_s', 'probe_s', 'embedded_examples'}.
  """
  entries: Dict[str, Dict[str, Any]] = {}
  timings = {'embed_s': 0.0, 'probe_s': 0.0, 'embedded_examples': 0}
  seeds = list(range(int(fs.num_seeds)))
  for task in inputs:
    t0 = time.perf_counter()
    features = embed_task(feature_fn, encoder_params, task, mesh)
    t1 = time.perf_counter()
    by_split = fewshot.fewshot_sweep(features, [int(k) for k in fs.shots], seeds, [float(x) for x in fs.l2_regs],
                                     score_fn=glue_metrics.main_score)
    timings['embed_s'] += t1 - t0
    timings['probe_s'] += time.perf_counter() - t1
    timings['embedded_examples'] += task.train_size + sum(task.eval_sizes.values())
    for split, result in by_split.items():
      key = task.task if split == task.main_split else f'{task.task}_{split}'
      entries[key] = {'task': task.task, 'split': split, **result}
  return entries, timings


# ---------------------------------------------------------------------------------------------------------------
# Where the encoder comes from.


def _workdir_model_config(path: str) -> Optional[Dict[str, Any]]:
  """config.model of the run whose workdir is `path` (or its checkpoints/ directory), from its config.json."""
  for candidate in (os.path.join(path, 'config.json'), os.path.join(os.path.dirname(path.rstrip('/')), 'config.json')):
    if os.path.exists(candidate):
      with open(candidate) as f:
        return json.load(f).get('model')
  return None


def load_encoder(config: ml_collections.ConfigDict, rng: jax.Array) -> Tuple[Any, ml_collections.ConfigDict, Dict]:
  """(encoder params as numpy, the encoder's config.model, info) from `config.init_from`, else random init.

  `config.model` None takes the architecture from the checkpoint. Names and shapes are checked against the
  encoder that config.model builds; parameters the checkpoint lacks (the pooler, in some converted checkpoints)
  keep a random initial value, with a warning.
  """
  path = config.get('init_from') or ''
  model_config = config.get('model')
  source, metadata = (params_io.read_pretrained(path) if path else ({}, {}))
  if not model_config:
    model_config = metadata.get('model') or (_workdir_model_config(os.path.abspath(path)) if path else None)
    if not model_config:
      raise ValueError('config.model is None and there is no checkpoint to take the architecture from: set '
                       'config.init_from, or a model size (e.g. the variant `sst2,base`).')
  model_config = ml_collections.ConfigDict(dict(model_config))
  source_model = metadata.get('model') or {}
  for field in ('hidden_act', 'layer_norm_eps'):  # change the function without changing a shape: cannot fail below
    if field in source_model and source_model[field] != model_config.get(field):
      logging.warning('%s was made with model.%s=%r but config.model has %r: its features will differ from the '
                      "source model's; set config.model=None to take the checkpoint's.", path, field,
                      source_model[field], model_config.get(field))
  info = {'init_from': path or 'random', 'step': metadata.get('step')}
  if not path:
    logging.warning('config.init_from is empty: few-shot scores of a randomly initialised encoder.')
    return fewshot.init_encoder_params(model_config, rng), model_config, info
  if 'bert' not in source:
    raise ValueError(f'{path} has no "bert" (encoder) parameters; its top-level names are {sorted(source)}.')
  # Zeros shaped like the encoder suffice to check the checkpoint against; random values only where it has none.
  shapes = jax.eval_shape(fewshot.encoder_init_fn(model_config), rng)
  target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  merged, report = params_io.merge_params({'bert': target}, {'bert': source['bert']}, source_name=path)
  if report['kept_init']:
    logging.warning('%s lacks %s: those keep a random initial value.', path, report['kept_init'])
    fresh = fewshot.init_encoder_params(model_config, rng)
    merged, _ = params_io.merge_params({'bert': fresh}, {'bert': source['bert']}, source_name=path)
  logging.info('Few-shot encoder from %s: %d arrays.', path, len(report['loaded']))
  return merged['bert'], model_config, info


# ---------------------------------------------------------------------------------------------------------------
# The trainer and the periodic evaluator.


def _log_entries(entries: Mapping[str, Any], title: str) -> None:
  logging.info('%s\n%s', title, fewshot.format_table(entries))


def _with_task_means(scalars: Dict[str, float], entries: Mapping[str, Any]) -> Dict[str, float]:
  """Adds 'mean/{k}shot', the mean over tasks (main splits), when there are several tasks."""
  mains = [e for key, e in entries.items() if key == e['task']]
  if len(mains) > 1:
    for k in sorted({k for e in mains for k in e['shots']}):
      values = [e['shots'][k]['mean'] for e in mains if k in e['shots']]
      scalars[f'mean/{k}shot'] = float(np.mean(values))
  return scalars


@registry.TRAINERS.register('bert_fewshot_evaluator')
def train(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Any, workdir: str,
          writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  """Runs the few-shot sweep of `config.fewshot` on the encoder of `config.init_from` (or a random one).

  `dataset` and `model_cls` are unused: each task builds its own `bert_glue` dataset, the probe needs only the
  encoder, and k-shot fine-tuning (`config.fewshot.finetune_steps` > 0) wraps it in a `bert_classification` model.
  Returns what it writes to workdir/fewshot_results.json.
  """
  del dataset, model_cls  # fine-tuning always builds a `bert_classification` model around the encoder
  t_start = time.perf_counter()
  fs = config.fewshot
  init_rng, _ = jax.random.split(rng)
  params, model_config, info = load_encoder(config, init_rng)
  mesh = sharding_lib.create_mesh()
  params = jax.device_put(params, sharding_lib.replicated(mesh))
  feature_fn = fewshot.make_feature_fn(model_config, fs.feature, mesh)

  t0 = time.perf_counter()
  inputs = [fewshot_inputs.load_task_inputs(fs, task) for task in fs.tasks]
  read_s = time.perf_counter() - t0
  entries, timings = evaluate_encoder(fs, feature_fn, params, inputs, mesh)
  timings['read_s'] = read_s
  scalars = _with_task_means(fewshot.flat_scalars(entries), entries)
  title = f'{fs.feature} features, {fs.num_seeds} seeds, mean+-std in %, of {info["init_from"]}'
  _log_entries(entries, f'Few-shot ridge probe ({title}):')
  finetuned = {}
  if int(fs.get('finetune_steps') or 0) > 0:
    t0 = time.perf_counter()
    finetuned = fewshot_finetune.finetune_sweep(fs, registry.MODELS.get('bert_classification'), model_config, params,
                                                inputs, mesh)
    timings['finetune_s'] = time.perf_counter() - t0
    scalars.update({f'finetune/{k}': v for k, v in
                    _with_task_means(fewshot.flat_scalars(finetuned), finetuned).items()})
    _log_entries(finetuned, f'Few-shot fine-tuning ({fs.finetune_steps} steps; {title}):')

  step = int(info.get('step') or 0)
  writer.write_scalars(step, {f'fewshot/{k}': v for k, v in scalars.items() if np.isfinite(v)})
  writer.flush()
  results = {
      'init_from': info['init_from'], 'step': info.get('step'), 'feature': fs.feature,
      'num_seeds': int(fs.num_seeds), 'shots': [int(k) for k in fs.shots],
      'model': model_config.to_dict(), 'tasks': entries, 'finetune': finetuned, 'scalars': scalars,
      'timing_s': {**timings, 'total_s': time.perf_counter() - t_start},
  }
  common.write_json(workdir, RESULTS_FILE, results)
  if jax.process_index() == 0:
    plotted = {key: {**e, 'split': f'{e["split"]}, probe'} if finetuned else e for key, e in entries.items()}
    plotted.update({f'{key} finetune': {**e, 'split': f'{e["split"]}, fine-tuned'} for key, e in finetuned.items()})
    fewshot.plot_results(plotted, os.path.join(workdir, PLOT_FILE),
                         title=f'{os.path.basename(str(info["init_from"]).rstrip("/"))} ({fs.feature})')
  logging.info('Few-shot evaluation done in %.1fs (read %.1fs, embed %.1fs, probes %.1fs); wrote %s.',
               results['timing_s']['total_s'], read_s, timings['embed_s'], timings['probe_s'],
               os.path.join(workdir, RESULTS_FILE))
  return results


def periodic_evaluator(config: ml_collections.ConfigDict, model: Any, setup: Any
                       ) -> Callable[[Any, int], Dict[str, float]]:
  """`fn(state, step) -> {'sst2/8shot': mean, ...}` scoring `state.params['bert']` with `config.fewshot`.

  The tasks' batches are read once, here; each call embeds them with the current weights (in their training
  shardings) and fits the probes. The core loop writes the values under 'fewshot/'.
  """
  del model
  fs = config.fewshot
  if int(fs.get('finetune_steps') or 0) > 0:
    raise ValueError('config.fewshot.finetune_steps > 0 is for the standalone evaluator; the periodic one probes '
                     'the frozen encoder.')
  feature_fn = fewshot.make_feature_fn(config.model, fs.feature, setup.mesh)
  inputs = [fewshot_inputs.load_task_inputs(fs, task) for task in fs.tasks]

  def evaluate(state: Any, step: int) -> Dict[str, float]:
    entries, timings = evaluate_encoder(fs, feature_fn, state.params['bert'], inputs, setup.mesh)
    _log_entries(entries, f'Few-shot at step {step} (embed {timings["embed_s"]:.1f}s, probes '
                          f'{timings["probe_s"]:.1f}s):')
    return _with_task_means(fewshot.flat_scalars(entries), entries)

  return evaluate
