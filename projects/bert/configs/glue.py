r"""GLUE fine-tuning. Variant: `TASK[,SIZE][,RECIPE][,predict][,runlocal]`, TASK one of cola, sst2, mrpc, qqp, stsb,
mnli, qnli, rte, wnli (AX is MNLI's test split), SIZE one of tiny, mini, small, medium, base, large (default: the
architecture of init_from's checkpoint, else base), RECIPE model_garden (default) or bert_paper.

  python -m projects.bert.datasets.prepare glue --task=mrpc --glue_dir=GLUE_DIR --vocab_file=VOCAB \
      --output_dir=data/glue --max_seq_length=128
  python main.py --config=projects/bert/configs/glue.py:mrpc --workdir=/tmp/mrpc \
      --config.init_from=/tmp/bert_base   # `projects.bert.checkpoints.convert` output, or a pretraining workdir
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

from projects.bert.configs import recipes, training, variants
from projects.bert.tasks import glue as glue_tasks

# Evaluate often enough for the learning curve (and best_on_dev) to show on the small tasks, rarely enough on the big
# ones (MNLI/QQP dev sets have 20k / 40k examples).
EVAL_EVERY = {'mnli': 2000, 'qqp': 2000, 'qnli': 1000, 'sst2': 500}
DEFAULT_EVAL_EVERY = 100


def predict_eval(weights: str = 'best') -> ml_collections.ConfigDict:
  """`config.evals.glue_predict`: the submission files of the test splits when a run ends, from the best_on_dev
  parameters ('best') or the last ones ('final')."""
  return ml_collections.ConfigDict({'weights': weights, 'outputs': 'labels'})


# What --print_config prints beside each field: the common ones (configs/training.py) and these.
FIELD_DOCS = training.field_docs({
    'mode': "'train'; 'eval' (dev scores of the workdir's saved weights); 'predict' (GLUE submission files)",
    'model.num_labels': "GLUE head classes; None: from the dataset's meta data (checked when set)",
    'dataset.task': f'GLUE task: {", ".join(glue_tasks.task_names())}',
    'dataset.data_dir': 'the --output_dir of `prepare glue`',
    'dataset.meta_data_file': "explicit meta data path instead of data_dir's",
    'dataset.train_file': "explicit train records instead of data_dir's",
    'dataset.eval_files': "explicit dev records of the main split instead of data_dir's",
    'dataset.test_files': "explicit test records of the main split instead of data_dir's",
    'dataset.max_seq_length': 'sequence length, checked against the meta data (0: from it)',
    'dataset.shuffle_buffer': 'examples in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'init_cls_pooler': "start the classifier's pooler from init_from's nsp_head/pooler_dense (Model Garden)",
    'classifier_pooler': "classifier's pooler from init_from: 'encoder' (its pooler, BERT paper) or 'fresh' (new: "
                         "Model Garden's BertClassifier(use_encoder_pooler=False))",
    'evals.glue.save_best': 'keep the best_on_dev parameters in workdir/best',
    'evals.glue.splits': 'dev splits scored (default: every one)',
    'evals.glue_predict.weights': "submission files from 'best' (best_on_dev) or 'final' parameters",
    'evals.glue_predict.splits': 'test splits predicted (default: every one)',
    'evals.glue_predict.dir': 'where the submission files go (default workdir/predictions)',
    'evals.glue_predict.outputs': "'labels' (the submission files); 'probabilities' or 'logits': also DIR/OUTPUTS/ "
                                  "per split, one column per label",
})


VARIANT = variants.Spec('glue.py', lead='TASK', lead_words=tuple(glue_tasks.task_names()), lead_default='mrpc',
                        lead_parse=lambda word: glue_tasks.get_task(word).name, sizes=True, recipes=True,
                        flags=('predict', 'runlocal'))


def get_config(arg: str = 'mrpc') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  task = glue_tasks.get_task(variant.lead)
  size, recipe, runlocal = variant.size, variant.recipe, 'runlocal' in variant.flags
  batch, epochs, base_lr, warmup_fraction = recipes.GLUE[recipe]

  config = training.run_head(dataset_name='bert_glue', recipe=recipe,
                             model_name='bert_regression' if task.is_regression else 'bert_classification')
  config.model = training.finetuning_model(size, recipe)
  # data_dir: the --output_dir of `prepare glue`. Explicit paths instead of its (e.g. the meta data and records of
  # create_finetuning_data.py): the eval and test files of the task's main split, or {split: path} in a config file.
  # Train batches grouped by length: MiniLM runs 2.4-2.7x faster at SST-2 lengths, dev scores over seeds as padded
  # (benchmarks/README.md, length-bucketed training). False: Model Garden's padded random mixes, step for step.
  config.dataset = training.finetuning_dataset(task.name, 'data/glue', train_length_buckets=True, meta_data_file='',
                                               train_file='', eval_files='', test_files='', eval_length_buckets=True)
  # init_from: a converted checkpoint (projects.bert.checkpoints.convert) or a pretraining workdir.
  training.finetuning_optimization(config, recipe, batch, epochs, base_lr, warmup_fraction)
  config.init_cls_pooler = False  # True: the pooler starts from init_from's nsp_head/pooler_dense (Model Garden)
  config.classifier_pooler = recipes.CLASSIFIER_POOLER[recipe]  # 'fresh' | 'encoder': init_from's pooler or not

  config.mode = 'train'  # 'train', 'eval' (dev scores of the saved weights) or 'predict' (submission files)
  # What the run measures (core.evaluators; projects/bert/evaluators): the dev metrics every `every` steps and after
  # the last one, keeping the best_on_dev parameters in workdir/best; `,predict` adds the submission files.
  config.evals = ml_collections.ConfigDict({
      'glue': {'every': EVAL_EVERY.get(task.name, DEFAULT_EVAL_EVERY), 'save_best': True}})
  if 'predict' in variant.flags:
    config.evals.glue_predict = predict_eval()
  # Fine-tuning checkpoints are for resuming only (the best parameters are kept apart in workdir/best): keep one.
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)

  if runlocal:
    training.runlocal(config, 'glue', recipe)
  return config
