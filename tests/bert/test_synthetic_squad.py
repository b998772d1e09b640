"""`prepare synthetic_squad` (datasets/synthetic_squad.py): generated SQuAD-format files whose answers depend on the
question, with dev entities held out of train, that `prepare squad` reads; and the check of question dependence
(`squad_metrics.question_dependence`)."""

import json
import re

import pytest

from projects.bert.datasets import prepare, squad_format, synthetic_squad
from projects.bert.tasks import squad_metrics
from tests.bert import data_utils, squad_data


def words(text):
  return set(re.findall(r'\w+', text))


@pytest.mark.parametrize('version', ['v1.1', 'v2.0'])
def test_answers_sit_at_their_offsets_and_each_paragraph_asks_about_several_people(version):
  dataset = synthetic_squad.generate('dev', 12, seed=3, people_per_paragraph=3, version=version)
  assert dataset['version'] == {'v1.1': '1.1', 'v2.0': 'v2.0'}[version]  # as the official files say it
  for p in dataset['data'][0]['paragraphs']:
    answerable = [qa for qa in p['qas'] if qa['answers']]
    assert len(answerable) == 15  # every fact (5) of every person (3)
    for qa in p['qas']:
      for a in qa['answers'] + qa.get('plausible_answers', []):
        assert p['context'][a['answer_start']:a['answer_start'] + len(a['text'])] == a['text'], qa
    # Distinct answers, and the people asked about are in the paragraph: the question decides the answer.
    assert len({qa['answers'][0]['text'] for qa in answerable}) == 15
    named = {re.search(r'[A-Z]\w+ [A-Z]\w+', qa['question']).group() for qa in answerable}
    assert len(named) == 3 and all(name in p['context'] for name in named)
    if version == 'v2.0':
      impossible = [qa for qa in p['qas'] if not qa['answers']]
      assert len(impossible) == 1 and impossible[0]['is_impossible'] and impossible[0]['plausible_answers']
      absent = re.search(r'[A-Z]\w+ [A-Z]\w+', impossible[0]['question']).group()
      assert absent not in p['context']
    else:
      assert all('is_impossible' not in qa for qa in p['qas'])
  gold = {qa['id']: qa['answers'][0]['text'] for _, qa in squad_data.questions(dataset) if qa['answers']}
  check = squad_metrics.question_dependence(dataset['data'], gold)
  assert check['same_answer_fraction'] == 0.0 and check['f1'] == 100.0 and check['num_paragraphs'] == 12
  assert check['one_span_ceiling_f1'] < 10.0  # 15 different answers a paragraph: one span gets about one right


def test_dev_entities_never_occur_in_train():
  train = synthetic_squad.generate('train', 200, people_per_paragraph=2)
  dev = synthetic_squad.generate('dev', 50, people_per_paragraph=2)
  for field in synthetic_squad.POOLS['train']:
    assert not set(synthetic_squad.POOLS['train'][field]) & set(synthetic_squad.POOLS['dev'][field]), field
  entities = set().union(*synthetic_squad.POOLS['dev'].values())
  train_words = set().union(*(words(p['context']) | words(' '.join(qa['question'] for qa in p['qas']))
                              for p in train['data'][0]['paragraphs']))
  dev_words = set().union(*(words(p['context']) for p in dev['data'][0]['paragraphs']))
  assert entities <= dev_words  # every dev entity is used ...
  assert not entities & train_words  # ... and none is seen in training


def test_the_same_seed_gives_the_same_data():
  one = synthetic_squad.generate('train', 5, seed=1)
  assert one == synthetic_squad.generate('train', 5, seed=1)
  assert one != synthetic_squad.generate('train', 5, seed=2)
  ids = [qa['id'] for _, qa in squad_data.questions(one)]
  assert len(set(ids)) == len(ids) == 50
  with pytest.raises(ValueError, match=r'people_per_paragraph must be between 2 .* got 1'):
    synthetic_squad.generate('dev', 3, people_per_paragraph=1)


def test_question_dependence_of_hand_made_predictions():
  data = [{'paragraphs': [
      {'context': 'x y z', 'qas': [{'id': 'a', 'answers': [{'text': 'x', 'answer_start': 0}]},
                                   {'id': 'b', 'answers': [{'text': 'y', 'answer_start': 2}]},
                                   {'id': 'c', 'answers': [{'text': 'x', 'answer_start': 0}]}]},
      {'context': 'u v', 'qas': [{'id': 'd', 'answers': [{'text': 'u', 'answer_start': 0}]},
                                 {'id': 'e', 'answers': [{'text': 'v', 'answer_start': 2}]},
                                 {'id': 'f', 'answers': []}]},  # v2.0's unanswerable: left out
      {'context': 'w', 'qas': [{'id': 'g', 'answers': [{'text': 'w', 'answer_start': 0}]}]}]}]  # one question: out
  # The one-span oracle: 'x' for a, b, c (2 of 3 right), 'u' or 'v' for d, e (1 of 2): 3 of 5 questions.
  check = squad_metrics.question_dependence(data, {'a': 'x', 'b': 'x', 'c': 'x', 'd': 'u', 'e': 'v', 'g': 'w'})
  assert check == {'same_answer_fraction': 0.5, 'one_span_ceiling_f1': 60.0, 'f1': 80.0, 'num_paragraphs': 2.0}
  assert squad_metrics.question_dependence(data, {'a': 'X ', 'b': 'x', 'c': 'x', 'd': 'u'})['same_answer_fraction'] \
      == 0.5  # d answered, e missing: different
  with pytest.raises(ValueError, match='at least two answerable questions'):
    squad_metrics.question_dependence([{'paragraphs': data[0]['paragraphs'][2:]}], {})


@pytest.mark.parametrize('version', ['v1.1', 'v2.0'])
def test_the_command_writes_files_that_prepare_squad_reads(tmp_path, capsys, version):
  argv = ['synthetic_squad', f'--output_dir={tmp_path / "json"}', '--train_paragraphs=6', '--dev_paragraphs=3',
          f'--version={version}', '--seed=4']
  assert prepare.main(argv) == 0
  per = 11 if version == 'v2.0' else 10
  assert capsys.readouterr().out.splitlines() == [
      f'{tmp_path}/json/train-{version}.json: {6 * per} train questions',
      f'{tmp_path}/json/dev-{version}.json: {3 * per} dev questions']
  files = {split: json.load(open(tmp_path / 'json' / f'{split}-{version}.json')) for split in ('train', 'dev')}
  assert files['dev'] == synthetic_squad.generate('dev', 3, seed=4, version=version)
  assert sorted(p.name for p in (tmp_path / 'json').iterdir()) == [f'dev-{version}.json', f'train-{version}.json']
  vocab = data_utils.write_vocab(tmp_path / 'vocab.txt', squad_data.texts(*files.values()) * 2)
  assert prepare.main(['squad', f'--train_file={tmp_path}/json/train-{version}.json', f'--vocab_file={vocab}',
                       f'--eval_file={tmp_path}/json/dev-{version}.json', f'--output_dir={tmp_path}/records',
                       f'--version_2_with_negative={version == "v2.0"}', '--max_seq_length=96', '--doc_stride=32',
                       '--max_query_length=16']) == 0
  meta = json.load(open(tmp_path / 'records' / squad_format.META_DATA))
  assert meta['train_num_examples'] == 6 * per and meta['eval_num_examples'] == 3 * per
  with pytest.raises(SystemExit, match=r'prepare synthetic_squad: error: people_per_paragraph must be between 2'):
    prepare.main(argv + ['--people_per_paragraph=1'])
