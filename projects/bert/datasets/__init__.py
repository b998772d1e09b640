"""BERT dataset builders (`bert_pretraining` in pretraining.py, `bert_glue` in glue.py), the GLUE task table, and
`prepare.py` (the CLI that writes the records with the official TF-Models writers).

Nothing is imported here: the builders need TensorFlow, the task table does not, and `projects.bert` declares the
builders by module so that they load on first use.
"""
