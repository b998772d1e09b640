"""Test data for the BERT tests, made by the official TF-Models writers: a small corpus, a tiny WordPiece vocab,
pretraining records (official create_pretraining_data.py), GLUE-format task folders with a learnable synthetic
signal and their records (our prepare path, i.e. the official classifier writer).

Typical use in a test or fixture:
  files, vocab = make_pretraining_records(tmp_path / 'pt')
  out_dir, data = make_glue_records(tmp_path / 'glue', 'mrpc', vocab_path=vocab)
  config.dataset = {'task': 'mrpc', 'data_dir': out_dir}
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import re
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]
SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Six short documents, one sentence a line (the input format of create_pretraining_data.py).
CORPUS_DOCUMENTS: Tuple[Tuple[str, ...], ...] = (
    ('The old lighthouse stood on a rock at the edge of the bay.',
     'Every night its keeper climbed the stairs to light the lamp.',
     'Ships passing in the dark watched for the bright beam.',
     'One winter a storm broke the glass at the top of the tower.',
     'The keeper worked until morning to repair the window.',
     'When the sun rose the lamp was burning again.',
     'The sailors in the harbor thanked the keeper for his work.'),
    ('Maria grows tomatoes and beans in a small garden behind her house.',
     'She waters the plants early in the morning before work.',
     'In summer the garden is full of bees and butterflies.',
     'Her neighbors often stop by to ask for advice.',
     'She tells them that good soil matters more than anything else.',
     'At the end of the season she shares the harvest with friends.',
     'The children of the street help her pick the beans.',
     'Next year she wants to plant apple trees near the fence.'),
    ('The train to the mountains leaves the station at nine.',
     'Most passengers carry heavy bags and warm coats.',
     'The journey takes four hours through forests and small towns.',
     'Near the end the track climbs along a narrow river.',
     'Snow covers the peaks for most of the year.',
     'Travelers step off the train into cold clean air.',
     'A small hotel near the station serves hot soup.'),
    ('Our town library opened a new reading room last spring.',
     'The room has large windows and quiet corners for study.',
     'Students come after school to read and do homework.',
     'On weekends the library runs a club for young writers.',
     'The members read their stories aloud to each other.',
     'Some of the stories were printed in the local paper.',
     'The librarian says the room is full almost every day.'),
    ('A fox lived at the edge of the forest near a farm.',
     'Each evening it watched the chickens from behind a wall.',
     'The farmer built a tall fence to keep the chickens safe.',
     'The fox tried to dig under the fence but the ground was hard.',
     'After many nights it gave up and hunted mice in the field.',
     'The farmer was glad and the chickens slept in peace.'),
    ('The city council voted to build a new bridge over the river.',
     'The old bridge was too narrow for modern traffic.',
     'Engineers studied the river for a whole year before the work began.',
     'The new bridge has lanes for cars, bikes and people on foot.',
     'It opened in the autumn with music and a small parade.',
     'Now the trip across town takes ten minutes less.',
     'People walk over the bridge in the evening to watch the sunset.'),
)

# Words of the synthetic GLUE data: neutral filler, one cue set per label position, STS-B "unrelated" words.
_FILLER = ('the', 'a', 'man', 'woman', 'dog', 'cat', 'house', 'car', 'tree', 'river', 'book', 'city', 'garden',
           'walks', 'reads', 'sees', 'finds', 'likes', 'near', 'with', 'small', 'old', 'red', 'green', 'today')
_CUES = (('bad', 'awful', 'poor'), ('good', 'great', 'nice'), ('maybe', 'perhaps', 'possibly'))
_UNRELATED = ('apple', 'stone', 'cloud', 'piano', 'window')


def corpus_text(documents: Sequence[Sequence[str]] = CORPUS_DOCUMENTS) -> str:
  """The corpus in create_pretraining_data.py's format: one sentence a line, a blank line between documents."""
  return '\n\n'.join('\n'.join(doc) for doc in documents) + '\n'


def write_corpus(path: PathLike, documents: Sequence[Sequence[str]] = CORPUS_DOCUMENTS) -> str:
  os.makedirs(os.path.dirname(os.fspath(path)) or '.', exist_ok=True)
  with open(path, 'w') as f:
    f.write(corpus_text(documents))
  return os.fspath(path)


def _words(text: str) -> List[str]:
  """Lower-cased words and punctuation marks, as BERT's BasicTokenizer splits them."""
  return re.findall(r'[a-z0-9]+|[^\sa-z0-9]', text.lower())


def build_vocab(texts: Iterable[str], min_count: int = 2) -> List[str]:
  """A tiny WordPiece vocab: the special tokens, every character alone and as '##c', a few suffixes, and every
  word seen at least `min_count` times (rarer words are split into pieces by the WordPiece tokenizer)."""
  counts = collections.Counter(w for text in texts for w in _words(text))
  chars = sorted({c for w in counts for c in w} | set('abcdefghijklmnopqrstuvwxyz0123456789.,!?\'-'))
  vocab = list(SPECIAL_TOKENS) + chars + [f'##{c}' for c in chars if c.isalnum()]
  vocab += ['##s', '##ed', '##ing', '##er', '##ly']
  vocab += sorted(w for w, n in counts.items() if n >= min_count and len(w) > 1)
  return list(dict.fromkeys(vocab))


def default_texts() -> List[str]:
  """Everything the test data holds: the corpus and every word of the synthetic GLUE data (twice)."""
  glue_words = ' '.join(_FILLER + sum(_CUES, ()) + _UNRELATED + ('not', 'is', 'true'))
  return [corpus_text(), glue_words, glue_words]


def write_vocab(path: PathLike, texts: Optional[Iterable[str]] = None) -> str:
  """Writes `build_vocab(texts or default_texts())`, one token a line; returns the path."""
  os.makedirs(os.path.dirname(os.fspath(path)) or '.', exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(build_vocab(default_texts() if texts is None else texts)) + '\n')
  return os.fspath(path)


def read_vocab(path: PathLike) -> List[str]:
  with open(path) as f:
    return [line.rstrip('\n') for line in f]


def _subprocess_env() -> Dict[str, str]:
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env['CUDA_VISIBLE_DEVICES'] = ''
  env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def run_official_module(module: str, args: Sequence[str]) -> subprocess.CompletedProcess:
  """`python -m MODULE ARGS` (an official TF-Models script); returns the completed process."""
  cmd = [sys.executable, '-m', module, *args]
  return subprocess.run(cmd, capture_output=True, text=True, env=_subprocess_env(), check=False)


def run_official_pretraining(args: Sequence[str]) -> subprocess.CompletedProcess:
  """`python -m official.nlp.data.create_pretraining_data ARGS` (raises with its stderr if it fails)."""
  proc = run_official_module('official.nlp.data.create_pretraining_data', args)
  if proc.returncode:
    raise RuntimeError(f'{" ".join(proc.args)} failed:\n{proc.stderr[-3000:]}')
  return proc


def run_prepare_cli(args: Sequence[str]) -> subprocess.CompletedProcess:
  """`python -m projects.bert.datasets.prepare ARGS` from the repository root; returns the completed process
  (check `returncode` / `stderr` yourself: tests of the error messages need failures)."""
  cmd = [sys.executable, '-m', 'projects.bert.datasets.prepare', *args]
  return subprocess.run(cmd, capture_output=True, text=True, env=_subprocess_env(), cwd=REPO_ROOT, check=False)


def make_pretraining_records(tmp_dir: PathLike, *, max_seq_length: int = 32, max_predictions_per_seq: int = 5,
                             num_files: int = 2, dupe_factor: int = 2, masked_lm_prob: float = 0.15,
                             random_seed: int = 12345, vocab_path: Optional[PathLike] = None,
                             extra_flags: Sequence[str] = ()) -> Tuple[List[str], str]:
  """Runs the official create_pretraining_data.py on the corpus; returns (record files, vocab path).

  The records hold int64 input_ids / input_mask / segment_ids [max_seq_length], masked_lm_positions /
  masked_lm_ids [max_predictions_per_seq], float masked_lm_weights and next_sentence_labels [1]. With the defaults
  the corpus gives about 70 records, spread round-robin over `num_files` files. Takes 5-10 s (a subprocess that
  imports TensorFlow).
  """
  tmp_dir = os.fspath(tmp_dir)
  os.makedirs(tmp_dir, exist_ok=True)
  vocab = os.fspath(vocab_path) if vocab_path else write_vocab(os.path.join(tmp_dir, 'vocab.txt'))
  corpus = write_corpus(os.path.join(tmp_dir, 'corpus.txt'))
  files = [os.path.join(tmp_dir, f'pretrain-{i}.tfrecord') for i in range(num_files)]
  run_official_pretraining([
      f'--input_file={corpus}', f'--vocab_file={vocab}', f'--output_file={",".join(files)}',
      f'--max_seq_length={max_seq_length}', f'--max_predictions_per_seq={max_predictions_per_seq}',
      f'--masked_lm_prob={masked_lm_prob}', f'--dupe_factor={dupe_factor}', f'--random_seed={random_seed}',
      '--do_lower_case=true', *extra_flags])
  return files, vocab


def truncate_inside_record(path: PathLike, index: int) -> int:
  """Cuts a record file in the data of record `index` (which TF reports as damage); returns the byte offset where
  that record starts."""
  with open(path, 'rb') as f:
    data = f.read()
  offset = 0
  for _ in range(index):
    offset += 16 + int.from_bytes(data[offset:offset + 8], 'little')  # length, crc, data, crc
  with open(path, 'wb') as f:
    f.write(data[:offset + 12 + 5])
  return offset


# ------------------------------------------------------------------------------------------------------ GLUE


@dataclasses.dataclass
class GlueExample:
  """One example as written to a TSV: label is a label string, a float (STS-B) or None (test)."""

  text_a: str
  text_b: Optional[str]
  label: Union[str, float, None]
  index: int


@dataclasses.dataclass
class GlueTaskData:
  """What `write_glue_task_dir` wrote: `glue_dir` (the GLUE root) and the examples of each split, in file order.

  `eval` / `test` are keyed by the split names of `projects.bert.tasks.glue` ('validation' / 'test';
  MNLI: 'matched', 'mismatched', and test 'ax').
  """

  glue_dir: str
  task: str
  train: List[GlueExample]
  eval: Dict[str, List[GlueExample]]
  test: Dict[str, List[GlueExample]]


# The official GLUE file layouts: (folder, file, header or None, {role: column name}).
# Roles: a = first text, b = second text, label, index. Unnamed columns get filler values.
_CLS_LABELS = {'cola': ('0', '1'), 'sst2': ('0', '1'), 'mrpc': ('0', '1'), 'qqp': ('0', '1'),
               'mnli': ('contradiction', 'entailment', 'neutral'), 'qnli': ('entailment', 'not_entailment'),
               'rte': ('entailment', 'not_entailment'), 'wnli': ('0', '1'), 'stsb': None}
_DIRS = {'cola': 'CoLA', 'sst2': 'SST-2', 'mrpc': 'MRPC', 'qqp': 'QQP', 'stsb': 'STS-B', 'mnli': 'MNLI',
         'qnli': 'QNLI', 'rte': 'RTE', 'wnli': 'WNLI'}
_MNLI_COLS = ['index', 'promptID', 'pairID', 'genre', 'sentence1_binary_parse', 'sentence2_binary_parse',
              'sentence1_parse', 'sentence2_parse', 'sentence1', 'sentence2']
_STSB_COLS = ['index', 'genre', 'filename', 'year', 'old_index', 'source1', 'source2', 'sentence1', 'sentence2']
_PAIR4 = ['index', 'sentence1', 'sentence2']
_LAYOUTS = {
    # task: (labelled header, labelled roles, test header, test roles)
    'cola': (None, {'label': 1, 'a': 3}, ['index', 'sentence'], {'index': 0, 'a': 1}),
    'sst2': (['sentence', 'label'], {'a': 0, 'label': 1}, ['index', 'sentence'], {'index': 0, 'a': 1}),
    'mrpc': (['Quality', '#1 ID', '#2 ID', '#1 String', '#2 String'], {'label': 0, 'a': 3, 'b': 4},
             ['index', '#1 ID', '#2 ID', '#1 String', '#2 String'], {'index': 0, 'a': 3, 'b': 4}),
    'qqp': (['id', 'qid1', 'qid2', 'question1', 'question2', 'is_duplicate'], {'a': 3, 'b': 4, 'label': 5},
            ['id', 'question1', 'question2'], {'index': 0, 'a': 1, 'b': 2}),
    'stsb': (_STSB_COLS + ['score'], {'a': 7, 'b': 8, 'label': 9}, _STSB_COLS, {'index': 0, 'a': 7, 'b': 8}),
    'mnli': (_MNLI_COLS + ['label1', 'gold_label'], {'a': 8, 'b': 9, 'label': 11}, _MNLI_COLS,
             {'index': 0, 'a': 8, 'b': 9}),
    'qnli': (['index', 'question', 'sentence', 'label'], {'a': 1, 'b': 2, 'label': 3},
             ['index', 'question', 'sentence'], {'index': 0, 'a': 1, 'b': 2}),
    'rte': (_PAIR4 + ['label'], {'a': 1, 'b': 2, 'label': 3}, _PAIR4, {'index': 0, 'a': 1, 'b': 2}),
    'wnli': (_PAIR4 + ['label'], {'a': 1, 'b': 2, 'label': 3}, _PAIR4, {'index': 0, 'a': 1, 'b': 2}),
}
# MNLI dev files carry five annotator labels before the gold label (the last column).
_MNLI_DEV_HEADER = _MNLI_COLS + ['label1', 'label2', 'label3', 'label4', 'label5', 'gold_label']


def _sentence(rng: random.Random, n_words: int) -> List[str]:
  return [rng.choice(_FILLER) for _ in range(n_words)]


def _make_example(task: str, rng: random.Random, labelled: bool, index: int) -> GlueExample:
  """A synthetic example whose label is learnable: every label has its own cue words (a bag-of-words signal) and
  pair tasks also encode the label in how the second sentence relates to the first."""
  labels = _CLS_LABELS[task]
  words = _sentence(rng, rng.randint(3, 6))
  if labels is None:  # STS-B: score = words of the first sentence kept in the second (0..5)
    score = rng.randint(0, 5)
    kept = (words * 2)[:score]
    second = kept + list(rng.sample(_UNRELATED, 5 - score))
    rng.shuffle(second)
    return GlueExample(' '.join(words) + ' .', ' '.join(second) + ' .', float(score) if labelled else None, index)
  label_id = rng.randrange(len(labels))
  cue = rng.choice(_CUES[label_id])
  if task in ('cola', 'sst2'):
    words.insert(rng.randrange(len(words) + 1), cue)
    return GlueExample(' '.join(words) + ' .', None, labels[label_id] if labelled else None, index)
  label = labels[label_id]
  if label in ('1', 'entailment'):  # paraphrase / entailed: the same words, reordered
    second = list(words)
    rng.shuffle(second)
  elif label == 'contradiction':  # the first sentence negated
    second = ['not'] + words
  else:  # unrelated
    second = _sentence(rng, len(words))
  second.insert(rng.randrange(len(second) + 1), cue)
  return GlueExample(' '.join(words) + ' .', ' '.join(second) + ' .', labels[label_id] if labelled else None,
                     index)


def _row(header_len: int, roles: Dict[str, int], example: GlueExample, filler: str) -> List[str]:
  row = [f'{filler}{i}' for i in range(header_len)]
  row[roles['a']] = example.text_a
  if 'b' in roles:
    row[roles['b']] = example.text_b or ''
  if 'label' in roles and example.label is not None:
    row[roles['label']] = f'{example.label:.3f}' if isinstance(example.label, float) else example.label
  if 'index' in roles:
    row[roles['index']] = str(example.index)
  return row


def _write_tsv(path: str, header: Optional[List[str]], rows: List[List[str]]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    for row in ([header] if header else []) + rows:
      f.write('\t'.join(row) + '\n')


def write_glue_task_dir(tmp_dir: PathLike, task: str, n_train: int = 32, n_dev: int = 16, n_test: int = 16,
                        seed: int = 0) -> GlueTaskData:
  """Writes one task in the official GLUE layout under `tmp_dir` (the GLUE root) and returns what it wrote.

  Files: CoLA/{train,dev,test}.tsv (train/dev without a header), SST-2/, MRPC/, QQP/ (with one malformed line in
  train.tsv, as the real file has, which readers skip), STS-B/ (float scores), QNLI/, RTE/, WNLI/, and for MNLI:
  MNLI/train.tsv, dev_matched.tsv, dev_mismatched.tsv (gold label last, after five annotator labels),
  test_matched.tsv, test_mismatched.tsv and diagnostic/diagnostic.tsv (AX). Test indices start at 1000.
  """
  task = task.lower().replace('-', '')
  if task not in _LAYOUTS:
    raise ValueError(f'Unknown GLUE task {task!r}; known: {sorted(_LAYOUTS)}.')
  rng = random.Random(f'{task}-{seed}')
  root, folder = os.fspath(tmp_dir), _DIRS[task]
  header, roles, test_header, test_roles = _LAYOUTS[task]
  width = len(header) if header else 4

  def labelled(n: int) -> List[GlueExample]:
    return [_make_example(task, rng, True, i) for i in range(n)]

  def unlabelled(n: int) -> List[GlueExample]:
    return [_make_example(task, rng, False, 1000 + i) for i in range(n)]

  def write_labelled(name: str, examples: List[GlueExample], file_header=header, file_roles=roles,
                     extra_rows=()) -> None:
    rows = [_row(len(file_header) if file_header else width, file_roles, ex, 'x') for ex in examples]
    if task == 'cola':  # CoLA marks unacceptable sentences with '*' in column 2
      for row, ex in zip(rows, examples):
        row[2] = '' if ex.label == '1' else '*'
    _write_tsv(os.path.join(root, folder, name), file_header, rows + list(extra_rows))

  def write_unlabelled(path: str, examples: List[GlueExample], file_header=test_header, file_roles=test_roles):
    _write_tsv(path, file_header, [_row(len(file_header), file_roles, ex, 'y') for ex in examples])

  train = labelled(n_train)
  broken = [['999', 'q1', 'q2', 'a question without its pair']] if task == 'qqp' else []
  write_labelled('train.tsv', train, extra_rows=broken)
  if task == 'mnli':
    evals = {'matched': labelled(n_dev), 'mismatched': labelled(n_dev)}
    for split, examples in evals.items():
      write_labelled(f'dev_{split}.tsv', examples, _MNLI_DEV_HEADER, dict(roles, label=len(_MNLI_DEV_HEADER) - 1))
    tests = {'matched': unlabelled(n_test), 'mismatched': unlabelled(n_test), 'ax': unlabelled(n_test)}
    for split in ('matched', 'mismatched'):
      write_unlabelled(os.path.join(root, folder, f'test_{split}.tsv'), tests[split])
    write_unlabelled(os.path.join(root, 'diagnostic', 'diagnostic.tsv'), tests['ax'], _PAIR4,
                     {'index': 0, 'a': 1, 'b': 2})
  else:
    evals = {'validation': labelled(n_dev)}
    write_labelled('dev.tsv', evals['validation'])
    tests = {'test': unlabelled(n_test)}
    write_unlabelled(os.path.join(root, folder, 'test.tsv'), tests['test'])
  return GlueTaskData(glue_dir=root, task=task, train=train, eval=evals, test=tests)


def make_glue_records(tmp_dir: PathLike, task: str, *, vocab_path: Optional[PathLike] = None,
                      max_seq_length: int = 32, n_train: int = 32, n_dev: int = 16, n_test: int = 16,
                      seed: int = 0) -> Tuple[str, GlueTaskData]:
  """Writes a GLUE task folder and runs our prepare path on it (in this process, ~0.2 s once TF-Models is
  imported); returns (records dir for config.dataset.data_dir, what was written). The vocab defaults to a fresh
  tiny vocab in `tmp_dir`."""
  from projects.bert.datasets import glue_writer

  tmp_dir = os.fspath(tmp_dir)
  vocab = os.fspath(vocab_path) if vocab_path else write_vocab(os.path.join(tmp_dir, 'vocab.txt'))
  data = write_glue_task_dir(os.path.join(tmp_dir, 'glue_data'), task, n_train, n_dev, n_test, seed)
  out_dir = os.path.join(tmp_dir, 'records')
  glue_writer.prepare_glue(task, data.glue_dir, vocab, out_dir, max_seq_length=max_seq_length)
  return out_dir, data


def scalars(workdir: PathLike, tag: str) -> Dict[int, float]:
  """{step: value} of a scalar (e.g. 'train/loss') from the TensorBoard event files in `workdir`."""
  import glob

  import tensorflow as tf

  out = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == tag:
          out[event.step] = float(tf.make_ndarray(v.tensor)) if v.HasField('tensor') else v.simple_value
  return out
