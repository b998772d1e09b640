"""One run per workdir: an exclusive lock held for the life of the run, naming its holder.

Two runs writing checkpoints into one workdir (a second launch of the same command, or of a changed one) would
each overwrite the other's. The lock is an `flock` on `<workdir>/run.lock`, which the operating system releases
when the holding process ends however it ends (SIGKILL included), so a crashed run never leaves a stale lock;
the file's text (host, pid, start time, command) is only there to name the holder. Of the processes of one
multi-host run only process 0 takes it. Workdirs on object stores (gs://) cannot be locked: a warning says so.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Any, Dict, Optional

from absl import logging

from core import errors

LOCK_FILE = 'run.lock'


def _holder_info() -> Dict[str, Any]:
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
          'command': ' '.join(sys.argv)[:500]}


class WorkdirLock:
  """`with WorkdirLock(workdir):` holds the workdir; entering raises `WorkdirBusyError` naming the holder."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> None:
    if '://' in self.workdir:
      logging.warning('%s is on an object store, where a workdir cannot be locked: make sure no other run uses it.',
                      self.workdir)
      return
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held by another process
      holder = self._read(fd)
      os.close(fd)
      who = (f'host {holder.get("host")}, pid {holder.get("pid")}, started {holder.get("started")}: '
             f'`{holder.get("command")}`') if holder else 'a process that has not written its name yet'
      raise errors.WorkdirBusyError(
          f'{self.workdir} is in use by another run ({who}). Two runs in one workdir overwrite each other\'s '
          f'checkpoints. Wait for it to end, stop it (SIGTERM saves a checkpoint first; the same command then '
          f'resumes), or give this run another --workdir. The lock ({self.path}) is released when that process '
          f'ends, however it ends.') from None
    except OSError as e:  # a file system without locks
      os.close(fd)
      logging.warning('Cannot lock %s (%s): make sure no other run uses %s.', self.path, e, self.workdir)
      return
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(_holder_info()) + '\n').encode())
    os.fsync(fd)
    self._fd = fd

  @staticmethod
  def _read(fd: int) -> Dict[str, Any]:
    try:
      os.lseek(fd, 0, os.SEEK_SET)
      return json.loads(os.read(fd, 4096).decode() or '{}')
    except (OSError, ValueError):
      return {}

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # releases the flock; the file stays (removing it would race with a new holder)
      self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
