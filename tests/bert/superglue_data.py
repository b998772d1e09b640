"""Small SuperGLUE-format folders for tests: all ten tasks, the official file layout and schema, text written for
this project (no third-party text).

Each task's label follows from a pattern a small checkpoint can learn in a few hundred steps:
  BoolQ    true unless the passage says the thing is "not" so
  CB       the premise's verb: "knows" -> entailment, "denies" -> contradiction, "wonders whether" -> neutral
  RTE/AX-b "bought" the thing -> entailment, "wanted" it -> not_entailment
  AX-g     minimal pairs (he / she, consecutive idx, the same hypothesis): "always" -> entailment, "never" -> not
  COPA     the right choice names the premise's thing
  MultiRC  an answer is true when the passage says it; some questions ask about someone the passage never
           names, so all their answers are false
  ReCoRD   the query repeats what the passage says of one person; people are named twice (full name, then
           surname: repeated entities) and both forms are gold answers
  WiC      the same sense when both sentences hold a cue word of the same sense (river words or money words)
  WSC      the pronoun refers to the subject after "was tired" and to the object after "was late"
`write_superglue_dir` writes them; `write_jsonl` writes any rows (for malformed-file tests).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Dict, Iterable, List, Optional

NAMES = ['Anna Berg', 'Tomas Reed', 'Mira Stone', 'Jonas Hale', 'Lena Frost', 'Paul Marsh', 'Ida North',
         'Karl West', 'Nora Vale', 'Erik Lund', 'Sara Holm', 'Ben Cole']
THINGS = ['kettle', 'bicycle', 'lantern', 'violin', 'garden', 'ladder', 'blanket', 'clock', 'boat', 'basket']
ADJECTIVES = ['red', 'old', 'heavy', 'quiet', 'bright', 'small', 'clean', 'warm']
CITIES = ['Harrow', 'Alder', 'Brisk', 'Colton', 'Dunmore', 'Elm Falls']
JOBS = ['baker', 'pilot', 'nurse', 'farmer', 'teacher', 'driver']
_SPLIT_FILES = {'train': 'train.jsonl', 'validation': 'val.jsonl', 'test': 'test.jsonl'}


def write_jsonl(path: str, rows: Iterable[Dict[str, Any]]) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    for row in rows:
      f.write(json.dumps(row) + '\n')
  return path


def _boolq(rng: random.Random, i: int) -> Dict[str, Any]:
  thing, adj = rng.choice(THINGS), rng.choice(ADJECTIVES)
  label = rng.random() < 0.5
  cue = 'truly' if label else 'not'
  return {'question': f'is the {thing} {adj}', 'idx': i, 'label': label,
          'passage': f'The {thing} in the hall is {cue} {adj}. It stands near the {rng.choice(THINGS)}.'}


def _cb(rng: random.Random, i: int) -> Dict[str, Any]:
  name, thing, adj = rng.choice(NAMES), rng.choice(THINGS), rng.choice(ADJECTIVES)
  label, verb = rng.choice([('entailment', 'knows that'), ('contradiction', 'denies that'),
                            ('neutral', 'wonders whether')])
  return {'premise': f'{name} {verb} the {thing} was {adj}.', 'hypothesis': f'the {thing} was {adj}',
          'label': label, 'idx': i}


def _rte_like(rng: random.Random, i: int, fields=('premise', 'hypothesis')) -> Dict[str, Any]:
  name, thing = rng.choice(NAMES), rng.choice(THINGS)
  label, verb = rng.choice([('entailment', 'bought'), ('not_entailment', 'wanted')])
  return {fields[0]: f'Last week {name} {verb} the {thing} in {rng.choice(CITIES)}.',
          fields[1]: f'{name} owns the {thing}.', 'label': label, 'idx': i}


def _copa(rng: random.Random, i: int) -> Dict[str, Any]:
  thing, other = rng.sample(THINGS, 2)
  question = rng.choice(['cause', 'effect'])
  right = f'The {thing} was {rng.choice(ADJECTIVES)}.' if question == 'cause' else f'Everyone saw the {thing}.'
  wrong = f'The {other} was {rng.choice(ADJECTIVES)}.' if question == 'cause' else f'Everyone saw the {other}.'
  label = rng.randint(0, 1)
  choices = [wrong, right] if label else [right, wrong]
  return {'premise': f'I looked at the {thing}.', 'choice1': choices[0], 'choice2': choices[1],
          'question': question, 'label': label, 'idx': i}


def _multirc(rng: random.Random, i: int, counters: Dict[str, int]) -> Dict[str, Any]:
  people = rng.sample(NAMES, 4)
  owned = {name: (rng.choice(ADJECTIVES), rng.choice(THINGS)) for name in people[:3]}
  text = ' '.join(f'{name} has a {adj} {thing}.' for name, (adj, thing) in owned.items())
  questions = []
  for name in [people[0], people[1], people[3]]:  # the last is never named in the passage: all answers false
    options = []
    if name in owned:
      adj, thing = owned[name]
      options.append((f'a {adj} {thing}', 1))
    while len(options) < 3:
      fake = f'a {rng.choice(ADJECTIVES)} {rng.choice(["drum", "kite", "scarf", "hammer"])}'
      if fake not in [o for o, _ in options]:
        options.append((fake, 0))
    rng.shuffle(options)
    answers = []
    for option, label in options:
      answers.append({'text': option, 'idx': counters['answer'], 'label': label})
      counters['answer'] += 1
    questions.append({'question': f'What does {name} have?', 'answers': answers, 'idx': counters['question']})
    counters['question'] += 1
  return {'idx': i, 'version': 1.1, 'passage': {'text': text, 'questions': questions}}


def _record(rng: random.Random, i: int) -> Dict[str, Any]:
  giver, taker = rng.sample(NAMES, 2)
  city, thing = rng.choice(CITIES), rng.choice(THINGS)
  surname = giver.split()[1]
  text = (f'{giver} met {taker} in {city} on Monday. Later {surname} gave {taker.split()[1]} a {thing}.'
          f'\n@highlight\n{surname} visits {city}')
  mentions = [giver, taker, city, surname, taker.split()[1], surname, city]
  entities, start = [], 0
  for mention in mentions:  # in passage order, each after the previous one
    start = text.index(mention, start)
    entities.append({'start': start, 'end': start + len(mention) - 1})  # end inclusive, as the official files
    start += len(mention)
  gold = [{'start': e['start'], 'end': e['end'], 'text': text[e['start']:e['end'] + 1]}
          for e in entities if text[e['start']:e['end'] + 1] in (giver, surname)]
  query = {'query': f'The {thing} that @placeholder gave was a surprise.', 'answers': gold, 'idx': i}
  return {'source': 'tests', 'passage': {'text': text, 'entities': entities}, 'qas': [query], 'idx': i}


def _wic(rng: random.Random, i: int) -> Dict[str, Any]:
  senses = {'river': ['water', 'fish', 'boats'], 'money': ['loan', 'cash', 'savings']}
  first = rng.choice(list(senses))
  label = rng.random() < 0.5
  second = first if label else [s for s in senses if s != first][0]
  s1 = f'We walked to the bank to look at the {rng.choice(senses[first])}.'
  s2 = f'The bank was full of {rng.choice(senses[second])} that day.'
  start1, start2 = s1.index('bank'), s2.index('bank')
  return {'word': 'bank', 'sentence1': s1, 'sentence2': s2, 'idx': i, 'label': label, 'start1': start1,
          'end1': start1 + 4, 'start2': start2, 'end2': start2 + 4, 'version': 1.1}


def _wsc(rng: random.Random, i: int) -> Dict[str, Any]:
  subject, obj = rng.sample(JOBS, 2)
  cue = rng.choice(['tired', 'late'])
  text = f'The {subject} waited for the {obj} because he was {cue} .'
  words = text.split()
  span1 = rng.choice([subject, obj])
  referent = subject if cue == 'tired' else obj
  index = words.index(span1) - 1  # the noun phrase starts at its article
  return {'text': text, 'idx': i, 'label': span1 == referent,
          'target': {'span1_index': index, 'span1_text': ' '.join(words[index:index + 2]),
                     'span2_index': words.index('he'), 'span2_text': 'he'}}


def _axg(rng: random.Random, count: int) -> List[Dict[str, Any]]:
  rows = []
  for k in range(count // 2):
    job = rng.choice(JOBS)
    label, cue = rng.choice([('entailment', 'always'), ('not_entailment', 'never')])
    for j, pronoun in enumerate(['he', 'she']):
      rows.append({'hypothesis': f'The {job} finishes the report.', 'idx': 2 * k + j, 'label': label,
                   'pair_id': 1000 + 3 * k + 2 * j,  # the official ids of a pair differ (the dropped "they" between)
                   'premise': f'The {job} said that {pronoun} {cue} finishes the report on time.'})
  return rows


def _strip_labels(row: Dict[str, Any], task: str) -> Dict[str, Any]:
  row = json.loads(json.dumps(row))
  row.pop('label', None)
  if task == 'MultiRC':
    for question in row['passage']['questions']:
      for answer in question['answers']:
        answer.pop('label')
  if task == 'ReCoRD':
    for qa in row['qas']:
      qa.pop('answers')
  return row


def write_superglue_dir(root: str, *, train_size: int = 32, eval_size: int = 16, test_size: int = 8,
                        seed: int = 0, tasks: Optional[Iterable[str]] = None) -> str:
  """Writes the official layout under `root` ({Task}/{train,val,test}.jsonl, AX-b/AX-b.jsonl, AX-g/AX-g.jsonl);
  `tasks` picks official names (all ten by default). Test files are unlabelled, the diagnostics labelled."""
  rng = random.Random(seed)
  counters = {'question': 0, 'answer': 0}
  makers = {'BoolQ': _boolq, 'CB': _cb, 'COPA': _copa, 'RTE': _rte_like, 'WiC': _wic, 'WSC': _wsc,
            'ReCoRD': _record, 'MultiRC': lambda r, i: _multirc(r, i, counters)}
  wanted = set(tasks) if tasks is not None else set(makers) | {'AX-b', 'AX-g'}
  sizes = {'train': train_size, 'validation': eval_size, 'test': test_size}
  for task, make in makers.items():
    if task not in wanted:
      continue
    for split, size in sizes.items():
      rows = [make(rng, i) for i in range(size)]
      if split == 'test':
        rows = [_strip_labels(row, task) for row in rows]
      write_jsonl(os.path.join(root, task, _SPLIT_FILES[split]), rows)
  if 'AX-b' in wanted:
    rows = [_rte_like(rng, i, fields=('sentence1', 'sentence2')) for i in range(eval_size)]
    for row in rows:
      row['idx'] = str(row['idx'])  # the official AX-b writes idx as a string
      row['logic'] = 'Negation'
    write_jsonl(os.path.join(root, 'AX-b', 'AX-b.jsonl'), rows)
  if 'AX-g' in wanted:
    write_jsonl(os.path.join(root, 'AX-g', 'AX-g.jsonl'), _axg(rng, eval_size))
  return root
