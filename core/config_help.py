"""What `main.py --help` and `--print_config` print: the usage, and every field of a config with its value and
meaning.

A config file documents its fields in `FIELD_DOCS`, {dotted field name or fnmatch pattern: one-line meaning}
(e.g. 'model.hidden_size', 'evals.*.every'); `describe` reads it from the file that --config names.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import textwrap
import types
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import ml_collections
from absl import flags

from core import errors

UNDOCUMENTED = '(undocumented)'


def usage(main_doc: str, flag_values: flags.FlagValues, module_name: str) -> str:
  """`main_doc` (the entry point's docstring), then the flags `module_name` defines with their help and defaults."""
  lines = [main_doc.strip(), '', 'Flags:']
  for flag in sorted(flag_values.get_flags_for_module(module_name), key=lambda f: f.name):
    default = '' if flag.default in (None, False) or flag.name == 'config' else f' (default: {flag.default!r})'
    lines.append(f'  --{flag.name}: {flag.help}{default}')
    lines[-1:] = textwrap.wrap(lines[-1], 118, subsequent_indent='      ')
  lines += ['  --config.FIELD=VALUE: override one field of the config (type-checked); --print_config lists them',
            '  --helpfull: every flag, the libraries\' (absl, JAX) included']
  return '\n'.join(lines)


def leaves(config: Any, prefix: str = '') -> Iterator[Tuple[str, Any]]:
  """(dotted name, value) of every field of `config`, nested ConfigDicts walked in their key order."""
  items = config.items() if isinstance(config, (ml_collections.ConfigDict, Mapping)) else ()
  for key, value in items:
    name = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)) and len(value):
      yield from leaves(value, name + '.')
    else:
      yield name, value


def load_config_module(path: str) -> types.ModuleType:
  """The config file at `path` (no variant) as a fresh module, as `--config` loads it (not put in sys.modules)."""
  if not os.path.isfile(path):
    raise errors.MissingFileError(f'Config file {path} does not exist.')
  spec = importlib.util.spec_from_file_location(f'_config_{os.path.basename(path)[:-len(".py")]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(config_file: str) -> ml_collections.ConfigDict:
  """The config of `path.py[:variant]`, as `--config=path.py[:variant]` gives it without overrides (unlocked):
  `get_config(variant)`, or `get_config()` without a variant. For runs of runs that build each sub-run's config
  from its config file (`load_config('projects/bert/configs/glue.py:mrpc')`) instead of importing the file."""
  path, sep, variant = config_file.partition(':')
  module = load_config_module(path)
  return module.get_config(variant) if sep else module.get_config()


def field_docs(config_file: Optional[str]) -> Dict[str, str]:
  """The `FIELD_DOCS` of the config file (`path.py[:variant]`; empty when it has none or is not a file)."""
  config_file = (config_file or '').split(':')[0]  # path.py[:variant]
  if not config_file or not os.path.isfile(config_file):
    return {}
  return dict(getattr(load_config_module(config_file), 'FIELD_DOCS', {}))


def doc_of(name: str, docs: Mapping[str, str]) -> str:
  """The meaning of field `name`: its own entry, else that of the most specific pattern matching it (the one with
  the most literal characters: `runs.*.evals.x.batch_size` before `runs.*.batch_size`, as `*` spans dots)."""
  if name in docs:
    return docs[name]
  matching = [p for p in docs if fnmatch.fnmatchcase(name, p)]
  if not matching:
    return UNDOCUMENTED
  return docs[max(matching, key=lambda p: len(p.replace('*', '').replace('?', '')))]


def describe(config: ml_collections.ConfigDict, config_file: Optional[str] = None) -> str:
  """One line per field: `name = value  # meaning`, the values as `--config.name=` takes them."""
  docs = field_docs(config_file)
  rows = [(name, repr(value), doc_of(name, docs)) for name, value in leaves(config)]
  width = min(max((len(n) + len(v) for n, v, _ in rows), default=0) + 3, 70)
  out = [f'# {config_file or "config"}: {len(rows)} fields; set any with --config.NAME=VALUE']
  for name, value, doc in rows:
    left = f'{name} = {value}'
    out.append(f'{left:<{width}}  # {doc}' if len(left) <= width else f'{left}\n{"":<{width}}  # {doc}')
  return '\n'.join(out)
