"""BERT trainers; importing this package registers them."""

from projects.bert.trainers import pretrain_trainer  # noqa: F401
from projects.bert.trainers import finetune_trainer  # noqa: F401
from projects.bert.trainers import fewshot_trainer  # noqa: F401
from projects.bert.trainers import demo_trainer  # noqa: F401
