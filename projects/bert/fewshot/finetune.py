"""k-shot fine-tuning, the few-shot evaluator's optional second probe: for every task, k and seed, a fresh
classification model (the encoder being evaluated, a new head) fine-tuned on the ridge probe's support set
(`probes.sample_support`: the same sets), then scored on the task's eval splits.

The optimizer and the learning-rate schedule are the trainer's (`core.optimizers`), built from the block's
`finetune_optimizer` and `finetune_schedule` (fields as `config.optimizer` and `config.schedule`; the schedule's
base_lr is `finetune_lr`), which `configs/fewshot.py: fewshot_block` sets from `configs/recipes.py`.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from core import errors, evaluation, optimizers
from core import sharding as sharding_lib
from core.dataset import DatasetMetaData
from core.state import TrainState, create_sharded_train_state
from core.train_step import make_predict_step, make_train_step
from projects.bert.fewshot import probes
from projects.bert.fewshot.inputs import TaskInputs, pool_tokens
from projects.bert.tasks import glue as glue_tasks
from projects.bert.tasks import glue_metrics

TOKEN_FIELDS = ('input_ids', 'input_mask', 'segment_ids', 'label_ids')


def optimization_configs(fs: ml_collections.ConfigDict) -> Tuple[ml_collections.ConfigDict,
                                                                  ml_collections.ConfigDict]:
  """(optimizer config, schedule config) of the block's fine-tuning, as `core.optimizers` reads them: its
  `finetune_optimizer`, and its `finetune_schedule` with base_lr = `finetune_lr`."""
  missing = [f for f in ('finetune_optimizer', 'finetune_schedule') if not fs.get(f)]
  if missing:
    raise errors.ConfigError(
        f'config.evals.fewshot.finetune_steps={fs.finetune_steps} fine-tunes on each support set, but the block has '
        f'no {" / ".join(missing)} (the fields of config.optimizer / config.schedule for the fine-tuning). Build the '
        f'block with projects/bert/configs/fewshot.py: fewshot_block, which sets them from configs/recipes.py, or '
        f'set finetune_steps=0.')
  optimizer = ml_collections.ConfigDict(dict(fs.finetune_optimizer.items()))
  schedule = ml_collections.ConfigDict({**dict(fs.finetune_schedule.items()), 'base_lr': float(fs.finetune_lr)})
  return optimizer, schedule


class FineTuner:
  """Fine-tunes a fresh classification model (encoder from `encoder_params`, new head) on one support set and
  scores the eval splits. Built once per task: the steps compile once and serve every k and seed.

  Each step trains on `finetune_batch_size` support examples drawn as consecutive permutations of the support set
  (so every example is seen equally often), with the block's optimizer and schedule over `finetune_steps` steps.
  """

  def __init__(self, fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
               task: TaskInputs, mesh: Mesh, seq_len: int):
    self.task, self.mesh = task, mesh
    self.steps, self.batch_size = int(fs.finetune_steps), int(fs.finetune_batch_size)
    config = ml_collections.ConfigDict({'model': {**model_config.to_dict(), 'num_labels': task.num_classes}})
    self.model = model_cls(config, DatasetMetaData(input_specs={}, num_labels=task.num_classes))
    optimizer_config, schedule_config = optimization_configs(fs)
    lr_fn = optimizers.learning_rate_schedule(schedule_config, self.steps)
    tx = optimizers.create_optimizer(optimizer_config, lr_fn)
    example = {k: np.zeros((1, seq_len), np.int32) for k in ('input_ids', 'input_mask', 'segment_ids')}
    init_params = lambda rng: self.model.init_params(rng, example)  # noqa: E731
    _, shardings = create_sharded_train_state(init_params, tx, jax.random.PRNGKey(0), mesh)

    def fresh_state(encoder_params, rng):
      head_rng, state_rng = jax.random.split(rng)
      params = {**init_params(head_rng), 'bert': encoder_params}
      return TrainState.create(params, tx, state_rng)

    self._fresh_state = jax.jit(fresh_state, out_shardings=shardings)
    self._train_step = make_train_step(self.model, shardings, mesh, learning_rate_fn=lr_fn,
                                       per_replica_clip=optimizers.per_replica_clipping(optimizer_config))
    self._predict_step = make_predict_step(self.model, shardings.params, mesh)

  def _batches(self, tokens: Dict[str, np.ndarray], support: np.ndarray, seed: int) -> Iterator[Dict[str, np.ndarray]]:
    """This process's rows of each step's batch: [batch_size / processes, ...] of `tokens`."""
    rng = np.random.default_rng(seed)
    need = self.steps * self.batch_size
    order = np.concatenate([rng.permutation(support) for _ in range(-(-need // len(support)))])[:need]
    host = self.batch_size // jax.process_count()
    lo = jax.process_index() * host
    for step in range(self.steps):
      rows = order[step * self.batch_size:(step + 1) * self.batch_size][lo:lo + host]
      yield {k: tokens[k][rows] for k in TOKEN_FIELDS}

  def run(self, encoder_params: Any, tokens: Dict[str, np.ndarray], support: np.ndarray, seed: int
          ) -> Dict[str, float]:
    """Fine-tunes on the pool rows `support` (of `tokens`, `inputs.pool_tokens`) and returns {split: main metric}."""
    state = self._fresh_state(encoder_params, jax.random.PRNGKey(seed))
    for batch in self._batches(tokens, support, seed):
      state, _ = self._train_step(state, sharding_lib.make_global_batch(batch, self.mesh))
    scores = {}
    for split, batches in self.task.eval_batches.items():
      out = evaluation.gather_predictions(self._predict_step, state.params, batches, self.mesh, keep=('label_ids',))
      scores[split] = glue_metrics.main_score(self.task.task, np.argmax(out['outputs'], -1), out['label_ids'])[1]
    return scores


def finetune_sweep(fs: ml_collections.ConfigDict, model_cls: Any, model_config: ml_collections.ConfigDict,
                   encoder_params: Any, inputs: Sequence[TaskInputs], mesh: Mesh) -> Dict[str, Dict[str, Any]]:
  """k-shot fine-tuning for every task, k and seed, on the same support sets as the probe. Entries as
  `embedding.evaluate_encoder`'s, with 'l2' and 'majority' left out."""
  entries: Dict[str, Dict[str, Any]] = {}
  for task in inputs:
    tokens = pool_tokens(task)
    tuner = FineTuner(fs, model_cls, model_config, task, mesh, tokens['input_ids'].shape[1])
    by_split: Dict[str, Dict[int, List[float]]] = {split: {} for split in task.eval_batches}
    for k in fs.shots:
      for seed in range(int(fs.num_seeds)):
        support = probes.sample_support(tokens['label_ids'], int(k), seed, task.num_classes)
        for split, value in tuner.run(encoder_params, tokens, support, seed).items():
          by_split[split].setdefault(int(k), []).append(value)
    for split, per_k in by_split.items():
      key = task.entry_key(split)
      entries[key] = {'task': task.task, 'split': split, 'metric': glue_tasks.get_task(task.task).main_metric,
                      'shots': {k: {'mean': float(np.mean(v)), 'std': float(np.std(v)), 'per_seed': v}
                                for k, v in per_k.items()}}
      logging.info('Few-shot fine-tuning %s: %s', key, {k: round(float(np.mean(v)), 4) for k, v in per_k.items()})
  return entries
