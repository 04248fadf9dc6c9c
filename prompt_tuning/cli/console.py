"""What a command prints: quiet by default, one error line at the end.

At the default verbosity (no `--verbosity` / `-v` given) a command shows the
package's own INFO log and other libraries' warnings and errors (less a
few of seqio's that do not apply to this package's tasks); the
startup chatter of TensorFlow's C++ runtime (oneDNN, CUDA stub, CPU feature
notes) and of SentencePiece is not shown, and on a machine with no NVIDIA
device TensorFlow's GPU probe (which logs a `failed call to cuInit` error)
runs silenced. `--verbosity=0` shows every library's INFO log;
`--verbosity=1` also the gin configs and, for an error, its full traceback.

A known error (a bad argument, configuration or file) ends the command with
`error: <message>` as the last line on stderr and exit status 1.

Imports only the standard library, absl and `utils.host_memory` (itself
standard library only): a command's `--help` and argument errors answer
before the heavy libraries load.
"""
import contextlib
import logging as std_logging
import os
import pathlib
import sys
import traceback
from typing import Iterator, Tuple, Type

from absl import app
from absl import flags
from absl import logging

from prompt_tuning.utils import host_memory

# The verbosity at which gin configs are logged and tracebacks printed.
DETAIL_VERBOSITY = 1
# Errors a command reports as one line: what users get wrong (arguments,
# configs, files, permissions), not bugs. ValueError covers gin's errors.
KNOWN_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, OSError,
                                                 app.UsageError)
# The folders whose modules' INFO records are shown at the default verbosity:
# the package and its tasks (installed as prompt_tuning.tasks).
_OWN_ROOTS = (str(pathlib.Path(__file__).resolve().parents[1]),
              str(pathlib.Path(__file__).resolve().parents[2] / 'tasks'))


def is_default_verbosity() -> bool:
  """Whether `--verbosity` (`-v`) was left off the command line.

  (absl's `app.run` sets the flag to INFO itself when it is not given.)
  """
  return not flags.FLAGS['verbosity'].present


def detailed() -> bool:
  """Whether `--verbosity` asks for configs and tracebacks."""
  return (not is_default_verbosity()
          and flags.FLAGS.verbosity >= DETAIL_VERBOSITY)


# seqio warnings that say nothing about a run of this package: its tasks
# are small and use fixed feature lengths, its evaluator logs by itself, and
# the offline tasks' sources are functions.
_HARMLESS_WARNINGS = (
    'Given sequence lengths are longer than necessary',
    "'logger_cls' is empty",
    'Using an uncached FunctionDataset for training',
)


class _OwnInfoOnly(std_logging.Filter):
  """Passes the package's INFO records and everyone's warnings and errors,
  less seqio's `_HARMLESS_WARNINGS`."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    path = os.path.realpath(record.pathname or '')
    if record.levelno >= std_logging.WARNING:
      return not (record.levelno == std_logging.WARNING
                  and f'{os.sep}seqio{os.sep}' in path
                  and str(record.msg).startswith(_HARMLESS_WARNINGS))
    return any(path.startswith(root + os.sep) for root in _OWN_ROOTS)


_OWN_INFO_ONLY = _OwnInfoOnly()


def configure_logging() -> None:
  """Sets the log level and filter from `--verbosity` (flags parsed).

  Default: INFO, other libraries' INFO records dropped. An explicit
  `--verbosity` is absl's: 0 is INFO from everyone, 1 adds DEBUG.
  """
  # ABSLHandler hands records to its python_handler, whose filters apply.
  handler = logging.get_absl_handler().python_handler
  if is_default_verbosity():
    logging.set_verbosity(logging.INFO)
    handler.addFilter(_OWN_INFO_ONLY)  # idempotent
    _quiet_sentencepiece()
  else:
    handler.removeFilter(_OWN_INFO_ONLY)


def _quiet_sentencepiece() -> None:
  """SentencePiece logs each model load at INFO from C++ (`normalizer.cc`)."""
  try:
    import sentencepiece  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  if hasattr(sentencepiece, 'set_min_log_level'):
    sentencepiece.set_min_log_level(1)


@contextlib.contextmanager
def silenced_stderr(silence: bool = True) -> Iterator[None]:
  """Sends file descriptor 2 to /dev/null inside the block (if `silence`).

  For C++ libraries that log at import or device set-up whatever Python's
  logging is set to. Exceptions still propagate, and are shown after.
  """
  if not silence:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def hide_gpus_from_tensorflow() -> None:
  """Keeps tf.data (seqio, TFDS) off the GPUs, whose memory JAX needs.

  TensorFlow probes CUDA once, at the first device set-up; with no GPU
  device on the machine that probe can only log `failed call to cuInit`,
  so it runs silenced there (as does the import's chatter at the default
  verbosity). JAX is left alone.
  """
  if os.environ.get('CUDA_VISIBLE_DEVICES', None) in ('', '-1'):
    return  # No GPU is visible; spare the TensorFlow import.
  quiet = is_default_verbosity()
  try:
    with silenced_stderr(quiet):
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  try:
    with silenced_stderr(quiet or not host_memory.has_gpu_devices()):
      tf.config.set_visible_devices([], 'GPU')
  except RuntimeError as e:  # TensorFlow had already set its devices up.
    logging.warning('Could not hide GPUs from TensorFlow: %s', e)


def one_line(error: BaseException) -> str:
  """The error's message on one line (its lines joined)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return ' '.join(lines) or type(error).__name__


def report_error(error: BaseException) -> None:
  """Writes `error: <message>` as the last line on stderr; the traceback
  before it at `--verbosity=1` or above."""
  if detailed():
    traceback.print_exception(type(error), error, error.__traceback__)
  sys.stdout.flush()
  sys.stderr.write(f'error: {one_line(error)}\n')
  sys.stderr.flush()
