"""The BERT evaluators (`core.evaluators`), each built from its entry of `config.evals`:

  mlm_nsp       masked-LM / next-sentence loss and accuracy on held-out pretraining records
  glue          GLUE dev metrics (the model's eval step + the official metrics), best_on_dev parameters kept
  glue_predict  GLUE submission files of the test splits, at the end of a run (mode 'predict' runs only these)
  fewshot       few-shot GLUE probes of the encoder (the maths in `projects.bert.fewshot`)

Nothing is imported here: `projects.bert` declares each name with its module, imported on first use.
"""
