"""The device mesh and the rules that map logical axis names to mesh axes.

Every parameter and major activation of the model carries logical axis names
(`batch`, `length`, `embed`, `mlp`, `heads`, `kv`, `vocab`, `prompt`). This
module owns the only two things that turn those names into a layout:

  * a 2-D device mesh with axes ('data', 'model'), built by `create_mesh`;
  * a plain tuple of `(logical name, mesh axis or None)` pairs, by default
    `standard_logical_axis_rules()`, replaceable as a whole from gin.

Typical use (big_vision style: shapes first, then parameters created already
sharded; no pmap, no per-device leading axis):

  mesh = create_mesh(MeshConfig(num_partitions=2))
  rules = standard_logical_axis_rules()
  variables, shardings = shard_init(model.init, mesh, rules, rng, *dummy)
  batch = host_local_to_global(local_numpy_batch, mesh)
  with mesh_context(mesh, rules):  # activates nn.with_logical_constraint
    step = jax.jit(train_step, in_shardings=(shardings, data_sharding(mesh)))

NOTE: flax's `nn.with_logical_constraint` is a silent no-op unless a mesh is
set with `jax.set_mesh` (the legacy `with mesh:` context is not enough with the
flax/jax versions we use). `mesh_context` sets both the mesh and the rules.
"""
import contextlib
import dataclasses
import math
from typing import Any, Callable, Iterator, Optional, Sequence

from absl import logging
import flax.core.meta
import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

# A rule maps one logical axis name to a mesh axis (or None: replicated).
LogicalAxisRules = tuple[tuple[str, Optional[str]], ...]


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """How to lay the devices out on a ('data', 'model') mesh.

  Attributes:
    num_partitions: size of the model-parallel axis; the data axis gets the
      remaining `num_devices // num_partitions` devices.
    model_parallel_submesh: optional t5x-style TPU tile, e.g. (1, 1, 2, 1) for
      (x, y, z, core). Only its product is used, as the model axis size (it
      then overrides `num_partitions`); the physical placement is left to
      `mesh_utils.create_device_mesh`, which puts the last (model) mesh axis on
      the most tightly connected devices.
    data_axis: name of the data-parallel mesh axis.
    model_axis: name of the model-parallel mesh axis.

  Gin example:
    partitioning.MeshConfig.num_partitions = 2
    train.mesh_config = @partitioning.MeshConfig()
  """
  num_partitions: int = 1
  model_parallel_submesh: Optional[tuple[int, ...]] = None
  data_axis: str = 'data'
  model_axis: str = 'model'

  @property
  def model_size(self) -> int:
    """The model-parallel axis size that this config asks for."""
    if self.model_parallel_submesh is not None:
      return math.prod(self.model_parallel_submesh)
    return self.num_partitions


def _validate_config(config: MeshConfig) -> None:
  if config.num_partitions < 1:
    raise ValueError(
        f'MeshConfig.num_partitions must be >= 1, got {config.num_partitions}.')
  submesh = config.model_parallel_submesh
  if submesh is not None:
    if not submesh or any(int(s) < 1 for s in submesh):
      raise ValueError('MeshConfig.model_parallel_submesh must be a tuple of '
                       f'positive ints, got {submesh!r}.')
    if config.num_partitions not in (1, math.prod(submesh)):
      raise ValueError(
          f'MeshConfig.num_partitions={config.num_partitions} disagrees with '
          f'model_parallel_submesh={submesh!r} (product {math.prod(submesh)}); '
          'set only one of them.')
  if config.data_axis == config.model_axis:
    raise ValueError('MeshConfig.data_axis and model_axis must differ, both are '
                     f'{config.data_axis!r}.')


def device_grid(config: MeshConfig,
                devices: Optional[Sequence[Any]] = None) -> np.ndarray:
  """Arranges devices into a [data, model] array (no jax.sharding.Mesh yet).

  The layout, chosen so the model axis (the most communication per step)
  stays on the fastest links:
    * CPU: a plain reshape in device order.
    * One process, or one TPU slice spread over several hosts (a slice's ICI
      spans its hosts): `mesh_utils.create_device_mesh`.
    * Several TPU slices: `create_hybrid_device_mesh` with slices as the slow
      (DCN) granule, so only the data axis crosses slices.
    * Several processes on GPU (or any platform without slices): the same with
      processes as granules, so the model axis stays inside a host (NVLink)
      and only the data axis crosses the network. If the model axis is larger
      than one process's devices, it must span processes and a plain
      `create_device_mesh` over all devices is used instead.

  Args:
    config: the mesh configuration.
    devices: the devices to use; defaults to `jax.devices()`.

  Returns:
    An object array of devices of shape [num_devices // model, model].

  Raises:
    ValueError: if the number of devices is not divisible by the model size.
  """
  _validate_config(config)
  devices = list(jax.devices() if devices is None else devices)
  num_devices, model = len(devices), config.model_size
  if num_devices % model:
    raise ValueError(
        f'{num_devices} devices are not divisible by the model-parallel size '
        f'{model} (MeshConfig.num_partitions={config.num_partitions}, '
        f'model_parallel_submesh={config.model_parallel_submesh}); expected '
        f'num_devices = data * {model}.')
  shape = (num_devices // model, model)
  platform = devices[0].platform
  if platform == 'cpu':
    return np.asarray(devices, dtype=object).reshape(shape)

  slices = {getattr(d, 'slice_index', None) for d in devices}
  processes = {d.process_index for d in devices}
  if platform == 'tpu' and len(slices) > 1:
    granules, process_is_granule = len(slices), False
  elif platform != 'tpu' and len(processes) > 1:
    granules, process_is_granule = len(processes), True
  else:
    return mesh_utils.create_device_mesh(shape, devices)

  per_granule = num_devices // granules
  if num_devices % granules or per_granule % model:
    logging.warning(
        'Model-parallel size %d does not fit inside one of %d %s (%d devices '
        'each); the model axis will cross the slow network.', model, granules,
        'processes' if process_is_granule else 'slices', per_granule)
    return mesh_utils.create_device_mesh(shape, devices)
  return mesh_utils.create_hybrid_device_mesh(
      (per_granule // model, model), (granules, 1), devices,
      process_is_granule=process_is_granule)


def create_mesh(config: MeshConfig = MeshConfig(),
                devices: Optional[Sequence[Any]] = None) -> Mesh:
  """Builds the ('data', 'model') mesh; see `device_grid` for the layout.

  Args:
    config: the mesh configuration.
    devices: the devices to use; defaults to `jax.devices()` (all processes).

  Returns:
    A `jax.sharding.Mesh` of shape {data: num_devices // model, model: model}.

  Raises:
    ValueError: if the number of devices is not divisible by the model size.
  """
  return Mesh(device_grid(config, devices), (config.data_axis,
                                             config.model_axis))


def standard_logical_axis_rules(
    num_partitions: int = 1,
    parameter_partitioning_dims: int = 1,
    activation_partitioning_dims: int = 1,
    data_axis: str = 'data',
    model_axis: str = 'model',
) -> LogicalAxisRules:
  """t5x's standard rules for our logical axis names.

  Rules are tried in order and a name takes the first rule whose mesh axis is
  still free in that array, so `('embed', X)` after the `mlp`/`heads`/`vocab`
  rules only shards `embed` when no other dimension took X:
    * 1/1 (default): embed replicated; vocab, mlp, heads on 'model'.
    * parameter_partitioning_dims=2: embed -> 'data' too (2-D parameters, e.g.
      [embed, mlp] -> P('data', 'model')); activations are unaffected because
      `batch` already holds 'data'.
    * activation_partitioning_dims=2: embed -> 'model' (activations
      [batch, length, embed] -> P('data', None, 'model')); parameters whose
      other dim is on 'model' keep embed replicated.
    * 2/2: embed -> 'model', falling back to 'data'.

  Args:
    num_partitions: the model-parallel size, accepted for symmetry with
      `MeshConfig`; the rules do not depend on it (with 1 the 'model' entries
      shard over a size-1 axis, i.e. nothing).
    parameter_partitioning_dims: 1 or 2.
    activation_partitioning_dims: 1 or 2.
    data_axis: the data mesh axis name.
    model_axis: the model mesh axis name.

  Returns:
    A tuple of (logical name, mesh axis or None) pairs.

  Raises:
    ValueError: for a partitioning dims value other than 1 or 2.
  """
  if num_partitions < 1:
    raise ValueError(f'num_partitions must be >= 1, got {num_partitions}.')
  for name, value in (('parameter_partitioning_dims',
                       parameter_partitioning_dims),
                      ('activation_partitioning_dims',
                       activation_partitioning_dims)):
    if value not in (1, 2):
      raise ValueError(f'{name} must be 1 or 2, got {value}.')
  rules = [
      ('batch', data_axis),
      ('vocab', model_axis),
      ('mlp', model_axis),
      ('heads', model_axis),  # also the joined heads*head_dim of q/k/v/out
      ('kv', None),
  ]
  if activation_partitioning_dims == 2:
    rules.append(('embed', model_axis))
  if parameter_partitioning_dims == 2:
    rules.append(('embed', data_axis))
  if activation_partitioning_dims == 1 and parameter_partitioning_dims == 1:
    rules.append(('embed', None))
  rules += [('length', None), ('prompt', None)]
  return tuple(rules)


def unbox(tree: Any) -> Any:
  """Replaces flax boxed (LogicallyPartitioned) leaves by their values."""
  return flax.core.meta.unbox(tree)


def _is_box(x: Any) -> bool:
  return isinstance(x, flax.core.meta.AxisMetadata)


def _mesh_spec(path: str, leaf: Any, mesh: Mesh, rules: LogicalAxisRules) -> P:
  """The mesh PartitionSpec of one (possibly boxed) leaf, checked."""
  if not isinstance(leaf, nn.Partitioned):
    return P()  # Plain leaves (step counters, optimizer scalars): replicated.
  shape = leaf.value.shape
  if len(leaf.names) != len(shape):
    raise ValueError(f'Parameter {path} has axis names {leaf.names} but shape '
                     f'{shape}; expected one name per dimension.')
  if isinstance(leaf, nn.LogicallyPartitioned):
    known = {name for name, _ in rules}
    unknown = [n for n in leaf.names if isinstance(n, str) and n not in known]
    if unknown:
      raise ValueError(
          f'Parameter {path} uses logical axis names {unknown} that no rule '
          f'maps; rules cover {sorted(known)}. Add a rule (mesh axis or None).')
    spec = nn.logical_to_mesh_axes(leaf.names, rules)
  else:  # nn.Partitioned already names mesh axes.
    spec = P(*leaf.names)
  for dim, (size, axes) in enumerate(zip(shape, spec)):
    if axes is None:
      continue
    parts = math.prod(mesh.shape[a] for a in (
        (axes,) if isinstance(axes, str) else axes))
    if size % parts:
      raise ValueError(
          f'Parameter {path} of shape {shape} (axes {leaf.names}) cannot be '
          f'sharded: dimension {dim} has size {size}, not divisible by mesh '
          f'axis {axes!r} of size {parts}.')
  return spec


def logical_to_mesh_shardings(tree: Any, mesh: Mesh,
                              rules: LogicalAxisRules) -> Any:
  """Maps a tree of boxed values to a tree of `NamedSharding`s.

  Args:
    tree: e.g. `jax.eval_shape(model.init, ...)`: flax `LogicallyPartitioned`
      boxes (around arrays or ShapeDtypeStructs) and plain array leaves.
    mesh: the device mesh.
    rules: logical axis rules, e.g. `standard_logical_axis_rules()`.

  Returns:
    The same structure with each box (and each plain leaf, replicated) replaced
    by a `NamedSharding`; it matches `unbox(tree)` leaf for leaf and can be
    used directly as `jax.jit`'s in/out shardings for the boxed or the unboxed
    tree.

  Raises:
    ValueError: naming the parameter path, if one of its logical names has no
      rule or its shape is not divisible by the mesh axes it maps to.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_box)
  shardings = [
      NamedSharding(mesh, _mesh_spec(jax.tree_util.keystr(path), leaf, mesh,
                                     rules)) for path, leaf in leaves
  ]
  return jax.tree_util.tree_unflatten(treedef, shardings)


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules: LogicalAxisRules) -> Iterator[None]:
  """Sets the mesh and the axis rules for tracing jitted model code.

  Inside it, `nn.with_logical_constraint(x, ('batch', 'length', 'embed'))`
  becomes a real sharding constraint; outside it, a no-op.

  Args:
    mesh: the device mesh.
    rules: logical axis rules.

  Yields:
    Nothing.
  """
  set_mesh = getattr(jax, 'set_mesh', None)
  mesh_cm = set_mesh(mesh) if set_mesh is not None else mesh  # older jax
  with mesh_cm, nn.logical_axis_rules(rules):
    yield


def shard_init(init_fn: Callable[..., Any], mesh: Mesh, rules: LogicalAxisRules,
               *init_args: Any) -> tuple[Any, Any]:
  """Creates variables already sharded: eval_shape -> shardings -> jit.

  Args:
    init_fn: e.g. `model.init` or a closure around it; returns flax boxed
      variables.
    mesh: the device mesh.
    rules: logical axis rules.
    *init_args: its arguments (rng, dummy inputs).

  Returns:
    (variables, shardings): the unboxed variables, every array placed by its
    `NamedSharding`, and the matching tree of shardings (for jit in/out
    shardings and checkpoint restoration).
  """
  with mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, *init_args)
    shardings = logical_to_mesh_shardings(abstract, mesh, rules)
    variables = jax.jit(init_fn, out_shardings=shardings)(*init_args)
  return unbox(variables), shardings


def data_sharding(mesh: Mesh, data_axis: str = 'data') -> NamedSharding:
  """Sharding of a [B, ...] batch: B split over the data axis, rest replicated."""
  return NamedSharding(mesh, P(data_axis))


def process_data_shard(mesh: Mesh,
                       data_axis: str = 'data',
                       process_index: Optional[int] = None) -> tuple[int, int]:
  """Which slice of the global batch this process must load.

  Processes whose devices cover the same rows of the data axis (when the model
  axis spans processes) get the same shard and must load the same examples.

  Args:
    mesh: the device mesh.
    data_axis: the data mesh axis name.
    process_index: defaults to `jax.process_index()`.

  Returns:
    (shard_id, num_shards), e.g. for seqio's `ShardInfo(index, num_shards)`.

  Raises:
    ValueError: if this process holds no device or a non-contiguous set of
      data-axis rows.
  """
  if process_index is None:
    process_index = jax.process_index()
  axis = mesh.axis_names.index(data_axis)
  rows = sorted({
      index[axis]
      for index, device in np.ndenumerate(mesh.devices)
      if device.process_index == process_index
  })
  if not rows:
    raise ValueError(f'Process {process_index} holds no device of the mesh.')
  size, count = mesh.devices.shape[axis], len(rows)
  if rows != list(range(rows[0], rows[0] + count)) or rows[0] % count or (
      size % count):
    raise ValueError(
        f'Process {process_index} holds data-axis rows {rows} of {size}; '
        'expected an aligned contiguous block, as create_mesh makes.')
  return rows[0] // count, size // count


def global_batch_size_check(global_batch: int,
                            mesh: Mesh,
                            data_axis: str = 'data') -> int:
  """Checks the global batch against the mesh; returns the per-process batch.

  Args:
    global_batch: the global batch size (BATCH_SIZE).
    mesh: the device mesh.
    data_axis: the data mesh axis name.

  Returns:
    The number of examples this process loads per step.

  Raises:
    ValueError: naming both numbers, if the batch does not split evenly over
      the data axis.
  """
  data = mesh.shape[data_axis]
  if global_batch < 1 or global_batch % data:
    raise ValueError(
        f'Global batch size {global_batch} must be a positive multiple of the '
        f'mesh data axis size {data} ({mesh.devices.size} devices / '
        f'{mesh.devices.size // data} model partitions, over '
        f'{jax.process_count()} processes).')
  _, num_shards = process_data_shard(mesh, data_axis)
  return global_batch // num_shards


def host_local_to_global(batch: Any, mesh: Mesh, data_axis: str = 'data') -> Any:
  """Assembles each process's numpy batch into global arrays sharded on data.

  Args:
    batch: a dict (or any tree) of host-local numpy arrays [B_local, ...],
      where B_local = global batch / num shards (see `process_data_shard`).
    mesh: the device mesh.
    data_axis: the data mesh axis name.

  Returns:
    The same tree of `jax.Array`s [B_global, ...] with `data_sharding(mesh)`.
  """
  sharding = data_sharding(mesh, data_axis)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def describe(mesh: Mesh, rules: LogicalAxisRules) -> str:
  """A few lines for the startup log: mesh shape, devices, rules."""
  shape = ' x '.join(f'{name}={size}' for name, size in mesh.shape.items())
  kinds = sorted({d.device_kind for d in mesh.devices.flat})
  processes = len({d.process_index for d in mesh.devices.flat})
  rule_text = ', '.join(f'{name}->{axis}' for name, axis in rules)
  return (f'mesh: {shape} ({mesh.devices.size} devices over {processes} '
          f'process(es); {", ".join(kinds)})\n'
          f'logical axis rules: {rule_text}')
