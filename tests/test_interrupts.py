"""Training through the command line stopped by SIGINT / SIGTERM or killed
by SIGKILL, or resumed over a damaged train state: what it prints, its exit
code, what it leaves in MODEL_DIR, and that the resumed run ends with the
uninterrupted prompt.
"""
import pathlib
import signal
import sys
import time

import numpy as np
import pytest

import commands

# One worker runs them all, so the uninterrupted run is trained once.
pytestmark = pytest.mark.xdist_group('interrupts')

STEPS = 60
PROMPT = 'encoder.prompt.prompt.prompt.npy'


def _command(model_dir, steps=STEPS):
  return [sys.executable, '-m', 'prompt_tuning.train',
          '--gin_file=embedded/prompt_tune.gin',
          f"--gin.MODEL_DIR='{model_dir}'", f'--gin.TRAIN_STEPS={steps}',
          '--gin.EVAL_MODE=None', '--gin.trainer.train.checkpoint_period=20',
          '--gin.trainer.train.log_period=10',
          '--gin.trainer.train.eval_before_training=False']


def _run(args):
  result = commands.run(args, capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _prompt(model_dir, step):
  return np.load(pathlib.Path(model_dir) / 'numpy_checkpoints' /
                 f'checkpoint_{step}' / PROMPT)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('uninterrupted')
  _run(_command(model_dir))
  return _prompt(model_dir, STEPS)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_only_note_the_first_signal_and_restore_handlers(
    signum):
  """Both signals take the same path in the train loop (end to end below
  with SIGTERM, what schedulers send): noted, not raised, exit code 128+n."""
  from prompt_tuning.training import train_state  # pylint: disable=g-import-not-at-top
  before = signal.getsignal(signum)
  with train_state.StopSignals() as stop:
    signal.raise_signal(signum)
    assert stop.signum == signum
  assert signal.getsignal(signum) is before
  assert train_state.Interrupted(7, signum).exit_code == {
      signal.SIGINT: 130, signal.SIGTERM: 143}[signum]


@pytest.mark.slow
def test_sigterm_saves_the_step_exits_and_resumes_bit_identical(
    tmp_path, uninterrupted, signum=signal.SIGTERM, exit_code=143):
  model_dir = tmp_path / 'run'
  stderr_path = tmp_path / 'stderr.txt'
  process = commands.start(_command(model_dir), stderr=str(stderr_path))
  deadline = time.time() + 300
  while (not stderr_path.exists()
         or f'step 10/{STEPS}' not in stderr_path.read_text()):
    assert process.poll() is None, stderr_path.read_text()[-3000:]
    assert time.time() < deadline
    time.sleep(0.05)
  process.send_signal(signum)
  sent = time.time()
  assert process.wait(timeout=60) == exit_code, (
      stderr_path.read_text()[-3000:])
  assert time.time() - sent < 30
  last = stderr_path.read_text().strip().splitlines()[-1]
  prefix, step = 'interrupted at step ', None
  assert last.startswith(prefix), last
  step = int(last[len(prefix):].split(';')[0])
  assert last == (f'interrupted at step {step}; saved; rerun the same '
                  'command to resume')
  assert 10 < step < STEPS
  # The train state and the prompt of that very step.
  assert (model_dir / 'train_state' / str(step)).is_dir()
  assert _prompt(model_dir, step).shape == uninterrupted.shape
  assert not (model_dir / 'numpy_checkpoints' / f'checkpoint_{STEPS}').exists()
  _run(_command(model_dir))
  np.testing.assert_array_equal(_prompt(model_dir, STEPS), uninterrupted)
  # Run again, the finished run reports itself and trains nothing.
  again = _run(_command(model_dir))
  assert f'already trained to step {STEPS}' in again.stdout
  assert 'nan' not in again.stdout


@pytest.mark.slow
def test_sigkill_then_restart_ends_with_the_uninterrupted_prompt(
    tmp_path, uninterrupted):
  model_dir = tmp_path / 'killed'
  process = commands.start(_command(model_dir))
  deadline = time.time() + 300
  while not (model_dir / 'numpy_checkpoints' / 'checkpoint_20').exists():
    assert process.poll() is None, 'the run ended before its first checkpoint'
    assert time.time() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (model_dir / 'numpy_checkpoints' / f'checkpoint_{STEPS}'
              ).exists(), 'killed too late to test resuming'
  _run(_command(model_dir))
  np.testing.assert_array_equal(_prompt(model_dir, STEPS), uninterrupted)


@pytest.mark.slow
def test_truncated_latest_train_state_is_moved_aside_and_the_one_before_used(
    tmp_path, uninterrupted):
  model_dir = tmp_path / 'run'
  _run(_command(model_dir, steps=40))
  latest = model_dir / 'train_state' / '40'
  truncated = 0
  for path in latest.rglob('*'):
    if path.is_file() and path.stat().st_size > 1:
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
      truncated += 1
  assert truncated
  result = _run(_command(model_dir))
  lines = [l for l in result.stderr.splitlines() if 'cannot be read' in l]
  assert len(lines) == 1, result.stderr[-3000:]
  assert str(latest) in lines[0] and '40.corrupt' in lines[0]
  assert 'resumed from the train state of step 20' in result.stderr
  assert (model_dir / 'train_state' / '40.corrupt').is_dir()
  np.testing.assert_array_equal(_prompt(model_dir, STEPS), uninterrupted)
