"""Runs `python -m prompt_tuning.<command>` lines for the tests, each in a
fork of one warm interpreter (`commands.run` is the client).

Most end-to-end tests start a command and check its output and exit status.
A fresh interpreter spends most of a short command's time importing
TensorFlow, seqio, JAX and the package; this server imports them once and
forks a child per command, which then runs exactly as `python -m` would: its
own process, arguments, working directory, environment, exit status and
standard streams. Nothing here initialises a JAX backend or a TensorFlow
runtime, so each child starts those afresh; a child's `JAX_*` settings that
differ from the server's are applied to JAX's config before it starts.

Protocol, one JSON object a line on stdin: {"args": [...], "cwd": ...,
"env": {...}, "stdout": path, "stderr": path}; the server answers
{"pid": n} when the child starts and {"returncode": n} when it ends.
"""
import atexit
import json
import os
import runpy
import sys
import traceback


def _warm_up() -> None:
  # pylint: disable=g-import-not-at-top,unused-import
  import jax
  import seqio
  import tensorflow
  import prompt_tuning.tasks
  from prompt_tuning.cli import gin_utils
  from prompt_tuning.training import trainer
  # pylint: enable=g-import-not-at-top,unused-import


def _parsed(current, text: str):
  """`text` as the type of a JAX setting's `current` value."""
  if isinstance(current, bool):
    return text.lower() in ('1', 'true', 't', 'yes', 'y', 'on')
  if isinstance(current, (int, float)):
    return type(current)(text)
  return text


def _apply_jax_settings(env) -> None:
  """JAX reads its `JAX_*` settings when imported: a child whose environment
  sets another value has it applied, before any backend starts."""
  import jax  # pylint: disable=g-import-not-at-top
  for key, value in env.items():
    name = key.lower()
    if (key.startswith('JAX_') and os.environ.get(key) != value
        and name in jax.config.values):
      jax.config.update(name, _parsed(jax.config.values[name], value))


def _child(request) -> None:
  """Becomes `python -m <module> <args>`; never returns."""
  code = 1
  try:
    os.chdir(request['cwd'])
    _apply_jax_settings(request['env'])
    os.environ.clear()
    os.environ.update(request['env'])
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, request['stdout']), (2, request['stderr'])):
      os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdin = open(0, closefd=False)  # pylint: disable=consider-using-with
    module = request['args'][0]
    sys.argv = [module] + request['args'][1:]
    sys.path[0] = os.getcwd()  # What `python -m` puts first.
    try:
      runpy.run_module(module, run_name='__main__', alter_sys=True)
      code = 0
    except SystemExit as e:
      if e.code is None:
        code = 0
      elif isinstance(e.code, int):
        code = e.code
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      code = 1
    atexit._run_exitfuncs()  # pylint: disable=protected-access
  finally:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except Exception:  # pylint: disable=broad-except
        pass
    os._exit(code)  # pylint: disable=protected-access


def main() -> None:
  # As every command does first (`gin_utils.run`), before TensorFlow and JAX
  # start threads here.
  from prompt_tuning.utils import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.reuse_freed_memory()
  _warm_up()
  print(json.dumps({'ready': True}), flush=True)
  for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
      _child(request)
    print(json.dumps({'pid': pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({'returncode': os.waitstatus_to_exitcode(status)}),
          flush=True)


if __name__ == '__main__':
  main()
