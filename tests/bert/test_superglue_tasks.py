"""The SuperGLUE task table: names, files, kinds, labels and metrics as the benchmark defines them."""

import pytest

from projects.bert.tasks import superglue as sg


def test_ten_tasks_eight_scored_two_diagnostics():
  assert sg.task_names() == ['boolq', 'cb', 'copa', 'multirc', 'record', 'rte', 'wic', 'wsc', 'axb', 'axg']
  assert sg.SCORED_TASKS == ('boolq', 'cb', 'copa', 'multirc', 'record', 'rte', 'wic', 'wsc')
  assert sg.DIAGNOSTIC_TASKS == ('axb', 'axg')
  assert all(sg.get_task(n).predicted_with == 'rte' for n in sg.DIAGNOSTIC_TASKS)


def test_files_of_the_official_download():
  assert sg.get_task('BoolQ').data_file('validation') == 'BoolQ/val.jsonl'
  assert sg.get_task('ReCoRD').data_file('train') == 'ReCoRD/train.jsonl'
  assert sg.get_task('multirc').data_file('test') == 'MultiRC/test.jsonl'
  assert sg.get_task('AX-b').data_file('test') == 'AX-b/AX-b.jsonl'
  assert sg.get_task('ax_g').data_file('test') == 'AX-g/AX-g.jsonl'
  with pytest.raises(ValueError, match="AX-g has no split 'train'"):
    sg.get_task('axg').data_file('train')
  assert list(sg.submission_files().values()) == [
      'BoolQ.jsonl', 'CB.jsonl', 'COPA.jsonl', 'MultiRC.jsonl', 'ReCoRD.jsonl', 'RTE.jsonl', 'WiC.jsonl',
      'WSC.jsonl', 'AX-b.jsonl', 'AX-g.jsonl']


def test_kinds_labels_and_metrics():
  kinds = {n: t.kind for n, t in sg.SUPERGLUE_TASKS.items()}
  assert kinds == {'boolq': 'sentence_pair', 'cb': 'sentence_pair', 'copa': 'multiple_choice',
                   'multirc': 'answer_options', 'record': 'entity_cloze', 'rte': 'sentence_pair',
                   'wic': 'word_in_context', 'wsc': 'span_pair', 'axb': 'sentence_pair', 'axg': 'sentence_pair'}
  assert sg.get_task('boolq').submission_labels == ('false', 'true')
  assert sg.get_task('wic').submission_labels == ('false', 'true')
  assert sg.get_task('wsc').submission_labels == ('False', 'True')
  assert sg.get_task('copa').submission_labels == (0, 1)
  assert sg.get_task('cb').labels == ('entailment', 'contradiction', 'neutral')
  # The diagnostics are scored with the RTE model: same label ids.
  assert sg.get_task('axb').labels == sg.get_task('axg').labels == sg.get_task('rte').labels
  assert sg.get_task('record').labels is None and sg.get_task('record').num_labels is None
  assert sg.get_task('cb').metrics == ('accuracy', 'macro_f1') and sg.get_task('cb').main_metric == 'score'
  assert sg.get_task('multirc').metrics == ('f1a', 'exact_match')
  assert sg.get_task('record').metrics == ('f1', 'exact_match')
  assert sg.get_task('axb').metrics == ('matthews_corr',)
  assert sg.get_task('axg').metrics == ('gender_parity', 'accuracy')
  assert sg.get_task('rte').main_metric == 'accuracy'
  assert sg.get_task('axg').main_metric == 'gender_parity'  # no score: the diagnostics are not in the SuperGLUE score


def test_unknown_task_lists_the_known_ones():
  with pytest.raises(ValueError, match='known tasks: boolq, cb'):
    sg.get_task('wnli')


def test_table_rejects_inconsistent_rows():
  with pytest.raises(ValueError, match='unknown task kind'):
    sg.SuperGlueTask('x', 'X', 'regression', ('a',), (0, 1), (0, 1), ('accuracy',))
  with pytest.raises(ValueError, match='one to one'):
    sg.SuperGlueTask('x', 'X', 'sentence_pair', ('a',), (0, 1), ('no',), ('accuracy',))
