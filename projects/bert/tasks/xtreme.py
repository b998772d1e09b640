"""The XTREME task table: every fact about the nine tasks in one place (files, languages, kind, group, metrics,
training data, submission files).

Facts are those of google-research/xtreme (read 2026-12, commit 838c13b): the folder layout that
`scripts/download_data.sh` + `utils_preprocess.py` write under one download directory, the language lists and task
groups of `evaluate.py` (XTREME_TASK2LANGS, XTREME_GROUP2TASK, in its order), and the submission files it reads:
`{task}/test-{lang}.tsv` (or `.json` for QA) in folders udpos panx xnli pawsx xquad mlqa tydiqa bucc2018 tatoeba.

Protocol (zero-shot cross-lingual transfer): fine-tune once on English training data, evaluate every language of
the task. Retrieval tasks (BUCC, Tatoeba) are not fine-tuned. Model selection uses the English dev set (xtreme's
scripts train with `--train_langs en` and select on it); per-language dev scores are reported where the language
has dev data. Languages without dev data are skipped for dev scores, as xtreme's run_tag.py does ("Language ...
does not exist"): the UD-POS treebanks of v2.5 for kk (train and test only), th, tl and yo (test only). PAN-X (the
Rahimi et al. splits) has train, dev and test for all 40 languages; XQuAD and TyDiQA-GoldP have no dev sets of
their own (XQuAD selects on SQuAD v1.1 dev; TyDiQA-GoldP's test set is its official dev set).

File formats (what `datasets/xtreme_reader.py` reads):
  sentence pairs  `text_a\\ttext_b\\tlabel` (no label in test files), no header; written by csv.writer, but read,
                  as xtreme's and Model Garden's readers do, by splitting at tabs with no unquoting.
  tags            `token\\tlabel` per line (token only in test files), a blank line between sentences; the PAN-X
                  `lang:` token prefix is already stripped by utils_preprocess.py.
  SQuAD JSON      {'data': [{'paragraphs': [{'context', 'qas': [{'id', 'question', 'answers'}]}]}], 'version'}.
  BUCC            `{lang}-en.{split}.{lang}` / `.en`: `id\\tsentence` lines (ids like 'de-000000001');
                  `{lang}-en.dev.gold`: `src_id\\ten_id` lines (the test gold is withheld).
  Tatoeba         `{lang}-en.{lang}` and `{lang}-en.en`: one sentence a line; the English lines are sorted, so
                  the alignment is hidden. We read the label of source line i as the index of its translation's
                  English line (LASER's protocol: each source sentence retrieves an English one). xtreme's code does
                  not pin the direction: evaluate.py compares lines, and its evaluate_retrieval.py searches the
                  sources for each English line of LASER's aligned files, where both directions agree.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple

# Task groups as evaluate.py names them (XTREME_GROUP2TASK) and how the paper names them.
CLASSIFICATION = 'classification'
STRUCTURED_PREDICTION = 'tagging'
QUESTION_ANSWERING = 'qa'
RETRIEVAL = 'retrieval'
GROUPS: Tuple[str, ...] = (CLASSIFICATION, STRUCTURED_PREDICTION, QUESTION_ANSWERING, RETRIEVAL)
GROUP_TITLES: Mapping[str, str] = {
    CLASSIFICATION: 'Sentence classification', STRUCTURED_PREDICTION: 'Structured prediction',
    QUESTION_ANSWERING: 'Question answering', RETRIEVAL: 'Sentence retrieval'}

# Task kinds: one reader (and, later, one records writer and one head) each.
SENTENCE_PAIR = 'sentence_pair'
TAGGING = 'tagging'
SPAN_QA = 'span_qa'
BITEXT_MINING = 'bitext_mining'
SENTENCE_RETRIEVAL = 'sentence_retrieval'
KINDS: Tuple[str, ...] = (SENTENCE_PAIR, TAGGING, SPAN_QA, BITEXT_MINING, SENTENCE_RETRIEVAL)

# Metric names, as evaluate.py's metric functions return them (all percentages).
ACCURACY = 'accuracy'
F1 = 'f1'
PRECISION = 'precision'
RECALL = 'recall'
EXACT_MATCH = 'exact_match'

TRAIN, DEV, TEST = 'train', 'dev', 'test'
SPLITS: Tuple[str, ...] = (TRAIN, DEV, TEST)
TARGET_LANGUAGE = 'en'  # BUCC and Tatoeba retrieve English sentences; every task trains on English.


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """Where one split lives, relative to the XTREME download directory; `{lang}` stands for the language.

  `path` is the examples file (TSV, tags or SQuAD JSON) or, for retrieval, the source-language sentences; `target`
  the English sentences and `gold` the gold pairs (BUCC dev) of retrieval tasks. `languages` are the languages
  the split has (None: every language of the task).
  """

  path: str
  target: Optional[str] = None
  gold: Optional[str] = None
  languages: Optional[Tuple[str, ...]] = None

  def files(self, lang: str) -> Dict[str, str]:
    """{'path' | 'target' | 'gold': relative path} of `lang`."""
    roles = {'path': self.path, 'target': self.target, 'gold': self.gold}
    return {role: template.format(lang=lang) for role, template in roles.items() if template is not None}


@dataclasses.dataclass(frozen=True)
class XtremeTask:
  """One XTREME task.

  `name` is evaluate.py's name, which is also its sub-folder of the download directory and of a submission;
  `languages` are the evaluation languages in evaluate.py's order. `metrics` are what evaluate.py computes per
  language; the task's score (`avg_metric` in evaluate.py) is the language mean of `main_metric`, except for QA,
  where it is (mean EM + mean F1) / 2. `labels` is the label list in id order (Model Garden's processors' order),
  None for QA and retrieval. `splits` maps 'train' / 'dev' / 'test' to their files; a task without a split has no
  entry. `train_data` says what the English training set is.
  """

  name: str
  title: str
  kind: str
  group: str
  languages: Tuple[str, ...]
  metrics: Tuple[str, ...]
  main_metric: str
  splits: Mapping[str, SplitFiles]
  train_data: str
  labels: Optional[Tuple[str, ...]] = None

  @property
  def is_trained(self) -> bool:
    """Whether the task fine-tunes (retrieval uses the pre-trained encoder as it is)."""
    return TRAIN in self.splits

  @property
  def num_labels(self) -> int:
    if self.labels is None:
      raise ValueError(f'XTREME task {self.name} ({self.kind}) has no label set.')
    return len(self.labels)

  @property
  def submission_suffix(self) -> str:
    """'json' for QA, else 'tsv' (evaluate.py's get_suffix)."""
    return 'json' if self.group == QUESTION_ANSWERING else 'tsv'

  def submission_file(self, lang: str) -> str:
    """Path of `lang`'s predictions inside a submission folder, e.g. 'panx/test-de.tsv'."""
    self._check_language(lang)
    return f'{self.name}/test-{lang}.{self.submission_suffix}'

  def split_languages(self, split: str) -> Tuple[str, ...]:
    """The languages that have `split` (in the task's language order); () for a split the task lacks."""
    files = self.splits.get(split)
    if files is None:
      return ()
    return self.languages if files.languages is None else files.languages

  def languages_without(self, split: str) -> Tuple[str, ...]:
    """Task languages that have no `split` data (e.g. UD-POS dev: kk, th, tl, yo)."""
    present = set(self.split_languages(split))
    return tuple(lang for lang in self.languages if lang not in present)

  def files(self, split: str, lang: str) -> Dict[str, str]:
    """{'path' | 'target' | 'gold': path relative to the download directory} of `lang`'s `split`."""
    if split not in self.splits:
      raise ValueError(f'XTREME task {self.name} has no {split!r} split; it has {", ".join(self.splits)}.')
    if lang not in self.split_languages(split):
      raise ValueError(f'XTREME task {self.name} has no {split!r} data for language {lang!r}; languages with it: '
                       f'{", ".join(self.split_languages(split))}.')
    return self.splits[split].files(lang)

  def _check_language(self, lang: str) -> None:
    if lang not in self.languages:
      raise ValueError(f'{lang!r} is not a language of XTREME task {self.name}; its languages: '
                       f'{", ".join(self.languages)}.')


def _langs(spec: str) -> Tuple[str, ...]:
  return tuple(spec.split(','))


# evaluate.py's XTREME_TASK2LANGS (the XTREME, not XTREME-R, lists), in its order.
XNLI_LANGUAGES = _langs('ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh')
PAWSX_LANGUAGES = _langs('de,en,es,fr,ja,ko,zh')
UDPOS_LANGUAGES = _langs('af,ar,bg,de,el,en,es,et,eu,fa,fi,fr,he,hi,hu,id,it,ja,kk,ko,mr,nl,pt,ru,ta,te,th,tl,tr,'
                         'ur,vi,yo,zh')
PANX_LANGUAGES = _langs('ar,he,vi,id,jv,ms,tl,eu,ml,ta,te,af,nl,en,de,el,bn,hi,mr,ur,fa,fr,it,pt,es,bg,ru,ja,ka,ko,'
                        'th,sw,yo,my,zh,kk,tr,et,fi,hu')
XQUAD_LANGUAGES = _langs('en,es,de,el,ru,tr,ar,vi,th,zh,hi')
MLQA_LANGUAGES = _langs('en,es,de,ar,hi,vi,zh')
TYDIQA_LANGUAGES = _langs('en,ar,bn,fi,id,ko,ru,sw,te')
BUCC_LANGUAGES = _langs('de,fr,ru,zh')
TATOEBA_LANGUAGES = _langs('ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,pt,es,bg,ru,ja,ka,ko,th,'
                           'sw,zh,kk,tr,et,fi,hu')

# UD v2.5 treebanks without a dev file: Kazakh-KTB (train, test), Thai-PUD, Tagalog-TRG, Yoruba-YTB (test only).
UDPOS_WITHOUT_DEV = ('kk', 'th', 'tl', 'yo')

# Model Garden's label orders (classifier_data_lib.XtremeXnliProcessor / XtremePawsxProcessor,
# tagging_data_lib.UdposProcessor / PanxProcessor), so that our label ids equal its records'.
XNLI_LABELS = ('contradiction', 'entailment', 'neutral')
PAWSX_LABELS = ('0', '1')
UPOS_LABELS = ('ADJ', 'ADP', 'ADV', 'AUX', 'CCONJ', 'DET', 'INTJ', 'NOUN', 'NUM', 'PART', 'PRON', 'PROPN', 'PUNCT',
               'SCONJ', 'SYM', 'VERB', 'X')
PANX_LABELS = ('O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'B-ORG', 'I-ORG')

_EN = (TARGET_LANGUAGE,)
_SQUAD_TRAIN = SplitFiles('squad/train-v1.1.json', languages=_EN)


def _per_language(folder: str, *, train: bool = True, dev_languages: Optional[Tuple[str, ...]] = None
                  ) -> Dict[str, SplitFiles]:
  """utils_preprocess.py's `{folder}/{split}-{lang}.tsv` files (English training data only is used)."""
  splits = {DEV: SplitFiles(f'{folder}/dev-{{lang}}.tsv', languages=dev_languages),
            TEST: SplitFiles(f'{folder}/test-{{lang}}.tsv')}
  if train:
    splits = {TRAIN: SplitFiles(f'{folder}/train-en.tsv', languages=_EN), **splits}
  return splits


XTREME_TASKS: Dict[str, XtremeTask] = {t.name: t for t in [
    XtremeTask(
        name='xnli', title='XNLI', kind=SENTENCE_PAIR, group=CLASSIFICATION, languages=XNLI_LANGUAGES,
        metrics=(ACCURACY,), main_metric=ACCURACY, labels=XNLI_LABELS, splits=_per_language('xnli'),
        # utils_preprocess.py writes XNLI-MT's multinli.train.en.tsv (MNLI train) as xnli/train-en.tsv.
        train_data='MNLI train (English), as xnli/train-en.tsv'),
    XtremeTask(
        name='pawsx', title='PAWS-X', kind=SENTENCE_PAIR, group=CLASSIFICATION, languages=PAWSX_LANGUAGES,
        metrics=(ACCURACY,), main_metric=ACCURACY, labels=PAWSX_LABELS, splits=_per_language('pawsx'),
        train_data='PAWS (Wiki) train, English'),
    XtremeTask(
        name='udpos', title='UD-POS', kind=TAGGING, group=STRUCTURED_PREDICTION, languages=UDPOS_LANGUAGES,
        metrics=(F1, PRECISION, RECALL), main_metric=F1, labels=UPOS_LABELS,
        splits=_per_language('udpos', dev_languages=tuple(
            lang for lang in UDPOS_LANGUAGES if lang not in UDPOS_WITHOUT_DEV)),
        train_data='UD v2.5 English treebanks (EWT, GUM, LinES, ParTUT) train'),
    XtremeTask(
        name='panx', title='PAN-X', kind=TAGGING, group=STRUCTURED_PREDICTION, languages=PANX_LANGUAGES,
        metrics=(F1, PRECISION, RECALL), main_metric=F1, labels=PANX_LABELS, splits=_per_language('panx'),
        train_data='WikiANN English train (Rahimi et al. splits)'),
    XtremeTask(
        name='xquad', title='XQuAD', kind=SPAN_QA, group=QUESTION_ANSWERING, languages=XQUAD_LANGUAGES,
        metrics=(EXACT_MATCH, F1), main_metric=F1,
        splits={TRAIN: _SQUAD_TRAIN, DEV: SplitFiles('squad/dev-v1.1.json', languages=_EN),
                TEST: SplitFiles('xquad/xquad.{lang}.json')},
        train_data='SQuAD v1.1 train'),
    XtremeTask(
        name='mlqa', title='MLQA', kind=SPAN_QA, group=QUESTION_ANSWERING, languages=MLQA_LANGUAGES,
        metrics=(EXACT_MATCH, F1), main_metric=F1,
        splits={TRAIN: _SQUAD_TRAIN,
                DEV: SplitFiles('mlqa/MLQA_V1/dev/dev-context-{lang}-question-{lang}.json'),
                TEST: SplitFiles('mlqa/MLQA_V1/test/test-context-{lang}-question-{lang}.json')},
        train_data='SQuAD v1.1 train'),
    XtremeTask(
        name='tydiqa', title='TyDiQA-GoldP', kind=SPAN_QA, group=QUESTION_ANSWERING, languages=TYDIQA_LANGUAGES,
        metrics=(EXACT_MATCH, F1), main_metric=F1,
        splits={TRAIN: SplitFiles('tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json', languages=_EN),
                TEST: SplitFiles('tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json')},
        train_data='TyDiQA-GoldP v1.1 English train'),
    XtremeTask(
        name='bucc2018', title='BUCC', kind=BITEXT_MINING, group=RETRIEVAL, languages=BUCC_LANGUAGES,
        metrics=(F1, PRECISION, RECALL), main_metric=F1,
        splits={DEV: SplitFiles('bucc2018/{lang}-en.dev.{lang}', target='bucc2018/{lang}-en.dev.en',
                                gold='bucc2018/{lang}-en.dev.gold'),
                TEST: SplitFiles('bucc2018/{lang}-en.test.{lang}', target='bucc2018/{lang}-en.test.en')},
        train_data='none (the threshold on mined-pair scores is chosen on dev)'),
    XtremeTask(
        name='tatoeba', title='Tatoeba', kind=SENTENCE_RETRIEVAL, group=RETRIEVAL, languages=TATOEBA_LANGUAGES,
        metrics=(ACCURACY,), main_metric=ACCURACY,
        splits={TEST: SplitFiles('tatoeba/{lang}-en.{lang}', target='tatoeba/{lang}-en.en')},
        train_data='none'),
]}

# evaluate.py's XTREME_GROUP2TASK (derived from the table, so a task's group has one owner).
GROUP_TASKS: Dict[str, Tuple[str, ...]] = {
    group: tuple(name for name, task in XTREME_TASKS.items() if task.group == group) for group in GROUPS}

# Names a user may type for a task ('bucc' for the folder bucc2018, 'paws-x', 'ud-pos', ...).
_ALIASES = {'bucc': 'bucc2018', 'tydiqagoldp': 'tydiqa', 'wikiann': 'panx'}


def task_names() -> List[str]:
  return list(XTREME_TASKS)


def get_task(name: str) -> XtremeTask:
  """The task for `name`, case-insensitive, with or without dashes ('PAWS-X' == 'pawsx', 'bucc' == 'bucc2018')."""
  key = str(name).lower().replace('-', '').replace('_', '')
  key = _ALIASES.get(key, key)
  if key not in XTREME_TASKS:
    raise ValueError(f'Unknown XTREME task {name!r}; known tasks: {", ".join(XTREME_TASKS)} (or "all").')
  return XTREME_TASKS[key]


def group_of(task_name: str) -> str:
  return get_task(task_name).group
