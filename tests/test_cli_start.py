"""Every command's --help and argument errors answer before the heavy
libraries (JAX, TensorFlow, seqio, flax) load; the commands' copies of
library names match the library."""
import os
import subprocess
import sys
import textwrap

import pytest

COMMANDS = ('bench', 'compare_methods', 'dry_run', 'embedded', 'ensemble',
            'eval', 'forward', 'infer', 'interpret', 'method_export',
            'method_params', 'miniature', 'peft_interop', 'probe', 'report',
            'serve', 'spot', 'train')
HEAVY = ('jax', 'tensorflow', 'seqio', 'flax', 'orbax', 'torch')

# Runs a command as `python -m` would, then reports the heavy modules loaded.
_DRIVER = textwrap.dedent("""\
    import runpy, sys
    module, args = sys.argv[1], sys.argv[2:]
    sys.argv = [module] + args
    code = 0
    try:
      runpy.run_module(module, run_name='__main__', alter_sys=True)
    except SystemExit as e:
      code = e.code
    heavy = [m for m in {heavy!r} if m in sys.modules]
    sys.stdout.flush()
    print('HEAVY', heavy, file=sys.stderr)
    sys.exit(code)
    """).format(heavy=HEAVY)


def _run(tmp_path, command, *args):
  driver = tmp_path / 'driver.py'
  driver.write_text(_DRIVER)
  # cwd=tmp_path: a checkout's gin/ folder must not shadow gin-config.
  proc = subprocess.run(
      [sys.executable, str(driver), f'prompt_tuning.{command}', *args],
      cwd=tmp_path, capture_output=True, text=True, timeout=120,
      env=dict(os.environ))
  *lines, heavy = proc.stderr.rstrip('\n').splitlines()
  assert heavy.startswith('HEAVY'), proc.stderr[-2000:]
  return proc.returncode, proc.stdout, '\n'.join(lines), heavy


@pytest.mark.parametrize('command', COMMANDS)
def test_help_loads_no_heavy_library(tmp_path, command):
  code, out, err, heavy = _run(tmp_path, command, '--help')
  assert code == 0, err[-2000:]
  assert heavy == 'HEAVY []'
  assert f'prompt_tuning.{command}' in out and '--' in out


@pytest.mark.parametrize('command', COMMANDS)
def test_bad_flag_is_one_line_before_heavy_imports(tmp_path, command):
  code, out, err, heavy = _run(tmp_path, command, '--no_such_flag=1')
  assert code == 1
  assert heavy == 'HEAVY []'
  assert err.splitlines()[-1] == (
      "error: Unknown command line flag 'no_such_flag' (--helpshort or "
      '--helpfull lists the flags)')
  assert not out


def test_train_without_gin_file_is_one_line_before_heavy_imports(tmp_path):
  code, _, err, heavy = _run(tmp_path, 'train',
                             "--gin.MODEL_DIR='run'")
  assert code == 1
  assert heavy == 'HEAVY []'
  assert err.splitlines()[-1] == (
      'error: no --gin_file: pass a training config, e.g. '
      '--gin_file=corpus/prompt_tune.gin (the main job)')
  assert not (tmp_path / 'run').exists()


def test_commands_copies_of_library_names_match():
  from prompt_tuning import bench  # pylint: disable=g-import-not-at-top
  from prompt_tuning import miniature  # pylint: disable=g-import-not-at-top
  from prompt_tuning import spot  # pylint: disable=g-import-not-at-top
  from prompt_tuning.benchmarks import common  # pylint: disable=g-import-not-at-top
  from prompt_tuning.benchmarks import suites  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import miniature as miniature_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import spot as spot_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  assert bench.SUITES == suites.SUITES
  assert bench.DTYPES == common.DTYPES
  assert bench.FROZEN_DTYPES == trainer.FROZEN_DTYPES
  assert set(spot.METRICS) == set(spot_lib.METRICS)
  assert miniature.EXPERIMENTS == miniature_lib.EXPERIMENTS
