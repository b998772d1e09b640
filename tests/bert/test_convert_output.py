"""`convert --output` never removes what it did not write (issue 28, finding 0), and a full disk during a write is a
clear error that keeps the previous output (finding 12).

Both directions replace the output folder as a whole (written beside it, then swapped in), so each case injects an
output that holds something else: other files, the input itself (a training workdir given as both --input and
--output), the input's parent, `--output=.` from a folder with files. Before the fix each of these exited 0 with
the folder's contents gone.
"""

import errno
import json
import os
import re

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from core import params_io
from projects.bert.checkpoints import convert, hf_export, layout
from projects.bert.models import architecture

pytest.importorskip('safetensors')


def _tiny_params(seed=0):
  config = architecture.model_config('tiny', vocab_size=40, hidden_size=16, num_layers=1, num_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
  rng = np.random.default_rng(seed)
  flat = {name: rng.normal(0.0, 0.2, shape).astype(np.float32)
          for name, shape in layout.expected_shapes(config).items() if name.startswith('bert/')}
  return traverse_util.unflatten_dict(flat, sep='/'), config


@pytest.fixture
def sources(tmp_path):
  """(our params directory, a Hugging Face folder exported from it, a run's workdir with a checkpoint and logs)."""
  params, config = _tiny_params()
  ours = tmp_path / 'sources' / 'ours'
  params_io.save_params(str(ours), params, metadata={'model': config.to_dict()})
  hf = tmp_path / 'sources' / 'hf'
  hf_export.export_hf_checkpoint(str(ours), str(hf))
  workdir = tmp_path / 'work' / 'run'
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(workdir / 'checkpoints' / '3' / 'state', {'params': params, 'step': np.int32(3)})
  (workdir / 'config.json').write_text(json.dumps({'model': config.to_dict()}))
  (workdir / 'train.log').write_text('step 3\n')
  return ours, hf, workdir


def _snapshot(folder):
  """{relative path: bytes} of every file under `folder`."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, folder)] = open(path, 'rb').read()
  return out


def _error(argv):
  with pytest.raises(SystemExit) as e:
    convert.main(argv)
  return str(e.value.code)


def _export(source, output):
  return ['--export', '--format=hf', f'--input={source}', f'--output={output}']


def _import(source, output):
  return ['--format=hf', f'--input={source}', f'--output={output}']


@pytest.mark.parametrize('direction', ['export', 'import'])
def test_output_with_other_files_is_refused_and_kept(sources, tmp_path, direction):
  ours, hf, _ = sources
  out = tmp_path / 'out'
  (out / 'data').mkdir(parents=True)
  (out / 'notes.txt').write_text('mine')
  (out / 'data' / 'x.tsv').write_text('1\t2\n')
  before = _snapshot(out)
  argv = _export(ours, out) if direction == 'export' else _import(hf, out)
  message = _error(argv)
  assert message.startswith('error: ')
  assert re.search(rf'--output={re.escape(str(out))} already exists and holds data/, notes.txt, which is not a .*'
                   rf'Nothing was written\. Pass a new or empty folder as --output', message), message
  assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ['out', 'sources', 'work']


def test_workdir_as_both_input_and_output_is_refused(sources):
  _, _, workdir = sources
  before = _snapshot(workdir)
  message = _error(_export(workdir, workdir))
  assert f'--output={workdir} is the input {workdir}' in message and 'remove the input' in message, message
  assert _snapshot(workdir) == before


@pytest.mark.parametrize('direction', ['export', 'import'])
def test_parent_of_the_input_as_output_is_refused(sources, direction):
  ours, hf, workdir = sources
  source = workdir if direction == 'export' else hf
  parent = source.parent
  (parent / 'other_run.txt').write_text('keep me')
  before = _snapshot(parent)
  message = _error(_export(source, parent) if direction == 'export' else _import(source, parent))
  assert f'--output={parent} holds the input {source}' in message and 'everything else in that folder' in message
  assert _snapshot(parent) == before


@pytest.mark.parametrize('direction', ['export', 'import'])
def test_output_dot_in_a_folder_with_files_is_refused(sources, tmp_path, monkeypatch, direction):
  ours, hf, _ = sources
  home = tmp_path / 'home'
  (home / 'projects').mkdir(parents=True)
  (home / 'thesis.tex').write_text('chapter 1')
  before = _snapshot(home)
  monkeypatch.chdir(home)
  message = _error(_export(ours, '.') if direction == 'export' else _import(hf, '.'))
  assert re.search(r'--output=\. already exists and holds projects/, thesis.tex, which is not', message), message
  assert _snapshot(home) == before and os.listdir(tmp_path).count('home') == 1


def test_a_previous_output_of_the_same_kind_is_replaced_and_other_folders_refused(sources, tmp_path, capsys):
  ours, hf, _ = sources
  out = tmp_path / 'hf_out'
  from safetensors.numpy import load_file, save_file
  convert.main(_export(ours, out))
  first, inode = load_file(str(out / 'model.safetensors')), os.stat(out).st_ino
  convert.main(_export(ours, out))  # the same command again: replaces its own output
  assert os.stat(out).st_ino != inode and sorted(os.listdir(out)) == ['config.json', 'model.safetensors']
  assert {k: v.tolist() for k, v in load_file(str(out / 'model.safetensors')).items()} == {
      k: v.tolist() for k, v in first.items()}
  assert sorted(os.listdir(tmp_path)) == ['hf_out', 'sources', 'work']
  (out / 'README.md').write_text('my notes')  # an export plus a file it does not write: refused
  assert re.search(r'is a Hugging Face folder written by convert --export but also holds files it does not write '
                   r'\(README.md\)', _error(_export(ours, out)))
  assert (out / 'README.md').read_text() == 'my notes'
  # A Hugging Face folder that is not an export (a download: the same file names, without the export's marker).
  download = tmp_path / 'download'
  download.mkdir()
  (download / 'config.json').write_text((hf / 'config.json').read_text())
  save_file(load_file(str(hf / 'model.safetensors')), str(download / 'model.safetensors'), metadata={'format': 'pt'})
  assert 'which is not a Hugging Face folder written by convert --export' in _error(_export(ours, download))
  # The import's output: a previous conversion is replaced; a run's best/ (a params directory convert did not write)
  # is not.
  converted = tmp_path / 'converted'
  convert.main(_import(hf, converted))
  convert.main(_import(hf, converted))
  assert params_io.load_params_metadata(str(converted))['source']['format'] == 'hf'
  before = _snapshot(ours)
  assert 'which is not a params directory written by convert' in _error(_import(hf, ours))
  assert _snapshot(ours) == before
  # An empty folder or a new path is fine; a file is not.
  (tmp_path / 'empty').mkdir()
  convert.main(_import(hf, tmp_path / 'empty'))
  (tmp_path / 'a_file').write_text('x')
  assert 'is a file, not a folder' in _error(_import(hf, tmp_path / 'a_file'))
  assert (tmp_path / 'a_file').read_text() == 'x'
  # The swap's sibling names (`out.new` is removed before writing, `out.old` after): a user's folder there is kept.
  (tmp_path / 'mine.new').mkdir()
  (tmp_path / 'mine.new' / 'draft.txt').write_text('draft')
  assert f'{tmp_path}/mine.new exists and is not a copy that an interrupted write' in _error(
      _import(hf, tmp_path / 'mine'))
  assert (tmp_path / 'mine.new' / 'draft.txt').read_text() == 'draft' and not (tmp_path / 'mine').exists()


@pytest.mark.parametrize('failing', ['model.safetensors', 'config.json'])
def test_disk_full_during_export_names_the_file_and_keeps_the_previous_output(sources, tmp_path, monkeypatch,
                                                                             failing):
  """A full disk in the writer (safetensors' save_file, or the config.json write): an `error:` naming the file being
  written and saying the old output is kept; the old output is byte-identical, and no partial copy is left beside
  it. (A real full disk can fail in any write; this injects it in two of the export's writers. Checked by hand on a
  64 KiB tmpfs, which needs root to mount: the same message.)"""
  import safetensors
  import safetensors.numpy
  from core import atomic
  ours, _, _ = sources
  out = tmp_path / 'hf_out'
  convert.main(_export(ours, out))
  before = _snapshot(out)

  def full(*args, **kwargs):
    if failing == 'model.safetensors':  # safetensors' own error, as a full tmpfs gives it: no OSError, no file name
      raise safetensors.SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')
    raise OSError(errno.ENOSPC, 'No space left on device', str(args[0]))

  if failing == 'model.safetensors':
    monkeypatch.setattr(safetensors.numpy, 'save_file', full)
  else:
    monkeypatch.setattr(atomic, 'write_json', full)
  message = _error(_export(ours, out))
  assert message == (f'error: No space left on device writing {out}.new/{failing} (the Hugging Face export to {out}). '
                     f'The previous {out} is kept as it was. Free space on that disk, or pass an --output on another '
                     f'one, then rerun the same command.'), message
  assert _snapshot(out) == before
  assert sorted(os.listdir(tmp_path)) == ['hf_out', 'sources', 'work']  # no hf_out.new left taking the space


def test_disk_full_during_import_keeps_the_previous_output(sources, tmp_path, monkeypatch):
  """The import's write (save_params, metadata.json last) on a full disk: an `error:`, the previous output kept."""
  from core import atomic
  _, hf, _ = sources
  out = tmp_path / 'converted'
  convert.main(_import(hf, out))
  before = _snapshot(out)

  def full(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device', str(path))

  monkeypatch.setattr(atomic, 'write_json', full)
  message = _error(_import(hf, out))
  assert message.startswith(f'error: No space left on device writing {out}.new/metadata.json (the converted params '
                            f'for {out}). The previous {out} is kept as it was.'), message
  assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ['converted', 'sources', 'work']


def test_the_source_vocab_goes_beside_the_converted_params(sources, tmp_path, capsys):
  _, hf, _ = sources
  (hf / 'vocab.txt').write_text(''.join(f'tok{i}\n' for i in range(40)))
  out = tmp_path / 'converted'
  convert.main(_import(hf, out))
  assert (out / 'vocab.txt').read_text() == (hf / 'vocab.txt').read_text()
  assert f'vocab.txt from {hf}/vocab.txt' in capsys.readouterr().out
  convert.main(_import(hf, out))  # a previous conversion with its vocab.txt is replaced, not refused
  (hf / 'vocab.txt').unlink()
  convert.main(_import(hf, out))
  assert not (out / 'vocab.txt').exists() and 'no vocab.txt beside the source' in capsys.readouterr().out
