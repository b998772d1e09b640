"""The BERT evaluators (`core.evaluators`), each built from its entry of `config.evals`:

  mlm_nsp       masked-LM / next-sentence loss and accuracy on held-out pretraining records
  glue          GLUE dev metrics (the model's eval step + the official metrics), best_on_dev parameters kept
  glue_predict  GLUE submission files of the test splits, at the end of a run (mode 'predict' runs only these)
  fewshot       few-shot GLUE probes of the encoder (the maths in `projects.bert.fewshot.probes`)
  squad         SQuAD v1.1 / v2.0 dev scores (official decoding and EM/F1), best_on_dev parameters kept
  squad_predict SQuAD predictions.json (and null_odds.json for v2.0) in the official format, at the end of a run
  xtreme_qa     XTREME QA (XQuAD, MLQA, TyDiQA-GoldP): per-language EM / F1 of SQuAD decoding, language means
  xtreme_qa_predict  XTREME QA submission files test-{lang}.json (and their test scores), at the end of a run
dev_scores.py holds what glue and squad share: history, final and best_on_dev, and the prediction writers' weights.

Nothing is imported here: `projects.bert` declares each name with its module, imported on first use.
"""
