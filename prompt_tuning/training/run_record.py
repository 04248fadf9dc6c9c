"""The run record: `MODEL_DIR/run.json`, a machine-readable description of a
training run, and the checks that keep a run's pieces together.

The trainer writes the record when a run starts and updates it whenever the
steps reached or the best step change. It holds what the follow-up commands
(`eval`, `infer`, `interpret`, `method_export`, the PEFT export, `ensemble`,
`serve`) need to rebuild the run and to refuse mismatches:

  version                      the record's format (`VERSION`)
  model                        `config` (the T5Config fields), `prompt_length`,
                               `methods` (every method's hyperparameters:
                               prompt encoder, prefix, LoRA rank / alpha /
                               targets, adapters, IA3; None: prompt tuning)
  vocabulary                   its class, SentencePiece file, extra ids, size
                               and the SHA-256 of the SentencePiece model
  initial_checkpoint_path      the frozen weights (absolute), or None
  trainable_regexes            which parameters trained
  mixture_or_task_name, task_feature_lengths, batch_size, train_steps
  evaluation                   the in-loop evaluation's task, split, mode,
                               lengths, batch size, example count, labels
  command                      how to rebuild the configuration: the gin files
                               as given, the search paths (absolute, the
                               working directory of the run first) and the
                               bindings, in order (None: not configured by gin)
  step                         the steps reached
  best                         {"step", "metrics"} of the best evaluation

Mismatches are `RunMismatchError`s whose one-line message names both sides;
a missing or unreadable record is a `RunRecordError` naming its path.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from prompt_tuning.checkpoints import run_dir
from prompt_tuning.utils import files

VERSION = 1

# T5Config fields that are numerics of a computation, not the architecture:
# a follow-up command may change them (e.g. bfloat16 activations at serving).
_RUNTIME_FIELDS = ('dropout_rate', 'dtype', 'remat')


class RunRecordError(ValueError):
  """A run record that is missing, unreadable or incomplete."""


class RunMismatchError(ValueError):
  """Something paired with a run that does not belong to it."""


# ----------------------------------------------------------------------------
# Descriptions.
# ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
  """`value` as JSON types: dataclasses as dicts, tuples as lists, dtypes and
  other objects as strings."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)}
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  try:
    return str(np.dtype(value))
  except TypeError:
    return getattr(value, '__name__', None) or repr(value)


def _sha256(path: str) -> Optional[str]:
  try:
    return hashlib.sha256(files.read_bytes(path)).hexdigest()
  except (OSError, ValueError) as e:  # A vocabulary file that moved.
    logging.warning('could not hash the vocabulary file %s: %s', path, e)
    return None


def describe_vocabulary(vocabulary: Any) -> Optional[Dict[str, Any]]:
  """A vocabulary's identity: class, SentencePiece file and its SHA-256,
  extra ids, size (None for no vocabulary)."""
  if vocabulary is None:
    return None
  described = {'class': type(vocabulary).__name__}
  model_file = getattr(vocabulary, 'sentencepiece_model_file', None)
  if model_file:
    described['sentencepiece_model_file'] = os.path.abspath(model_file)
    described['sha256'] = _sha256(model_file)
  for name in ('extra_ids', 'vocab_size'):
    try:
      value = getattr(vocabulary, name, None)
    except Exception:  # pylint: disable=broad-except
      value = None  # A property that needs what is absent here.
    if value is not None:
      described[name] = int(value)
  return described


def describe_model(model: Any) -> Dict[str, Any]:
  """An `EncoderDecoderModel`'s architecture: its T5Config, prompt length
  and methods (with every hyperparameter)."""
  module = model.module
  return {'config': _jsonable(module.config),
          'prompt_length': int(getattr(module, 'prompt_length', 0) or 0),
          'methods': _jsonable(getattr(module, 'methods', None))}


def _command_record(command: Optional[Mapping[str, Any]]
                    ) -> Optional[Dict[str, Any]]:
  if command is None:
    return None
  cwd = os.getcwd()
  paths = [cwd] + [os.path.abspath(p) for p in command.get('gin_search_paths')
                   or ()]
  return {'gin_files': list(command.get('gin_files') or ()),
          'gin_search_paths': list(dict.fromkeys(paths)),
          'gin_bindings': list(command.get('gin_bindings') or ())}


def new_record(*, model: Any, initial_checkpoint_path: Optional[str],
               mixture_or_task_name: str,
               task_feature_lengths: Mapping[str, int], batch_size: int,
               train_steps: int, trainable_regexes: Sequence[str],
               evaluation: Optional[Mapping[str, Any]] = None,
               command: Optional[Mapping[str, Any]] = None
               ) -> Dict[str, Any]:
  """The record of a run starting now (step 0, no best step).

  Args:
    model: the run's `EncoderDecoderModel`.
    initial_checkpoint_path: its frozen weights (None: from scratch).
    mixture_or_task_name, task_feature_lengths, batch_size, train_steps,
      trainable_regexes: as `trainer.train` got them.
    evaluation: the in-loop evaluation's settings.
    command: {'gin_files', 'gin_search_paths', 'gin_bindings'} as given on
      the command line; None for a run not configured by gin.
  """
  return {
      'version': VERSION,
      'model': describe_model(model),
      'vocabulary': describe_vocabulary(model.input_vocabulary),
      'initial_checkpoint_path': (None if initial_checkpoint_path is None
                                  else _absolute(initial_checkpoint_path)),
      'trainable_regexes': list(trainable_regexes),
      'mixture_or_task_name': mixture_or_task_name,
      'task_feature_lengths': dict(task_feature_lengths),
      'batch_size': int(batch_size),
      'train_steps': int(train_steps),
      'evaluation': _jsonable(evaluation),
      'command': _command_record(command),
      'step': 0,
      'best': None,
  }


def _absolute(path: str) -> str:
  path = os.fspath(path)
  return path if files.is_gcs(path) else os.path.abspath(path)


# ----------------------------------------------------------------------------
# Reading and writing.
# ----------------------------------------------------------------------------


def write(model_dir: str, record: Mapping[str, Any]) -> str:
  """Writes `record` to MODEL_DIR/run.json atomically; returns the path."""
  path = run_dir.run_record_path(model_dir)
  files.atomic_write_bytes(
      path, (json.dumps(record, indent=1, sort_keys=True) + '\n').encode())
  return path


def read(model_dir: str) -> Dict[str, Any]:
  """The record of the run in `model_dir`.

  Raises:
    RunRecordError: no record (naming the path: not a run directory, or a
      run trained before records existed), or one that is not a record.
  """
  path = run_dir.run_record_path(model_dir)
  if not files.exists(path):
    what = ('is not a directory' if not files.isdir(model_dir)
            else 'holds no run record')
    raise RunRecordError(f'{model_dir} {what}: expected a training run '
                         f'directory with {path}')
  try:
    record = json.loads(files.read_bytes(path).decode())
  except (ValueError, UnicodeDecodeError) as e:
    raise RunRecordError(f'run record {path} is corrupt ({e}); expected the '
                         'JSON the trainer writes') from e
  if not isinstance(record, dict) or record.get('version') != VERSION:
    raise RunRecordError(
        f'run record {path} has version '
        f'{record.get("version") if isinstance(record, dict) else None}; '
        f'expected {VERSION}')
  missing = [k for k in ('model', 'vocabulary', 'initial_checkpoint_path',
                         'mixture_or_task_name', 'step') if k not in record]
  if missing:
    raise RunRecordError(f'run record {path} lacks {missing}')
  return record


def start(model_dir: str, record: Mapping[str, Any]) -> Dict[str, Any]:
  """Writes the record of a run that starts or resumes.

  A resumed run keeps the steps reached and the best step of its record.
  """
  record = dict(record)
  if files.exists(run_dir.run_record_path(model_dir)):
    try:
      previous = read(model_dir)
    except RunRecordError as e:
      logging.warning('%s; writing a new one', e)
    else:
      record['step'] = previous.get('step', 0)
      record['best'] = previous.get('best')
  write(model_dir, record)
  return record


def update(model_dir: str, record: Dict[str, Any], *,
           step: Optional[int] = None, best_step: Optional[int] = None,
           best_metrics: Optional[Mapping[str, Any]] = None) -> None:
  """Records the steps reached and, if given, the best step and its metrics;
  writes the record when it changed."""
  changed = False
  if step is not None and step != record.get('step'):
    record['step'] = int(step)
    changed = True
  if best_step is not None:
    best = {'step': int(best_step), 'metrics': _jsonable(best_metrics)}
    if best != record.get('best'):
      record['best'] = best
      changed = True
  if changed:
    write(model_dir, record)


def run_of_file(path: str) -> Optional[str]:
  """The run directory a file belongs to, or None: the directory it sits in
  (a best prompt) or the run above a numpy checkpoint, if it holds a record.
  """
  path = _absolute(os.fspath(path))
  directory = os.path.dirname(path)
  candidates = [directory]
  parent = os.path.dirname(directory)
  if os.path.basename(os.path.dirname(parent)) == run_dir.NUMPY_CHECKPOINTS_DIR:
    candidates.append(os.path.dirname(os.path.dirname(parent)))
  elif os.path.basename(parent) == run_dir.NUMPY_CHECKPOINTS_DIR:
    candidates.append(os.path.dirname(parent))
  for candidate in candidates:
    if files.exists(run_dir.run_record_path(candidate)):
      return candidate
  return None


def _numpy_prompt_path(model_dir: str, step: int) -> str:
  """The prompt `.npy` of the numpy checkpoint at `step`."""
  from prompt_tuning.model import prompts  # pylint: disable=g-import-not-at-top
  return os.path.join(run_dir.numpy_checkpoint_dir(model_dir, step),
                      prompts.PROMPT_PATH.replace('/', '.') + '.npy')


def _unreadable(path: str) -> Optional[str]:
  """Why the prompt file `path` cannot be used, or None if it reads."""
  from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
  try:
    prompt_files.load_prompt(path)
  except (FileNotFoundError, ValueError) as e:
    return str(e)
  return None


def best_prompt_file(model_dir: str, step: Optional[int] = None) -> str:
  """The run's prompt file: its best prompt, or that of `step` (a numpy
  checkpoint).

  A best prompt that is missing or unreadable (e.g. truncated) is reported in
  one line and replaced by the numpy checkpoint of the recorded best step,
  which holds the same prompt, when that one reads. A `step` the caller
  named is never replaced.

  Raises:
    FileNotFoundError: the file is absent (naming it and what exists).
    ValueError: the file cannot be read (naming it).
  """
  if step is None:
    path = run_dir.best_prompt_path(model_dir)
    problem = _unreadable(path)
    if problem is None:
      return path
    try:
      best_step = (read(model_dir).get('best') or {}).get('step')
    except RunRecordError:
      best_step = None
    if best_step is not None:
      fallback = _numpy_prompt_path(model_dir, best_step)
      if _unreadable(fallback) is None:
        logging.warning('%s; using the best step\'s numpy checkpoint %s',
                        problem, fallback)
        return fallback
    if not files.exists(path):
      raise FileNotFoundError(
          f'{path} does not exist: the run in {model_dir} has no evaluated '
          'prompt; pass --step=N for a saved step')
    raise ValueError(problem)
  path = _numpy_prompt_path(model_dir, step)
  if not files.exists(path):
    saved = os.path.join(model_dir, run_dir.NUMPY_CHECKPOINTS_DIR)
    steps = sorted(int(n.split('_')[-1]) for n in (
        files.listdir(saved) if files.isdir(saved) else [])
                   if n.split('_')[-1].isdigit())
    raise FileNotFoundError(f'{path} does not exist: the run in {model_dir} '
                            f'saved its prompt at steps {steps}')
  problem = _unreadable(path)
  if problem is not None:
    raise ValueError(problem)
  return path


# ----------------------------------------------------------------------------
# Checks.
# ----------------------------------------------------------------------------


def _differences(recorded: Any, given: Any, prefix: str
                 ) -> Sequence[Tuple[str, Any, Any]]:
  """(name, recorded, given) for each leaf that differs."""
  if isinstance(recorded, dict) and isinstance(given, dict):
    out = []
    for key in sorted(set(recorded) | set(given)):
      out.extend(_differences(recorded.get(key), given.get(key),
                              f'{prefix}.{key}'))
    return out
  return [] if recorded == given else [(prefix, recorded, given)]


def _describe(differences: Sequence[Tuple[str, Any, Any]]) -> str:
  return ', '.join(f'{name} {given!r} (the run: {recorded!r})'
                   for name, recorded, given in differences)


def check_model(record: Mapping[str, Any], model: Any, model_dir: str,
                what: str = 'the configured model') -> None:
  """The model's architecture, prompt length and methods are the run's.

  Raises:
    RunMismatchError: naming each differing field with both values.
  """
  given = describe_model(model)
  recorded = record['model']
  differences = list(_config_differences(record, given))
  if given['prompt_length'] != recorded['prompt_length']:
    differences.append(('prompt_length', recorded['prompt_length'],
                        given['prompt_length']))
  given_methods = _without_params_file(given['methods'])
  recorded_methods = _without_params_file(recorded['methods'])
  if given_methods != recorded_methods:
    if isinstance(given_methods, dict) and isinstance(recorded_methods, dict):
      differences.extend(_differences(recorded_methods, given_methods,
                                      'methods'))
    else:
      differences.append(('methods', recorded_methods, given_methods))
  if differences:
    raise RunMismatchError(f'{what} does not fit the run in {model_dir}: '
                           f'{_describe(differences)}')


def _config_differences(record: Mapping[str, Any], given: Mapping[str, Any]
                        ) -> Sequence[Tuple[str, Any, Any]]:
  config = {k: v for k, v in given['config'].items()
            if k not in _RUNTIME_FIELDS}
  trained = {k: v for k, v in record['model']['config'].items()
             if k not in _RUNTIME_FIELDS}
  return _differences(trained, config, 'T5Config')


def check_config(record: Mapping[str, Any], model: Any, model_dir: str,
                 what: str = 'the configured model') -> None:
  """The model's architecture (T5Config) is the run's.

  Raises:
    RunMismatchError: naming each differing field with both values.
  """
  differences = _config_differences(record, describe_model(model))
  if differences:
    raise RunMismatchError(f'{what} does not fit the run in {model_dir}: '
                           f'{_describe(differences)}')


def _without_params_file(methods: Any) -> Any:
  if isinstance(methods, dict):
    return {k: v for k, v in methods.items() if k != 'params_file'}
  return methods


def check_vocabulary(record: Mapping[str, Any], vocabulary: Any,
                     model_dir: str) -> None:
  """The vocabulary is the run's (same SentencePiece model and extra ids).

  Raises:
    RunMismatchError: naming both vocabularies.
  """
  given = describe_vocabulary(vocabulary)
  recorded = record['vocabulary']
  if given is None or recorded is None:
    return
  keys = ('class', 'extra_ids', 'vocab_size')
  same = all(given.get(k) == recorded.get(k) for k in keys)
  if given.get('sha256') and recorded.get('sha256'):
    same = same and given['sha256'] == recorded['sha256']
  else:
    same = same and (given.get('sentencepiece_model_file')
                     == recorded.get('sentencepiece_model_file'))
  if not same:
    raise RunMismatchError(
        f'vocabulary {_vocabulary_name(given)} is not the vocabulary of the '
        f'run in {model_dir}, {_vocabulary_name(recorded)}')


def _vocabulary_name(described: Mapping[str, Any]) -> str:
  return (f'{described.get("sentencepiece_model_file", described["class"])} '
          f'(extra ids {described.get("extra_ids")}, size '
          f'{described.get("vocab_size")})')


def check_checkpoint(record: Mapping[str, Any],
                     initial_checkpoint_path: Optional[str],
                     model_dir: str) -> None:
  """The frozen weights are the run's initial checkpoint.

  Raises:
    RunMismatchError: naming both checkpoints.
  """
  recorded = record['initial_checkpoint_path']
  given = (None if initial_checkpoint_path is None
           else _absolute(initial_checkpoint_path))
  if _real(recorded) != _real(given):
    raise RunMismatchError(
        f'initial checkpoint {given} is not the one the run in {model_dir} '
        f'was trained on, {recorded}')


def _real(path: Optional[str]) -> Optional[str]:
  if path is None or files.is_gcs(path):
    return path
  return os.path.realpath(path.rstrip('/'))


def check_pairing(prompt_file: str, model: Any,
                  initial_checkpoint_path: Optional[str], *,
                  model_prompt: bool = True) -> Optional[str]:
  """A prompt file that belongs to a run is used with that run's frozen
  model: its initial checkpoint, vocabulary, architecture and (with
  `model_prompt`, the model's own prompt being the file) prompt length and
  methods.

  A file outside any run directory is not checked (its shape still is, by
  the prompt initialiser).

  Returns:
    The run directory the file belongs to, or None.

  Raises:
    RunMismatchError: naming both sides of the first mismatch.
    RunRecordError: the run's record is unreadable.
  """
  model_dir = run_of_file(prompt_file)
  if model_dir is None:
    return None
  record = read(model_dir)
  check_checkpoint(record, initial_checkpoint_path, model_dir)
  check_vocabulary(record, model.input_vocabulary, model_dir)
  what = f'the model configured for prompt {prompt_file}'
  if model_prompt:
    check_model(record, model, model_dir, what=what)
  else:
    check_config(record, model, model_dir, what=what)
  return model_dir


def prompt_file_of(model: Any) -> Optional[str]:
  """The `.npy` file a model's prompt is read from (`prompts.from_file`),
  or None."""
  return getattr(getattr(model.module, 'prompt_init', None), 'prompt_file',
                 None)
