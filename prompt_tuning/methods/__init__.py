"""Parameter-efficient methods that plug into the one T5 of `prompt_tuning.model.t5`.

Each method is a frozen config dataclass plus a small flax module, used at one
of a few named points of the shared model (the T5 is never copied):

  encoder input: `PromptEncoder` (P-tuning: BiLSTM + MLP, or MLP alone;
    residual prompt tuning), parameters under `encoder/prompt/`;
  attention keys and values: `Prefix` (deep prompts / P-tuning v2 / prefix
    tuning), under `encoder/prefix/` and `decoder/prefix/`;
  keys, values and MLP hidden: `IA3` rescaling, `.../ia3_{key,value,hidden}`;
  projections: `LoRA`, beside each targeted kernel, `.../lora_{a,b}`;
  sublayer outputs: `Adapter` (Houlsby: attention and MLP; Pfeiffer: MLP),
    `.../<sublayer>_adapter/`.

`Methods` bundles the configs (each optional, so methods can be combined) and
is the one attribute the T5 modules take (`t5.Transformer.methods`). With
`methods=None` the model and its parameter tree are exactly T5 1.1's.

Every method starts as a no-op where one exists: LoRA's up-projection and the
adapters' up-projections are zero, IA3's vectors are ones. Prefixes and prompt
encoders have no no-op value; their absence (no prefix, prompt length 0) is
the frozen model.

`Preset`s name the methods of the comparison, each with the trainable regexes
that select exactly its parameters; `gin/methods/<name>.gin` holds the same
choice for the trainer.

Letters: B batch, T query length, S key length, P prompt / prefix length,
H embed, N heads, D head dim, F mlp dim, L layers, R bottleneck / rank.
"""
import dataclasses
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning.model import prompts

Array = jax.Array
Initializer = Callable[..., Array]

_ACTIVATIONS = {
    'relu': nn.relu,
    'gelu': lambda x: nn.gelu(x, approximate=True),
    'tanh': jnp.tanh,
}


def _check_choice(field: str, value: str, known: Sequence[str]) -> None:
  if value not in known:
    raise ValueError(f'{field} is {value!r}; expected one of {list(known)}')


def _check_positive(field: str, value: Any) -> None:
  if value is not None and value <= 0:
    raise ValueError(f'{field} must be positive, got {value}')


# ----------------------------------------------------------------------------
# Configs.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PromptEncoder:
  """The encoder prompt `[P, H]` computed from P learned input vectors.

  kinds:
    'lstm': P-tuning (Liu et al. 2021): a bidirectional LSTM (hidden_dim / 2
      per direction) then a two-layer ReLU MLP (hidden_dim wide).
    'mlp': P-tuning's MLP alone.
    'residual': residual prompt tuning (Razdaibiedina et al. 2023):
      `inputs + LayerNorm(up(relu(down(inputs))))`, down to hidden_dim.

  At export the encoder is evaluated once and the result saved as a plain
  prompt, so serving is exactly prompt tuning.

  Attributes:
    kind: 'lstm', 'mlp' or 'residual'.
    hidden_dim: None: d_model for 'lstm' and 'mlp', d_model // 2 for
      'residual' (about the paper's 400 for T5 Base's 768).
  """
  kind: str = 'lstm'
  hidden_dim: Optional[int] = None

  def __post_init__(self):
    _check_choice('PromptEncoder.kind', self.kind, ('lstm', 'mlp', 'residual'))
    _check_positive('PromptEncoder.hidden_dim', self.hidden_dim)
    if self.kind == 'lstm' and self.hidden_dim and self.hidden_dim % 2:
      raise ValueError(f'PromptEncoder.hidden_dim {self.hidden_dim} must be '
                       'even for the bidirectional LSTM (half per direction)')

  def width(self, embed_dim: int) -> int:
    if self.hidden_dim:
      return self.hidden_dim
    return embed_dim // 2 if self.kind == 'residual' else embed_dim


@dataclasses.dataclass(frozen=True)
class Prefix:
  """Learned key and value prefixes of length P in every attention layer.

  Deep prompts / P-tuning v2 (plain per-layer prefixes) and prefix tuning
  (Li & Liang 2021, with `reparam_dim`: the prefixes of all layers computed by
  one MLP `tanh(inputs [P, H] @ wi) @ wo` from P learned vectors, folded into
  plain prefixes at export). Prefix positions are visible to every query and
  never masked.

  NOTE: relative positions. T5 adds a learned bias by query-key distance.
  'prepended' (default) gives prefix keys the bias they would have as P
  positions in front of the input, as a prompt of length P would, and as
  HF's T5 does with prefix past-key-values; 'none' gives them no bias, so
  every query sees the prefix alike whatever its position.

  Attributes:
    length: P.
    decoder: also prefix the decoder's self- and cross-attention.
    reparam_dim: None for plain prefixes; the MLP's width otherwise.
    relpos: 'prepended' or 'none' (above).
    init_scale: standard deviation of the plain prefixes' (or the MLP's
      inputs') normal initialisation.
  """
  length: int = 20
  decoder: bool = False
  reparam_dim: Optional[int] = None
  relpos: str = 'prepended'
  init_scale: float = 1.0

  def __post_init__(self):
    _check_positive('Prefix.length', self.length)
    _check_positive('Prefix.reparam_dim', self.reparam_dim)
    _check_choice('Prefix.relpos', self.relpos, ('prepended', 'none'))


@dataclasses.dataclass(frozen=True)
class LoRA:
  """Low-rank updates `W + (alpha / rank) A B` of frozen projection kernels.

  `targets` is matched (`re.fullmatch`) against each projection's module
  path, e.g. 'encoder/layers_0/attention/query' or
  'decoder/layers_1/mlp/wi_0'; the default takes the query and value
  projections of every attention (Hu et al. 2021). Any attention or MLP
  projection can be targeted; the embedding and `logits_dense` cannot. `B`
  starts at zero, so the model starts as the frozen one. At export the update
  is merged into the kernels.

  Attributes:
    rank: r, at most min(in, out) of every targeted kernel.
    alpha: the scale numerator.
    targets: regex over module paths.
  """
  rank: int = 4
  alpha: float = 8.0
  targets: str = r'.*attention/(query|value)'

  def __post_init__(self):
    _check_positive('LoRA.rank', self.rank)
    _check_positive('LoRA.alpha', self.alpha)
    try:
      re.compile(self.targets)
    except re.error as e:
      raise ValueError(f'LoRA.targets {self.targets!r} is not a regex: {e}'
                       ) from e

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class Adapter:
  """Bottleneck adapters `x + up(act(down(x)))` on sublayer outputs.

  'houlsby' (Houlsby et al. 2019): after every attention and MLP sublayer;
  'pfeiffer' (Pfeiffer et al. 2021): after the MLP only. Applied to the
  sublayer's output before its residual connection; `up` starts at zero.
  Unlike Houlsby et al., the layer norms stay frozen (add the `norm_scale`
  regex to tune them too).

  Attributes:
    dim: the bottleneck width R.
    placement: 'houlsby' or 'pfeiffer'.
    activation: 'relu', 'gelu' or 'tanh'.
  """
  dim: int = 64
  placement: str = 'houlsby'
  activation: str = 'relu'

  def __post_init__(self):
    _check_positive('Adapter.dim', self.dim)
    _check_choice('Adapter.placement', self.placement, ('houlsby', 'pfeiffer'))
    _check_choice('Adapter.activation', self.activation, sorted(_ACTIVATIONS))

  def applies_to(self, sublayer: str) -> bool:
    return self.placement == 'houlsby' or sublayer == 'mlp'


@dataclasses.dataclass(frozen=True)
class IA3:
  """(IA)^3 (Liu et al. 2022): learned vectors, initialised to ones, that
  rescale every attention's keys and values and (with `mlp`) the MLP's inner
  activation."""
  mlp: bool = True


@dataclasses.dataclass(frozen=True)
class Methods:
  """The methods plugged into one T5; each None when unused.

  Attributes:
    prompt_encoder: reparameterises the encoder prompt (needs
      `t5.Transformer.prompt_length > 0`).
    prefix: attention prefixes.
    lora: low-rank projection updates.
    adapter: bottleneck adapters.
    ia3: rescaling vectors.
    params_file: a method-parameter file (`export.save_method_params`); when
      set, every method parameter is read from it instead of initialised
      (serving an exported method). Its names and shapes must match.

  Gin:
    t5.Transformer.methods = @methods.Methods()
    methods.Methods.lora = @methods.LoRA()
    methods.LoRA.rank = 8
  """
  prompt_encoder: Optional[PromptEncoder] = None
  prefix: Optional[Prefix] = None
  lora: Optional[LoRA] = None
  adapter: Optional[Adapter] = None
  ia3: Optional[IA3] = None
  params_file: Optional[str] = None


# ----------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------


def _from_params_file(path: str, name: str) -> Initializer:
  """An initialiser returning parameter `name` of a method-parameter file."""

  def init(rng, shape, dtype=jnp.float32):
    del rng
    from prompt_tuning.methods import export as method_export  # pylint: disable=g-import-not-at-top,cyclic-import
    array = method_export.read_method_param(path, name, tuple(shape))
    return jnp.asarray(array, dtype)

  return init


def method_param(module: nn.Module, methods: Optional[Methods], name: str,
                 init: Initializer, shape: Tuple[int, ...],
                 axes: Tuple[Optional[str], ...]) -> Array:
  """Declares a float32 method parameter with logical axis names.

  With `methods.params_file` set the value comes from that file (by the
  parameter's '/'-joined path), so an exported method can be served.
  """
  assert len(axes) == len(shape), (name, shape, axes)
  if methods is not None and methods.params_file:
    init = _from_params_file(methods.params_file,
                             '/'.join(module.path + (name,)))
  return module.param(name, nn.with_logical_partitioning(init, axes), shape,
                      jnp.float32)


class Linear(nn.Module):
  """`x @ kernel + bias` for the methods' own small networks."""
  features: int
  axes: Tuple[Optional[str], Optional[str]]
  methods: Optional[Methods] = None
  kernel_init: Initializer = nn.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal')
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[..., in] -> [..., features]."""
    kernel = method_param(self, self.methods, 'kernel', self.kernel_init,
                          (x.shape[-1], self.features), self.axes)
    y = jnp.dot(x, jnp.asarray(kernel, x.dtype))
    if self.use_bias:
      bias = method_param(self, self.methods, 'bias', nn.initializers.zeros,
                          (self.features,), self.axes[1:])
      y = y + jnp.asarray(bias, x.dtype)
    return y


# ----------------------------------------------------------------------------
# Encoder input: P-tuning and residual prompts.
# ----------------------------------------------------------------------------


class LSTM(nn.Module):
  """One direction of an LSTM over a sequence `[P, H_in] -> [P, R]`.

  Written out (rather than flax's cells) so its parameters carry logical axis
  names and readable names: `input_kernel [H_in, 4R]`, `recurrent_kernel
  [R, 4R]`, `bias [4R]`; gates in the order input, forget, cell, output.
  """
  hidden: int
  reverse: bool = False
  methods: Optional[Methods] = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    r = self.hidden
    w_in = method_param(self, self.methods, 'input_kernel',
                        nn.initializers.lecun_normal(), (x.shape[-1], 4 * r),
                        ('embed', None))
    w_rec = method_param(self, self.methods, 'recurrent_kernel',
                         nn.initializers.orthogonal(), (r, 4 * r), (None, None))
    bias = method_param(self, self.methods, 'bias', nn.initializers.zeros,
                        (4 * r,), (None,))
    gates_in = x @ w_in + bias  # [P, 4R]

    def step(carry, gates):
      h, c = carry
      i, f, g, o = jnp.split(gates + h @ w_rec, 4)
      c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
      h = nn.sigmoid(o) * jnp.tanh(c)
      return (h, c), h

    zeros = jnp.zeros((r,), x.dtype)
    _, hidden = jax.lax.scan(step, (zeros, zeros), gates_in,
                             reverse=self.reverse)
    return hidden  # [P, R], in input order either way


class ReparameterizedPrompt(nn.Module):
  """The encoder prompt `[P, H]` from P learned vectors `inputs` `[P, H]`
  through a `PromptEncoder` (P-tuning or residual prompt tuning).

  The learned vectors are initialised by the model's `prompt_init` (any of
  `prompts`' initialisers) and live at `encoder/prompt/inputs`, not at the
  plain prompt's `encoder/prompt/prompt/prompt`.
  """
  methods: Methods
  length: int
  embed_dim: int
  init: Initializer

  @nn.compact
  def __call__(self) -> Array:
    """Returns the prompt `[P, H]` (float32)."""
    config = self.methods.prompt_encoder
    methods = self.methods
    width = config.width(self.embed_dim)
    inputs = method_param(self, methods, 'inputs', self.init,
                          (self.length, self.embed_dim), ('prompt', 'embed'))
    if config.kind == 'residual':
      h = Linear(width, ('embed', None), methods, name='down')(inputs)
      h = Linear(self.embed_dim, (None, 'embed'), methods, name='up')(
          nn.relu(h))
      return inputs + LayerNorm(methods, name='layer_norm')(h)
    h = inputs
    if config.kind == 'lstm':
      # [P, H] -> [P, R/2] twice -> [P, R]
      h = jnp.concatenate([
          LSTM(width // 2, False, methods, name='lstm_forward')(h),
          LSTM(width // 2, True, methods, name='lstm_backward')(h)], axis=-1)
    h = nn.relu(Linear(width, (None, None), methods, name='mlp_0')(h))
    return Linear(self.embed_dim, (None, 'embed'), methods, name='mlp_1')(h)


class LayerNorm(nn.Module):
  """Standard layer norm (mean and variance, scale and bias) over H."""
  methods: Optional[Methods] = None
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: Array) -> Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.var(x, axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(variance + self.epsilon)
    scale = method_param(self, self.methods, 'scale', nn.initializers.ones,
                         (x.shape[-1],), ('embed',))
    bias = method_param(self, self.methods, 'bias', nn.initializers.zeros,
                        (x.shape[-1],), ('embed',))
    return y * scale + bias


def encoder_prompt(methods: Optional[Methods], length: int, embed_dim: int,
                   init: Initializer) -> Array:
  """The encoder's learned prompt `[P, H]`, made in the calling module's
  scope under the name 'prompt': plain, or through a `PromptEncoder`."""
  if methods is None or methods.prompt_encoder is None:
    return prompts.EncoderPrompt(length, embed_dim, init, name='prompt')()
  return ReparameterizedPrompt(methods, length, embed_dim, init,
                               name='prompt')()


# ----------------------------------------------------------------------------
# Attention keys and values: prefixes.
# ----------------------------------------------------------------------------

# The prefix arrays of each stack, each [L, P, N*D].
ENCODER_PREFIXES = ('key', 'value')
DECODER_PREFIXES = ('self_key', 'self_value', 'cross_key', 'cross_value')


def prefix_names(stack: str) -> Tuple[str, ...]:
  return ENCODER_PREFIXES if stack == 'encoder' else DECODER_PREFIXES


def stack_prefix(methods: Optional[Methods], stack: str) -> Optional[Prefix]:
  """The `Prefix` config if `stack` ('encoder' or 'decoder') has prefixes."""
  if methods is None or methods.prefix is None:
    return None
  if stack == 'decoder' and not methods.prefix.decoder:
    return None
  return methods.prefix


class Prefixes(nn.Module):
  """Every layer's key and value prefixes of one stack, `[L, P, N*D]` each.

  Plain: the parameters themselves (`key`, `value`; in the decoder
  `self_key`, `self_value`, `cross_key`, `cross_value`). Reparameterised
  (`Prefix.reparam_dim`): all of them from one MLP over P learned vectors
  `inputs [P, H]`, as Li & Liang do: `tanh(inputs @ wi + b) @ wo + b`, the
  output `[P, G*L*N*D]` split into the G arrays.
  """
  methods: Methods
  stack: str
  num_layers: int
  num_heads: int
  head_dim: int
  embed_dim: int

  @nn.compact
  def __call__(self) -> Dict[str, Array]:
    """Returns {name: [L, P, N*D]} float32."""
    config, methods = self.methods.prefix, self.methods
    names = prefix_names(self.stack)
    joined = self.num_heads * self.head_dim
    shape = (self.num_layers, config.length, joined)
    normal = nn.initializers.normal(stddev=config.init_scale)
    if config.reparam_dim is None:
      return {name: method_param(self, methods, name, normal, shape,
                                 (None, 'prompt', 'heads'))
              for name in names}
    inputs = method_param(self, methods, 'inputs', normal,
                          (config.length, self.embed_dim), ('prompt', 'embed'))
    h = jnp.tanh(Linear(config.reparam_dim, ('embed', None), methods,
                        name='wi')(inputs))
    out = Linear(len(names) * self.num_layers * joined, (None, None), methods,
                 name='wo')(h)  # [P, G*L*N*D]
    # [P, G*L*N*D] -> [P, G, L, N*D] -> [G, L, P, N*D]
    out = out.reshape(config.length, len(names), self.num_layers, joined)
    out = out.transpose(1, 2, 0, 3)
    return {name: out[i] for i, name in enumerate(names)}


def stack_prefixes(methods: Optional[Methods], stack: str, config: Any,
                   num_layers: int) -> Optional[Dict[str, Array]]:
  """The calling stack's prefixes (module 'prefix'), or None without any."""
  if stack_prefix(methods, stack) is None:
    return None
  return Prefixes(methods, stack, num_layers, config.num_heads,
                  config.head_dim, config.emb_dim, name='prefix')()


def layer_prefix(prefixes: Optional[Mapping[str, Array]], index: int,
                 kind: str = '') -> Optional[Tuple[Array, Array]]:
  """Layer `index`'s (key, value) prefix `[P, N*D]` each, or None.

  `kind`: '' for the encoder, 'self' or 'cross' for the decoder.
  """
  if prefixes is None:
    return None
  head = f'{kind}_' if kind else ''
  return prefixes[head + 'key'][index], prefixes[head + 'value'][index]


def relpos_bias(relpos: Callable[..., Array], query_length: int,
                key_length: int, bidirectional: bool,
                prefix: Optional[Prefix]) -> Array:
  """T5's relative-position bias `[1, N, T, P+S]`, prefix columns first.

  Without a prefix this is `relpos(T, S)` `[1, N, T, S]`. With one, the
  first P key columns are the prefix's (see `Prefix`'s NOTE): 'prepended'
  takes the rows of the T queries from the bias of a sequence P longer;
  'none' pads zeros.
  """
  if prefix is None:
    return relpos(query_length, key_length, bidirectional)
  p = prefix.length
  if prefix.relpos == 'prepended':
    # [1, N, P+T, P+S] -> the queries' rows [1, N, T, P+S]
    return relpos(p + query_length, p + key_length, bidirectional)[:, :, p:]
  bias = relpos(query_length, key_length, bidirectional)
  # [1, N, T, S] -> [1, N, T, P+S], zeros in front
  return jnp.pad(bias, ((0, 0), (0, 0), (0, 0), (p, 0)))


def prepend_prefix(prefix: Tuple[Array, Array], key: Array, value: Array,
                   mask: Optional[Array]
                   ) -> Tuple[Array, Array, Optional[Array]]:
  """Puts the prefix keys and values in front of an attention's own.

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


# ----------------------------------------------------------------------------
# Projections: LoRA. Keys, values and MLP hidden: IA3.
# ----------------------------------------------------------------------------


def lora_applies(methods: Optional[Methods], module: nn.Module) -> bool:
  return (methods is not None and methods.lora is not None
          and re.fullmatch(methods.lora.targets, '/'.join(module.path))
          is not None)


def lora_delta(module: nn.Module, methods: Methods, x: Array,
               kernel_shape: Tuple[int, int],
               kernel_axes: Tuple[Optional[str], Optional[str]]) -> Array:
  """`(alpha / r) (x A) B` for a projection with kernel `[in, out]`, its
  parameters `lora_a [in, r]` and `lora_b [r, out]` (zeros) made in
  `module`'s scope, beside its kernel.

  Raises:
    ValueError: the rank exceeds min(in, out) of this kernel.
  """
  config = methods.lora
  in_dim, out_dim = kernel_shape
  if config.rank > min(in_dim, out_dim):
    raise ValueError(
        f'LoRA.rank {config.rank} is larger than the projection '
        f"{'/'.join(module.path)} of shape [{in_dim}, {out_dim}]; expected a "
        f'rank of at most {min(in_dim, out_dim)}')
  a = method_param(module, methods, 'lora_a',
                   nn.initializers.variance_scaling(1.0, 'fan_in', 'normal'),
                   (in_dim, config.rank), (kernel_axes[0], None))
  b = method_param(module, methods, 'lora_b', nn.initializers.zeros,
                   (config.rank, out_dim), (None, kernel_axes[1]))
  # [..., in] @ [in, r] @ [r, out] -> [..., out]
  return (x @ jnp.asarray(a, x.dtype)) @ jnp.asarray(b * config.scale, x.dtype)


def ia3_scale(module: nn.Module, methods: Optional[Methods], name: str,
              size: int, axis: Optional[str]) -> Optional[Array]:
  """IA3's rescaling vector `[size]` (ones) named `name` in `module`, or None
  when IA3 is off (or `name` is the MLP's and `IA3.mlp` is False)."""
  if methods is None or methods.ia3 is None:
    return None
  if name == 'ia3_hidden' and not methods.ia3.mlp:
    return None
  return method_param(module, methods, name, nn.initializers.ones, (size,),
                      (axis,))


# ----------------------------------------------------------------------------
# Sublayer outputs: adapters.
# ----------------------------------------------------------------------------


class BottleneckAdapter(nn.Module):
  """`x + up(act(down(x)))`, `[B, T, H] -> [B, T, H]`; `up` starts at zero."""
  methods: Methods

  @nn.compact
  def __call__(self, x: Array) -> Array:
    config = self.methods.adapter
    h = Linear(config.dim, ('embed', None), self.methods, name='down')(x)
    h = _ACTIVATIONS[config.activation](h)
    h = Linear(x.shape[-1], (None, 'embed'), self.methods,
               kernel_init=nn.initializers.zeros, name='up')(h)
    return x + h.astype(x.dtype)


def adapter(methods: Optional[Methods], sublayer: str) -> Callable[[Array],
                                                                     Array]:
  """The adapter after `sublayer` ('attention', 'self_attention',
  'encoder_decoder_attention' or 'mlp'), named '<sublayer>_adapter' in the
  calling layer, or the identity."""
  if methods is None or methods.adapter is None or (
      not methods.adapter.applies_to(sublayer)):
    return lambda x: x
  return BottleneckAdapter(methods, name=f'{sublayer}_adapter')


# ----------------------------------------------------------------------------
# Presets: the methods of the comparison and their trainable regexes.
# ----------------------------------------------------------------------------

PROMPT_REGEX = r'encoder/prompt/.*'
PREFIX_REGEX = r'(encoder|decoder)/prefix/.*'
LORA_REGEX = r'.*/lora_[ab]'
ADAPTER_REGEX = r'.*_adapter/.*'
IA3_REGEX = r'.*/ia3_(key|value|hidden)'
# NOTE: T5 1.1 has no biases, so BitFit's analogue is tuning the RMS layer
# norms' scales (every `*layer_norm/scale` and the final `*_norm/scale`).
NORM_SCALE_REGEX = r'.*norm/scale'
MODEL_TUNING_REGEX = r'.*'

# How each preset's result is exported for serving (`method_export`).
EXPORT_PROMPT = 'prompt'  # a plain prompt [P, H] (.npy)
EXPORT_MERGED = 'merged'  # merged into the frozen kernels (t5x checkpoint)
EXPORT_PARAMS = 'method_params'  # the method's (folded) parameters
EXPORT_MODEL = 'model'  # every parameter (t5x checkpoint)


@dataclasses.dataclass(frozen=True)
class Preset:
  """One method of the comparison.

  Attributes:
    name: as in `gin/methods/<name>.gin`.
    summary: one line for tables.
    methods: what to plug into the T5 (None: the plain model).
    trainable_regexes: select exactly this method's parameters.
    uses_prompt: the encoder prompt of length P exists (prompt family);
      otherwise P is the prefix length where there is one.
    learning_rate: Adafactor's constant rate in `gin/methods/<name>.gin`.
    export: EXPORT_PROMPT, EXPORT_MERGED, EXPORT_PARAMS or EXPORT_MODEL.
  """
  name: str
  summary: str
  methods: Optional[Methods]
  trainable_regexes: Tuple[str, ...]
  uses_prompt: bool
  learning_rate: float
  export: str

  def with_length(self, length: int) -> 'Preset':
    """The same method with prompt or prefix length P = `length`."""
    if self.methods is None or self.methods.prefix is None:
      return self
    return dataclasses.replace(self, methods=dataclasses.replace(
        self.methods, prefix=dataclasses.replace(self.methods.prefix,
                                                 length=length)))

  def prompt_length(self, length: int) -> int:
    """`t5.Transformer.prompt_length` for P = `length`."""
    return length if self.uses_prompt else 0


def _presets() -> Dict[str, Preset]:
  """The comparison's methods with their default hyperparameters."""
  table = [
      Preset('prompt_tuning', 'prompt tuning (Lester et al. 2021)', None,
             (PROMPT_REGEX,), True, 0.3, EXPORT_PROMPT),
      Preset('p_tuning', 'P-tuning: BiLSTM + MLP prompt encoder',
             Methods(prompt_encoder=PromptEncoder('lstm')), (PROMPT_REGEX,),
             True, 0.01, EXPORT_PROMPT),
      Preset('p_tuning_mlp', 'P-tuning with an MLP prompt encoder',
             Methods(prompt_encoder=PromptEncoder('mlp')), (PROMPT_REGEX,),
             True, 0.01, EXPORT_PROMPT),
      Preset('residual_prompt', 'residual prompt tuning',
             Methods(prompt_encoder=PromptEncoder('residual')),
             (PROMPT_REGEX,), True, 0.3, EXPORT_PROMPT),
      Preset('p_tuning_v2', 'deep prompts / P-tuning v2 (encoder prefixes)',
             Methods(prefix=Prefix()), (PREFIX_REGEX,), False, 0.3,
             EXPORT_PARAMS),
      Preset('prefix_tuning',
             'prefix tuning: MLP-reparameterised, encoder and decoder',
             Methods(prefix=Prefix(decoder=True, reparam_dim=512)),
             (PREFIX_REGEX,), False, 0.001, EXPORT_PARAMS),
      Preset('lora', 'LoRA r=4 on attention query and value',
             Methods(lora=LoRA()), (LORA_REGEX,), False, 0.01, EXPORT_MERGED),
      Preset('adapter_houlsby', 'adapters after attention and MLP (Houlsby)',
             Methods(adapter=Adapter(placement='houlsby')), (ADAPTER_REGEX,),
             False, 0.01, EXPORT_PARAMS),
      Preset('adapter_pfeiffer', 'adapters after the MLP (Pfeiffer)',
             Methods(adapter=Adapter(placement='pfeiffer')), (ADAPTER_REGEX,),
             False, 0.01, EXPORT_PARAMS),
      Preset('ia3', '(IA)^3 rescaling of keys, values, MLP hidden',
             Methods(ia3=IA3()), (IA3_REGEX,), False, 0.01, EXPORT_PARAMS),
      Preset('norm_scale', 'layer-norm scales only (BitFit analogue)', None,
             (NORM_SCALE_REGEX,), False, 0.01, EXPORT_MODEL),
      Preset('model_tuning', 'model tuning (every parameter)', None,
             (MODEL_TUNING_REGEX,), False, 0.001, EXPORT_MODEL),
  ]
  return {p.name: p for p in table}


PRESETS: Mapping[str, Preset] = _presets()


def preset(name: str) -> Preset:
  """The preset called `name`.

  Raises:
    ValueError: an unknown name, listing the known ones.
  """
  if name not in PRESETS:
    raise ValueError(f'unknown method {name!r}; known methods: '
                     f'{", ".join(PRESETS)}')
  return PRESETS[name]


def assignment_map(trainable_regexes: Sequence[str]
                   ) -> Tuple[Tuple[str, None], ...]:
  """t5x assignment rules that initialise (not load) the method parameters.

  Model tuning and norm-scale tuning start from the checkpoint: their
  regexes name parameters it holds, so they get no rule.
  """
  starts_fresh = (PROMPT_REGEX, PREFIX_REGEX, LORA_REGEX, ADAPTER_REGEX,
                  IA3_REGEX)
  return tuple((r, None) for r in trainable_regexes if r in starts_fresh)


def method_param_names(flat_names: Sequence[str],
                       trainable_regexes: Sequence[str]) -> Tuple[str, ...]:
  """The names among `flat_names` that the regexes select (the trainer's
  rule: a full match of any)."""
  patterns = [re.compile(r) for r in trainable_regexes]
  return tuple(n for n in flat_names if any(p.fullmatch(n) for p in patterns))
