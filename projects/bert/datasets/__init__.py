"""BERT dataset builders; importing this package registers `bert_pretraining` and `bert_glue`.

`prepare.py` (the CLI that writes the records with the official TF-Models writers) is not imported here: it pulls
in TF-Models, which training does not need.
"""

from projects.bert.datasets import glue  # noqa: F401
from projects.bert.datasets import pretraining  # noqa: F401
