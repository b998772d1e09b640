"""Helpers the benchmarks share: the machine they ran on, a plain-text table, and the JSON they write."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from typing import Any, Callable, Dict, List, Sequence


def cpu_model() -> str:
  """The processor's model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def gpu_names() -> List[str]:
  """GPU names as nvidia-smi lists them; empty where there is no NVIDIA GPU (or no nvidia-smi)."""
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'], capture_output=True,
                         text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [line.strip() for line in out.splitlines() if line.strip()]


def environment() -> Dict[str, Any]:
  """Where and when a benchmark ran: host, processor, core count, GPUs, Python, UTC time."""
  return {'host': platform.node(), 'machine': platform.machine(), 'cpu': cpu_model(), 'cpu_count': os.cpu_count(),
          'gpus': gpu_names(), 'python': platform.python_version(),
          'utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


def format_table(rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> str:
  """A Markdown table of `rows` (dicts) over `columns`; floats get 3 significant digits, missing cells '-'."""

  def cell(value: Any) -> str:
    if value is None:
      return '-'
    if isinstance(value, float):
      return f'{value:.3g}' if abs(value) < 1000 else f'{value:,.0f}'
    return str(value)

  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '|'.join('---' for _ in columns) + '|']
  for row in rows:
    lines.append('| ' + ' | '.join(cell(row.get(c)) for c in columns) + ' |')
  return '\n'.join(lines)


def write_json(path: str, payload: Dict[str, Any]) -> None:
  """Writes `payload` as indented JSON beside `path` and renames it over (a killed benchmark leaves the old JSON
  whole), creating the parent folder."""
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f'.{os.path.basename(path)}.tmp-{os.getpid()}')
  with open(tmp, 'w') as f:
    json.dump(payload, f, indent=2, sort_keys=False)
    f.write('\n')
  os.replace(tmp, path)  # not core.atomic: some benchmarks import this module without the repository on sys.path


def timed_passes(modes: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, Dict[str, Any]]:
  """{mode: {'first_pass_s', 'pass_s' (fastest of `repeats`), 'passes_s', 'result' (of the first pass)}}; the modes
  take turns pass by pass, so that a noisy neighbour slows both."""
  out: Dict[str, Dict[str, Any]] = {}
  for mode, fn in modes.items():
    t0 = time.perf_counter()
    result = fn()
    out[mode] = {'first_pass_s': time.perf_counter() - t0, 'passes_s': [], 'result': result}
  for _ in range(repeats):
    for mode, fn in modes.items():
      t0 = time.perf_counter()
      fn()
      out[mode]['passes_s'].append(time.perf_counter() - t0)
  for mode in out:
    out[mode]['pass_s'] = min(out[mode]['passes_s'])
  return out
