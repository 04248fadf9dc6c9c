"""`run`: `subprocess.run` for the tests' `python -m prompt_tuning.<command>`
lines, started from a warm interpreter (`warm_commands.py`) where it can.

A command line runs in a fork of a server when it is `[sys.executable,
'-m', module, ...]` with no stdin input; there is one server for each set
of TensorFlow and Python settings in the environment (read when those are
imported and started, so a fork could not change them; JAX's own settings
the server applies to each child). Anything else goes to `subprocess.run`
unchanged. Either way the caller gets a `subprocess.CompletedProcess`.
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

_SERVER_SCRIPT = pathlib.Path(__file__).with_name('warm_commands.py')
# Read when TensorFlow or Python start; a server has one value of each.
_SERVER_SETTINGS = ('TF_', 'XLA_PYTHON_', 'PYTHONPATH', 'PYTHONHASHSEED',
                    'PYTHONWARNINGS', 'PYTHONSAFEPATH')


class _Server:
  """One warm interpreter per test process, started on first use."""

  def __init__(self, env):
    self._process = subprocess.Popen(
        [sys.executable, str(_SERVER_SCRIPT)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
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

  def start(self, args, cwd, env, stdout, stderr) -> 'Started':
    self._process.stdin.write(json.dumps(
        {'args': list(args), 'cwd': cwd, 'env': env, 'stdout': stdout,
         'stderr': stderr}) + '\n')
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


def _server_for(args, env) -> Optional[_Server]:
  """The server for `args` in `env`, or None where it must be a plain
  subprocess."""
  # A JAX setting the environment drops cannot be unset in a fork.
  drops_jax_setting = any(k.startswith('JAX_') and k not in env
                          for k in os.environ)
  if not (len(args) > 2 and args[0] == sys.executable and args[1] == '-m'
          and not drops_jax_setting):
    return None
  settings = frozenset((k, v) for k, v in env.items()
                       if k.startswith(_SERVER_SETTINGS))
  server = _servers.get(settings)
  if server is None or not server.alive():
    # JAX settings as this process has them; the rest as the command's.
    server_env = {k: v for k, v in os.environ.items()
                  if not k.startswith(_SERVER_SETTINGS)}
    server_env.update(settings)
    server = _servers[settings] = _Server(server_env)
  return server


def start(args: Sequence[str], *, stdout: Optional[str] = None,
          stderr: Optional[str] = None):
  """`subprocess.Popen(args)` with the output in files (None: discarded):
  a `Started` command, or a `subprocess.Popen` where `args` is not a
  `python -m` line."""
  env = dict(os.environ)
  server = _server_for(args, env)
  stdout, stderr = stdout or os.devnull, stderr or os.devnull
  if server is None:
    with open(stdout, 'w') as out, open(stderr, 'w') as err:
      return subprocess.Popen(args, stdout=out, stderr=err)
  return server.start(args[2:], os.getcwd(), env, stdout, stderr)


def run(args: Sequence[str], *, cwd=None, env=None, timeout=None,
        check: bool = False, input=None,  # pylint: disable=redefined-builtin
        **kwargs) -> subprocess.CompletedProcess:
  """`subprocess.run(args, capture_output=True, text=True, ...)`."""
  kwargs.pop('capture_output', None)
  kwargs.pop('text', None)
  env = dict(os.environ if env is None else env)
  server = None if input is not None or kwargs else _server_for(args, env)
  if server is None:
    return subprocess.run(args, cwd=cwd, env=env, timeout=timeout,
                          check=check, input=input, capture_output=True,
                          text=True, **kwargs)
  with tempfile.TemporaryDirectory() as folder:
    stdout, stderr = (os.path.join(folder, n) for n in ('stdout', 'stderr'))
    started = server.start(args[2:], str(cwd or os.getcwd()), env, stdout,
                           stderr)
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
