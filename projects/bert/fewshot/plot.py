r"""Several encoders' few-shot curves on one figure, from the results files of their few-shot runs.

  python -m projects.bert.fewshot.plot --output=/tmp/fewshot.png minilm=/tmp/fs_minilm random=/tmp/fs_random \
      /tmp/fs_pt
  python -m projects.bert.fewshot.plot --output=/tmp/p1.png --section=fewshot /tmp/p1fs/results.json

Each argument is `[LABEL=]PATH`: a workdir (its results.json, else eval_results.json) or a results file; the
label defaults to the workdir's name. `--section` names the evaluator (config.evals) whose results are drawn
(default: fewshot). A panel per task, a line per encoder (our protocol's mean +- std over seeds) and the
majority-class baseline dashed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

from core import errors
from projects.bert.fewshot import probes as fewshot

RESULTS_FILES = ('results.json', 'eval_results.json')


def read_entries(spec: str, section: str = 'fewshot') -> Tuple[str, Dict[str, Any]]:
  """`[LABEL=]PATH` -> (label, our protocol's entries from the `section` of the results file at or in PATH)."""
  label, _, path = spec.rpartition('=') if '=' in spec else ('', '', spec)
  path = os.path.abspath(path)
  file = path
  if os.path.isdir(path):
    found = [os.path.join(path, f) for f in RESULTS_FILES if os.path.exists(os.path.join(path, f))]
    if not found:
      raise errors.MissingFileError(f'{path} holds none of {RESULTS_FILES}: give a few-shot run\'s workdir or its '
                                    f'results file.')
    file = found[0]
  try:
    with open(file) as f:
      results = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise errors.DataError(f'{file} cannot be read as a results file ({e}).') from None
  entries = (results.get(section) or {}).get('tasks')
  if not entries:
    raise errors.DataError(f'{file} has no few-shot results of our protocol in section {section!r} (sections: '
                           f'{sorted(k for k, v in results.items() if isinstance(v, dict))}): pass --section, or '
                           f'a run with protocol ours or both.')
  return label or os.path.basename(os.path.dirname(file)), entries


def main(argv: Optional[Sequence[str]] = None) -> str:
  p = argparse.ArgumentParser(prog='python -m projects.bert.fewshot.plot', description=__doc__.split('\n')[0])
  p.add_argument('runs', nargs='+', help='[LABEL=]PATH of a few-shot run (workdir or results file).')
  p.add_argument('--output', required=True, help='PNG to write.')
  p.add_argument('--section', default='fewshot', help='The few-shot evaluator\'s name in config.evals.')
  p.add_argument('--title', default='')
  args = p.parse_args(argv)
  runs = dict(read_entries(spec, args.section) for spec in args.runs)
  path = fewshot.plot_encoders(runs, args.output, args.title)
  print(f'Wrote {path} ({len(runs)} encoders: {", ".join(runs)}).')
  return path


if __name__ == '__main__':
  try:
    main(sys.argv[1:])
  except errors.UserError as e:  # the message names the file and the fix; no traceback above it
    sys.exit(f'Error: {e}')
