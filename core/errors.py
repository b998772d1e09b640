"""Errors the user can fix: their message says what is wrong (file, line or record, field) and what to do.

`core.app.run` prints a `UserError` as one `error: ...` paragraph, last, with exit status 1, and its traceback
only with `--verbose_errors`. The subclasses also derive from the builtin error they replace, so code and tests that
catch `ValueError` / `FileNotFoundError` keep working.
"""

from __future__ import annotations

import errno
import re
from typing import Optional


class UserError(Exception):
  """Bad input, config or workdir: the message names the cause and the fix."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (wrong type of run for a workdir, a value out of range, ...)."""


class DataError(UserError, ValueError):
  """Input data that cannot be read as it is: a corrupt or mismatched file, a bad record or line."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the run needs does not exist."""


class WorkdirBusyError(UserError, RuntimeError):
  """Another process holds the workdir."""


def disk_full_error(exc: BaseException) -> Optional[OSError]:
  """The 'No space left on device' OSError in `exc` or the errors it was raised from, else None.

  Orbax, TensorStore and TensorFlow wrap the OS error in their own; their messages keep its text.
  """
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
      return exc
    text = str(exc)
    if 'No space left on device' in text or 'Disk quota exceeded' in text:
      text = re.sub(r'\{\{.*?\}\}', '', text)  # TensorFlow's {{function_node .../job:localhost/...}} prefix
      path = re.search(r'(?:^|[\s\'"(])((?:/|gs://)[^\s;,:\'"]+)', text)  # the file named in the wrapped message
      return OSError(errno.ENOSPC, 'No space left on device', path.group(1) if path else None)
    exc = exc.__cause__ or exc.__context__
  return None
