"""The layout's promises (issue 27), read off the source tree: one concept per file (no production module over
MAX_LINES), no import circle, configs are leaves that production code never imports, `core/` never imports
`projects/`, and the top of each project holds only its package files and concept folders."""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCTION = ('core', 'projects')
MAX_LINES = 460
# What may sit at the top of projects/bert besides folders.
BERT_TOP_FILES = {'__init__.py', 'cli.py'}


def _modules() -> Dict[str, str]:
  """{dotted module name: path} of every production .py file."""
  out = {}
  for top in PRODUCTION:
    for root, dirs, files in os.walk(os.path.join(REPO, top)):
      dirs[:] = [d for d in dirs if d != '__pycache__']
      for f in files:
        if f.endswith('.py'):
          path = os.path.join(root, f)
          rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
          out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
  return out


MODULES = _modules()


def _imports(name: str, path: str) -> Set[str]:
  """Production modules that `name` imports anywhere in its body (function-level imports count too)."""
  tree = ast.parse(open(path).read(), path)
  package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
  found: Set[str] = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parts = package.split('.')
        base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      targets = [base] + [f'{base}.{a.name}' for a in node.names]
    else:
      continue
    for t in targets:
      # The longest production module the import names (a package's submodule, or the package itself).
      while t and t not in MODULES:
        t = t.rpartition('.')[0]
      if t and t != name:
        found.add(t)
  return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is_package_init(name: str) -> bool:
  return MODULES[name].endswith('__init__.py')


@pytest.mark.parametrize('name', sorted(MODULES))
def test_no_production_module_is_over_the_line_limit(name):
  with open(MODULES[name]) as f:
    lines = sum(1 for _ in f)
  assert lines <= MAX_LINES, f'{MODULES[name]}: {lines} lines (> {MAX_LINES}): split it by concept'


def test_core_never_imports_projects():
  bad = {n: sorted(d for d in deps if d.startswith('projects')) for n, deps in GRAPH.items() if n.startswith('core')}
  assert not {n: d for n, d in bad.items() if d}


def test_only_configs_import_configs():
  bad = {n: sorted(d for d in deps if '.configs' in d) for n, deps in GRAPH.items() if '.configs' not in n}
  assert not {n: d for n, d in bad.items() if d}, 'production code reads configs by path, never by import'


def test_no_import_circle():
  # Package __init__ files that only declare registry names are edges of their own; a circle is among modules.
  graph = {n: {d for d in deps if not _is_package_init(d)} for n, deps in GRAPH.items()}
  state: Dict[str, int] = {}
  stack: List[str] = []
  circles: List[List[str]] = []

  def visit(node: str) -> None:
    state[node] = 1
    stack.append(node)
    for dep in sorted(graph.get(node, ())):
      if state.get(dep) == 1:
        circles.append(stack[stack.index(dep):] + [dep])
      elif dep not in state:
        visit(dep)
    stack.pop()
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node)
  assert not circles, ' ; '.join(' -> '.join(c) for c in circles)


def test_top_of_each_project_holds_only_package_files_and_folders():
  top = os.path.join(REPO, 'projects', 'bert')
  files = {f for f in os.listdir(top) if os.path.isfile(os.path.join(top, f)) and f.endswith('.py')}
  assert files == BERT_TOP_FILES
  for project in os.listdir(os.path.join(REPO, 'projects')):
    path = os.path.join(REPO, 'projects', project)
    if os.path.isdir(path) and project != '__pycache__':
      assert os.path.exists(os.path.join(path, '__init__.py')), f'projects/{project} is not a package'
