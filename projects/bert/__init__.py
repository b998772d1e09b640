"""BERT on the core framework. Importing this package registers its datasets, models and trainers."""

from projects.bert import datasets  # noqa: F401
from projects.bert import models  # noqa: F401
from projects.bert import trainers  # noqa: F401
