"""Prompt files (`.npy`, [P, H] or a bank [N, P, H]) and embedding tables.

A prompt file is one array saved with `np.save` (no pickle); local or gs://.
An embedding table [V, H] is read from such a file or from a t5x checkpoint.
Letters: V vocab, H embed, N prompts, P prompt length.
"""
import io
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from prompt_tuning.checkpoints import hf_folders
from prompt_tuning.checkpoints import t5x
from prompt_tuning.utils import files

PathLike = Union[str, os.PathLike]


def load_npy(path: str, what: str, alternative: str = '') -> np.ndarray:
  """Reads one array from a .npy file; errors name `what` and `path`."""
  try:
    array = np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise ValueError(f'{what} {path} is not a readable .npy file{alternative}: '
                     f'{e}') from e
  if not isinstance(array, np.ndarray):
    raise ValueError(f'{what} {path} holds a {type(array).__name__}, expected '
                     'a single .npy array')
  return array


def save_prompt(prompt: Any, path: PathLike) -> None:
  """Writes a prompt [P, H] (or a bank [N, P, H]) as a `.npy` file, atomically.

  The exact name `path` is used (np.save's '.npy' suffixing is bypassed).
  """
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(prompt), allow_pickle=False)
  files.atomic_write_bytes(os.fspath(path), buffer.getvalue())


def load_prompt(path: PathLike,
                expected_shape: Optional[Sequence[int]] = None) -> np.ndarray:
  """Reads a `.npy` prompt, checking its shape against `expected_shape`.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: unreadable file, or shape differs (both shapes named).
  """
  path = os.fspath(path)
  if not files.exists(path):
    raise FileNotFoundError(f'prompt file {path} does not exist')
  prompt = load_npy(path, 'prompt file')
  if expected_shape is not None and prompt.shape != tuple(expected_shape):
    raise ValueError(f'prompt file {path} holds shape {prompt.shape}, expected '
                     f'{tuple(expected_shape)}')
  return prompt


def prompt_from_t5x(path: PathLike, name: str) -> np.ndarray:
  """Reads the prompt [P, H] stored in a t5x checkpoint.

  Args:
    path: the checkpoint directory or its msgpack file.
    name: the prompt's parameter path, `prompts.PROMPT_PATH` for the model's
      prompt (the model, not the file format, decides where it lives).

  Raises:
    ValueError: `name` is not in the checkpoint.
  """
  return t5x.load_t5x_array(path, name)


def load_embedding(path: PathLike) -> np.ndarray:
  """Reads an embedding table [V, H] from a `.npy` file, a t5x checkpoint or
  an HF model folder (as `INITIAL_CHECKPOINT_PATH` may name either).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: `path` is neither a readable `.npy` file nor a t5x checkpoint,
      or the table is not 2-D.
  """
  path = os.fspath(path)
  if not files.exists(path):
    raise FileNotFoundError(f'embedding file {path} does not exist')
  if hf_folders.is_hf_model(path):
    table = hf_folders.load_hf_embedding(path)
  elif files.isdir(path) or os.path.basename(path) == t5x.MSGPACK_FILE:
    table = t5x.load_t5x_array(path, t5x.EMBEDDING_NAME)
  else:
    table = load_npy(path, 'embedding file',
                     ' (nor a t5x checkpoint directory)')
  if table.ndim != 2:
    raise ValueError(f'embedding file {path} holds shape {table.shape}, '
                     'expected [vocab, embed]')
  return table
