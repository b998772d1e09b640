"""Interrupted writes keep a complete copy: params directories (best/, convert --output) and JSON files
(config.json, results.json), each interrupted at the worst moment by a patched function."""

import errno
import json
import os

import ml_collections
import numpy as np
import pytest
from etils import epath

from core import app, atomic, params_io, setup


def _params(value):
  return {'layer': {'kernel': np.full((3, 2), value, np.float32), 'bias': np.full((2,), value, np.float32)}}


def _value(directory):
  params, meta = params_io.load_params(str(directory))
  return float(params['layer']['kernel'][0, 0]), meta['version']


def test_save_params_failing_while_writing_keeps_the_previous_copy(tmp_path, monkeypatch):
  target = tmp_path / 'best'
  params_io.save_params(str(target), _params(1.0), {'version': 1})

  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device', str(target) + '.new/metadata.json')

  monkeypatch.setattr(atomic, 'write_json', disk_full)  # the new arrays are written, its metadata fails
  with pytest.raises(OSError, match='No space left'):
    params_io.save_params(str(target), _params(2.0), {'version': 2})
  monkeypatch.undo()
  assert _value(target) == (1.0, 1)
  params_io.save_params(str(target), _params(3.0), {'version': 3})  # the half-written copy is cleared
  assert _value(target) == (3.0, 3)
  assert sorted(os.listdir(tmp_path)) == ['best']


def test_save_params_killed_between_the_renames_keeps_the_new_copy(tmp_path, monkeypatch):
  target = tmp_path / 'best'
  params_io.save_params(str(target), _params(1.0), {'version': 1})
  path_cls = type(epath.Path(tmp_path))
  rename, calls = path_cls.rename, []

  def dies_at_second_rename(self, dst):
    if str(self.parent) == str(tmp_path):  # the swap's renames (orbax renames inside the new copy too)
      calls.append(dst)
    if len(calls) == 2:
      raise KeyboardInterrupt  # killed after best -> best.old, before best.new -> best
    return rename(self, dst)

  monkeypatch.setattr(path_cls, 'rename', dies_at_second_rename)
  with pytest.raises(KeyboardInterrupt):
    params_io.save_params(str(target), _params(2.0), {'version': 2})
  monkeypatch.undo()
  assert not target.exists() and sorted(os.listdir(tmp_path)) == ['best.new', 'best.old']
  assert params_io.has_params(str(target))
  assert _value(target) == (2.0, 2)  # readers take the complete new copy, changing nothing on disk
  assert params_io.read_pretrained(str(target))[1]['version'] == 2
  params_io.save_params(str(target), _params(3.0), {'version': 3})  # the next save puts things in order first
  assert _value(target) == (3.0, 3) and sorted(os.listdir(tmp_path)) == ['best']


def test_recover_params_puts_the_copy_a_killed_swap_left_back_in_place(tmp_path):
  # Issue 28, finding 13: the state a kill between the swap's renames leaves (best -> best.old done, best.new ->
  # best not), and the one a kill before the new copy was complete leaves (best.new without metadata.json).
  target, new, old = tmp_path / 'best', tmp_path / 'best.new', tmp_path / 'best.old'
  params_io.save_params(str(target), _params(1.0), {'version': 1})
  params_io.save_params(str(new), _params(2.0), {'version': 2})
  os.rename(target, old)
  params_io.recover_params(str(target))
  assert sorted(os.listdir(tmp_path)) == ['best'] and _value(target) == (2.0, 2)
  os.rename(target, old)  # the previous copy aside, the new one cut short
  params_io.save_params(str(new), _params(3.0), {'version': 3})
  os.remove(new / 'metadata.json')
  params_io.recover_params(str(target))
  assert _value(target) == (2.0, 2) and 'best' in os.listdir(tmp_path) and 'best.old' not in os.listdir(tmp_path)
  params_io.recover_params(str(target))  # nothing to do: a no-op
  assert _value(target) == (2.0, 2)


def test_config_json_interrupted_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
  config = ml_collections.ConfigDict({'model': {'hidden': 8}, 'num_train_steps': 10})
  setup.write_run_config(config, str(tmp_path))
  before = (tmp_path / 'config.json').read_text()

  def killed(fd):
    raise KeyboardInterrupt

  monkeypatch.setattr(os, 'fsync', killed)  # the new text is half on its way to disk
  config.num_train_steps = 20
  with pytest.raises(KeyboardInterrupt):
    setup.write_run_config(config, str(tmp_path))
  monkeypatch.undo()
  assert (tmp_path / 'config.json').read_text() == before
  assert os.listdir(tmp_path) == ['config.json']  # no temporary file left
  setup.write_run_config(config, str(tmp_path))
  assert json.loads((tmp_path / 'config.json').read_text())['num_train_steps'] == 20


def test_truncated_config_json_names_the_file_and_the_fix(tmp_path):
  (tmp_path / 'config.json').write_text('{"model": {"hidden": 8}, "num_tr')
  with pytest.raises(ValueError, match=r'config.json is not valid JSON .*damaged.*Delete it .* or use a new --workdir'):
    app.check_workdir_config(ml_collections.ConfigDict({'model': {'hidden': 8}}), str(tmp_path))
