"""Encoder input: the prompt computed by a network (P-tuning, residual prompt
tuning) instead of learned directly.

Parameters under `encoder/prompt/` (the learned vectors at
`encoder/prompt/inputs`). At export the encoder is evaluated once
(`reduce_prompt`) and served as a plain prompt.

Letters: P prompt length, H embed, R hidden width.
"""
import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.methods import params as params_lib
from prompt_tuning.model import prompts

Array = jax.Array
Initializer = params_lib.Initializer
Linear = params_lib.Linear
method_param = params_lib.method_param


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
    params_lib.check_choice('PromptEncoder.kind', self.kind,
                            ('lstm', 'mlp', 'residual'))
    params_lib.check_positive('PromptEncoder.hidden_dim', self.hidden_dim)
    if self.kind == 'lstm' and self.hidden_dim and self.hidden_dim % 2:
      raise ValueError(f'PromptEncoder.hidden_dim {self.hidden_dim} must be '
                       'even for the bidirectional LSTM (half per direction)')

  def width(self, embed_dim: int) -> int:
    if self.hidden_dim:
      return self.hidden_dim
    return embed_dim // 2 if self.kind == 'residual' else embed_dim


class LSTM(nn.Module):
  """One direction of an LSTM over a sequence `[P, H_in] -> [P, R]`.

  Written out (rather than flax's cells) so its parameters carry logical axis
  names and readable names: `input_kernel [H_in, 4R]`, `recurrent_kernel
  [R, 4R]`, `bias [4R]`; gates in the order input, forget, cell, output.
  """
  hidden: int
  reverse: bool = False
  methods: Optional[params_lib.MethodsLike] = None

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
  methods: params_lib.MethodsLike
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
  methods: Optional[params_lib.MethodsLike] = None
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


def encoder_prompt(methods: Optional[params_lib.MethodsLike], length: int,
                   embed_dim: int, init: Initializer) -> Array:
  """The encoder's learned prompt `[P, H]`, made in the calling module's
  scope under the name 'prompt': plain, or through a `PromptEncoder`."""
  if methods is None or methods.prompt_encoder is None:
    return prompts.EncoderPrompt(length, embed_dim, init, name='prompt')()
  return ReparameterizedPrompt(methods, length, embed_dim, init,
                               name='prompt')()


def reduce_prompt(module: Any, params: Any) -> np.ndarray:
  """Evaluates the model's prompt encoder once: the prompt `[P, H]`.

  Args:
    module: the `t5.Transformer` (its methods, prompt length and init).
    params: its parameters.
  """
  methods = dataclasses.replace(module.methods, params_file=None)
  encoder = ReparameterizedPrompt(
      methods, module.prompt_length, module.config.emb_dim, module.prompt_init)
  return np.asarray(encoder.apply({'params': params['encoder']['prompt']}))
