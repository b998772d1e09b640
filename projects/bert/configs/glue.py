r"""GLUE fine-tuning. Variant: `TASK[,SIZE][,RECIPE][,predict][,runlocal]`, TASK one of cola, sst2, mrpc, qqp, stsb,
mnli, qnli, rte, wnli (AX is MNLI's test split), SIZE one of tiny, mini, small, medium, base, large (default: the
architecture of init_from's checkpoint, else base), RECIPE model_garden (default) or bert_paper.

  python -m projects.bert.datasets.prepare glue --task=mrpc --glue_dir=GLUE_DIR --vocab_file=VOCAB \
      --output_dir=data/glue --max_seq_length=128
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc \
      --config.init_from=/tmp/bert_base          # python -m projects.bert.checkpoints.convert output, or a pretraining workdir
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc --config.mode=eval
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc --config.mode=predict
  python main.py --config=projects/bert/configs/glue.py:mrpc,bert_paper --workdir=/tmp/mrpc_paper \
      --config.init_from=/tmp/bert_base

`mode`: 'train'; 'eval' scores the workdir's best/ (else its latest checkpoint, else init_from) on the dev sets
into workdir/eval_results.json; 'predict' writes the GLUE submission files of the test splits into
workdir/predictions/. Eval and predict use the training run's config.json: no other flag is needed, and it is not
rewritten. `,predict` also writes the submission files when training ends (the `glue_predict` evaluator).

What is reported (results.json, `glue` section): `final`, the dev metrics after the last step, is the number the
BERT paper and TF Model Garden report per run; `best_on_dev`, the best evaluation by the task's main metric, is
selected on the same dev set (optimistic) and its parameters are kept in workdir/best/.

Both recipes (configs/recipes.py, where every value is traced to its source file) fine-tune with batch 32 for 3
epochs at sequence length 128, dropout 0.1, weight decay 0.01 (not on LayerNorm and biases), clipping at 1.0, a
warm-up over the first 10% of the steps and a linear decay to 0 from step 0:
  model_garden (default)  Model Garden's sentence_prediction experiment: peak learning rate 3e-5, polynomial
                          warm-up (0.9 x peak when it ends), AdamW with Keras bias correction (eps 1e-7);
  bert_paper              google-research/bert run_classifier.py: peak 2e-5 (the paper picks from {5e-5, 4e-5,
                          3e-5, 2e-5} on dev per task: override `--config.schedule.base_lr`), linear warm-up from 0,
                          AdamW without bias correction (eps 1e-6).
`init_from` must be set for a meaningful run: empty means random weights. The architecture comes with init_from
(the converter's metadata.json, or the pretraining run's config.json): leave SIZE out and set no
--config.model.hidden_size etc.; a SIZE or field that is set must agree with the checkpoint (else an error names the
field). Without init_from the size is SIZE, else base. `init_heads=False` makes the task head fresh.
`init_cls_pooler=True` starts the classifier's pooler (dense + tanh on [CLS]) from the checkpoint's next-sentence
head (Model Garden's option of that name, for BertPretrainerV2 checkpoints whose encoder pooler is untrained).

The task table (labels, regression or classification, metrics and the main one, splits, file names) is
`projects.bert.tasks.glue`. `runlocal` shrinks any variant to a few steps of the tiny model for a smoke
test.
"""

import ml_collections
from ml_collections import config_dict

from projects.bert.models import architecture as common
from projects.bert.configs import fields, recipes
from projects.bert.tasks import glue as glue_tasks

# Evaluate often enough for the learning curve (and best_on_dev) to show on the small tasks, rarely enough on the big
# ones (MNLI/QQP dev sets have 20k / 40k examples).
EVAL_EVERY = {'mnli': 2000, 'qqp': 2000, 'qnli': 1000, 'sst2': 500}
DEFAULT_EVAL_EVERY = 100


def predict_eval(weights: str = 'best') -> ml_collections.ConfigDict:
  """`config.evals.glue_predict`: the submission files of the test splits when a run ends, from the best_on_dev
  parameters ('best') or the last ones ('final')."""
  return ml_collections.ConfigDict({'weights': weights})


FIELD_DOCS = fields.GLUE  # what --print_config prints beside each field


def get_config(arg: str = 'mrpc') -> ml_collections.ConfigDict:
  parts = [p.strip() for p in arg.split(',') if p.strip()]
  task = glue_tasks.get_task(parts[0] if parts else 'mrpc')
  sizes = [p for p in parts[1:] if p in common.SIZES]
  unknown = [p for p in parts[1:] if p not in common.SIZES and p not in recipes.RECIPES
             and p not in ('predict', 'runlocal')]
  if unknown or len(sizes) > 1:
    raise ValueError(f'Variant {arg!r}: expected TASK[,SIZE][,RECIPE][,predict][,runlocal] with SIZE in '
                     f'{list(common.SIZES)} and RECIPE in {list(recipes.RECIPES)}.')
  size = sizes[0] if sizes else ''
  runlocal = 'runlocal' in parts
  recipe = recipes.recipe_of(parts)
  batch, epochs, base_lr, warmup_fraction = recipes.GLUE[recipe]

  config = ml_collections.ConfigDict()
  config.trainer_name = 'bert_trainer'
  config.dataset_name = 'bert_glue'
  config.model_name = 'bert_regression' if task.is_regression else 'bert_classification'
  config.recipe = recipe
  config.rng_seed = 0
  # The architecture fields a SIZE does not name (all of them without one) are None: init_from's, else base's. The
  # recipe's model fields apply where they are not the checkpoint's to give (hidden_act is: the weights' own).
  inherit = common.inherit_architecture(size)
  config.model = common.model_config(size or 'base', inherit=inherit,
                                     **{k: v for k, v in recipes.model_fields(recipe).items() if k not in inherit})
  config.model.num_labels = config_dict.placeholder(int)  # None: from the dataset's meta data (checked if set)

  config.dataset = ml_collections.ConfigDict()
  config.dataset.task = task.name
  config.dataset.data_dir = 'data/glue'  # the --output_dir of `prepare glue`
  # Explicit paths instead of data_dir's (e.g. the meta data and records of create_finetuning_data.py); the eval and
  # test files of the task's main split, or {split: path} in a config file.
  config.dataset.meta_data_file = ''
  config.dataset.train_file = ''
  config.dataset.eval_files = ''
  config.dataset.test_files = ''
  config.dataset.max_seq_length = 128  # checked against the records; 0 takes whatever they hold
  config.dataset.shuffle_buffer = 10_000
  config.dataset.seed = 0

  config.batch_size = batch
  config.eval_batch_size = 64
  config.num_epochs = epochs
  config.num_train_steps = 0  # > 0 overrides num_epochs; 0: ceil(num_epochs * train examples / batch_size)
  config.grad_accum_steps = 1

  config.optimizer = recipes.optimizer_config(recipe)
  config.schedule = recipes.schedule_config(recipe, base_lr, warmup_fraction=warmup_fraction)

  config.init_from = ''  # converted checkpoint (projects.bert.checkpoints.convert) or pretraining workdir; '' = random init
  config.init_heads = False  # take only the encoder from init_from: the task head starts fresh
  config.init_cls_pooler = False  # True: the pooler starts from init_from's nsp_head/pooler_dense (Model Garden)
  config.classifier_pooler = recipes.CLASSIFIER_POOLER[recipe]  # 'fresh' | 'encoder': init_from's pooler or not

  config.mode = 'train'  # 'train', 'eval' (dev scores of the saved weights) or 'predict' (submission files)
  # What the run measures (core.evaluators; projects/bert/evaluators): the dev metrics every `every` steps and after
  # the last one, keeping the best_on_dev parameters in workdir/best; `,predict` adds the submission files.
  config.evals = ml_collections.ConfigDict({
      'glue': {'every': EVAL_EVERY.get(task.name, DEFAULT_EVAL_EVERY), 'save_best': True}})
  if 'predict' in parts:
    config.evals.glue_predict = predict_eval()
  config.log_every = 50
  config.checkpoint_every = 1000
  # Fine-tuning checkpoints are for resuming only (the best parameters are kept apart in workdir/best): keep one.
  config.checkpoint = ml_collections.ConfigDict({'keep': 1, 'async_save': True, 'restore_input': True})
  config.param_sharding_rules = ()

  if runlocal:
    config.model = common.model_config('tiny', **recipes.model_fields(recipe))
    config.dataset.max_seq_length = 0
    config.dataset.shuffle_buffer = 100
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 10
    config.evals.glue.every = 5
    config.log_every = 5
    config.checkpoint_every = 5
  return config
