"""k-shot fine-tuning of the whole model, the optional second probe of the few-shot evaluator
(`config.fewshot.finetune_steps` > 0): the same support sets as the ridge probe, a fresh head per (k, seed).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from core import sharding as sharding_lib
from projects.bert import fewshot, glue_metrics
from projects.bert.trainers.fewshot_inputs import TaskInputs, pool_tokens


class FineTuner:
  """Fine-tunes a fresh classification model (encoder from `encoder_params`, new head) on one support set and
  scores the eval splits. Built once per task: the steps compile once and serve every k and seed.

  Each step trains on `batch_size` support examples drawn as consecutive permutations of the support set (so every
  example is seen equally often), with AdamW, linear warm-up over 10% of the steps then linear decay.
  """

  def __init__(self, fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
               task: TaskInputs, mesh: Mesh, seq_len: int):
    from core import optimizers
    from core.state import TrainState, create_sharded_train_state
    from core.train_step import make_predict_step, make_train_step

    self.fs, self.task, self.mesh = fs, task, mesh
    self.steps, self.batch_size = int(fs.finetune_steps), int(fs.finetune_batch_size)
    config = ml_collections.ConfigDict({'model': {**model_config.to_dict(), 'num_labels': task.num_classes}})
    self.model = model_cls(config, {'num_labels': task.num_classes})
    lr_fn = optimizers.learning_rate_schedule(ml_collections.ConfigDict(
        {'base_lr': float(fs.finetune_lr), 'warmup_fraction': 0.1, 'decay': 'linear', 'end_lr': 0.0}), self.steps)
    tx = optimizers.create_optimizer(ml_collections.ConfigDict(
        {'name': 'adamw', 'weight_decay': 0.01, 'eps': 1e-6, 'grad_clip_norm': 1.0}), lr_fn)
    example = {k: np.zeros((1, seq_len), np.int32) for k in ('input_ids', 'input_mask', 'segment_ids')}
    init_params = lambda rng: self.model.init_params(rng, example)  # noqa: E731
    _, shardings = create_sharded_train_state(init_params, tx, jax.random.PRNGKey(0), mesh)

    def fresh_state(encoder_params, rng):
      head_rng, state_rng = jax.random.split(rng)
      params = {**init_params(head_rng), 'bert': encoder_params}
      return TrainState.create(params, tx, state_rng)

    self._fresh_state = jax.jit(fresh_state, out_shardings=shardings)
    self._train_step = make_train_step(self.model, shardings, mesh, learning_rate_fn=lr_fn)
    self._predict_step = make_predict_step(self.model, shardings.params, mesh)

  def _batches(self, tokens: Dict[str, np.ndarray], support: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    need = self.steps * self.batch_size
    order = np.concatenate([rng.permutation(support) for _ in range(-(-need // len(support)))])[:need]
    host = self.batch_size // jax.process_count()
    lo = jax.process_index() * host
    for step in range(self.steps):
      rows = order[step * self.batch_size:(step + 1) * self.batch_size][lo:lo + host]
      yield {k: tokens[k][rows] for k in ('input_ids', 'input_mask', 'segment_ids', 'label_ids')}

  def run(self, encoder_params: Any, tokens: Dict[str, np.ndarray], support: np.ndarray, seed: int
          ) -> Dict[str, float]:
    """Fine-tunes on the pool rows `support` and returns {split: main metric}."""
    state = self._fresh_state(encoder_params, jax.random.PRNGKey(seed))
    for batch in self._batches(tokens, support, seed):
      state, _ = self._train_step(state, sharding_lib.make_global_batch(batch, self.mesh))
    from core import evaluation
    scores = {}
    for split, batches in self.task.eval_batches.items():
      out = evaluation.gather_predictions(self._predict_step, state.params, batches, self.mesh, keep=('label_ids',))
      n = self.task.eval_sizes[split]
      scores[split] = glue_metrics.main_score(self.task.task, np.argmax(out['outputs'][:n], -1),
                                               out['label_ids'][:n])[1]
    return scores


def finetune_sweep(fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
                   encoder_params: Any, inputs: Sequence[TaskInputs], mesh: Mesh) -> Dict[str, Dict[str, Any]]:
  """k-shot fine-tuning for every task, k and seed, on the same support sets as the probe. Entries as
  `evaluate_encoder`'s, with 'l2' left out."""
  entries: Dict[str, Dict[str, Any]] = {}
  for task in inputs:
    tokens = pool_tokens(task)
    tuner = FineTuner(fs, model_cls, model_config, task, mesh, tokens['input_ids'].shape[1])
    by_split: Dict[str, Dict[int, List[float]]] = {split: {} for split in task.eval_batches}
    for k in fs.shots:
      for seed in range(int(fs.num_seeds)):
        support = fewshot.sample_support(tokens['label_ids'], int(k), seed, task.num_classes)
        for split, value in tuner.run(encoder_params, tokens, support, seed).items():
          by_split[split].setdefault(int(k), []).append(value)
    for split, per_k in by_split.items():
      key = task.task if split == task.main_split else f'{task.task}_{split}'
      metric = glue_metrics.MAIN_METRIC[task.task]
      entries[key] = {'task': task.task, 'split': split, 'metric': metric, 'shots': {
          k: {'mean': float(np.mean(v)), 'std': float(np.std(v)), 'per_seed': v} for k, v in per_k.items()}}
      logging.info('Few-shot fine-tuning %s: %s', key, {k: round(float(np.mean(v)), 4) for k, v in per_k.items()})
  return entries
