"""Set-up mistakes end a command with one `error:` line, before any work:
macro typos, a bad MODEL_DIR; the main job is quiet by default."""
import os
import sys

from absl import app
import gin
import pytest

import commands

from prompt_tuning.cli import checks
from prompt_tuning.cli import console
from prompt_tuning.cli import gin_utils


@gin.configurable
def cli_errors_test_fn(steps=1):
  return steps


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


# ---------------------------------------------------------------------------
# In process.
# ---------------------------------------------------------------------------


def _write(tmp_path, text):
  # gin's search paths are process-wide and the first match wins: a file
  # name no other test uses.
  name = f'{tmp_path.name}.gin'
  (tmp_path / name).write_text(text)
  return [str(tmp_path)], [name]


def test_misspelt_macro_names_the_closest(tmp_path):
  paths, files = _write(tmp_path, 'TRAIN_STEPS = 3\n'
                        'cli_errors_test_fn.steps = %TRAIN_STEPS\n')
  with pytest.raises(ValueError) as e:
    gin_utils.parse_gin_flags(paths, files, ['TRAIN_STEPZ = 10'])
  assert str(e.value) == ('unknown gin macro TRAIN_STEPZ '
                          '(--gin.TRAIN_STEPZ=10); did you mean TRAIN_STEPS?')


def test_macro_far_from_any_says_nothing_uses_it(tmp_path):
  paths, files = _write(tmp_path, 'cli_errors_test_fn.steps = 2\n')
  with pytest.raises(ValueError, match=r'unknown gin macro QQQ \(--gin.QQQ=1'
                     r'\); no loaded gin file defines it'):
    gin_utils.parse_gin_flags(paths, files, ['QQQ = 1'])


def test_macros_defined_or_used_are_accepted(tmp_path):
  paths, files = _write(tmp_path, 'DEFINED = 1\n')
  gin_utils.parse_gin_flags(
      paths, files, ['DEFINED = 2', 'NEW = 3',
                     'cli_errors_test_fn.steps = %NEW'])
  assert cli_errors_test_fn() == 3
  gin.clear_config()
  # A later call sees the macros the earlier one's files defined.
  gin_utils.parse_gin_flags(paths, files, [], finalize_config=False)
  gin_utils.parse_gin_flags([], [], ['DEFINED = 4'])


def test_bad_parameter_is_one_line():
  with pytest.raises(ValueError) as e:
    gin_utils.parse_gin_flags([], [], ['cli_errors_test_fn.stepz = 2'])
  assert str(e.value) == (
      'Invalid gin binding in --gin.cli_errors_test_fn.stepz=2: ValueError: '
      "Configurable 'cli_errors_test_fn' doesn't have a parameter named "
      "'stepz'.")


def test_model_dir_required():
  gin.parse_config('MODEL_DIR = %gin.REQUIRED')
  with pytest.raises(ValueError, match='MODEL_DIR is required'):
    checks.model_dir_from_gin()
  gin.clear_config()
  with pytest.raises(ValueError, match='no MODEL_DIR'):
    checks.model_dir_from_gin()


def test_prepare_model_dir(tmp_path):
  run = tmp_path / 'a' / 'run'
  assert checks.prepare_model_dir(str(run)) == str(run)
  assert run.is_dir() and not os.listdir(run)  # The write probe is gone.
  afile = tmp_path / 'afile'
  afile.write_text('')
  with pytest.raises(ValueError, match=f'MODEL_DIR {afile} is a file'):
    checks.prepare_model_dir(str(afile))
  with pytest.raises(ValueError, match=f'is under a file, {afile}'):
    checks.prepare_model_dir(str(afile / 'run'))


def test_one_line_joins_lines():
  assert console.one_line(ValueError('a\n  b\n\nc')) == 'a b c'
  assert console.one_line(app.UsageError('')) == 'UsageError'


# ---------------------------------------------------------------------------
# The train command, in subprocesses.
# ---------------------------------------------------------------------------


def _train(tmp_path, *args):
  # cwd=tmp_path: a checkout's gin/ folder must not shadow gin-config.
  proc = commands.run(
      [sys.executable, '-m', 'prompt_tuning.train',
       '--gin_file=corpus/prompt_tune.gin', *args],
      cwd=tmp_path, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  return proc.returncode, proc.stdout, proc.stderr


def _unwritable_parent(tmp_path):
  """A folder in which nothing can be created. Root ignores permissions, so
  for root /sys (a kernel file system: mkdir gives EPERM)."""
  parent = tmp_path / 'read_only'
  parent.mkdir()
  parent.chmod(0o555)
  if not os.access(parent, os.W_OK):
    return parent
  if os.path.isdir('/sys'):
    return '/sys'
  pytest.skip('no folder this user cannot write')


@pytest.mark.slow
def test_train_setup_mistakes_end_with_one_error_line(tmp_path):
  run = tmp_path / 'run'
  afile = tmp_path / 'afile'
  afile.write_text('x')
  unwritable = os.path.join(_unwritable_parent(tmp_path),
                            'prompt_tuning_test_run')
  cases = [
      ([f"--gin.MODEL_DIR='{run}'", '--gin.TRAIN_STEPZ=10'],
       'error: unknown gin macro TRAIN_STEPZ (--gin.TRAIN_STEPZ=10); did '
       'you mean TRAIN_STEPS?'),
      ([f"--gin.MODEL_DIR='{afile}'"],
       f'error: MODEL_DIR {afile} is a file; expected a directory (or a path '
       'where one can be created)'),
      ([f"--gin.MODEL_DIR='{unwritable}'"],
       f'error: MODEL_DIR {unwritable} cannot be created: '),
      ([],  # corpus/prompt_tune.gin leaves MODEL_DIR required.
       'error: MODEL_DIR is required (%gin.REQUIRED, not set): set it with '
       '--gin.MODEL_DIR=VALUE'),
  ]
  for args, last in cases:
    code, out, err = _train(tmp_path, *args)
    assert code == 1, err[-2000:]
    assert err.splitlines()[-1].startswith(last), err[-2000:]
    assert 'Traceback' not in err and not out
  # Nothing left for a later run: no run directory, the file untouched.
  assert not run.exists() and afile.read_text() == 'x'
  assert not os.path.exists(unwritable)
