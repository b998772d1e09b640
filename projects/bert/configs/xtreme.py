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

Retrieval (TASK bucc or tatoeba; `[,SIZE][,runlocal]`): no training (num_train_steps 0); the `xtreme_retrieval`
evaluator scores init_from's encoder with XTREME's baseline protocol (xtreme's third_party/evaluate_retrieval.py:
sentence embeddings = one intermediate layer's outputs mean-pooled over the real tokens, cosine similarity):

  python -m projects.bert.datasets.prepare xtreme --task=bucc --xtreme_dir=XTREME_DIR \
      --vocab_file=mbert/vocab.txt --output_dir=data/xtreme          # max_seq_length 512, run_bucc2018.sh's MAXL
  python main.py --config=projects/bert/configs/xtreme.py:bucc --workdir=/tmp/bucc --config.init_from=/tmp/mbert
  python main.py --config=projects/bert/configs/xtreme.py:tatoeba --workdir=/tmp/tatoeba --config.init_from=/tmp/mbert

Layer (`evals.xtreme_retrieval.layer`): xtreme's --specific_layer 7 for 12-layer models, counted from 0 over the
transformer layers (the output of the 8th layer; Hugging Face's hidden_states[8]); -1 (the default) = 7 for 12 layers
and floor(7 * L / 12) for L layers (6: 3, 24: 14). Pooling 'mean' (xtreme's default and run_tatoeba.sh's; its
run_bucc2018.sh passes --pool_type cls, which 'cls' reproduces). BUCC: ratio-margin mining (k = 4), the threshold
chosen on each language's dev gold and applied to its test candidates; dev F1 is optimistic (threshold chosen on it),
test F1 needs the withheld gold (`labels_dir`). Tatoeba: each source sentence's nearest English line; accuracy needs
`labels_dir` (xtreme's download sorts the English side). Both write
workdir/submission/{bucc2018,tatoeba}/test-{lang}.tsv.
"""

import ml_collections

from projects.bert.configs import training, variants
from projects.bert.models import architecture
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
    'evals.xtreme_retrieval.task': 'XTREME retrieval task: bucc2018 or tatoeba',
    'evals.xtreme_retrieval.data_dir': 'the --output_dir of `prepare xtreme` (its retrieval records)',
    'evals.xtreme_retrieval.languages': "languages scored ('' = every language with records)",
    'evals.xtreme_retrieval.xtreme_dir': "the download folder of the sentences ('' = the records' meta data's)",
    'evals.xtreme_retrieval.layer': 'transformer layer embedded, from 0 (xtreme: 7 of 12); -1 = floor(7 * L / 12)',
    'evals.xtreme_retrieval.pooling': "'mean' over the real tokens (xtreme's default) or 'cls' (first token)",
    'evals.xtreme_retrieval.batch_size': 'global batch of the embedding pass (sentences sorted by length)',
    'evals.xtreme_retrieval.block': 'rows per block of the k-NN search ([block, block] similarities at a time)',
    'evals.xtreme_retrieval.labels_dir': "test gold in evaluate.py's label layout ({task}/test-{lang}.tsv; '' = none)",
    'evals.xtreme_retrieval.dir': 'where the submission folder goes (default workdir/submission)',
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
  config.dataset = training.finetuning_dataset(task.name, 'data/xtreme', max_seq_length, languages='')
  training.finetuning_optimization(config, recipe, batch, epochs, base_lr, 0.1)
  config.init_cls_pooler = False

  config.mode = 'train'  # 'train', 'eval' (per-language dev scores of the saved weights) or 'predict'
  config.evals = ml_collections.ConfigDict({
      'xtreme': {'every': EVAL_EVERY[task.name], 'save_best': True, 'languages': ''}})
  if 'predict' in variant.flags:  # the submission files when training ends
    config.evals.xtreme_predict = predict_eval()
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)
  return config


def retrieval_eval(task_name: str, data_dir: str = 'data/xtreme') -> ml_collections.ConfigDict:
  """`config.evals.xtreme_retrieval`: XTREME's retrieval baseline on `task_name`'s records (fields: FIELD_DOCS)."""
  return ml_collections.ConfigDict({
      'task': xtreme_tasks.get_task(task_name).name, 'data_dir': data_dir, 'languages': '', 'xtreme_dir': '',
      'layer': -1, 'pooling': 'mean', 'batch_size': 256, 'block': 8192, 'labels_dir': '', 'dir': 'submission'})


def _retrieval_config(task: xtreme_tasks.XtremeTask, variant: variants.Variant) -> ml_collections.ConfigDict:
  """BUCC, Tatoeba: no fine-tuning; the encoder of init_from (SIZE: a random one) scored once (`xtreme_retrieval`)."""
  config = training.run_head(model_name='bert_encoder')
  config.model = architecture.model_config(variant.size) if variant.size else None  # None: init_from's
  training.init(config)
  config.num_train_steps = 0  # an evaluation of the initial weights
  config.evals = ml_collections.ConfigDict({'xtreme_retrieval': retrieval_eval(task.name)})
  if 'runlocal' in variant.flags:
    config.model = architecture.model_config('tiny')
    config.evals.xtreme_retrieval.update(batch_size=16, block=256)
  return config


# Task kind -> the function that writes its config. Each kind has its builder, model head and evaluators.
KIND_CONFIGS = {xtreme_tasks.SENTENCE_PAIR: _pair_config,
                xtreme_tasks.BITEXT_MINING: _retrieval_config,
                xtreme_tasks.SENTENCE_RETRIEVAL: _retrieval_config}


def get_config(arg: str = 'xnli') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  task = xtreme_tasks.get_task(variant.lead)
  config = KIND_CONFIGS[task.kind](task, variant)
  if 'runlocal' in variant.flags and task.is_trained:
    training.runlocal(config, 'xtreme', variant.recipe)
  return config
