"""The SuperGLUE reader on generated official-format folders (all ten tasks), and its errors on malformed rows."""

import json

import pytest

from core.errors import DataError, MissingFileError, UserError
from projects.bert.datasets import superglue_reader as reader
from projects.bert.tasks import superglue as sg
from projects.bert.tasks import superglue_metrics as sgm
from tests.bert import superglue_data


@pytest.fixture(scope='module')
def sg_dir(tmp_path_factory):
  return superglue_data.write_superglue_dir(str(tmp_path_factory.mktemp('superglue')), train_size=12, eval_size=8,
                                            test_size=4)


def test_every_task_and_split_reads(sg_dir):
  types = {sg.SENTENCE_PAIR: reader.SentencePairExample, sg.WORD_IN_CONTEXT: reader.WicExample,
           sg.MULTIPLE_CHOICE: reader.CopaExample, sg.ANSWER_OPTIONS: reader.MultiRcExample,
           sg.ENTITY_CLOZE: reader.RecordExample, sg.SPAN_PAIR: reader.WscExample}
  sizes = {'train': 12, 'validation': 8, 'test': 4}
  for name, task in sg.SUPERGLUE_TASKS.items():
    for split in task.splits:
      examples = reader.read_split(sg_dir, name, split)
      assert len(examples) == (8 if task.diagnostic else sizes[split]), (name, split)
      assert all(isinstance(e, types[task.kind]) for e in examples)
      assert [e.idx for e in examples] == list(range(len(examples)))  # ints, AX-b's strings included
      if task.kind in (sg.ANSWER_OPTIONS, sg.ENTITY_CLOZE):
        continue
      labels = [e.label for e in examples]
      if split == 'test' and not task.diagnostic:
        assert labels == [None] * len(examples)
      else:
        assert set(labels) <= set(range(task.num_labels)) and None not in labels


def test_labels_become_ids_of_the_table(sg_dir):
  boolq = reader.read_split(sg_dir, 'boolq', 'train')
  assert {e.label for e in boolq} == {0, 1}
  assert all((e.label == 1) == ('not' not in e.text_b.split()) for e in boolq)  # true -> id 1
  assert all(e.text_a.startswith('is the') for e in boolq)  # text_a is the question
  cb = reader.read_split(sg_dir, 'cb', 'train')
  verbs = {0: 'knows', 1: 'denies', 2: 'wonders'}
  assert all(verbs[e.label] in e.text_a for e in cb)
  copa = reader.read_split(sg_dir, 'copa', 'validation')
  assert all(e.premise.split()[-1].rstrip('.') in e.choices[e.label] for e in copa)
  wsc = reader.read_split(sg_dir, 'wsc', 'train')
  for e in wsc:
    words = e.text.split()
    assert ' '.join(words[e.span1_index:e.span1_index + 2]) == e.span1_text and words[e.span2_index] == 'he'


def test_offsets_and_grouped_tasks(sg_dir):
  for e in reader.read_split(sg_dir, 'wic', 'train'):
    assert e.sentence1[e.start1:e.end1] == e.word == e.sentence2[e.start2:e.end2]
  record = reader.read_split(sg_dir, 'record', 'validation')
  for e in record:
    assert all(e.passage[m.start:m.end] == m.text for m in e.entities)
    assert len(e.candidates) < len(e.entities)  # the surname and the city are mentioned twice
    assert len(set(e.candidates)) == len(e.candidates)
    (query,) = e.queries
    assert reader.PLACEHOLDER in query.query
    full, surname = e.candidates[0], e.candidates[0].split()[1]
    assert set(query.answers) == {full, surname}  # several gold answers
  assert all(q.answers == () for e in reader.read_split(sg_dir, 'record', 'test') for q in e.queries)
  multirc = reader.read_split(sg_dir, 'multirc', 'validation')
  questions = [q for e in multirc for q in e.questions]
  assert any(all(a.label == 0 for a in q.answers) for q in questions)  # questions with every answer false
  assert all(a.label in (0, 1) for q in questions for a in q.answers)
  answer_ids = [a.idx for q in questions for a in q.answers]
  assert len(set(answer_ids)) == len(answer_ids)
  assert all(a.label is None for e in reader.read_split(sg_dir, 'multirc', 'test') for q in e.questions
             for a in q.answers)


def test_flat_rows_of_multirc_and_record(sg_dir):
  multirc = reader.read_split(sg_dir, 'multirc', 'validation')
  options = reader.answer_options(multirc)
  assert len(options) == sum(len(q.answers) for e in multirc for q in e.questions)
  first = multirc[0].questions[0]
  assert [(o.question_key, o.answer, o.label) for o in options[:len(first.answers)]] == [
      ((multirc[0].idx, first.idx), a.text, a.label) for a in first.answers]
  record = reader.read_split(sg_dir, 'record', 'validation')
  rows = reader.entity_candidates(record)
  assert len(rows) == sum(len(e.candidates) for e in record)  # one row per distinct entity text, not per mention
  per_query = {}
  for r in rows:
    per_query.setdefault(r.query_idx, []).append(r.label)
  assert all(labels.count(1) == 2 for labels in per_query.values())  # the full name and the surname
  assert all(r.label is None for r in reader.entity_candidates(reader.read_split(sg_dir, 'record', 'test')))


def test_axg_pairs_line_up(sg_dir):
  axg = reader.read_split(sg_dir, 'axg', 'test')
  assert all(e.pair_id is not None for e in axg)
  assert axg[0].pair_id != axg[1].pair_id and axg[0].text_b == axg[1].text_b
  gold = [e.label for e in axg]
  assert sgm.gender_parity([e.idx for e in axg], [e.text_b for e in axg], gold) == 1.0  # pairs share their label


# --- malformed files -----------------------------------------------------------------------------------------------

_BOOLQ = {'question': 'is it', 'passage': 'It is.', 'idx': 0, 'label': True}


def _read_bad(tmp_path, task, rows, *, labelled=True, raw=None):
  path = str(tmp_path / 'bad.jsonl')
  if raw is not None:
    with open(path, 'w') as f:
      f.write(raw)
  else:
    superglue_data.write_jsonl(path, rows)
  with pytest.raises(UserError) as info:
    reader.read_file(path, task, labelled=labelled)
  assert path in str(info.value)
  return str(info.value)


def test_not_json_names_the_line(tmp_path):
  message = _read_bad(tmp_path, 'boolq', None, raw=json.dumps(_BOOLQ) + '\n{"question": "is it",\n')
  assert 'line 2' in message and 'not JSON' in message
  assert 'not an object' in _read_bad(tmp_path, 'boolq', None, raw='[1, 2]\n')


def test_missing_and_mistyped_fields(tmp_path):
  row = dict(_BOOLQ)
  del row['passage']
  assert 'line 2: field "passage" is missing' in _read_bad(tmp_path, 'boolq', [_BOOLQ, row])
  message = _read_bad(tmp_path, 'boolq', [dict(_BOOLQ, idx='seven')])
  assert 'field "idx" is "seven", not an integer' in message
  message = _read_bad(tmp_path, 'boolq', [dict(_BOOLQ, label=1)])  # 1 is not the file's true
  assert 'field "label" is 1, not one of [false, true]' in message
  assert 'not one of [0, 1]' in _read_bad(tmp_path, 'copa', [{
      'premise': 'p', 'choice1': 'a', 'choice2': 'b', 'question': 'effect', 'idx': 0, 'label': True}])
  assert '"question" is \'reason\'' in _read_bad(tmp_path, 'copa', [{
      'premise': 'p', 'choice1': 'a', 'choice2': 'b', 'question': 'reason', 'idx': 0, 'label': 0}])
  message = _read_bad(tmp_path, 'rte', [{'premise': 'p', 'hypothesis': 'h', 'idx': 0, 'label': 'neutral'}])
  assert 'field "label" is "neutral", not one of ["entailment", "not_entailment"]' in message


def test_labels_required_in_labelled_splits_only(tmp_path):
  row = {k: v for k, v in _BOOLQ.items() if k != 'label'}
  assert 'field "label" is missing' in _read_bad(tmp_path, 'boolq', [row])
  path = superglue_data.write_jsonl(str(tmp_path / 'test.jsonl'), [row])
  assert reader.read_file(path, 'boolq', labelled=False)[0].label is None


def test_nested_fields_are_named_by_path(tmp_path):
  multirc = {'idx': 0, 'passage': {'text': 'Ann has a kite.', 'questions': [{'question': 'What?', 'idx': 0,
             'answers': [{'text': 'a kite', 'idx': 0, 'label': 1}, {'text': 'a drum', 'idx': 1}]}]}}
  assert 'field "passage.questions[0].answers[1].label" is missing' in _read_bad(tmp_path, 'multirc', [multirc])
  passage = 'Ann met Bo.'
  record = {'idx': 0, 'passage': {'text': passage, 'entities': [{'start': 0, 'end': 2}, {'start': 8, 'end': 11}]},
            'qas': [{'query': '@placeholder left.', 'idx': 0, 'answers': [{'start': 0, 'end': 2, 'text': 'Ann'}]}]}
  assert 'field "passage.entities[1].start/end" is [8, 12)' in _read_bad(tmp_path, 'record', [record])
  record['passage']['entities'] = [{'start': 0, 'end': 2}]
  record['qas'][0]['query'] = 'Someone left.'
  assert 'field "qas[0].query" holds @placeholder 0 times' in _read_bad(tmp_path, 'record', [record])
  record['qas'][0]['query'] = '@placeholder left.'
  del record['qas'][0]['answers']
  assert 'field "qas[0].answers" is missing or empty' in _read_bad(tmp_path, 'record', [record])
  assert reader.read_file(superglue_data.write_jsonl(str(tmp_path / 't.jsonl'), [record]), 'record',
                          labelled=False)[0].candidates == ('Ann',)
  wic = {'word': 'bank', 'sentence1': 'a bank', 'sentence2': 'the bank', 'idx': 0, 'label': False,
         'start1': 2, 'end1': 6, 'start2': 4, 'end2': 9}
  assert 'field "start2/end2" is [4, 9)' in _read_bad(tmp_path, 'wic', [wic])
  wsc = {'text': 'A b he', 'idx': 0, 'label': True, 'target': {'span1_index': 0, 'span1_text': 'A',
                                                               'span2_index': '2', 'span2_text': 'he'}}
  assert 'field "target.span2_index" is "2", not an integer' in _read_bad(tmp_path, 'wsc', [wsc])
  wsc['target']['span2_index'] = 2
  assert reader.read_file(superglue_data.write_jsonl(str(tmp_path / 'w.jsonl'), [wsc]), 'wsc',
                          labelled=True)[0].span2_index == 2
  del wsc['target']['span1_text']
  assert 'field "target.span1_text" is missing' in _read_bad(tmp_path, 'wsc', [wsc])


def test_repeated_idx_is_refused(tmp_path):
  message = _read_bad(tmp_path, 'boolq', [_BOOLQ, dict(_BOOLQ, idx=1), dict(_BOOLQ)])
  assert 'line 3: field "idx" repeats 0 of line 1' in message
  qa = {'query': '@placeholder left.', 'idx': 5, 'answers': [{'start': 0, 'end': 2, 'text': 'Ann'}]}
  record = {'idx': 0, 'passage': {'text': 'Ann met Bo.', 'entities': [{'start': 0, 'end': 2}]}, 'qas': [qa, qa]}
  assert 'line 1: field "qas[].idx" repeats 5 of line 1' in _read_bad(tmp_path, 'record', [record])
  answer = {'text': 'a kite', 'idx': 0, 'label': 1}
  multirc = {'idx': 0, 'passage': {'text': 't', 'questions': [{'question': 'q', 'idx': 0, 'answers': [answer]}]}}
  other_passage = dict(multirc, idx=1)  # the same question and answer idx under another passage: a different key
  path = superglue_data.write_jsonl(str(tmp_path / 'm.jsonl'), [multirc, other_passage])
  assert len(reader.read_file(path, 'multirc', labelled=True)) == 2
  assert 'repeats (0, 0, 0) of line 1' in _read_bad(tmp_path, 'multirc', [multirc, multirc])


def test_missing_and_empty_files(tmp_path):
  with pytest.raises(MissingFileError, match=r'BoolQ/val\.jsonl'):
    reader.read_split(str(tmp_path), 'boolq', 'validation')
  assert 'no examples' in _read_bad(tmp_path, 'cb', None, raw='\n')
  with pytest.raises(DataError):  # a UserError: printed as one `error:` paragraph
    reader.read_file(superglue_data.write_jsonl(str(tmp_path / 'e.jsonl'), []), 'cb', labelled=False)


# --- the generated data: every label follows from its text, and the pieces fit together -------------------------

def test_generated_labels_follow_their_patterns(sg_dir):
  for name in ('rte', 'axb'):
    examples = reader.read_split(sg_dir, name, 'test' if name == 'axb' else 'validation')
    assert all((e.label == 0) == (' bought ' in e.text_a) for e in examples)  # 0 = entailment
  axg = reader.read_split(sg_dir, 'axg', 'test')
  assert all((e.label == 0) == (' always ' in e.text_a) for e in axg)
  for e in reader.read_split(sg_dir, 'wic', 'train'):
    river = [any(w in s for w in ('water', 'fish', 'boats')) for s in (e.sentence1, e.sentence2)]
    assert e.label == int(river[0] == river[1])
  for e in reader.read_split(sg_dir, 'wsc', 'validation'):
    refers_to_subject = ' tired ' in e.text
    assert e.label == int((e.span1_index == 0) == refers_to_subject)
  for e in reader.read_split(sg_dir, 'multirc', 'train'):
    for q in e.questions:
      name = q.question[len('What does '):-len(' have?')]
      assert all(a.label == int(f'{name} has {a.text}.' in e.passage) for a in q.answers)
  for e in reader.read_split(sg_dir, 'record', 'train'):
    giver = e.passage.split(' met ')[0]
    assert set(e.queries[0].answers) == {giver, giver.split()[1]}


def test_gold_predictions_score_perfectly(sg_dir):
  """Reader output fed to the metrics as each task needs it: gold predictions give every metric its maximum."""
  scores = {}
  for name, task in sg.SUPERGLUE_TASKS.items():
    split = 'test' if task.diagnostic else 'validation'
    examples = reader.read_split(sg_dir, name, split)
    if name == 'multirc':
      options = reader.answer_options(examples)
      labels = [o.label for o in options]
      out = sgm.compute_metrics(name, labels, labels, question_ids=[o.question_key for o in options])
    elif name == 'record':
      golds = {q.idx: q.answers for e in examples for q in e.queries}
      rows = reader.entity_candidates(examples)
      predictions = sgm.record_predictions([r.query_idx for r in rows], [r.entity for r in rows],
                                           [r.label for r in rows])
      out = sgm.compute_metrics(name, predictions, golds)
    else:
      labels = [e.label for e in examples]
      extra = {'idx': [e.idx for e in examples], 'hypotheses': [e.text_b for e in examples]} if name == 'axg' else {}
      out = sgm.compute_metrics(name, labels, labels, **extra)
    assert all(out[m] == 1.0 for m in task.metrics), (name, out)
    if task.in_score:
      scores[name] = out['score']
  assert sgm.superglue_score(scores) == 1.0
