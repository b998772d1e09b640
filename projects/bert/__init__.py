"""BERT on the core framework. Importing this package declares its datasets, models and trainers by name; each
module is imported on first use, so importing a config or the model code never loads TensorFlow or trainer code.
"""

from core import registry

for _name, _module in (('bert_pretraining', 'projects.bert.datasets.pretraining'),
                       ('bert_glue', 'projects.bert.datasets.glue'),
                       ('bert_squad', 'projects.bert.datasets.squad')):
  registry.DATASETS.declare(_name, _module)
for _name in ('bert_pretraining', 'bert_classification', 'bert_regression', 'bert_question_answering'):
  registry.MODELS.declare(_name, 'projects.bert.models')
for _name, _module in (('bert_pretrainer', 'projects.bert.trainers.pretrain_trainer'),
                       ('bert_glue_trainer', 'projects.bert.trainers.finetune_trainer'),
                       ('bert_squad_trainer', 'projects.bert.trainers.squad_trainer'),
                       ('bert_fewshot_evaluator', 'projects.bert.trainers.fewshot_trainer'),
                       ('bert_demo', 'projects.bert.trainers.demo_trainer')):
  registry.TRAINERS.declare(_name, _module)
