"""BERT dataset builders (`bert_pretraining` in pretraining.py, `bert_glue` in glue.py, `bert_squad` in squad.py), the
GLUE task table, the SQuAD files (squad_format.py), and `prepare.py` (the CLI that writes the records with the
official TF-Models writers; SQuAD's part in squad_prepare.py).

Nothing is imported here: the builders need TensorFlow, the task table does not, and `projects.bert` declares the
builders by module so that they load on first use.
"""
