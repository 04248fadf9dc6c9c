"""Reads a gin file's bindings without executing it (no module imported).

A report reads a run's operative config.gin this way, so it never needs the
run's modules, and a binding it does not know is no error.
"""
import dataclasses
import pathlib
from typing import Any, Dict, Optional, Tuple

from gin import config_parser


@dataclasses.dataclass(frozen=True)
class GinReference:
  """`@name()` (evaluate=True) or `@name` in a gin file."""
  name: str
  evaluate: bool


@dataclasses.dataclass(frozen=True)
class GinMacro:
  """`%NAME` in a gin file."""
  name: str


class _Delegate(config_parser.ParserDelegate):

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return GinReference(scoped_configurable_name, evaluate)

  def macro(self, macro_name):
    return GinMacro(macro_name)


def read_gin_bindings(path: str) -> Dict[Tuple[str, str, str], Any]:
  """The bindings of a gin file, parsed but not executed.

  Nothing is imported or called, so a report never needs the run's modules.

  Args:
    path: a gin file (e.g. a run's operative config.gin).

  Returns:
    (scope, selector, argument) -> value; a macro `NAME = v` is
    ('', 'NAME', ''). References and macros in values are `GinReference`
    and `GinMacro`.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: naming the file, if it is not valid gin.
  """
  text = pathlib.Path(path).read_text()
  bindings = {}
  try:
    for statement in config_parser.ConfigParser(text, _Delegate()):
      if isinstance(statement, config_parser.BindingStatement):
        bindings[(statement.scope, statement.selector,
                  statement.arg_name)] = statement.value
  except SyntaxError as e:
    raise ValueError(f'{path} is not a valid gin file: {e}') from e
  return bindings


def _resolve(bindings, value, depth=0):
  """Replaces macros in `value` by their bound values, recursively."""
  if depth > 20:
    raise ValueError(f'gin macros nest too deep (a cycle?) at {value!r}')
  if isinstance(value, GinMacro):
    key = ('', value.name, '')
    if key not in bindings:
      return value
    return _resolve(bindings, bindings[key], depth + 1)
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(bindings, v, depth + 1) for v in value)
  if isinstance(value, dict):
    return {k: _resolve(bindings, v, depth + 1) for k, v in value.items()}
  return value


def gin_value(bindings, configurable: str, argument: str,
              macro: Optional[str] = None, default: Any = None) -> Any:
  """A configurable's bound argument (macros resolved), else `macro`'s value.

  Args:
    bindings: from `read_gin_bindings`.
    configurable: e.g. 't5.T5Config'; matches any scope, and selectors that
      end with it (a full module path); the scope 'MODEL' or none is
      preferred when several scopes bind it.
    argument: e.g. 'emb_dim'.
    macro: a macro to read if the configurable has no such binding.
    default: returned when neither is bound.
  """
  found = {}
  for (scope, selector, arg), value in bindings.items():
    if arg == argument and (selector == configurable or
                            selector.endswith('.' + configurable)):
      found[scope] = value
  for scope in ('MODEL', ''):
    if scope in found:
      return _resolve(bindings, found[scope])
  if found:
    return _resolve(bindings, next(iter(found.values())))
  if macro is not None and ('', macro, '') in bindings:
    return _resolve(bindings, bindings[('', macro, '')])
  return default



def reference_name(value: Any) -> Optional[str]:
  """'random_uniform' for `@prompts.random_uniform()` (any scope)."""
  if isinstance(value, GinReference):
    return value.name.split('/')[-1].split('.')[-1]
  return None
