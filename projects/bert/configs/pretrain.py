r"""BERT pretraining (MLM + NSP, or SOP). Variant: `SIZE[,RECIPE][,phase2][,fewshot][,sop][,runlocal]`.

  python main.py --config=projects/bert/configs/pretrain.py:tiny --workdir=/tmp/pt_tiny \
      --config.dataset.train_files=/data/pretrain/*.tfrecord
  python main.py --config=projects/bert/configs/pretrain.py:base --workdir=gs://bucket/bert_base        # Model Garden
  python main.py --config=projects/bert/configs/pretrain.py:base,bert_paper --workdir=gs://bucket/bert_base_p1
  python main.py --config=projects/bert/configs/pretrain.py:base,bert_paper,phase2 \
      --workdir=gs://bucket/bert_base_p2 --config.init_from=gs://bucket/bert_base_p1

SIZE is one of tiny, mini, small, medium, base, large, or with the scenic recipe one of Scenic BERT's Ti, S, B, L
(pre-norm; hidden 128/256/768/1024, layers 6/12/12/24, heads 2/4/12/16, embedding width 128 for S). RECIPE
(configs/recipes.py, where every value is traced to its source file) is
  model_garden (default)  TF Model Garden's wiki_books_pretrain.yaml: one phase of 1M steps at sequence length 512
                          (76 predictions), batch 512, peak learning rate 1e-4 after a 10k-step polynomial warm-up
                          over a linear decay from step 0, AdamW with Keras bias correction (eps 1e-7, decay 0.01),
                          clipping at 1.0, tanh GELU, the next_sentence ClassificationHead;
  bert_paper              google-research/bert: 90% of the steps at 128 (20 predictions), then `,phase2` 10% at 512
                          (80), batch 256, peak 1e-4 after a 10k-step linear warm-up from 0 over a linear decay from
                          step 0, AdamW without bias correction (eps 1e-6, decay 0.01), clipping at 1.0, tanh GELU,
                          one dense NSP layer on the encoder's pooler;
  scenic                  google-research/scenic's BERT: one phase of 1M steps at 512 (76 predictions), batch 512,
                          peak 1e-4 after a 10k-step linear warm-up, then linear decay, Adam (scale_by_adam, no weight
                          decay), clipping at 1.0 per replica before the mean, tanh GELU, LayerNorm eps 1e-6, pre-norm
                          layers and Scenic's two-layer NSP head (`pretrain.py:S,scenic`).
`,fewshot` adds the few-shot evaluator beside mlm_nsp with Scenic BERT's tasks and cadence (sst2, mnli matched and
mismatched, every 50k steps; tiny and runlocal: mlm_nsp's cadence) and both protocols over one embedding pass: ours,
and Scenic's (NSP-head pre-logits, the regulariser chosen on the eval sets: optimistic);
`--config.evals.fewshot.dataset.data_dir=` the `prepare glue` output. `,sop` trains ALBERT's sentence-order
prediction instead of NSP (the same head; label 1 = the two segments swapped) on records of `prepare pretraining
--sentence_order=true` (dataset.pair_task 'sop'; logs and results say sop_loss / sop_accuracy). `tiny` is a
CPU-sized run (sequence length 128); `runlocal` shrinks any variant to a few steps for a smoke test on a laptop.
"""

import ml_collections

from projects.bert.configs import fewshot as fewshot_configs
from projects.bert.configs import recipes, training, variants
from projects.bert.models import architecture

# What --print_config prints beside each field: the common ones (configs/training.py), the few-shot evaluator's
# (configs/fewshot.py) and these.
FIELD_DOCS = training.field_docs({
    **fewshot_configs.FEWSHOT_BLOCK_DOCS,
    'dataset.train_files': 'pretraining records: a file, glob or comma list (gs:// works)',
    'dataset.eval_files': "records the mlm_nsp evaluator scores ('': no evaluation)",
    'dataset.max_seq_length': 'sequence length, checked against the records (0: from them)',
    'dataset.max_predictions_per_seq': 'masked positions per sequence, checked against the records (0: from them)',
    'dataset.shuffle_buffer': 'examples in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'dataset.cycle_length': 'files read in parallel per process',
    'dataset.eval_max_examples': 'cap on the eval records (0: all)',
    'dataset.pair_task': ("the records' pair label: 'nsp' next sentence (1 = random next) or 'sop' sentence order "
                          "(1 = swapped; `prepare pretraining --sentence_order=true`, variant ,sop); checked against "
                          "the records' manifest"),
    'evals.mlm_nsp.num_steps': 'eval batches of MLM / NSP (or SOP) loss and accuracy',
})


VARIANT = variants.Spec('pretrain.py', lead='SIZE',
                        lead_words=tuple(architecture.SIZES) + tuple(architecture.SCENIC_SIZES), lead_default='tiny',
                        recipes=True, flags=('phase2', 'fewshot', 'sop', 'runlocal'))


def get_config(arg: str = 'tiny') -> ml_collections.ConfigDict:
  variant = variants.parse(arg, VARIANT)
  size, recipe = variant.lead, variant.recipe
  phase2, runlocal, with_fewshot = (f in variant.flags for f in ('phase2', 'runlocal', 'fewshot'))
  if phase2 and recipe != 'bert_paper':
    raise variants.VariantError(f'Variant {arg!r}: phase2 is the second phase of the bert_paper recipe (Model Garden '
                                f'pretrains in one phase at sequence length 512); use {size},bert_paper,phase2.')
  scenic_size = size in architecture.SCENIC_SIZES
  if scenic_size and recipe != 'scenic':
    raise variants.VariantError(f'Variant {arg!r}: {size} is a size of Scenic BERT (Ti, S, B, L: pre-norm, its own '
                                f'widths), trained by its recipe: use {size},scenic; the BERT sizes are '
                                f'{", ".join(architecture.SIZES)}.')
  batch, seq_len, preds, steps, base_lr, warmup = recipes.PRETRAINING[recipe + ('_phase2' if phase2 else '')]

  config = training.run_head(dataset_name='bert_pretraining', model_name='bert_pretraining', recipe=recipe)
  config.model = architecture.model_config(size, **recipes.model_fields(recipe)) if not scenic_size else None

  config.dataset = ml_collections.ConfigDict()
  config.dataset.train_files = 'data/pretraining/train-*.tfrecord'
  config.dataset.eval_files = ''  # optional held-out records for periodic MLM/NSP evaluation
  # Checked against the records; 0 takes them from the records.
  config.dataset.max_seq_length = seq_len
  config.dataset.max_predictions_per_seq = preds
  config.dataset.shuffle_buffer = 10_000
  config.dataset.seed = 0
  config.dataset.train_length_buckets = False  # rows are mostly full-length; the recipe's batches are random mixes
  config.dataset.train_megabatch = 50
  config.dataset.cycle_length = 8  # record files read in parallel (interleaved) per process
  config.dataset.eval_max_examples = 0  # read at most this many eval records; 0 = all
  # What next_sentence_labels hold: 'nsp' (1 = random next) or, with `,sop`, ALBERT's sentence order (1 = swapped).
  config.dataset.pair_task = 'sop' if 'sop' in variant.flags else 'nsp'

  training.batches(config, batch_size=batch, eval_batch_size=batch, num_train_steps=steps)

  config.optimizer = recipes.optimizer_config(recipe)
  config.schedule = recipes.schedule_config(recipe, base_lr, warmup_steps=warmup)

  training.init(config)  # a converted checkpoint or a workdir (phase 2 starts from phase 1's)
  training.checkpointing(config, log_every=100, checkpoint_every=5_000, keep=3)
  # What the run measures (core.evaluators; projects/bert/evaluators): MLM/NSP on dataset.eval_files every `every`
  # steps, on `num_steps` batches (nothing without eval_files); variant `,fewshot` adds few-shot GLUE probes.
  config.evals = ml_collections.ConfigDict({'mlm_nsp': {'every': 10_000, 'num_steps': 100}})
  fewshot_every = 50_000  # Scenic's pretraining config: glue_fewshot every 50k steps (log_eval_steps)
  if scenic_size:  # Scenic BERT's own model and recipe, each value traced in configs/recipes.py
    scenic = recipes.scenic_pretraining(size)
    config.model, config.optimizer, config.schedule = scenic['model'], scenic['optimizer'], scenic['schedule']
    config.rng_seed = scenic['rng_seed']
    config.dataset.shuffle_buffer = scenic['shuffle_buffer']
    fewshot_every = scenic['fewshot_every']

  if size == 'tiny' or runlocal:
    if not phase2:
      config.dataset.max_seq_length = 128
      config.dataset.max_predictions_per_seq = 20
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
    config.model = architecture.model_config('tiny', **recipes.model_fields(recipe))
    config.num_train_steps = 20
    config.schedule.warmup_steps = 5
    config.log_every = 5
    config.evals.mlm_nsp.every = 10
    config.checkpoint_every = 10
  if with_fewshot:
    # Scenic's pretraining config: glue_fewshot every 50k steps (log_eval_steps), whole dev sets.
    every = config.evals.mlm_nsp.every if size == 'tiny' or runlocal else fewshot_every
    config.evals.fewshot = fewshot_configs.fewshot_block(fewshot_configs.SCENIC_TASKS, data_dir='data/glue',
                                                         every=every, protocol='both')
    if runlocal:
      config.evals.fewshot.update(shots=(1, 2, 4), num_seeds=2, train_pool_size=256, eval_size=256, batch_size=16)
      config.evals.fewshot.scenic.shots = (1, 5, 10)
  return config
