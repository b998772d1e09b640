"""XTREME's official scores, as google-research/xtreme's evaluate.py and the scripts it calls compute them.

Per language (all percentages, named as evaluate.py names them):
  xnli, pawsx, tatoeba  accuracy: predicted label (Tatoeba: retrieved English line index) == gold label.
  udpos, panx           f1, precision, recall of seqeval's default (conlleval) chunks, micro-averaged: entity-level
                        for PAN-X. evaluate.py scores UD-POS with the same function, so POS tags (no B-/I- prefix)
                        are chunked too: a label's first letter is read as the chunk tag ('NOUN' -> 'N'), so a run
                        of equal tags is one chunk, and SCONJ/SYM ('S' = single) and INTJ ('I') split runs as those
                        tags do. This is not token accuracy; it is what the leaderboard reports (`seqeval_scores`).
  xquad, tydiqa         exact_match, f1 of the SQuAD v1.1 script (`squad_metrics.official_scores`).
  mlqa                  exact_match, f1 of MLQA's script: answers normalised per language (`mlqa_normalize`).
  bucc2018              f1, precision, recall of the predicted (source id, English id) pairs against the gold pairs;
                        the pairs are the mined candidates whose score reaches the threshold that maximises F1 on
                        the dev set (`bucc_threshold`, `bucc_extract`).

Submission files are written, read and scored in `xtreme_submission.py`.

Per task: the language mean of each metric ('avg_f1', ...) and the task score 'avg_metric': mean F1 (tagging, BUCC)
or accuracy, and for QA (mean EM + mean F1) / 2. Group scores: the mean of the task scores of a group whose tasks are
all scored. The XTREME score ('all_task' in evaluate.py): the mean of the nine task scores (evaluate.py averages
tasks, not the four group means).
"""

from __future__ import annotations

import collections
import functools
import logging
import re
import string
import sys
import unicodedata
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from projects.bert.tasks import xtreme

Pair = Tuple[str, str]

# ---------------------------------------------------------------------------------------------------------- accuracy


def accuracy(labels: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """{'accuracy': % of positions where the prediction equals the label} (evaluate.py's `accuracy`)."""
  if len(labels) != len(predictions):
    raise ValueError(f'{len(predictions)} predictions for {len(labels)} labels.')
  if not labels:
    raise ValueError('No labels to score.')
  correct = sum(int(p == t) for p, t in zip(predictions, labels))
  return {xtreme.ACCURACY: 100.0 * correct / len(labels)}


# ---------------------------------------------------------------------------------------------------------- seqeval

# conlleval's chunk boundaries, on (tag letter, type) of consecutive tokens.
_CLOSED_AFTER = frozenset('ES')            # a chunk ends after an E- or S- token
_OPEN_TAGS = frozenset('BI')
_ENDS_OPEN = frozenset('BSO')              # ... after a B-/I- token followed by one of these
_STARTS = frozenset('BS')                  # a chunk starts at a B- or S- token
_CONTINUES = frozenset('EI')               # ... and at an E-/I- token after O, E- or S-
_OUTSIDE = frozenset('O.')                 # tags that are in no chunk
_BEFORE_CONTINUE = frozenset('ESO')


def _tag_and_type(label: str) -> Tuple[str, str]:
  """seqeval 0.0.x's reading of a label: its first letter and the text after its last '-' (the whole label when it
  has none: 'B-PER' -> ('B', 'PER'), 'NOUN' -> ('N', 'NOUN'))."""
  return label[0], label.rsplit('-', 1)[-1]


def tag_chunks(sentences: Sequence[Sequence[str]]) -> Set[Tuple[str, int, int]]:
  """{(type, first, last)} of the chunks of sentences of labels, positions counted over the sentences joined with
  one 'O' after each (so no chunk spans two sentences), as seqeval's `get_entities` finds them."""
  chunks: Set[Tuple[str, int, int]] = set()
  prev_tag, prev_type, begin = 'O', '', 0
  labels = [label for sentence in sentences for label in [*sentence, 'O']] + ['O']
  for position, label in enumerate(labels):
    tag, type_ = _tag_and_type(label)
    type_changed = prev_type != type_
    if (prev_tag in _CLOSED_AFTER or (prev_tag in _OPEN_TAGS and tag in _ENDS_OPEN)
        or (prev_tag not in _OUTSIDE and type_changed)):
      chunks.add((prev_type, begin, position - 1))
    if (tag in _STARTS or (prev_tag in _BEFORE_CONTINUE and tag in _CONTINUES)
        or (tag not in _OUTSIDE and type_changed)):
      begin = position
    prev_tag, prev_type = tag, type_
  return chunks


def seqeval_scores(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> Dict[str, float]:
  """{'f1', 'precision', 'recall'} in % of the chunks of `predictions` against those of `labels` (module doc).

  labels / predictions: one list of tags per sentence, sentences and their lengths equal. Chunks are seqeval's
  (default mode) with seqeval 0.0.x's chunk types, which give exactly the scores of xtreme's evaluate_test.py on its
  mock submission; seqeval >= 1.0 types unprefixed tags by all but their first letter (CCONJ and SCONJ both 'CONJ'),
  which changes UD-POS scores (70.40 instead of 70.22 there) and nothing for B-/I- tags. Precision (recall) is 0
  when nothing is predicted (labelled), F1 0 when both are.
  """
  if len(labels) != len(predictions):
    raise ValueError(f'{len(predictions)} predicted sentences for {len(labels)} labelled sentences.')
  for i, (gold, pred) in enumerate(zip(labels, predictions)):
    if len(gold) != len(pred):
      raise ValueError(f'Sentence {i}: {len(pred)} predicted tags for {len(gold)} tokens.')
    for label in (*gold, *pred):
      if not label:
        raise ValueError(f'Sentence {i}: an empty tag.')
  true, pred = tag_chunks(labels), tag_chunks(predictions)
  correct = len(true & pred)
  precision = correct / len(pred) if pred else 0.0
  recall = correct / len(true) if true else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
  return {xtreme.F1: 100.0 * f1, xtreme.PRECISION: 100.0 * precision, xtreme.RECALL: 100.0 * recall}


# ------------------------------------------------------------------------------------------------------- SQuAD, MLQA


def squad_scores(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str]) -> Dict[str, float]:
  """{'exact_match', 'f1'} in % of the SQuAD v1.1 script (XQuAD, TyDiQA-GoldP); dataset: a SQuAD JSON's 'data'."""
  from projects.bert.tasks import squad_metrics

  return squad_metrics.official_scores(dataset, predictions)


# Articles MLQA's script removes, per answer language (whole words). Arabic: see `_remove_articles`.
MLQA_ARTICLES: Mapping[str, Tuple[str, ...]] = {
    'en': ('a', 'an', 'the'),
    'es': ('un', 'una', 'unos', 'unas', 'el', 'la', 'los', 'las'),
    'de': ('ein', 'eine', 'einen', 'einem', 'eines', 'einer', 'der', 'die', 'das', 'den', 'dem', 'des'),
    'vi': ('của', 'là', 'cái', 'chiếc', 'những'),
    'hi': (),  # no formal articles
    'zh': (),
    'ar': (),
}
ARABIC_ARTICLE = 'ال'
# Languages tokenised at whitespace; the others (Chinese) per CJK character, with whitespace runs between them.
MLQA_WHITESPACE_LANGUAGES = ('en', 'es', 'hi', 'vi', 'de', 'ar')
MLQA_CHARACTER_LANGUAGES = ('zh',)
MLQA_LANGUAGES = MLQA_WHITESPACE_LANGUAGES + MLQA_CHARACTER_LANGUAGES


@functools.lru_cache(maxsize=1)
def mlqa_punctuation() -> frozenset:
  """Every code point whose Unicode category is punctuation (P*), plus ASCII `string.punctuation` (which adds the
  ASCII symbols $+<=>^`|~). MLQA's script scans code points below sys.maxunicode."""
  punct = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith('P')}
  return frozenset(punct.union(string.punctuation))


@functools.lru_cache(maxsize=None)
def _article_pattern(lang: str) -> Optional[re.Pattern]:
  words = MLQA_ARTICLES[lang]
  return re.compile(r'\b(?:' + '|'.join(words) + r')\b') if words else None


def _remove_articles(text: str, lang: str) -> str:
  if lang == 'ar':
    # MLQA's pattern is '\sال^|ال': its first branch can never match ('^' after characters), so every ال, also
    # inside a word, becomes a space.
    return text.replace(ARABIC_ARTICLE, ' ')
  pattern = _article_pattern(lang)
  return text if pattern is None else pattern.sub(' ', text)


def _is_cjk(char: str) -> bool:
  return '\u4e00' <= char <= '\u9fa5'  # the range MLQA's script tests (not the whole CJK block)


def _character_tokens(text: str, punctuation: frozenset) -> List[str]:
  """Each CJK character (or punctuation mark) is a token; the text between them is split at whitespace."""
  tokens: List[str] = []
  start = 0
  for i, char in enumerate(text):
    if _is_cjk(char) or char in punctuation:
      tokens.extend(text[start:i].split())
      tokens.append(char)
      start = i + 1
  tokens.extend(text[start:].split())
  return tokens


def mlqa_normalize(text: str, lang: str) -> str:
  """MLQA's answer normalisation: lower-case, drop punctuation, drop `lang`'s articles, re-join the tokens
  (whitespace tokens, or for zh single CJK characters and the whitespace tokens between them) with one space."""
  if lang not in MLQA_LANGUAGES:
    raise ValueError(f'MLQA scores answers in {", ".join(MLQA_LANGUAGES)}; got language {lang!r}.')
  punctuation = mlqa_punctuation()
  text = ''.join(ch for ch in text.lower() if ch not in punctuation)
  text = _remove_articles(text, lang)
  tokens = text.split() if lang in MLQA_WHITESPACE_LANGUAGES else _character_tokens(text, punctuation)
  return ' '.join(t for t in tokens if t.strip())


def _token_f1(prediction: List[str], truth: List[str]) -> float:
  common = collections.Counter(prediction) & collections.Counter(truth)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision, recall = same / len(prediction), same / len(truth)
  return 2 * precision * recall / (precision + recall)


def mlqa_exact_match(prediction: str, truth: str, lang: str) -> float:
  return float(mlqa_normalize(prediction, lang) == mlqa_normalize(truth, lang))


def mlqa_f1(prediction: str, truth: str, lang: str) -> float:
  return _token_f1(mlqa_normalize(prediction, lang).split(), mlqa_normalize(truth, lang).split())


def mlqa_scores(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str], lang: str) -> Dict[str, float]:
  """{'exact_match', 'f1'} in % of MLQA's script for answers in `lang`: per question the best score over its gold
  answers; a question without a prediction scores 0 (and is counted)."""
  exact = f1 = 0.0
  total = unanswered = 0
  for article in dataset:
    for paragraph in article['paragraphs']:
      for qa in paragraph['qas']:
        total += 1
        if qa['id'] not in predictions:
          unanswered += 1
          continue
        prediction = predictions[qa['id']]
        truths = [answer['text'] for answer in qa['answers']]
        exact += max(mlqa_exact_match(prediction, t, lang) for t in truths)
        f1 += max(mlqa_f1(prediction, t, lang) for t in truths)
  if total == 0:
    raise ValueError('No questions to score.')
  if unanswered:
    logging.warning('MLQA %s: %d of %d questions have no prediction and score 0.', lang, unanswered, total)
  return {xtreme.EXACT_MATCH: 100.0 * exact / total, xtreme.F1: 100.0 * f1 / total}


# ---------------------------------------------------------------------------------------------------------- BUCC


def unique_sentence_ids(ids: Sequence[str], sentences: Sequence[str]) -> Dict[str, str]:
  """{sentence: id} of a BUCC file's lines, sentences stripped; a sentence that occurs more than once is left out,
  as xtreme's `read_sent2id` does (a mined pair of such a sentence cannot be mapped to one id)."""
  if len(ids) != len(sentences):
    raise ValueError(f'{len(ids)} ids for {len(sentences)} sentences.')
  sentence_ids: Dict[str, str] = {}
  repeated: Set[str] = set()
  for sid, sentence in zip(ids, sentences):
    sentence = sentence.strip()
    if sentence in sentence_ids:
      repeated.add(sentence)
    else:
      sentence_ids[sentence] = sid
  for sentence in repeated:
    del sentence_ids[sentence]
  return sentence_ids


def bucc_candidate_scores(candidates: Iterable[Tuple[float, str, str]], source_ids: Mapping[str, str],
                          target_ids: Mapping[str, str]) -> Dict[Pair, float]:
  """{(source id, English id): score} of mined (score, source sentence, English sentence) candidates, as xtreme's
  `read_candidate2score`: sentences without a unique id are dropped, a pair mined twice keeps its higher score."""
  scores: Dict[Pair, float] = {}
  for score, source, target in candidates:
    source, target = source.strip(), target.strip()
    if source in source_ids and target in target_ids:
      pair = (source_ids[source], target_ids[target])
      scores[pair] = max(float(score), scores.get(pair, float(score)))
  return scores


def bucc_threshold(candidate_scores: Mapping[Pair, float], gold: Iterable[Pair]) -> float:
  """The score threshold that maximises F1 of the kept candidates against `gold` (xtreme's `bucc_optimize`).

  Candidates are ranked by score (ties keep their order); keeping the top i has F1(i); the first i with the highest
  F1 wins and the threshold is the midpoint between the i-th and (i+1)-th scores. Where the best i is the last
  candidate, xtreme's code indexes past its list; the threshold is then that candidate's score (all are kept).
  With no correct candidate the threshold stays 0, xtreme's initial value.
  """
  gold = set(gold)
  if not gold:
    raise ValueError('BUCC threshold selection needs gold pairs; got none.')
  ranked = sorted(candidate_scores.items(), key=lambda item: -item[1])
  threshold, best_f1, correct = 0.0, 0.0, 0
  for i, (pair, score) in enumerate(ranked):
    correct += pair in gold
    if correct == 0:
      continue
    precision, recall = correct / (i + 1), correct / len(gold)
    f1 = 2 * precision * recall / (precision + recall)
    if f1 > best_f1:
      best_f1 = f1
      threshold = (score + ranked[i + 1][1]) / 2 if i + 1 < len(ranked) else score
  return threshold


def bucc_extract(candidate_scores: Mapping[Pair, float], threshold: float) -> List[Pair]:
  """The candidate pairs whose score is >= `threshold` (xtreme's `bucc_extract`), in the candidates' order."""
  return [pair for pair, score in candidate_scores.items() if score >= threshold]


def bucc_f1(gold: Iterable[Pair], predicted: Iterable[Pair]) -> Dict[str, float]:
  """{'f1', 'precision', 'recall'} in % of the predicted pairs (as a set) against the gold pairs (evaluate.py)."""
  gold, predicted = set(gold), set(predicted)
  correct = len(gold & predicted)
  if correct == 0:
    return {xtreme.F1: 0.0, xtreme.PRECISION: 0.0, xtreme.RECALL: 0.0}
  precision, recall = correct / len(predicted), correct / len(gold)
  return {xtreme.F1: 100.0 * 2 * precision * recall / (precision + recall),
          xtreme.PRECISION: 100.0 * precision, xtreme.RECALL: 100.0 * recall}


# ---------------------------------------------------------------------------------------------------------- per task


def score_language(task_name: str, labels: Any, predictions: Any, lang: str) -> Dict[str, float]:
  """One language's scores of `task_name` from what the submission readers return (`xtreme_submission`):
  label / prediction lists (classification, Tatoeba), sentences of tags (tagging), a SQuAD 'data' list and an
  {id: answer} dict (QA), 'src_id\\ten_id' lines (BUCC)."""
  task = xtreme.get_task(task_name)
  if task.kind == xtreme.TAGGING:
    return seqeval_scores(labels, predictions)
  if task.kind == xtreme.BITEXT_MINING:
    return bucc_f1([tuple(line.split('\t')) for line in labels], [tuple(line.split('\t')) for line in predictions])
  if task.name == 'mlqa':
    return mlqa_scores(labels, predictions, lang)
  if task.kind == xtreme.SPAN_QA:
    return squad_scores(labels, predictions)
  return accuracy(labels, predictions)


def task_average(task_name: str, per_language: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
  """{'avg_{metric}': language mean of each metric, 'avg_metric': the task score} of {lang: {metric: value}}."""
  task = xtreme.get_task(task_name)
  if not per_language:
    raise ValueError(f'No language scores for XTREME task {task.name}.')
  by_metric: Dict[str, List[float]] = collections.defaultdict(list)
  for scores in per_language.values():
    for metric, value in scores.items():
      by_metric[metric].append(value)
  averages = {f'avg_{metric}': sum(values) / len(values) for metric, values in by_metric.items()}
  if task.group == xtreme.QUESTION_ANSWERING:
    averages['avg_metric'] = (averages['avg_exact_match'] + averages['avg_f1']) / 2
  else:
    averages['avg_metric'] = averages[f'avg_{task.main_metric}']
  return averages


def xtreme_summary(task_scores: Mapping[str, float]) -> Dict[str, float]:
  """Group scores and the XTREME score of {task name: task score ('avg_metric')}.

  A group appears when all its tasks are scored (mean of their task scores); 'xtreme_score' (evaluate.py's
  'all_task') when all nine are: the mean of the nine task scores.
  """
  scores = {xtreme.get_task(name).name: value for name, value in task_scores.items()}
  summary: Dict[str, float] = {}
  for group, names in xtreme.GROUP_TASKS.items():
    if all(name in scores for name in names):
      summary[group] = sum(scores[name] for name in names) / len(names)
  if all(name in scores for name in xtreme.XTREME_TASKS):
    summary['xtreme_score'] = sum(scores[name] for name in xtreme.XTREME_TASKS) / len(xtreme.XTREME_TASKS)
  return summary
