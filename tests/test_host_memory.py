"""`utils.host_memory`: freed memory is kept for reuse, where it is set."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from prompt_tuning.cli import gin_utils
from prompt_tuning.utils import host_memory

# A thread allocates, touches and frees a large block, as XLA's workers do a
# step's temporaries; prints how much of it the process still holds.
_CHILD = textwrap.dedent("""
    import ctypes, sys, threading
    from prompt_tuning.utils import host_memory
    applied = sys.argv[1] == 'reuse' and host_memory.reuse_freed_memory()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    SIZE = 256 << 20

    def rss():
      with open('/proc/self/status') as f:
        line = next(l for l in f if l.startswith('VmRSS:'))
      return int(line.split()[1]) << 10

    def step():
      block = libc.malloc(SIZE)
      ctypes.memset(block, 1, SIZE)
      libc.free(ctypes.c_void_p(block))

    before = rss()
    worker = threading.Thread(target=step)
    worker.start()
    worker.join()
    print(applied, (rss() - before) / SIZE)
    """)


def _held_after_free(mode, **env):
  result = subprocess.run(
      [sys.executable, '-c', _CHILD, mode], capture_output=True, text=True,
      check=True, env=dict(os.environ, **env))
  applied, held = result.stdout.split()
  return applied == 'True', float(held)


@pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc'
    or host_memory.has_accelerator(),
    reason='the setting applies to glibc on a machine with no accelerator')
def test_a_block_freed_by_a_thread_stays_for_reuse_only_when_set():
  applied, held = _held_after_free('reuse')
  assert applied and held > 0.9, held
  applied, held = _held_after_free('system')
  assert not applied and held < 0.1, held
  # A user's own allocator setting wins.
  applied, held = _held_after_free('reuse', MALLOC_ARENA_MAX='2')
  assert not applied and held < 0.1, held


def test_every_command_sets_it_before_it_starts(monkeypatch):
  calls = []
  monkeypatch.setattr(host_memory, 'reuse_freed_memory',
                      lambda: calls.append('allocator'))
  monkeypatch.setattr(sys, 'argv', ['command'])

  def main(argv):
    del argv
    calls.append('main')

  with pytest.raises(SystemExit) as exit_info:
    gin_utils.run(main, tensorflow=False)
  assert exit_info.value.code in (None, 0)
  assert calls == ['allocator', 'main']
