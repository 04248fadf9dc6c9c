"""Memory of a train step per device, from parameter shapes alone.

Abstract parameters (`jax.eval_shape` of the model's init, reading no file),
the bytes one device holds of a tree laid out on a mesh (abstract meshes
included), an estimate of the activations a train step keeps for its
backward pass, and their sum per device (`estimate_memory`), as
`python -m prompt_tuning.dry_run` reports them.
"""
import dataclasses
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.training import partitioning
from prompt_tuning.training import trainer
from prompt_tuning.utils import tables
from prompt_tuning.utils import trees

PyTree = Any
GIB = 2**30


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


def _eval_shape_init(model: Any, module: Any, seed: int) -> PyTree:
  """`jax.eval_shape(model.init)` with `module` in place of the model's, and
  the init key `setup.setup_model` uses."""
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
      cache[key] = trees.flatten(_eval_shape_init(model, module.clone(
          config=shallow_config, prompt_length=prompt_length), seed))
    return cache[key]

  old, new = shallow(base[3]), shallow(length)
  changed = {n for n in set(old) | set(new)
             if n not in old or n not in new or
             _leaf_signature(old[n]) != _leaf_signature(new[n])}
  if any(re.search(r'(^|/)layers_\d+/', n) for n in changed):
    cache[full_key] = _eval_shape_init(model, module, seed)
    return cache[full_key]
  flat = {n: v for n, v in trees.flatten(cache[base]).items()
          if n not in changed}
  flat.update({n: new[n] for n in changed if n in new})
  cache[full_key] = trees.unflatten(flat)
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
                     f'{sorted(trees.flatten(abstract))[:3]}')
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
# The table.
# ----------------------------------------------------------------------------


def _bytes(n: float) -> str:
  """Human-readable size: '5.19 GiB', '1.6 MiB'."""
  for unit, scale in (('GiB', GIB), ('MiB', 2**20), ('KiB', 2**10)):
    if n >= scale / 10:
      return f'{n / scale:.{2 if unit == "GiB" else 1}f} {unit}'
  return f'{int(n)} B'


def format_table(estimates: Sequence[MemoryEstimate]) -> str:
  """A markdown table, one row per distinct estimate (with a count)."""
  groups: Dict[Tuple[Any, ...], List[MemoryEstimate]] = {}
  for e in estimates:
    key = dataclasses.astuple(dataclasses.replace(e, name=''))
    groups.setdefault(key, []).append(e)
  rows = []
  for group in groups.values():
    e = group[0]
    mesh = ','.join(f'{k}:{v}' for k, v in e.mesh)
    fits = ('' if e.fits is None else 'yes' if e.fits else
            f'NO (> {e.device_memory_gib:g} GiB)')
    rows.append([e.name, len(group), mesh, e.batch_per_shard,
                 f'{e.total_params:,}', f'{e.trainable_params:,}',
                 _bytes(e.frozen_bytes),
                 _bytes(e.trainable_bytes + e.gradient_bytes),
                 _bytes(e.optimizer_bytes), _bytes(e.activation_bytes),
                 _bytes(e.total_bytes), fits])
  return tables.markdown_table(
      ['config', 'configs', 'mesh', 'batch/shard', 'params', 'trainable',
       'frozen', 'trainable+grads', 'optimizer', 'activations',
       'total per device', 'fits'], rows, escape=False,
      trailing_newline=False)
