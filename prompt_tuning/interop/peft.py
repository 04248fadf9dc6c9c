"""HF PEFT's prompt-tuning adapter format: write and read a prompt [P, H].

A PEFT prompt-tuning adapter is a directory with
- `adapter_config.json`: a `PromptTuningConfig` (`peft_type` `PROMPT_TUNING`,
  `task_type`, `num_virtual_tokens`, `token_dim`,
  `num_transformer_submodules`, ...);
- `adapter_model.safetensors`: one tensor `prompt_embeddings` of shape
  `[num_virtual_tokens * num_transformer_submodules, token_dim]`.

Load an export in PyTorch with
`peft.PeftModel.from_pretrained(T5ForConditionalGeneration..., out_dir)`.

NOTE: our prompt is prepended to the encoder input only. PEFT's default for
`SEQ_2_SEQ_LM` is `num_transformer_submodules=2` (a second block of
`num_virtual_tokens` rows), but its seq2seq forward and `generate` for
`PROMPT_TUNING` prepend only the first `num_virtual_tokens` rows, to the
encoder input (releases from mid-2023 on; earlier ones prepended the second
block to the decoder input). We write `num_transformer_submodules=1`, so the
file holds exactly our `[P, H]` prompt, no release adds a decoder prompt, and
PEFT runs the same computation as our model (checked by a test against PEFT
0.21 when it is installed).
On import, an adapter with 2 submodules gives its first (encoder) block and
the second is dropped with a warning.

Letters: P prompt length (`num_virtual_tokens`), H embed (`token_dim`).
"""
import json
import os
from typing import Any, Dict, Mapping, Optional

from absl import logging
import numpy as np
import safetensors.numpy

from prompt_tuning.utils import files

CONFIG_FILE = 'adapter_config.json'
WEIGHTS_FILE = 'adapter_model.safetensors'
WEIGHTS_KEY = 'prompt_embeddings'
PEFT_TYPE = 'PROMPT_TUNING'
TASK_TYPE = 'SEQ_2_SEQ_LM'

# Fixed by the prompt itself; `config_overrides` may not change them.
_DERIVED = ('peft_type', 'num_virtual_tokens', 'token_dim',
            'num_transformer_submodules')
_REQUIRED = ('peft_type', 'num_virtual_tokens', 'token_dim')


def peft_config(num_virtual_tokens: int, token_dim: int, *,
                base_model_name_or_path: Optional[str],
                config_overrides: Optional[Mapping[str, Any]] = None
                ) -> Dict[str, Any]:
  """The `adapter_config.json` contents for an encoder prompt `[P, H]`.

  Fields PEFT fills from the base model when left null (`num_attention_heads`,
  `num_layers`) stay null unless overridden. `prompt_tuning_init` is
  `RANDOM` so that loading needs no tokenizer; the saved weights replace the
  initialisation anyway.

  Args:
    num_virtual_tokens: P.
    token_dim: H.
    base_model_name_or_path: the HF model the prompt was tuned for, e.g.
      `google/t5-v1_1-base`, or None.
    config_overrides: other `PromptTuningConfig` fields to set (`revision`,
      `num_layers`, `num_attention_heads`, `inference_mode`, `task_type`, ...).

  Raises:
    ValueError: `config_overrides` sets a field fixed by the prompt.
  """
  overrides = dict(config_overrides or {})
  fixed = sorted(set(overrides) & set(_DERIVED))
  if fixed:
    raise ValueError(f'config_overrides sets {fixed}, which the prompt '
                     f'determines (peft_type {PEFT_TYPE}, num_virtual_tokens '
                     f'{num_virtual_tokens}, token_dim {token_dim}, '
                     'num_transformer_submodules 1)')
  config = {
      'auto_mapping': None,
      'base_model_name_or_path': base_model_name_or_path,
      'inference_mode': True,
      'modules_to_save': None,
      'num_attention_heads': None,
      'num_layers': None,
      'num_transformer_submodules': 1,
      'num_virtual_tokens': int(num_virtual_tokens),
      'peft_type': PEFT_TYPE,
      'prompt_tuning_init': 'RANDOM',
      'prompt_tuning_init_text': None,
      'revision': None,
      'task_type': TASK_TYPE,
      'token_dim': int(token_dim),
      'tokenizer_kwargs': None,
      'tokenizer_name_or_path': None,
  }
  config.update(overrides)
  return config


def export_peft(prompt: Any, out_dir: str, *,
                base_model_name_or_path: Optional[str],
                config_overrides: Optional[Mapping[str, Any]] = None) -> None:
  """Writes a prompt `[P, H]` as a PEFT prompt-tuning adapter directory.

  `out_dir` is created if needed; each file is written atomically (temporary
  sibling, then rename), the weights before the config.

  NOTE: safetensors' numpy API has no bfloat16; a bfloat16 prompt is written
  as float32, which holds every bfloat16 value exactly.

  Args:
    prompt: `[P, H]`, float32 (or float16/bfloat16); plain or boxed as
      `Transformer.init` returns it (flax `LogicallyPartitioned`).
    out_dir: the adapter directory.
    base_model_name_or_path: see `peft_config`.
    config_overrides: see `peft_config`.

  Raises:
    ValueError: the prompt is not 2-D or not floating point (or a box other
      than flax's), or the overrides set a field fixed by the prompt.
  """
  prompt = unboxed_array(prompt, 'export_peft')
  if prompt.ndim != 2:
    raise ValueError(f'export_peft writes one prompt [P, H]; got shape '
                     f'{prompt.shape}')
  if prompt.dtype.name == 'bfloat16':
    prompt = prompt.astype(np.float32)
  if not np.issubdtype(prompt.dtype, np.floating):
    raise ValueError(f'export_peft needs a floating-point prompt; got dtype '
                     f'{prompt.dtype}')
  config = peft_config(prompt.shape[0], prompt.shape[1],
                       base_model_name_or_path=base_model_name_or_path,
                       config_overrides=config_overrides)
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  weights = safetensors.numpy.save(
      {WEIGHTS_KEY: np.ascontiguousarray(prompt)}, metadata={'format': 'pt'})
  files.atomic_write_bytes(
      os.path.join(out_dir, WEIGHTS_FILE), weights)
  files.atomic_write_bytes(
      os.path.join(out_dir, CONFIG_FILE),
      (json.dumps(config, indent=2, sort_keys=True) + '\n').encode())
  logging.info('wrote a PEFT prompt-tuning adapter [%d, %d] to %s',
               prompt.shape[0], prompt.shape[1], out_dir)


def unboxed(tree: Any, caller: str) -> Any:
  """`tree` without flax's metadata boxes (`t5x.plain_params`, imported here
  so that reading and writing adapters needs no jax)."""
  from prompt_tuning.checkpoints import t5x  # pylint: disable=g-import-not-at-top
  return t5x.plain_params(tree, what=caller)


def unboxed_array(value: Any, caller: str) -> np.ndarray:
  """One array, unboxed as `unboxed` does; an object array (a box numpy
  could not read) raises naming `flax.linen.meta.unbox`."""
  array = np.asarray(unboxed(value, caller))
  if array.dtype == object:
    raise TypeError(
        f'{caller} takes an array; got {type(value).__name__} holding '
        'objects. Unbox parameters first with flax.linen.meta.unbox(params)')
  return array


def read_adapter_config(peft_dir: str) -> Dict[str, Any]:
  """`adapter_config.json` of any PEFT adapter, as a dict.

  Raises:
    FileNotFoundError: no such directory or config file.
    ValueError: not a JSON object, or no `peft_type`.
  """
  peft_dir = os.fspath(peft_dir)
  if not os.path.isdir(peft_dir):
    raise FileNotFoundError(f'PEFT adapter directory {peft_dir} does not exist')
  path = os.path.join(peft_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist (a PEFT adapter directory '
                            f'holds {CONFIG_FILE} and {WEIGHTS_FILE})')
  try:
    with open(path) as f:
      config = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON: {e}') from e
  if not isinstance(config, dict):
    raise ValueError(f'{path} holds a {type(config).__name__}, expected a '
                     'JSON object')
  if not config.get('peft_type'):
    raise ValueError(f'{path} has no peft_type; expected a PEFT adapter '
                     'config')
  return config


def read_config(peft_dir: str) -> Dict[str, Any]:
  """Reads and checks `adapter_config.json` of a prompt-tuning adapter.

  Raises:
    FileNotFoundError: the directory or its config file does not exist.
    ValueError: not JSON, a required key missing, or not `PROMPT_TUNING`.
  """
  config = read_adapter_config(peft_dir)
  path = os.path.join(os.fspath(peft_dir), CONFIG_FILE)
  missing = [key for key in _REQUIRED if config.get(key) is None]
  if missing:
    raise ValueError(f'{path} has no {missing}; a prompt-tuning adapter config '
                     f'needs {list(_REQUIRED)}')
  if config['peft_type'] != PEFT_TYPE:
    raise ValueError(f'{path} has peft_type {config["peft_type"]!r}; only '
                     f'{PEFT_TYPE!r} adapters hold a plain prompt')
  for key in ('num_virtual_tokens', 'token_dim'):
    if not isinstance(config[key], int) or config[key] < 1:
      raise ValueError(f'{path} has {key} {config[key]!r}, expected a '
                       'positive integer')
  if config.get('num_transformer_submodules') not in (None, 1, 2):
    raise ValueError(f'{path} has num_transformer_submodules '
                     f'{config["num_transformer_submodules"]!r}, expected 1, '
                     '2 or null')
  return config


def _submodules(config: Mapping[str, Any]) -> int:
  """`num_transformer_submodules`, defaulted as PEFT does when null."""
  value = config.get('num_transformer_submodules')
  if value is None:
    return 2 if config.get('task_type') == TASK_TYPE else 1
  return int(value)


def import_peft(peft_dir: str) -> np.ndarray:
  """Reads the encoder prompt `[P, H]` of a PEFT prompt-tuning adapter.

  Args:
    peft_dir: a directory written by PEFT's `save_pretrained` or by
      `export_peft`.

  Returns:
    The prompt `[num_virtual_tokens, token_dim]` in its stored dtype; with
    `num_transformer_submodules` 2, the first of the two blocks.

  Raises:
    FileNotFoundError: the directory, config or weights file is missing.
    ValueError: a bad config (see `read_config`), no `prompt_embeddings`
      tensor, or a shape other than
      `[num_virtual_tokens * num_transformer_submodules, token_dim]`.
  """
  config = read_config(peft_dir)
  config_path = os.path.join(os.fspath(peft_dir), CONFIG_FILE)
  path = os.path.join(os.fspath(peft_dir), WEIGHTS_FILE)
  if not os.path.exists(path):
    legacy = os.path.join(os.fspath(peft_dir), 'adapter_model.bin')
    hint = (f'; found the PyTorch pickle {legacy}: re-save the adapter with '
            'safe_serialization=True' if os.path.exists(legacy) else '')
    raise FileNotFoundError(f'{path} does not exist{hint}')
  try:
    with open(path, 'rb') as f:
      tensors = safetensors.numpy.load(f.read())
  except Exception as e:  # safetensors raises its own error types.
    raise ValueError(f'{path} is not a readable safetensors file: {e}') from e
  if WEIGHTS_KEY not in tensors:
    raise ValueError(f'{path} has no {WEIGHTS_KEY!r} tensor; found '
                     f'{sorted(tensors)}')
  embeddings = tensors[WEIGHTS_KEY]
  length, width = config['num_virtual_tokens'], config['token_dim']
  submodules = _submodules(config)
  expected = (length * submodules, width)
  if embeddings.shape != expected:
    raise ValueError(
        f'{path} holds {WEIGHTS_KEY} of shape {embeddings.shape}, but '
        f'{config_path} expects [num_virtual_tokens * '
        f'num_transformer_submodules, token_dim] = [{length} * {submodules}, '
        f'{width}] = {list(expected)}')
  if config.get('task_type') not in (None, TASK_TYPE):
    logging.warning('%s: task_type %r; this prompt was tuned for another kind '
                    'of model than an encoder-decoder', config_path,
                    config['task_type'])
  if submodules > 1:
    logging.warning(
        '%s: num_transformer_submodules %d; keeping the first %d rows (the '
        'encoder prompt) and dropping the other %d', config_path, submodules,
        length, length * (submodules - 1))
  return embeddings[:length]
