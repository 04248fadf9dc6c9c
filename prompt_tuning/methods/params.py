"""Method parameters: how the methods declare them, and their file on disk.

Every parameter a method adds is made by `method_param`, float32 with logical
axis names, like the T5's own. A method-parameter file (safetensors, names
'/'-joined paths) holds an exported method's parameters; with
`Methods.params_file` set, `method_param` reads each value from it instead of
initialising it, so an exported method can be served.
"""
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.utils import files

Array = jax.Array
Initializer = Callable[..., Array]
# A `prompt_tuning.methods.Methods`, or None; only its `params_file` is read
# here.
MethodsLike = Any


def check_choice(field: str, value: str, known: Sequence[str]) -> None:
  if value not in known:
    raise ValueError(f'{field} is {value!r}; expected one of {list(known)}')


def check_positive(field: str, value: Any) -> None:
  if value is not None and value <= 0:
    raise ValueError(f'{field} must be positive, got {value}')


# ----------------------------------------------------------------------------
# Method-parameter files.
# ----------------------------------------------------------------------------


def save_method_params(flat_params: Dict[str, Any], path: str) -> None:
  """Writes `{'/'-joined name: array}` as a safetensors file, atomically."""
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  arrays = {name: np.ascontiguousarray(np.asarray(value, np.float32))
            for name, value in sorted(flat_params.items())}
  files.atomic_write_bytes(os.fspath(path), safetensors.numpy.save(arrays))


def read_method_param(path: str, name: str,
                      expected_shape: Tuple[int, ...]) -> np.ndarray:
  """One parameter of a method-parameter file, its shape checked.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file lacks `name`, or holds it with another shape (a
      prefix file made for another model size or prefix length, say).
  """
  import safetensors  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f'method parameter file {path} does not exist')
  with safetensors.safe_open(path, framework='numpy') as f:
    names = list(f.keys())
    if name not in names:
      raise ValueError(
          f'method parameter file {path} has no parameter {name!r} that this '
          f'model expects with shape {expected_shape}; it holds '
          f'{sorted(names)[:6]}{" ..." if len(names) > 6 else ""}')
    array = f.get_tensor(name)
  if tuple(array.shape) != tuple(expected_shape):
    raise ValueError(
        f'method parameter file {path} holds {name!r} with shape '
        f'{tuple(array.shape)}, but this model expects {tuple(expected_shape)}')
  return array


# ----------------------------------------------------------------------------
# Declaring parameters.
# ----------------------------------------------------------------------------


def _from_params_file(path: str, name: str) -> Initializer:
  """An initialiser returning parameter `name` of a method-parameter file."""

  def init(rng, shape, dtype=jnp.float32):
    del rng
    array = read_method_param(path, name, tuple(shape))
    return jnp.asarray(array, dtype)

  return init


def method_param(module: nn.Module, methods: Optional[MethodsLike], name: str,
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
  methods: Optional[MethodsLike] = None
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
