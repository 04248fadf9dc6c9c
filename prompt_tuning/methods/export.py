"""Reduces a trained method to its serving form and writes it to disk.

What each method becomes (`reduce`), in order:
- a prompt encoder (P-tuning, residual prompt) is evaluated once: the result
  is a plain prompt `[P, H]`, served exactly as prompt tuning;
- MLP-reparameterised prefixes are evaluated once and folded into plain
  per-layer prefixes `[L, P, N*D]`;
- LoRA updates are merged into the frozen kernels: `W + (alpha / r) A B`.

`export` then writes what remains:
- `prompt.npy`: the plain prompt (`prompts/from_file.gin` loads it);
- `method_params.safetensors`: the parameters of methods that stay in the
  model (prefixes, adapters, IA3), named by their '/'-joined paths; served by
  setting `methods.Methods.params_file` to it, with the frozen weights from
  the original checkpoint;
- `checkpoint/`: a t5x checkpoint of the frozen model's parameters, when
  training changed them (LoRA merged, norm-scale or model tuning).

and `serve.gin`, the gin bindings that load the export back: include it
after an eval or infer config, e.g.

    python -m prompt_tuning.eval --gin_file=embedded/prompt_eval.gin \
      --gin_file=/tmp/run/export/serve.gin \
      --gin.EVAL_OUTPUT_DIR="'/tmp/run/eval_export'"

In Python, `serving_model` and `Export.assignment_map` give what
`inference.evaluate` and `inference.infer` need.

A finished training run is exported with the gin files it was trained with:

    python -m prompt_tuning.method_export \
      --gin_file=embedded/prompt_tune.gin --gin_file=methods/lora.gin \
      --gin.MODEL_DIR="'/tmp/lora'" [--output_dir=/tmp/lora/export]

which reads the trained parameters from the run's last train state and the
frozen ones from its `INITIAL_CHECKPOINT_PATH`.
"""
import dataclasses
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.checkpoints import t5x
from prompt_tuning import methods as methods_lib
from prompt_tuning.methods import lora
from prompt_tuning.methods import params as params_lib
from prompt_tuning.methods import prefixes
from prompt_tuning.methods import presets
from prompt_tuning.methods import prompt_encoders
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

PyTree = Any

PROMPT_FILE = 'prompt.npy'
METHOD_PARAMS_FILE = 'method_params.safetensors'
CHECKPOINT_DIR = 'checkpoint'
SERVE_GIN = 'serve.gin'


# ----------------------------------------------------------------------------
# Reduction.
# ----------------------------------------------------------------------------


def reduce(module: Any, params: PyTree
           ) -> Tuple[Optional[methods_lib.Methods], Dict[str, Any]]:
  """The serving form of a trained model: (methods left, parameters).

  Prompt encoders become a plain prompt at `encoder/prompt/prompt/prompt`,
  reparameterised prefixes plain prefixes, LoRA merged kernels. Both
  forms give the same logits up to float rounding.
  """
  methods = module.methods
  params = trees.unflatten({n: np.asarray(v)
                            for n, v in trees.flatten(params).items()})
  if methods is None:
    return None, params
  if methods.prompt_encoder is not None and module.prompt_length:
    prompt = prompt_encoders.reduce_prompt(module, params)
    params['encoder']['prompt'] = {'prompt': {'prompt': prompt}}
  methods = dataclasses.replace(methods, prompt_encoder=None)
  prefix = methods.prefix
  if prefix is not None and prefix.reparam_dim is not None:
    for stack in ('encoder', 'decoder'):
      if prefixes.stack_prefix(methods, stack) is not None:
        params[stack]['prefix'] = prefixes.fold_prefixes(module, params,
                                                         stack)
    methods = dataclasses.replace(
        methods, prefix=dataclasses.replace(prefix, reparam_dim=None))
  if methods.lora is not None:
    params = lora.merge_lora(params, methods.lora)
    methods = dataclasses.replace(methods, lora=None)
  methods = dataclasses.replace(methods, params_file=None)
  if methods == methods_lib.Methods():
    methods = None
  return methods, params


# ----------------------------------------------------------------------------
# Export and serving.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Export:
  """What `export` wrote.

  Attributes:
    directory: the export directory.
    prompt_file: `prompt.npy` (`[P, H]`) or None.
    method_params_file: `method_params.safetensors` or None.
    checkpoint: a t5x checkpoint of the frozen model's parameters, or None
      (serve with the original checkpoint).
    methods: what the serving model plugs in (its `params_file` set), or None.
    prompt_length: the serving model's prompt length.
    num_bytes: total size of the files written (`serve.gin` aside).
  """
  directory: str
  prompt_file: Optional[str]
  method_params_file: Optional[str]
  checkpoint: Optional[str]
  methods: Optional[methods_lib.Methods]
  prompt_length: int
  num_bytes: int

  def assignment_map(self) -> Tuple[Tuple[str, None], ...]:
    """t5x rules for `setup_model`: the parameters the export supplies."""
    rules = []
    if self.prompt_file:
      rules.append((prompts.PROMPT_REGEX, None))
    if self.methods is not None:
      rules += [(r, None) for r in presets.METHOD_REGEXES[1:]]
    return tuple(rules)

  def checkpoint_path(self, initial_checkpoint_path: str) -> str:
    return self.checkpoint or initial_checkpoint_path


def _size(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(path) for f in files)


def export(model: models.EncoderDecoderModel, params: PyTree,
           trainable_regexes: Sequence[str], output_dir: str) -> Export:
  """Writes the serving form of `params` (all of the model's parameters,
  trained ones included) to `output_dir`.

  Args:
    model: the model trained (its module's `methods` and prompt length).
    params: its parameters, frozen and trained.
    trainable_regexes: what was trained; when they select any parameter of
      the frozen model (norm-scale or model tuning), the frozen model is
      written as a t5x checkpoint.
    output_dir: created if needed.

  Returns:
    An `Export` describing the files.
  """
  module = model.module
  os.makedirs(output_dir, exist_ok=True)
  names = list(trees.flatten(params))
  frozen_trained = any(not presets.is_method_param(n) for n in
                       presets.method_param_names(names, trainable_regexes))
  lora_merged = module.methods is not None and module.methods.lora is not None
  methods, served = reduce(module, params)
  flat = trees.flatten(served)
  written = []
  prompt_file = method_params_file = checkpoint = None
  if prompts.PROMPT_PATH in flat and module.prompt_length:
    prompt_file = os.path.join(output_dir, PROMPT_FILE)
    prompt_files.save_prompt(flat[prompts.PROMPT_PATH], prompt_file)
    written.append(prompt_file)
  method_flat = {n: v for n, v in flat.items()
                 if presets.is_method_param(n) and n != prompts.PROMPT_PATH}
  if methods is not None and method_flat:
    method_params_file = os.path.join(output_dir, METHOD_PARAMS_FILE)
    params_lib.save_method_params(method_flat, method_params_file)
    methods = dataclasses.replace(methods, params_file=method_params_file)
    written.append(method_params_file)
  if frozen_trained or lora_merged:
    checkpoint = os.path.join(output_dir, CHECKPOINT_DIR)
    t5x.save_t5x(trees.unflatten({n: v for n, v in flat.items()
                                  if not presets.is_method_param(n)}),
                 checkpoint, overwrite=True)
    written.append(checkpoint)
  exported = Export(
      directory=output_dir, prompt_file=prompt_file,
      method_params_file=method_params_file, checkpoint=checkpoint,
      methods=methods,
      prompt_length=module.prompt_length if prompt_file else 0,
      num_bytes=sum(_size(p) for p in written))
  files.atomic_write_bytes(os.path.join(output_dir, SERVE_GIN),
                                 serving_gin(exported).encode())
  return exported


def _gin_value(value: Any) -> str:
  return repr(value)


def serving_gin(exported: Export) -> str:
  """Gin bindings that serve `exported` with the eval and infer configs
  (`runs/prompt_eval.gin`, `runs/prompt_infer.gin`): its prompt, its
  checkpoint, its methods and the matching assignment maps."""
  lines = [
      '# Serves the export in this directory. Include it after an eval or '
      'infer config,',
      '# e.g. --gin_file=embedded/prompt_eval.gin '
      f'--gin_file={os.path.join(exported.directory, SERVE_GIN)}',
      'from __gin__ import dynamic_registration', '',
      'from prompt_tuning.serving import inference',
      'from prompt_tuning import methods',
      'from prompt_tuning.model import prompts',
      'from prompt_tuning.model import t5', '']
  if exported.prompt_file:
    prompt_file = os.path.abspath(exported.prompt_file)
    lines += [f'PROMPT_LENGTH = {exported.prompt_length}',
              f'PROMPT_FILE = {_gin_value(prompt_file)}',
              't5.Transformer.prompt_length = %PROMPT_LENGTH',
              't5.Transformer.prompt_init = @prompts.from_file()',
              'prompts.from_file.path = %PROMPT_FILE']
  else:
    lines += ['PROMPT_LENGTH = 0', 'PROMPT_FILE = None',
              't5.Transformer.prompt_length = 0']
  if exported.checkpoint:
    lines.append('INITIAL_CHECKPOINT_PATH = '
                 f'{_gin_value(os.path.abspath(exported.checkpoint))}')
  if exported.methods is None:
    lines.append('t5.Transformer.methods = None')
  else:
    lines += ['t5.Transformer.methods = @methods.Methods()',
              'methods.Methods.params_file = '
              f'{_gin_value(os.path.abspath(exported.methods.params_file))}']
    for field in dataclasses.fields(exported.methods):
      config = getattr(exported.methods, field.name)
      if field.name == 'params_file' or config is None:
        continue
      kind = type(config).__name__
      lines.append(f'methods.Methods.{field.name} = @methods.{kind}()')
      lines += [f'methods.{kind}.{f.name} = '
                f'{_gin_value(getattr(config, f.name))}'
                for f in dataclasses.fields(config)]
  rules = _gin_value([list(r) for r in exported.assignment_map()])
  lines += [f'inference.evaluate.assignment_map = {rules}',
            f'inference.infer.assignment_map = {rules}']
  return '\n'.join(lines) + '\n'


def serving_model(model: models.EncoderDecoderModel, exported: Export
                  ) -> models.EncoderDecoderModel:
  """The model that serves an export: the same T5 with the export's prompt
  (`prompts.from_file`) and remaining methods (read from its file)."""
  module = model.module.clone(
      prompt_length=exported.prompt_length,
      prompt_init=(prompts.from_file(exported.prompt_file)
                   if exported.prompt_file else model.module.prompt_init),
      methods=exported.methods)
  return dataclasses.replace(model, module=module)
