"""`toy_main` with a fault injected at a chosen batch, for the reliability tests.

  TOY_FAULT=data_error@7   the 7th batch read raises a `core.errors.DataError` (a damaged record, say)
  TOY_FAULT=readonly@7     before the 7th batch workdir/checkpoints is remounted read-only (run inside a private
                           mount namespace where it is a bind mount, e.g. `unshare --user --map-root-user --mount`)
  TOY_LATE_NOISE=1         something prints a log line and a traceback while the interpreter shuts down, as
                           orbax's failed background writes and their event loop do after a full disk
"""

import atexit
import os
import subprocess
import sys

from core import app, errors
from tests.core import toy, toy_main  # noqa: F401  (registers the toy pieces)


def _faulty_dataset(config):
  kind, at = os.environ['TOY_FAULT'].split('@')
  dataset = toy.toy_dataset(config.batch_size)
  read, count = dataset.train_iter.__next__, [0]

  class Faulty(type(dataset.train_iter)):
    def __next__(self):
      count[0] += 1
      if kind == 'data_error' and count[0] == int(at):
        raise errors.DataError(f'record {count[0]} of toy.tfrecord is damaged (injected fault)')
      if kind == 'readonly' and count[0] == int(at):
        subprocess.run(['mount', '-o', 'remount,bind,ro', os.path.join(app.FLAGS.workdir, 'checkpoints')], check=True)
      return read()

  dataset.train_iter.__class__ = Faulty
  return dataset


def _late_noise():
  app.logging.error('a background write failed too (injected late noise)')
  print('Traceback (most recent call last):\nRuntimeError: Event loop is closed (injected late noise)',
        file=sys.stderr)


app.registry.DATASETS._entries['toy_dataset'] = _faulty_dataset  # pylint: disable=protected-access
if os.environ.get('TOY_LATE_NOISE'):
  atexit.register(_late_noise)

if __name__ == '__main__':
  app.run()
