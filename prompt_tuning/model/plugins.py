"""The named points where parameter-efficient methods plug into the T5.

The model (`layers`, `t5`) calls these hooks through its `methods` attribute
and knows nothing of the methods themselves; `prompt_tuning.methods.Methods`
implements them. Each hook is called at a fixed place of the forward pass, in
the scope of the flax module named below, so whatever parameters it makes
live there (and are made in the same order on every call):

  encoder input         `encoder_prompt`   in `Encoder`, named 'prompt'
  position bias         `position_bias`    in `Encoder` / `Decoder`
  attention keys/values `stack_prefixes`   in `Encoder` / `Decoder`, 'prefix'
  projections           `projection`       in each `Dense`
  keys, values, hidden  `rescale`          in `MultiHeadAttention`, `MlpBlock`
  sublayer outputs      `sublayer_output`  in `EncoderLayer`, `DecoderLayer`

`Plugins` gives each hook its no-op: with it (a module's `methods=None`) the
model and its parameter tree are exactly T5 1.1's.

Letters: B batch, T query length, S key length, P prompt / prefix length,
H embed, N heads, D head dim, L layers.
"""
from typing import Any, Callable, Mapping, Optional, Tuple

import flax.linen as nn
import jax

from prompt_tuning.model import prompts

Array = jax.Array
Initializer = Callable[..., Array]


class Plugins:
  """The hooks, each a no-op (the plain T5 1.1)."""

  def encoder_prompt(self, length: int, embed_dim: int,
                     init: Initializer) -> Array:
    """The encoder's learned prompt `[P, H]` (float32), made in the calling
    module's scope under the name 'prompt'.

    Default: the plain prompt at `encoder/prompt/prompt/prompt`.
    """
    return prompts.EncoderPrompt(length, embed_dim, init, name='prompt')()

  def position_bias(self, stack: str, relpos: Callable[..., Array],
                    query_length: int, key_length: int,
                    bidirectional: bool) -> Array:
    """The relative-position bias `[1, N, T, S']` of `stack` ('encoder' or
    'decoder'), where S' is S plus the prefix length of `stack_prefixes`
    (prefix columns first).

    Default: `relpos(T, S, bidirectional)`, `[1, N, T, S]`.
    """
    del stack
    return relpos(query_length, key_length, bidirectional)

  def stack_prefixes(self, stack: str, config: Any, num_layers: int
                     ) -> Optional[Mapping[str, Array]]:
    """Key and value prefixes of every attention layer of `stack`, made in
    the calling stack's scope under the name 'prefix'.

    Returns:
      None (default: no prefixes), or arrays `[L, P, N*D]` named 'key',
      'value' (encoder) or 'self_key', 'self_value', 'cross_key',
      'cross_value' (decoder). Layer i's attention puts row i in front of its
      own keys and values, visible to every query.
    """
    del stack, config, num_layers
    return None

  def projection(self, module: nn.Module, x: Array, y: Array,
                 kernel_shape: Tuple[int, int],
                 kernel_axes: Tuple[Optional[str], Optional[str]]) -> Array:
    """The output of a projection `y = x @ kernel` (`kernel_shape` `[in,
    out]`), `module` the `Dense` (its path names the projection).

    Default: `y`.
    """
    del module, x, kernel_shape, kernel_axes
    return y

  def rescale(self, module: nn.Module, point: str, x: Array,
              axis: Optional[str]) -> Array:
    """`x` `[..., size]` at `point` of `module`: 'key' and 'value' (the
    attention's projected keys and values, `[B, S, N*D]`), or 'hidden' (the
    MLP's inner activation, `[B, T, F]`); `axis` its last axis' logical name.

    Default: `x`.
    """
    del module, point, axis
    return x

  def sublayer_output(self, sublayer: str, x: Array) -> Array:
    """A sublayer's output `[B, T, H]` before its residual connection;
    `sublayer` is 'attention', 'self_attention', 'encoder_decoder_attention'
    or 'mlp', and modules are made in the calling layer's scope.

    Default: `x`.
    """
    del sublayer
    return x


NONE = Plugins()


def of(methods: Optional[Plugins]) -> Plugins:
  """The hooks of a module's `methods` attribute; None: the plain model."""
  return NONE if methods is None else methods
