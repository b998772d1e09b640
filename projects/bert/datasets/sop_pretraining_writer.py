"""The child process of `prepare pretraining --sentence_order=true`: ALBERT's sentence-order prediction (SOP) pairs
instead of BERT's next-sentence ones, on TF-Models' create_pretraining_data.py.

  python -m projects.bert.datasets.sop_pretraining_writer --input_file=... --vocab_file=... --output_file=...
  (run by `pretraining_writer.prepare_pretraining`, which stages and commits its files; not meant to be run alone)

Everything but the pair comes from the upstream module, as `prepare pretraining` runs it: its flags, tokenizer,
document reading and shuffling (`create_training_instances`), masking (`create_masked_lm_predictions`: whole-word
and n-gram masking with --do_whole_word_mask / --max_ngram_size), truncation (`truncate_seq_pair`) and record
writing (`write_instance_to_example_files`). Only `create_instances_from_document` is ours (`sop_instances`).

The pair, as ALBERT's create_pretraining_data.py builds it (google-research/albert at b772393,
`create_instances_from_document` lines 266-390; the swap at 338-343): a chunk of consecutive sentences of one
document, about `target_seq_length` tokens (upstream's short_seq_prob kept), is cut after a random number of
sentences into A (the first part) and B (the rest); with probability 0.5 the two are swapped. The label, written as
`next_sentence_labels` (ALBERT keeps the name, lines 163 and 173-177), is 1 when swapped, 0 in document order:
Hugging Face's `sentence_order_label` (transformers models/albert/modeling_albert.py, lines 460-463 in 5.23: "0
indicates original order (sequence A, then sequence B), 1 indicates switched order").

One departure from ALBERT: a chunk of a single sentence (a document's last sentence alone, or a sentence longer
than the target) gets in ALBERT a B from a random other document, labelled 1 (lines 314-337: an NSP negative
among the "swapped" pairs). Here a chunk takes sentences until it holds two, so A and B are always adjacent parts
of one document, and a label of 1 always means "swapped"; a document's lone last sentence (and a one-sentence
document) gives no pair.
"""

from __future__ import annotations

import random
from typing import Any, List, Optional, Sequence

from absl import app, flags
from official.nlp.data import create_pretraining_data as upstream


def sop_instances(all_documents: Sequence[Sequence[List[str]]], document_index: int, max_seq_length: int,
                  short_seq_prob: float, masked_lm_prob: float, max_predictions_per_seq: int,
                  vocab_words: List[str], rng: random.Random, do_whole_word_mask: bool = False,
                  max_ngram_size: Optional[int] = None) -> List[Any]:
  """Upstream `create_instances_from_document`'s signature and result (`TrainingInstance`s of one document, with
  `is_random_next` = swapped), with sentence-order pairs (see the module docstring)."""
  document = all_documents[document_index]
  max_num_tokens = max_seq_length - 3  # [CLS] A [SEP] B [SEP]
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:  # upstream's occasional short sequence
    target_seq_length = rng.randint(2, max_num_tokens)
  instances = []
  chunk: List[List[str]] = []
  length = 0
  for i, sentence in enumerate(document):
    chunk.append(sentence)
    length += len(sentence)
    if len(chunk) < 2 or (i < len(document) - 1 and length < target_seq_length):
      continue  # a pair needs two sentences; otherwise close the chunk at the target or the document's end
    a_end = rng.randint(1, len(chunk) - 1)
    tokens_a = [t for s in chunk[:a_end] for t in s]
    tokens_b = [t for s in chunk[a_end:] for t in s]
    swapped = rng.random() < 0.5
    if swapped:
      tokens_a, tokens_b = tokens_b, tokens_a
    upstream.truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
    tokens = ['[CLS]', *tokens_a, '[SEP]', *tokens_b, '[SEP]']
    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    tokens, positions, labels = upstream.create_masked_lm_predictions(
        tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng, do_whole_word_mask, max_ngram_size)
    instances.append(upstream.TrainingInstance(tokens=tokens, segment_ids=segment_ids, masked_lm_positions=positions,
                                               masked_lm_labels=labels, is_random_next=swapped))
    chunk, length = [], 0
  return instances


def main(argv: Sequence[str]) -> None:
  # Upstream's create_training_instances calls the module's create_instances_from_document by name: ours replaces
  # it in this process only, so that everything else runs as upstream's main runs it.
  upstream.create_instances_from_document = sop_instances
  upstream.main(argv)


if __name__ == '__main__':
  flags.mark_flag_as_required('input_file')
  flags.mark_flag_as_required('output_file')
  app.run(main)
