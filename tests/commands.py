"""`run`: `subprocess.run` for the tests' `python -m prompt_tuning.<command>`
lines, started from a warm interpreter (`warm_commands.py`) where it can.

A command line runs in a fork of a server when it is `[sys.executable,
'-m', module, ...]` or `[sys.executable, 'script.py', ...]`; there is one
server for each set of TensorFlow and Python settings in the environment
(read when those are imported and started, so a fork could not change them;
JAX's own settings the server applies to each child). Anything else goes to
`subprocess.run`; for a shell script, with `PYTHON` (where unset or this
Python) naming `warm_python.py`'s stand-in, so that the launch scripts'
`"${PYTHON}" -m ...` lines fork from the same server. Either way the caller
gets a `subprocess.CompletedProcess`.
"""
import atexit
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

import warm_commands
import warm_python

_SERVER_SCRIPT = pathlib.Path(warm_commands.__file__)


class _Server:
  """One warm interpreter per test process, started on first use."""

  def __init__(self, env):
    self._folder = tempfile.TemporaryDirectory()  # pylint: disable=consider-using-with
    self.socket = os.path.join(self._folder.name, 'socket')
    # The `python` that shell scripts run to reach this server.
    self.stand_in = os.path.join(self._folder.name, 'python')
    with open(self.stand_in, 'w') as f:
      f.write(f'#!{sys.executable} -S\nimport sys\n'
              f'sys.path.insert(0, {str(_SERVER_SCRIPT.parent)!r})\n'
              'import warm_python\nwarm_python.main()\n')
    os.chmod(self.stand_in, 0o755)
    self._process = subprocess.Popen(
        [sys.executable, str(_SERVER_SCRIPT), self.socket],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
        cwd=str(_SERVER_SCRIPT.parent), env=env)
    self.answer(timeout=300, key='ready')

  def answer(self, timeout, key):
    """The value of `key` in the server's next line; TimeoutExpired if none
    comes within `timeout` seconds."""
    ready, _, _ = select.select([self._process.stdout], [], [], timeout)
    if not ready:
      raise subprocess.TimeoutExpired(str(_SERVER_SCRIPT), timeout)
    line = self._process.stdout.readline()
    if not line:
      raise RuntimeError(f'{_SERVER_SCRIPT.name} ended '
                         f'(status {self._process.poll()})')
    return json.loads(line)[key]

  def alive(self) -> bool:
    return self._process.poll() is None

  def close(self) -> None:
    """Ends the server (it stops at the end of its input)."""
    self._process.stdin.close()
    try:
      self._process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self._process.kill()
    self._folder.cleanup()

  def start(self, args, cwd, env, stdout, stderr, stdin=None) -> 'Started':
    """Runs `python <args>`."""
    self._process.stdin.write(json.dumps(
        {'args': list(args), 'cwd': cwd, 'env': env, 'stdout': stdout,
         'stderr': stderr, 'stdin': stdin}) + '\n')
    self._process.stdin.flush()
    return Started(self, self.answer(timeout=60, key='pid'))


class Started:
  """A command a server runs: `subprocess.Popen`'s `pid`, `poll`, `wait`,
  `send_signal` and `kill`, one at a time per server."""

  def __init__(self, server: _Server, pid: int):
    self._server = server
    self.pid = pid
    self.returncode = None

  def poll(self):
    if self.returncode is None:
      try:
        self.returncode = self._server.answer(timeout=0, key='returncode')
      except subprocess.TimeoutExpired:
        pass
    return self.returncode

  def wait(self, timeout=None):
    if self.returncode is None:
      self.returncode = self._server.answer(timeout=timeout, key='returncode')
    return self.returncode

  def send_signal(self, signum) -> None:
    if self.returncode is None:
      os.kill(self.pid, signum)

  def kill(self) -> None:
    self.send_signal(signal.SIGKILL)


_servers = {}


@atexit.register
def _close_servers():
  for server in _servers.values():
    server.close()


def _server_for_env(env) -> Optional[_Server]:
  """The server for commands in `env`, or None where they must be plain
  subprocesses."""
  settings = frozenset((k, v) for k, v in env.items()
                       if k.startswith(warm_commands.SERVER_SETTINGS))
  # JAX settings as this process has them; the rest as the command's.
  server_env = {k: v for k, v in os.environ.items()
                if not k.startswith(warm_commands.SERVER_SETTINGS)}
  server_env.update(settings)
  if warm_commands.refusal(server_env, env) is not None:
    return None
  server = _servers.get(settings)
  if server is None or not server.alive():
    server = _servers[settings] = _Server(server_env)
  return server


def _server_for(args, env) -> Optional[_Server]:
  """The server for `args` in `env`, or None where it must be a plain
  subprocess."""
  if not (len(args) > 1 and args[0] == sys.executable and (
      (args[1] == '-m' and len(args) > 2) or str(args[1]).endswith('.py'))):
    return None
  return _server_for_env(env)


def _with_warm_python(args, env):
  """`env`, with `PYTHON` (where unset or this Python) a stand-in that runs
  `-m` lines in a fork of the server for `env` (`warm_python.py`), where
  `args` runs a shell script."""
  if not (args and (args[0] == 'bash' or str(args[0]).endswith('.sh'))
          and env.get('PYTHON', sys.executable) == sys.executable):
    return env
  server = _server_for_env(env)
  if server is None:
    return env
  return {**env, 'PYTHON': server.stand_in, warm_python.SOCKET: server.socket,
          warm_python.REAL_PYTHON: sys.executable}


def start(args: Sequence[str], *, stdout: Optional[str] = None,
          stderr: Optional[str] = None):
  """`subprocess.Popen(args)` with the output in files (None: discarded):
  a `Started` command, or a `subprocess.Popen` where `args` is not a
  `python -m` or `python script.py` line."""
  env = dict(os.environ)
  server = _server_for(args, env)
  stdout, stderr = stdout or os.devnull, stderr or os.devnull
  if server is None:
    with open(stdout, 'w') as out, open(stderr, 'w') as err:
      return subprocess.Popen(args, stdout=out, stderr=err,
                              env=_with_warm_python(args, env))
  return server.start(args[1:], os.getcwd(), env, stdout, stderr)


def run(args: Sequence[str], *, cwd=None, env=None, timeout=None,
        check: bool = False, input=None,  # pylint: disable=redefined-builtin
        **kwargs) -> subprocess.CompletedProcess:
  """`subprocess.run(args, capture_output=True, text=True, ...)`."""
  kwargs.pop('capture_output', None)
  kwargs.pop('text', None)
  env = dict(os.environ if env is None else env)
  server = None if kwargs else _server_for(args, env)
  if server is None:
    return subprocess.run(args, cwd=cwd, env=_with_warm_python(args, env),
                          timeout=timeout,
                          check=check, input=input, capture_output=True,
                          text=True, **kwargs)
  with tempfile.TemporaryDirectory() as folder:
    stdin, stdout, stderr = (os.path.join(folder, n)
                             for n in ('stdin', 'stdout', 'stderr'))
    if input is not None:
      with open(stdin, 'w') as f:
        f.write(input)
    started = server.start(args[1:], str(cwd or os.getcwd()), env, stdout,
                           stderr, stdin if input is not None else None)
    begun = time.time()
    try:
      returncode = started.wait(timeout)
    except subprocess.TimeoutExpired:
      started.kill()
      started.wait(60)
      raise subprocess.TimeoutExpired(args, time.time() - begun)
    with open(stdout) as out, open(stderr) as err:
      result = subprocess.CompletedProcess(list(args), returncode, out.read(),
                                           err.read())
  if check:
    result.check_returncode()
  return result
