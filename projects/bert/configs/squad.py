r"""SQuAD fine-tuning. Variant: `VERSION[,SIZE][,runlocal]`, VERSION v1.1 or v2.0, SIZE one of tiny, mini, small,
medium, base, large (default: the architecture of init_from's checkpoint, else base).

  python -m projects.bert.datasets.prepare squad --train_file=train-v1.1.json --eval_file=dev-v1.1.json \
      --vocab_file=VOCAB --output_dir=data/squad_v1.1 --version_2_with_negative=false
  python main.py --config=projects/bert/configs/squad.py:v1.1 --workdir=/tmp/squad11 \
      --config.init_from=/tmp/bert_base   # `projects.bert.checkpoints.convert` output, or a pretraining workdir
  python main.py --config=projects/bert/configs/squad.py:v1.1 --workdir=/tmp/squad11 --config.mode=eval
  python main.py --config=projects/bert/configs/squad.py:v1.1 --workdir=/tmp/squad11 --config.mode=predict

The run is `bert_trainer` with the `bert_question_answering` model on `bert_squad` records. What it measures
(`config.evals`): `squad`, the official dev EM/F1 (v2.0 also HasAns / NoAns and the best null-score threshold)
every `every` steps and after the last one, keeping the parameters of the best dev F1 in workdir/best/; and
`squad_predict`, which writes predictions.json (v2.0 also null_odds.json) in the official format into
workdir/predictions/ when training ends. `mode`: 'train'; 'eval' scores workdir/best (else its latest checkpoint,
else init_from) into workdir/eval_results.json; 'predict' writes the prediction files of those weights (and
predict_results.json). Eval and predict use the training run's config.json: to decode with another v2.0 threshold,
predict into a new workdir with --config.init_from=WORKDIR/best and
--config.evals.squad.null_score_diff_threshold=T (squad_predict decodes as the `squad` entry says).

Defaults follow the BERT paper's SQuAD recipe (Devlin et al., 2019, sections 4.2-4.3, and google-research/bert's
run_squad.py): v1.1 batch 32, 3 epochs; v2.0 batch 48, 2 epochs; peak learning rate 5e-5, linear warm-up over the
first 10% of the steps then linear decay to 0, AdamW as for GLUE (weight decay 0.01 except LayerNorm and biases,
eps 1e-6, no bias correction), gradient clipping at 1.0, dropout 0.1; sequence length 384, doc stride 128,
questions cut at 64 tokens (`prepare squad`'s defaults; the config takes the records' values); decoding with
the 20 best starts and ends and answers of at most 30 tokens, and for v2.0 a null-score threshold of 0 (the paper
tunes it on dev: the v2.0 headline f1 is at the best one, reported as best_threshold_for_f1; f1_as_predicted is
at this one). An epoch is one pass over the train features (windows), as Model Garden counts it. The main score is the
official F1. `init_from` must be set for a meaningful run.
`runlocal` shrinks any variant to a few steps of the tiny model for a smoke test.
"""

import ml_collections

from projects.bert.configs import recipes, training, variants
from projects.bert.models import architecture

# version -> (batch size, epochs) of the BERT paper (Devlin et al., 2019, sections 4.2 and 4.3).
RECIPE = {'v1.1': (32, 3.0), 'v2.0': (48, 2.0)}

# What --print_config prints beside each field: the common ones (configs/training.py) and these.
FIELD_DOCS = training.field_docs({
    'mode': "'train'; 'eval' (official dev EM/F1 of the saved weights); 'predict' (predictions.json etc.)",
    'dataset.version': "'v1.1' or 'v2.0' (questions without an answer), checked against the records",
    'dataset.data_dir': 'the --output_dir of `prepare squad`',
    'dataset.meta_data_file': "explicit meta data path instead of data_dir's",
    'dataset.train_file': "explicit train records instead of data_dir's",
    'dataset.max_seq_length': 'sequence length (0: the records\' value; else checked against them)',
    'dataset.doc_stride': 'stride of the paragraph windows (0: the records\' value; else checked against them)',
    'dataset.max_query_length': 'question tokens kept (0: the records\' value; else checked against them)',
    'dataset.shuffle_buffer': 'examples in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'dataset.eval_length_buckets': 'dev features grouped by length, each batch padded only to the smallest of 16, '
                                   '32, ..., max_seq_length holding its longest (False, the default: the n-best '
                                   'decoding ranks padding logits too, so a list can differ where a padding position '
                                   'past the bucket enters the top n_best_size; datasets/span_qa.py)',
    'evals.squad.save_best': 'keep the best dev F1 parameters in workdir/best',
    'evals.squad.n_best_size': 'start and end candidates decoded per window',
    'evals.squad.max_answer_length': 'longest answer in tokens',
    'evals.squad.null_score_diff_threshold': "v2.0: answer 'no answer' when its score beats the best span by more",
    'evals.squad_predict.weights': "prediction files from 'best' (best dev F1) or 'final' parameters",
})


VARIANT = variants.Spec('squad.py', lead='VERSION', lead_words=tuple(RECIPE), lead_default='v1.1', sizes=True,
                        flags=('runlocal',))


def get_config(arg: str = 'v1.1') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  version, size, runlocal = variant.lead, variant.size, 'runlocal' in variant.flags
  batch_size, epochs = RECIPE[version]

  # SQuAD's reference here is the BERT paper's run_squad.py (Model Garden's squad experiments differ per yaml).
  config = training.run_head(dataset_name='bert_squad', model_name='bert_question_answering', recipe='bert_paper')
  # The architecture fields a SIZE does not name (all of them without one) are None: init_from's, else base's.
  inherit = architecture.inherit_architecture(size)
  config.model = architecture.model_config(size or 'base', inherit=inherit, **{
      k: v for k, v in recipes.model_fields(config.recipe).items() if k not in inherit})

  config.dataset = ml_collections.ConfigDict()
  config.dataset.version = version
  config.dataset.data_dir = f'data/squad_{version}'  # the --output_dir of `prepare squad`
  config.dataset.meta_data_file = ''  # instead of data_dir's (the records are found beside it)
  config.dataset.train_file = ''  # e.g. the train records of upstream's create_finetuning_data.py
  # The records' lengths (0: what `prepare squad` wrote, by default the paper's 384 / 128 / 64); a value set here is
  # checked against them.
  config.dataset.max_seq_length = 0
  config.dataset.doc_stride = 0
  config.dataset.max_query_length = 0
  config.dataset.shuffle_buffer = 10_000
  config.dataset.seed = 0
  config.dataset.eval_length_buckets = False  # True: dev batches grouped by length (span_qa.EVAL_LENGTH_BUCKETS)
  config.dataset.train_length_buckets = False  # True: train batches grouped by length (configs/training.py)
  config.dataset.train_megabatch = 50

  # num_train_steps > 0 overrides num_epochs; 0: ceil(num_epochs * train features / batch_size).
  training.batches(config, batch_size=batch_size, eval_batch_size=64, num_train_steps=0, num_epochs=epochs)

  config.optimizer = recipes.optimizer_config(config.recipe)
  config.schedule = recipes.schedule_config(config.recipe, 5e-5, warmup_fraction=0.1)

  # init_from: a converted checkpoint (projects.bert.checkpoints.convert) or a pretraining workdir; init_heads False:
  # take only the encoder, the span head starts fresh.
  training.init(config, init_heads=False)

  config.mode = 'train'  # 'train', 'eval' (dev scores of the saved weights) or 'predict' (the prediction files)
  # What the run measures (core.evaluators; projects/bert/evaluators): the dev scores every 2000 steps and after the
  # last one (the dev set has ~10.8k features at S=384: a few minutes on one accelerator), with upstream's decoding;
  # the prediction files of the best parameters when the run ends (squad_predict decodes as `squad` does).
  config.evals = ml_collections.ConfigDict({
      'squad': {'every': 2000, 'save_best': True, 'n_best_size': 20, 'max_answer_length': 30,
                'null_score_diff_threshold': 0.0},
      'squad_predict': {'weights': 'best'},
  })
  # Checkpoints are for resuming only (the best parameters are kept apart in workdir/best): keep one.
  training.checkpointing(config, log_every=100, checkpoint_every=1000, keep=1)

  if runlocal:
    training.runlocal(config, 'squad', config.recipe,
                      record_fields=('max_seq_length', 'doc_stride', 'max_query_length'))
  return config
