"""`fewshot`: few-shot GLUE scores of the encoder being trained or evaluated (big_vision's few-shot evaluator, for
text). The work is in `projects.bert.fewshot`: `inputs` (what the block selects; each task's train pool and eval
splits, read once), `embedding` (one pass per checkpoint, both protocols on its features), `probes` (our protocol:
support sets, features, the ridge probe, the sweep, the table), `scenic` (Scenic's protocol), `finetune` (the
optional k-shot fine-tuning) and `plot` (the figure); this module builds them from the config entry and reports.

Config (`config.evals.fewshot`, made by `configs/fewshot.py: fewshot_block`, which documents every field): tasks,
dataset (the `bert_glue` fields of the tasks; '{task}' in data_dir is the task name), protocol ('ours', 'scenic' or
'both'), shots, num_seeds, l2_regs, feature (ours), scenic (Scenic's shots, l2_regs, feature, seed, headline),
train_pool_size, eval_size, batch_size, every, and finetune_steps / finetune_batch_size / finetune_lr /
finetune_optimizer / finetune_schedule (> 0 steps: also fine-tune the whole model on each support set, the same
support sets as the probe).

When it is built (before a run's first step, so a bad block fails early), each task's inputs are read into host
memory. Each run embeds them with the run's weights once and fits both protocols' probes on those features.

Our scores are each task's main GLUE metric (`glue_tasks`), keyed by the task for its main eval split and by
'{task}_{split}' for the others (MNLI: 'mnli' = matched, 'mnli_mismatched'). Scalars: '{task}/{k}shot' (mean over
seeds), 'mean/{k}shot' (over tasks, when several), 'finetune/...' for the fine-tuning probe; Scenic's protocol adds
its own names, 'z/{task}_{k}shot' (accuracy), 'z/best_l2_for_{k}shot_eval', 'zz/{task}_{k}shot_l2={l2}' and the
headline 'a/sst2_100shot' (`scenic.scalars`). Each is one TensorBoard tag, `{name}/...`, written at the step of each
evaluation: over a pretraining run, a curve per task and shot count. The log gets a table per run and
workdir/{name}.png a plot of every protocol run, with the majority-class line (first process; `plot`).

What was run is said per protocol, in the results section and the run's last line: 'ours' {feature, support_sets
(= num_seeds), shots} when our probes (or the fine-tuning, on the same support sets) ran; 'scenic' {feature, its
feature_source (what stood for Scenic's NSP pre-logits on this model), support_sets (1), shots, seed, ...}.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import jax
import ml_collections
from absl import logging

from core import errors, registry
from core.evaluators import EvalContext, Evaluator
from projects.bert.fewshot import embedding, finetune, plot, probes, scenic
from projects.bert.fewshot import inputs as fewshot_inputs


@registry.EVALUATORS.register('fewshot')
class FewShotEvaluator(Evaluator):
  """Probes the encoder of `state.params` on the tasks of its block; see the module docstring."""

  def __init__(self, name: str, config: Any, context: EvalContext):
    super().__init__(name, config, context)
    tasks = fewshot_inputs.tasks_found(config)
    if tuple(config.tasks) != tasks:
      config = ml_collections.ConfigDict({**config.to_dict(), 'tasks': tasks})
    self.fs = config
    self.protocols = fewshot_inputs.protocols(config)
    self.features = fewshot_inputs.needed_features(config)
    self.model_config = ml_collections.ConfigDict(context.config.model.to_dict())
    self.feature_fn = probes.make_feature_fn(self.model_config, self.features, context.mesh)
    self._source_nsp_head: Optional[Any] = None
    t0 = time.perf_counter()
    self.inputs = [fewshot_inputs.load_task_inputs(config, task) for task in tasks]
    self.fs = fewshot_inputs.fitting_shots(config, self.inputs, block=f'config.evals.{name}')
    self.read_s = time.perf_counter() - t0
    self.results: Dict[str, Any] = {}

  def _feature_params(self, params: Mapping[str, Any]) -> Dict[str, Any]:
    """What the feature function reads. A model without the next-sentence head (`bert_encoder`, the standalone
    config) whose architecture has Model Garden's head, which is not the encoder's pooler, takes the head from the
    weights it was loaded from."""
    out = probes.feature_params(params, self.features)
    head = self.model_config.get('nsp_head') or 'encoder_pooler'
    if 'nsp' in self.features and 'nsp_head' not in out and head != 'encoder_pooler':
      if self._source_nsp_head is None:
        from core import params_io  # orbax: only this case pays its import
        path = self.context.weights.get('path') or ''
        source = params_io.read_pretrained(path)[0] if path else {}
        if 'nsp_head' not in source:
          raise errors.ConfigError(
              f'Few-shot feature "nsp" reads the next-sentence head\'s pre-logits, but config.model.nsp_head is '
              f'{head!r} and {path or "the random encoder"} has no nsp_head parameters. Use a checkpoint with its '
              f'next-sentence head, or feature "mean"/"pooled" (config.evals.{self.name}.feature / scenic.feature).')
        self._source_nsp_head = source['nsp_head']
      out['nsp_head'] = self._source_nsp_head
    return out

  def run(self, state: Any, step: int) -> Iterable[Tuple[str, float]]:
    fs, t_start = self.fs, time.perf_counter()
    feature_params = self._feature_params(state.params)
    entries, scenic_result, timings = embedding.evaluate_encoder(
        fs, self.feature_fn, feature_params, self.inputs, self.context.mesh)
    scalars = probes.with_task_means(probes.flat_scalars(entries), entries)
    source = self.context.weights
    title = f'{fs.feature} features, {fs.num_seeds} seeds, mean+-std in %, of {source.get("path") or "random"}'
    if entries:
      logging.info('Few-shot ridge probe at step %d (%s; embed %.1fs, probes %.1fs):\n%s', step, title,
                   timings['embed_s'], timings['probe_s'], probes.format_table(entries))
    if scenic_result is not None:
      # Which layer stands for Scenic's pre_logits on this model (exact only with Scenic's head).
      scenic_source = scenic.feature_source(feature_params.get('nsp_head'), fs.scenic.feature)
      logging.info('Scenic few-shot feature: %s; support sets: %s, %s solve.', scenic_source,
                   scenic_result['support']['how'], scenic_result['support']['solve'])
      scalars.update(scenic.scalars(scenic_result, fs.scenic.get('headline')))
      logging.info('Few-shot as Scenic reports it at step %d (%s features, one support set, accuracy in %%, the '
                   'regulariser chosen on the eval sets, so optimistic; %.1fs):\n%s', step, fs.scenic.feature,
                   timings['scenic_s'], scenic.format_table(scenic_result))
    finetuned = {}
    if int(fs.get('finetune_steps') or 0) > 0:
      t0 = time.perf_counter()
      finetuned = finetune.finetune_sweep(fs, registry.MODELS.get('bert_classification'), self.model_config,
                                          state.params['bert'], self.inputs, self.context.mesh)
      timings['finetune_s'] = time.perf_counter() - t0
      scalars.update({f'finetune/{k}': v for k, v in probes.with_task_means(probes.flat_scalars(finetuned),
                                                                             finetuned).items()})
      logging.info('Few-shot fine-tuning (%d steps; %s):\n%s', fs.finetune_steps, title,
                   probes.format_table(finetuned))
    # What was run, per protocol: ours (and the fine-tuning, on the same support sets) and Scenic's each name their
    # own feature, support sets per shot count and shot counts.
    self.results = {'step': step, 'weights': dict(source), 'protocol': fs.get('protocol') or 'ours',
                    'model': self.model_config.to_dict(), 'tasks': entries, 'finetune': finetuned}
    if entries or finetuned:
      self.results['ours'] = {'feature': fs.feature, 'support_sets': int(fs.num_seeds),
                              'shots': [int(k) for k in fs.shots],
                              'note': 'regulariser chosen on each support set; mean and std over support sets'}
    if scenic_result is not None:
      self.results['scenic'] = {
          'feature': fs.scenic.feature, 'feature_source': scenic_source,
          'feature_label': scenic.feature_label(feature_params.get('nsp_head'), fs.scenic.feature),
          'support_sets': 1, 'shots': [int(k) for k in fs.scenic.shots], 'seed': int(fs.scenic.seed),
          'note': 'regulariser chosen per shot count on the eval sets (optimistic)',
          'best_l2': scenic_result['best_l2'], 'accuracy': scenic_result['z'],
          'accuracy_per_l2': scenic_result['accuracy'], 'support': scenic_result['support'],
          'splits': scenic_result['splits']}
    self.results.update(scalars={k: v for k, v in scalars.items() if not k.startswith('zz/')},
                        timing_s={**timings, 'read_s': self.read_s, 'total_s': time.perf_counter() - t_start})
    lines = plot.section_entries(self.results)
    if jax.process_index() == 0 and lines:
      name = os.path.basename(str(source.get('path') or 'random').rstrip('/'))
      plot.plot_results(lines, os.path.join(self.context.workdir, f'{self.name}.png'),
                        title=name if 'scenic' in self.results else f'{name} ({fs.feature})')
    return scalars.items()

  def summary(self) -> Dict[str, Any]:
    return dict(self.results)

  def last_line(self) -> Dict[str, Any]:
    """What each protocol ran: its feature and its support sets per shot count (ours: num_seeds; Scenic's: one)."""
    out: Dict[str, Any] = {}
    for protocol, label in (('ours', 'ours'), ('scenic', 'Scenic')):
      meta = self.results.get(protocol)
      if meta:
        out[f'{label} feature'] = meta.get('feature_label') or meta['feature']
        out[f'{label} support sets'] = meta['support_sets']
    return out
