"""Small XTREME-layout folders, generated for this project's tests (no XTREME data is copied).

`write_xtreme_dir(root)` writes, for each of the nine tasks, the files that xtreme's scripts/download_data.sh
would write, at the paths of `tasks/xtreme.py`, for the task's languages among LANGUAGES: English, German, Russian
(Cyrillic), Arabic (right-to-left, non-Latin) and Chinese (no spaces between words). Sentence-pair files are written
with csv.writer as xtreme's utils_preprocess.py does (tab-separated, '\\r\\n' line ends, a field with a quote gets
quoted); tagging test files hold tokens only, as xtreme writes them.

The sentences come from a small parallel lexicon (the same eight concepts in every language), so each task has a rule
a tiny model can learn on English and apply to the others:
  xnli   text_b == text_a: entailment; text_a + the language's negation word + '!': contradiction; another sentence:
         neutral. (The '!' is shared by every language: a rule that carries across languages even from random weights,
         whose trajectory differs by CPU; the negation words alone do not carry.)
  pawsx  text_b is text_a with two words swapped: 1; another sentence: 0.
  panx   person words B-PER, 'new'+place words B-LOC I-LOC, the rest O.   udpos  one UPOS tag per concept.
  QA     "<name> lives in <place>." sentences; "where does <name> live?" -> the place.
  bucc / tatoeba  word-by-word translations of English sentences (BUCC adds unpaired sentences on both sides).
Unlike xtreme's files, QA test files keep their gold answers (so tests can score predictions) unless
`blank_test_answers`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from typing import Dict, List, Optional, Sequence, Tuple

from projects.bert.tasks import xtreme

LANGUAGES = ('en', 'de', 'ru', 'ar', 'zh')
NO_SPACE_LANGUAGES = ('zh',)

# concept -> word per language. Concepts: people, places, nouns, adjectives, verbs.
_LEXICON: Dict[str, Dict[str, str]] = {
    'anna': {'en': 'Anna', 'de': 'Anna', 'ru': 'Анна', 'ar': 'آنا', 'zh': '安娜'},
    'omar': {'en': 'Omar', 'de': 'Omar', 'ru': 'Омар', 'ar': 'عمر', 'zh': '奥马'},
    'york': {'en': 'York', 'de': 'York', 'ru': 'Йорк', 'ar': 'يورك', 'zh': '约克'},
    'delhi': {'en': 'Delhi', 'de': 'Delhi', 'ru': 'Дели', 'ar': 'دلهي', 'zh': '德里'},
    'cat': {'en': 'cat', 'de': 'Katze', 'ru': 'кошка', 'ar': 'قطة', 'zh': '猫'},
    'house': {'en': 'house', 'de': 'Haus', 'ru': 'дом', 'ar': 'بيت', 'zh': '房子'},
    'red': {'en': 'red', 'de': 'rot', 'ru': 'красный', 'ar': 'أحمر', 'zh': '红'},
    'sees': {'en': 'sees', 'de': 'sieht', 'ru': 'видит', 'ar': 'يرى', 'zh': '看见'},
}
_NEW = {'en': 'New', 'de': 'Neu', 'ru': 'Нью', 'ar': 'نيو', 'zh': '新'}          # "New York", a two-word place
_NOT = {'en': 'not', 'de': 'nicht', 'ru': 'не', 'ar': 'لا', 'zh': '不'}
_LIVES_IN = {'en': 'lives in', 'de': 'wohnt in', 'ru': 'живёт в', 'ar': 'يسكن في', 'zh': '住在'}
_WHERE = {'en': 'Where does {} live?', 'de': 'Wo wohnt {}?', 'ru': 'Где живёт {}?', 'ar': 'أين يسكن {}؟',
          'zh': '{}住在哪里？'}
_PEOPLE = ('anna', 'omar')
_PLACES = ('york', 'delhi')
_UPOS = {'anna': 'PROPN', 'omar': 'PROPN', 'york': 'PROPN', 'delhi': 'PROPN', 'cat': 'NOUN', 'house': 'NOUN',
         'red': 'ADJ', 'sees': 'VERB'}


def join(words: Sequence[str], lang: str) -> str:
  """Words as a sentence: no spaces in Chinese."""
  return ('' if lang in NO_SPACE_LANGUAGES else ' ').join(words)


def _sentence(rng: random.Random, length: int) -> List[str]:
  return [rng.choice(sorted(_LEXICON)) for _ in range(length)]


def _words(concepts: Sequence[str], lang: str) -> List[str]:
  return [_LEXICON[c][lang] for c in concepts]


def _write_text(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text)


def _write_tsv_rows(path: str, rows: Sequence[Sequence[str]]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    writer = csv.writer(f, delimiter='\t')  # as utils_preprocess.py: '\r\n' ends, quoting where needed
    for row in rows:
      writer.writerow(row)


def _langs(task_name: str, languages: Sequence[str]) -> List[str]:
  task = xtreme.get_task(task_name)
  return [lang for lang in languages if lang in task.languages]


# ----------------------------------------------------------------------------------------------------- pairs


def _xnli_rows(rng: random.Random, lang: str, n: int, labelled: bool) -> List[List[str]]:
  rows = []
  for i in range(n):
    a = _sentence(rng, rng.randint(3, 5))
    label = xtreme.XNLI_LABELS[i % 3]
    if label == 'entailment':
      b = _words(a, lang)
    elif label == 'contradiction':
      b = _words(a, lang) + [_NOT[lang], '!']
    else:
      b = _words(_sentence(rng, rng.randint(3, 5)), lang)
    row = [join(_words(a, lang), lang), join(b, lang)]
    rows.append(row + [label] if labelled else row)
  return rows


def _pawsx_rows(rng: random.Random, lang: str, n: int, labelled: bool) -> List[List[str]]:
  rows = []
  for i in range(n):
    a = _sentence(rng, rng.randint(3, 5))
    if i % 2:
      b = list(a)
      b[0], b[-1] = b[-1], b[0]
      label = '1'
    else:
      b, label = _sentence(rng, rng.randint(3, 5)), '0'
    row = [join(_words(a, lang), lang), join(_words(b, lang), lang)]
    rows.append(row + [label] if labelled else row)
  return rows


def _write_pairs(root: str, task_name: str, languages: Sequence[str], rng: random.Random, n: int) -> None:
  rows_fn = _xnli_rows if task_name == 'xnli' else _pawsx_rows
  train = rows_fn(rng, 'en', n, True)
  # A sentence with a quote: csv.writer quotes the field and the upstream readers keep the quotes.
  train[0] = ['He said "yes"', train[0][1], train[0][2]]
  _write_tsv_rows(os.path.join(root, task_name, 'train-en.tsv'), train)
  for lang in _langs(task_name, languages):
    _write_tsv_rows(os.path.join(root, task_name, f'dev-{lang}.tsv'), rows_fn(rng, lang, n, True))
    _write_tsv_rows(os.path.join(root, task_name, f'test-{lang}.tsv'), rows_fn(rng, lang, n, False))


# ----------------------------------------------------------------------------------------------------- tags


def _tagged_sentence(rng: random.Random, lang: str, task_name: str) -> List[Tuple[str, str]]:
  tokens: List[Tuple[str, str]] = []
  for concept in _sentence(rng, rng.randint(2, 6)):
    if task_name == 'udpos':
      tokens.append((_LEXICON[concept][lang], _UPOS[concept]))
    elif concept in _PEOPLE:
      tokens.append((_LEXICON[concept][lang], 'B-PER'))
    elif concept in _PLACES:
      tokens.extend([(_NEW[lang], 'B-LOC'), (_LEXICON[concept][lang], 'I-LOC')])
    else:
      tokens.append((_LEXICON[concept][lang], 'O'))
  return tokens


def _write_tags(root: str, task_name: str, languages: Sequence[str], rng: random.Random, n: int) -> None:
  task = xtreme.get_task(task_name)

  def write(path: str, labelled: bool, lang: str) -> None:
    # xtreme's files: `token\tlabel` (token only in test), a blank line after each sentence.
    sentences = [_tagged_sentence(rng, lang, task_name) for _ in range(n)]
    text = ''.join(''.join(f'{tok}\t{tag}\n' if labelled else f'{tok}\n' for tok, tag in s) + '\n'
                   for s in sentences)
    _write_text(path, text)

  write(os.path.join(root, task_name, 'train-en.tsv'), True, 'en')
  for lang in _langs(task_name, languages):
    if lang in task.split_languages(xtreme.DEV):
      write(os.path.join(root, task_name, f'dev-{lang}.tsv'), True, lang)
    write(os.path.join(root, task_name, f'test-{lang}.tsv'), False, lang)


# ----------------------------------------------------------------------------------------------------- QA


def _squad(rng: random.Random, lang: str, n: int, prefix: str, blank_answers: bool = False) -> Dict:
  paragraphs = []
  for i in range(n):
    people = list(_PEOPLE)
    rng.shuffle(people)
    places = [rng.choice(_PLACES) for _ in people]
    stop = '。' if lang == 'zh' else '.'
    sentences = [join([_LEXICON[p][lang], *_LIVES_IN[lang].split(' '), _LEXICON[q][lang]], lang) + stop
                 for p, q in zip(people, places)]
    context = ('' if lang == 'zh' else ' ').join(sentences)
    asked = rng.randrange(len(people))
    answer = _LEXICON[places[asked]][lang]
    start = context.index(sentences[asked]) + sentences[asked].index(answer, len(_LEXICON[people[asked]][lang]))
    assert context[start:start + len(answer)] == answer
    answers = [{'answer_start': 0, 'text': ''}] if blank_answers else [{'answer_start': start, 'text': answer}]
    paragraphs.append({'context': context, 'qas': [{
        'id': f'{prefix}-{lang}-{i}', 'question': _WHERE[lang].format(_LEXICON[people[asked]][lang]),
        'answers': answers}]})
  return {'version': '1.1', 'data': [{'title': f'{prefix}-{lang}', 'paragraphs': paragraphs}]}


def _write_json(path: str, document: Dict) -> None:
  _write_text(path, json.dumps(document, ensure_ascii=False))


def _write_qa(root: str, languages: Sequence[str], rng: random.Random, n: int, blank: bool) -> None:
  _write_json(os.path.join(root, 'squad', 'train-v1.1.json'), _squad(rng, 'en', n, 'squad-train'))
  _write_json(os.path.join(root, 'squad', 'dev-v1.1.json'), _squad(rng, 'en', n, 'squad-dev'))
  for lang in _langs('xquad', languages):
    _write_json(os.path.join(root, 'xquad', f'xquad.{lang}.json'), _squad(rng, lang, n, 'xquad', blank))
  for lang in _langs('mlqa', languages):
    for split in ('dev', 'test'):
      _write_json(os.path.join(root, 'mlqa', 'MLQA_V1', split, f'{split}-context-{lang}-question-{lang}.json'),
                  _squad(rng, lang, n, f'mlqa-{split}', blank and split == 'test'))
  train_dir = os.path.join(root, 'tydiqa', 'tydiqa-goldp-v1.1-train')
  _write_json(os.path.join(train_dir, 'tydiqa.goldp.en.train.json'), _squad(rng, 'en', n, 'tydiqa-train'))
  for lang in _langs('tydiqa', languages):
    _write_json(os.path.join(root, 'tydiqa', 'tydiqa-goldp-v1.1-dev', f'tydiqa.goldp.{lang}.dev.json'),
                _squad(rng, lang, n, 'tydiqa-dev', blank))


# ----------------------------------------------------------------------------------------------------- retrieval


def _write_bucc(root: str, languages: Sequence[str], rng: random.Random, n: int) -> None:
  for lang in _langs('bucc2018', languages):
    for split in ('dev', 'test'):
      concepts = [_sentence(rng, rng.randint(4, 7)) for _ in range(n + 2)]
      source_rows, target_rows, gold = [], [], []
      for i, sentence in enumerate(concepts):
        source_id, target_id = f'{lang}-{i + 1:09d}', f'en-{i + 1:09d}'
        if i < n:  # a translation pair; the last two sentences have none on the other side
          gold.append((source_id, target_id))
        if i != n:
          source_rows.append((source_id, join(_words(sentence, lang), lang)))
        if i != n + 1:
          target_rows.append((target_id, join(_words(sentence, 'en'), 'en')))
      rng.shuffle(source_rows)
      rng.shuffle(target_rows)
      prefix = os.path.join(root, 'bucc2018', f'{lang}-en.{split}')
      _write_text(f'{prefix}.{lang}', ''.join(f'{i}\t{s}\n' for i, s in source_rows))
      _write_text(f'{prefix}.en', ''.join(f'{i}\t{s}\n' for i, s in target_rows))
      if split == 'dev':  # xtreme deletes the test gold
        _write_text(f'{prefix}.gold', ''.join(f'{s}\t{t}\n' for s, t in gold))


def _write_tatoeba(root: str, languages: Sequence[str], rng: random.Random, n: int) -> None:
  for lang in _langs('tatoeba', languages):
    concepts = [_sentence(rng, rng.randint(3, 6)) for _ in range(n)]
    source = [join(_words(c, lang), lang) for c in concepts]
    target = sorted(join(_words(c, 'en'), 'en') for c in concepts)  # xtreme sorts the English side
    _write_text(os.path.join(root, 'tatoeba', f'{lang}-en.{lang}'), ''.join(s + '\n' for s in source))
    _write_text(os.path.join(root, 'tatoeba', f'{lang}-en.en'), ''.join(t + '\n' for t in target))


def write_xtreme_dir(root: str, tasks: Optional[Sequence[str]] = None, languages: Sequence[str] = LANGUAGES, *,
                     examples: int = 12, seed: int = 0, blank_test_answers: bool = False) -> str:
  """Write a small XTREME download folder under `root` for `tasks` (default: all nine) and the tasks' languages
  among `languages` (English training data always); `examples` per file. Returns `root`."""
  rng = random.Random(seed)
  names = [xtreme.get_task(t).name for t in (tasks or xtreme.task_names())]
  for name in names:
    kind = xtreme.get_task(name).kind
    if kind == xtreme.SENTENCE_PAIR:
      _write_pairs(root, name, languages, rng, examples)
    elif kind == xtreme.TAGGING:
      _write_tags(root, name, languages, rng, examples)
    elif kind == xtreme.BITEXT_MINING:
      _write_bucc(root, languages, rng, examples)
    elif kind == xtreme.SENTENCE_RETRIEVAL:
      _write_tatoeba(root, languages, rng, examples)
  if any(xtreme.get_task(n).kind == xtreme.SPAN_QA for n in names):
    _write_qa(root, languages, rng, examples, blank_test_answers)
  return root


def write_vocab(path: str, root: str, continuation_pieces: bool = True) -> Tuple[str, int]:
  """A WordPiece vocab for the files under `root` (a `write_xtreme_dir` folder): the special tokens, every whole word
  (`\\w+`) and every character (CJK text is split into characters anyway), then, with `continuation_pieces`, every
  '##' + character, so that a word outside the vocab is spelled rather than [UNK]. Returns (path, vocab size)."""
  words, chars = set(), set()
  for folder, _, names in os.walk(root):
    for name in names:
      with open(os.path.join(folder, name), encoding='utf-8') as f:
        text = f.read()
      words.update(re.findall(r'\w+', text))
      chars.update(c for c in text if not c.isspace())
  pieces = [f'##{c}' for c in sorted(chars)] if continuation_pieces else []
  vocab = list(dict.fromkeys(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', *sorted(words), *sorted(chars), *pieces]))
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(vocab) + '\n')
  return str(path), len(vocab)
