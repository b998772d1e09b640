"""Sentence embeddings on the core framework, built from BERT's public parts: a bi-encoder (BERT's encoder with mean
pooling) trained with an in-batch contrastive loss on the paraphrase pairs of GLUE-format records.

It reuses, by registry name or public module and without changing projects/bert: the `bert_glue` dataset builder
(sentence-pair records written by `python -m projects.bert.datasets.prepare glue --task=mrpc` or qqp), the
`bert_trainer` (steps, checkpoints, `init_from` through `projects.bert.checkpoints.weights`: the encoder's
parameters live under 'bert', as in every BERT model), and `projects.bert.models.modeling.BertEncoder`. It adds one
model and one evaluator, declared here the way projects/bert/__init__.py declares BERT's; main.py imports every
project package, so `python main.py --config=projects/sentence_embedding/configs/paraphrase.py --workdir=W` runs it.
"""

from core import registry

registry.MODELS.declare('sentence_embedding', 'projects.sentence_embedding.model')
registry.EVALUATORS.declare('retrieval', 'projects.sentence_embedding.retrieval')
