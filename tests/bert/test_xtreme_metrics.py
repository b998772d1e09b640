"""XTREME task table and official scores against hand-computed values."""

import random

import pytest

from projects.bert.tasks import xtreme
from projects.bert.tasks import xtreme_metrics as m

# ------------------------------------------------------------------------------------------------------ task table


def test_table_has_the_nine_tasks_with_evaluate_py_language_counts():
  counts = {name: len(task.languages) for name, task in xtreme.XTREME_TASKS.items()}
  assert counts == {'xnli': 15, 'pawsx': 7, 'udpos': 33, 'panx': 40, 'xquad': 11, 'mlqa': 7, 'tydiqa': 9,
                    'bucc2018': 4, 'tatoeba': 36}
  for task in xtreme.XTREME_TASKS.values():
    assert len(set(task.languages)) == len(task.languages), task.name
    assert task.main_metric in task.metrics
    assert xtreme.TEST in task.splits
    assert task.kind in xtreme.KINDS and task.group in xtreme.GROUPS
  assert sorted(n for names in xtreme.GROUP_TASKS.values() for n in names) == sorted(xtreme.XTREME_TASKS)
  assert xtreme.GROUP_TASKS[xtreme.QUESTION_ANSWERING] == ('xquad', 'mlqa', 'tydiqa')


def test_training_is_english_and_retrieval_is_not_trained():
  for task in xtreme.XTREME_TASKS.values():
    if task.group == xtreme.RETRIEVAL:
      assert not task.is_trained
    else:
      assert task.split_languages(xtreme.TRAIN) == ('en',), task.name
  assert xtreme.get_task('xnli').files('train', 'en') == {'path': 'xnli/train-en.tsv'}
  assert xtreme.get_task('xquad').files('train', 'en') == {'path': 'squad/train-v1.1.json'}
  assert xtreme.get_task('tydiqa').files('train', 'en')['path'].endswith('tydiqa.goldp.en.train.json')


def test_files_and_submission_names():
  assert xtreme.get_task('bucc').files('dev', 'zh') == {
      'path': 'bucc2018/zh-en.dev.zh', 'target': 'bucc2018/zh-en.dev.en', 'gold': 'bucc2018/zh-en.dev.gold'}
  assert xtreme.get_task('bucc2018').files('test', 'ru') == {
      'path': 'bucc2018/ru-en.test.ru', 'target': 'bucc2018/ru-en.test.en'}
  assert xtreme.get_task('mlqa').files('test', 'de')['path'] == \
      'mlqa/MLQA_V1/test/test-context-de-question-de.json'
  assert xtreme.get_task('PAN-X').submission_file('yo') == 'panx/test-yo.tsv'
  assert xtreme.get_task('TyDiQA-GoldP').submission_file('sw') == 'tydiqa/test-sw.json'
  assert xtreme.get_task('tatoeba').files('test', 'ja') == {'path': 'tatoeba/ja-en.ja', 'target': 'tatoeba/ja-en.en'}
  with pytest.raises(ValueError, match='not a language of XTREME task panx'):
    xtreme.get_task('panx').submission_file('xx')
  with pytest.raises(ValueError, match='known tasks: xnli'):
    xtreme.get_task('glue')


def test_udpos_languages_without_dev_are_named_and_refused():
  udpos = xtreme.get_task('udpos')
  assert udpos.languages_without('dev') == ('kk', 'th', 'tl', 'yo')
  assert 'kk' not in udpos.split_languages('dev') and 'kk' in udpos.split_languages('test')
  with pytest.raises(ValueError, match="no 'dev' data for language 'th'"):
    udpos.files('dev', 'th')
  assert xtreme.get_task('panx').languages_without('dev') == ()
  with pytest.raises(ValueError, match="has no 'dev' split"):
    xtreme.get_task('tatoeba').files('dev', 'de')


# ------------------------------------------------------------------------------------------------------ seqeval


def test_i_tag_without_b_opens_an_entity():
  assert m.tag_chunks([['I-PER', 'I-PER', 'O']]) == {('PER', 0, 1)}
  scores = m.seqeval_scores([['B-PER', 'I-PER', 'O']], [['I-PER', 'I-PER', 'O']])
  assert scores == {'f1': 100.0, 'precision': 100.0, 'recall': 100.0}


def test_adjacent_entities_and_type_changes():
  assert m.tag_chunks([['B-PER', 'B-PER', 'O', 'B-LOC']]) == {('PER', 0, 0), ('PER', 1, 1), ('LOC', 3, 3)}
  assert m.tag_chunks([['B-PER', 'I-LOC']]) == {('PER', 0, 0), ('LOC', 1, 1)}
  # Gold: PER, PER, LOC; predicted: one PER over both, LOC. 1 correct of 2 predicted and 3 gold.
  scores = m.seqeval_scores([['B-PER', 'B-PER', 'O', 'B-LOC']], [['B-PER', 'I-PER', 'O', 'B-LOC']])
  assert scores['precision'] == pytest.approx(50.0)
  assert scores['recall'] == pytest.approx(100 / 3)
  assert scores['f1'] == pytest.approx(40.0)


def test_iobes_tags_chunk_as_seqeval():
  # After S- or E-, an I- tag of the same type opens a new chunk.
  assert m.tag_chunks([['S-PER', 'I-PER']]) == {('PER', 0, 0), ('PER', 1, 1)}
  assert m.tag_chunks([['B-LOC', 'E-LOC', 'I-LOC']]) == {('LOC', 0, 1), ('LOC', 2, 2)}
  seqeval = pytest.importorskip('seqeval.metrics.sequence_labeling')
  for sentence in (['S-PER', 'I-PER'], ['B-LOC', 'E-LOC', 'I-LOC'], ['E-ORG', 'E-ORG', 'S-ORG', 'B-ORG']):
    assert m.tag_chunks([sentence]) == set(seqeval.get_entities(sentence))


def test_no_entity_spans_two_sentences():
  assert m.tag_chunks([['O', 'B-PER'], ['I-PER', 'O']]) == {('PER', 1, 1), ('PER', 3, 3)}


def test_nothing_predicted_scores_zero():
  assert m.seqeval_scores([['B-ORG', 'O']], [['O', 'O']]) == {'f1': 0.0, 'precision': 0.0, 'recall': 0.0}


def test_pos_tags_are_chunked_as_evaluate_py_does():
  # Runs of one tag are one chunk: 2 of 3 tokens right, but no chunk is.
  assert m.tag_chunks([['NOUN', 'NOUN', 'VERB']]) == {('NOUN', 0, 1), ('VERB', 2, 2)}
  assert m.seqeval_scores([['NOUN', 'NOUN', 'VERB']], [['NOUN', 'VERB', 'VERB']])['f1'] == 0.0
  # SYM reads as S- (single): each token its own chunk. CCONJ and SCONJ are distinct types (seqeval 0.0.x).
  assert m.tag_chunks([['SYM', 'SYM']]) == {('SYM', 0, 0), ('SYM', 1, 1)}
  assert m.tag_chunks([['CCONJ', 'SCONJ']]) == {('CCONJ', 0, 0), ('SCONJ', 1, 1)}
  scores = m.seqeval_scores([['CCONJ', 'SCONJ']], [['CCONJ', 'X']])
  assert (scores['precision'], scores['recall'], scores['f1']) == pytest.approx((50.0, 50.0, 50.0))


def test_entity_scores_equal_installed_seqeval_on_bio_tags():
  seqeval = pytest.importorskip('seqeval.metrics')
  rng = random.Random(0)
  labels = [[rng.choice(xtreme.PANX_LABELS) for _ in range(rng.randint(1, 12))] for _ in range(300)]
  predictions = [[t if rng.random() < 0.7 else rng.choice(xtreme.PANX_LABELS) for t in s] for s in labels]
  ours = m.seqeval_scores(labels, predictions)
  assert ours['f1'] == pytest.approx(100 * seqeval.f1_score(labels, predictions))
  assert ours['precision'] == pytest.approx(100 * seqeval.precision_score(labels, predictions))
  assert ours['recall'] == pytest.approx(100 * seqeval.recall_score(labels, predictions))


def test_seqeval_scores_refuse_mismatched_sentences():
  with pytest.raises(ValueError, match='Sentence 1: 1 predicted tags for 2 tokens'):
    m.seqeval_scores([['O'], ['O', 'O']], [['O'], ['O']])


# ------------------------------------------------------------------------------------------------------ MLQA


@pytest.mark.parametrize('lang, text, expected', [
    ('en', 'The Cat, a dog!', 'cat dog'),
    ('en', 'Theatre and another', 'theatre and another'),  # articles are whole words only
    ('es', 'Los gatos y las casas', 'gatos y casas'),
    ('es', 'Ella ve el mar', 'ella ve mar'),
    ('es', '«Hola»', 'hola'),  # Unicode punctuation (Pi/Pf)
    ('de', 'Die Katze des Mannes, dieser', 'katze mannes dieser'),
    ('vi', 'Những cái bàn của tôi', 'bàn tôi'),
    ('hi', 'यह एक किताब है।', 'यह एक किताब है'),  # no articles; the danda is punctuation
    ('ar', 'الكتاب', 'كتاب'),
    ('ar', 'مالك', 'م ك'),  # every ال goes, also inside a word, as MLQA's pattern does
    ('zh', '北京大学，位于 Beijing。', '北 京 大 学 位 于 beijing'),
    ('en', '$5 and €5', '5 and €5'),  # ASCII symbols are punctuation to MLQA, other symbols are not
])
def test_mlqa_normalisation_per_language(lang, text, expected):
  assert m.mlqa_normalize(text, lang) == expected


def test_mlqa_f1_counts_chinese_characters():
  assert m.mlqa_f1('北京大学', '北京', 'zh') == pytest.approx(2 / 3)
  assert m.mlqa_exact_match('北京大学', '北京', 'zh') == 0.0
  assert m.mlqa_f1('the big cat', 'a cat', 'en') == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match='MLQA scores answers in en, es'):
    m.mlqa_normalize('x', 'fr')


def test_mlqa_scores_best_answer_and_unanswered_questions():
  data = [{'paragraphs': [{'context': 'c', 'qas': [
      {'id': 'q1', 'answers': [{'text': 'el gato'}, {'text': 'gato negro'}]},
      {'id': 'q2', 'answers': [{'text': 'casa'}]}]}]}]
  assert m.mlqa_scores(data, {'q1': 'Gato'}, 'es') == {'exact_match': 50.0, 'f1': 50.0}
  assert m.mlqa_scores(data, {'q1': 'gato negro grande', 'q2': 'la casa'}, 'es') == pytest.approx(
      {'exact_match': 50.0, 'f1': 100 * (0.8 + 1.0) / 2})


# ------------------------------------------------------------------------------------------------------ BUCC


def test_bucc_threshold_maximises_dev_f1():
  candidates = {('s1', 't1'): 0.9, ('s2', 't9'): 0.8, ('s3', 't3'): 0.7, ('s4', 't4'): 0.6, ('s5', 't8'): 0.5}
  gold = {('s1', 't1'), ('s3', 't3'), ('s4', 't4'), ('s6', 't6')}
  # Keeping the top 1..5: F1 0.4, 0.33, 0.571, 0.75, 0.667 -> keep 4, threshold between 0.6 and 0.5.
  threshold = m.bucc_threshold(candidates, gold)
  assert threshold == pytest.approx(0.55)
  kept = m.bucc_extract(candidates, threshold)
  assert kept == [('s1', 't1'), ('s2', 't9'), ('s3', 't3'), ('s4', 't4')]
  assert m.bucc_f1(gold, kept) == pytest.approx({'f1': 75.0, 'precision': 75.0, 'recall': 75.0})


def test_bucc_threshold_keeps_the_first_of_equal_f1s():
  # Keeping 1 (P 1, R 1/2) and keeping 4 (P 1/2, R 1) both give F1 2/3: the first (higher threshold) wins.
  candidates = {('a', 'x'): 0.9, ('c', 'z'): 0.8, ('d', 'w'): 0.7, ('b', 'y'): 0.6, ('e', 'v'): 0.5}
  assert m.bucc_threshold(candidates, {('a', 'x'), ('b', 'y')}) == pytest.approx(0.85)


def test_bucc_threshold_edge_cases():
  # Best at the last candidate: its own score (xtreme's code would index past the list).
  assert m.bucc_threshold({('a', 'x'): 0.9, ('b', 'y'): 0.8}, {('a', 'x'), ('b', 'y')}) == 0.8
  assert m.bucc_threshold({('a', 'y'): 0.9}, {('a', 'x')}) == 0.0  # nothing correct: xtreme's initial 0
  # Tied scores cannot be separated: the threshold keeps both.
  tied = {('a', 'x'): 0.5, ('b', 'y'): 0.5}
  assert m.bucc_extract(tied, m.bucc_threshold(tied, {('a', 'x')})) == [('a', 'x'), ('b', 'y')]
  with pytest.raises(ValueError, match='needs gold pairs'):
    m.bucc_threshold(tied, set())
  assert m.bucc_f1({('a', 'x')}, []) == {'f1': 0.0, 'precision': 0.0, 'recall': 0.0}


def test_bucc_candidates_map_unique_sentences_to_ids():
  source_ids = m.unique_sentence_ids(['de-1', 'de-2', 'de-3'], ['A', 'B ', 'A'])
  assert source_ids == {'B': 'de-2'}  # 'A' occurs twice: left out
  candidates = [(0.5, 'B', 'x'), (0.7, 'B ', 'x'), (0.9, 'A', 'x'), (0.3, 'B', 'unknown')]
  assert m.bucc_candidate_scores(candidates, source_ids, {'x': 'en-1'}) == {('de-2', 'en-1'): 0.7}


# ------------------------------------------------------------------------------------------------------ means


def test_task_average_and_xtreme_score():
  qa = m.task_average('mlqa', {'en': {'exact_match': 40.0, 'f1': 60.0}, 'de': {'exact_match': 20.0, 'f1': 40.0}})
  assert qa == {'avg_exact_match': 30.0, 'avg_f1': 50.0, 'avg_metric': 40.0}
  assert m.task_average('panx', {'en': {'f1': 80.0, 'precision': 1.0, 'recall': 2.0},
                                 'de': {'f1': 60.0, 'precision': 1.0, 'recall': 2.0}})['avg_metric'] == 70.0
  scores = {'xnli': 70, 'pawsx': 80, 'udpos': 60, 'panx': 50, 'xquad': 40, 'mlqa': 30, 'tydiqa': 20,
            'bucc2018': 90, 'tatoeba': 10}
  # The XTREME score is the mean of the nine tasks (50), not of the four groups (52.5).
  assert m.xtreme_summary(scores) == pytest.approx(
      {'classification': 75.0, 'tagging': 55.0, 'qa': 30.0, 'retrieval': 50.0, 'xtreme_score': 50.0})
  del scores['tatoeba']
  assert m.xtreme_summary(scores) == pytest.approx({'classification': 75.0, 'tagging': 55.0, 'qa': 30.0})
