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
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import ml_collections
from absl import flags

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


def field_docs(config_file: Optional[str]) -> Dict[str, str]:
  """The `FIELD_DOCS` of the config file (`path.py[:variant]`; empty when it has none or is not a file)."""
  config_file = (config_file or '').split(':')[0]  # path.py[:variant]
  if not config_file or not os.path.isfile(config_file):
    return {}
  spec = importlib.util.spec_from_file_location('_config_for_docs', config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return dict(getattr(module, 'FIELD_DOCS', {}))


def doc_of(name: str, docs: Mapping[str, str]) -> str:
  """The meaning of field `name`: its own entry, else the first pattern that matches it."""
  if name in docs:
    return docs[name]
  return next((doc for pattern, doc in docs.items() if fnmatch.fnmatchcase(name, pattern)), UNDOCUMENTED)


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
