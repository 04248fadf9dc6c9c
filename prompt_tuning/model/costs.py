"""Parameter, FLOP and byte arithmetic of a T5, from its config alone.

Parameters: `t5_parameter_shapes` gives every parameter's shape in closed form
(no tracing), named as in the parameter tree; `count_parameters` their total.

FLOPs: what a step should cost, and MFU; bytes: the optimizer state.

Letters: B batch, T input length, P prompt length, S = P + T encoder length,
U target (decoder) length, H d_model, I = heads x head dim (attention inner
size), F MLP size, G MLP input projections (2 for T5 1.1's gated GELU),
V vocabulary, Le / Ld encoder / decoder layers.

Model FLOPs count matmuls only, 2 per multiply-add (embedding lookups,
norms, softmax and elementwise work are left out), split into

  W, weight matmuls (activations x parameters), forward:
    encoder  B S Le 2 (4 H I + (G + 1) H F)
    decoder  B U Ld 2 (4 H I + 2 H I + (G + 1) H F)   self q k v o, cross q o
             + B S Ld 2 (2 H I)                        cross k v of the encoder
    logits   B U 2 H V
  A, attention matmuls (activations x activations: q k^T and weights x v):
    encoder  B Le 2 (2 S S I);  decoder  B Ld 2 (2 U U I + 2 U S I)
    (the full causal matrix is computed, so it is counted in full).

A backward pass needs, for each weight matmul y = x w, the activation
gradient dx = dy w^T (as much as the forward) and, only for trained weights,
the weight gradient dw = x^T dy (as much again); an attention matmul has two
activation operands, so twice its forward. Hence

  prompt tuning (frozen weights):  W + W      + A + 2 A  =  2 W + 3 A
  model tuning:                    W + W + W  + A + 2 A  =  3 W + 3 A

With N weights touched by every token, W is about 2 N FLOPs per token, so a
prompt-tuning step is about 4 N per token against 6 N for model tuning: the
prompt sits under the first layer, so every layer still needs its activation
gradients, but no weight gets a gradient. (XLA also drops the few activation
gradients nothing needs, e.g. below the first decoder layer's
cross-attention, so its count is a little lower than 2 W + 3 A.)
Rematerialisation adds about one forward pass of the layers to the work
done; model FLOPs, and so MFU, leave it out (as is usual).
"""
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np

from prompt_tuning.model import prompts
from prompt_tuning.model import t5

PyTree = Any


# ----------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------


def t5_parameter_shapes(config: t5.T5Config,
                        prompt_length: int = 0) -> Dict[str, Tuple[int, ...]]:
  """The shapes of `t5.Transformer(config, prompt_length)`'s parameters.

  Computed in closed form (no tracing), named as in the parameter tree
  (flaxformer's names, '/'-joined), so trainable regexes can be matched
  against them as the trainer does. Methods add no parameters here.

  Args:
    config: the model's sizes.
    prompt_length: P; 0 for a model without a prompt.

  Returns:
    parameter name -> shape, e.g. 'encoder/prompt/prompt/prompt' -> (P, H).
  """
  h, v, mlp = config.emb_dim, config.vocab_size, config.mlp_dim
  joined = config.num_heads * config.head_dim
  shapes = {'token_embedder/embedding': (v, h)}

  def attention(prefix):
    for name in ('query', 'key', 'value'):
      shapes[f'{prefix}/{name}/kernel'] = (h, joined)
    shapes[f'{prefix}/out/kernel'] = (joined, h)

  def mlp_block(prefix):
    n = len(config.mlp_activations)
    for name in ([f'wi_{i}' for i in range(n)] if n > 1 else ['wi']):
      shapes[f'{prefix}/mlp/{name}/kernel'] = (h, mlp)
    shapes[f'{prefix}/mlp/wo/kernel'] = (mlp, h)

  relpos = (config.num_heads, config.relative_attention_num_buckets)
  if prompt_length:
    shapes[prompts.PROMPT_PATH] = (prompt_length, h)
  # (stack, layer count, its attention sublayers as (norm, attention)).
  stacks = (
      ('encoder', config.num_encoder_layers,
       (('pre_attention_layer_norm', 'attention'),)),
      ('decoder', config.num_decoder_layers,
       (('pre_self_attention_layer_norm', 'self_attention'),
        ('pre_cross_attention_layer_norm', 'encoder_decoder_attention'))),
  )
  for stack, num_layers, sublayers in stacks:
    shapes[f'{stack}/relpos_bias/rel_embedding'] = relpos
    for i in range(num_layers):
      layer = f'{stack}/layers_{i}'
      for norm, name in sublayers:
        shapes[f'{layer}/{norm}/scale'] = (h,)
        attention(f'{layer}/{name}')
      shapes[f'{layer}/pre_mlp_layer_norm/scale'] = (h,)
      mlp_block(layer)
    shapes[f'{stack}/{stack}_norm/scale'] = (h,)
  if not config.logits_via_embedding:
    shapes['decoder/logits_dense/kernel'] = (h, v)
  return shapes


def count_parameters(config: t5.T5Config, prompt_length: int = 0) -> int:
  """Number of parameters of `t5.Transformer(config, prompt_length)`.

  For `t5.CONFIGS` with `prompt_length=100` this gives the paper's Table 4
  totals (e.g. 11,135,741,952 for XXL).
  """
  return sum(math.prod(s) for s in
             t5_parameter_shapes(config, prompt_length).values())


# ----------------------------------------------------------------------------
# FLOPs.
# ----------------------------------------------------------------------------

METHODS = ('prompt_tuning', 'model_tuning', 'forward')

# Peak dense matmul FLOP/s per device, from the vendors' data sheets, by
# device kind (`jax.Device.device_kind`, matched by substring, first match
# wins) and dtype; float32 on NVIDIA GPUs is TF32 on the tensor cores (XLA's
# default precision for float32 matmuls there). CPUs are not listed: no MFU.
PEAK_FLOPS: Tuple[Tuple[str, Dict[str, float]], ...] = (
    ('H100 PCIe', {'bfloat16': 756e12, 'float32': 378e12}),
    ('H100 NVL', {'bfloat16': 835e12, 'float32': 418e12}),
    ('H100', {'bfloat16': 989.4e12, 'float32': 494.7e12}),  # SXM
    ('H200', {'bfloat16': 989.4e12, 'float32': 494.7e12}),
    ('GH200', {'bfloat16': 989.4e12, 'float32': 494.7e12}),
    ('A100', {'bfloat16': 312e12, 'float32': 156e12}),
    ('L4', {'bfloat16': 121e12, 'float32': 60e12}),
    ('TPU v4', {'bfloat16': 275e12}),
    ('TPU v5 lite', {'bfloat16': 197e12}),
    ('TPU v5e', {'bfloat16': 197e12}),
    ('TPU v5', {'bfloat16': 459e12}),  # v5p
    ('TPU v6 lite', {'bfloat16': 918e12}),
    ('TPU v6e', {'bfloat16': 918e12}),
)


def peak_flops(device_kind: str, dtype: str) -> Optional[float]:
  """Peak dense FLOP/s of one device for `dtype` matmuls, None if unknown."""
  for kind, peaks in PEAK_FLOPS:
    if kind.lower() in device_kind.lower():
      return peaks.get(dtype)
  return None


def forward_flops(config: t5.T5Config, batch_size: int, input_length: int,
                  target_length: int, prompt_length: int) -> Dict[str, float]:
  """Forward matmul FLOPs of one batch: {'weight', 'attention', 'total'}."""
  b, u = batch_size, target_length
  s = prompt_length + input_length
  h, f, v = config.emb_dim, config.mlp_dim, config.vocab_size
  i = config.num_heads * config.head_dim
  g = len(config.mlp_activations)
  le, ld = config.num_encoder_layers, config.num_decoder_layers
  mlp = (g + 1) * h * f
  weight = (b * s * le * 2 * (4 * h * i + mlp)
            + b * u * ld * 2 * (6 * h * i + mlp) + b * s * ld * 2 * 2 * h * i
            + b * u * 2 * h * v)
  attention = b * le * 2 * 2 * s * s * i + b * ld * 2 * (2 * u * u * i
                                                          + 2 * u * s * i)
  return {'weight': float(weight), 'attention': float(attention),
          'total': float(weight + attention)}


def step_flops(config: t5.T5Config, batch_size: int, input_length: int,
               target_length: int, prompt_length: int, method: str) -> float:
  """Model FLOPs of one step: 2 W + 3 A (prompt tuning), 3 W + 3 A (model
  tuning) or W + A (a forward pass); see the module docstring.

  Raises:
    ValueError: an unknown method.
  """
  if method not in METHODS:
    raise ValueError(f'unknown method {method!r}; expected one of '
                     f'{list(METHODS)}')
  fwd = forward_flops(config, batch_size, input_length, target_length,
                      prompt_length)
  weight_factor = {'prompt_tuning': 2, 'model_tuning': 3, 'forward': 1}[method]
  attention_factor = 1 if method == 'forward' else 3
  return weight_factor * fwd['weight'] + attention_factor * fwd['attention']


def decode_flops(config: t5.T5Config, batch_size: int, encoder_length: int,
                 cache_length: int) -> Dict[str, float]:
  """Matmul FLOPs of greedy decoding with the key/value cache:
  {'prefill', 'step'}.

  'prefill' is the projection of the S = P + T encoder positions to the
  cross-attention keys and values in every decoder layer (B S Ld 2 (2 H I)).
  The decoder is written as if each step projected them again, but they do
  not change during decoding, and XLA hoists them out of the decoding loop
  (loop-invariant code motion): they are computed once per batch (the
  inference benchmark measures the time per step to show it). 'step' is one
  step with one new token per row: the new token's projections, attention
  over the L-long self cache and the S encoder positions, and the logits.
  """
  b, s, l = batch_size, encoder_length, cache_length
  h, f, v = config.emb_dim, config.mlp_dim, config.vocab_size
  i = config.num_heads * config.head_dim
  g = len(config.mlp_activations)
  ld = config.num_decoder_layers
  prefill = b * s * ld * 2 * 2 * h * i
  step = (b * ld * 2 * (6 * h * i + (g + 1) * h * f)
          + b * ld * 2 * (2 * l * i + 2 * s * i) + b * 2 * h * v)
  return {'prefill': float(prefill), 'step': float(step)}


def mfu(flops_per_step: float, step_time_s: float, device_kind: str,
        dtype: str, num_devices: int = 1) -> Optional[float]:
  """Model FLOPs utilisation: achieved FLOP/s over the devices' peak.

  None where the peak is unknown (CPUs, unlisted accelerators).
  """
  peak = peak_flops(device_kind, dtype)
  if peak is None or step_time_s <= 0:
    return None
  return flops_per_step / step_time_s / (peak * num_devices)


# ----------------------------------------------------------------------------
# Optimizer state.
# ----------------------------------------------------------------------------


def adafactor_state_values(shape: Sequence[int],
                           min_dim_size_to_factor: int = 128) -> int:
  """Values optax's Adafactor keeps for one parameter of `shape` (no momentum).

  NOTE: the second moment is factored (a row and a column vector) only when
  the two largest axes both have at least `min_dim_size_to_factor` entries;
  otherwise it is kept whole, as big as the parameter. A 100 x 256 prompt is
  not factored (100 < 128): its state is the prompt's size plus 2. optax
  keeps a 1-element placeholder for each unused part.
  """
  shape = tuple(int(d) for d in shape)
  size = int(np.prod(shape))
  if len(shape) >= 2:
    order = np.argsort(shape, kind='stable')
    second, largest = int(order[-2]), int(order[-1])
    if shape[second] >= min_dim_size_to_factor:
      # v_row (largest axis removed) + v_col (second removed) + 1 for v.
      return size // shape[largest] + size // shape[second] + 1
  return size + 2  # v whole, plus 1-element v_row and v_col.


def adafactor_state_bytes(params: PyTree,
                          min_dim_size_to_factor: int = 128) -> int:
  """Bytes of `trainer.adafactor()`'s state for `params` (float32 leaves):
  the per-parameter values above plus one int32 step count."""
  values = sum(adafactor_state_values(x.shape, min_dim_size_to_factor)
               for x in jax.tree_util.tree_leaves(params))
  return 4 * values + 4
