"""Trainers of the BERT project: `bert_trainer` (modes train / eval / predict; evaluators come from config.evals)."""
