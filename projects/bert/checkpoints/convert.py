r"""TF Model Garden / original TF BERT, Hugging Face and Scenic BERT checkpoints -> our parameter tree, and ours ->
Hugging Face (the command line; the readers and the export are functions of `tf_reader`, `hf_reader`,
`scenic_reader` and `hf_export`).

  python -m projects.bert.checkpoints.convert --format=tf --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
      --bert_config=uncased_L-12_H-768_A-12/bert_config.json --output=/tmp/bert_base
  python -m projects.bert.checkpoints.convert --format=hf --input=/path/to/save_pretrained_dir --output=/tmp/bert_hf
  python -m projects.bert.checkpoints.convert --format=scenic --input=$SCENIC_WORKDIR --output=/tmp/scenic_bert
  python -m projects.bert.checkpoints.convert --export --format=hf --input=$WD/mrpc --output=/tmp/mrpc_hf   # ours -> HF

The output is a `core.params_io.save_params` directory whose metadata holds `model` (the matching config.model)
and `source`, with the source's vocab.txt beside it when it has one; trainers start from it with
`config.init_from=DIR`. Local files only: nothing is downloaded.

`--export` goes the other way (`hf_export.export_hf_checkpoint`): a params directory or a run's workdir ->
config.json + model.safetensors (+ vocab.txt when known) that `transformers.BertModel.from_pretrained` loads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np

from core import errors, logs
from projects.bert.checkpoints import hf_export, hf_reader, layout, output_guard, scenic_reader, tf_reader


FORMATS = ('tf', 'hf', 'scenic')

def _is_previous_conversion(folder: str) -> bool:
  """Whether `folder` is a params directory that `main` wrote: its metadata.json has `source` {'format': 'tf' or
  'hf', ...} (a run's best/ or another params directory has not)."""
  try:
    with open(os.path.join(folder, 'metadata.json')) as f:
      metadata = json.load(f)
  except (OSError, ValueError):
    return False
  source = metadata.get('source') if isinstance(metadata, dict) else None
  return isinstance(source, dict) and source.get('format') in FORMATS and os.path.isdir(
      os.path.join(folder, 'params'))


OUTPUT = output_guard.OutputKind('a params directory written by convert',
                                 frozenset({'params', 'metadata.json', 'vocab.txt'}), _is_previous_conversion)


def source_vocab(input_path: str, bert_config: Optional[str] = None) -> Optional[str]:
  """The vocab.txt beside a source checkpoint (its folder, or that of its bert_config.json), if there is one."""
  folders = [input_path if os.path.isdir(input_path) else os.path.dirname(input_path)]
  if bert_config:
    folders.append(os.path.dirname(bert_config))
  found = [os.path.join(f or '.', 'vocab.txt') for f in folders if os.path.isfile(os.path.join(f or '.', 'vocab.txt'))]
  return found[0] if found else None


def convert(fmt: str, input_path: str,
            bert_config: Optional[str] = None) -> Tuple[layout.Params, ml_collections.ConfigDict]:
  """Dispatches on `fmt` ('tf' or 'hf'); for 'tf' the bert_config.json defaults to the checkpoint's directory."""
  if fmt == 'hf':
    return hf_reader.convert_hf_checkpoint(input_path)
  if fmt == 'tf':
    if bert_config is None:
      folder = input_path if os.path.isdir(input_path) else os.path.dirname(input_path)
      bert_config = os.path.join(folder, 'bert_config.json')
      if not os.path.exists(bert_config):
        raise FileNotFoundError(f'{bert_config} not found: pass --bert_config=PATH.')
    return tf_reader.convert_tf_checkpoint(input_path, bert_config)
  if fmt == 'scenic':
    return scenic_reader.convert_scenic_checkpoint(input_path)
  raise ValueError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m projects.bert.checkpoints.convert',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--format', required=True, choices=FORMATS, help='Source checkpoint format: tf (TF1 / Model '
                      'Garden), hf (Hugging Face), scenic (a Scenic BERT checkpoint_<step> file or workdir); with '
                      '--export: the format to write, hf only.')
  parser.add_argument('--input', required=True, help='TF checkpoint prefix/directory, or a save_pretrained dir; with '
                      '--export: our params directory or a run\'s workdir.')
  parser.add_argument('--bert_config', default=None, help='bert_config.json for --format=tf.')
  parser.add_argument('--output', required=True, help='Directory to write (core.params_io.save_params; with '
                      '--export: a Hugging Face directory).')
  parser.add_argument('--export', action='store_true', help='Write our weights in the Hugging Face format '
                      '(config.json, model.safetensors, vocab.txt when known) instead of reading a checkpoint.')
  parser.add_argument('--vocab_file', default=None, help='With --export: the vocab.txt to ship (default: found '
                      'beside the weights or the checkpoint they came from).')
  parser.add_argument(logs.VERBOSE_FLAG, action='store_true', help="Also log the libraries' INFO lines.")
  args = parser.parse_args(argv)
  logs.configure(args.verbose)

  from core import atomic, params_io

  if args.export:
    if args.format != 'hf':
      sys.exit('error: --export writes the Hugging Face format only: pass --format=hf.')
    try:
      info = hf_export.export_hf_checkpoint(args.input, args.output, args.vocab_file)
    except (ValueError, FileNotFoundError, errors.UserError) as e:
      sys.exit(f'error: {e}')
    print(f'Wrote {args.output}: {info["architecture"]} ({", ".join(info["files"])}) from {info["weights"]}'
          f'{"" if info["vocab_file"] else "; no vocab.txt known (pass --vocab_file to add one)"}.')
    return
  try:
    output_guard.check_output(args.output, [args.input, args.bert_config], OUTPUT)  # before the (long) read
    params, model_config = convert(args.format, args.input, args.bert_config)
  except (ValueError, FileNotFoundError, errors.UserError) as e:  # a wrong path, a checkpoint that does not fit
    sys.exit(f'error: {e}')
  source = {'format': args.format, 'path': os.path.abspath(args.input)}
  if args.bert_config:
    source['bert_config'] = os.path.abspath(args.bert_config)
  existed = os.path.exists(args.output)
  try:
    params_io.save_params(args.output, params, metadata={'model': model_config.to_dict(), 'source': source,
                                                          'heads': sorted(k for k in params if k != 'bert')})
  except Exception as e:  # pylint: disable=broad-except  (orbax and TensorStore wrap the OSError in their own)
    if errors.disk_full_error(e) is None:
      raise
    staged = os.path.abspath(args.output) + atomic.NEW_SUFFIX
    if not os.path.exists(os.path.join(staged, 'metadata.json')):  # written last: without it the copy is partial
      shutil.rmtree(staged, ignore_errors=True)
    where = getattr(errors.disk_full_error(e), 'filename', None) or staged
    sys.exit(f'error: No space left on device writing {where} (the converted params for {args.output}). '
             f'{f"The previous {args.output} is kept as it was." if existed else "Nothing was written."} Free space '
             f'on that disk, or pass an --output on another one, then rerun the same command.')
  vocab = source_vocab(args.input, args.bert_config)
  if vocab:  # beside the params, for `prepare --vocab_file` and the export
    with open(vocab) as f:
      atomic.write_text(os.path.join(args.output, 'vocab.txt'), f.read())
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
  print(f'Wrote {args.output}: {count:,} parameters ({", ".join(sorted(params))}); '
        f'config.model: {layout.describe(model_config)}, hidden_act={model_config.hidden_act}; '
        + (f'vocab.txt from {vocab}.' if vocab else 'no vocab.txt beside the source (pass the model\'s vocab.txt to '
           '`prepare` as --vocab_file).'))


if __name__ == '__main__':
  main(sys.argv[1:])
