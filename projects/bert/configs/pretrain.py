r"""BERT pretraining (MLM + NSP). Variant: `SIZE[,phase2][,fewshot][,runlocal]`.

  python main.py --config=projects/bert/configs/pretrain.py:tiny --workdir=/tmp/pt_tiny \
      --config.dataset.train_files=/data/pretrain/*.tfrecord
  python main.py --config=projects/bert/configs/pretrain.py:base --workdir=gs://bucket/bert_base_p1   # phase 1
  python main.py --config=projects/bert/configs/pretrain.py:base,phase2 --workdir=gs://bucket/bert_base_p2 \
      --config.init_from=gs://bucket/bert_base_p1

SIZE is one of tiny, mini, small, medium, base, large; `,fewshot` adds few-shot SST-2/RTE probes, an evaluator
beside mlm_nsp with the same cadence (`--config.evals.fewshot.dataset.data_dir=` the `prepare glue` output).

Phase 1 / phase 2 follow the original BERT recipe: 90% of the steps at sequence length 128 (20 predictions per
sequence), then 10% at 512 (80), batch 256, peak learning rate 1e-4 with 10k warm-up steps and linear decay, AdamW
(decay 0.01, no bias correction), clipping at 1.0. `tiny` is a CPU-sized run; `runlocal` shrinks any variant to a
few steps for a smoke test on a laptop.
"""

import ml_collections

from projects.bert.configs import common, fields
from projects.bert.configs import fewshot as fewshot_configs


FIELD_DOCS = fields.PRETRAIN  # what --print_config prints beside each field


def get_config(arg: str = 'tiny') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p]
  size = parts[0] if parts else 'tiny'
  phase2, runlocal, with_fewshot = 'phase2' in parts, 'runlocal' in parts, 'fewshot' in parts

  config = ml_collections.ConfigDict()
  config.trainer_name = 'bert_trainer'
  config.dataset_name = 'bert_pretraining'
  config.model_name = 'bert_pretraining'
  config.rng_seed = 0
  config.model = common.model_config(size)

  config.dataset = ml_collections.ConfigDict()
  config.dataset.train_files = 'data/pretraining/train-*.tfrecord'
  config.dataset.eval_files = ''  # optional held-out records for periodic MLM/NSP evaluation
  # Checked against the records; 0 takes them from the records.
  config.dataset.max_seq_length = 512 if phase2 else 128
  config.dataset.max_predictions_per_seq = 80 if phase2 else 20
  config.dataset.shuffle_buffer = 10_000
  config.dataset.seed = 0
  config.dataset.cycle_length = 8  # record files read in parallel (interleaved) per process
  config.dataset.eval_max_examples = 0  # read at most this many eval records; 0 = all

  config.batch_size = 256
  config.eval_batch_size = 256
  config.num_train_steps = 100_000 if phase2 else 900_000
  config.grad_accum_steps = 1

  config.optimizer = common.bert_optimizer_config()
  config.schedule = ml_collections.ConfigDict({
      'base_lr': 1e-4, 'warmup_steps': 10_000, 'decay': 'linear', 'end_lr': 0.0})

  config.init_from = ''  # a converted checkpoint or a workdir (phase 2 starts from phase 1's)
  config.log_every = 100
  config.checkpoint_every = 5_000
  config.checkpoint = ml_collections.ConfigDict({'keep': 3, 'async_save': True, 'restore_input': True})
  config.param_sharding_rules = ()  # e.g. ((r'.*', 'fsdp'),) to shard weights and moments over the data axis
  # What the run measures (core.evaluators; projects/bert/evaluators): MLM/NSP on dataset.eval_files every `every`
  # steps, on `num_steps` batches (nothing without eval_files); variant `,fewshot` adds few-shot GLUE probes.
  config.evals = ml_collections.ConfigDict({'mlm_nsp': {'every': 10_000, 'num_steps': 100}})

  if size == 'tiny' or runlocal:
    config.batch_size = 32
    config.eval_batch_size = 32
    config.num_train_steps = 2_000
    config.schedule.base_lr = 5e-4
    config.schedule.warmup_steps = 100
    config.log_every = 50
    config.evals.mlm_nsp.update(every=500, num_steps=10)
    config.checkpoint_every = 500
    config.dataset.shuffle_buffer = 1_000
  if runlocal:
    config.model = common.model_config('tiny')
    config.num_train_steps = 20
    config.schedule.warmup_steps = 5
    config.log_every = 5
    config.evals.mlm_nsp.every = 10
    config.checkpoint_every = 10
  if with_fewshot:
    config.evals.fewshot = fewshot_configs.fewshot_block(('sst2', 'rte'), data_dir='data/glue',
                                                         every=config.evals.mlm_nsp.every, eval_size=2000)
  return config
