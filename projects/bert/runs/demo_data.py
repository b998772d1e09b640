"""The demo's data, made on the spot: a small English corpus for pretraining and an SST-2-style sentiment task in the
official GLUE layout (SST-2/train.tsv, dev.tsv, test.tsv).

Source: both are written for this project (no third-party text). The corpus is short, plain English prose. The
sentiment task is built from templates over word lists, with the dev and test sentences using *adjectives that never
occur in train*: a model can only score well on dev by knowing what those words mean, which is what pretrained
weights bring and random ones do not.
"""

from __future__ import annotations

import os
import random
from typing import Dict, List, Sequence, Tuple

CORPUS: Tuple[Tuple[str, ...], ...] = (
    ('The old lighthouse stood on a rock at the edge of the bay.',
     'Every night its keeper climbed the stairs to light the lamp.',
     'Ships passing in the dark watched for the bright beam.',
     'One winter a storm broke the glass at the top of the tower.',
     'The keeper worked until morning to repair the window.',
     'When the sun rose the lamp was burning again.'),
    ('Maria grows tomatoes and beans in a small garden behind her house.',
     'She waters the plants early in the morning before work.',
     'In summer the garden is full of bees and butterflies.',
     'Her neighbors often stop by to ask for advice.',
     'She tells them that good soil matters more than anything else.',
     'At the end of the season she shares the harvest with friends.'),
    ('The train to the mountains leaves the station at nine.',
     'Most passengers carry heavy bags and warm coats.',
     'The journey takes four hours through forests and small towns.',
     'Near the end the track climbs along a narrow river.',
     'Snow covers the peaks for most of the year.',
     'Travelers step off the train into cold clean air.'),
    ('Our town library opened a new reading room last spring.',
     'The room has large windows and quiet corners for study.',
     'Students come after school to read and do homework.',
     'On weekends the library runs a club for young writers.',
     'The members read their stories aloud to each other.',
     'The librarian says the room is full almost every day.'),
    ('The film opened with a long shot of an empty beach.',
     'Critics praised the quiet acting and the careful music.',
     'Some viewers found the story slow in the middle.',
     'Others said the ending was the best part of the year.',
     'The director had spent four years writing the script.',
     'In the end the film won two prizes at the festival.'),
    ('The city council voted to build a new bridge over the river.',
     'The old bridge was too narrow for modern traffic.',
     'Engineers studied the river for a whole year before the work began.',
     'The new bridge has lanes for cars, bikes and people on foot.',
     'It opened in the autumn with music and a small parade.',
     'People walk over the bridge in the evening to watch the sunset.'),
)

# Sentiment words: train and held-out (dev/test) adjectives are disjoint on purpose.
_POSITIVE_TRAIN = ('wonderful', 'excellent', 'delightful', 'brilliant', 'beautiful', 'enjoyable', 'charming', 'superb')
_NEGATIVE_TRAIN = ('terrible', 'boring', 'awful', 'dull', 'tedious', 'dreadful', 'clumsy', 'bland')
_POSITIVE_HELD_OUT = ('fantastic', 'lovely', 'marvelous', 'splendid', 'great', 'amazing')
_NEGATIVE_HELD_OUT = ('horrible', 'poor', 'lousy', 'miserable', 'bad', 'mediocre')
_NOUNS = ('film', 'movie', 'story', 'acting', 'script', 'ending', 'soundtrack', 'cast', 'plot', 'performance')
_ADVERBS = ('', 'truly ', 'rather ', 'quite ', 'really ', 'simply ', 'very ')
_TEMPLATES = ('the {noun} is {adv}{adj} .', 'a {adv}{adj} {noun} .', 'what a {adj} {noun} , {adv}{adj} indeed .',
              'i thought the {noun} was {adv}{adj} .', 'overall , a {adv}{adj} {noun} from start to finish .',
              'the {noun} felt {adv}{adj} to me .')


def write_corpus(path: str) -> str:
  """Writes the corpus as create_pretraining_data.py reads it: a sentence a line, blank line between documents."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n\n'.join('\n'.join(doc) for doc in CORPUS) + '\n')
  return path


def _sentences(rng: random.Random, n: int, positive: Sequence[str], negative: Sequence[str]) -> List[Tuple[str, int]]:
  out = []
  for i in range(n):
    label = i % 2
    adj = rng.choice(positive if label else negative)
    out.append((rng.choice(_TEMPLATES).format(noun=rng.choice(_NOUNS), adv=rng.choice(_ADVERBS), adj=adj), label))
  rng.shuffle(out)
  return out


def write_sst2_task(glue_dir: str, n_train: int = 800, n_dev: int = 400, n_test: int = 200,
                    seed: int = 0) -> Dict[str, int]:
  """Writes glue_dir/SST-2/{train,dev,test}.tsv in the official layout; returns the split sizes."""
  rng = random.Random(seed)
  task_dir = os.path.join(glue_dir, 'SST-2')
  os.makedirs(task_dir, exist_ok=True)
  train = _sentences(rng, n_train, _POSITIVE_TRAIN, _NEGATIVE_TRAIN)
  dev = _sentences(rng, n_dev, _POSITIVE_HELD_OUT, _NEGATIVE_HELD_OUT)
  test = _sentences(rng, n_test, _POSITIVE_HELD_OUT, _NEGATIVE_HELD_OUT)
  for name, rows in (('train', train), ('dev', dev)):
    with open(os.path.join(task_dir, f'{name}.tsv'), 'w') as f:
      f.write('sentence\tlabel\n' + ''.join(f'{s}\t{y}\n' for s, y in rows))
  with open(os.path.join(task_dir, 'test.tsv'), 'w') as f:
    f.write('index\tsentence\n' + ''.join(f'{i}\t{s}\n' for i, (s, _) in enumerate(test)))
  return {'train': n_train, 'dev': n_dev, 'test': n_test}
