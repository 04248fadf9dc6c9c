"""Follow-up commands configured from a run directory (`--model_dir=RUN`).

A run's record (`training/run_record.py`, `MODEL_DIR/run.json`) keeps the gin
files, search paths and bindings it was trained with. `configure` parses them
again (the run's `MODEL_DIR` bound to the directory given), then the
command's own `--gin_file`s and `--gin.X=V` bindings, which override any part
of it (another task, split or step); `train_arguments` then gives what
`trainer.train` would get, and the `*_arguments` functions turn that into the
keyword arguments of `inference.evaluate`, `inference.infer` and the other
follow-up libraries. An override that changes the trained architecture or a
method's hyperparameters is an error (`check_arguments`).
"""
import os
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

from prompt_tuning.checkpoints import run_dir
from prompt_tuning.cli import gin_utils
from prompt_tuning.training import run_record
from prompt_tuning.utils import files

# What eval and infer take from the run besides the model.
_SHARED = ('initial_checkpoint_path', 'assignment_map', 'mesh_config', 'seed')


def define_model_dir_flag(flag_values: flags.FlagValues = flags.FLAGS, *,
                          multiple: bool = False) -> None:
  """Defines `--model_dir` (repeated with `multiple`)."""
  help_text = ('A training run directory (its run.json): the command takes '
               'the run\'s model, vocabulary, method, task and prompt from '
               'it; --gin_file and --gin.X=V override any part.')
  if multiple:
    flags.DEFINE_multi_string('model_dir', None, help_text + ' Repeat it for '
                              'several runs.', flag_values=flag_values)
  else:
    flags.DEFINE_string('model_dir', None, help_text, flag_values=flag_values)


def prepare(argv: Sequence[str],
            flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """`gin_utils.configure_from_flags` less the gin parsing, for a command
  given `--model_dir` (`configure` parses gin): INFO logging unless -v was
  given, the distributed system, the TFDS data dir.

  Raises:
    app.UsageError: positional arguments were given.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  if flag_values['verbosity'].using_default_value:
    logging.set_verbosity(logging.INFO)
  gin_utils.initialize_distributed(
      flag_values.coordinator_address, flag_values.process_count,
      flag_values.process_index, flag_values.multiprocess_gpu)
  if flag_values.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(flag_values.tfds_data_dir)


def configure(model_dir: str, gin_files: Optional[Sequence[str]] = None,
              gin_bindings: Optional[Sequence[str]] = None,
              gin_search_paths: Optional[Sequence[str]] = None,
              extra_bindings: Sequence[str] = ()) -> Dict[str, Any]:
  """Parses the run's gin configuration, then the command's (not finalized).

  Order: the run's gin files, its bindings, `MODEL_DIR = model_dir`,
  `extra_bindings`, then `gin_files` and `gin_bindings` (later ones win).

  Args:
    model_dir: the run directory.
    gin_files, gin_bindings, gin_search_paths: the command's gin flags.
    extra_bindings: the command's own bindings (e.g. the prompt to load).

  Returns:
    The run record.

  Raises:
    RunRecordError: no readable record, or a run not configured by gin.
    FileNotFoundError, ValueError: as `gin_utils.parse_gin_flags`.
  """
  record = run_record.read(model_dir)
  command = record.get('command')
  if not command or not command.get('gin_files'):
    raise run_record.RunRecordError(
        f'the run in {model_dir} was not configured by gin files (its record '
        f'{run_dir.run_record_path(model_dir)} names none); pass the '
        'configuration with --gin_file instead of --model_dir')
  search = gin_utils.gin_search_paths(list(gin_search_paths or [])
                                      + command['gin_search_paths'])
  gin.clear_config()
  gin_utils.parse_gin_flags(
      search, command['gin_files'],
      list(command['gin_bindings'])
      + [f'MODEL_DIR = {os.fspath(model_dir)!r}'] + list(extra_bindings),
      finalize_config=False)
  gin_utils.parse_gin_flags(search, gin_files, gin_bindings,
                            finalize_config=False)
  return record


def train_arguments() -> Dict[str, Any]:
  """`trainer.train`'s bound arguments, references evaluated (the model
  built), from the parsed configuration."""
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  return gin.get_bindings(trainer.train, resolve_references=True)


def check_arguments(record: Dict[str, Any], arguments: Dict[str, Any],
                    model_dir: str) -> None:
  """The configured model is the run's: architecture, prompt length, method
  hyperparameters and vocabulary.

  Raises:
    RunMismatchError: naming both sides.
  """
  model = arguments['model']
  run_record.check_model(record, model, model_dir,
                         what='the model configured by the command line')
  run_record.check_vocabulary(record, model.input_vocabulary, model_dir)


def is_prompt_run(record: Dict[str, Any]) -> bool:
  """Whether the run trained the encoder prompt alone (its best prompt is
  the whole of what it learned)."""
  from prompt_tuning.model import prompts  # pylint: disable=g-import-not-at-top
  return (record['model']['prompt_length'] > 0
          and not record['model']['methods']
          and record.get('trainable_regexes') == [prompts.PROMPT_REGEX])


def run_bindings(record: Dict[str, Any], model_dir: str,
                 step: Optional[int] = None) -> list:
  """The bindings that load what the run learned: its prompt's file for a
  prompt run (`prompt_bindings`), none for a method run (its export supplies
  the parameters, `trained_method_arguments`)."""
  return prompt_bindings(record, model_dir, step) if is_prompt_run(
      record) else []


def prompt_bindings(record: Dict[str, Any], model_dir: str,
                    step: Optional[int] = None) -> list:
  """Bindings that load the run's prompt (best, or of `step`) from its file.

  `PROMPT_FILE` stays a macro, so `--gin.PROMPT_FILE=...` still overrides it.

  Raises:
    RunRecordError: the run did not train a prompt alone.
    FileNotFoundError: the prompt file is absent.
  """
  if not is_prompt_run(record):
    raise run_record.RunRecordError(
        f'the run in {model_dir} trained {record.get("trainable_regexes")} '
        f'(methods {record["model"]["methods"]}), not a prompt alone; export '
        f'it with python -m prompt_tuning.method_export --model_dir='
        f'{model_dir} and use its serve.gin')
  path = run_record.best_prompt_file(model_dir, step)
  # One binding: the imports register what it names.
  return ['\n'.join([
      'from __gin__ import dynamic_registration',
      'from prompt_tuning.model import prompts',
      'from prompt_tuning.model import t5',
      't5.Transformer.prompt_init = @prompts.from_file()',
      'prompts.from_file.path = %PROMPT_FILE',
      f'PROMPT_FILE = {path!r}'])]


def chosen_step(record: Dict[str, Any], step: Optional[int]) -> int:
  """`step`, else the run's best step, else the steps it reached."""
  if step is not None:
    return step
  if record.get('best'):
    return int(record['best']['step'])
  return int(record.get('step') or 0)


def _bound(function) -> Dict[str, Any]:
  """A function's gin bindings, resolved; {} where gin has none."""
  try:
    return gin.get_bindings(function, resolve_references=True)
  except (ValueError, KeyError):
    return {}


def evaluate_arguments(arguments: Dict[str, Any], model_dir: str,
                       step: int) -> Dict[str, Any]:
  """`inference.evaluate`'s keyword arguments for the run's validation: its
  in-loop evaluation's task, split, mode, lengths and batch, the metrics
  written to MODEL_DIR/eval_step_STEP; `inference.evaluate` bindings of the
  command line win."""
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  result = _validation_setup(arguments)
  result.update(
      output_dir=run_dir.step_eval_dir(model_dir, step),
      mode=arguments.get('eval_mode') or 'decode',
      num_examples=arguments.get('eval_num_examples'),
      step=step)
  result.update(_bound(inference.evaluate))
  return result


def _validation_setup(arguments: Dict[str, Any]) -> Dict[str, Any]:
  """What evaluation and inference take from a run's `trainer.train`
  arguments: the model, its frozen weights, and the in-loop evaluation's
  task, lengths, split, batch, decoding and class labels."""
  return dict(
      model=arguments['model'],
      mixture_or_task_name=(arguments.get('eval_mixture_or_task_name')
                            or arguments['mixture_or_task_name']),
      feature_lengths=(arguments.get('eval_feature_lengths')
                       or arguments['task_feature_lengths']),
      split=arguments.get('eval_split', 'validation'),
      batch_size=arguments.get('eval_batch_size') or arguments['batch_size'],
      decode_kwargs=arguments.get('decode_kwargs'),
      class_labels=arguments.get('class_labels'),
      **{k: arguments[k] for k in _SHARED if k in arguments})


def infer_arguments(arguments: Dict[str, Any]) -> Dict[str, Any]:
  """The run's inference setup, `inference.infer`'s keyword arguments less
  `output_file` and `mode`: the model (with the prompt `configure` bound),
  its frozen weights, the task, lengths, split, batch, decoding and class
  labels (every input of the split, not only those validated in training);
  `inference.infer` bindings of the command line win."""
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  result = _validation_setup(arguments)
  result.update({k: v for k, v in _bound(inference.infer).items()
                 if k not in ('output_file', 'mode')})
  return result


def inference_setup(model_dir: str, gin_files: Optional[Sequence[str]] = None,
                    gin_bindings: Optional[Sequence[str]] = None,
                    gin_search_paths: Optional[Sequence[str]] = None,
                    step: Optional[int] = None) -> Dict[str, Any]:
  """Everything inference needs from a run: configures gin from it (the
  prompt of `step`, default the best) and returns `infer_arguments`.

  Raises:
    RunRecordError, RunMismatchError, FileNotFoundError, ValueError: a run
      that cannot be rebuilt, or an override that changes it.
  """
  record = run_record.read(model_dir)
  configure(model_dir, gin_files, gin_bindings, gin_search_paths,
            run_bindings(record, model_dir, step))
  arguments = train_arguments()
  check_arguments(record, arguments, model_dir)
  if not is_prompt_run(record):
    arguments = trained_method_arguments(arguments, record, model_dir, step)
  return infer_arguments(arguments)


def export_run(arguments: Dict[str, Any], output_dir: Optional[str] = None
               ) -> Any:
  """Exports a finished run from its `trainer.train` arguments (as
  `train_arguments()` gives them): the trained parameters of its last
  train state in `model_dir`, the frozen ones from its initial checkpoint.

  Raises:
    FileNotFoundError: the run has no train state.
    RunMismatchError: the run has a record, and the model's architecture or
      method hyperparameters differ from it.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from prompt_tuning.methods import export as export_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import prompts  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import setup as setup_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import train_state  # pylint: disable=g-import-not-at-top
  model_dir = arguments['model_dir']
  _, trainable = train_state.last_trainable_params(
      model_dir, f'train with these gin files first (MODEL_DIR {model_dir})')
  model = arguments['model']
  if files.exists(run_dir.run_record_path(model_dir)):
    run_record.check_model(run_record.read(model_dir), model, model_dir,
                           what='the export\'s configuration')
  regexes = list(arguments.get('trainable_regexes', (prompts.PROMPT_REGEX,)))
  setup = setup_lib.setup_model(
      model, arguments.get('initial_checkpoint_path'),
      arguments.get('assignment_map', ((prompts.PROMPT_REGEX, None),)),
      arguments.get('seed', 0))
  _, frozen = trainer.split_params(jax.device_get(setup.params), regexes)
  params = trainer.merge_params(trainable, frozen)
  return export_lib.export(model, params, regexes,
                           output_dir or run_dir.export_dir(model_dir))


def trained_method_arguments(arguments: Dict[str, Any], record: Dict[str, Any],
                             model_dir: str,
                             step: Optional[int] = None) -> Dict[str, Any]:
  """`arguments` with the model, frozen weights and assignment map that
  serve what a method run (LoRA, prefixes, adapters, ...) learned: its last
  train state, exported to MODEL_DIR/export as `method_export` does.

  Raises:
    RunRecordError: `step` is not the run's last train state (only that one
      holds the trained method for certain).
  """
  from prompt_tuning.methods import export as export_lib  # pylint: disable=g-import-not-at-top
  last = int(record.get('step') or 0)
  if step is not None and step != last:
    raise run_record.RunRecordError(
        f'the run in {model_dir} trained a method, not a prompt alone: it is '
        f'evaluated at its last train state, step {last}, not step {step}')
  exported = export_run(arguments, run_dir.export_dir(model_dir))
  return dict(
      arguments,
      model=export_lib.serving_model(arguments['model'], exported),
      initial_checkpoint_path=exported.checkpoint_path(
          arguments.get('initial_checkpoint_path')),
      assignment_map=exported.assignment_map())


def arguments_of_runs(build, argv: Sequence[str],
                      flag_values: flags.FlagValues) -> Dict[str, Any]:
  """`build(model_dirs, gin files, bindings, search paths)` for a command's
  `--model_dir` runs (`ensemble_arguments`, `serve_arguments`); a record or
  mismatch error exits with its one line."""
  prepare(argv)
  try:
    return build(flag_values.model_dir, flag_values.gin_file,
                 flag_values.gin_bindings, flag_values.gin_search_paths)
  except (ValueError, FileNotFoundError) as e:  # Records and mismatches.
    raise SystemExit(f'error: {error_line(e)}') from e


def error_line(error: BaseException) -> str:
  """An error's message without the lines gin appends to it ("In call to
  configurable ..."), so that it is one line naming the cause."""
  lines = str(error).splitlines() or [type(error).__name__]
  kept = []
  for line in lines:
    if line.strip().startswith('In call to configurable'):
      break
    kept.append(line)
  return '\n'.join(kept)


def ensemble_arguments(model_dirs: Sequence[str],
                       gin_files: Optional[Sequence[str]] = None,
                       gin_bindings: Optional[Sequence[str]] = None,
                       gin_search_paths: Optional[Sequence[str]] = None
                       ) -> Dict[str, Any]:
  """`evaluate_ensemble`'s keyword arguments for runs of one model and task:
  the first run's configuration (`evaluate_arguments`), every run's best
  prompt, no output directory (`--gin.ENSEMBLE_OUTPUT_DIR` sets one).

  Raises:
    RunRecordError, RunMismatchError: a run that cannot be rebuilt, or one
      whose model (checkpoint, vocabulary, architecture) is not the first's.
  """
  first = model_dirs[0]
  record = run_record.read(first)
  configure(first, gin_files, gin_bindings, gin_search_paths,
            prompt_bindings(record, first))
  arguments = train_arguments()
  check_arguments(record, arguments, first)
  result = evaluate_arguments(arguments, first, chosen_step(record, None))
  del result['step']
  try:
    result['output_dir'] = gin.query_parameter('%ENSEMBLE_OUTPUT_DIR')
  except ValueError:
    result['output_dir'] = None
  result['prompt_files'] = [run_record.best_prompt_file(d)
                            for d in model_dirs]
  for path in result['prompt_files']:
    run_record.check_pairing(path, result['model'],
                             result['initial_checkpoint_path'])
  return result


def serve_arguments(model_dirs: Sequence[str],
                    gin_files: Optional[Sequence[str]] = None,
                    gin_bindings: Optional[Sequence[str]] = None,
                    gin_search_paths: Optional[Sequence[str]] = None
                    ) -> Dict[str, Any]:
  """`inference.serve`'s keyword arguments less `output_file` for runs of
  one frozen model on different tasks: the first run's model and settings,
  {each run's task: its best prompt}.

  Raises:
    RunRecordError, RunMismatchError: as `ensemble_arguments`; two runs of
      one task.
  """
  result = ensemble_arguments(model_dirs, gin_files, gin_bindings,
                              gin_search_paths)
  prompt_files = {}
  for model_dir, path in zip(model_dirs, result.pop('prompt_files')):
    task = run_record.read(model_dir)['mixture_or_task_name']
    if task in prompt_files:
      raise run_record.RunMismatchError(
          f'the runs in {model_dir} and {os.path.dirname(prompt_files[task])} '
          f'both trained {task}; serving takes one prompt per task')
    prompt_files[task] = path
  return dict(model=result['model'],
              initial_checkpoint_path=result['initial_checkpoint_path'],
              prompt_files=prompt_files,
              feature_lengths=result['feature_lengths'],
              split=result['split'], batch_size=result['batch_size'],
              decode_kwargs=result['decode_kwargs'],
              **{k: result[k] for k in _SHARED[1:] if k in result})
