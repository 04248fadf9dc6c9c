"""Sublayer outputs: bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al.
2021).

Parameters under `.../<sublayer>_adapter/`; they stay in the model at export.

Letters: B batch, T length, H embed, R bottleneck.
"""
import dataclasses
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning.methods import params as params_lib

Array = jax.Array

# Selects every adapter parameter.
ADAPTER_REGEX = r'.*_adapter/.*'

_ACTIVATIONS = {
    'relu': nn.relu,
    'gelu': lambda x: nn.gelu(x, approximate=True),
    'tanh': jnp.tanh,
}


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
    params_lib.check_positive('Adapter.dim', self.dim)
    params_lib.check_choice('Adapter.placement', self.placement,
                            ('houlsby', 'pfeiffer'))
    params_lib.check_choice('Adapter.activation', self.activation,
                            sorted(_ACTIVATIONS))

  def applies_to(self, sublayer: str) -> bool:
    return self.placement == 'houlsby' or sublayer == 'mlp'


class BottleneckAdapter(nn.Module):
  """`x + up(act(down(x)))`, `[B, T, H] -> [B, T, H]`; `up` starts at zero."""
  methods: params_lib.MethodsLike

  @nn.compact
  def __call__(self, x: Array) -> Array:
    config = self.methods.adapter
    h = params_lib.Linear(config.dim, ('embed', None), self.methods,
                          name='down')(x)
    h = _ACTIVATIONS[config.activation](h)
    h = params_lib.Linear(x.shape[-1], (None, 'embed'), self.methods,
                          kernel_init=nn.initializers.zeros, name='up')(h)
    return x + h.astype(x.dtype)


def adapter(methods: Optional[params_lib.MethodsLike],
            sublayer: str) -> Callable[[Array], Array]:
  """The adapter after `sublayer` ('attention', 'self_attention',
  'encoder_decoder_attention' or 'mlp'), named '<sublayer>_adapter' in the
  calling layer, or the identity."""
  if methods is None or methods.adapter is None or (
      not methods.adapter.applies_to(sublayer)):
    return lambda x: x
  return BottleneckAdapter(methods, name=f'{sublayer}_adapter')
