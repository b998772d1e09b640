"""The SQuAD task table names what the official scoring reports and the files it reads."""

from projects.bert.datasets import squad_format
from projects.bert.tasks import squad as squad_tasks
from projects.bert.tasks import squad_metrics

DEV = [{'title': 't', 'paragraphs': [{'context': 'Ada Lovelace was born in London.', 'qas': [
    {'id': 'q1', 'question': 'Where was Ada born?', 'answers': [{'text': 'London', 'answer_start': 25}],
     'is_impossible': False},
    {'id': 'q2', 'question': 'Where was Bob born?', 'answers': [], 'is_impossible': True}]}]}]


def test_each_version_lists_exactly_the_metrics_the_official_scoring_reports():
  paragraph = DEV[0]['paragraphs'][0]
  answerable = [{'title': 't', 'paragraphs': [{'context': paragraph['context'], 'qas': paragraph['qas'][:1]}]}]
  v1 = squad_metrics.official_scores(answerable, {'q1': 'London'})
  assert set(v1) == set(squad_tasks.get_version('1.1').metrics)
  v2 = squad_metrics.official_scores(DEV, {'q1': 'London', 'q2': 'London'}, {'q1': -3.0, 'q2': 2.0},
                                     version_2_with_negative=True)
  assert set(v2) == set(squad_tasks.get_version('v2').metrics)
  # The headline is at the best threshold (q2's null odds are above q1's: a cut separates them); as written, q2
  # is answered and wrong.
  assert v2['exact_match'] == 100.0 and v2['exact_match_as_predicted'] == 50.0


def test_the_records_layout_and_the_prepare_command_follow_the_table():
  assert squad_format.VERSIONS == {'v1.1': False, 'v2.0': True}
  for name, version in squad_tasks.VERSIONS.items():
    assert squad_format.get_version(name) == name and version.main_metric == squad_metrics.MAIN_METRIC
    assert f'--train_file={version.train_file}' in squad_format.prepare_command(name)
  assert squad_tasks.NULL_ODDS_FILE in squad_tasks.VERSIONS['v2.0'].prediction_files
  assert squad_tasks.NULL_ODDS_FILE not in squad_tasks.VERSIONS['v1.1'].prediction_files
