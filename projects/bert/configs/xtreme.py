r"""XTREME zero-shot cross-lingual fine-tuning of the sentence-pair tasks. Variant:
`TASK[,SIZE][,RECIPE][,predict][,runlocal]`,
TASK one of xnli, pawsx (the other XTREME tasks come with their own builders), SIZE one of tiny, mini, small,
medium, base, large (default: the architecture of init_from's checkpoint), RECIPE model_garden (default) or
bert_paper.

  python -m projects.bert.datasets.prepare xtreme --task=xnli --xtreme_dir=XTREME_DIR \
      --vocab_file=mbert/vocab.txt --output_dir=data/xtreme          # cased: --do_lower_case=false (default)
  python main.py --config=projects/bert/configs/xtreme.py:xnli --workdir=/tmp/xnli \
      --config.init_from=/tmp/mbert   # `projects.bert.checkpoints.convert` output of multi_cased_L-12_H-768_A-12
  python main.py --config=projects/bert/configs/xtreme.py:xnli --workdir=/tmp/xnli --config.mode=eval
  python main.py --config=projects/bert/configs/xtreme.py:xnli --workdir=/tmp/xnli --config.mode=predict

Protocol (google-research/xtreme): fine-tune once on the English training records (XNLI: MNLI train; PAWS-X: PAWS
train), then score the dev set of every language of the task in the same run (the `xtreme` evaluator: one results
entry per language and the language average, the main metric, in percent as evaluate.py reports them). Eval uses
the training run's config.json. 'predict' (and `,predict` when training ends: the `xtreme_predict` evaluator)
writes workdir/submission/{task}/test-{lang}.tsv, the leaderboard layout evaluate.py reads.

Hyper-parameters of xtreme's scripts/train_xnli.sh and train_pawsx.sh for mBERT: learning rate 2e-5, batch 32 (8 x
4 gradient-accumulation steps), 5 epochs, max_seq_length 128. The optimizer and schedule are the RECIPE's
(configs/recipes.py: AdamW with weight decay 0.01, clipping at 1.0, linear decay to 0, a 10% warm-up); xtreme's
PyTorch script uses HF AdamW without weight decay or warm-up, which `--config.optimizer.weight_decay=0
--config.schedule.warmup_fraction=0` reproduces.

mBERT conventions: the cased multilingual WordPiece vocabulary (119,547 tokens, no lower-casing; `prepare xtreme`
writes cased records by default and its meta data says so), and the architecture comes with init_from (the
converter's metadata.json): leave SIZE out. `init_from` empty means random weights (expect near-chance scores on
the other languages). `runlocal` shrinks any variant to a few steps of the tiny model for a smoke test.
"""

import ml_collections

from projects.bert.configs import training, variants
from projects.bert.tasks import xtreme as xtreme_tasks

# The tasks this config runs (bert_xtreme's): the sentence-pair ones. Not imported from the builder: a config loads
# no TensorFlow.
PAIR_TASKS = tuple(name for name, t in xtreme_tasks.XTREME_TASKS.items() if t.kind == xtreme_tasks.SENTENCE_PAIR)
VARIANT = variants.Spec('xtreme.py', lead='TASK', lead_words=PAIR_TASKS, lead_default='xnli',
                        lead_parse=lambda word: _task_name(word), sizes=True, recipes=True,
                        flags=('predict', 'runlocal'))
# xtreme's scripts/train_{xnli,pawsx}.sh for bert-base-multilingual-cased: (batch, epochs, learning rate, max length).
PAIR_HYPERPARAMETERS = {'xnli': (32, 5.0, 2e-5, 128), 'pawsx': (32, 5.0, 2e-5, 128)}
EVAL_EVERY = {'xnli': 2000, 'pawsx': 500}  # XNLI trains on MNLI's 393k pairs, PAWS-X on 49k


def _task_name(word: str) -> str:
  task = xtreme_tasks.get_task(word)  # ValueError for unknown words: the variant parser lists the known ones
  if task.kind not in KIND_CONFIGS:
    runs = [name for name, t in xtreme_tasks.XTREME_TASKS.items() if t.kind in KIND_CONFIGS]
    raise ValueError(f'{word!r} is an XTREME {task.kind} task; this config runs {", ".join(runs)}.')
  return task.name


FIELD_DOCS = training.field_docs({
    'mode': "'train'; 'eval' (per-language dev scores of the saved weights); 'predict' (submission files)",
    'model.num_labels': "classifier classes; None: from the dataset's meta data (checked when set)",
    'dataset.task': f'XTREME sentence-pair task: {", ".join(PAIR_TASKS)}',
    'dataset.data_dir': 'the --output_dir of `prepare xtreme`',
    'dataset.languages': "dev / test languages read ('' = every language the meta data lists)",
    'dataset.max_seq_length': 'sequence length, checked against the meta data (0: from it)',
    'dataset.shuffle_buffer': 'examples in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'init_cls_pooler': "start the classifier's pooler from init_from's nsp_head/pooler_dense (Model Garden)",
    'evals.xtreme.save_best': 'keep the best_on_dev parameters (by the language average) in workdir/best',
    'evals.xtreme.languages': "dev languages scored ('' = every one the dataset has)",
    'evals.xtreme_predict.weights': "submission files from 'best' (best_on_dev) or 'final' parameters",
    'evals.xtreme_predict.languages': "test languages predicted ('' = every one the dataset has)",
    'evals.xtreme_predict.dir': "where the submission folder goes (default workdir/submission)",
})


def predict_eval(weights: str = 'best') -> ml_collections.ConfigDict:
  """`config.evals.xtreme_predict`: the submission files of every test language when a run ends, from the
  best_on_dev parameters ('best') or the last ones ('final')."""
  return ml_collections.ConfigDict({'weights': weights, 'languages': '', 'dir': 'submission'})


def _pair_config(task: xtreme_tasks.XtremeTask, variant: variants.Variant) -> ml_collections.ConfigDict:
  """XNLI, PAWS-X: sentence-pair classification on [CLS] (the `bert_xtreme` builder, the `xtreme` evaluator)."""
  size, recipe = variant.size, variant.recipe
  batch, epochs, base_lr, max_seq_length = PAIR_HYPERPARAMETERS[task.name]

  config = training.run_head(dataset_name='bert_xtreme', recipe=recipe, model_name='bert_classification')
  # The architecture comes with init_from (mBERT converted, cased); the classifier head starts fresh.
  config.model = training.finetuning_model(size, recipe)
  # `prepare xtreme`'s --output_dir; languages '' = every language prepared ('en,de' to read fewer).
  config.dataset = training.finetuning_dataset(task.name, 'data/xtreme', max_seq_length, languages='',
                                               eval_length_buckets=True)
  training.finetuning_optimization(config, recipe, batch, epochs, base_lr, 0.1)
  config.init_cls_pooler = False

  config.mode = 'train'  # 'train', 'eval' (per-language dev scores of the saved weights) or 'predict'
  config.evals = ml_collections.ConfigDict({
      'xtreme': {'every': EVAL_EVERY[task.name], 'save_best': True, 'languages': ''}})
  if 'predict' in variant.flags:  # the submission files when training ends
    config.evals.xtreme_predict = predict_eval()
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)
  return config


# Task kind -> the function that writes its config. Each kind has its builder, model head and evaluators.
KIND_CONFIGS = {xtreme_tasks.SENTENCE_PAIR: _pair_config}


def get_config(arg: str = 'xnli') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  task = xtreme_tasks.get_task(variant.lead)
  config = KIND_CONFIGS[task.kind](task, variant)
  if 'runlocal' in variant.flags:
    training.runlocal(config, 'xtreme', variant.recipe)
  return config
