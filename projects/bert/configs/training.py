"""The fields every `bert_trainer` config has (pretraining, GLUE, SQuAD, few-shot), built here with their meanings.

A config file builds its run with these blocks, in this order, and adds its own fields between them:

  config = training.run_head(dataset_name='bert_glue', model_name='bert_classification', recipe=recipe)
  config.model = ...; config.dataset = ...
  training.batches(config, batch_size=32, eval_batch_size=64, num_train_steps=0, num_epochs=3.0)
  config.optimizer = recipes.optimizer_config(recipe); config.schedule = recipes.schedule_config(...)
  training.init(config, init_heads=False)
  config.mode = ...; config.evals = ...
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)
  FIELD_DOCS = training.field_docs({...the file's own fields...})

`field_docs` gives every field's meaning (what `--print_config` prints): DOCS below for the fields built here, the
recipes' for `optimizer.*` and `schedule.*` (configs/recipes.py), `projects.bert.models.architecture`'s for `model.*`,
and the config file's own for the rest.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import ml_collections
from ml_collections import config_dict

from projects.bert.configs import recipes
from projects.bert.models import architecture

# The meaning of each field built in this file.
DOCS: Dict[str, str] = {
    # run_head
    'trainer_name': "registry name of the trainer ('bert_trainer' for every run)",
    'dataset_name': 'registry name of the dataset builder: bert_pretraining, bert_glue, bert_squad, '
                    'bert_superglue, bert_xtreme or bert_xtreme_qa',
    'model_name': 'registry name of the model: bert_pretraining, bert_classification, bert_regression, '
                  'bert_question_answering, bert_encoder, bert_word_in_context, bert_multiple_choice, '
                  'bert_span_pair, bert_token_classification',
    'recipe': "'model_garden' (TF Model Garden, default), 'bert_paper' (google-research/bert) or 'scenic' (Scenic "
              "BERT): configs/recipes.py",
    'rng_seed': 'seed of parameter initialisation and dropout',
    'model': "None: the whole architecture of init_from's checkpoint",
    # batches
    'batch_size': 'global training batch (split over all devices of all hosts)',
    'eval_batch_size': 'global evaluation batch',
    'num_epochs': 'epochs over the train set when num_train_steps is 0',
    'num_train_steps': 'training steps (fine-tuning: 0 = from num_epochs; 0 without num_epochs: evaluate only)',
    'grad_accum_steps': 'micro-batches per step (gradient accumulation for large global batches)',
    # init
    'init_from': "weights to start from: a converted checkpoint (convert) or a run's workdir; '' = random",
    'init_heads': 'also take the heads from init_from (False: only the encoder, fresh task head)',
    # checkpointing
    'log_every': 'steps between progress lines (loss, steps/s, examples/s, ETA) and TensorBoard scalars (and a line '
                 'at least every 30 s)',
    'checkpoint_every': 'steps between checkpoints (also one at the end and on SIGTERM)',
    'checkpoint.keep': 'checkpoints kept on disk (the newest ones)',
    'checkpoint.async_save': 'write checkpoints in the background while training goes on',
    'checkpoint.restore_input': 'on resume also restore the input position (False after changing the input)',
    'param_sharding_rules': "((regex, 'fsdp'|'replicate'), ...): weights and optimizer moments sharded over data",
    # fine-tuning datasets (bert_glue, bert_xtreme)
    'dataset.eval_length_buckets': 'eval/test batches grouped by length, each padded only to the smallest of 16, 32, '
                                   '64, ..., max_seq_length holding its longest example (outputs back in file '
                                   'order; results as padded, logits within float32 rounding); False: every batch '
                                   'padded to max_seq_length',
    'dataset.train_length_buckets': 'train batches grouped by length (tf.data bucket_by_sequence_length within '
                                    'megabatches, as HF group_by_length / fairseq): the shuffled stream grouped by '
                                    'bucket within megabatches of train_megabatch batches (random order inside a '
                                    'bucket), cut into batches of batch_size whose order is shuffled, each padded '
                                    'only to the smallest of 16, 32, ..., max_seq_length holding its longest '
                                    'example; every example once per epoch, exact resume. On for GLUE (MiniLM '
                                    'at SST-2 lengths: runs 2.4-2.7x faster, dev scores over seeds within the '
                                    'padded runs\' mean +- std; benchmarks/README.md, length-bucketed training); off '
                                    'elsewhere until a seed table shows the same (SQuAD, SuperGLUE, XTREME), and '
                                    'for pretraining (full-length rows). False: Model Garden\'s padded random '
                                    'batches, step for step',
    'dataset.train_megabatch': 'global batches grouped together by train_length_buckets (at most one epoch\'s); '
                               'more: fewer padded tokens, batches less mixed in length',
    # every config's `evals` entries
    'evals.*.type': 'evaluator kind (default: the entry name)',
    'evals.*.every': 'steps between evaluations (0: only at the end)',
}


def run_head(model_name: str, dataset_name: str = '', recipe: str = '') -> ml_collections.ConfigDict:
  """A new config with trainer_name, dataset_name (when the run has one dataset), model_name, recipe (when the run
  follows one) and rng_seed."""
  config = ml_collections.ConfigDict()
  config.trainer_name = 'bert_trainer'
  if dataset_name:
    config.dataset_name = dataset_name
  config.model_name = model_name
  if recipe:
    config.recipe = recipe
  config.rng_seed = 0
  return config


def batches(config: ml_collections.ConfigDict, batch_size: int, eval_batch_size: int, num_train_steps: int,
            num_epochs: Optional[float] = None) -> None:
  """Sets batch_size, eval_batch_size, num_epochs (fine-tuning only), num_train_steps and grad_accum_steps (1)."""
  config.batch_size = batch_size
  config.eval_batch_size = eval_batch_size
  if num_epochs is not None:
    config.num_epochs = num_epochs
  config.num_train_steps = num_train_steps
  config.grad_accum_steps = 1


def init(config: ml_collections.ConfigDict, init_heads: Optional[bool] = None) -> None:
  """Sets init_from ('' = random initialisation) and, for runs with a task head, init_heads."""
  config.init_from = ''
  if init_heads is not None:
    config.init_heads = init_heads


def checkpointing(config: ml_collections.ConfigDict, log_every: int, checkpoint_every: int, keep: int) -> None:
  """Sets log_every, checkpoint_every, checkpoint (keep the newest `keep`, saved in the background, the input
  position restored on resume) and param_sharding_rules (none: every weight replicated)."""
  config.log_every = log_every
  config.checkpoint_every = checkpoint_every
  config.checkpoint = ml_collections.ConfigDict({'keep': keep, 'async_save': True, 'restore_input': True})
  config.param_sharding_rules = ()  # e.g. ((r'.*', 'fsdp'),) to shard weights and moments over the data axis


def finetuning_model(size: str, recipe: str) -> ml_collections.ConfigDict:
  """`config.model` of a fine-tuning run: the architecture fields a SIZE does not name (all of them without one)
  are None, init_from's to give (else base's); the recipe's model fields apply where they are not the checkpoint's
  (hidden_act is: the weights' own); num_labels None: from the dataset's meta data (checked when set)."""
  inherit = architecture.inherit_architecture(size)
  model = architecture.model_config(
      size or 'base', inherit=inherit, **{k: v for k, v in recipes.model_fields(recipe).items() if k not in inherit})
  model.num_labels = config_dict.placeholder(int)
  return model


def finetuning_dataset(task: str, data_dir: str, max_seq_length: int = 128, train_length_buckets: bool = False,
                       **fields: object) -> ml_collections.ConfigDict:
  """`config.dataset` of a fine-tuning run on `prepare`'s output in `data_dir`: the task, `fields` (the builder's
  own), max_seq_length (checked against the records; 0 takes whatever they hold), shuffling, and whether train
  batches are grouped by length (on only where a seed table backs it: benchmarks/README.md, length-bucketed
  training)."""
  return ml_collections.ConfigDict({'task': task, 'data_dir': data_dir, **fields, 'max_seq_length': max_seq_length,
                                    'shuffle_buffer': 10_000, 'seed': 0,
                                    'train_length_buckets': train_length_buckets, 'train_megabatch': 50})


def finetuning_optimization(config: ml_collections.ConfigDict, recipe: str, batch_size: int, num_epochs: float,
                            base_lr: float, warmup_fraction: float) -> None:
  """Batches (eval 64; num_train_steps 0: ceil(num_epochs * train examples / batch_size), > 0 overrides it), the
  recipe's optimizer and schedule, and init_from taking only the encoder (the task head starts fresh)."""
  batches(config, batch_size=batch_size, eval_batch_size=64, num_train_steps=0, num_epochs=num_epochs)
  config.optimizer = recipes.optimizer_config(recipe)
  config.schedule = recipes.schedule_config(recipe, base_lr, warmup_fraction=warmup_fraction)
  init(config, init_heads=False)


def suite(trainer_name: str, data_dir: str, finetune: ml_collections.ConfigDict,
          sized: bool) -> ml_collections.ConfigDict:
  """The config of a suite (runs/): `tasks` ('all': every task whose records are in data_dir; or a comma list),
  `num_seeds` (runs use seeds 0 .. num_seeds - 1: rng_seed and the data order), `init_from` and `data_dir` (the
  checkpoint and the `prepare` output, references that `finetune` reads), and `finetune`: one fine-tuning config
  for every task, whose task and model the suite sets per run (`sized` False: the architecture of init_from)."""
  config = ml_collections.ConfigDict()
  config.trainer_name = trainer_name
  config.tasks = 'all'
  config.num_seeds = 3
  config.init_from = ml_collections.FieldReference('', field_type=str)
  config.data_dir = ml_collections.FieldReference(data_dir, field_type=str)
  if not sized:
    finetune.model = None
  finetune.dataset.task = ''  # set per run
  finetune.model_name = ''  # set per run
  finetune.init_from = config.get_ref('init_from')
  finetune.dataset.data_dir = config.get_ref('data_dir')
  config.finetune = finetune
  return config


def runlocal(config: ml_collections.ConfigDict, evaluator: str, recipe: str = '',
             record_fields: Sequence[str] = ('max_seq_length',)) -> None:
  """`runlocal`'s shrinking of a fine-tuning config: the tiny model with `recipe`'s model fields (no recipe: the
  caller's model), 10 steps of batch 8, the evaluator `evaluator` and the logs every 5 steps, a small shuffle
  buffer, and `record_fields` of config.dataset set to 0 (taken from the records' meta data)."""
  if recipe:
    config.model = architecture.model_config('tiny', **recipes.model_fields(recipe))
  for field in record_fields:
    config.dataset[field] = 0
  config.dataset.shuffle_buffer = 100
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 10
  config.evals[evaluator].every = 5
  config.log_every = 5
  config.checkpoint_every = 5


def field_docs(own: Mapping[str, str]) -> Dict[str, str]:
  """Every field's meaning for a config built with these blocks: DOCS, the recipes' optimizer and schedule fields,
  `config.model`'s (architecture.field_docs), then the config file's `own` (which win)."""
  return {**DOCS, **recipes.OPTIMIZER_DOCS, **recipes.SCHEDULE_DOCS, **architecture.field_docs('model.'), **own}
