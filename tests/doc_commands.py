"""The command lines of README.md and docs/*.md, and their in-process checks.

`extract()` finds every command a reader could copy: each line of a fenced
bash/sh/console block (or of an untagged block, where it starts with a
command word), each indented command block, and each inline code span that
starts with a command word. Backslash continuations are joined and shell
comments dropped.

Run as a script, it dry-runs commands in this one process (reading
`[[action, command], ...]` as JSON on stdin, printing
`{command: error or null}` as JSON on stdout): `flags` parses the command's
arguments with the flags its module defines (the module is executed as
`__main__` with its entry point replaced by a stand-in that returns at once,
so nothing runs); `gin` also parses its gin files and bindings; `train`
also checks the training config as `python -m prompt_tuning.dry_run` does
(task registered, shapes traced, no data or weights read).
"""
import dataclasses
import json
import pathlib
import re
import shlex
import sys
from typing import Dict, List, Optional, Tuple

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = ('README.md',) + tuple(
    str(p.relative_to(REPO)) for p in sorted((REPO / 'docs').glob('*.md')))

# Words that start a command (after `$ ` and VAR=value assignments).
_COMMAND_WORD = re.compile(
    r'^(python|pip|bash|cat|launch/[\w.-]+\.sh|\.ci/\w+|\./[\w./-]+)(\s|$)')
_ENV = re.compile(r'^([A-Z_][A-Z0-9_]*=\S*\s+)+')
# A fenced block, at the margin or indented inside a list item.
_FENCE = re.compile(r'^( *)```(\w*)\s*\n(.*?)^\1```\s*$', re.S | re.M)
_SHELL_BLOCKS = ('bash', 'sh', 'shell', 'console', '')


@dataclasses.dataclass(frozen=True)
class Command:
  """One command line of a page: `text` is the joined, comment-free line."""
  path: str
  line: int
  text: str
  heredoc: str = ''  # the lines a `<<'WORD'` feeds it, up to WORD

  def where(self) -> str:
    return f'{self.path}:{self.line}'


def _strip_comment(line: str) -> str:
  """The line without a trailing shell comment (a `#` outside quotes)."""
  quote = None
  for i, char in enumerate(line):
    if quote:
      if char == quote:
        quote = None
    elif char in '\'"':
      quote = char
    elif char == '#' and (i == 0 or line[i - 1].isspace()):
      return line[:i].rstrip()
  return line.rstrip()


def is_command(text: str) -> bool:
  """Whether `text` starts with a command word (after env assignments)."""
  return bool(_COMMAND_WORD.match(_ENV.sub('', text)))


def _logical_lines(lines: List[Tuple[int, str]]) -> List[Tuple[int, str]]:
  """Joins backslash continuations; returns (first line number, text)."""
  out, start, parts = [], None, []
  for number, line in lines:
    if start is None:
      start = number
    stripped = line.strip()
    if stripped.endswith('\\'):
      parts.append(stripped[:-1].strip())
      continue
    parts.append(stripped)
    out.append((start, ' '.join(p for p in parts if p)))
    start, parts = None, []
  if parts:
    out.append((start, ' '.join(parts)))
  return out


def _block_commands(path: str, first_line: int, language: str,
                    body: str) -> List[Command]:
  lines = list(enumerate(body.splitlines(), first_line))
  prompted = any(l.startswith('$ ') for _, l in lines)
  if prompted:  # a console transcript: only the prompted lines are commands
    lines = [(n, l[2:]) for n, l in lines if l.startswith('$ ')]
  commands = []
  logical = iter(_logical_lines(lines))
  for number, text in logical:
    text = _strip_comment(text)
    if not text:
      continue
    if language in ('bash', 'sh', 'shell') or prompted or is_command(text):
      heredoc = re.search(r"<<-?'?(\w+)'?$", text)
      body = []
      if heredoc:  # the following lines, up to the word, are its input
        for _, line in logical:
          if line.strip() == heredoc.group(1):
            break
          body.append(line)
      commands.append(Command(path, number, text, '\n'.join(body)))
  return commands


def extract_page(path: str, text: str) -> List[Command]:
  """The commands of one Markdown page, in page order."""
  commands = []
  fenced = []
  for match in _FENCE.finditer(text):
    fenced.append((match.start(), match.end()))
    indent, language, body = match.groups()
    if language not in _SHELL_BLOCKS:
      continue
    first_line = text.count('\n', 0, match.start(3)) + 1
    body = re.sub(f'^{indent}', '', body, flags=re.M)
    commands += _block_commands(path, first_line, language, body)
  # Outside the fences: blank out fenced text, keeping the line numbers.
  prose = list(text)
  for start, end in fenced:
    for i in range(start, end):
      if prose[i] != '\n':
        prose[i] = ' '
  prose = ''.join(prose)
  # Indented blocks (4+ spaces after a blank line, or inside a list item).
  lines = prose.splitlines()
  number = 0
  while number < len(lines):
    line = lines[number]
    if (line.startswith('    ') and is_command(line.strip())
        and '`' not in line):
      block = [(number + 1, line)]
      while block[-1][1].rstrip().endswith('\\') and number + 1 < len(lines):
        number += 1
        block.append((number + 1, lines[number]))
      for start, joined in _logical_lines(block):
        joined = _strip_comment(joined)
        if joined:
          commands.append(Command(path, start, joined))
    number += 1
  # Inline code spans (they may wrap over lines).
  for match in re.finditer(r'(?<!`)`([^`]+)`(?!`)', prose):
    span = ' '.join(match.group(1).split())
    if is_command(span):
      commands.append(
          Command(path, prose.count('\n', 0, match.start()) + 1, span))
  # `a && b` is two commands.
  return [Command(c.path, c.line, part.strip(), c.heredoc)
          for c in sorted(commands, key=lambda c: c.line)
          for part in c.text.split(' && ')]


def extract(repo: pathlib.Path = REPO) -> List[Command]:
  """Every command of README.md and docs/*.md."""
  commands = []
  for path in DOCS:
    commands += extract_page(path, (repo / path).read_text())
  return commands


def split(text: str) -> Tuple[Dict[str, str], List[str]]:
  """(environment assignments, words) of a command line."""
  words = shlex.split(text)
  env = {}
  while words and re.match(r'^[A-Z_][A-Z0-9_]*=', words[0]):
    name, _, value = words.pop(0).partition('=')
    env[name] = value
  return env, words


# ---------------------------------------------------------------------------
# In-process dry runs (this file run as a script).
# ---------------------------------------------------------------------------


class _Captured(Exception):
  """Raised by the stand-in entry point: the command's main, not run."""


_MODULE_FLAGS = {}


def _module_flags(module: str):
  """The flags `python -m module` defines, in a registry of their own."""
  if module in _MODULE_FLAGS:
    return _MODULE_FLAGS[module]
  import runpy  # pylint: disable=g-import-not-at-top
  from unittest import mock  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top

  def stand_in(*unused_args, **unused_kwargs):
    raise _Captured()

  before = set(flags.FLAGS)
  captured = False
  with mock.patch.object(gin_utils, 'run', stand_in), \
       mock.patch.object(app, 'run', stand_in):
    try:
      runpy.run_module(module, run_name='__main__', alter_sys=False)
    except _Captured:
      captured = True
  if not captured:
    raise ValueError(f'{module} has no entry point (gin_utils.run or app.run '
                     'under `if __name__ == "__main__"`)')
  own = flags.FlagValues()
  for name in set(flags.FLAGS) - before:
    flag = flags.FLAGS[name]
    if name == flag.name:  # registers the short name too
      own[name] = flag
  # Freed, so that the next command can define flags of the same names.
  for name in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, name)
  for name in before:  # absl's own (--verbosity, --help, ...)
    flag = flags.FLAGS[name]
    if name == flag.name:
      own[name] = flag
  _MODULE_FLAGS[module] = own
  return own


def check(action: str, text: str) -> None:
  """Dry-runs one `python -m MODULE ARGS` command; raises if it would fail."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  _, words = split(text)
  if words[:2] != ['python', '-m'] or len(words) < 3:
    raise ValueError(f'not a `python -m MODULE` command: {text}')
  module, args = words[2], words[3:]
  flag_values = _module_flags(module)
  flag_values.unparse_flags()
  flag_values([module] + gin_utils.rewrite_gin_args(args))
  if action == 'flags':
    return
  if 'gin_file' not in flag_values:
    raise ValueError(f'{module} takes no --gin_file, so it has no gin to check')
  if action == 'gin':
    gin.clear_config()
    gin_utils.parse_gin_flags(
        gin_utils.gin_search_paths(flag_values.gin_search_paths),
        flag_values.gin_file, flag_values.gin_bindings,
        finalize_config=False)
    gin.clear_config()
  elif action == 'train':
    from prompt_tuning.cli import config_check  # pylint: disable=g-import-not-at-top
    _, failures = config_check.run_configs(
        [config_check.config_from_args(args)])
    if failures:
      raise ValueError(failures[0][1])
  else:
    raise ValueError(f'unknown dry-run action {action!r}')


def main() -> None:
  import logging  # pylint: disable=g-import-not-at-top
  logging.getLogger().setLevel(logging.CRITICAL)
  results: Dict[str, Optional[str]] = {}
  for action, text in json.loads(sys.stdin.read()):
    try:
      check(action, text)
      results[text] = None
    except BaseException as e:  # pylint: disable=broad-except
      # SystemExit from a flag parser counts as a failure too.
      results[text] = f'{type(e).__name__}: {e}'
  print(json.dumps(results))


if __name__ == '__main__':
  main()
