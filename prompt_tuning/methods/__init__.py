"""Parameter-efficient methods that plug into the one T5 (`model.t5`).

Each method is a frozen config dataclass plus a small flax module, in a module
of its family, used at one of the named plug-in points of the shared model
(`model.plugins`; the T5 is never copied):

  encoder input: `PromptEncoder` (`prompt_encoders`: P-tuning, BiLSTM + MLP
    or MLP alone; residual prompt tuning), parameters under `encoder/prompt/`;
  attention keys and values: `Prefix` (`prefixes`: deep prompts / P-tuning
    v2 / prefix tuning), under `encoder/prefix/` and `decoder/prefix/`;
  keys, values and MLP hidden: `IA3` (`ia3`) rescaling,
    `.../ia3_{key,value,hidden}`;
  projections: `LoRA` (`lora`), beside each targeted kernel, `.../lora_{a,b}`;
  sublayer outputs: `Adapter` (`adapters`: Houlsby, attention and MLP;
    Pfeiffer, MLP), `.../<sublayer>_adapter/`.

`Methods` bundles the configs (each optional, so methods can be combined) and
is the one attribute the T5 modules take (`t5.Transformer.methods`): it
implements the hooks of `plugins.Plugins` by delegating to the families. With
`methods=None` the model and its parameter tree are exactly T5 1.1's.

Every method starts as a no-op where one exists: LoRA's up-projection and the
adapters' up-projections are zero, IA3's vectors are ones. Prefixes and prompt
encoders have no no-op value; their absence (no prefix, prompt length 0) is
the frozen model.

`presets` names the methods of the comparison, each with the trainable
regexes that select exactly its parameters; `gin/methods/<name>.gin` holds the
same choice for the trainer. `export` reduces a trained method to its serving
form.

Letters: B batch, T query length, S key length, P prompt / prefix length,
H embed, N heads, D head dim, F mlp dim, L layers, R bottleneck / rank.
"""
import dataclasses
from typing import Any, Callable, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning.methods import adapters
from prompt_tuning.methods import ia3 as ia3_lib
from prompt_tuning.methods import lora as lora_lib
from prompt_tuning.methods import prefixes
from prompt_tuning.methods import prompt_encoders
from prompt_tuning.model import plugins

Array = jax.Array

# The family configs, by the names gin binds (`methods.LoRA.rank = 8`).
PromptEncoder = prompt_encoders.PromptEncoder
Prefix = prefixes.Prefix
LoRA = lora_lib.LoRA
Adapter = adapters.Adapter
IA3 = ia3_lib.IA3


@dataclasses.dataclass(frozen=True)
class Methods(plugins.Plugins):
  """The methods plugged into one T5; each None when unused.

  Attributes:
    prompt_encoder: reparameterises the encoder prompt (needs
      `t5.Transformer.prompt_length > 0`).
    prefix: attention prefixes.
    lora: low-rank projection updates.
    adapter: bottleneck adapters.
    ia3: rescaling vectors.
    params_file: a method-parameter file (`params.save_method_params`); when
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

  # The hooks of `plugins.Plugins`.

  def encoder_prompt(self, length: int, embed_dim: int,
                     init: Callable[..., Array]) -> Array:
    return prompt_encoders.encoder_prompt(self, length, embed_dim, init)

  def position_bias(self, stack: str, relpos: Callable[..., Array],
                    query_length: int, key_length: int,
                    bidirectional: bool) -> Array:
    return prefixes.relpos_bias(relpos, query_length, key_length,
                                bidirectional,
                                prefixes.stack_prefix(self, stack))

  def stack_prefixes(self, stack: str, config: Any, num_layers: int
                     ) -> Optional[Mapping[str, Array]]:
    return prefixes.stack_prefixes(self, stack, config, num_layers)

  def projection(self, module: nn.Module, x: Array, y: Array,
                 kernel_shape: Tuple[int, int],
                 kernel_axes: Tuple[Optional[str], Optional[str]]) -> Array:
    if lora_lib.lora_applies(self, module):
      y = y + lora_lib.lora_delta(module, self, x, kernel_shape, kernel_axes)
    return y

  def rescale(self, module: nn.Module, point: str, x: Array,
              axis: Optional[str]) -> Array:
    scale = ia3_lib.ia3_scale(module, self, f'ia3_{point}', x.shape[-1], axis)
    if scale is not None:
      x = x * jnp.asarray(scale, x.dtype)
    return x

  def sublayer_output(self, sublayer: str, x: Array) -> Array:
    return adapters.adapter(self, sublayer)(x)
