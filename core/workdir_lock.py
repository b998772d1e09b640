"""One run per workdir: an exclusive lock held for the life of the run, naming its holder.

Two runs writing checkpoints into one workdir (a second launch of the same command, or of a changed one) would
each overwrite the other's. The lock is an `flock` on the workdir directory itself, which the operating system
releases when the holding process ends however it ends (SIGKILL included), so a crashed run never leaves a stale
lock. It is not on a file in the workdir: people delete "stale" lock files by habit, and a second run would then
lock a new file while the first holds the deleted one. `<workdir>/run.lock` only names the holder (host, pid,
start time, command); deleting it changes nothing. Where a directory cannot be locked (some network file systems),
`run.lock` itself is locked, and the lock is retried until the path names the locked file. Of the processes of one
multi-host run only process 0 takes it. Workdirs on object stores (gs://) cannot be locked: a warning says so.
A workdir that cannot be written raises `WorkdirNotWritableError`, naming it and the fix.
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

from core import atomic, errors

LOCK_FILE = 'run.lock'


class WorkdirNotWritableError(errors.UserError, PermissionError):
  """The workdir (or its parent) cannot be written: read-only, full of another user's files, or not a folder."""


def not_writable(workdir: str, exc: OSError) -> WorkdirNotWritableError:
  """The error for an OSError (read-only file system, permissions) met while taking or writing in `workdir`."""
  where = exc.filename or workdir
  return WorkdirNotWritableError(
      f'{where} cannot be written ({exc.strerror or exc}): the workdir {workdir} is read-only or not writable by '
      f'this user. A run writes its lock, config.json, checkpoints and results there: give a --workdir you can '
      f'write to, or make this one writable (a finished run on a read-only share can be evaluated from a writable '
      f'--workdir with --config.init_from=<its best/ or workdir>).')


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
    try:
      os.makedirs(self.workdir, exist_ok=True)
      fd = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
      raise not_writable(self.workdir, e) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held by another process
      os.close(fd)
      self._refuse()
    except OSError:  # a file system that cannot lock directories: lock the file
      os.close(fd)
      fd = self._lock_file()
      if fd is None:
        return
      self._fd = fd
      text = (json.dumps(_holder_info()) + '\n').encode()
      try:  # in place: a rename would move the path off the locked file
        os.ftruncate(fd, 0)
        os.write(fd, text)
        os.fsync(fd)
      except OSError as e:
        self.release()
        raise not_writable(self.workdir, e) from e
      return
    self._fd = fd
    try:
      atomic.write_text(self.path, json.dumps(_holder_info()) + '\n')
    except OSError as e:
      self.release()
      raise not_writable(self.workdir, e) from e

  def _lock_file(self) -> Optional[int]:
    """An flock on run.lock that the path still names once taken (a deleted or replaced file is retried)."""
    for _ in range(100):
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      except OSError as e:
        raise not_writable(self.workdir, e) from e
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        self._refuse()
      except OSError as e:  # a file system without locks
        os.close(fd)
        logging.warning('Cannot lock %s (%s): make sure no other run uses %s.', self.path, e, self.workdir)
        return None
      try:
        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
      except FileNotFoundError:
        same = False
      if same:
        return fd
      os.close(fd)  # the file was removed or replaced between open and lock: lock what the path names now
    raise errors.WorkdirBusyError(f'{self.path} keeps being replaced by another process: make sure no other run '
                                  f'uses {self.workdir}.')

  def _refuse(self) -> None:
    holder = self._read(self.path)
    who = (f'host {holder.get("host")}, pid {holder.get("pid")}, started {holder.get("started")}: '
           f'`{holder.get("command")}`') if holder else f'a process whose {LOCK_FILE} is not there (yet)'
    raise errors.WorkdirBusyError(
        f'{self.workdir} is in use by another run ({who}). Two runs in one workdir overwrite each other\'s '
        f'checkpoints. Wait for it to end, stop it (SIGTERM saves a checkpoint first; the same command then '
        f'resumes), or give this run another --workdir. The lock (on {self.workdir} itself; {self.path} names its '
        f'holder) is released when that process ends, however it ends.') from None

  @staticmethod
  def _read(path: str) -> Dict[str, Any]:
    try:
      with open(path) as f:
        return json.loads(f.read(4096) or '{}')
    except (OSError, ValueError):
      return {}

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # releases the flock; run.lock stays (removing it would race with a new holder)
      self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
