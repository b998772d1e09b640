r"""Sentence embeddings from paraphrase pairs. Variant: `TASK[,SIZE][,runlocal]`, TASK a GLUE paraphrase task (mrpc,
the default, or qqp), SIZE one of tiny, mini, small, medium, base, large (default: init_from's architecture, else
base).

  python -m projects.bert.datasets.prepare glue --task=mrpc --glue_dir=GLUE_DIR --vocab_file=VOCAB \
      --output_dir=data/glue --max_seq_length=128
  python main.py --config=projects/sentence_embedding/configs/paraphrase.py:mrpc --workdir=/tmp/mrpc_emb \
      --config.init_from=/tmp/bert_base     # python -m projects.bert.checkpoints.convert output, or a BERT workdir

The `sentence_embedding` model (projects/sentence_embedding/model.py) trains BERT's encoder with mean pooling and an
in-batch contrastive loss on the train split's paraphrase pairs; the `retrieval` evaluator scores dev recall@1. The
run is BERT's (`bert_trainer`, `bert_glue` records, `init_from` loading only the encoder's 'bert' parameters);
hyper-parameters are sentence-transformers' MultipleNegativesRankingLoss defaults (batch 64, learning rate 2e-5, 10%
warm-up, 1 epoch) with SimCSE's temperature 0.05. `runlocal`: a few steps of the tiny model.
"""

import ml_collections

from projects.bert.configs import glue as glue_configs, recipes, training, variants
from projects.bert.models import architecture as common

TASKS = ('mrpc', 'qqp')  # GLUE's paraphrase tasks: label id 1 is a paraphrase / duplicate

FIELD_DOCS = {
    **glue_configs.FIELD_DOCS,  # the run is a GLUE fine-tuning run in all but its model and evaluator
    'model_name': "registry name of the model: 'sentence_embedding' (projects/sentence_embedding)",
    'model.temperature': 'cosine similarities are divided by it in the contrastive loss',
    'model.positive_label': 'label id of a matching pair (MRPC / QQP: 1); other pairs only serve as negatives',
    'evals.retrieval.splits': 'eval splits scored (empty: all of the task)',
    'evals.retrieval.save_best': 'keep the parameters of the best dev recall@1 in workdir/best',
}


VARIANT = variants.Spec('paraphrase.py', lead='TASK', lead_words=TASKS, lead_default='mrpc', sizes=True,
                        flags=('runlocal',))


def get_config(arg: str = 'mrpc') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  task, size = variant.lead, variant.size
  recipe = recipes.DEFAULT_RECIPE

  config = training.run_head('sentence_embedding', 'bert_glue')
  inherit = common.inherit_architecture(size)
  # BERT's activation where the checkpoint does not give it (its next-sentence head has no place here).
  act = {} if 'hidden_act' in inherit else {'hidden_act': recipes.model_fields(recipe)['hidden_act']}
  config.model = common.model_config(size or 'base', inherit=inherit, temperature=0.05, positive_label=1, **act)

  config.dataset = ml_collections.ConfigDict()
  config.dataset.task = task
  config.dataset.data_dir = 'data/glue'  # the --output_dir of `prepare glue`
  config.dataset.max_seq_length = 128  # checked against the records; 0 takes whatever they hold
  config.dataset.shuffle_buffer = 10_000
  config.dataset.seed = 0

  training.batches(config, 64, 64, num_train_steps=0, num_epochs=1.0)  # num_train_steps > 0 overrides num_epochs
  config.optimizer = recipes.optimizer_config(recipe)
  config.schedule = recipes.schedule_config(recipe, 2e-5, warmup_fraction=0.1)

  training.init(config, init_heads=False)  # only the encoder ('bert') is taken: BERT's heads have no place here

  config.mode = 'train'
  config.evals = ml_collections.ConfigDict({'retrieval': {'every': 200, 'save_best': True}})
  training.checkpointing(config, log_every=50, checkpoint_every=1000, keep=1)

  if 'runlocal' in variant.flags:
    config.model = common.model_config('tiny', temperature=0.05, positive_label=1,
                                       hidden_act=recipes.model_fields(recipe)['hidden_act'])
    training.runlocal(config, 'retrieval')
  return config
