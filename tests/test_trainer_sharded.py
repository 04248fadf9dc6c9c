"""Tests of prompt_tuning.training.trainer on several devices and several processes.

* 8 forced CPU devices, one subprocess (tests/sharded_trainer_checks.py, since
  the device count must be set before jax is imported): `trainer.train` on a
  (data 4, model 2) mesh ends where the single-device run ends, for prompt
  tuning and model tuning, and parameters are laid out by the logical rules.
* Two processes on localhost (jax.distributed, CPU collectives, one CPU device
  each) running `python -m prompt_tuning.train` save the same prompt as one
  process with the same global batch.
* In-process: each process's slice of the input pipeline is its rows of the
  global batch, and the sliced pipeline's iterator checkpoints restore.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

import commands
import sharded_checks

from prompt_tuning.training import trainer
from prompt_tuning.tasks import offline

_CHECKS_SCRIPT = pathlib.Path(__file__).with_name('sharded_trainer_checks.py')
_SHARDED_CHECKS = (
    'check_param_shardings_follow_rules',
    'check_prompt_tuning_matches_single_device',
    'check_model_tuning_matches_single_device',
)
_TIMEOUT_S = 300
# One worker runs the module, so its module fixtures run once.
pytestmark = pytest.mark.xdist_group('trainer_sharded')


def _cpu_env():
  env = dict(os.environ, JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='')
  env.pop('XLA_FLAGS', None)  # One CPU device per process unless set below.
  return env


# ------------------------------------------------- 8 forced CPU devices, 1 run


@pytest.fixture(scope='module')
def sharded_results(one_process_run):
  del one_process_run  # Only started first, to run beside this subprocess.
  proc = commands.run([sys.executable, str(_CHECKS_SCRIPT)],
                      capture_output=True, text=True, env=_cpu_env(),
                      timeout=_TIMEOUT_S, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


test_sharded, test_sharded_check_list_is_complete = (
    sharded_checks.make_tests(_SHARDED_CHECKS, 'trainer_sharded'))


# ------------------------------------------ the input pipeline, one per process

_TASK = offline.task_name('topic', prefixed=False)
_LENGTHS = {'inputs': 16, 'targets': 4}


def _batches(iterator, count):
  return [{k: v.numpy() for k, v in next(iterator).items()}
          for _ in range(count)]


def test_process_slices_make_up_the_global_batch():
  whole = _batches(iter(trainer.train_dataset(_TASK, _LENGTHS, 8, seed=3)), 3)
  parts = [_batches(iter(trainer.train_dataset(
      _TASK, _LENGTHS, 8, seed=3, shard_id=i, num_shards=2)), 3)
           for i in range(2)]
  for step, batch in enumerate(whole):
    for key, value in batch.items():
      assert parts[0][step][key].shape[0] == 4
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][key], parts[1][step][key]]), value,
          err_msg=f'{key} at step {step}')
  # Not the same rows twice: the two halves differ.
  assert not np.array_equal(parts[0][0]['encoder_input_tokens'],
                            parts[1][0]['encoder_input_tokens'])


def test_sliced_pipeline_position_restores(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def fresh():
    return iter(trainer.train_dataset(_TASK, _LENGTHS, 8, seed=3, shard_id=1,
                                      num_shards=2))

  iterator = fresh()
  _batches(iterator, 2)
  prefix = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / 'data'))
  expected = _batches(iterator, 2)
  restored = fresh()
  tf.train.Checkpoint(iterator=restored).read(prefix).assert_consumed()
  for want, got in zip(expected, _batches(restored, 2)):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize('batch,shard_id,num_shards,fragment', [
    (7, 0, 2, 'BATCH_SIZE 7 does not split into 2'),
    (8, 2, 2, r'data shard 2 is not in \[0, 2\)'),
])
def test_train_dataset_rejects_bad_shards(batch, shard_id, num_shards,
                                          fragment):
  with pytest.raises(ValueError, match=fragment):
    trainer.train_dataset(_TASK, _LENGTHS, batch, seed=0, shard_id=shard_id,
                          num_shards=num_shards)


# ------------------------------------------- two processes on localhost


_STEPS = 20
_PROMPT_FILE = os.path.join('numpy_checkpoints', f'checkpoint_{_STEPS}',
                            'encoder.prompt.prompt.prompt.npy')


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class _Run:
  """The main job, shortened (20 steps at batch 32, no evaluation), in a
  subprocess whose output goes to files (a full pipe would stall it)."""

  def __init__(self, workdir, model_dir, log_name, *flags, env=None):
    self.model_dir = model_dir
    self.log = workdir / log_name
    self._out = open(self.log, 'w')  # pylint: disable=consider-using-with
    # cwd outside the checkout: its gin/ folder would shadow gin-config.
    self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-m', 'prompt_tuning.train',
         '--gin_file=embedded/prompt_tune.gin',
         f'--gin.MODEL_DIR={str(model_dir)!r}', f'--gin.TRAIN_STEPS={_STEPS}',
         '--gin.BATCH_SIZE=32', '--gin.EVAL_MODE=None', *flags],
        cwd=workdir, env=dict(_cpu_env(), **(env or {})), stdout=self._out,
        stderr=subprocess.STDOUT, text=True)

  def output(self):
    return self.log.read_text()

  def kill(self):
    if self.proc.poll() is None:
      self.proc.kill()
    self.proc.wait()
    self._out.close()


def _finish_all(runs):
  """Waits for every run (bounded); on a timeout or a failure kills them all."""
  try:
    for run in runs:
      try:
        code = run.proc.wait(timeout=_TIMEOUT_S)
      except subprocess.TimeoutExpired:
        pytest.fail(f'training timed out after {_TIMEOUT_S} s; output tail:\n'
                    f'{run.output()[-3000:]}')
      if code != 0:
        pytest.fail(f'training exited with {code}; output tail:\n'
                    f'{run.output()[-3000:]}')
  finally:
    for run in runs:
      run.kill()
  return [run.output() for run in runs]


@pytest.fixture(scope='module')
def one_process_run(tmp_path_factory):
  """The one-process reference for the two-process test, started early.

  It needs nothing from the other tests, so it runs beside the 8-device
  subprocess and the module takes less wall time on two cores. The two-process
  pair runs alone: its collectives stall while a peer waits for a core.
  """
  workdir = tmp_path_factory.mktemp('one_process')
  run = _Run(workdir, workdir / 'one', 'one.log')
  yield run
  run.kill()


def _final_loss_line(out):
  lines = [l for l in out.splitlines() if l.startswith('trained to step')]
  assert len(lines) == 1, out[-2000:]
  return lines[0]


@pytest.mark.slow
def test_two_processes_save_the_prompt_of_one(tmp_path, one_process_run):
  (single_out,) = _finish_all([one_process_run])  # Done before the pair starts.
  address = f'127.0.0.1:{_free_port()}'
  # The coordinator listens on loopback only (JAX's default is every address).
  loopback = {'JAX_COORDINATOR_BIND_ADDRESS': address}
  # Both processes share MODEL_DIR, as hosts share a bucket.
  pair = [_Run(tmp_path, tmp_path / 'two', f'process_{i}.log',
               f'--coordinator_address={address}', '--process_count=2',
               f'--process_index={i}', env=loopback) for i in range(2)]
  outs = _finish_all(pair)

  two = np.load(tmp_path / 'two' / _PROMPT_FILE)
  one = np.load(one_process_run.model_dir / _PROMPT_FILE)
  assert two.shape == one.shape == (20, 128)
  # NOTE: the gradient is summed across processes in another order than on one
  # device; 20 Adafactor steps at learning rate 0.3 grow that to ~1e-5.
  # Different examples (per-process shards of the data) differ by ~1.
  np.testing.assert_allclose(two, one, rtol=1e-4, atol=5e-5)
  # Both processes log the global loss, the single process's.
  assert _final_loss_line(outs[0]) == _final_loss_line(outs[1]) == (
      _final_loss_line(single_out))
