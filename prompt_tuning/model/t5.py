"""T5 1.1 encoder-decoder with a soft prompt in front of the encoder.

Letters: B batch, T encoder input length, P prompt length, U decoder length,
H embed, V vocabulary, L max decode length.

The parameter tree is flaxformer's (`token_embedder`, `encoder/layers_N/...`,
`decoder/logits_dense`), so released t5x checkpoints load as they are. The only
entry points are `encode`, `decode` and `__call__`.

Parameter-efficient methods plug in through the optional `methods`
attribute, at the hooks of `plugins.Plugins`: the encoder prompt, the position
bias and prefixes of the stacks' attention, sublayer outputs, and (inside
`layers`) projections, keys, values and the MLP's hidden activation.
"""
import dataclasses
from typing import Any, Callable, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import layers
from prompt_tuning.model import plugins
from prompt_tuning.model import prompts

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Sizes and numerics of a T5 model (defaults: T5 1.1 Small)."""
  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 6
  head_dim: int = 64
  mlp_dim: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.1
  # Activation dtype; parameters are always float32.
  dtype: Any = jnp.float32
  layer_norm_epsilon: float = 1e-6
  # T5 1.1: gated GELU. T5 1.0: ('relu',).
  mlp_activations: Tuple[str, ...] = ('gelu', 'linear')
  # T5 1.0 ties the output layer to the embedding; T5 1.1 does not.
  logits_via_embedding: bool = False
  # Rematerialisation: each encoder and decoder layer keeps only its inputs
  # for the backward pass and recomputes the rest (less memory for long
  # inputs and large models, about one more forward pass of compute). The
  # values computed are the same.
  remat: bool = False

  def __post_init__(self):
    object.__setattr__(self, 'dtype', jnp.dtype(self.dtype))
    object.__setattr__(self, 'mlp_activations', tuple(self.mlp_activations))
    for field in ('vocab_size', 'emb_dim', 'num_heads', 'head_dim', 'mlp_dim',
                  'num_encoder_layers', 'num_decoder_layers',
                  'relative_attention_num_buckets'):
      if getattr(self, field) <= 0:
        raise ValueError(f'T5Config.{field} must be positive, got '
                         f'{getattr(self, field)}')


# The paper's sizes (T5 1.1); vocabulary 32128, 32 buckets, max distance 128.
CONFIGS = {
    'small': T5Config(emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024,
                      num_encoder_layers=8, num_decoder_layers=8),
    'base': T5Config(emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048,
                     num_encoder_layers=12, num_decoder_layers=12),
    'large': T5Config(emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816,
                      num_encoder_layers=24, num_decoder_layers=24),
    'xl': T5Config(emb_dim=2048, num_heads=32, head_dim=64, mlp_dim=5120,
                   num_encoder_layers=24, num_decoder_layers=24),
    'xxl': T5Config(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240,
                    num_encoder_layers=24, num_decoder_layers=24),
}


def _dropout(config: T5Config) -> nn.Dropout:
  # Dropout masks shared along the length axis, as in t5x.
  return nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))


def _attention(config: T5Config, name: str,
               methods: Optional[plugins.Plugins] = None
               ) -> layers.MultiHeadAttention:
  return layers.MultiHeadAttention(config.num_heads, config.head_dim,
                                   config.dtype, config.dropout_rate,
                                   methods=methods, name=name)


def _norm(config: T5Config, name: str) -> layers.RMSNorm:
  return layers.RMSNorm(config.layer_norm_epsilon, config.dtype, name=name)


def _mlp(config: T5Config,
         methods: Optional[plugins.Plugins] = None) -> layers.MlpBlock:
  return layers.MlpBlock(config.mlp_dim, config.mlp_activations, config.dtype,
                         config.dropout_rate, methods=methods, name='mlp')


def _relpos(config: T5Config) -> layers.RelativePositionBiases:
  return layers.RelativePositionBiases(
      config.relative_attention_num_buckets,
      config.relative_attention_max_distance, config.num_heads, config.dtype,
      name='relpos_bias')


def _constrain(x: Array) -> Array:
  return nn.with_logical_constraint(x, ('batch', 'length', 'embed'))


def _layer_prefix(prefixes: Optional[Mapping[str, Array]], index: int,
                  kind: str = '') -> Optional[Tuple[Array, Array]]:
  """Layer `index`'s (key, value) prefix `[P, N*D]` each, or None, from a
  stack's `plugins.Plugins.stack_prefixes`.

  `kind`: '' for the encoder, 'self' or 'cross' for the decoder.
  """
  if prefixes is None:
    return None
  head = f'{kind}_' if kind else ''
  return prefixes[head + 'key'][index], prefixes[head + 'value'][index]


def _sublayer(config: T5Config, methods: Optional[plugins.Plugins],
              norm_name: str, name: str, apply: Callable[[Array], Array],
              inputs: Array, deterministic: bool) -> Array:
  """One pre-norm residual sublayer, [B, T, H] -> [B, T, H]:
  `inputs + dropout(sublayer_output(apply(norm(inputs))))`.

  Called from a compact `__call__`: the modules are made in the caller's
  scope, in the same order as before (norm, sublayer, plug-in, dropout), so
  parameter names and dropout streams are unchanged.
  """
  y = apply(_norm(config, norm_name)(inputs))
  y = plugins.of(methods).sublayer_output(name, y)
  return _dropout(config)(y, deterministic=deterministic) + inputs


class EncoderLayer(nn.Module):
  """Pre-norm self-attention and MLP sublayers with residuals."""
  config: T5Config
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, inputs, mask, bias, deterministic, prefix=None):
    """[B, P+T, H] -> [B, P+T, H]; `prefix`: this layer's (key, value)."""
    cfg, methods = self.config, self.methods
    x = _sublayer(cfg, methods, 'pre_attention_layer_norm', 'attention',
                  lambda h: _attention(cfg, 'attention', methods)(
                      h, h, mask, bias, deterministic=deterministic,
                      prefix=prefix), inputs, deterministic)
    y = _sublayer(cfg, methods, 'pre_mlp_layer_norm', 'mlp',
                  lambda h: _mlp(cfg, methods)(
                      h, deterministic=deterministic), x, deterministic)
    return _constrain(y)


class DecoderLayer(nn.Module):
  """Causal self-attention, cross-attention and MLP sublayers."""
  config: T5Config
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, inputs, encoded, self_mask, cross_mask, bias,
               deterministic, decode, self_prefix=None, cross_prefix=None):
    """[B, U, H] attending to encoded [B, P+T, H] -> [B, U, H]."""
    cfg, methods = self.config, self.methods
    x = _sublayer(cfg, methods, 'pre_self_attention_layer_norm',
                  'self_attention',
                  lambda h: _attention(cfg, 'self_attention', methods)(
                      h, h, self_mask, bias, deterministic=deterministic,
                      decode=decode, prefix=self_prefix),
                  inputs, deterministic)
    y = _sublayer(cfg, methods, 'pre_cross_attention_layer_norm',
                  'encoder_decoder_attention',
                  lambda h: _attention(
                      cfg, 'encoder_decoder_attention', methods)(
                          h, encoded, cross_mask,
                          deterministic=deterministic, prefix=cross_prefix),
                  x, deterministic)
    z = _sublayer(cfg, methods, 'pre_mlp_layer_norm', 'mlp',
                  lambda h: _mlp(cfg, methods)(
                      h, deterministic=deterministic), y, deterministic)
    return _constrain(z)


class Encoder(nn.Module):
  """Embeds tokens, prepends the prompt, and runs the encoder stack."""
  config: T5Config
  shared_embedding: nn.Module
  prompt_length: int = 0
  prompt_init: prompts.Initializer = prompts.random_uniform()
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, encoder_input_tokens, prompt=None, prompt_ids=None,
               enable_dropout=False):
    """[B, T] tokens -> [B, P+T, H] (P = 0 without a prompt)."""
    cfg, methods = self.config, self.methods
    deterministic = not enable_dropout
    # [B, T] -> [B, T, H]
    x = self.shared_embedding(encoder_input_tokens.astype(jnp.int32))
    if prompt is None and self.prompt_length:
      prompt = plugins.of(methods).encoder_prompt(
          self.prompt_length, cfg.emb_dim, self.prompt_init)
    prompt_length = 0
    if prompt is not None:
      prompt_length = prompt.shape[-2]
      # -> [B, P+T, H]
      x = prompts.prepend(prompt, x, prompt_ids)
    valid = prompts.input_mask(encoder_input_tokens, prompt_length)
    mask = layers.attention_mask(valid, valid)
    x = _dropout(cfg)(x, deterministic=deterministic).astype(cfg.dtype)
    length = x.shape[1]
    bias = plugins.of(methods).position_bias('encoder', _relpos(cfg), length,
                                             length, True)
    prefixes = plugins.of(methods).stack_prefixes('encoder', cfg,
                                                  cfg.num_encoder_layers)
    # The padding mask goes into the bias once here, not in every layer.
    bias, mask = layers.fold_mask_into_bias(mask, bias), None
    # `deterministic` (argument 4, counting self) is a Python bool.
    layer = (nn.remat(EncoderLayer, static_argnums=(4,)) if cfg.remat
             else EncoderLayer)
    for index in range(cfg.num_encoder_layers):
      x = layer(cfg, methods, name=f'layers_{index}')(
          x, mask, bias, deterministic,
          _layer_prefix(prefixes, index))
    x = _norm(cfg, 'encoder_norm')(x)
    return _dropout(cfg)(x, deterministic=deterministic)


def _per_query_row(encoder_valid: Array, batch: int) -> Array:
  """`[B, S]` valid encoder positions -> `[B*G, S]` for a decoder batch of
  `B*G` rows (G labels scored against each encoding, example-major)."""
  groups = batch // encoder_valid.shape[0]
  return (encoder_valid if groups == 1
          else jnp.repeat(encoder_valid, groups, axis=0))


class Decoder(nn.Module):
  """Runs the decoder stack over `[B, U]` tokens, attending to the encoder."""
  config: T5Config
  shared_embedding: nn.Module
  methods: Optional[plugins.Plugins] = None

  @nn.compact
  def __call__(self, encoded, encoder_valid, decoder_input_tokens,
               decoder_target_tokens=None, enable_dropout=False, decode=False,
               max_decode_length=None):
    """Returns float32 logits `[B, U, V]`.

    Args:
      encoded: encoder output `[B, P+T, H]`; or `[B/G, P+T, H]`, each
        encoding serving G consecutive decoder rows (rank classification's
        labels: the cross-attention keys and values are projected once per
        encoding).
      encoder_valid: `[B, P+T]` bool (`[B/G, P+T]` likewise), valid encoder
        positions.
      decoder_input_tokens: `[B, U]` (U == 1 when `decode`).
      decoder_target_tokens: `[B, U]`; positions where it is 0 are padding and
        masked. None: no padding.
      enable_dropout: training mode.
      decode: one step of autoregressive decoding with the key/value cache.
      max_decode_length: L, the cache length; required with `decode`.
    """
    cfg, methods = self.config, self.methods
    hooks = plugins.of(methods)
    deterministic = not enable_dropout
    batch, length = decoder_input_tokens.shape
    y = self.shared_embedding(decoder_input_tokens.astype(jnp.int32))
    y = _dropout(cfg)(y, deterministic=deterministic).astype(cfg.dtype)
    if decode:
      if max_decode_length is None:
        raise ValueError('decode=True needs max_decode_length')
      # The cache supplies the causal mask; relpos rows are sliced per step.
      self_mask = None
      cross_mask = layers.attention_mask(jnp.ones((batch, length), bool),
                                         _per_query_row(encoder_valid, batch))
      bias = hooks.position_bias('decoder', _relpos(cfg), max_decode_length,
                                 max_decode_length, False)
    else:
      if decoder_target_tokens is None:
        valid = jnp.ones((batch, length), bool)
      else:
        valid = decoder_target_tokens > 0
      self_mask = jnp.logical_and(layers.attention_mask(valid, valid),
                                  layers.causal_mask(length))
      cross_mask = layers.attention_mask(valid, _per_query_row(
          encoder_valid, batch))
      bias = hooks.position_bias('decoder', _relpos(cfg), length, length, False)
      # Once per stack, not per layer (see `layers.fold_mask_into_bias`).
      bias, self_mask = layers.fold_mask_into_bias(self_mask, bias), None
    prefixes = hooks.stack_prefixes('decoder', cfg, cfg.num_decoder_layers)
    # `deterministic` and `decode` (arguments 6 and 7) are Python bools; a
    # decoding step has no backward pass to save memory for.
    layer = (nn.remat(DecoderLayer, static_argnums=(6, 7))
             if cfg.remat and not decode else DecoderLayer)
    for index in range(cfg.num_decoder_layers):
      y = layer(cfg, methods, name=f'layers_{index}')(
          y, encoded, self_mask, cross_mask, bias, deterministic, decode,
          _layer_prefix(prefixes, index, 'self'),
          _layer_prefix(prefixes, index, 'cross'))
    y = _norm(cfg, 'decoder_norm')(y)
    y = _dropout(cfg)(y, deterministic=deterministic)
    if cfg.logits_via_embedding:
      # NOTE: T5 1.0 rescales tied logits by 1/sqrt(d_model).
      logits = self.shared_embedding.attend(y.astype(jnp.float32))
      logits = logits / np.sqrt(y.shape[-1])
    else:
      # NOTE: the output projection runs in float32, as in t5x.
      logits = layers.Dense(cfg.vocab_size, ('embed', 'vocab'),
                            dtype=jnp.float32, name='logits_dense')(y)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))


class Transformer(nn.Module):
  """T5 encoder-decoder; with `prompt_length > 0` it owns a learned prompt.

  `apply` may also be given a `prompt` explicitly (`[P, H]`, `[B, P, H]`, or a
  bank `[N, P, H]` with `prompt_ids`), which then replaces the owned one; this
  is how banks of prompts are served and ensembled.

  `methods` plugs parameter-efficient methods into the model (the hooks of
  `plugins.Plugins`, e.g. a `prompt_tuning.methods.Methods`); None is the
  plain T5.
  """
  config: T5Config
  prompt_length: int = 0
  prompt_init: prompts.Initializer = prompts.random_uniform()
  methods: Optional[plugins.Plugins] = None

  def setup(self):
    cfg = self.config
    self.token_embedder = layers.Embed(cfg.vocab_size, cfg.emb_dim, cfg.dtype)
    self.encoder = Encoder(cfg, self.token_embedder, self.prompt_length,
                           self.prompt_init, self.methods)
    self.decoder = Decoder(cfg, self.token_embedder, self.methods)

  def encode(self, encoder_input_tokens, prompt=None, prompt_ids=None,
             enable_dropout=False):
    """[B, T] tokens -> encoded `[B, P+T, H]`."""
    return self.encoder(encoder_input_tokens, prompt, prompt_ids,
                        enable_dropout)

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens,
             decoder_target_tokens=None, enable_dropout=False, decode=False,
             max_decode_length=None):
    """Logits `[B, U, V]` for decoder tokens given the encoder output.

    The prompt length is `encoded`'s length minus the input's; prompt positions
    are always visible to cross-attention. `encoded` and
    `encoder_input_tokens` may have B/G rows for B decoder rows: each
    encoding then serves G consecutive decoder rows (see `Decoder`).
    """
    prompt_length = encoded.shape[1] - encoder_input_tokens.shape[1]
    encoder_valid = prompts.input_mask(encoder_input_tokens, prompt_length)
    return self.decoder(encoded, encoder_valid, decoder_input_tokens,
                        decoder_target_tokens, enable_dropout, decode,
                        max_decode_length)

  def __call__(self, encoder_input_tokens, decoder_input_tokens,
               decoder_target_tokens=None, prompt=None, prompt_ids=None,
               enable_dropout=False):
    """Teacher-forced logits.

    Args:
      encoder_input_tokens: `[B, T]` int, 0 is padding.
      decoder_input_tokens: `[B, U]` int, the targets shifted right.
      decoder_target_tokens: `[B, U]` int, 0 is padding (masked).
      prompt: None, `[P, H]`, `[B, P, H]`, or `[N, P, H]` with `prompt_ids`.
      prompt_ids: `[B]` int, each example's row of the prompt bank.
      enable_dropout: training mode (needs a 'dropout' rng).

    Returns:
      float32 logits `[B, U, V]`.
    """
    encoded = self.encode(encoder_input_tokens, prompt, prompt_ids,
                          enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, enable_dropout)


def config_from_params(params, **overrides) -> T5Config:
  """Reads a T5Config's sizes off a parameter tree (e.g. a loaded checkpoint).

  The number of heads comes from the relative-position tables `[N, buckets]`;
  `relative_attention_max_distance` is not stored and defaults to T5's 128.
  Anything in `overrides` (dtype, dropout_rate, ...) is passed through.
  """
  encoder, decoder = params['encoder'], params['decoder']
  vocab_size, emb_dim = params['token_embedder']['embedding'].shape
  num_heads, num_buckets = encoder['relpos_bias']['rel_embedding'].shape
  layer = encoder['layers_0']
  inner = layer['attention']['query']['kernel'].shape[1]
  mlp = layer['mlp']
  activations = ('gelu', 'linear') if 'wi_0' in mlp else ('relu',)
  mlp_dim = (mlp['wi_0'] if 'wi_0' in mlp else mlp['wi'])['kernel'].shape[1]

  def count_layers(stack):
    return sum(1 for name in stack if name.startswith('layers_'))

  sizes = dict(
      vocab_size=vocab_size, emb_dim=emb_dim, num_heads=num_heads,
      head_dim=inner // num_heads, mlp_dim=mlp_dim,
      num_encoder_layers=count_layers(encoder),
      num_decoder_layers=count_layers(decoder),
      relative_attention_num_buckets=num_buckets,
      mlp_activations=activations,
      logits_via_embedding='logits_dense' not in decoder)
  overrides = {k: v for k, v in overrides.items() if v is not None}
  return T5Config(**{**sizes, **overrides})
