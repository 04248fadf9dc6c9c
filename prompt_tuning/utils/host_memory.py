"""`reuse_freed_memory`: glibc's allocator set to keep freed memory for reuse;
`has_gpu_devices` and `has_accelerator`, from the machine's device files.

On the CPU backend, XLA allocates each execution's temporary buffer with
`posix_memalign` from one of its worker threads. glibc serves a block that
large from a fresh `mmap` (a thread's arena cannot hold it) and unmaps it on
free, so every train step faults in and zeroes its whole working set again:
on the 2-core machine the main job spent about a third of its CPU time in
the kernel doing so (`docs/benchmarks.md`, "Host memory"). With one arena
and no `mmap` for large blocks, the freed buffer stays in the heap and the
next step reuses it.

Only the standard library is imported: commands call this before the heavy
libraries start their threads (a thread keeps the arena it first used).
"""
import ctypes
import glob
import os
import platform

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Free memory kept at the top of the heap before any is returned to the
# system: mallopt takes an int, and 2 GiB covers a CPU run's step.
_KEEP_BYTES = 2**31 - 1
# Settings through which a user has chosen the allocator's behaviour.
_USER_SETTINGS = ('MALLOC_ARENA_MAX', 'MALLOC_MMAP_MAX_',
                  'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
                  'GLIBC_TUNABLES', 'LD_PRELOAD')
# Device files of NVIDIA and AMD ROCm GPUs, and of TPUs. Where there is an
# accelerator the step's buffers live on it, and the host's allocator is
# left as it is.
_GPU_DEVICES = ('/dev/nvidia[0-9]*', '/dev/kfd')
_TPU_DEVICES = ('/dev/accel*', '/dev/vfio/[0-9]*')


def _any_exists(patterns) -> bool:
  return any(glob.glob(pattern) for pattern in patterns)


def has_gpu_devices() -> bool:
  """Whether this machine has NVIDIA (or AMD ROCm) device files."""
  return _any_exists(_GPU_DEVICES)


def has_accelerator() -> bool:
  """Whether this machine has GPU or TPU device files."""
  return _any_exists(_GPU_DEVICES + _TPU_DEVICES)


def reuse_freed_memory() -> bool:
  """Sets glibc's malloc to one arena, no `mmap` for large blocks and up to
  2 GiB of free memory kept, where that helps: glibc on Linux, no
  accelerator, and no allocator setting of the user's (`MALLOC_*`,
  `GLIBC_TUNABLES`, `LD_PRELOAD`). Returns whether it did.

  Freed memory then stays with the process: results are unchanged, but the
  resident size is larger (the main job's: 2.9 GB against 1.6 GB).
  """
  if (platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc'
      or has_accelerator() or any(k in os.environ for k in _USER_SETTINGS)):
    return False
  mallopt = ctypes.CDLL(None).mallopt
  return all(mallopt(parameter, value) == 1 for parameter, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_BYTES)))
