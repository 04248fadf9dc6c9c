"""What the train loop keeps on disk and how it stops: the train state (orbax,
the last two kept, an unreadable latest one moved aside), the `.npy` files of
the trainable parameters, and the stop request of SIGINT / SIGTERM.
"""
import contextlib
import os
import shutil
import signal
import sys
import threading
from typing import Any, Optional, Tuple

from absl import logging
import jax
import numpy as np

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.checkpoints import run_dir
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

PyTree = Any


def save_numpy_params(params: PyTree, model_dir: str, step: int) -> None:
  """Each trainable parameter as `.npy`, named by its '.'-joined path (the
  paper code's layout), e.g. `encoder.prompt.prompt.prompt.npy`."""
  directory = run_dir.numpy_checkpoint_dir(model_dir, step)
  os.makedirs(directory, exist_ok=True)
  for name, value in trees.flatten(params).items():
    prompt_files.save_prompt(np.asarray(value), os.path.join(
        directory, name.replace('/', '.') + '.npy'))


def load_numpy_params(directory: str) -> PyTree:
  """The parameters `save_numpy_params` wrote to `directory` (a run's
  `numpy_checkpoints/checkpoint_STEP`), as nested dicts.

  Raises:
    FileNotFoundError: `directory` holds no `.npy` file.
  """
  names = (sorted(n for n in files.listdir(directory) if n.endswith('.npy'))
           if files.isdir(directory) else [])
  if not names:
    raise FileNotFoundError(f'{directory} holds no .npy parameter files')
  return trees.unflatten({
      name[:-len('.npy')].replace('.', '/'): prompt_files.load_npy(
          os.path.join(directory, name), 'parameter file')
      for name in names})


@contextlib.contextmanager
def _quiet_logging():
  """orbax logs several INFO lines per save; keep the progress output readable."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def _one_line(error: BaseException) -> str:
  """An exception as one line: its type and the first line of its message."""
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0] if text else ""}'


class TrainStateCheckpointer:
  """Train state through orbax (atomic, keeps the last `keep`) plus the input
  pipeline's position (a tf.data iterator checkpoint per process).

  `restore_latest` reads the newest state; one that cannot be read (a
  truncated file, a half-deleted directory) is reported in one line, moved
  aside to `run_dir.corrupt_train_state_dir` and the one before it is read
  instead, so keep at least two.
  """

  def __init__(self, model_dir: str, keep: int):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self._model_dir = model_dir
    self._dir = run_dir.train_state_dir(model_dir)
    with _quiet_logging():
      self._manager = ocp.CheckpointManager(
          self._dir, options=ocp.CheckpointManagerOptions(
              max_to_keep=keep, create=True,
              enable_async_checkpointing=False))

  def _data_dir(self, step: int) -> str:
    return os.path.join(self._dir, 'data', f'step_{step}')

  def _data_prefix(self, step: int) -> str:
    return os.path.join(self._data_dir(step),
                        f'process_{jax.process_index()}')

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: PyTree, data_checkpoint) -> None:
    # Data position first: a train state is only ever restored with its own.
    data_checkpoint.write(self._data_prefix(step))
    with _quiet_logging():
      self._manager.save(step, args=self._ocp.args.StandardSave(state))
      self._manager.wait_until_finished()
    kept = set(self._manager.all_steps())
    data_root = os.path.join(self._dir, 'data')
    for name in os.listdir(data_root):
      if int(name.split('_')[1]) not in kept:
        shutil.rmtree(os.path.join(data_root, name), ignore_errors=True)

  def restore(self, step: int, abstract_state: PyTree, data_checkpoint
              ) -> PyTree:
    with _quiet_logging():
      state = self._manager.restore(
          step, args=self._ocp.args.StandardRestore(abstract_state))
    data_checkpoint.read(self._data_prefix(step)).assert_consumed()
    return state

  def restore_latest(self, abstract_state: PyTree, data_checkpoint
                     ) -> Optional[PyTree]:
    """The newest readable train state (None: there is none).

    Raises:
      ValueError: no kept state can be read; naming the newest and its error
        (nothing is moved aside then: the cause is likelier the run's
        configuration than every state being damaged).
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    errors = []
    for step in steps:
      try:
        state = self.restore(step, abstract_state, data_checkpoint)
      except Exception as e:  # pylint: disable=broad-except
        # orbax and TensorStore raise many types for a damaged file.
        errors.append((step, e))
        continue
      for bad_step, error in errors:
        self._move_aside(bad_step, error)
      if errors:
        self._manager.reload()
      return state
    if errors:
      step, error = errors[0]
      raise ValueError(
          f'the train state {os.path.join(self._dir, str(step))} cannot be '
          f'read ({_one_line(error)}), nor any older one; delete '
          f'{self._dir} to train from the start') from error
    return None

  def _move_aside(self, step: int, error: BaseException) -> None:
    path = os.path.join(self._dir, str(step))
    aside = run_dir.corrupt_train_state_dir(self._model_dir, step)
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(path, aside)
    if os.path.isdir(self._data_dir(step)):
      os.rename(self._data_dir(step), os.path.join(aside, 'data'))
    logging.warning('the train state %s cannot be read (%s); moved it to %s '
                    'and resumed from the one before', path, _one_line(error),
                    aside)

  def close(self):
    self._manager.close()


def last_trainable_params(model_dir: str, hint: str = ''
                          ) -> Tuple[int, PyTree]:
  """The trainable parameters of a run's last saved train state, read
  without its abstract structure: (step, tree).

  Raises:
    FileNotFoundError: the run has no train state (`hint` says what to do).
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  state_dir = run_dir.train_state_dir(model_dir)
  steps = sorted(int(n) for n in (os.listdir(state_dir)
                                  if os.path.isdir(state_dir) else [])
                 if n.isdigit())
  if not steps:
    raise FileNotFoundError(
        f'no train state under {state_dir}; ' +
        (hint or f'the run in {model_dir} has not saved one'))
  with _quiet_logging():
    restored = ocp.StandardCheckpointer().restore(
        os.path.join(state_dir, str(steps[-1]), 'default'))
  return steps[-1], restored['trainable']


# ----------------------------------------------------------------------------
# Stopping on SIGINT / SIGTERM.
# ----------------------------------------------------------------------------


class Interrupted(Exception):
  """Training stopped on a signal after saving its state; `exit_code` is the
  shell's convention for that signal (130 SIGINT, 143 SIGTERM)."""

  def __init__(self, step: int, signum: int):
    # gin appends its call site to str(error); this stays one line.
    self.message = (f'interrupted at step {step}; saved; rerun the same '
                    'command to resume')
    super().__init__(self.message)
    self.step = step
    self.exit_code = 128 + signum


class StopSignals:
  """While active, the first SIGINT or SIGTERM only sets `signum`: the loop
  finishes its step, saves and stops. A second one exits at once.

  Without it, SIGINT raises KeyboardInterrupt wherever the main thread is
  (inside tf.data, a jit dispatch or an orbax save), skipping every close();
  SIGTERM kills without saving. Handlers are installed in the main thread
  only (Python allows no other) and restored on exit.
  """

  _SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum: Optional[int] = None
    self._previous: Tuple[Any, ...] = ()

  def _handle(self, signum, unused_frame):
    if self.signum is not None:
      sys.stderr.write(f'{signal.Signals(signum).name} again: exiting now '
                       'without saving\n')
      sys.stderr.flush()
      # Not sys.exit: it would wait for the work the first signal let finish.
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum
    logging.warning('%s: stopping after this step to save (a second one '
                    'exits at once)', signal.Signals(signum).name)

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is threading.main_thread():
      self._previous = tuple((s, signal.signal(s, self._handle))
                             for s in self._SIGNALS)
    return self

  def __exit__(self, *unused_exc_info) -> None:
    for signum, handler in self._previous:
      # None: a handler not installed from Python; the default is closest.
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    self._previous = ()
