"""Attention keys and values: learned prefixes (deep prompts / P-tuning v2,
prefix tuning).

Parameters under `encoder/prefix/` and `decoder/prefix/`. Reparameterised
prefixes are folded into plain ones at export (`fold_prefixes`).

Letters: T query length, S key length, P prefix length, H embed, N heads,
D head dim, L layers, G prefix arrays of a stack.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.methods import params as params_lib

Array = jax.Array
Linear = params_lib.Linear
method_param = params_lib.method_param

# Selects every prefix parameter.
PREFIX_REGEX = r'(encoder|decoder)/prefix/.*'

# The prefix arrays of each stack, each [L, P, N*D].
ENCODER_PREFIXES = ('key', 'value')
DECODER_PREFIXES = ('self_key', 'self_value', 'cross_key', 'cross_value')


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
    params_lib.check_positive('Prefix.length', self.length)
    params_lib.check_positive('Prefix.reparam_dim', self.reparam_dim)
    params_lib.check_choice('Prefix.relpos', self.relpos,
                            ('prepended', 'none'))


def prefix_names(stack: str) -> Tuple[str, ...]:
  return ENCODER_PREFIXES if stack == 'encoder' else DECODER_PREFIXES


def stack_prefix(methods: Optional[params_lib.MethodsLike],
                 stack: str) -> Optional[Prefix]:
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
  methods: params_lib.MethodsLike
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


def stack_prefixes(methods: Optional[params_lib.MethodsLike], stack: str,
                   config: Any, num_layers: int) -> Optional[Dict[str, Array]]:
  """The calling stack's prefixes (module 'prefix'), or None without any."""
  if stack_prefix(methods, stack) is None:
    return None
  return Prefixes(methods, stack, num_layers, config.num_heads,
                  config.head_dim, config.emb_dim, name='prefix')()


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


def fold_prefixes(module: Any, params: Any, stack: str
                  ) -> Dict[str, np.ndarray]:
  """Evaluates a stack's reparameterised prefixes once: plain `[L, P, N*D]`
  arrays by name ('key', 'value' or the decoder's four).

  Args:
    module: the `t5.Transformer` (its methods and config).
    params: its parameters.
    stack: 'encoder' or 'decoder'.
  """
  methods = dataclasses.replace(module.methods, params_file=None)
  config = module.config
  layers = (config.num_encoder_layers if stack == 'encoder'
            else config.num_decoder_layers)
  prefixes = Prefixes(methods, stack, layers, config.num_heads,
                      config.head_dim, config.emb_dim)
  out = prefixes.apply({'params': params[stack]['prefix']})
  return {name: np.asarray(value) for name, value in out.items()}
