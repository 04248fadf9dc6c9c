"""Shared fixtures: the reference folder, a tiny T5 with odd sizes."""
import os
import pathlib
import re
import shlex
import subprocess
import sys
import typing

import pytest

from prompt_tuning.utils import host_memory

# As every command does (`gin_utils.run`): the in-process tests' steps reuse
# their freed buffers.
host_memory.reuse_freed_memory()

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_DIR = pathlib.Path(
    os.environ.get('PROMPT_TUNING_REFERENCE_DIR',
                   _REPO_ROOT.parent / 'shared' / 'reference'))


def _reference_path(relative: str) -> pathlib.Path:
  """Path inside the reference folder; skips (or fails under CI) if absent."""
  path = REFERENCE_DIR / relative
  if not path.exists():
    reason = (f'reference artifact {path} is absent (set '
              'PROMPT_TUNING_REFERENCE_DIR to the shared/reference folder)')
    if os.environ.get('CI', '').lower() == 'true':
      pytest.fail(reason)
    pytest.skip(reason)
  return path


@pytest.fixture(scope='session', autouse=True)
def shared_compilation_cache(tmp_path_factory, worker_id):
  """One JAX compilation cache for the whole run, both test workers and every
  command they start: most end-to-end tests compile the same train, decode
  and score programs of the embedded model, and an XLA compile of those
  costs far more than reading it back."""
  base = tmp_path_factory.getbasetemp()
  if worker_id != 'master':  # xdist: popen-gwN folders share one parent.
    base = base.parent
  path = base / 'jax_compilation_cache'
  path.mkdir(exist_ok=True)
  settings = {'jax_compilation_cache_dir': str(path),
              'jax_persistent_cache_min_compile_time_secs': 0.2,
              'jax_persistent_cache_min_entry_size_bytes': 0}
  for name, value in settings.items():
    os.environ[name.upper()] = str(value)  # For the commands tests start.
  import jax  # pylint: disable=g-import-not-at-top
  for name, value in settings.items():
    jax.config.update(name, value)
  yield path


@pytest.fixture
def reference_path():
  """Returns a function mapping a path relative to shared/reference to a Path."""
  return _reference_path


# A deliberately odd-sized T5 so that axis mix-ups fail loudly.
TINY_CONFIG_KWARGS = dict(
    vocab_size=37, emb_dim=13, num_heads=3, head_dim=5, mlp_dim=11,
    num_encoder_layers=2, num_decoder_layers=2,
    relative_attention_num_buckets=8, relative_attention_max_distance=16,
    dropout_rate=0.1)


@pytest.fixture(scope='session')
def tiny_config():
  from prompt_tuning.model import t5  # pylint: disable=g-import-not-at-top
  return t5.T5Config(**TINY_CONFIG_KWARGS)


@pytest.fixture(scope='session')
def tiny_params(tiny_config):
  """Unboxed float32 parameters of the tiny T5 (no prompt), fixed seed."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import t5  # pylint: disable=g-import-not-at-top
  variables = t5.Transformer(tiny_config).init(
      jax.random.PRNGKey(0), jnp.ones((1, 3), jnp.int32),
      jnp.ones((1, 2), jnp.int32))
  return flax.core.meta.unbox(variables['params'])


@pytest.fixture(scope='module')
def fast_compiles():
  """XLA's optimisations off for a module's in-process compiles: on the tiny
  test models they cost more compile time than they save."""
  import jax  # pylint: disable=g-import-not-at-top
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


def readme_main_job(model_dir):
  """The main-job command of the README's first block, with MODEL_DIR moved."""
  block = README.read_text().split('```bash\n', 1)[1].split('```', 1)[0]
  line = block.splitlines()[0]
  command = line.split('&&', 1)[1].strip()
  args = shlex.split(command)
  assert args[:3] == ['python', '-m', 'prompt_tuning.train'], line
  args = [sys.executable] + args[1:]
  return [re.sub(r"MODEL_DIR=.*", f"MODEL_DIR='{model_dir}'", a)
          for a in args]


class MainJob(typing.NamedTuple):
  model_dir: pathlib.Path
  stdout: str
  stderr: str


@pytest.fixture(scope='session')
def main_job(tmp_path_factory):
  """The README's main job, run once per test worker: a `MainJob`.

  Its tests carry `pytest.mark.xdist_group('main_job')` so that they share
  one worker and so one run.
  """
  model_dir = tmp_path_factory.mktemp('main_job')
  result = subprocess.run(readme_main_job(model_dir), capture_output=True,
                          text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return MainJob(model_dir, result.stdout, result.stderr)
