"""BERT input data, one concept per file:

  records.py             record files: finding them, meta-data JSON, checking records against a spec, the prepare
                         manifest of pretraining record sets
  pipeline.py            the tf.data train / eval pipelines (fingerprint, token-id limits) and `start_builder`, the
                         prelude every builder goes through
  classification.py      builder `bert_glue` (sentence(-pair) classification and regression)
  span_qa.py             builder `bert_squad` (span question answering), and the eval examples decoding reads
  pretraining.py         builder `bert_pretraining` (masked LM + next sentence)
  prepare.py             the `prepare` CLI (`bert-prepare`), one writer per benchmark:
  glue_writer.py, squad_writer.py (+ squad_format.py, the SQuAD files), pretraining_writer.py
  writing.py             what the writers share: PrepareError, the vocabulary check, staging folders, disk full
  child_process.py       running the upstream pretraining writer as a child that ends with its parent

Nothing is imported here: the builders need TensorFlow, and `projects.bert` declares the builders by module so that
they load on first use.
"""
