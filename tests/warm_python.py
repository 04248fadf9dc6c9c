"""A stand-in for `python` in the scripts the tests start (the launch
scripts run `"${PYTHON}" -m prompt_tuning.dry_run ...`): a `-m` line runs
in a fork of the test's warm interpreter (`warm_commands.py`), anything
else, or a line that server refuses, in the real Python.

Each `commands._Server` writes the executable that runs this; `commands.run`
puts it in a shell script's environment as `PYTHON`, with the server's
socket.
"""
import json
import os
import signal
import socket
import sys

SOCKET = 'PROMPT_TUNING_WARM_SOCKET'
REAL_PYTHON = 'PROMPT_TUNING_WARM_REAL_PYTHON'


def _lines(connection):
  buffer = b''
  while True:
    while b'\n' not in buffer:
      more = connection.recv(4096)
      if not more:
        raise ConnectionError('the warm server closed the connection')
      buffer += more
    line, buffer = buffer.split(b'\n', 1)
    yield json.loads(line)


def _run_warm(args):
  """The command's exit status, or None where the server refused it."""
  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
    connection.connect(os.environ[SOCKET])
    request = {'args': args, 'cwd': os.getcwd(), 'env': dict(os.environ)}
    socket.send_fds(connection, [(json.dumps(request) + '\n').encode()],
                    [0, 1, 2])
    answers = _lines(connection)
    first = next(answers)
    if 'refused' in first:
      return None
    pid = first['pid']
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, lambda n, _: os.kill(pid, n))
    return next(answers)['returncode']


def main():
  args = sys.argv[1:]
  if os.environ.get(SOCKET) and len(args) >= 2 and args[0] == '-m':
    try:
      code = _run_warm(args)
    except OSError:
      code = None
    if code is not None:
      if code < 0:  # Ended by a signal: end the same way.
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
      sys.exit(code)
  real = os.environ[REAL_PYTHON]
  os.execv(real, [real] + args)


if __name__ == '__main__':
  main()
