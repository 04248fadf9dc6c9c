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
import re
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import flax
import jax
import numpy as np

from prompt_tuning import checkpoints
from prompt_tuning import methods as methods_lib
from prompt_tuning.model import models
from prompt_tuning.model import prompts

PyTree = Any

PROMPT_FILE = 'prompt.npy'
METHOD_PARAMS_FILE = 'method_params.safetensors'
CHECKPOINT_DIR = 'checkpoint'
SERVE_GIN = 'serve.gin'
PROMPT_PARAM = 'encoder/prompt/prompt/prompt'
# Parameters that methods add (the frozen checkpoint has none of them).
METHOD_REGEXES = (methods_lib.PROMPT_REGEX, methods_lib.PREFIX_REGEX,
                  methods_lib.LORA_REGEX, methods_lib.ADAPTER_REGEX,
                  methods_lib.IA3_REGEX)


def _flat(tree: PyTree) -> Dict[str, Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


def _unflat(flat: Dict[str, Any]) -> Dict[str, Any]:
  return flax.traverse_util.unflatten_dict(dict(flat), sep='/')


def is_method_param(name: str) -> bool:
  return any(re.fullmatch(r, name) for r in METHOD_REGEXES)


# ----------------------------------------------------------------------------
# Method-parameter files.
# ----------------------------------------------------------------------------


def save_method_params(flat_params: Dict[str, Any], path: str) -> None:
  """Writes `{'/'-joined name: array}` as a safetensors file, atomically."""
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  arrays = {name: np.ascontiguousarray(np.asarray(value, np.float32))
            for name, value in sorted(flat_params.items())}
  checkpoints.atomic_write_bytes(os.fspath(path),
                                 safetensors.numpy.save(arrays))


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
# Reductions.
# ----------------------------------------------------------------------------


def reduce_prompt(module: Any, params: PyTree) -> np.ndarray:
  """Evaluates the model's prompt encoder once: the prompt `[P, H]`."""
  methods = dataclasses.replace(module.methods, params_file=None)
  encoder = methods_lib.ReparameterizedPrompt(
      methods, module.prompt_length, module.config.emb_dim, module.prompt_init)
  return np.asarray(encoder.apply({'params': params['encoder']['prompt']}))


def fold_prefixes(module: Any, params: PyTree, stack: str
                  ) -> Dict[str, np.ndarray]:
  """Evaluates a stack's reparameterised prefixes once: plain `[L, P, N*D]`
  arrays by name ('key', 'value' or the decoder's four)."""
  methods = dataclasses.replace(module.methods, params_file=None)
  config = module.config
  layers = (config.num_encoder_layers if stack == 'encoder'
            else config.num_decoder_layers)
  prefixes = methods_lib.Prefixes(methods, stack, layers, config.num_heads,
                                  config.head_dim, config.emb_dim)
  out = prefixes.apply({'params': params[stack]['prefix']})
  return {name: np.asarray(value) for name, value in out.items()}


def merge_lora(params: PyTree, lora: methods_lib.LoRA) -> Dict[str, Any]:
  """Each targeted kernel plus `(alpha / r) A B`; the LoRA parameters gone."""
  flat = {n: np.asarray(v) for n, v in _flat(params).items()}
  merged = {}
  for name, value in flat.items():
    if re.fullmatch(methods_lib.LORA_REGEX, name):
      continue
    base = name[:-len('kernel')]
    if name.endswith('/kernel') and base + 'lora_a' in flat:
      update = flat[base + 'lora_a'] @ flat[base + 'lora_b']
      value = (value + lora.scale * update).astype(value.dtype)
    merged[name] = value
  return _unflat(merged)


def reduce(module: Any, params: PyTree
           ) -> Tuple[Optional[methods_lib.Methods], Dict[str, Any]]:
  """The serving form of a trained model: (methods left, parameters).

  Prompt encoders become a plain prompt at `encoder/prompt/prompt/prompt`,
  reparameterised prefixes plain prefixes, LoRA merged kernels. Both
  forms give the same logits up to float rounding.
  """
  methods = module.methods
  params = _unflat({n: np.asarray(v) for n, v in _flat(params).items()})
  if methods is None:
    return None, params
  if methods.prompt_encoder is not None and module.prompt_length:
    prompt = reduce_prompt(module, params)
    params['encoder']['prompt'] = {'prompt': {'prompt': prompt}}
  methods = dataclasses.replace(methods, prompt_encoder=None)
  prefix = methods.prefix
  if prefix is not None and prefix.reparam_dim is not None:
    for stack in ('encoder', 'decoder'):
      if methods_lib.stack_prefix(methods, stack) is not None:
        params[stack]['prefix'] = fold_prefixes(module, params, stack)
    methods = dataclasses.replace(
        methods, prefix=dataclasses.replace(prefix, reparam_dim=None))
  if methods.lora is not None:
    params = merge_lora(params, methods.lora)
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
      rules.append((methods_lib.PROMPT_REGEX, None))
    if self.methods is not None:
      rules += [(r, None) for r in METHOD_REGEXES[1:]]
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
  names = list(_flat(params))
  frozen_trained = any(not is_method_param(n) for n in
                       methods_lib.method_param_names(names,
                                                      trainable_regexes))
  lora_merged = module.methods is not None and module.methods.lora is not None
  methods, served = reduce(module, params)
  flat = _flat(served)
  written = []
  prompt_file = method_params_file = checkpoint = None
  if PROMPT_PARAM in flat and module.prompt_length:
    prompt_file = os.path.join(output_dir, PROMPT_FILE)
    checkpoints.save_prompt(flat[PROMPT_PARAM], prompt_file)
    written.append(prompt_file)
  method_flat = {n: v for n, v in flat.items()
                 if is_method_param(n) and n != PROMPT_PARAM}
  if methods is not None and method_flat:
    method_params_file = os.path.join(output_dir, METHOD_PARAMS_FILE)
    save_method_params(method_flat, method_params_file)
    methods = dataclasses.replace(methods, params_file=method_params_file)
    written.append(method_params_file)
  if frozen_trained or lora_merged:
    checkpoint = os.path.join(output_dir, CHECKPOINT_DIR)
    checkpoints.save_t5x(_unflat({n: v for n, v in flat.items()
                                  if not is_method_param(n)}),
                         checkpoint, overwrite=True)
    written.append(checkpoint)
  exported = Export(
      directory=output_dir, prompt_file=prompt_file,
      method_params_file=method_params_file, checkpoint=checkpoint,
      methods=methods,
      prompt_length=module.prompt_length if prompt_file else 0,
      num_bytes=sum(_size(p) for p in written))
  checkpoints.atomic_write_bytes(os.path.join(output_dir, SERVE_GIN),
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
