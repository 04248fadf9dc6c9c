"""Projections: LoRA's low-rank updates of frozen kernels (Hu et al. 2021).

Parameters `lora_a`, `lora_b` beside each targeted kernel; merged into the
kernels at export (`merge_lora`).
"""
import dataclasses
import re
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.methods import params as params_lib
from prompt_tuning.utils import trees

Array = jax.Array

# Selects every LoRA parameter.
LORA_REGEX = r'.*/lora_[ab]'


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
    params_lib.check_positive('LoRA.rank', self.rank)
    params_lib.check_positive('LoRA.alpha', self.alpha)
    try:
      re.compile(self.targets)
    except re.error as e:
      raise ValueError(f'LoRA.targets {self.targets!r} is not a regex: {e}'
                       ) from e

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def lora_applies(methods: Optional[params_lib.MethodsLike],
                 module: nn.Module) -> bool:
  return (methods is not None and methods.lora is not None
          and re.fullmatch(methods.lora.targets, '/'.join(module.path))
          is not None)


def lora_delta(module: nn.Module, methods: params_lib.MethodsLike, x: Array,
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
  a = params_lib.method_param(
      module, methods, 'lora_a',
      nn.initializers.variance_scaling(1.0, 'fan_in', 'normal'),
      (in_dim, config.rank), (kernel_axes[0], None))
  b = params_lib.method_param(module, methods, 'lora_b', nn.initializers.zeros,
                              (config.rank, out_dim), (None, kernel_axes[1]))
  # [..., in] @ [in, r] @ [r, out] -> [..., out]
  return (x @ jnp.asarray(a, x.dtype)) @ jnp.asarray(b * config.scale, x.dtype)


def merge_lora(params: Any, lora: LoRA) -> Dict[str, Any]:
  """Each targeted kernel plus `(alpha / r) A B`; the LoRA parameters gone."""
  flat = {n: np.asarray(v) for n, v in trees.flatten(params).items()}
  merged = {}
  for name, value in flat.items():
    if re.fullmatch(LORA_REGEX, name):
      continue
    base = name[:-len('kernel')]
    if name.endswith('/kernel') and base + 'lora_a' in flat:
      trained_rank = flat[base + 'lora_a'].shape[-1]
      if trained_rank != lora.rank:
        # The scale alpha / rank would not be the one trained with.
        raise ValueError(f'LoRA.rank is {lora.rank} but {base}lora_a was '
                         f'trained with rank {trained_rank}')
      update = flat[base + 'lora_a'] @ flat[base + 'lora_b']
      value = (value + lora.scale * update).astype(value.dtype)
    merged[name] = value
  return trees.unflatten(merged)
