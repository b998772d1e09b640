r"""SuperGLUE fine-tuning. Variant: `TASK[,SIZE][,RECIPE][,predict][,runlocal]`, TASK one of boolq, cb, copa,
multirc, record, rte, wic, wsc (the RTE run also scores and predicts AX-b and AX-g: see `mode`), SIZE one of tiny,
mini, small, medium, base, large (default: the architecture of init_from's checkpoint, else base), RECIPE
model_garden (default) or bert_paper.

  python -m projects.bert.datasets.prepare superglue --task=all --superglue_dir=SUPERGLUE_DIR --vocab_file=VOCAB \
      --output_dir=data/superglue --max_seq_length=128
  python main.py --config=projects/bert/configs/superglue.py:rte --workdir=/tmp/rte \
      --config.init_from=/tmp/bert_base   # `projects.bert.checkpoints.convert` output, a pretraining or an MNLI workdir
  python main.py --config=projects/bert/configs/superglue.py:rte --workdir=/tmp/rte --config.mode=eval
  python main.py --config=projects/bert/configs/superglue.py:rte --workdir=/tmp/rte --config.mode=predict

`mode`: 'train'; 'eval' scores the workdir's best/ (else its latest checkpoint) on the dev split; 'predict' writes
the task's leaderboard file into workdir/submission/ (`superglue_predict`). `,predict` also writes it when training
ends. An RTE run also scores AX-b and AX-g after its last step (evals superglue_axb / superglue_axg, never selecting
weights) and writes RTE.jsonl, AX-b.jsonl and AX-g.jsonl when it ends and in mode 'predict': prepare axb and axg
into the same data_dir.

The model is the SuperGLUE paper's BERT formulation of the task's kind (Wang et al. 2019, section 5;
`models/superglue_heads.py`): bert_classification on [CLS] for BoolQ, CB, RTE and for MultiRC / ReCoRD rows (an
independent binary score each), bert_word_in_context for WiC, bert_multiple_choice for COPA, bert_span_pair for
WSC. The data is `bert_superglue` (the records of `prepare superglue`); the task facts (kind, labels, metrics, the
main one) are `projects.bert.tasks.superglue`.

What is reported (results.json, `superglue` section): the task's official metrics on its dev split and its score
(the mean of them, what best_on_dev selects on); `final`, after the last step, is the protocol number, as for GLUE
(configs/glue.py explains final and best_on_dev).

The recipe is GLUE's (configs/recipes.py: batch 32, 3 epochs, peak 3e-5 (Model Garden) or 2e-5 (BERT paper),
warm-up over 10%, linear decay), applied to a row (COPA: an example of two rows). `init_from` carries the
architecture: leave SIZE out; `init_heads=False` starts the task head fresh (a checkpoint's head is another task's).
`runlocal` shrinks any variant to a few steps of the tiny model for a smoke test.
"""

import ml_collections

from projects.bert.configs import recipes, training, variants
from projects.bert.models.superglue_heads import MODEL_OF_KIND
from projects.bert.tasks import superglue as sg

VARIANT = variants.Spec('superglue.py', lead='TASK', lead_words=tuple(sg.task_names()), lead_default='rte',
                        lead_parse=lambda word: sg.get_task(word).name, sizes=True, recipes=True,
                        flags=('predict', 'runlocal'))
# Evaluate often enough for the learning curve on the small tasks; rarely on ReCoRD (its dev set is 10k queries,
# about 140k rows) and MultiRC and BoolQ (about 5k and 3k).
EVAL_EVERY = {'record': 5000, 'multirc': 1000, 'boolq': 500}
DEFAULT_EVAL_EVERY = 100

# What --print_config prints beside each field: the common ones (configs/training.py) and these.
FIELD_DOCS = training.field_docs({
    'mode': "'train'; 'eval' (dev scores of the workdir's saved weights); 'predict' (the leaderboard file)",
    'model.num_labels': "classes of the head; None: from the dataset's meta data (2 for MultiRC / ReCoRD rows)",
    'dataset.task': f'SuperGLUE task: {", ".join(sg.task_names())}',
    'dataset.data_dir': 'the --output_dir of `prepare superglue`',
    'dataset.max_seq_length': 'sequence length, checked against the meta data (0: from it)',
    'dataset.shuffle_buffer': 'rows (COPA: examples) in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'evals.superglue.save_best': 'keep the best_on_dev parameters in workdir/best',
    'evals.superglue.split': "the labelled split scored (default: validation; a diagnostic's test)",
    'evals.superglue_predict.weights': "the leaderboard file from 'best' (best_on_dev) or 'final' parameters",
    'evals.superglue_predict.dir': 'where the leaderboard file goes (default workdir/submission)',
    **{f'evals.superglue_{d}.{field}': meaning for d in sg.DIAGNOSTIC_TASKS for field, meaning in (
        ('task', f'{d}: the diagnostic scored with this run\'s model'), ('save_best', 'False: never selects weights'))},
    **{f'evals.superglue_predict_{d}.{field}': meaning for d in sg.DIAGNOSTIC_TASKS for field, meaning in (
        ('task', f'{d}: the diagnostic predicted with this run\'s model'),
        ('weights', "from 'best' (best_on_dev) or 'final' parameters"))},
})


def get_config(arg: str = 'rte') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  task = sg.get_task(variant.lead)
  size, recipe, runlocal = variant.size, variant.recipe, 'runlocal' in variant.flags
  batch, epochs, base_lr, warmup_fraction = recipes.GLUE[recipe]

  config = training.run_head(dataset_name='bert_superglue', recipe=recipe, model_name=MODEL_OF_KIND[task.kind])
  config.model = training.finetuning_model(size, recipe)
  config.dataset = training.finetuning_dataset(task.name, 'data/superglue')  # `prepare superglue`'s --output_dir
  training.finetuning_optimization(config, recipe, batch, epochs, base_lr, warmup_fraction)

  config.mode = 'train'  # 'train', 'eval' (dev scores of the saved weights) or 'predict' (the leaderboard file)
  config.evals = ml_collections.ConfigDict({
      'superglue': {'every': EVAL_EVERY.get(task.name, DEFAULT_EVAL_EVERY), 'save_best': True}})
  if 'predict' in variant.flags or task.name == 'rte':
    config.evals.superglue_predict = ml_collections.ConfigDict({'weights': 'best'})
  for diagnostic in (t for t in sg.DIAGNOSTIC_TASKS if sg.get_task(t).predicted_with == task.name):
    # Scored and predicted with this run's model, as the benchmark prescribes (AX-b and AX-g with RTE's).
    config.evals[f'superglue_{diagnostic}'] = ml_collections.ConfigDict({
        'type': 'superglue', 'task': diagnostic, 'every': 0, 'save_best': False})
    config.evals[f'superglue_predict_{diagnostic}'] = ml_collections.ConfigDict({
        'type': 'superglue_predict', 'task': diagnostic, 'weights': 'best'})
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)

  if runlocal:
    training.runlocal(config, 'superglue', recipe)
  return config
