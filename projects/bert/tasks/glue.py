"""The GLUE task table: every fact about a task in one place (labels, TSV layout, splits, metrics, file names).

Splits: every task has the eval split 'validation' and the test split 'test', except MNLI, whose eval splits are
'matched' and 'mismatched' and whose test splits are 'matched', 'mismatched' and 'ax'.

AX (the GLUE diagnostic set) is not a task of its own here: it has no train or dev data and GLUE scores it with
the MNLI model, so it is MNLI's test split 'ax' (read from `diagnostic/diagnostic.tsv` or `AX.tsv` when present).
Meta data that the upstream `create_finetuning_data.py --classification_task_name=AX` wrote (MNLI train and
dev_matched, AX test) is read by task 'mnli', its test file becoming split 'ax'.

Record files (written by `prepare.py`, read by `glue.py`) in the output directory:
  {task}_train.tf_record, {task}_eval.tf_record, {task}_test.tf_record, {task}_meta_data
  MNLI: mnli_eval_matched.tf_record, mnli_eval_mismatched.tf_record,
        mnli_test_matched.tf_record, mnli_test_mismatched.tf_record, mnli_test_ax.tf_record
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

# Metric names the fine-tuning trainer computes (GLUE's official metrics per task).
ACCURACY = 'accuracy'
F1 = 'f1'
MATTHEWS = 'matthews_corr'
PEARSON = 'pearson'
SPEARMAN = 'spearman'

LAST_COLUMN = -1


@dataclasses.dataclass(frozen=True)
class TsvLayout:
  """Where one split's examples live and which columns hold what (0-based; -1 = last column).

  `paths` are candidates relative to the GLUE directory, tried in order. `label` is None for unlabelled (test)
  files and `index` names the column with the example's GLUE index (written into the records as `example_id`,
  which the test-split predictions file needs). Rows with fewer than `min_columns` fields are skipped (QQP has a
  few broken lines).
  """

  paths: Tuple[str, ...]
  header: bool
  text_a: int
  text_b: Optional[int] = None
  label: Optional[int] = None
  index: Optional[int] = None
  min_columns: int = 0


@dataclasses.dataclass(frozen=True)
class GlueTask:
  """One GLUE task.

  `labels` is the label list in id order (None for regression); `processor_name` is the `processor_type` that
  the upstream writer records in the meta data; `submission_files` maps each test split to the file name the
  GLUE server expects for its predictions. `main_metric`, one of `metrics`, is the number the BERT paper reports
  for the task, scored on `main_eval_split` (the first eval split; MNLI's matched dev set, the one the paper and
  GLUE baselines report and select on): fine-tuning selects its best_on_dev parameters by it, and few-shot
  probes report it.
  """

  name: str
  processor_name: str
  labels: Optional[Tuple[str, ...]]
  metrics: Tuple[str, ...]
  main_metric: str
  train: TsvLayout
  eval_splits: Mapping[str, TsvLayout]
  test_splits: Mapping[str, TsvLayout]
  submission_files: Mapping[str, str]
  optional_test_splits: Tuple[str, ...] = ()

  @property
  def is_regression(self) -> bool:
    return self.labels is None

  @property
  def task_type(self) -> str:
    """'classification' or 'regression'."""
    return 'regression' if self.is_regression else 'classification'

  @property
  def num_labels(self) -> int:
    """Number of outputs of the head: 1 for regression."""
    return 1 if self.labels is None else len(self.labels)

  @property
  def label_type(self) -> str:
    """Type of `label_ids` in the records: 'float' for regression, else 'int'."""
    return 'float' if self.is_regression else 'int'

  @property
  def main_eval_split(self) -> str:
    return next(iter(self.eval_splits))

  def main_metric_key(self, eval_splits: Sequence[str]) -> str:
    """The main metric's name among the '{split}/{metric}' results of `eval_splits`, e.g. 'matched/accuracy'."""
    split = self.main_eval_split if self.main_eval_split in eval_splits else list(eval_splits)[0]
    return f'{split}/{self.main_metric}'

  @property
  def main_test_split(self) -> str:
    return next(iter(self.test_splits))

  def record_file(self, kind: str, split: Optional[str] = None) -> str:
    """File name of the records of `kind` in {'train', 'eval', 'test'} (see the module docstring)."""
    if kind == 'train':
      return f'{self.name}_train.tf_record'
    splits = self.eval_splits if kind == 'eval' else self.test_splits
    if len(splits) == 1:
      return f'{self.name}_{kind}.tf_record'
    return f'{self.name}_{kind}_{split}.tf_record'

  @property
  def meta_data_file(self) -> str:
    return f'{self.name}_meta_data'


def _standard(task_dir: str, *, train_header: bool, text_a: int, text_b: Optional[int], label: int,
              test_text_a: int, test_text_b: Optional[int], min_columns: int = 0,
              test_min_columns: int = 0) -> Tuple[TsvLayout, TsvLayout, TsvLayout]:
  """train.tsv / dev.tsv with the same columns, test.tsv with a header and the index in column 0."""
  labelled = dict(header=train_header, text_a=text_a, text_b=text_b, label=label, min_columns=min_columns)
  return (TsvLayout(paths=(f'{task_dir}/train.tsv',), **labelled),
          TsvLayout(paths=(f'{task_dir}/dev.tsv',), **labelled),
          TsvLayout(paths=(f'{task_dir}/test.tsv',), header=True, text_a=test_text_a, text_b=test_text_b, index=0,
                    min_columns=test_min_columns))


def _simple_task(name: str, processor_name: str, labels: Optional[Tuple[str, ...]], metrics: Tuple[str, ...],
                 layouts: Tuple[TsvLayout, TsvLayout, TsvLayout], submission: str,
                 main_metric: Optional[str] = None) -> GlueTask:
  """A task with one dev and one test split; `main_metric` must be named when it has several metrics."""
  if main_metric is None and len(metrics) > 1:
    raise ValueError(f'{name}: name the main metric among {metrics}.')
  train, dev, test = layouts
  return GlueTask(name=name, processor_name=processor_name, labels=labels, metrics=metrics,
                  main_metric=main_metric or metrics[0], train=train,
                  eval_splits={'validation': dev}, test_splits={'test': test},
                  submission_files={'test': submission})


_BINARY = ('0', '1')
_NLI3 = ('contradiction', 'entailment', 'neutral')
_NLI2 = ('entailment', 'not_entailment')


def _mnli() -> GlueTask:
  # Premise (sentence1, column 8) first and hypothesis second, as in the GLUE files and the original BERT.
  labelled = dict(header=True, text_a=8, text_b=9, label=LAST_COLUMN)
  unlabelled = dict(header=True, text_a=8, text_b=9, index=0)
  return GlueTask(
      name='mnli', processor_name='MNLI', labels=_NLI3, metrics=(ACCURACY,), main_metric=ACCURACY,
      train=TsvLayout(paths=('MNLI/train.tsv',), **labelled),
      eval_splits={'matched': TsvLayout(paths=('MNLI/dev_matched.tsv',), **labelled),
                   'mismatched': TsvLayout(paths=('MNLI/dev_mismatched.tsv',), **labelled)},
      test_splits={'matched': TsvLayout(paths=('MNLI/test_matched.tsv',), **unlabelled),
                   'mismatched': TsvLayout(paths=('MNLI/test_mismatched.tsv',), **unlabelled),
                   'ax': TsvLayout(paths=('diagnostic/diagnostic.tsv', 'AX/AX.tsv', 'diagnostic/AX.tsv', 'AX.tsv'),
                                   header=True, text_a=1, text_b=2, index=0)},
      submission_files={'matched': 'MNLI-m.tsv', 'mismatched': 'MNLI-mm.tsv', 'ax': 'AX.tsv'},
      optional_test_splits=('ax',))


GLUE_TASKS: Dict[str, GlueTask] = {t.name: t for t in [
    # CoLA train/dev: no header; source, label, original mark, sentence.
    _simple_task('cola', 'COLA', _BINARY, (MATTHEWS,),
                 _standard('CoLA', train_header=False, text_a=3, text_b=None, label=1, test_text_a=1,
                           test_text_b=None), 'CoLA.tsv'),
    _simple_task('sst2', 'SST-2', _BINARY, (ACCURACY,),
                 _standard('SST-2', train_header=True, text_a=0, text_b=None, label=1, test_text_a=1,
                           test_text_b=None), 'SST-2.tsv'),
    # MRPC: Quality, #1 ID, #2 ID, #1 String, #2 String.
    _simple_task('mrpc', 'MRPC', _BINARY, (ACCURACY, F1),
                 _standard('MRPC', train_header=True, text_a=3, text_b=4, label=0, test_text_a=3, test_text_b=4),
                 'MRPC.tsv', main_metric=F1),
    # QQP: id, qid1, qid2, question1, question2, is_duplicate; test: id, question1, question2.
    _simple_task('qqp', 'QQP', _BINARY, (ACCURACY, F1),
                 _standard('QQP', train_header=True, text_a=3, text_b=4, label=5, test_text_a=1, test_text_b=2,
                           min_columns=6, test_min_columns=3), 'QQP.tsv', main_metric=F1),
    # STS-B: index, genre, filename, year, old_index, source1, source2, sentence1, sentence2, score.
    _simple_task('stsb', 'STS-B', None, (PEARSON, SPEARMAN),
                 _standard('STS-B', train_header=True, text_a=7, text_b=8, label=LAST_COLUMN, test_text_a=7,
                           test_text_b=8), 'STS-B.tsv', main_metric=SPEARMAN),
    _mnli(),
    # QNLI: index, question, sentence, label.
    _simple_task('qnli', 'QNLI', _NLI2, (ACCURACY,),
                 _standard('QNLI', train_header=True, text_a=1, text_b=2, label=LAST_COLUMN, test_text_a=1,
                           test_text_b=2), 'QNLI.tsv'),
    # RTE and WNLI: index, sentence1, sentence2, label.
    _simple_task('rte', 'RTE', _NLI2, (ACCURACY,),
                 _standard('RTE', train_header=True, text_a=1, text_b=2, label=LAST_COLUMN, test_text_a=1,
                           test_text_b=2), 'RTE.tsv'),
    _simple_task('wnli', 'WNLI', _BINARY, (ACCURACY,),
                 _standard('WNLI', train_header=True, text_a=1, text_b=2, label=LAST_COLUMN, test_text_a=1,
                           test_text_b=2), 'WNLI.tsv'),
]}
# The classification tasks but WNLI, whose dev set is adversarial to its train set (the majority class beats every
# BERT): what few-shot `all` looks for.
CLASSIFICATION_TASKS = tuple(name for name, t in GLUE_TASKS.items() if not t.is_regression and name != 'wnli')

# Upstream processor names that a task's meta data may carry (AX meta data belongs to the MNLI model).
_ACCEPTED_PROCESSORS: Dict[str, Tuple[str, ...]] = {'mnli': ('MNLI', 'AX')}


def task_names() -> List[str]:
  return list(GLUE_TASKS)


def get_task(name: str) -> GlueTask:
  """The task for `name`, case-insensitive, with or without a dash ('SST-2' == 'sst2')."""
  key = str(name).lower().replace('-', '').replace('_', '')
  if key == 'ax':
    raise ValueError('AX is predicted with the MNLI model: use task "mnli"; its test split "ax" holds AX '
                     '(prepare glue --task=mnli writes it when the GLUE directory has diagnostic/diagnostic.tsv).')
  if key not in GLUE_TASKS:
    raise ValueError(f'Unknown GLUE task {name!r}; known tasks: {", ".join(GLUE_TASKS)}.')
  return GLUE_TASKS[key]


def accepted_processor_names(task: GlueTask) -> Tuple[str, ...]:
  """`processor_type` values in meta data that this task reads."""
  return _ACCEPTED_PROCESSORS.get(task.name, (task.processor_name,))
