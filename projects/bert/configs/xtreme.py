r"""XTREME zero-shot cross-lingual runs of all nine tasks (retrieval: scoring only, no fine-tuning). Variant:
`TASK[,SIZE][,RECIPE][,predict][,runlocal]`,
TASK one of xnli, pawsx (sentence pairs), udpos, panx (tagging), xquad, mlqa, tydiqa (QA), bucc, tatoeba
(retrieval), SIZE one of tiny, mini, small, medium, base, large (default: the architecture of init_from's
checkpoint), RECIPE model_garden (default) or bert_paper.

  python -m projects.bert.datasets.prepare xtreme --task=xnli --xtreme_dir=XTREME_DIR \
      --vocab_file=mbert/vocab.txt --output_dir=data/xtreme          # cased: --do_lower_case=false (default)
  python main.py --config=projects/bert/configs/xtreme.py:xnli --workdir=/tmp/xnli \
      --config.init_from=/tmp/mbert   # `projects.bert.checkpoints.convert` output of multi_cased_L-12_H-768_A-12
  python main.py --config=projects/bert/configs/xtreme.py:xnli --workdir=/tmp/xnli --config.mode=eval
  python main.py --config=projects/bert/configs/xtreme.py:xnli --workdir=/tmp/xnli --config.mode=predict
  python -m projects.bert.datasets.prepare xtreme --task=panx --xtreme_dir=XTREME_DIR \
      --vocab_file=mbert/vocab.txt --output_dir=data/xtreme          # udpos likewise
  python main.py --config=projects/bert/configs/xtreme.py:panx,predict --workdir=/tmp/panx --config.init_from=/tmp/mbert

Protocol (google-research/xtreme): fine-tune once on the English training records (XNLI: MNLI train; PAWS-X: PAWS
train), then score the dev set of every language of the task in the same run (the `xtreme` evaluator: one results
entry per language and the language average, the main metric, in percent as evaluate.py reports them). Eval uses
the training run's config.json. 'predict' (and `,predict` when training ends: the `xtreme_predict` evaluator)
writes workdir/submission/{task}/test-{lang}.tsv, the leaderboard layout evaluate.py reads.

Tagging (UD-POS, PAN-X): `bert_token_classification` (dropout, then one dense layer on every WordPiece's output,
Model Garden's BertTokenClassifier) on tagging_data_lib's records (label -1 on non-first WordPieces, long sentences
split into sub-sentences); the `xtreme` evaluator joins sub-sentences back and scores whole sentences with seqeval
F1 (precision, recall) per language, as evaluate.py does for both tasks. Languages without dev data (UD-POS kk, th,
tl, yo) are named and skipped for dev scores, as xtreme's run_tag.py skips them, and predicted for the submission
(one tag per word, a blank line after each sentence).

Hyper-parameters of xtreme's scripts/train_xnli.sh and train_pawsx.sh for mBERT: learning rate 2e-5, batch 32 (8 x
4 gradient-accumulation steps), 5 epochs, max_seq_length 128; of train_udpos.sh and train_panx.sh: learning rate
2e-5, batch 32 (8 x 4), 10 epochs, max_seq_length 128, evaluated every save_steps (500 UD-POS, 1000 PAN-X). The
optimizer and schedule are the RECIPE's (configs/recipes.py: AdamW with weight decay 0.01, clipping at 1.0, linear
decay to 0, a 10% warm-up); xtreme's PyTorch scripts use HF AdamW without weight decay or warm-up, which
`--config.optimizer.weight_decay=0 --config.schedule.warmup_fraction=0` reproduces.

QA (xquad, mlqa, tydiqa; the `bert_xtreme_qa` builder, the `xtreme_qa` evaluator, the span head of SQuAD):
  python -m projects.bert.datasets.prepare xtreme --task=mlqa --xtreme_dir=XTREME_DIR \
      --vocab_file=mbert/vocab.txt --output_dir=data/xtreme      # S=384, doc_stride 128, questions cut at 64
  python main.py --config=projects/bert/configs/xtreme.py:mlqa,predict --workdir=/tmp/mlqa --config.init_from=/tmp/mbert
Trained on SQuAD v1.1 train (XQuAD, MLQA) or the English TyDiQA-GoldP train, the run decodes (SQuAD's n-best span
decoding) and scores every language in one evaluation: EM / F1 per language (MLQA with its per-language
normalisation), their language means ('average/f1', the main metric) and evaluate.py's task score 'average/metric'
= (mean EM + mean F1) / 2. Which split is scored (`evals.xtreme_qa.split`): MLQA 'dev' (7 languages; best_on_dev
selects on its average F1), XQuAD and TyDiQA 'test' (XQuAD's dev is English SQuAD; TyDiQA-GoldP has test only),
scored once at the end (`every` 0) without selection, as xtreme trains a fixed number of epochs and reports the
public test answers. `,predict` writes workdir/submission/{task}/test-{lang}.json ({question id: answer}) and, from
the test JSON's answers, `test_scores` in the results. Hyper-parameters of xtreme's scripts/train_qa.sh for mBERT:
learning rate 3e-5, batch 32 (4 x 8 gradient-accumulation steps), 3 epochs, max_seq_length 384, doc_stride 128,
max_query_length 64 (run_squad.py's default), n-best 20 and answers of at most 30 tokens; its warm-up is 500 steps
and weight decay 1e-4 (`--config.schedule.warmup_steps=500 --config.schedule.warmup_fraction=0
--config.optimizer.weight_decay=1e-4` reproduces them; the default is the RECIPE's, as for the pair tasks).

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

# Task names by kind (from the task table, not from the builders: a config loads
# no TensorFlow.
PAIR_TASKS = tuple(name for name, t in xtreme_tasks.XTREME_TASKS.items() if t.kind == xtreme_tasks.SENTENCE_PAIR)
TAGGING_TASKS = tuple(name for name, t in xtreme_tasks.XTREME_TASKS.items() if t.kind == xtreme_tasks.TAGGING)
QA_TASKS = tuple(name for name, t in xtreme_tasks.XTREME_TASKS.items() if t.kind == xtreme_tasks.SPAN_QA)
VARIANT = variants.Spec('xtreme.py', lead='TASK', lead_words=tuple(xtreme_tasks.XTREME_TASKS), lead_default='xnli',
                        lead_parse=lambda word: _task_name(word), sizes=True, recipes=True,
                        flags=('predict', 'runlocal'))
# xtreme's scripts/train_{xnli,pawsx}.sh for bert-base-multilingual-cased: (batch, epochs, learning rate, max length).
PAIR_HYPERPARAMETERS = {'xnli': (32, 5.0, 2e-5, 128), 'pawsx': (32, 5.0, 2e-5, 128)}
EVAL_EVERY = {'xnli': 2000, 'pawsx': 500}  # XNLI trains on MNLI's 393k pairs, PAWS-X on 49k
# xtreme's scripts/train_{udpos,panx}.sh for bert-base-multilingual-cased: (batch, epochs, learning rate, max length)
# and their --save_steps, the steps between evaluations.
TAGGING_HYPERPARAMETERS = {'udpos': (32, 10.0, 2e-5, 128), 'panx': (32, 10.0, 2e-5, 128)}
TAGGING_EVAL_EVERY = {'udpos': 500, 'panx': 1000}


def _task_name(word: str) -> str:
  task = xtreme_tasks.get_task(word)  # ValueError for unknown words: the variant parser lists the known ones
  if task.kind not in KIND_CONFIGS:
    runs = [name for name, t in xtreme_tasks.XTREME_TASKS.items() if t.kind in KIND_CONFIGS]
    raise ValueError(f'{word!r} is an XTREME {task.kind} task; this config runs {", ".join(runs)}.')
  return task.name


FIELD_DOCS = training.field_docs({
    'mode': "'train'; 'eval' (per-language dev scores of the saved weights); 'predict' (submission files)",
    'model.num_labels': "classes per example (pairs) or per token (tagging); None: from the dataset's meta data "
                        "(checked when set)",
    'dataset.task': f'XTREME task: {", ".join(PAIR_TASKS)} (sentence pairs), {", ".join(TAGGING_TASKS)} (tagging) '
                    f'or {", ".join(QA_TASKS)} (span QA, bert_xtreme_qa)',
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
    'dataset.doc_stride': 'QA: stride of the paragraph windows, checked against the records (0: from them)',
    'dataset.max_query_length': 'QA: question tokens kept, checked against the records (0: from them)',
    'evals.xtreme_qa.split': "QA: the split whose languages are scored, 'dev' or 'test'",
    'evals.xtreme_qa.save_best': 'QA: keep the best_on_dev parameters (by the language average F1) in workdir/best',
    'evals.xtreme_qa.languages': "QA: languages scored ('' = every one of the split)",
    'evals.xtreme_qa.n_best_size': 'QA: start and end candidates decoded per window',
    'evals.xtreme_qa.max_answer_length': 'QA: longest answer in tokens',
    'evals.xtreme_qa_predict.weights': "QA submission files from 'best' (best_on_dev) or 'final' parameters",
    'evals.xtreme_qa_predict.languages': "QA test languages predicted ('' = every one the dataset has)",
    'evals.xtreme_qa_predict.dir': 'where the submission folder goes (default workdir/submission)',
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


def _zero_shot_run(task: xtreme_tasks.XtremeTask, variant: variants.Variant, model_name: str,
                   hyperparameters: tuple, eval_every: int) -> ml_collections.ConfigDict:
  """A fine-tuning run on `bert_xtreme` records: `model_name` trained on English with (batch, epochs, learning
  rate, max length), the `xtreme` evaluator every `eval_every` steps (and `xtreme_predict` with `,predict`)."""
  size, recipe = variant.size, variant.recipe
  batch, epochs, base_lr, max_seq_length = hyperparameters

  config = training.run_head(dataset_name='bert_xtreme', recipe=recipe, model_name=model_name)
  # The architecture comes with init_from (mBERT converted, cased); the task head starts fresh.
  config.model = training.finetuning_model(size, recipe)
  # `prepare xtreme`'s --output_dir; languages '' = every language prepared ('en,de' to read fewer).
  config.dataset = training.finetuning_dataset(task.name, 'data/xtreme', max_seq_length, languages='',
                                               eval_length_buckets=True)
  training.finetuning_optimization(config, recipe, batch, epochs, base_lr, 0.1)

  config.mode = 'train'  # 'train', 'eval' (per-language dev scores of the saved weights) or 'predict'
  config.evals = ml_collections.ConfigDict({'xtreme': {'every': eval_every, 'save_best': True, 'languages': ''}})
  if 'predict' in variant.flags:  # the submission files when training ends
    config.evals.xtreme_predict = predict_eval()
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)
  return config


def _pair_config(task: xtreme_tasks.XtremeTask, variant: variants.Variant) -> ml_collections.ConfigDict:
  """XNLI, PAWS-X: sentence-pair classification on [CLS] (the `bert_xtreme` builder, the `xtreme` evaluator)."""
  config = _zero_shot_run(task, variant, 'bert_classification', PAIR_HYPERPARAMETERS[task.name],
                          EVAL_EVERY[task.name])
  config.init_cls_pooler = False
  return config


def _tagging_config(task: xtreme_tasks.XtremeTask, variant: variants.Variant) -> ml_collections.ConfigDict:
  """UD-POS, PAN-X: a label per word at its first WordPiece (`bert_xtreme` tagging records, the
  `bert_token_classification` head, the `xtreme` evaluator's seqeval scores over whole sentences)."""
  return _zero_shot_run(task, variant, 'bert_token_classification', TAGGING_HYPERPARAMETERS[task.name],
                        TAGGING_EVAL_EVERY[task.name])


# xtreme's scripts/train_qa.sh for bert-base-multilingual-cased: batch, epochs, learning rate, S, stride, query.
QA_HYPERPARAMETERS = (32, 3.0, 3e-5, 384, 128, 64)
# The split `xtreme_qa` scores (see the module docstring) and how often: test splits once, at the end.
QA_EVAL = {'xquad': ('test', 0), 'mlqa': ('dev', 2000), 'tydiqa': ('test', 0)}


def _qa_config(task: xtreme_tasks.XtremeTask, variant: variants.Variant) -> ml_collections.ConfigDict:
  """XQuAD, MLQA, TyDiQA-GoldP: SQuAD span extraction (the `bert_xtreme_qa` builder, the `xtreme_qa` evaluator)."""
  batch, epochs, base_lr, max_seq_length, doc_stride, max_query_length = QA_HYPERPARAMETERS
  config = training.run_head(dataset_name='bert_xtreme_qa', recipe=variant.recipe,
                             model_name='bert_question_answering')
  config.model = training.finetuning_model(variant.size, variant.recipe)  # the span head starts fresh
  config.dataset = training.finetuning_dataset(task.name, 'data/xtreme', max_seq_length, languages='',
                                               doc_stride=doc_stride, max_query_length=max_query_length,
                                               eval_length_buckets=False)  # span_qa.EVAL_LENGTH_BUCKETS: why
  training.finetuning_optimization(config, variant.recipe, batch, epochs, base_lr, 0.1)
  config.mode = 'train'  # 'train', 'eval' (per-language scores of the saved weights) or 'predict'
  split, every = QA_EVAL[task.name]
  config.evals = ml_collections.ConfigDict({'xtreme_qa': {
      'every': every, 'split': split, 'save_best': split == 'dev', 'languages': '', 'n_best_size': 20,
      'max_answer_length': 30}})
  if 'predict' in variant.flags:  # the submission files (and test scores) when training ends
    config.evals.xtreme_qa_predict = predict_eval()
  training.checkpointing(config, log_every=100, checkpoint_every=1000, keep=1)
  if 'runlocal' in variant.flags:  # take the window lengths from the records, as max_seq_length
    config.dataset.doc_stride = config.dataset.max_query_length = 0
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
                xtreme_tasks.TAGGING: _tagging_config,
                xtreme_tasks.SPAN_QA: _qa_config,
                xtreme_tasks.BITEXT_MINING: _retrieval_config,
                xtreme_tasks.SENTENCE_RETRIEVAL: _retrieval_config}


def get_config(arg: str = 'xnli') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  task = xtreme_tasks.get_task(variant.lead)
  config = KIND_CONFIGS[task.kind](task, variant)
  if 'runlocal' in variant.flags and task.is_trained:  # retrieval configs shrink themselves
    training.runlocal(config, next(iter(config.evals)), variant.recipe)  # the task kind's scoring evaluator
  return config
