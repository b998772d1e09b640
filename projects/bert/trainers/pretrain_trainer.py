"""BERT pretraining (masked LM + next sentence prediction) on the shared core loop: `bert_pretrainer`."""

from __future__ import annotations

import time
from typing import Any, Dict

import jax
import ml_collections
from absl import logging
from clu import metric_writers

from core import evaluation, loop, registry
from core.dataset import Dataset
from core.setup import example_batch_from_meta, setup_training
from core.train_step import make_eval_step
from projects.bert.trainers import common


@registry.TRAINERS.register('bert_pretrainer')
def train(*, rng: jax.Array, config: ml_collections.ConfigDict, model_cls: Any, dataset: Dataset, workdir: str,
          writer: metric_writers.MetricWriter) -> Dict[str, Any]:
  """Pretrains from scratch or `config.init_from`; resumes from `workdir/checkpoints` when present.

  Evaluates MLM/NSP on `config.num_eval_steps` held-out batches every `config.eval_every` steps, and, with a
  `config.fewshot` block, the few-shot GLUE scores of the current weights every `config.fewshot.every` steps.
  Returns (and writes to workdir/pretrain_results.json) the final train and eval metrics.
  """
  t0 = time.time()
  meta = dataset.meta_data
  model = model_cls(config, meta)
  setup = setup_training(config=config, model=model, example_batch=example_batch_from_meta(meta),
                         num_train_steps=config.num_train_steps, workdir=workdir, rng=rng,
                         train_iter=dataset.train_iter, load_pretrained=common.pretrained_loader(config))
  evaluators = []
  if dataset.valid_iter is not None and config.get('eval_every'):
    eval_step = make_eval_step(model, setup.state_shardings.params, setup.mesh)
    evaluators.append(('eval', config.eval_every, lambda state, step: evaluation.evaluate_metrics(
        eval_step, state.params, dataset.valid_iter(), setup.mesh, config.get('num_eval_steps'))))
  if config.get('fewshot') and config.fewshot.get('every'):
    from projects.bert.trainers import fewshot_trainer  # only pretraining runs that ask for it pay the import
    evaluators.append(('fewshot', config.fewshot.every, fewshot_trainer.periodic_evaluator(config, model, setup)))

  seq_len = meta['max_seq_length']
  state, info = loop.train_loop(
      state=setup.state, train_step=setup.train_step, train_iter=dataset.train_iter, mesh=setup.mesh,
      num_train_steps=config.num_train_steps, writer=writer, checkpointer=setup.checkpointer,
      checkpoint_every=config.checkpoint_every, log_every=config.log_every, evaluators=evaluators,
      examples_per_step=config.batch_size, tokens_per_step=config.batch_size * seq_len)
  setup.checkpointer.close()
  results = {
      'step': info['end_step'] if 'end_step' in info else int(jax.device_get(state.step)),
      'preempted': info['preempted'],
      'resumed_from': setup.resumed_from,
      'eval': info['last_eval'].get('eval', {}),
      'fewshot': info['last_eval'].get('fewshot', {}),
      'checkpoint_dir': str(setup.checkpointer.directory),
      'wall_time_s': time.time() - t0,
  }
  common.write_json(workdir, 'pretrain_results.json', results)
  logging.info('Pretraining %s at step %d: %s', 'stopped (preempted)' if info['preempted'] else 'done',
               results['step'], results['eval'])
  return results
