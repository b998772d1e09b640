"""Running an upstream writer as a child process that ends with its parent (no TensorFlow at import).

`prepare pretraining` runs TF-Models' create_pretraining_data.py as a child: at real size hours of CPU and GBs of
output. Killed with SIGKILL or a plain `kill PID`, the parent must not leave it running as an orphan that writes
into a hidden staging folder nobody will read:
  - on Linux the child asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG, set by a small
    launcher that then execs the command), which covers a SIGKILL of the parent;
  - a SIGTERM of the parent raises SystemExit(143) in it (`exit_on_sigterm`), so `subprocess.run` kills the child
    on its way out and the parent's `finally` blocks remove its staging files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Iterator, List, Sequence

SIGTERM_EXIT = 128 + signal.SIGTERM  # the shell's exit status of a process ended by SIGTERM

# Runs first in the child: asks for SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG = 1; the setting survives
# exec), leaves if the parent died already, then becomes the command. A launcher rather than subprocess's
# preexec_fn: that forks the whole (multithreaded) parent and runs Python code in the copy, which can deadlock.
_LAUNCHER = ('import ctypes, os, signal, sys\n'
             'ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n'
             'if os.getppid() != int(sys.argv[1]):\n'
             '  sys.exit(1)\n'
             'os.execvp(sys.argv[2], sys.argv[2:])\n')


def _ending_with_parent(cmd: Sequence[str]) -> List[str]:
  """`cmd` behind the launcher (Linux), so that it receives SIGKILL when this process dies; elsewhere `cmd`."""
  if not sys.platform.startswith('linux'):
    return list(cmd)
  return [sys.executable, '-c', _LAUNCHER, str(os.getpid()), *cmd]


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
  """Within the block, SIGTERM raises SystemExit(143) in the main thread (where `finally` blocks then run).

  Outside the main thread (where Python cannot install signal handlers) it changes nothing.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):  # pylint: disable=unused-argument
    raise SystemExit(SIGTERM_EXIT)

  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def run_child(cmd: Sequence[str]) -> subprocess.CompletedProcess:
  """`subprocess.run(cmd)` with its output captured as text, the child ending with this process (see above)."""
  with exit_on_sigterm():
    return subprocess.run(_ending_with_parent(cmd), capture_output=True, text=True, check=False)
