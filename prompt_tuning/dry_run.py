r"""Checks training configs and estimates memory per device, with no hardware.

    python -m prompt_tuning.dry_run \
      --gin_file=models/t5_1_1_xxl_prompt.gin \
      --gin_file=prompts/from_class_labels.gin \
      --gin_file=runs/prompt_finetune.gin \
      --gin_file=models/pretrained/t5_1_1_lm100k_xxl.gin \
      --gin.MODEL_DIR="'/tmp/rte'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.CLASS_LABELS="['entailment', 'not_entailment']" \
      --gin.NUM_PARTITIONS=8 --num_devices=32     # or --mesh=data:4,model:8

    python -m prompt_tuning.dry_run --sweep=configs.txt   # one config a line

Takes exactly the flags of `python -m prompt_tuning.train` (t5x's gin flags,
`--gin.NAME=VALUE`, the package `gin/` always searched) plus the target mesh.
For each config it does what training does before it touches data or
weights, and stops there:

  1. parses the gin files and overrides as `train` does
     (`gin_utils.parse_gin_flags`, same search paths, finalized: a
     `%gin.REQUIRED` macro left unset is an error);
  2. reads the arguments `trainer.train` would be called with (references
     evaluated, so the model, optimizer and mesh config are built) and checks
     the task or mixture is registered and the batch splits over the data axis;
  3. builds the parameter shapes with `jax.eval_shape(model.init)` (the prompt
     initialiser swapped for a shape-only one, so no checkpoint or vocabulary
     is read), splits them with `trainer.split_params` and the configured
     trainable regexes, and lays them out with the configured logical axis
     rules on a `jax.sharding.AbstractMesh` of the target shape;
  4. estimates the memory per device (`estimate_memory`).

It prints one table row per distinct estimate and exits non-zero if any config
failed, naming it and the reason. One process handles a whole sweep: after the
first config, a config costs a gin parse (tens of milliseconds) and, for a
setting not seen yet, the shapes and the estimate (a model of a new size is
traced once at full depth; another prompt length of it, at one layer).

Target mesh: `--mesh=data:D,model:M`, or `--num_devices=N` with the model axis
from `--num_partitions` or, by default, the config's
`partitioning.MeshConfig` (`NUM_PARTITIONS`), as a real run would use.

A sweep file holds one config per line: the same flags, shell-quoted (bash:
`printf '%q ' "${args[@]}"`), plus optionally `--name=LABEL`; blank lines
and lines starting with '#' are skipped.
"""
import copy
import dataclasses
import inspect
import logging as std_logging
import math
import re
import shlex
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import flax
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.cli import gin_utils
from prompt_tuning.training import partitioning
from prompt_tuning.training import trainer

PyTree = Any
GIB = 2**30
_PROMPT_PREFIX = 'encoder/prompt/'

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
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  try:
    rest = flag_values(['dry_run'] + gin_utils.rewrite_gin_args(list(args)))
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
# Shapes.
# ----------------------------------------------------------------------------


def _shape_only_init(rng, shape, dtype=jnp.float32):
  del rng
  return jnp.zeros(shape, dtype)


def _without_file_reads(module: Any) -> Any:
  """The module with a shape-only prompt initialiser (the configured one may
  read a checkpoint's embedding or a vocabulary when called)."""
  if hasattr(module, 'prompt_init'):
    return module.clone(prompt_init=_shape_only_init)
  return module


def _flat(tree: PyTree) -> Dict[str, Any]:
  return flax.traverse_util.flatten_dict(
      flax.core.unfreeze(tree), sep='/',
      is_leaf=lambda _, x: isinstance(x, flax.core.meta.AxisMetadata))


def _unflat(flat: Mapping[str, Any]) -> Dict[str, Any]:
  return flax.traverse_util.unflatten_dict(dict(flat), sep='/')


def _eval_shape_init(model: Any, module: Any, seed: int) -> PyTree:
  """`jax.eval_shape(model.init)` with `module` in place of the model's, and
  the init key `trainer.setup_model` uses."""
  rng = jax.random.split(jax.random.PRNGKey(seed))[0]
  return jax.eval_shape(dataclasses.replace(model, module=module).init, rng)


def abstract_params(model: Any, cache: Optional[Dict[Any, PyTree]] = None,
                    seed: int = 0) -> PyTree:
  """Boxed parameter shapes of `model` (`jax.eval_shape(model.init)`).

  Reads no file: the prompt initialiser is replaced by a shape-only one.

  With a `cache` (a dict the caller owns, e.g. for one sweep), a
  `t5.Transformer` of a config seen before with another prompt length is not
  traced again at full depth: its tree is the cached one with the leaves that
  depend on the prompt length taken from a one-layer model of the same width,
  which is exact as long as no such leaf sits in a layer (checked; otherwise
  the full model is traced).

  Args:
    model: an `EncoderDecoderModel` (its `module` is traced).
    cache: memo of traced trees, keyed by module configuration.
    seed: the init seed (shapes do not depend on it).

  Returns:
    The tree of `nn.LogicallyPartitioned` boxes around `ShapeDtypeStruct`s.
  """
  module = _without_file_reads(model.module)
  if cache is None:
    return _eval_shape_init(model, module, seed)
  config = getattr(module, 'config', None)
  length = getattr(module, 'prompt_length', None)
  if config is None or length is None:
    key = ('module', repr(module))
    if key not in cache:
      cache[key] = _eval_shape_init(model, module, seed)
    return cache[key]
  kind = (type(model).__name__, type(module).__name__)
  full_key = ('full', kind, config, length)
  if full_key in cache:
    return cache[full_key]
  base = next((k for k in cache
               if k[0] == 'full' and k[1] == kind and k[2] == config), None)
  if base is None:
    cache[full_key] = _eval_shape_init(model, module, seed)
    return cache[full_key]
  shallow_config = dataclasses.replace(config, num_encoder_layers=1,
                                       num_decoder_layers=1)

  def shallow(prompt_length):
    key = ('shallow', kind, shallow_config, prompt_length)
    if key not in cache:
      cache[key] = _flat(_eval_shape_init(model, module.clone(
          config=shallow_config, prompt_length=prompt_length), seed))
    return cache[key]

  old, new = shallow(base[3]), shallow(length)
  changed = {n for n in set(old) | set(new)
             if n not in old or n not in new or
             _leaf_signature(old[n]) != _leaf_signature(new[n])}
  if any(re.search(r'(^|/)layers_\d+/', n) for n in changed):
    cache[full_key] = _eval_shape_init(model, module, seed)
    return cache[full_key]
  flat = {n: v for n, v in _flat(cache[base]).items() if n not in changed}
  flat.update({n: new[n] for n in changed if n in new})
  cache[full_key] = _unflat(flat)
  return cache[full_key]


def _leaf_signature(leaf: Any) -> Tuple[Any, ...]:
  value = leaf.value if hasattr(leaf, 'value') else leaf
  names = getattr(leaf, 'names', None)
  return (tuple(value.shape), str(value.dtype), names)


# ----------------------------------------------------------------------------
# Memory.
# ----------------------------------------------------------------------------


def per_device_bytes(tree: PyTree, shardings: Optional[PyTree] = None) -> int:
  """Bytes one device holds of `tree` (replicated where `shardings` is None).

  Args:
    tree: arrays or `ShapeDtypeStruct`s.
    shardings: a matching tree of `NamedSharding`s (abstract meshes are fine).
  """
  leaves = jax.tree_util.tree_leaves(tree)
  if shardings is None:
    shapes = [x.shape for x in leaves]
  else:
    shard_leaves = jax.tree_util.tree_leaves(shardings)
    assert len(shard_leaves) == len(leaves), (len(shard_leaves), len(leaves))
    shapes = [s.shard_shape(x.shape) for x, s in zip(leaves, shard_leaves)]
  return sum(math.prod(shape) * np.dtype(x.dtype).itemsize
             for shape, x in zip(shapes, leaves))


def activation_bytes(config: Any, *, batch: int, input_length: int,
                     target_length: int, prompt_length: int,
                     model_shards: int = 1, embed_shards: int = 1) -> int:
  """Activations one device keeps for the backward pass of one train step.

  An estimate, not a measurement: what the forward pass of a T5 1.1 stores
  for the backward pass without rematerialisation, counted tensor by tensor,
  for the examples of one data shard; XLA's temporary buffers and fusion are
  not modelled. The backward pass needs all of it in prompt tuning too: the
  gradient reaches the prompt through every layer.

  With B = `batch` (examples per data shard), T = input + prompt length
  (encoder), U = target length, H = d_model, I = heads x head_dim, F = MLP
  width, V = vocabulary, N = heads, a = bytes per activation (the config's
  dtype), f = 4 (float32), m = `model_shards` (heads, MLP and vocabulary are
  split over the model axis), e = `embed_shards` (1 with the standard rules,
  which keep [B, *, H] activations whole on every device of the model axis;
  m with activation_partitioning_dims=2):

    embeddings                   B (T + U) H a / e
    each encoder layer           B T (4 H a / e + (4 I + 4 F) a / m)
                                 + B N T T (f + a) / m
    each decoder layer           B U (6 H a / e + (6 I + 4 F) a / m)
                                 + B T 2 I a / m
                                 + B N U (U + T) (f + a) / m
    output logits                2 B U V f / m
    with dropout (the config's dropout_rate > 0, as in training), also
      each attention             B N Tq Tk (a + 1) / m
      each MLP                   B Tq F a / m

  The terms: per sublayer its input and layer-norm output (H); q, k, v and
  the attention output (I; cross-attention keeps q and its output over U and
  k, v over the encoder's T); wi_0, wi_1, the activation and the gated
  product (F); attention logits (float32) and probabilities; the float32
  logits and their log-softmax; with dropout, the dropped attention
  probabilities with their 1-byte mask and the dropped MLP hidden units
  (the masks shared along the length are negligible).

  NOTE: checked against XLA's own count for `trainer.train_step` compiled
  for CPU (`memory_analysis().temp_size_in_bytes`), float32, 4 examples of
  512 inputs and 8 targets: T5 1.1 Small prompt tuning (100 tokens) 1.18 GiB
  here without dropout and 1.60 GiB with it, against XLA's 1.37 and 1.65;
  Base model tuning with dropout 3.54 GiB, plus 0.92 GiB of gradients,
  against XLA's 4.60 GiB.

  Args:
    config: a `t5.T5Config`.
    batch: examples per data shard.
    input_length: encoder input tokens (without the prompt).
    target_length: decoder tokens.
    prompt_length: prompt tokens prepended in the encoder.
    model_shards: the model axis size.
    embed_shards: how many ways [B, *, H] activations are split.

  Returns:
    Bytes per device.
  """
  b, t, u = batch, input_length + prompt_length, target_length
  h, f_mlp, v = config.emb_dim, config.mlp_dim, config.vocab_size
  n = config.num_heads
  i = n * config.head_dim
  a, f, m, e = jnp.dtype(config.dtype).itemsize, 4, model_shards, embed_shards
  embeddings = b * (t + u) * h * a / e
  encoder_layer = (b * t * (4 * h * a / e + (4 * i + 4 * f_mlp) * a / m)
                   + b * n * t * t * (f + a) / m)
  decoder_layer = (b * u * (6 * h * a / e + (6 * i + 4 * f_mlp) * a / m)
                   + b * t * 2 * i * a / m
                   + b * n * u * (u + t) * (f + a) / m)
  logits = 2 * b * u * v * f / m
  if config.dropout_rate > 0:
    encoder_layer += b * n * t * t * (a + 1) / m + b * t * f_mlp * a / m
    decoder_layer += (b * n * u * (u + t) * (a + 1) / m
                      + b * u * f_mlp * a / m)
  total = (embeddings + config.num_encoder_layers * encoder_layer +
           config.num_decoder_layers * decoder_layer + logits)
  return int(math.ceil(total))


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Parameter counts and the estimated bytes per device of one config.

  `gradients` equals the per-device size of the trainable parameters (one
  gradient tree, laid out like them). The optimizer state is replicated on
  every device, as `trainer.train` places it.
  """
  name: str
  mesh: Tuple[Tuple[str, int], ...]
  batch_per_shard: int
  total_params: int
  trainable_params: int
  frozen_bytes: int
  trainable_bytes: int
  gradient_bytes: int
  optimizer_bytes: int
  activation_bytes: int
  device_memory_gib: Optional[float] = None

  @property
  def total_bytes(self) -> int:
    return (self.frozen_bytes + self.trainable_bytes + self.gradient_bytes +
            self.optimizer_bytes + self.activation_bytes)

  @property
  def fits(self) -> Optional[bool]:
    if self.device_memory_gib is None:
      return None
    return self.total_bytes <= self.device_memory_gib * GIB


def estimate_memory(model: Any, abstract_boxed: PyTree,
                    mesh: jax.sharding.AbstractMesh,
                    rules: partitioning.LogicalAxisRules,
                    trainable_regexes: Sequence[str], optimizer: Any,
                    batch_size: int, feature_lengths: Mapping[str, int],
                    name: str = '',
                    device_memory_gib: Optional[float] = None,
                    data_axis: str = 'data',
                    model_axis: str = 'model') -> MemoryEstimate:
  """Per-device memory of a train step of `model` on `mesh`.

  Args:
    model: the `EncoderDecoderModel` (its module's config and prompt length
      feed `activation_bytes`).
    abstract_boxed: `abstract_params(model)`.
    mesh: the target mesh (abstract or real).
    rules: logical axis rules.
    trainable_regexes: as `trainer.train`'s.
    optimizer: an optax transformation; its state shapes come from
      `jax.eval_shape(optimizer.init, trainable)`.
    batch_size: the global batch.
    feature_lengths: {'inputs': T, 'targets': U}.
    name: label of the config.
    device_memory_gib: to mark estimates above it.
    data_axis: the data mesh axis name.
    model_axis: the model mesh axis name.

  Returns:
    The estimate.

  Raises:
    ValueError: a parameter cannot be laid out on the mesh (names it), the
      batch does not split over the data axis, or the regexes match nothing.
  """
  shardings = partitioning.unbox(
      partitioning.logical_to_mesh_shardings(abstract_boxed, mesh, rules))
  abstract = partitioning.unbox(abstract_boxed)
  trainable, frozen = trainer.split_params(abstract, trainable_regexes)
  if not jax.tree_util.tree_leaves(trainable):
    raise ValueError(f'trainable_regexes {list(trainable_regexes)} match no '
                     'parameter; names look like '
                     f'{sorted(_flat(abstract))[:3]}')
  trainable_shardings, frozen_shardings = trainer.split_params(
      shardings, trainable_regexes)
  data = mesh.shape[data_axis]
  if batch_size < 1 or batch_size % data:
    raise ValueError(
        f'Global batch size {batch_size} (BATCH_SIZE) must be a positive '
        f'multiple of the mesh data axis size {data}.')
  opt_state = jax.eval_shape(optimizer.init, trainable)
  module = model.module
  # How the rules split [batch, length, embed] activations on the model axis.
  embed_axes = nn.logical_to_mesh_axes(('batch', 'length', 'embed'), rules)[2]
  embed_axes = (embed_axes,) if isinstance(embed_axes, str) else (
      embed_axes or ())
  embed_shards = math.prod(mesh.shape[a] for a in embed_axes)
  trainable_bytes = per_device_bytes(trainable, trainable_shardings)
  return MemoryEstimate(
      name=name,
      mesh=tuple((str(k), int(v)) for k, v in mesh.shape.items()),
      batch_per_shard=batch_size // data,
      total_params=trainer.count_params(abstract)[0],
      trainable_params=trainer.count_params(trainable)[0],
      frozen_bytes=per_device_bytes(frozen, frozen_shardings),
      trainable_bytes=trainable_bytes,
      gradient_bytes=trainable_bytes,
      optimizer_bytes=per_device_bytes(opt_state),
      activation_bytes=activation_bytes(
          module.config, batch=batch_size // data,
          input_length=int(feature_lengths['inputs']),
          target_length=int(feature_lengths['targets']),
          prompt_length=int(getattr(module, 'prompt_length', 0) or 0),
          model_shards=mesh.shape[model_axis], embed_shards=embed_shards),
      device_memory_gib=device_memory_gib)


# ----------------------------------------------------------------------------
# One config, a sweep, the table.
# ----------------------------------------------------------------------------


def check_config(config: DryRunConfig,
                 cache: Optional[Dict[Any, PyTree]] = None) -> MemoryEstimate:
  """Parses one config as `train` would and estimates its memory.

  Raises:
    ValueError, FileNotFoundError: what is wrong with the config (gin files,
      bindings, task name, mesh, batch, regexes), naming it.
  """
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
  boxed = abstract_params(model, cache, seed=int(arguments.get('seed', 0)))
  optimizer = arguments.get('optimizer') or trainer.adafactor()
  if key is not None:
    optimizer = _MemoizedInit(optimizer, cache, (
        'optimizer', optimizer_key, _module_key(model.module),
        tuple(arguments['trainable_regexes'])))
  estimate = estimate_memory(
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
                ) -> Tuple[List[MemoryEstimate], List[Tuple[str, str]]]:
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


def _bytes(n: float) -> str:
  """Human-readable size: '5.19 GiB', '1.6 MiB'."""
  for unit, scale in (('GiB', GIB), ('MiB', 2**20), ('KiB', 2**10)):
    if n >= scale / 10:
      return f'{n / scale:.{2 if unit == "GiB" else 1}f} {unit}'
  return f'{int(n)} B'


def format_table(estimates: Sequence[MemoryEstimate]) -> str:
  """A markdown table, one row per distinct estimate (with a count)."""
  header = ('| config | configs | mesh | batch/shard | params | trainable | '
            'frozen | trainable+grads | optimizer | activations | '
            'total per device | fits |')
  lines = [header, '|' + '---|' * (header.count('|') - 1)]
  groups: Dict[Tuple[Any, ...], List[MemoryEstimate]] = {}
  for e in estimates:
    key = dataclasses.astuple(dataclasses.replace(e, name=''))
    groups.setdefault(key, []).append(e)
  for group in groups.values():
    e = group[0]
    mesh = ','.join(f'{k}:{v}' for k, v in e.mesh)
    fits = ('' if e.fits is None else 'yes' if e.fits else
            f'NO (> {e.device_memory_gib:g} GiB)')
    lines.append(
        f'| {e.name} | {len(group)} | {mesh} | {e.batch_per_shard} | '
        f'{e.total_params:,} | {e.trainable_params:,} | '
        f'{_bytes(e.frozen_bytes)} | '
        f'{_bytes(e.trainable_bytes + e.gradient_bytes)} | '
        f'{_bytes(e.optimizer_bytes)} | {_bytes(e.activation_bytes)} | '
        f'{_bytes(e.total_bytes)} | {fits} |')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Entry.
# ----------------------------------------------------------------------------


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  flag_values = flags.FLAGS
  # The per-config gin dump and gin's search-path misses would bury the table.
  if flag_values['verbosity'].using_default_value:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger().setLevel(std_logging.CRITICAL)
  try:
    configs = read_sweep(flag_values.sweep) if flag_values.sweep else []
    if flag_values.gin_file:
      configs.append(config_from_flags(flag_values))
  except (ValueError, FileNotFoundError) as e:
    print(f'dry run: {e}', file=sys.stderr)
    sys.exit(1)
  if not configs:
    print('dry run: nothing to check; give --gin_file (a training config) or '
          '--sweep=FILE.', file=sys.stderr)
    sys.exit(1)
  estimates, failures = run_configs(configs)
  print(format_table(estimates))
  print(f'dry run: {len(configs) - len(failures)} of {len(configs)} '
        'configs passed (memory per device; activations estimated, see '
        'prompt_tuning.dry_run.activation_bytes).')
  if failures:
    for label, message in failures:
      print(f'FAILED {label}: {message}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  flags.DEFINE_string('sweep', None, 'File of configs, one argument list a '
                      'line (shell-quoted).')
  gin_utils.run(main)
