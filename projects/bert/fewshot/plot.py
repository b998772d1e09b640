r"""The few-shot figure: a panel per task, the metric against shots per class, a line per encoder, eval split and
protocol, and the majority-class baseline dashed. Our protocol's lines are the mean +- std over seeds; Scenic's
protocol has one support set per shot count, so its lines (squares, dotted) have no spread and name the feature
that stood for Scenic's. The `fewshot` evaluator draws one encoder (workdir/{name}.png); the CLI overlays several
encoders from the results files of their few-shot runs:

  python -m projects.bert.fewshot.plot --output=/tmp/fewshot.png minilm=/tmp/fs_minilm random=/tmp/fs_random \
      /tmp/fs_pt
  python -m projects.bert.fewshot.plot --output=/tmp/p1.png --section=fewshot /tmp/p1fs/results.json

Each argument is `[LABEL=]PATH`: a workdir (its results.json, else eval_results.json) or a results file; the
label defaults to the workdir's name. `--section` names the evaluator (config.evals) whose results are drawn
(default: fewshot); the figure draws every protocol the run has (`section_entries`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from core import errors

RESULTS_FILES = ('results.json', 'eval_results.json')


def plot_results(entries: Mapping[str, Mapping[str, Any]], path: str, title: str = '') -> str:
  """Writes a PNG with a panel per task: metric (mean +- std over seeds; no spread without 'std') against shots per
  class, log2 axis, a line per entry (legend: its 'line', else its split; 'protocol' 'scenic': squares, dotted), and
  the majority-class baseline of each split and metric (entries' 'majority') as a dashed line."""
  return plot_encoders({'': entries}, path, title)


def section_entries(section: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
  """The lines of a few-shot results section (the `fewshot` evaluator's summary, as results.json holds it): our
  protocol's entries ('tasks'), the k-shot fine-tuning's ('finetune') and Scenic's protocol ('scenic': accuracy at
  the regulariser it chose, one support set, so no 'std'), as `plot_results` entries. Each entry gets a 'line', its
  legend text after the split: the protocol and feature when several protocols are drawn, Scenic's always."""
  ours, finetuned, scenic = section.get('tasks') or {}, section.get('finetune') or {}, section.get('scenic') or {}
  meta = section.get('ours') or {}
  if scenic:
    ours_line = f'ours ({meta.get("feature", "?")} probe, {meta.get("support_sets", "?")} seeds)'
  else:
    ours_line = 'probe' if finetuned else ''
  out = {key: {**e, 'line': ', '.join(p for p in (e['split'], ours_line) if p)} for key, e in ours.items()}
  out.update({f'{key} finetune': {**e, 'line': f'{e["split"]}, fine-tuned'} for key, e in finetuned.items()})
  splits = scenic.get('splits') or {}
  sets = scenic.get('support_sets', 1)
  scenic_line = (f'Scenic ({scenic.get("feature_label") or scenic.get("feature", "?")}, {sets} support '
                 f'set{"s" if sets != 1 else ""})')
  for name, per_k in (scenic.get('accuracy') or {}).items():
    where = splits.get(name) or {'task': name, 'split': ''}
    out[f'{name} scenic'] = {
        'task': where['task'], 'split': where['split'], 'metric': 'accuracy', 'majority': where.get('majority'),
        'protocol': 'scenic', 'line': ', '.join(p for p in (where['split'], scenic_line) if p),
        'shots': {k: {'mean': a} for k, a in per_k.items()}}
  return out


def plot_encoders(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str, title: str = '') -> str:
  """`plot_results` for several encoders on one figure: `runs` {encoder label: entries}; a panel per task, a line
  per encoder (and eval split), the majority-class baseline dashed (it depends on the data, not the encoder)."""
  import matplotlib
  matplotlib.use('Agg')  # no display on servers; must precede pyplot
  import matplotlib.pyplot as plt

  tasks = list(dict.fromkeys(e['task'] for entries in runs.values() for e in entries.values()))
  cols = max(1, min(len(tasks), 4))
  rows = max(1, math.ceil(len(tasks) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
  for ax, task in zip(axes.flat, tasks):
    baselines: Dict[Tuple[str, str], float] = {}
    metrics = []
    ks_all = set()
    for label, entries in runs.items():
      for e in (e for e in entries.values() if e['task'] == task):
        ks = sorted(e['shots'], key=int)
        ks_all.update(int(k) for k in ks)
        mean = np.array([e['shots'][k]['mean'] for k in ks])
        spread = any('std' in e['shots'][k] for k in ks)  # Scenic's one support set: none
        std = np.array([e['shots'][k].get('std', 0.0) for k in ks]) if spread else None
        name = ', '.join(p for p in (label, e.get('line', e['split'])) if p)
        style = {'marker': 's', 'linestyle': ':'} if e.get('protocol') == 'scenic' else {'marker': 'o'}
        ax.errorbar([int(k) for k in ks], mean, yerr=std, capsize=3, label=textwrap.fill(name, 36), **style)
        metrics.append(e['metric'])
        if e.get('majority') is not None:
          baselines.setdefault((e['split'], e['metric']), float(e['majority']))
    ax.set_ylabel(' / '.join(dict.fromkeys(metrics)))
    for (split, metric), value in baselines.items():
      ax.axhline(value, color='grey', linestyle='--', linewidth=1,
                 label='majority class' + (f', {split}' if len(baselines) > 1 and split else '')
                 + (f' ({metric})' if len(set(metrics)) > 1 else ''))
    ax.set_xscale('log', base=2)
    ks = sorted(ks_all)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel('examples per class')
    ax.set_title(task)
    ax.grid(alpha=0.3)
    ax.legend(fontsize='x-small')
  for ax in list(axes.flat)[len(tasks):]:
    ax.axis('off')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path



def read_entries(spec: str, section: str = 'fewshot') -> Tuple[str, Dict[str, Any]]:
  """`[LABEL=]PATH` -> (label, the lines (`section_entries`) of the `section` of the results file at or in PATH)."""
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
  entries = section_entries(results.get(section) or {})
  if not entries:
    raise errors.DataError(f'{file} has no few-shot results in section {section!r} (sections: '
                           f'{sorted(k for k, v in results.items() if isinstance(v, dict))}): pass --section, or '
                           f'the workdir of a run with the fewshot evaluator.')
  return label or os.path.basename(os.path.dirname(file)), entries


def main(argv: Optional[Sequence[str]] = None) -> str:
  """The CLI (see the module docstring): draws the runs given in `argv` and returns the PNG's path."""
  p = argparse.ArgumentParser(prog='python -m projects.bert.fewshot.plot', description=__doc__.split('\n')[0])
  p.add_argument('runs', nargs='+', help='[LABEL=]PATH of a few-shot run (workdir or results file).')
  p.add_argument('--output', required=True, help='PNG to write.')
  p.add_argument('--section', default='fewshot', help='The few-shot evaluator\'s name in config.evals.')
  p.add_argument('--title', default='')
  args = p.parse_args(argv)
  runs = dict(read_entries(spec, args.section) for spec in args.runs)
  path = plot_encoders(runs, args.output, args.title)
  print(f'Wrote {path} ({len(runs)} encoders: {", ".join(runs)}).')
  return path


if __name__ == '__main__':
  try:
    main(sys.argv[1:])
  except errors.UserError as e:  # the message names the file and the fix; no traceback above it
    sys.exit(f'Error: {e}')
