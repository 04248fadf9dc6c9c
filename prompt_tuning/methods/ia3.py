"""Keys, values and MLP hidden: (IA)^3's learned rescaling vectors.

Parameters `ia3_key`, `ia3_value` in each attention and `ia3_hidden` in each
MLP; they stay in the model at export.
"""
import dataclasses
from typing import Optional

import flax.linen as nn
import jax

from prompt_tuning.methods import params as params_lib

Array = jax.Array

# Selects every IA3 parameter.
IA3_REGEX = r'.*/ia3_(key|value|hidden)'


@dataclasses.dataclass(frozen=True)
class IA3:
  """(IA)^3 (Liu et al. 2022): learned vectors, initialised to ones, that
  rescale every attention's keys and values and (with `mlp`) the MLP's inner
  activation."""
  mlp: bool = True


def ia3_scale(module: nn.Module, methods: Optional[params_lib.MethodsLike],
              name: str, size: int, axis: Optional[str]) -> Optional[Array]:
  """IA3's rescaling vector `[size]` (ones) named `name` in `module`, or None
  when IA3 is off (or `name` is the MLP's and `IA3.mlp` is False)."""
  if methods is None or methods.ia3 is None:
    return None
  if name == 'ia3_hidden' and not methods.ia3.mlp:
    return None
  return params_lib.method_param(module, methods, name, nn.initializers.ones,
                                 (size,), (axis,))
