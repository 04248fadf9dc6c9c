"""Checks training configs as `python -m prompt_tuning.train` would parse
them, and estimates their memory per device, with no hardware.

A config (`DryRunConfig`) is the train command's gin flags plus a target
mesh; `check_config` parses it (gin, finalized), reads the arguments
`trainer.train` would get, checks the task, the mesh and the prompt
initialiser, and estimates the memory (`memory.estimate_memory`) on an
abstract mesh. `run_configs` checks many in one process, sharing what they
have in common.
"""
# Annotations stay strings: the library they name loads only when a config
# is checked, so that the dry run's --help answers at once.
from __future__ import annotations

import copy
import dataclasses
import inspect
import shlex
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import flags
from absl import logging
import gin

from prompt_tuning.cli import gin_utils

PyTree = Any


# ----------------------------------------------------------------------------
# Configs to check.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DryRunConfig:
  """One training config and the mesh to check it on.

  Attributes:
    name: a label for the table (default: the config's MODEL_DIR).
    gin_files: `--gin_file` values, in order.
    gin_bindings: `--gin_bindings` values (and rewritten `--gin.X=V`).
    gin_search_paths: `--gin_search_paths` (the package gin dir is added).
    mesh: {'data': D, 'model': M} from `--mesh`, or None.
    num_devices: `--num_devices`, or None (one data shard).
    num_partitions: `--num_partitions`, or None (the config's MeshConfig).
    device_memory_gib: memory of one device, to flag estimates above it.
  """
  name: Optional[str] = None
  gin_files: Tuple[str, ...] = ()
  gin_bindings: Tuple[str, ...] = ()
  gin_search_paths: Tuple[str, ...] = ('.',)
  mesh: Optional[Tuple[Tuple[str, int], ...]] = None
  num_devices: Optional[int] = None
  num_partitions: Optional[int] = None
  device_memory_gib: Optional[float] = None


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The train flags (`gin_utils.define_flags`) plus the dry run's own."""
  gin_utils.define_flags(flag_values)
  flags.DEFINE_string(
      'mesh', None, 'Target mesh, e.g. data:16,model:4 (overrides '
      '--num_devices and --num_partitions).', flag_values=flag_values)
  flags.DEFINE_integer(
      'num_devices', None, 'Target number of devices; the data axis is '
      'num_devices / model axis. Default: the model axis size.',
      flag_values=flag_values)
  flags.DEFINE_integer(
      'num_partitions', None, "Target model axis size. Default: the config's "
      'partitioning.MeshConfig (NUM_PARTITIONS).', flag_values=flag_values)
  flags.DEFINE_float(
      'device_memory_gib', None, 'Memory of one device in GiB; estimates '
      'above it are marked.', flag_values=flag_values)
  flags.DEFINE_string('name', None, 'Label of the config in the table.',
                      flag_values=flag_values)


def parse_mesh(spec: str) -> Tuple[Tuple[str, int], ...]:
  """'data:16,model:4' -> (('data', 16), ('model', 4)).

  Raises:
    ValueError: naming `--mesh` and the spec, if it is not comma-separated
      `axis:size` pairs with positive sizes and distinct names.
  """
  axes = []
  for part in spec.split(','):
    name, sep, size = part.strip().partition(':')
    if not sep or not name or not size.strip().isdigit() or int(size) < 1:
      raise ValueError(f'--mesh={spec!r}: expected comma-separated axis:size '
                       'pairs with positive sizes, e.g. data:16,model:4.')
    axes.append((name.strip(), int(size)))
  if len({n for n, _ in axes}) != len(axes):
    raise ValueError(f'--mesh={spec!r} names an axis twice.')
  return tuple(axes)


def config_from_flags(flag_values: flags.FlagValues) -> DryRunConfig:
  """A `DryRunConfig` from parsed flags (see `define_flags`)."""
  return DryRunConfig(
      name=flag_values.name,
      gin_files=tuple(flag_values.gin_file or ()),
      gin_bindings=tuple(flag_values.gin_bindings or ()),
      gin_search_paths=tuple(flag_values.gin_search_paths or ()),
      mesh=parse_mesh(flag_values.mesh) if flag_values.mesh else None,
      num_devices=flag_values.num_devices,
      num_partitions=flag_values.num_partitions,
      device_memory_gib=flag_values.device_memory_gib)


def config_from_args(args: Sequence[str]) -> DryRunConfig:
  """A `DryRunConfig` from command-line words (no program name).

  Raises:
    ValueError: for an unknown flag or a malformed value, quoting the words.
  """
  try:
    rest, flag_values = gin_utils.parse_args(define_flags, args, 'dry_run')
  except flags.Error as e:
    raise ValueError(f'Bad dry-run arguments {shlex.join(args)!r}: {e}') from e
  if len(rest) > 1:
    raise ValueError(f'Unexpected positional arguments {rest[1:]} in '
                     f'{shlex.join(args)!r}.')
  return config_from_flags(flag_values)


def read_sweep(path: str) -> List[DryRunConfig]:
  """The configs of a sweep file (one shell-quoted argument list a line).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a line does not parse; the message names the file and line.
  """
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except FileNotFoundError as e:
    raise FileNotFoundError(f'--sweep={path}: no such file') from e
  configs = []
  for number, line in enumerate(lines, 1):
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    try:
      configs.append(config_from_args(shlex.split(line)))
    except ValueError as e:
      raise ValueError(f'--sweep={path} line {number}: {e}') from e
  return configs


# ----------------------------------------------------------------------------
# What training would be called with.
# ----------------------------------------------------------------------------


def parse_config(config: DryRunConfig) -> None:
  """Parses the config's gin files and bindings as `train` does (finalized).

  Clears any previous gin config first, so configs of a sweep do not mix.
  """
  # Registers the configurables the training configs bind.
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top,unused-import
  gin.clear_config()
  gin_utils.parse_gin_flags(
      gin_utils.gin_search_paths(config.gin_search_paths), config.gin_files,
      config.gin_bindings)


def train_arguments() -> Dict[str, Any]:
  """The keyword arguments the parsed config would pass to `trainer.train`.

  Bound values with their references evaluated (the model, optimizer and mesh
  config are built; building them reads no file), the signature's defaults
  for the rest.

  Raises:
    ValueError: `trainer.train` has no `model` binding (e.g. a config for
      eval or infer).
  """
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  arguments = {
      name: p.default
      for name, p in inspect.signature(trainer.train).parameters.items()
      if p.default is not inspect.Parameter.empty
  }
  arguments.update(gin.get_bindings(trainer.train, resolve_references=True))
  if 'model' not in arguments:
    raise ValueError('The config binds no trainer.train.model: is it a '
                     'training config (runs/prompt_finetune.gin, '
                     'runs/finetune.gin)?')
  return arguments


def check_task(name: str) -> None:
  """Raises ValueError (with close names) if `name` is not registered."""
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  task_utils.get_mixture_or_task(name)


def target_mesh(config: DryRunConfig, mesh_config: partitioning.MeshConfig
                ) -> jax.sharding.AbstractMesh:
  """The abstract ('data', 'model') mesh to check on (no devices needed).

  Raises:
    ValueError: `--num_devices` is not a multiple of the model axis, or
      `--mesh` does not name exactly the config's data and model axes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  data_axis, model_axis = mesh_config.data_axis, mesh_config.model_axis
  if config.mesh is not None:
    sizes = dict(config.mesh)
    if set(sizes) != {data_axis, model_axis}:
      raise ValueError(
          f'--mesh names axes {sorted(sizes)}; the config uses '
          f'{[data_axis, model_axis]} (partitioning.MeshConfig).')
    data, model = sizes[data_axis], sizes[model_axis]
  else:
    model = config.num_partitions or mesh_config.model_size
    devices = config.num_devices or model
    if devices % model:
      raise ValueError(
          f'--num_devices={devices} is not divisible by the model axis size '
          f'{model}; expected a multiple of it.')
    data = devices // model
  if model != mesh_config.model_size:
    logging.warning(
        'Target model axis %d differs from the config\'s MeshConfig '
        '(model size %d); a real run would use the latter.', model,
        mesh_config.model_size)
  return jax.sharding.AbstractMesh((data, model), (data_axis, model_axis))


# ----------------------------------------------------------------------------
# One config, a sweep.
# ----------------------------------------------------------------------------


def check_config(config: DryRunConfig,
                 cache: Optional[Dict[Any, PyTree]] = None
                 ) -> memory.MemoryEstimate:
  """Parses one config as `train` would and estimates its memory.

  Raises:
    ValueError, FileNotFoundError: what is wrong with the config (gin files,
      bindings, task name, mesh, batch, regexes), naming it.
  """
  from prompt_tuning.training import memory  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import partitioning  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  parse_config(config)
  arguments = train_arguments()
  check_task(arguments['mixture_or_task_name'])
  if arguments.get('eval_mixture_or_task_name'):
    check_task(arguments['eval_mixture_or_task_name'])
  model = arguments['model']
  mesh_config = arguments['mesh_config']
  mesh = target_mesh(config, mesh_config)
  rules = arguments.get('logical_axis_rules') or (
      partitioning.standard_logical_axis_rules(
          mesh_config.model_size, data_axis=mesh_config.data_axis,
          model_axis=mesh_config.model_axis))
  _check_class_labels(model.module)
  name = config.name or str(arguments.get('model_dir'))
  # Configs that differ only in what cannot change the estimate (task,
  # seed, run directory) share it: one estimate per distinct setting.
  optimizer_key = _optimizer_key()
  key = None if cache is None or optimizer_key is None else (
      'estimate', _module_key(model.module), repr(mesh), repr(rules),
      tuple(arguments['trainable_regexes']), optimizer_key,
      int(arguments['batch_size']),
      repr(sorted(arguments['task_feature_lengths'].items())),
      config.device_memory_gib)
  if key is not None and key in cache:
    return dataclasses.replace(cache[key], name=name)
  boxed = memory.abstract_params(model, cache,
                                 seed=int(arguments.get('seed', 0)))
  optimizer = arguments.get('optimizer') or trainer.adafactor()
  if key is not None:
    optimizer = _MemoizedInit(optimizer, cache, (
        'optimizer', optimizer_key, _module_key(model.module),
        tuple(arguments['trainable_regexes'])))
  estimate = memory.estimate_memory(
      model, boxed, mesh, rules, arguments['trainable_regexes'], optimizer,
      int(arguments['batch_size']), arguments['task_feature_lengths'],
      name=name, device_memory_gib=config.device_memory_gib,
      data_axis=mesh_config.data_axis, model_axis=mesh_config.model_axis)
  if key is not None:
    cache[key] = estimate
  return estimate


@dataclasses.dataclass(frozen=True)
class _MemoizedInit:
  """An optimizer whose `init` shapes are looked up in `cache` under `key`
  (the state's shapes depend only on the optimizer and the parameters')."""
  optimizer: Any
  cache: Dict[Any, Any]
  key: Any

  def init(self, params):
    if self.key not in self.cache:
      self.cache[self.key] = self.optimizer.init(params)
    return self.cache[self.key]


def _module_key(module: Any) -> Any:
  config = getattr(module, 'config', None)
  if config is not None and hasattr(module, 'prompt_length'):
    return (type(module).__name__, config, module.prompt_length)
  return repr(module)


def _optimizer_key() -> Optional[Tuple[Any, ...]]:
  """Identifies the configured optimizer by its gin selector and bound
  values (state shapes depend on nothing else); None if that cannot be told
  (e.g. it is bound through a macro), which disables sharing estimates."""
  try:
    reference = gin.query_parameter('trainer.train.optimizer')
  except ValueError:
    return ('default',)
  if not isinstance(reference, gin.config.ConfigurableReference) or (
      reference.selector == 'gin.macro'):
    return None
  try:
    bindings = gin.get_bindings(reference.scoped_selector)
  except ValueError:
    return None
  return (reference.scoped_selector, repr(sorted(bindings.items())))


def _check_class_labels(module: Any) -> None:
  """The one check of the prompt initialiser that needs no file: with
  class-label initialisation, every label needs a prompt position."""
  init = getattr(module, 'prompt_init', None)
  if not getattr(init, '__qualname__', '').startswith('from_class_labels.'):
    return
  try:
    labels = copy.deepcopy(
        gin.query_parameter('prompts.from_class_labels.class_labels'))
  except ValueError:  # Bound in a scope, or not through gin: not checked.
    return
  if not labels:
    raise ValueError(
        'prompts/from_class_labels.gin needs CLASS_LABELS (the task\'s label '
        f'strings), got {labels!r}: set --gin.CLASS_LABELS=[...] '
        '(runs/prompt_finetune.gin sets None).')
  if len(labels) > module.prompt_length:
    raise ValueError(
        f'prompts/from_class_labels.gin: {len(labels)} CLASS_LABELS '
        f'{list(labels)} do not fit PROMPT_LENGTH={module.prompt_length}; '
        'expected at most one label per prompt position.')


def run_configs(configs: Sequence[DryRunConfig]
                ) -> Tuple[List[memory.MemoryEstimate],
                           List[Tuple[str, str]]]:
  """Checks every config in this process; returns (estimates, failures).

  A failure is (config label, error message); the other configs still run.
  """
  cache = {}
  estimates, failures = [], []
  for index, config in enumerate(configs):
    label = config.name or f'config {index + 1}'
    try:
      estimates.append(check_config(config, cache))
    except Exception as e:  # pylint: disable=broad-except
      # Whatever a config gets wrong, report it and check the others.
      failures.append((label, f'{type(e).__name__}: {e}'))
  gin.clear_config()
  return estimates, failures
