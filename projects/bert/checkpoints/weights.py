"""Where a BERT run's weights come from, in one place.

  training       the workdir's latest checkpoint (a resume: parameters, optimizer state and input position, restored
                 by `core.setup`) > `config.init_from`, copied into fresh parameters (`init_from_loader`) > random.
  eval, predict  the workdir's best/ (`BEST_DIR`: the parameters of the run's best evaluation) > its latest
                 checkpoint > `config.init_from`, another run's workdir read by the same rules (`evaluation_source`);
                 never random: not a missing or out-of-step best/ that results.json names, nor a source without the
                 task head.

`init_from` is a params directory (what `python -m projects.bert.checkpoints.convert` writes, or a run's best/) or a
run's workdir (for training: the parameters of its latest checkpoint). Every load goes through `load_weights`: names
and shapes are checked against the model (a mismatch raises, naming the variable), and the fields that shapes cannot
reveal (hidden_act, layer_norm_eps) are compared with the source's architecture. The architecture fields of
`config.model` left unset (None; all of it when `config.model` is None) come from the source (`resolve_model_config`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from core import errors

BEST_DIR = 'best'
RESULTS_FILE = 'results.json'  # a training run's results (trainers/bert_trainer.py), which name its best parameters
# Fields that change the function the weights compute without changing any shape: a mismatch loads silently.
_NUMERIC_FIELDS = ('hidden_act', 'layer_norm_eps')

Info = Dict[str, Any]  # where weights came from: {'source': 'best'|'checkpoint'|'init_from'|'random', 'path', 'step'}


def _has_checkpoint(workdir: str) -> bool:
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir))


def _model_files(path: str) -> Tuple[str, ...]:
  """Where the architecture of the weights at `path` may be written, in order: a params directory's metadata.json,
  the config.json of the run whose workdir (or checkpoints/ or best/ directory) `path` is."""
  path = os.path.abspath(path)
  return (os.path.join(path, 'metadata.json'), os.path.join(path, 'config.json'),
          os.path.join(os.path.dirname(path.rstrip('/')), 'config.json'))


def source_model_config(path: str) -> Optional[Dict[str, Any]]:
  """`config.model` of the weights at `path` (`_model_files`); None when none says."""
  for candidate in _model_files(path):
    if os.path.exists(candidate):
      with open(candidate) as f:
        model = json.load(f).get('model')
      if model:
        return model
  return None


def _source_file(path: str) -> str:
  """The file `source_model_config` reads `path`'s architecture from (for messages)."""
  return next((c for c in _model_files(path) if os.path.exists(c)), path)


def resolve_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with a complete `config.model`: the architecture comes with the weights at `config.init_from`.

  `config.model` None is the source's whole `model`. Otherwise each architecture field
  (`models.architecture.ARCHITECTURE_FIELDS`) left None takes the source's value (its metadata.json or run's
  config.json), else the default size's (`common.default_architecture`); a field that is set and differs from the
  source's is a `core.errors.ConfigError` naming it. The run's own fields (dropout, dtype, num_labels, ...) stay.
  """
  from projects.bert.models import architecture as common  # the sizes and which fields are the architecture

  path = config.get('init_from') or ''
  source = source_model_config(path) if path else None
  model = config.get('model')
  if not model:
    if not source:
      where = 'config.init_from is empty' if not path else path + ' names none'
      raise errors.ConfigError(f'config.model is None and {where}: set config.model (e.g. the variant\'s size) or '
                               f'config.init_from to a converted checkpoint or a run\'s workdir.')
    resolved = ml_collections.ConfigDict(config.to_dict())
    resolved.model = ml_collections.ConfigDict(source)
    logging.info('config.model taken from %s: %d layers, hidden %d.', path, resolved.model.num_layers,
                 resolved.model.hidden_size)
    return resolved
  model = model.to_dict() if hasattr(model, 'to_dict') else dict(model)
  source = {k: v for k, v in (source or {}).items() if v is not None}  # a field the source leaves unset says nothing
  conflicts = [f for f in common.ARCHITECTURE_FIELDS
               if model.get(f) is not None and f in source and source[f] != model[f]]
  if conflicts:
    where = _source_file(path)
    details = ', '.join(f'model.{f}={model[f]!r} (checkpoint: {source[f]!r})' for f in conflicts)
    raise errors.ConfigError(
        f'config.init_from={path} holds a different architecture than the config asks for: {details}, from {where}. '
        f'Leave these fields unset (no SIZE in the variant, no --config.model.{conflicts[0]}=...) to take the '
        f"checkpoint's, or set config.init_from to a checkpoint of that architecture.")
  unset = [f for f in common.ARCHITECTURE_FIELDS if model.get(f) is None]
  if not unset:
    return config
  taken = {f: source[f] for f in unset if f in source}
  filled = {**taken, **common.default_architecture({**model, **taken})}
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.model = ml_collections.ConfigDict({**model, **filled})
  if taken:
    logging.info('config.model architecture from %s: %d layers, hidden %d, vocab %d.', _source_file(path),
                 resolved.model.num_layers, resolved.model.hidden_size, resolved.model.vocab_size)
  return resolved


def _names(tree: Any) -> set:
  return set(traverse_util.flatten_dict(dict(tree), sep='/'))


def classifier_pooler_from_nsp_head(source: Mapping[str, Any], source_name: str = 'the source') -> Dict[str, Any]:
  """`source` params with the encoder's pooler ('bert/pooler') replaced by the next-sentence head's dense layer
  ('nsp_head/pooler_dense'), as Model Garden's `sentence_prediction` task does with `init_cls_pooler=True`: a
  classifier fine-tuned from a BertPretrainerV2 checkpoint then starts its [CLS] dense + tanh from the one NSP
  pretraining trained (the encoder's own pooler is not trained by it). Our classifier's pooler is the encoder's,
  so the mapping is bert/pooler <- nsp_head/pooler_dense; the rest of `source` is returned unchanged.
  """
  nsp = source.get('nsp_head')
  if not isinstance(nsp, Mapping) or 'pooler_dense' not in nsp:
    found = sorted(nsp) if isinstance(nsp, Mapping) else 'no nsp_head'
    raise errors.ConfigError(
        f'{source_name} has no nsp_head/pooler_dense (found: {found}): init_cls_pooler=True needs a Model '
        f'Garden-style next-sentence head (config.model.nsp_head="classification_head", e.g. a converted '
        f'BertPretrainerV2 checkpoint). Set --config.init_cls_pooler=False.')
  bert = dict(source.get('bert', {}))
  bert['pooler'] = {k: nsp['pooler_dense'][k] for k in ('kernel', 'bias')}
  return {**source, 'bert': bert}


def describe(info: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None) -> str:
  """One phrase naming weights (an `Info`, with the params' `metadata` when known): 'best/ at step N (PATH)',
  'checkpoint N of WORKDIR', 'init_from PATH (step N)' (or '... converted from FORMAT PATH'), 'random'."""
  kind, path, step = info.get('source'), str(info.get('path') or ''), info.get('step')
  at = f' at step {step}' if step is not None else ''
  if kind == 'random' or not path:
    return 'random initial weights'
  if kind == 'checkpoint' or (kind != 'best' and os.path.isdir(os.path.join(path, 'checkpoints'))):
    return f'checkpoint {step} of {path} (its latest)'
  if kind == 'best' or os.path.basename(path.rstrip('/')) == BEST_DIR:
    return f'{BEST_DIR}/{at} ({path}: the best_on_dev parameters)'
  source = (metadata or {}).get('source')
  converted = (f', converted from {source.get("format")} {source.get("path")}'
               if isinstance(source, dict) and source.get('path') else '')
  return f'{"init_from " if kind == "init_from" else ""}{path}{at}{converted}'


def load_weights(target: Any, path: str, *, model_config: Optional[Mapping[str, Any]] = None,
                 keep: Optional[Sequence[str]] = None, init_fn: Optional[Callable[[], Any]] = None,
                 expect_complete: bool = False, init_cls_pooler: bool = False,
                 fresh_pooler: bool = False) -> Tuple[Dict[str, Any], Info]:
  """Copies the weights at `path` into `target`; returns (the merged parameters as numpy, where they came from).

  `target` is fresh parameters, or only their shapes (`jax.ShapeDtypeStruct` leaves) with `init_fn()` giving fresh
  parameters: a source that has every parameter then needs no initialiser (no compile). Every array the source
  shares with the target is loaded (shapes must agree, else ValueError naming the variable); the rest (a new head)
  keeps its initial value, with a warning when it is part of the encoder. With `expect_complete` (evaluating saved
  weights) a source without the model's head is refused (`core.errors.ConfigError`): scores or predictions from a
  random head would look like results. `keep` restricts the source to some top-level names (('bert',): the encoder
  only). `model_config` (config.model) is compared with the source's on the fields shapes cannot show.
  `init_cls_pooler` starts the pooler from the source's next-sentence head (`classifier_pooler_from_nsp_head`);
  else `fresh_pooler` leaves the target's own (Model Garden's BertClassifier(use_encoder_pooler=False): a new
  dense + tanh on [CLS], TruncatedNormal(initializer_range)) instead of loading the source's pooler.
  """
  from core import params_io  # orbax: only runs that load weights pay its import

  source, metadata = params_io.read_pretrained(path)
  if init_cls_pooler:
    source = classifier_pooler_from_nsp_head(source, path)
  elif fresh_pooler:
    source = {**source, 'bert': {k: v for k, v in source.get('bert', {}).items() if k != 'pooler'}}
  if keep is not None:
    source = {k: v for k, v in source.items() if k in keep}
  source_model = metadata.get('model') or source_model_config(path) or {}
  if model_config is not None:
    for field in _NUMERIC_FIELDS:
      if field in source_model and field in model_config and source_model[field] != model_config[field]:
        logging.warning('%s was made with model.%s=%r but this model uses %r: its outputs will differ from the '
                        "source model's (config.model=None takes the source's architecture).", path, field,
                        source_model[field], model_config[field])
  missing = _names(target) - _names(source)
  heads = sorted(n for n in missing if not n.startswith('bert/'))
  if expect_complete and heads:
    raise errors.ConfigError(
        f'{path} has no {", ".join(heads)}: it holds an encoder without this task\'s head (a pretraining run or a '
        f'converted checkpoint), so evaluating or predicting would use a RANDOM head. Fine-tune first (mode=train '
        f'with --config.init_from={path}), then evaluate or predict in that run\'s workdir.')
  is_abstract = all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(target))
  if is_abstract:
    complete = not missing
    if not complete and init_fn is None:
      raise ValueError(f'{path} lacks some parameters of the model and no initialiser was given.')
    target = (jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), target) if complete else
              jax.device_get(init_fn()))
  merged, report = params_io.merge_params(jax.device_get(target), source, source_name=path)
  step = metadata.get('step')
  info = {'source': 'init_from', 'path': os.path.abspath(path), 'step': None if step is None else int(step)}
  logging.info('Weights: %s (%d arrays loaded; kept the initial value of %d: %s; unused in the source: %s).',
               describe(info, metadata), len(report['loaded']), len(report['kept_init']),
               report['kept_init'] or 'none', report['unused'] or 'none')
  fresh = [n for n in report['kept_init'] if expect_complete or (n.startswith('bert/') and not (
      fresh_pooler and n.startswith('bert/pooler/')))]
  if fresh:
    logging.warning('%s has no %s: those keep their RANDOM initial value%s.', path, fresh,
                    ' (a pretrained, not a fine-tuned, checkpoint?)' if expect_complete else '')
  return merged, info


class InitFromLoader:
  """`params -> params` for `core.setup.setup_training`: the weights at `config.init_from` copied into fresh
  parameters. `config.init_heads=False` (fine-tuning) takes only the encoder ('bert'); `config.init_cls_pooler`
  starts the pooler from the source's next-sentence head (Model Garden's option of that name). `info` says where
  they came from once it has run."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.path = config.init_from
    self.model_config = config.model
    self.keep = None if config.get('init_heads', True) else ('bert',)
    self.init_cls_pooler = bool(config.get('init_cls_pooler', False))
    pooler = config.get('classifier_pooler') or 'encoder'  # GLUE: configs/recipes.py CLASSIFIER_POOLER
    if pooler not in ('encoder', 'fresh'):
      raise errors.ConfigError(f"config.classifier_pooler={pooler!r}: use 'encoder' (init_from's pooler) or 'fresh'.")
    # Fresh only beside a fresh task head (init_heads=False): a loaded head keeps the pooler it was trained with.
    self.fresh_pooler = pooler == 'fresh' and self.keep is not None
    self.info: Info = {}

  def __call__(self, params: Any) -> Any:
    merged, self.info = load_weights(params, self.path, model_config=self.model_config, keep=self.keep,
                                     init_cls_pooler=self.init_cls_pooler, fresh_pooler=self.fresh_pooler)
    return merged


def init_from_loader(config: ml_collections.ConfigDict) -> Optional[InitFromLoader]:
  """The loader of `config.init_from`, or None when it is empty (random initialisation)."""
  return InitFromLoader(config) if config.get('init_from') else None


def _best_steps_in_results(workdir: str) -> Tuple[str, set]:
  """(path of the run's results file, the steps of the best parameters its evaluators' sections name)."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return path, set()
  with open(path) as f:
    try:
      results = json.load(f)
    except json.JSONDecodeError as e:
      raise errors.DataError(f'{path} is not valid JSON ({e}): it is damaged. Rerun the training command to resume: '
                             f'it rewrites {RESULTS_FILE}; then evaluate or predict.') from None
  steps = set()
  for section in results.values():
    best = section.get('best_on_dev') if isinstance(section, dict) else None
    if isinstance(best, dict) and best.get('step') is not None:
      steps.add(int(best['step']))
  return path, steps


def evaluation_source(config: ml_collections.ConfigDict, workdir: str) -> Tuple[str, str]:
  """(kind, path) of the weights eval/predict score: workdir/best, the workdir's latest checkpoint, else
  config.init_from. The run's own weights come first, as in `core.setup`, so that rerunning a training command
  with --config.mode=eval scores what that run trained rather than its starting point. An `init_from` that is
  another run's workdir (with its results.json) is read by the same rules: its best/, else its latest checkpoint
  (a run on a read-only share is scored from a writable workdir that way; `core.app.config_for_run`).

  When the run's results.json names best parameters, they are the only source: a missing best/, or a best/ of
  another step than results.json says, is an error rather than a silent switch to another source.
  """
  from core import params_io  # orbax: only runs that load weights pay its import

  best_dir = os.path.join(workdir, BEST_DIR)
  results_path, named = _best_steps_in_results(workdir)
  if params_io.has_params(best_dir):  # also the complete copy a crash inside save_params' swap left
    saved = params_io.load_params_metadata(best_dir).get('step')
    if named and saved not in named:
      raise errors.DataError(
          f'{best_dir} holds the parameters of step {saved} but {results_path} names step '
          f'{", ".join(map(str, sorted(named)))} (the run stopped between saving them and recording them). Rerun '
          f'the training command to resume: it brings {RESULTS_FILE} up to date; then evaluate or predict.')
    return 'best', best_dir
  if named:
    raise errors.MissingFileError(
        f'{results_path} names the best parameters of step {", ".join(map(str, sorted(named)))} in {best_dir}, but '
        f'{best_dir} is missing. Scores or predictions from any other source would not be the ones {RESULTS_FILE} '
        f'reports. Evaluate another source explicitly instead: a new --workdir with '
        f'--config.init_from={os.path.join(workdir, "checkpoints")} (its latest checkpoint) or a params directory.')
  if _has_checkpoint(workdir):
    return 'checkpoint', workdir
  init_from = config.get('init_from')
  if init_from and os.path.exists(os.path.join(init_from, RESULTS_FILE)) and os.path.abspath(init_from) != \
      os.path.abspath(workdir):
    kind, path = evaluation_source(ml_collections.ConfigDict({'init_from': ''}), init_from)
    return ('init_from' if kind == 'checkpoint' else kind), path
  if init_from:
    return 'init_from', init_from
  raise errors.MissingFileError(
      f'Nothing to evaluate: {workdir} has no {BEST_DIR}/ or checkpoints/, and config.init_from is empty. Train '
      f'first, or set config.init_from to fine-tuned parameters.')


def load_for_evaluation(model: Any, config: ml_collections.ConfigDict, workdir: str, mesh: Any, rng: jax.Array,
                        example_batch: Mapping[str, np.ndarray]) -> Tuple[Any, Any, Info]:
  """The parameters eval/predict score (`evaluation_source`), merged into `model`'s parameter tree and placed on
  `mesh` with `config.param_sharding_rules`; returns (params, their shardings, where they came from)."""
  from core import sharding as sharding_lib

  kind, path = evaluation_source(config, workdir)
  shapes = jax.eval_shape(model.init_params, rng, example_batch)
  params, info = load_weights(shapes, path, model_config=config.model, expect_complete=True,
                              init_fn=lambda: jax.jit(model.init_params)(rng, example_batch))
  info['source'] = kind
  rules = tuple(tuple(r) for r in config.get('param_sharding_rules', ()))
  shardings = sharding_lib.param_shardings(params, mesh, rules)
  return jax.device_put(params, shardings), shardings, info
