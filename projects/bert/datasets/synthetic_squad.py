"""Generated SQuAD-format data, offline: `prepare synthetic_squad` writes train-VERSION.json and dev-VERSION.json in
the official layout, ready for `prepare squad`.

Each paragraph describes `people_per_paragraph` people (at least 2) in shuffled sentences (birthplace and birth
year, job and years worked, favourite food), each sentence drawn from a few paraphrases; the questions ask every
fact of every person, in paraphrased forms. Answers therefore depend on the question: a paragraph's questions have
different answers, and the person asked about is what tells two birth years apart. Train and dev draw names,
places, jobs and foods from disjoint pools (`POOLS`), so a model scores on dev only by reading the paragraph, not by
remembering entities. With version v2.0 each paragraph also gets one unanswerable question: a fact of someone the
paragraph does not mention (from the split's own pool), with the paragraph's answer of that fact as its plausible
answer, as the official v2.0 files have them.

The data is a function of (split, number of paragraphs, seed, people per paragraph, version): the same arguments
give the same files.
"""

from __future__ import annotations

import os
import random
import string
from typing import Any, Dict, List, Mapping, Sequence, Tuple

VERSIONS = ('v1.1', 'v2.0')
SPLITS = ('train', 'dev')

# Disjoint entity pools: no dev name, place, job or food occurs in train.
POOLS: Mapping[str, Mapping[str, Tuple[str, ...]]] = {
    'train': dict(
        first=('Anna', 'Tom', 'Lisa', 'Mark', 'Sara', 'Paul', 'Emma', 'John', 'Nina', 'Peter', 'Laura', 'David',
               'Rosa', 'Felix', 'Irene', 'Oscar', 'Greta', 'Hugo', 'Julia', 'Leon'),
        last=('Berg', 'Hale', 'Stone', 'Fischer', 'Moreno', 'Walsh', 'Novak', 'Brandt', 'Keller', 'Dunn', 'Baker',
              'Costa', 'Meyer', 'Quinn', 'Rossi', 'Vogel'),
        city=('Lyon', 'Oslo', 'Porto', 'Dublin', 'Krakow', 'Seville', 'Munich', 'Bergen', 'Leeds', 'Turin', 'Ghent',
              'Malmo', 'Bremen', 'Cork', 'Bilbao', 'Graz'),
        job=('baker', 'pilot', 'teacher', 'nurse', 'carpenter', 'farmer', 'painter', 'lawyer', 'tailor', 'dentist',
             'architect', 'editor'),
        food=('apples', 'cheese', 'rice', 'fish', 'bread', 'soup', 'pears', 'noodles', 'carrots', 'lentils')),
    'dev': dict(
        first=('Maria', 'Jacob', 'Olga', 'Henry', 'Clara', 'Victor', 'Ingrid', 'Samuel', 'Alice', 'Tobias'),
        last=('Lindqvist', 'Okafor', 'Ramos', 'Petrov', 'Carter', 'Sato', 'Adler', 'Horvat'),
        city=('Vienna', 'Lisbon', 'Prague', 'Geneva', 'Naples', 'Zurich', 'Riga', 'Antwerp'),
        job=('doctor', 'sailor', 'engineer', 'musician', 'chemist', 'librarian', 'plumber', 'judge'),
        food=('pasta', 'grapes', 'honey', 'eggs', 'beans', 'plums', 'olives', 'mushrooms')),
}

# Sentence kind -> paraphrases (each names the person and states the kind's facts).
SENTENCES: Mapping[str, Tuple[str, ...]] = {
    'born': ('{name} was born in {city} in {year}.', 'In {year}, {name} was born in {city}.',
             '{name} was born in {year} in the city of {city}.'),
    'job': ('{name} worked as {a} {job} for {years} years.', 'For {years} years, {name} was {a} {job}.',
            '{name} spent {years} years working as {a} {job}.'),
    'food': ('{name} liked to eat {food}.', 'The favourite food of {name} was {food}.',
             '{name} always ate {food} for dinner.'),
}
# Fact -> (its sentence kind, question paraphrases).
QUESTIONS: Mapping[str, Tuple[str, Tuple[str, ...]]] = {
    'city': ('born', ('Where was {name} born?', 'In which city was {name} born?', 'What is the birthplace of {name}?')),
    'year': ('born', ('In which year was {name} born?', 'When was {name} born?', 'What year was {name} born in?')),
    'job': ('job', ('What was the job of {name}?', 'What did {name} work as?', 'Which profession did {name} have?')),
    'years': ('job', ('For how many years did {name} work?', 'How many years did {name} work?',
                      'For how many years was {name} employed?')),
    'food': ('food', ('What did {name} like to eat?', 'What was the favourite food of {name}?',
                      'Which food did {name} enjoy?')),
}


def _fill(template: str, values: Mapping[str, str]) -> Tuple[str, Dict[str, int]]:
  """(the template filled with `values`, {field: character offset of its value in the text})."""
  text, offsets = '', {}
  for literal, field, _, _ in string.Formatter().parse(template):
    text += literal
    if field is not None:
      offsets[field] = len(text)
      text += values[field]
  return text, offsets


def _people(rng: random.Random, pool: Mapping[str, Sequence[str]], n: int) -> List[Dict[str, str]]:
  """`n` people with distinct names, places, jobs, foods and years: whom a question asks about decides its answer."""
  fields = {k: rng.sample(pool[k], n) for k in ('first', 'last', 'city', 'job', 'food')}
  years, worked = rng.sample(range(1900, 2000), n), rng.sample(range(2, 41), n)
  return [{'name': f'{fields["first"][i]} {fields["last"][i]}', 'city': fields['city'][i], 'year': str(years[i]),
           'job': fields['job'][i], 'a': 'an' if fields['job'][i][0] in 'aeiou' else 'a', 'years': str(worked[i]),
           'food': fields['food'][i]} for i in range(n)]


def generate(split: str, num_paragraphs: int, *, seed: int = 0, people_per_paragraph: int = 2,
             version: str = 'v1.1') -> Dict[str, Any]:
  """A SQuAD JSON ({'version', 'data': [{'title', 'paragraphs': [{'context', 'qas'}]}]}) of `num_paragraphs`
  generated paragraphs of `split` ('train' or 'dev': which entity pool), with every fact of every person asked
  (5 * people_per_paragraph questions a paragraph, plus one unanswerable in v2.0)."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  if version not in VERSIONS:
    raise ValueError(f'version must be one of {VERSIONS}, got {version!r}.')
  pool = POOLS[split]
  most = min(len(values) for values in pool.values()) - (version == 'v2.0')  # v2.0: someone absent to ask about
  if not 2 <= people_per_paragraph <= most:
    raise ValueError(f'people_per_paragraph must be between 2 (so that answers depend on the question) and {most} '
                     f'(distinct people of the {split} pool), got {people_per_paragraph}.')
  if num_paragraphs < 1:
    raise ValueError(f'num_paragraphs must be at least 1, got {num_paragraphs}.')
  rng = random.Random(f'{split}-{seed}')
  paragraphs = []
  for p in range(num_paragraphs):
    people = _people(rng, pool, people_per_paragraph + (version == 'v2.0'))
    absent = people.pop() if version == 'v2.0' else None
    order = [(who, kind) for who in range(people_per_paragraph) for kind in SENTENCES]
    rng.shuffle(order)
    context, starts = '', {}
    for who, kind in order:
      sentence, offsets = _fill(rng.choice(SENTENCES[kind]), people[who])
      starts.update({(who, field): len(context) + offset for field, offset in offsets.items()})
      context += sentence + ' '
    context = context.strip()
    qas = []
    for who, person in enumerate(people):
      for field, (_, templates) in QUESTIONS.items():
        qa = {'id': f'{split}-{seed}-{p}-{who}-{field}', 'question': rng.choice(templates).format(**person),
              'answers': [{'text': person[field], 'answer_start': starts[who, field]}]}
        qas.append({**qa, 'is_impossible': False} if version == 'v2.0' else qa)
    rng.shuffle(qas)
    if absent is not None:
      field = rng.choice(list(QUESTIONS))
      plausible = rng.randrange(people_per_paragraph)
      qas.append({'id': f'{split}-{seed}-{p}-absent-{field}', 'question': rng.choice(QUESTIONS[field][1]).format(
                      **absent), 'answers': [], 'is_impossible': True,
                  'plausible_answers': [{'text': people[plausible][field],
                                         'answer_start': starts[plausible, field]}]})
    paragraphs.append({'context': context, 'qas': qas})
  return {'version': {'v1.1': '1.1', 'v2.0': 'v2.0'}[version],  # as the official files say it
          'data': [{'title': f'people-{split}', 'paragraphs': paragraphs}]}


def file_names(version: str) -> Dict[str, str]:
  """{'train': 'train-VERSION.json', 'dev': 'dev-VERSION.json'}: the official names, which `prepare squad` reads."""
  return {split: f'{split}-{version}.json' for split in SPLITS}


def write_files(output_dir: str, *, train_paragraphs: int = 500, dev_paragraphs: int = 50, seed: int = 0,
                people_per_paragraph: int = 2, version: str = 'v1.1') -> Dict[str, Tuple[str, int]]:
  """Writes the generated train and dev JSON under `output_dir` (each beside its final name, then renamed: a crash
  leaves the previous file); returns {split: (path, number of questions)}."""
  import json

  from core import atomic

  sizes = {'train': train_paragraphs, 'dev': dev_paragraphs}
  datasets = {split: generate(split, sizes[split], seed=seed, people_per_paragraph=people_per_paragraph,
                              version=version) for split in SPLITS}  # all checks before anything is written
  out = {}
  for split, name in file_names(version).items():
    path = os.path.join(output_dir, name)
    atomic.write_text(path, json.dumps(datasets[split], ensure_ascii=False, indent=1) + '\n')
    out[split] = (path, sum(len(p['qas']) for p in datasets[split]['data'][0]['paragraphs']))
  return out
