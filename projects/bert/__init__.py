"""BERT on the core framework. Importing this package declares its datasets, models, trainers and evaluators by
name; each module is imported on first use, so importing a config or the model code never loads TensorFlow or
trainer code.
"""

from core import registry

for _name, _module in (('bert_pretraining', 'projects.bert.datasets.pretraining'),
                       ('bert_glue', 'projects.bert.datasets.classification'),
                       ('bert_squad', 'projects.bert.datasets.span_qa'),
                       ('bert_superglue', 'projects.bert.datasets.superglue'),
                       ('bert_xtreme', 'projects.bert.datasets.xtreme_pairs')):
  registry.DATASETS.declare(_name, _module)
for _name in ('bert_pretraining', 'bert_classification', 'bert_regression', 'bert_encoder', 'bert_question_answering'):
  registry.MODELS.declare(_name, 'projects.bert.models.bert_models')
for _name in ('bert_word_in_context', 'bert_multiple_choice', 'bert_span_pair'):
  registry.MODELS.declare(_name, 'projects.bert.models.superglue_heads')
registry.MODELS.declare('bert_token_classification', 'projects.bert.models.tagging_heads')
for _name, _module in (('bert_trainer', 'projects.bert.trainers.bert_trainer'),
                       ('bert_demo', 'projects.bert.runs.demo'), ('bert_glue_suite', 'projects.bert.runs.glue_suite'),
                       ('bert_superglue_suite', 'projects.bert.runs.superglue_suite'),
                       ('bert_xtreme_suite', 'projects.bert.runs.xtreme_suite')):
  registry.TRAINERS.declare(_name, _module)
for _name in ('mlm_nsp', 'glue', 'glue_predict', 'fewshot', 'squad', 'squad_predict', 'superglue',
              'superglue_predict', 'xtreme', 'xtreme_predict'):
  registry.EVALUATORS.declare(_name, f'projects.bert.evaluators.{_name}')
registry.DATASETS.declare('bert_xtreme_qa', 'projects.bert.datasets.xtreme_qa')  # XTREME QA: XQuAD, MLQA, TyDiQA
for _name in ('xtreme_qa', 'xtreme_qa_predict'):
  registry.EVALUATORS.declare(_name, f'projects.bert.evaluators.{_name}')
registry.EVALUATORS.declare('xtreme_retrieval', 'projects.bert.evaluators.xtreme_retrieval')  # BUCC, Tatoeba
