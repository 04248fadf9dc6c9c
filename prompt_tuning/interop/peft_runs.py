"""PEFT adapters of training runs, and adapters as our flags take them.

`export_trained` writes what a run trained as the PEFT adapter of its
method: prompt tuning, P-tuning and residual prompts (as the plain prompt
they reduce to) as `PROMPT_TUNING` (`interop.peft`), LoRA and IA3 as PEFT's
(`interop.peft_methods`). Methods PEFT cannot express (deep prompts and
prefixes with our relative positions, Houlsby and Pfeiffer adapters, trained
frozen weights, several methods at once) fail in one line naming the formats
we do write.

`import_adapter` reads any of the three adapter types; `write_imported`
writes it as our train and eval flags take it: `prompt.npy` or
`method_params.safetensors` (`methods.Methods.params_file`) and `serve.gin`.
"""
import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from prompt_tuning import methods as methods_lib
from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.interop import peft as peft_prompts
from prompt_tuning.interop import peft_methods
from prompt_tuning.methods import export as export_lib
from prompt_tuning.methods import params as params_lib
from prompt_tuning.methods import presets
from prompt_tuning.methods import prompt_encoders
from prompt_tuning.model import prompts
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

LORA = peft_methods.LORA
IA3 = peft_methods.IA3
PROMPT_TUNING = peft_prompts.PEFT_TYPE

WHAT_WE_WRITE = (
    'we write PEFT adapters for prompt tuning (P-tuning and residual prompts '
    'as the plain prompt they reduce to), LoRA and IA3 (python -m '
    'prompt_tuning.peft_interop export), and every method as our own export '
    '(python -m prompt_tuning.method_export: prompt.npy, '
    'method_params.safetensors, a t5x checkpoint)')


def export_trained(module: Any, trainable_params: Any,
                   trainable_regexes: Sequence[str], out_dir: str, *,
                   base_model_name_or_path: Optional[str] = None,
                   config_overrides: Optional[Mapping[str, Any]] = None
                   ) -> str:
  """Writes what a run trained as the PEFT adapter of its method.

  Args:
    module: the trained `t5.Transformer` (its config, prompt length and
      methods).
    trainable_params: the trained parameters (at least those the method
      adds), plain or flax-boxed.
    trainable_regexes: what the run trained.
    out_dir: the adapter directory.
    base_model_name_or_path, config_overrides: as
      `peft_methods.export_lora`.

  Returns:
    The adapter's `peft_type`.

  Raises:
    ValueError: a method PEFT cannot express (one line naming it and the
      formats we do write).
  """
  flat = peft_methods.flat_arrays(trainable_params, 'export_trained')
  frozen = sorted(n for n in presets.method_param_names(
      list(flat), trainable_regexes) if not presets.is_method_param(n))
  methods = module.methods or methods_lib.Methods()
  kinds = ([] if not module.prompt_length else
           ['residual prompt' if methods.prompt_encoder is not None
            and methods.prompt_encoder.kind == 'residual' else 'prompt'])
  kinds += [name for name in ('lora', 'ia3') if getattr(methods, name)]
  unsupported = []
  if methods.prefix is not None:
    unsupported.append('deep prompts / prefixes (keys and values with our '
                       'relative positions)')
  if methods.adapter is not None:
    unsupported.append(f'{methods.adapter.placement.capitalize()} adapters')
  if frozen:
    unsupported.append(f'trained weights of the frozen model ({frozen[0]}'
                       f'{" ..." if len(frozen) > 1 else ""})')
  if len(kinds) > 1:
    unsupported.append(f'{" + ".join(kinds)} in one model (a PEFT adapter '
                       'holds one method)')
  if not kinds and not unsupported:
    unsupported.append('a run that trained no method')
  if unsupported:
    raise ValueError(f'PEFT cannot express {"; ".join(unsupported)}: '
                     f'{WHAT_WE_WRITE}')
  common = dict(base_model_name_or_path=base_model_name_or_path,
                config_overrides=config_overrides)
  if methods.lora is not None:
    peft_methods.export_lora(flat, methods.lora, module.config, out_dir,
                             **common)
    return LORA
  if methods.ia3 is not None:
    peft_methods.export_ia3(flat, methods.ia3, module.config, out_dir,
                            **common)
    return IA3
  if methods.prompt_encoder is not None:
    prompt = prompt_encoders.reduce_prompt(module, trees.unflatten(flat))
  else:
    prompt = flat[prompts.PROMPT_PATH]
  peft_prompts.export_peft(prompt, out_dir, **common)
  return peft_prompts.PEFT_TYPE


@dataclasses.dataclass(frozen=True)
class Imported:
  """A PEFT adapter in the form our model takes.

  Attributes:
    peft_type: PROMPT_TUNING, LORA or IA3.
    methods: the `Methods` that run it (LoRA or IA3; `params_file` unset),
      None for a prompt.
    params: method parameters by '/'-joined name ({} for a prompt).
    prompt: the encoder prompt `[P, H]`, or None.
  """
  peft_type: str
  methods: Optional[methods_lib.Methods]
  params: Dict[str, np.ndarray]
  prompt: Optional[np.ndarray] = None


def import_adapter(peft_dir: str, model_config: Optional[Any] = None
                   ) -> Imported:
  """Reads a PEFT adapter directory: prompt tuning, LoRA or IA3.

  Args:
    peft_dir: written by PEFT's `save_pretrained` or by our exports.
    model_config: our model's `T5Config` (or its record dict); when given,
      every tensor is checked against the model's dimensions and layers.

  Raises:
    FileNotFoundError: the directory, config or weights file is missing.
    ValueError: another adapter type, options our method cannot run, or
      shapes that do not fit the model (naming both sides).
  """
  peft_type = peft_prompts.read_adapter_config(peft_dir)['peft_type']
  where = os.path.join(os.fspath(peft_dir), peft_methods.WEIGHTS_FILE)
  if peft_type == PROMPT_TUNING:
    prompt = peft_prompts.import_peft(peft_dir)
    emb_dim = (None if model_config is None else
               peft_methods.config_field(model_config, 'emb_dim'))
    if emb_dim is not None and prompt.shape[1] != emb_dim:
      raise ValueError(f'{where}: the prompt has token_dim {prompt.shape[1]} '
                       f'but our model\'s emb_dim is {emb_dim}')
    return Imported(peft_type, None, {}, prompt)
  if peft_type == LORA:
    lora, params = peft_methods.import_lora(peft_dir, model_config)
    return Imported(peft_type, methods_lib.Methods(lora=lora), params)
  if peft_type == IA3:
    ia3, params = peft_methods.import_ia3(peft_dir, model_config)
    return Imported(peft_type, methods_lib.Methods(ia3=ia3), params)
  raise ValueError(f'{where}: peft_type {peft_type!r} has no counterpart '
                   f'here; we read {PROMPT_TUNING}, {LORA} and {IA3} adapters')


def write_imported(imported: Imported, out_dir: str) -> export_lib.Export:
  """Writes an imported adapter as our train and eval flags take it:
  `prompt.npy` or `method_params.safetensors`, and `serve.gin` (the prompt,
  or the method's config and `methods.Methods.params_file`, and assignment
  maps that keep them out of the frozen checkpoint's restore).

  Evaluate with `--gin_file=embedded/prompt_eval.gin
  --gin_file=OUT/serve.gin`; continue training with the method's gin file
  (e.g. `methods/lora.gin`) then `--gin_file=OUT/serve.gin`.
  """
  os.makedirs(out_dir, exist_ok=True)
  prompt_file = method_params_file = None
  methods = imported.methods
  if imported.prompt is not None:
    prompt_file = os.path.join(out_dir, export_lib.PROMPT_FILE)
    prompt_files.save_prompt(imported.prompt, prompt_file)
  else:
    method_params_file = os.path.join(out_dir, export_lib.METHOD_PARAMS_FILE)
    params_lib.save_method_params(imported.params, method_params_file)
    methods = dataclasses.replace(
        methods, params_file=os.path.abspath(method_params_file))
  written = [p for p in (prompt_file, method_params_file) if p]
  exported = export_lib.Export(
      directory=out_dir, prompt_file=prompt_file,
      method_params_file=method_params_file, checkpoint=None,
      methods=methods,
      prompt_length=0 if imported.prompt is None else len(imported.prompt),
      num_bytes=sum(os.path.getsize(p) for p in written))
  files.atomic_write_bytes(os.path.join(out_dir, export_lib.SERVE_GIN),
                           export_lib.serving_gin(exported).encode())
  return exported
