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
from typing import Sequence

_SERVER_SCRIPT = pathlib.Path(__file__).with_name('warm_commands.py')
# Read when TensorFlow or Python start; a server has one value of each.
_SERVER_SETTINGS = ('TF_', 'XLA_PYTHON_', 'PYTHONPATH', 'PYTHONHASHSEED',
                    'PYTHONWARNINGS', 'PYTHONSAFEPATH')


class _Server:
  """One warm interpreter per test process, started on first use."""

  def __init__(self, env):
    self._env = env
    self._process = subprocess.Popen(
        [sys.executable, str(_SERVER_SCRIPT)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=str(_SERVER_SCRIPT.parent), env=self._env)
    self._read(timeout=300, key='ready')

  def _read(self, timeout, key):
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

  def run(self, args, cwd, env, timeout):
    with tempfile.TemporaryDirectory() as folder:
      stdout, stderr = (os.path.join(folder, n) for n in ('stdout', 'stderr'))
      self._process.stdin.write(json.dumps(
          {'args': list(args), 'cwd': cwd, 'env': env, 'stdout': stdout,
           'stderr': stderr}) + '\n')
      self._process.stdin.flush()
      pid = self._read(timeout=60, key='pid')
      start = time.time()
      try:
        returncode = self._read(timeout=timeout, key='returncode')
      except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        self._read(timeout=60, key='returncode')
        raise subprocess.TimeoutExpired(args, time.time() - start)
      with open(stdout) as out, open(stderr) as err:
        return returncode, out.read(), err.read()


_servers = {}


@atexit.register
def _close_servers():
  for server in _servers.values():
    server.close()


def run(args: Sequence[str], *, cwd=None, env=None, timeout=None,
        check: bool = False, input=None,  # pylint: disable=redefined-builtin
        **kwargs) -> subprocess.CompletedProcess:
  """`subprocess.run(args, capture_output=True, text=True, ...)`."""
  kwargs.pop('capture_output', None)
  kwargs.pop('text', None)
  env = dict(os.environ if env is None else env)
  # A JAX setting the environment drops cannot be unset in a fork.
  drops_jax_setting = any(k.startswith('JAX_') and k not in env
                          for k in os.environ)
  warm = (len(args) > 2 and args[0] == sys.executable and args[1] == '-m'
          and input is None and not kwargs and not drops_jax_setting)
  if not warm:
    return subprocess.run(args, cwd=cwd, env=env, timeout=timeout,
                          check=check, input=input, capture_output=True,
                          text=True, **kwargs)
  settings = frozenset((k, v) for k, v in env.items()
                       if k.startswith(_SERVER_SETTINGS))
  server = _servers.get(settings)
  if server is None or not server.alive():
    # JAX settings as this process has them; the rest as the command's.
    server_env = {k: v for k, v in os.environ.items()
                  if not k.startswith(_SERVER_SETTINGS)}
    server_env.update(settings)
    server = _servers[settings] = _Server(server_env)
  returncode, stdout, stderr = server.run(
      args[2:], str(cwd or os.getcwd()), env, timeout)
  result = subprocess.CompletedProcess(list(args), returncode, stdout, stderr)
  if check:
    result.check_returncode()
  return result
