"""Which folder a conversion may write: `check_output` refuses an `--output` whose replacement would destroy files.

Both directions of `convert` write their output beside it and swap it in (`core.atomic.swap_in_directory`), which
removes whatever the folder held before. So before anything is read, the output must be new, empty, or a previous
output of the same kind holding nothing but the files that kind writes; and it must not be (or contain) an input.
Everything else is refused, naming the folder, what it holds, and the way out: nothing the user put there is removed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, FrozenSet, Optional, Sequence

from core import atomic, errors


@dataclasses.dataclass(frozen=True)
class OutputKind:
  """What one kind of output is, to recognise a previous one.

  `what`: its name in messages ('a params directory written by convert'); `files`: the names it writes at its top
  level; `is_previous(folder)`: whether an existing folder is one (a marker it writes, not only its file names).
  """

  what: str
  files: FrozenSet[str]
  is_previous: Callable[[str], bool]


def _listing(names: Sequence[str], folder: str, limit: int = 5) -> str:
  shown = [n + ('/' if os.path.isdir(os.path.join(folder, n)) else '') for n in sorted(names)[:limit]]
  more = f' and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(shown) + more


def check_output(output: str, inputs: Sequence[Optional[str]], kind: OutputKind) -> None:
  """Raises `errors.ConfigError` unless writing `output` (replacing the folder) loses nothing.

  Refused: an output that is one of `inputs` or a folder above one (the swap would remove the input); a file or a
  symbolic link; a non-empty folder that is not a previous output of `kind` (`kind.is_previous`) or that holds
  anything besides `kind.files`; an `output`.new / `output`.old beside it (the swap removes both) holding anything
  else. Accepted: a new path, an empty folder, a previous output of `kind` (replaced).
  """
  final = os.path.abspath(output)
  real = os.path.realpath(final)
  for source in inputs:
    if not source:
      continue
    source_real = os.path.realpath(source)
    if source_real == real or source_real.startswith(real.rstrip(os.sep) + os.sep):
      where = 'is' if source_real == real else 'holds'
      raise errors.ConfigError(
          f'--output={output} {where} the input {source}: the output folder is replaced as a whole, so writing it '
          f'would remove the input{"" if source_real == real else " and everything else in that folder"}. Pass a '
          f'new folder as --output, outside {source} (e.g. {source_real.rstrip(os.sep)}_converted).')
  for sibling in (final + atomic.NEW_SUFFIX, final + atomic.OLD_SUFFIX):  # the swap's, which it removes
    if os.path.lexists(sibling) and (not os.path.isdir(sibling) or os.path.islink(sibling)
                                     or set(os.listdir(sibling)) - kind.files):
      raise errors.ConfigError(
          f'{sibling} exists and is not a copy that an interrupted write of --output={output} left (it holds '
          f'{_listing(os.listdir(sibling), sibling) if os.path.isdir(sibling) else "a file"}): writing the output '
          f'would remove it. Rename it, or pass another --output.')
  if os.path.islink(final):
    raise errors.ConfigError(f'--output={output} is a symbolic link (to {os.readlink(final)}): the output folder is '
                             f'replaced as a whole. Pass a new folder as --output.')
  if not os.path.lexists(final):
    return
  if not os.path.isdir(final):
    raise errors.ConfigError(f'--output={output} is a file, not a folder: the output is a folder, and this file is not '
                             f'replaced. Pass a new folder as --output.')
  names = os.listdir(final)
  if not names:
    return
  foreign = sorted(set(names) - kind.files)
  if not foreign and kind.is_previous(final):
    return  # an earlier output of the same command: replaced by the new one, as the user asked
  if foreign and kind.is_previous(final):
    holds = (f'is {kind.what} but also holds files it does not write ({_listing(foreign, final)}), which replacing '
             f'the folder would remove')
  else:
    holds = (f'holds {_listing(names, final)}, which is not {kind.what}; the output folder is replaced as a whole, '
             f'so writing it would remove them')
  raise errors.ConfigError(f'--output={output} already exists and {holds}. Nothing was written. Pass a new or empty '
                           f'folder as --output; or, if nothing in {output} is needed, remove it first.')
