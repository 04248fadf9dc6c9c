"""Set-up mistakes caught before any work: macro typos, a bad MODEL_DIR.

Gin accepts a binding of a macro that nothing uses (`--gin.TRAIN_STEPZ=10`
would train the default number of steps); `unknown_macros` finds them, so
that `gin_utils.parse_gin_flags` can refuse them with the closest names.
`model_dir_from_gin` and `prepare_model_dir` check the run directory of a
training run before anything is built. Imports only the standard library,
absl and gin.
"""
import difflib
import os
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import gin

_MACRO = 'gin.macro'


def _config() -> Dict[Tuple[str, str], Dict[str, Any]]:
  # NOTE: gin has no public view of its bindings as values; its
  # (scope, selector) -> {parameter: value} table is read as is.
  return gin.config._CONFIG  # pylint: disable=protected-access


def defined_macros() -> Set[str]:
  """Names of the macros bound in the current gin config."""
  return {scope for scope, selector in _config() if selector == _MACRO}


def _references(value: Any) -> Iterable[str]:
  """The macro names a bound value refers to (`%NAME`), at any depth."""
  if isinstance(value, gin.config.ConfigurableReference):
    scope, _, selector = value.scoped_selector.rpartition('/')
    if selector == _MACRO or value.selector == _MACRO:
      yield scope
  elif isinstance(value, dict):
    for item in value.values():
      yield from _references(item)
  elif isinstance(value, (list, tuple, set)):
    for item in value:
      yield from _references(item)


def used_macros() -> Set[str]:
  """Names of the macros some binding of the current gin config refers to."""
  return {name for parameters in _config().values()
          for value in parameters.values() for name in _references(value)}


def unknown_macros(bound: Iterable[str], known_before: Set[str]
                   ) -> List[Tuple[str, List[str]]]:
  """The macros of `bound` that no configurable uses and that were not
  defined before (by a gin file), each with the closest known names.

  Args:
    bound: macro names the bindings set.
    known_before: macros defined before the bindings were parsed.

  Returns:
    [(name, up to 3 close names)], in the order of `bound`.
  """
  used = used_macros()
  known = sorted(known_before | used)
  unknown = []
  for name in bound:
    if name not in known_before and name not in used:
      unknown.append((name, difflib.get_close_matches(name, known, n=3)))
  return unknown


def unknown_macro_message(name: str, close: List[str], shown: str) -> str:
  """`unknown gin macro NAME (--gin.NAME=V); did you mean X?`"""
  if close:
    hint = 'did you mean ' + ' or '.join(close) + '?'
  else:
    hint = 'no loaded gin file defines it and no configurable uses it'
  return f'unknown gin macro {name} ({shown}); {hint}'


# ---------------------------------------------------------------------------
# The run directory.
# ---------------------------------------------------------------------------


def model_dir_from_gin() -> str:
  """The `MODEL_DIR` macro of the parsed config.

  Raises:
    ValueError: it is unbound, still `%gin.REQUIRED`, or not a non-empty
      string; the message says how to set it.
  """
  how = ("set the run directory with --gin.MODEL_DIR=\"'/path/to/run'\"")
  try:
    value = gin.query_parameter('%MODEL_DIR')
  except ValueError:
    raise ValueError(f'no MODEL_DIR in the gin config: {how}') from None
  if isinstance(value, gin.config.ConfigurableReference):
    raise ValueError(f'MODEL_DIR is required: {how}')
  if not isinstance(value, str) or not value.strip():
    raise ValueError(f'MODEL_DIR is {value!r}: {how}')
  return value


def _first_existing(path: str) -> str:
  """`path` or its nearest existing ancestor."""
  current = os.path.abspath(path)
  while not os.path.lexists(current):
    parent = os.path.dirname(current)
    if parent == current:
      break
    current = parent
  return current


def prepare_model_dir(model_dir: str) -> Optional[str]:
  """Creates the local run directory if missing and checks it is writable.

  A gs:// directory is left to the run (nothing is checked). Nothing is
  left behind when a check fails, beyond the directories created.

  Args:
    model_dir: MODEL_DIR.

  Returns:
    The absolute path, or None for a gs:// directory.

  Raises:
    ValueError: the path, or a folder on it, is a file; the directory cannot
      be created or written. The message names the path and the reason.
  """
  if model_dir.startswith('gs://'):
    return None
  path = os.path.abspath(os.path.expanduser(model_dir))
  existing = _first_existing(path)
  if not os.path.isdir(existing):
    where = 'is a file' if existing == path else f'is under a file, {existing}'
    raise ValueError(f'MODEL_DIR {model_dir} {where}; expected a directory '
                     '(or a path where one can be created)')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f'MODEL_DIR {model_dir} cannot be created: '
                     f'{e.strerror or e}') from e
  try:  # Permissions alone do not tell (root, read-only mounts).
    handle, probe = tempfile.mkstemp(prefix='.write_check_', dir=path)
    os.close(handle)
    os.remove(probe)
  except OSError as e:
    raise ValueError(f'MODEL_DIR {model_dir} is not writable: '
                     f'{e.strerror or e}') from e
  return path
