"""Runs `python -m prompt_tuning.<command>` lines (and the tests' helper
scripts) for the tests, each in a fork of one warm interpreter
(`commands.run` is the client).

Most end-to-end tests start a command and check its output and exit status.
A fresh interpreter spends most of a short command's time importing
TensorFlow, seqio, JAX and the package; this server imports them once and
forks a child per command, which then runs exactly as `python -m` would: its
own process, arguments, working directory, environment, exit status and
standard streams. Nothing here initialises a JAX backend or a TensorFlow
runtime, so each child starts those afresh; a child's `JAX_*` settings that
differ from the server's are applied to JAX's config before it starts.

Protocol, one JSON object a line on stdin: {"args": python's arguments
(`-m module ...` or `script.py ...`), "cwd": ..., "env": {...}, "stdout":
path, "stderr": path, optionally "stdin": path}; the server answers
{"pid": n} when the child starts and {"returncode": n} when it ends.

The server also listens on the Unix socket named by its first argument, for
`warm_python.py`: a stand-in for `python` that scripts started by a test
(the launch scripts' `$PYTHON -m ...`) run. It sends one such JSON line
without the paths, with its standard input, output and error attached
(SCM_RIGHTS), and reads the same answers on the socket, or
{"refused": reason} when its environment needs another server.
"""
import atexit
import json
import os
import runpy
import select
import socket
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


# Read when TensorFlow or Python start: a request must have the server's.
SERVER_SETTINGS = ('TF_', 'XLA_PYTHON_', 'PYTHONPATH', 'PYTHONHASHSEED',
                   'PYTHONWARNINGS', 'PYTHONSAFEPATH')


def refusal(server_env, env):
  """Why a fork of a server started in `server_env` cannot run a command in
  `env` as a fresh `python` would (None if it can)."""
  for key in sorted(set(server_env) | set(env)):
    if key.startswith(SERVER_SETTINGS) and server_env.get(key) != env.get(key):
      return f'{key} differs'
    # A JAX setting the environment drops cannot be unset in a fork.
    if key.startswith('JAX_') and key not in env:
      return f'{key} is unset'
  return None


def _child(request, fds=None) -> None:
  """Becomes `python <args>`, with standard streams `fds` (or the request's
  files, /dev/null for a missing stdin); never returns."""
  code = 1
  try:
    os.chdir(request['cwd'])
    _apply_jax_settings(request['env'])
    os.environ.clear()
    os.environ.update(request['env'])
    if fds is None:
      fds = [os.open(request.get('stdin') or os.devnull, os.O_RDONLY)] + [
          os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
          for name in ('stdout', 'stderr')]
    for fd, source in enumerate(fds):
      os.dup2(source, fd)
    sys.stdin = open(0, closefd=False)  # pylint: disable=consider-using-with
    args = request['args']
    try:
      if args[0] == '-m':
        sys.argv = args[1:]
        sys.path[0] = os.getcwd()  # What `python -m` puts first.
        runpy.run_module(args[1], run_name='__main__', alter_sys=True)
      else:
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name='__main__')
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
  server_env = dict(os.environ)  # What a fresh `python` here would see.
  from prompt_tuning.utils import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.reuse_freed_memory()
  _warm_up()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  listener.bind(sys.argv[1])
  listener.listen()
  print(json.dumps({'ready': True}), flush=True)
  while True:
    ready, _, _ = select.select([sys.stdin, listener], [], [])
    if sys.stdin in ready:
      line = sys.stdin.readline()
      if not line:
        return
      _serve(json.loads(line), None,
             lambda answer: print(json.dumps(answer), flush=True))
    if listener in ready:
      connection, _ = listener.accept()
      with connection:
        _serve_socket(connection, server_env)


def _serve(request, fds, answer) -> None:
  """Runs one command in a child; `answer`s its pid, then its exit status."""
  pid = os.fork()
  if pid == 0:
    _child(request, fds)
  answer({'pid': pid})
  _, status = os.waitpid(pid, 0)
  answer({'returncode': os.waitstatus_to_exitcode(status)})


def _serve_socket(connection, server_env) -> None:
  def answer(value):
    connection.sendall((json.dumps(value) + '\n').encode())
  data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
  try:
    while not data.endswith(b'\n'):
      more = connection.recv(1 << 20)
      if not more:
        return
      data += more
    request = json.loads(data)
    reason = refusal(server_env, request['env'])
    if reason is not None or len(fds) != 3:
      answer({'refused': reason or f'{len(fds)} streams'})
      return
    _serve(request, fds, answer)
  finally:
    for fd in fds:
      os.close(fd)


if __name__ == '__main__':
  main()
