"""The building blocks of T5 1.1, with flaxformer's parameter names.

Letters used in shapes: B batch, T (query) length, S key length, H embed
(d_model), N heads, D head dim, F mlp dim, V vocab, L max decode length.

Every parameter is made by `_param`, so none can exist without logical axis
names; parameters are stored in float32 and cast to the compute `dtype` where
used.

Parameter-efficient methods enter through each module's optional `methods`
attribute, at the hooks of `plugins.Plugins`: projections in `Dense`, keys and
values in `MultiHeadAttention`, the hidden activation in `MlpBlock`. With
`methods=None` (the default) nothing changes.
"""
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import plugins

Array = jax.Array
DType = Any
Initializer = Callable[..., Array]

# Attention logits of masked positions. Finite, so fully masked rows (padded
# queries) give a uniform distribution instead of NaN.
_MASK_VALUE = -1e10

default_kernel_init = nn.initializers.variance_scaling(
    1.0, 'fan_in', 'truncated_normal')


def _param(module: nn.Module, name: str, init: Initializer,
           shape: Tuple[int, ...], axes: Tuple[Optional[str], ...]) -> Array:
  """Declares a float32 parameter annotated with logical axis names."""
  assert len(axes) == len(shape), (name, shape, axes)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape,
                      jnp.float32)


class RMSNorm(nn.Module):
  """T5 layer norm: scales by the root mean square, no mean, no bias."""
  epsilon: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[..., H] -> [..., H]; statistics in float32."""
    x = jnp.asarray(x, jnp.float32)
    mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    y = jnp.asarray(x * lax.rsqrt(mean_square + self.epsilon), self.dtype)
    scale = _param(self, 'scale', nn.initializers.ones, (x.shape[-1],),
                   ('embed',))
    return y * jnp.asarray(scale, self.dtype)


class Dense(nn.Module):
  """A bias-free projection with a `[in, out]` kernel (its output passed
  through the `projection` hook)."""
  features: int
  kernel_axes: Tuple[Optional[str], Optional[str]]
  kernel_init: Initializer = default_kernel_init
  dtype: DType = jnp.float32
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[..., in] -> [..., features]."""
    shape = (x.shape[-1], self.features)
    kernel = _param(self, 'kernel', self.kernel_init, shape, self.kernel_axes)
    x = jnp.asarray(x, self.dtype)
    y = jnp.dot(x, jnp.asarray(kernel, self.dtype))
    return plugins.of(self.methods).projection(self, x, y, shape,
                                               self.kernel_axes)


class Embed(nn.Module):
  """Token embedding table `[V, H]`, also usable as the tied output layer."""
  num_embeddings: int
  features: int
  dtype: DType = jnp.float32
  embedding_init: Initializer = nn.initializers.normal(stddev=1.0)

  def setup(self):
    self.embedding = _param(self, 'embedding', self.embedding_init,
                            (self.num_embeddings, self.features),
                            ('vocab', 'embed'))

  def __call__(self, tokens: Array) -> Array:
    """[B, T] int -> [B, T, H]."""
    return jnp.take(jnp.asarray(self.embedding, self.dtype), tokens, axis=0)

  def attend(self, query: Array) -> Array:
    """[B, T, H] -> [B, T, V]: dot products with every embedding row."""
    return jnp.dot(query, jnp.asarray(self.embedding, query.dtype).T)


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> np.ndarray:
  """Maps `key_position - query_position` to T5's relative-position buckets.

  Half the buckets (per direction when bidirectional) hold exact distances
  0..max_exact-1; the rest grow logarithmically up to `max_distance`, beyond
  which everything shares the last bucket. Computed in numpy at trace time:
  the shapes are static.
  """
  bucket = np.zeros_like(relative_position)
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # NOTE: the eps keeps log(0) finite for the (unused) small branch, as in
  # mesh-tensorflow's T5.
  log_ratio = (np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
               / np.log(max_distance / max_exact))
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(np.int32)
  large = np.minimum(large, num_buckets - 1)
  return bucket + np.where(is_small, n, large)


class RelativePositionBiases(nn.Module):
  """T5's learned relative position bias, one table `[N, buckets]` per stack."""
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: DType = jnp.float32
  embedding_init: Initializer = nn.initializers.variance_scaling(
      1.0, 'fan_avg', 'uniform')

  @nn.compact
  def __call__(self, query_length: int, key_length: int,
               bidirectional: bool) -> Array:
    """Returns the bias `[1, N, T, S]` added to attention logits."""
    context = np.arange(query_length, dtype=np.int32)[:, None]
    memory = np.arange(key_length, dtype=np.int32)[None, :]
    buckets = relative_position_bucket(memory - context, bidirectional,
                                       self.num_buckets, self.max_distance)
    table = _param(self, 'rel_embedding', self.embedding_init,
                   (self.num_heads, self.num_buckets), ('heads', None))
    # [N, buckets] gathered at [T, S] -> [N, T, S]
    values = jnp.take(jnp.asarray(table, self.dtype), buckets, axis=1)
    return values[None]


def attention_mask(query_valid: Array, key_valid: Array) -> Array:
  """[B, T] and [B, S] booleans -> [B, 1, T, S] pairwise mask."""
  return jnp.logical_and(query_valid[:, None, :, None],
                         key_valid[:, None, None, :])


def fold_mask_into_bias(mask: Array, bias: Optional[Array]) -> Array:
  """One additive bias for a whole stack: `bias` where `mask`, else masked.

  Done once per stack instead of once per layer, it leaves each layer one
  addition to its logits. Masked logits become `logit + _MASK_VALUE`, which
  is `_MASK_VALUE` in float32 for any |logit| < 512, so the softmax is what
  masking each layer's logits gives (fully masked rows stay uniform).

  Args:
    mask: `[B, 1, T, S]` bool, True where attention is allowed.
    bias: `[1, N, T, P+S]` additive bias (P >= 0 prefix columns first, which
      every query sees), or None.

  Returns:
    float32 `[B, N, T, P+S]` (`[B, 1, T, S]` without a bias).
  """
  if bias is None:
    return jnp.where(mask, jnp.float32(0), jnp.float32(_MASK_VALUE))
  prefix_length = bias.shape[-1] - mask.shape[-1]
  if prefix_length:
    mask = jnp.pad(mask, ((0, 0), (0, 0), (0, 0), (prefix_length, 0)),
                   constant_values=True)
  return jnp.where(mask, jnp.asarray(bias, jnp.float32),
                   jnp.float32(_MASK_VALUE))


def causal_mask(length: int) -> Array:
  """[1, 1, T, T]: query i sees keys j <= i."""
  positions = jnp.arange(length)
  return (positions[None, :] <= positions[:, None])[None, None]


def prepend_prefix(prefix: Tuple[Array, Array], key: Array, value: Array,
                   mask: Optional[Array]
                   ) -> Tuple[Array, Array, Optional[Array]]:
  """Puts prefix keys and values in front of an attention's own.

  Args:
    prefix: (key, value), each `[P, N*D]`.
    key: `[B, S, N, D]`.
    value: `[B, S, N, D]`.
    mask: `[B, 1, T, S]` bool or None.

  Returns:
    key, value `[B, P+S, N, D]` and mask `[B, 1, T, P+S]` (prefix always
    visible), or None.
  """
  batch, _, heads, depth = key.shape

  def extend(x, p):
    # [P, N*D] -> [B, P, N, D]; -> [B, P+S, N, D]
    p = jnp.broadcast_to(p.reshape(1, -1, heads, depth).astype(x.dtype),
                         (batch, p.shape[0], heads, depth))
    return jnp.concatenate([p, x], axis=1)

  prefix_key, prefix_value = prefix
  key, value = extend(key, prefix_key), extend(value, prefix_value)
  if mask is not None:
    visible = jnp.ones(mask.shape[:-1] + (prefix_key.shape[0],), bool)
    mask = jnp.concatenate([visible, mask], axis=-1)
  return key, value, mask


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention, T5 style.

  NOTE: no 1/sqrt(D) scaling of the logits; T5 folds it into the query
  initialiser. Kernels are stored 2-D (`[H, N*D]`, `[N*D, H]`) as flaxformer
  stores them, and reshaped to heads at use.
  """
  num_heads: int
  head_dim: int
  dtype: DType = jnp.float32
  dropout_rate: float = 0.0
  kernel_init: Initializer = nn.initializers.variance_scaling(
      1.0, 'fan_in', 'normal')
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array,
               mask: Optional[Array] = None, bias: Optional[Array] = None,
               *, deterministic: bool = True, decode: bool = False,
               prefix: Optional[Tuple[Array, Array]] = None) -> Array:
    """Attends from `inputs_q` [B, T, H] to `inputs_kv` [B, S, H].

    Args:
      inputs_q: queries' inputs, [B, T, H].
      inputs_kv: keys' and values' inputs, [B, S, H]; or [B/G, S, H], each
        row serving G consecutive query rows (no cache, no bias).
      mask: boolean [B, 1, T, S], True where attention is allowed; None
        when the stack folded it into `bias` (`fold_mask_into_bias`).
      bias: additive [1, N, T, S] (relative positions) or [B, N, T, S] (with
        the mask folded in); [.., P+S] with a prefix.
      deterministic: disables dropout.
      decode: autoregressive mode: keys and values are appended to a cache of
        length L (the 'cache' collection) one position per call, T == 1.
      prefix: (key, value) `[P, N*D]` each, put in front of the keys and
        values (after the cache) and visible to every query.

    Returns:
      [B, T, H].
    """
    features = self.num_heads * self.head_dim
    depth_scaling = np.sqrt(self.head_dim).astype(np.float32)

    def query_init(*args):
      return self.kernel_init(*args) / depth_scaling

    def project(name, x, init):
      y = Dense(features, ('embed', 'heads'), init, self.dtype, self.methods,
                name=name)(x)
      if name in ('key', 'value'):
        y = plugins.of(self.methods).rescale(self, name, y, 'heads')
      # [B, T, N*D] -> [B, T, N, D]
      return y.reshape(y.shape[:-1] + (self.num_heads, self.head_dim))

    query = project('query', inputs_q, query_init)
    key = project('key', inputs_kv, self.kernel_init)
    value = project('value', inputs_kv, self.kernel_init)
    batch, length = query.shape[:2]
    groups = _query_groups(batch, key.shape[0], decode, bias)
    if groups > 1:
      # Each of the kv batch's examples serves `groups` consecutive query
      # rows: [G*Bk, T, N, D] -> [Bk, G*T, N, D], mask likewise.
      query = query.reshape((key.shape[0], groups * length)
                            + query.shape[2:])
      mask = None if mask is None else _group_mask(mask, batch, groups)

    if decode:
      query, key, value, mask, bias = self._use_cache(query, key, value, mask,
                                                      bias)
    if prefix is not None:
      # -> [B, P+S, N, D], mask [B, 1, T, P+S]
      key, value, mask = prepend_prefix(prefix, key, value, mask)

    # [B, T, N, D] x [B, S, N, D] -> [B, N, T, S]; logits in float32.
    logits = jnp.einsum('btnd,bsnd->bnts', query, key,
                        preferred_element_type=jnp.float32)
    if bias is not None:
      logits = logits + jnp.asarray(bias, jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, _MASK_VALUE)
    weights = jax.nn.softmax(logits).astype(self.dtype)
    if not deterministic and self.dropout_rate > 0:
      # As t5x's T5: one mask per example, head and key, shared by every
      # query (mask [B, N, 1, S]).
      weights = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
          weights, deterministic=False)
    # [B, N, T, S] x [B, S, N, D] -> [B, T, N, D]
    out = jnp.einsum('bnts,bsnd->btnd', weights, value)
    # [B, T, N, D] -> [B, T, N*D] ([Bk, G*T, ...] -> [B, T, ...] if grouped)
    out = out.reshape((batch, length, features))
    return Dense(inputs_q.shape[-1], ('heads', 'embed'), self.kernel_init,
                 self.dtype, self.methods, name='out')(out)

  def _use_cache(self, query, key, value, mask, bias):
    """Writes this step's key/value into the cache; returns the full cache.

    On the cache-creating call (model init with decode=True and inputs of the
    full length L) the variables are only created and the inputs pass through.
    """
    initialised = self.has_variable('cache', 'cached_key')
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, key.shape,
                               key.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros,
                                 value.shape, value.dtype)
    cache_index = self.variable('cache', 'cache_index',
                                lambda: jnp.array(0, dtype=jnp.int32))
    if not initialised:
      return query, key, value, mask, bias
    batch, max_length, num_heads, head_dim = cached_key.value.shape
    if query.shape[1] != 1:
      raise ValueError('decode=True takes one position per call; got queries '
                       f'of length {query.shape[1]}')
    index = cache_index.value
    key = lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
    value = lax.dynamic_update_slice(cached_value.value, value,
                                     (0, index, 0, 0))
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + 1
    # Keys at positions <= index are filled: [B, 1, 1, L].
    visible = jnp.arange(max_length) <= index
    step_mask = jnp.broadcast_to(visible, (batch, 1, 1, max_length))
    mask = step_mask if mask is None else jnp.logical_and(mask, step_mask)
    if bias is not None:
      # [1, N, L, L] -> this query's row [1, N, 1, L].
      bias = lax.dynamic_slice_in_dim(bias, index, 1, axis=2)
    return query, key, value, mask, bias


def _query_groups(query_batch: int, kv_batch: int, decode: bool,
                  bias: Optional[Array]) -> int:
  """How many query rows share each key/value row (1: the usual case).

  Rank classification scores C labels against one encoding: its queries
  come as `[B*C, U, ...]` (example-major) and its keys and values as
  `[B, S, ...]`, projected once per example rather than once per label.
  """
  if query_batch == kv_batch:
    return 1
  if decode or bias is not None or query_batch % kv_batch:
    raise ValueError(
        f'queries of batch {query_batch} attend to keys and values of batch '
        f'{kv_batch}: only without a cache or a position bias, and with a '
        'whole number of query rows per key row')
  return query_batch // kv_batch


def _group_mask(mask: Array, query_batch: int, groups: int) -> Array:
  """`[G*Bk, 1, T, S]` (or batch 1) -> `[Bk, 1, G*T, S]`, the grouped
  queries' mask."""
  mask = jnp.broadcast_to(mask, (query_batch,) + mask.shape[1:])
  _, heads, length, keys = mask.shape
  mask = mask.reshape(query_batch // groups, groups, heads, length, keys)
  return jnp.swapaxes(mask, 1, 2).reshape(query_batch // groups, heads,
                                          groups * length, keys)


class MlpBlock(nn.Module):
  """Gated MLP: `wo(act_0(wi_0 x) * act_1(wi_1 x))`; T5 1.1 uses gelu, linear."""
  mlp_dim: int
  activations: Sequence[str] = ('gelu', 'linear')
  dtype: DType = jnp.float32
  dropout_rate: float = 0.0
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool = True) -> Array:
    """[B, T, H] -> [B, T, H]."""
    hidden = None
    for index, name in enumerate(self.activations):
      # [B, T, H] -> [B, T, F]
      h = Dense(self.mlp_dim, ('embed', 'mlp'), dtype=self.dtype,
                methods=self.methods,
                name=f'wi_{index}' if len(self.activations) > 1 else 'wi')(x)
      h = _activation(name)(h)
      hidden = h if hidden is None else hidden * h
    hidden = plugins.of(self.methods).rescale(self, 'hidden', hidden, 'mlp')
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
        hidden, deterministic=deterministic)
    return Dense(x.shape[-1], ('mlp', 'embed'), dtype=self.dtype,
                 methods=self.methods, name='wo')(hidden)


def _activation(name: str) -> Callable[[Array], Array]:
  """Activation by name; 'gelu' is the tanh approximation T5 1.1 uses."""
  activations = {
      'gelu': lambda x: nn.gelu(x, approximate=True),
      'relu': nn.relu,
      'linear': lambda x: x,
  }
  if name not in activations:
    raise ValueError(f'unknown MLP activation {name!r}; known: '
                     f'{sorted(activations)}')
  return activations[name]
