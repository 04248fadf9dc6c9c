"""The methods of the comparison and their trainable regexes.

`gin/methods/<name>.gin` holds the same choice for the trainer.
"""
import dataclasses
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple

from prompt_tuning import methods as methods_lib
from prompt_tuning.methods import adapters
from prompt_tuning.methods import ia3
from prompt_tuning.methods import lora
from prompt_tuning.methods import prefixes
from prompt_tuning.methods import prompt_encoders
from prompt_tuning.model import prompts

Methods = methods_lib.Methods

# NOTE: T5 1.1 has no biases, so BitFit's analogue is tuning the RMS layer
# norms' scales (every `*layer_norm/scale` and the final `*_norm/scale`).
NORM_SCALE_REGEX = r'.*norm/scale'
MODEL_TUNING_REGEX = r'.*'
# Parameters that methods add (the frozen checkpoint has none of them).
METHOD_REGEXES = (prompts.PROMPT_REGEX, prefixes.PREFIX_REGEX, lora.LORA_REGEX,
                  adapters.ADAPTER_REGEX, ia3.IA3_REGEX)

# How each preset's result is exported for serving (`method_export`).
EXPORT_PROMPT = 'prompt'  # a plain prompt [P, H] (.npy)
EXPORT_MERGED = 'merged'  # merged into the frozen kernels (t5x checkpoint)
EXPORT_PARAMS = 'method_params'  # the method's (folded) parameters
EXPORT_MODEL = 'model'  # every parameter (t5x checkpoint)


@dataclasses.dataclass(frozen=True)
class Preset:
  """One method of the comparison.

  Attributes:
    name: as in `gin/methods/<name>.gin`.
    summary: one line for tables.
    methods: what to plug into the T5 (None: the plain model).
    trainable_regexes: select exactly this method's parameters.
    uses_prompt: the encoder prompt of length P exists (prompt family);
      otherwise P is the prefix length where there is one.
    learning_rate: Adafactor's constant rate in `gin/methods/<name>.gin`.
    export: EXPORT_PROMPT, EXPORT_MERGED, EXPORT_PARAMS or EXPORT_MODEL.
  """
  name: str
  summary: str
  methods: Optional[Methods]
  trainable_regexes: Tuple[str, ...]
  uses_prompt: bool
  learning_rate: float
  export: str

  def with_length(self, length: int) -> 'Preset':
    """The same method with prompt or prefix length P = `length`."""
    if self.methods is None or self.methods.prefix is None:
      return self
    return dataclasses.replace(self, methods=dataclasses.replace(
        self.methods, prefix=dataclasses.replace(self.methods.prefix,
                                                 length=length)))

  def prompt_length(self, length: int) -> int:
    """`t5.Transformer.prompt_length` for P = `length`."""
    return length if self.uses_prompt else 0


def _presets() -> Dict[str, Preset]:
  """The comparison's methods with their default hyperparameters."""
  encoder = prompt_encoders.PromptEncoder
  table = [
      Preset('prompt_tuning', 'prompt tuning (Lester et al. 2021)', None,
             (prompts.PROMPT_REGEX,), True, 0.3, EXPORT_PROMPT),
      Preset('p_tuning', 'P-tuning: BiLSTM + MLP prompt encoder',
             Methods(prompt_encoder=encoder('lstm')), (prompts.PROMPT_REGEX,),
             True, 0.01, EXPORT_PROMPT),
      Preset('p_tuning_mlp', 'P-tuning with an MLP prompt encoder',
             Methods(prompt_encoder=encoder('mlp')), (prompts.PROMPT_REGEX,),
             True, 0.01, EXPORT_PROMPT),
      Preset('residual_prompt', 'residual prompt tuning',
             Methods(prompt_encoder=encoder('residual')),
             (prompts.PROMPT_REGEX,), True, 0.3, EXPORT_PROMPT),
      Preset('p_tuning_v2', 'deep prompts / P-tuning v2 (encoder prefixes)',
             Methods(prefix=prefixes.Prefix()), (prefixes.PREFIX_REGEX,),
             False, 0.3, EXPORT_PARAMS),
      Preset('prefix_tuning',
             'prefix tuning: MLP-reparameterised, encoder and decoder',
             Methods(prefix=prefixes.Prefix(decoder=True, reparam_dim=512)),
             (prefixes.PREFIX_REGEX,), False, 0.001, EXPORT_PARAMS),
      Preset('lora', 'LoRA r=4 on attention query and value',
             Methods(lora=lora.LoRA()), (lora.LORA_REGEX,), False, 0.01,
             EXPORT_MERGED),
      Preset('adapter_houlsby', 'adapters after attention and MLP (Houlsby)',
             Methods(adapter=adapters.Adapter(placement='houlsby')),
             (adapters.ADAPTER_REGEX,), False, 0.01, EXPORT_PARAMS),
      Preset('adapter_pfeiffer', 'adapters after the MLP (Pfeiffer)',
             Methods(adapter=adapters.Adapter(placement='pfeiffer')),
             (adapters.ADAPTER_REGEX,), False, 0.01, EXPORT_PARAMS),
      Preset('ia3', '(IA)^3 rescaling of keys, values, MLP hidden',
             Methods(ia3=ia3.IA3()), (ia3.IA3_REGEX,), False, 0.01,
             EXPORT_PARAMS),
      Preset('norm_scale', 'layer-norm scales only (BitFit analogue)', None,
             (NORM_SCALE_REGEX,), False, 0.01, EXPORT_MODEL),
      Preset('model_tuning', 'model tuning (every parameter)', None,
             (MODEL_TUNING_REGEX,), False, 0.001, EXPORT_MODEL),
  ]
  return {p.name: p for p in table}


PRESETS: Mapping[str, Preset] = _presets()


def preset(name: str) -> Preset:
  """The preset called `name`.

  Raises:
    ValueError: an unknown name, listing the known ones.
  """
  if name not in PRESETS:
    raise ValueError(f'unknown method {name!r}; known methods: '
                     f'{", ".join(PRESETS)}')
  return PRESETS[name]


def assignment_map(trainable_regexes: Sequence[str]
                   ) -> Tuple[Tuple[str, None], ...]:
  """t5x assignment rules that initialise (not load) the method parameters.

  Model tuning and norm-scale tuning start from the checkpoint: their
  regexes name parameters it holds, so they get no rule.
  """
  return tuple((r, None) for r in trainable_regexes if r in METHOD_REGEXES)


def method_param_names(flat_names: Sequence[str],
                       trainable_regexes: Sequence[str]) -> Tuple[str, ...]:
  """The names among `flat_names` that the regexes select (the trainer's
  rule: a full match of any)."""
  patterns = [re.compile(r) for r in trainable_regexes]
  return tuple(n for n in flat_names if any(p.fullmatch(n) for p in patterns))


def is_method_param(name: str) -> bool:
  """Whether a method adds parameter `name` (the frozen model has none)."""
  return any(re.fullmatch(r, name) for r in METHOD_REGEXES)
