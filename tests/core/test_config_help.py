"""core.config_help: a field's meaning is its own entry, else that of the most specific matching pattern."""

from core import config_help


def test_the_most_specific_pattern_gives_a_fields_meaning():
  docs = {'runs.*.batch_size': 'training batch', 'runs.*.evals.retrieval.batch_size': 'embedding batch',
          'runs.*': 'a run', 'runs.xnli.batch_size': 'xnli batch'}
  # `*` spans dots, so the shorter pattern matches too; the longer (more literal) one wins wherever it is listed.
  assert config_help.doc_of('runs.bucc.evals.retrieval.batch_size', docs) == 'embedding batch'
  assert config_help.doc_of('runs.bucc.batch_size', docs) == 'training batch'
  assert config_help.doc_of('runs.xnli.batch_size', docs) == 'xnli batch'  # its own entry
  assert config_help.doc_of('runs.bucc.schedule', docs) == 'a run'
  assert config_help.doc_of('model.hidden_size', docs) == config_help.UNDOCUMENTED
