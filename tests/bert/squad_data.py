"""SQuAD-format test data: small hand-written files (v1.1 and v2.0). Generated data (many paragraphs about several
people, dev entities held out of train) is the production generator's: `projects/bert/datasets/synthetic_squad.py`.
`fact_squad` stays for tests and benchmarks that need short paragraphs about one person (length-bucketed SQuAD
evaluation: paragraphs of one or two sentences fall into several buckets).

The hand-written files have several articles and paragraphs, dev questions with one and with several answers, long
paragraphs whose answers sit beyond the first doc-stride window at short sequence lengths, an answer with accents
(decoding must give back the paragraph's characters, not the tokenizer's lower-cased, accent-stripped pieces) and,
in v2.0, unanswerable questions (with `plausible_answers`, as the official files have them).
"""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

# (title, [(context, [(question, [answers...]) or (question, None) for unanswerable])]) -- answers are substrings of
# the context, found at their first occurrence unless given as (text, occurrence).
_TRAIN = [
    ('Lighthouse', [
        ('The old lighthouse stood on a rock at the edge of Gull Bay. It was built in 1871 by the engineer Thomas '
         'Reed. Every night its keeper, Ann Ward, climbed 132 steps to light the lamp.',
         [('When was the lighthouse built?', ['1871']),
          ('Who built the lighthouse?', ['Thomas Reed']),
          ('How many steps did the keeper climb?', ['132']),
          ('Who painted the lighthouse?', None)]),
        ('The village of Harrow lies in a green valley between two hills. A narrow river runs through the middle of '
         'the village, and an old stone bridge crosses it near the church. On market days farmers bring cheese, '
         'bread, apples and honey to the square in front of the town hall. Children play by the river while their '
         'parents buy food for the week. In the evening the musicians of the village play in the square until the '
         'lamps are lit. The bridge was repaired in 1990 after a great flood carried away two of its arches. The '
         'flood also destroyed the mill that had stood beside the river for three hundred years.',
         [('What runs through the middle of the village?', ['A narrow river']),
          ('When was the bridge repaired?', ['1990']),
          ('What did the flood destroy?', ['the mill']),
          ('What do farmers bring on market days?', ['cheese, bread, apples and honey'])]),
    ]),
    ('Garden', [
        ('Maria grows tomatoes and beans in a small garden behind her house. She waters the plants early in the '
         'morning before work. Her neighbor, Paul Smith, keeps bees and gives her honey every autumn.',
         [('What does Maria grow?', ['tomatoes and beans']),
          ('Who keeps bees?', ['Paul Smith']),
          ('When does Maria water the plants?', ['early in the morning']),
          ('How much honey does Paul sell?', None)]),
    ]),
]

_DEV = [
    ('Train', [
        ('The train to the mountains leaves the central station at nine o\'clock. The journey takes four hours '
         'through forests and small towns. Near the end the track climbs along a narrow river to the town of '
         'Alder, where a small hotel serves hot soup to travelers.',
         [('When does the train leave?', ['nine o\'clock', 'at nine o\'clock', 'nine']),
          ('How long does the journey take?', ['four hours']),
          ('What does the hotel serve?', ['hot soup', 'soup']),
          ('When does the train return?', None)]),
    ]),
    ('Library', [
        ('Our town library opened a new reading room last spring. The room has large windows and quiet corners for '
         'study. Students come after school to read and to do their homework. On weekends the library runs a club '
         'for young writers, and the members read their stories aloud to each other. The writers meet at the Café '
         'Lumière on Fridays. Some of the stories were printed in the local paper. The librarian, Helen Brooks, '
         'says that the room is full almost every day and that the town will build a second room next year.',
         [('Who is the librarian?', ['Helen Brooks']),
          ('When did the library open the reading room?', ['last spring']),
          ('What does the library run on weekends?', ['a club for young writers', 'club for young writers']),
          ('Where do the writers meet?', ['the Café Lumière', 'Café Lumière']),
          ('Who owns the café?', None)]),
        ('The town will build the second room next to the old school.',
         [('Where will the second room be built?', ['next to the old school'])]),
    ]),
]


def _answer(context: str, text: str) -> Dict[str, Any]:
  start = context.find(text)
  if start < 0:
    raise ValueError(f'{text!r} is not in {context!r}')
  return {'text': text, 'answer_start': start}


def _squad(articles: Sequence[Tuple[str, Sequence[Tuple[str, Sequence]]]], prefix: str, version_2: bool,
           version: str) -> Dict[str, Any]:
  """SQuAD JSON of `articles`; unanswerable questions (answers None) only in v2.0, where every question has
  is_impossible and unanswerable ones a plausible answer (the paragraph's first word, as a stand-in)."""
  data = []
  for title, paragraphs in articles:
    out_paragraphs = []
    for p, (context, qas) in enumerate(paragraphs):
      out_qas = []
      for q, (question, answers) in enumerate(qas):
        if answers is None and not version_2:
          continue
        qa = {'id': f'{prefix}-{title.lower()}-{p}-{q}', 'question': question,
              'answers': [_answer(context, a) for a in answers or ()]}
        if version_2:
          qa['is_impossible'] = answers is None
          if answers is None:
            qa['plausible_answers'] = [_answer(context, context.split()[0])]
        out_qas.append(qa)
      out_paragraphs.append({'context': context, 'qas': out_qas})
    data.append({'title': title, 'paragraphs': out_paragraphs})
  return {'version': version, 'data': data}


def squad_files(version: str) -> Dict[str, Dict[str, Any]]:
  """{'train': SQuAD JSON, 'dev': SQuAD JSON} of the hand-written data, version 'v1.1' or 'v2.0'."""
  v2 = version == 'v2.0'
  return {'train': _squad(_TRAIN, 'train', v2, version), 'dev': _squad(_DEV, 'dev', v2, version)}


def write_json(path: os.PathLike, obj: Any) -> str:
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f, ensure_ascii=False, indent=1)
  return path


def write_squad_files(directory: os.PathLike, version: str, files: Optional[Dict[str, Any]] = None
                      ) -> Tuple[str, str]:
  """Writes train-VERSION.json and dev-VERSION.json under `directory`; returns their paths."""
  files = files or squad_files(version)
  return (write_json(os.path.join(os.fspath(directory), f'train-{version}.json'), files['train']),
          write_json(os.path.join(os.fspath(directory), f'dev-{version}.json'), files['dev']))


def texts(*datasets: Dict[str, Any]) -> List[str]:
  """Every context and question of the SQuAD JSONs (for a test vocab)."""
  out = []
  for dataset in datasets:
    for article in dataset['data']:
      for p in article['paragraphs']:
        out.append(p['context'])
        out.extend(qa['question'] for qa in p['qas'])
  return out


def questions(dataset: Dict[str, Any]) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
  """(paragraph, qa) of every question, in file order."""
  return [(p, qa) for article in dataset['data'] for p in article['paragraphs'] for qa in p['qas']]


def with_version(dataset: Dict[str, Any], version: str) -> Dict[str, Any]:
  out = copy.deepcopy(dataset)
  out['version'] = version
  return out


# ------------------------------------------------------------------------------------------ generated facts

_POOLS = {
    'train': dict(first=('Anna', 'Tom', 'Lisa', 'Mark', 'Sara', 'Paul', 'Emma', 'John', 'Nina', 'Peter', 'Laura',
                         'David'),
                  last=('Berg', 'Hale', 'Stone', 'Fischer', 'Moreno', 'Walsh', 'Novak', 'Brandt', 'Keller', 'Dunn'),
                  city=('Lyon', 'Oslo', 'Porto', 'Dublin', 'Krakow', 'Seville', 'Munich', 'Bergen', 'Leeds', 'Turin'),
                  job=('baker', 'pilot', 'teacher', 'nurse', 'carpenter', 'farmer', 'painter', 'lawyer'),
                  food=('apples', 'cheese', 'rice', 'fish', 'bread', 'soup')),
    'dev': dict(first=('Maria', 'Jacob', 'Olga', 'Henry', 'Clara', 'Victor'),
                last=('Lindqvist', 'Okafor', 'Ramos', 'Petrov', 'Carter', 'Sato'),
                city=('Vienna', 'Lisbon', 'Prague', 'Geneva', 'Naples', 'Zurich'),
                job=('doctor', 'sailor', 'engineer', 'musician', 'chemist', 'librarian'),
                food=('pasta', 'grapes', 'honey', 'eggs', 'beans', 'plums')),
}
_SENTENCES = {'born': '{name} was born in {city} in {year}.', 'job': '{name} worked as {a} {job} for {years} years.',
              'food': '{name} liked to eat {food}.'}
_QUESTIONS = (  # (question template, answer field, the sentence that holds it)
    ('Where was {name} born?', 'city', 'born'),
    ('In which year was {name} born?', 'year', 'born'),
    ('What was the job of {name}?', 'job', 'job'),
    ('For how many years did {name} work?', 'years', 'job'),
    ('What did {name} like to eat?', 'food', 'food'),
)


def fact_squad(split: str, num_paragraphs: int, seed: int = 0, people_per_paragraph: int = 2,
               sentences: Sequence[str] = tuple(_SENTENCES)) -> Dict[str, Any]:
  """Generated SQuAD v1.1 JSON: `people_per_paragraph` people a paragraph, their fact sentences (of the kinds
  `sentences`: 'born', 'job', 'food') shuffled; every question asks about one fact of one of them (train: every
  fact of every person; dev: one per fact, taking the people in turn)."""
  rng = random.Random(f'{split}-{seed}')
  pool = _POOLS[split]
  paragraphs = []
  for p in range(num_paragraphs):
    people = []
    for first in rng.sample(pool['first'], people_per_paragraph):
      people.append({'name': f'{first} {rng.choice(pool["last"])}', 'city': rng.choice(pool['city']),
                     'year': str(rng.randint(1900, 1999)), 'job': rng.choice(pool['job']),
                     'years': str(rng.randint(2, 40)), 'food': rng.choice(pool['food'])})
      people[-1]['a'] = 'an' if people[-1]['job'][0] in 'aeiou' else 'a'
    order = [(who, kind) for who in range(people_per_paragraph) for kind in sentences]
    rng.shuffle(order)
    starts, context = {}, ''
    for who, kind in order:
      starts[who, kind] = len(context)
      context += _SENTENCES[kind].format(**people[who]) + ' '
    context = context.strip()
    qas = []
    for q, (question, field, kind) in enumerate(_QUESTIONS):
      if kind not in sentences:
        continue
      for who, person in enumerate(people):
        if split == 'dev' and who != (p + q) % people_per_paragraph:
          continue
        sentence = _SENTENCES[kind].format(**person)
        start = starts[who, kind] + sentence.index(f' {person[field]}') + 1
        qas.append({'id': f'{split}-{p}-{q}-{who}', 'question': question.format(**person),
                    'answers': [{'text': person[field], 'answer_start': start}]})
    paragraphs.append({'context': context, 'qas': qas})
  return {'version': '1.1', 'data': [{'title': f'people-{split}', 'paragraphs': paragraphs}]}
