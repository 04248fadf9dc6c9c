"""HF transformers T5 models <-> our parameter tree and model config.

The formats themselves (model folders, safetensors, sharded checkpoints, HF
Flax msgpack, PyTorch `.bin`; `config.json`) are read and written by
`prompt_tuning.checkpoints.hf_folders` (and `hf_config`), below the model,
so that training can start from an HF folder named by
`INITIAL_CHECKPOINT_PATH`. This module adds
what needs our model: `t5.T5Config` from a folder's `config.json`, and the
entry points under their long-standing names.
"""
import os
from typing import Any, Dict, Optional, Union

from prompt_tuning.checkpoints import hf_config
from prompt_tuning.checkpoints import hf_folders
from prompt_tuning.model import t5

PathLike = Union[str, os.PathLike]
PyTree = Any


def t5_config(path: PathLike, **overrides) -> t5.T5Config:
  """Our model config for an HF model folder (or its `config.json`): every
  architecture field from the file; `overrides` (e.g. `dropout_rate`) on top.

  Raises:
    FileNotFoundError: no `config.json`.
    ValueError: not a T5 1.1 (gated-gelu) configuration.
  """
  fields = hf_config.model_fields(hf_config.read_config(path),
                                  os.fspath(path))
  return t5.T5Config(**{**fields, **overrides})


def load_hf_safetensors(path: PathLike,
                        *,
                        num_layers: Optional[int] = None,
                        config: Optional[t5.T5Config] = None
                        ) -> Dict[str, Any]:
  """Reads an HF T5 model into our parameter tree (numpy arrays).

  Args:
    path: a model folder as `save_pretrained` or a hub download leaves it
      (`config.json` with single or sharded safetensors, `flax_model.msgpack`,
      or `pytorch_model.bin`, single or sharded, which needs torch), or one
      weights file (a `config.json` beside it is checked when present).
    num_layers: if given, the encoder and decoder must both have this many
      layers.
    config: our model config; `config.json` must agree with it on every
      architecture field.

  Returns:
    Nested dict with flaxformer T5 names; `decoder/logits_dense/kernel` when
    the head is untied (T5 1.1).

  Raises:
    FileNotFoundError, IsADirectoryError, ImportError, ValueError: see
      `hf_folders.read_hf_model`; each names the path at fault.
  """
  return hf_folders.load_hf_model(path, model_config=config,
                                  num_layers=num_layers)


def save_hf_safetensors(params: PyTree, path: PathLike, *,
                        config: Optional[t5.T5Config] = None) -> None:
  """Writes our T5 parameters (plain or flax-boxed) for HF transformers.

  Args:
    params: our parameter tree (no prompt or method parameters).
    path: a folder: `model.safetensors` and `config.json` (T5 1.1's settings,
      sizes from the weights), which `T5ForConditionalGeneration
      .from_pretrained(path)` opens as it is; or a path ending in
      `.safetensors`: that weights file alone.
    config: our model config, for the `config.json` fields the weights do not
      show (relative attention's maximum distance, layer-norm epsilon).

  Raises:
    ValueError: a parameter has no HF name (e.g. a prompt) or is missing, or
      `config` disagrees with the weights.
    TypeError: a leaf is not an array.
  """
  if os.fspath(path).endswith('.safetensors'):
    if config is not None:
      hf_folders.config_for(params, config)  # Checks the sizes.
    hf_folders.save_hf_weights(params, path)
  else:
    hf_folders.save_hf_folder(params, path, model_config=config)
