"""Writing files and directories so that a reader never sees a half-written one, and a crash loses nothing.

Files are written beside their final name and renamed over it (a rename within a directory is atomic on POSIX file
systems). A directory is replaced in three renames (`swap_in_directory`); `recover_directory` finishes or undoes a
swap that a crash interrupted, keeping the newest complete copy. On object stores (gs://) renames are copies: the
same calls work there, without the atomicity.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Callable, Optional

from etils import epath

NEW_SUFFIX = '.new'  # a complete replacement, written beside the directory it replaces
OLD_SUFFIX = '.old'  # the replaced directory, between the renames of a swap


def _is_local(path: epath.Path) -> bool:
  return '://' not in str(path)


def write_text(path: Any, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same directory and an atomic rename."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f'.{path.name}.tmp-{uuid.uuid4().hex[:8]}'
  try:
    if _is_local(path):
      with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before the name points at them
      os.replace(tmp, path)
    else:
      tmp.write_text(text)
      tmp.replace(path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_json(path: Any, obj: Any, *, default: Optional[Callable[[Any], Any]] = None, indent: int = 2) -> None:
  """`write_text` of `obj` as JSON (sorted keys). The text is made first, so an unserialisable value writes nothing."""
  write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=default) + '\n')


def _rmtree(path: epath.Path) -> None:
  if _is_local(path):
    shutil.rmtree(path, ignore_errors=True)
  elif path.exists():
    path.rmtree()


def staging_path(final: Any, is_complete: Callable[[epath.Path], bool]) -> epath.Path:
  """Where to write the replacement of directory `final` before `swap_in_directory`.

  A swap that a crash interrupted is finished first; then an incomplete earlier copy is removed.
  """
  final = epath.Path(final)
  recover_directory(final, is_complete)
  new = final.parent / (final.name + NEW_SUFFIX)
  _rmtree(new)  # an earlier write that never reached its swap: superseded by the one about to be written
  return new


def swap_in_directory(new: Any, final: Any) -> None:
  """Replaces directory `final` by the complete directory `new` (from `staging_path`).

  final -> final.old, new -> final, remove final.old. A crash between the renames leaves both complete copies
  on disk; `recover_directory` (which readers call) then puts the newer one in place.
  """
  new, final = epath.Path(new), epath.Path(final)
  old = final.parent / (final.name + OLD_SUFFIX)
  if final.exists():
    _rmtree(old)  # left by a crash after the swap: `final` is the newer copy
    final.rename(old)
  new.rename(final)
  _rmtree(old)


def readable_directory(final: Any, is_complete: Callable[[epath.Path], bool]) -> epath.Path:
  """The copy of `final` to read, without changing anything on disk (safe for every process of a run to call).

  `final` itself, or, after a crash inside `swap_in_directory`, the complete new copy or else the previous one.
  """
  final = epath.Path(final)
  if final.exists():
    return final
  new = final.parent / (final.name + NEW_SUFFIX)
  old = final.parent / (final.name + OLD_SUFFIX)
  if new.exists() and is_complete(new):
    return new
  return old if old.exists() else final


def recover_directory(final: Any, is_complete: Callable[[epath.Path], bool]) -> None:
  """Finishes or undoes a `swap_in_directory` that a crash interrupted; a no-op when none was.

  `is_complete(dir)` says whether a staged copy was fully written (e.g. its last-written file exists).
  """
  final = epath.Path(final)
  new = final.parent / (final.name + NEW_SUFFIX)
  old = final.parent / (final.name + OLD_SUFFIX)
  if final.exists():
    if old.exists():
      _rmtree(old)  # crashed after the swap, before removing the replaced copy
    return
  if new.exists() and is_complete(new):
    new.rename(final)  # crashed between the two renames: the new copy is complete
    _rmtree(old)
  elif old.exists():
    old.rename(final)  # the replacement never completed: put the previous copy back
