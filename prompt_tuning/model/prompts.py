"""Soft prompts: the `[P, H]` parameter, its placement, and its initialisers.

Letters: B batch, T input length, P prompt length, H embed, N prompts in a
bank, V vocabulary.

One placement code path serves three shapes of prompt:
- `[P, H]`: one prompt for the whole batch (prompt tuning);
- `[B, P, H]`: a prompt per example;
- `[N, P, H]` with `prompt_ids` `[B]`: a bank, each example picking its
  prompt (multi-task serving and prompt ensembling).

Initialisers are factories returning flax-style `(rng, shape, dtype) -> Array`
functions. In gin:

    Transformer.prompt_init = @prompts.from_class_labels()
    prompts.from_class_labels.embedding = %EMBEDDING_FILE  # or a checkpoint dir
    prompts.from_class_labels.vocabulary = %VOCABULARY
    prompts.from_class_labels.class_labels = %CLASS_LABELS
"""
import os
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Initializer = Callable[..., Array]
# An embedding table `[V, H]`, or the path of an `.npy` file or a t5x
# checkpoint directory holding one (read when the initialiser runs).
EmbeddingSource = Union[np.ndarray, Array, str, os.PathLike]
# Where the encoder's prompt [P, H] lives in the parameter tree (the paper's t5x
# checkpoints keep it there); every prompt parameter, a prompt encoder's too,
# lives under PROMPT_PREFIX, so PROMPT_REGEX selects them for tuning.
PROMPT_PATH = 'encoder/prompt/prompt/prompt'
PROMPT_PREFIX = 'encoder/prompt/'
PROMPT_REGEX = PROMPT_PREFIX + '.*'


class Prompt(nn.Module):
  """Holds the learned prompt `[P, H]` as the parameter `prompt`.

  The `prompt` axis stays replicated by the partitioning rules, so a prompt can
  always be saved whole as one `.npy` file.
  """
  length: int
  embed_dim: int
  init: Initializer

  @nn.compact
  def __call__(self) -> Array:
    """Returns the prompt `[P, H]` (float32)."""
    return self.param('prompt',
                      nn.with_logical_partitioning(self.init, ('prompt', 'embed')),
                      (self.length, self.embed_dim), jnp.float32)


class EncoderPrompt(nn.Module):
  """The encoder's prompt: exists so the parameter lives at
  `encoder/prompt/prompt/prompt`, where the paper's t5x checkpoints keep it."""
  length: int
  embed_dim: int
  init: Initializer

  @nn.compact
  def __call__(self) -> Array:
    return Prompt(self.length, self.embed_dim, self.init, name='prompt')()


def prepend(prompt: Array, embedded: Array,
            prompt_ids: Optional[Array] = None) -> Array:
  """Forms `[prompt ; embedded inputs]` for each example.

  Args:
    prompt: `[P, H]`, `[B, P, H]`, or a bank `[N, P, H]` when `prompt_ids`.
    embedded: embedded input tokens `[B, T, H]`.
    prompt_ids: `[B]` int, the row of the bank each example uses.

  Returns:
    `[B, P + T, H]` in the dtype of `embedded`.

  Raises:
    ValueError: on shapes that match none of the three forms.
  """
  batch, _, embed_dim = embedded.shape
  if prompt.shape[-1] != embed_dim:
    raise ValueError(f'prompt has embedding size {prompt.shape[-1]} but the '
                     f'model has {embed_dim} (prompt shape {prompt.shape})')
  if prompt_ids is not None:
    if prompt.ndim != 3:
      raise ValueError('prompt_ids needs a bank of prompts [N, P, H]; got a '
                       f'prompt of shape {prompt.shape}')
    # [N, P, H] gathered at [B] -> [B, P, H]
    prompt = jnp.take(prompt, prompt_ids, axis=0)
  elif prompt.ndim == 2:
    # [P, H] -> [B, P, H]
    prompt = jnp.broadcast_to(prompt[None], (batch,) + prompt.shape)
  elif prompt.ndim != 3 or prompt.shape[0] != batch:
    raise ValueError(f'a prompt of shape {prompt.shape} fits neither [P, H] '
                     f'nor per-example [B={batch}, P, H]; pass prompt_ids to '
                     'index a bank [N, P, H]')
  # -> [B, P + T, H]
  return jnp.concatenate([prompt.astype(embedded.dtype), embedded], axis=1)


def input_mask(encoder_input_tokens: Array, prompt_length: int) -> Array:
  """Valid positions of `[prompt ; inputs]`: `[B, P + T]` bool.

  Prompt positions are always valid, whatever the padding of the input;
  padded input positions (token 0) are not.
  """
  batch = encoder_input_tokens.shape[0]
  return jnp.concatenate([
      jnp.ones((batch, prompt_length), dtype=bool), encoder_input_tokens > 0
  ], axis=1)


# ----------------------------------------------------------------------------
# Initialisers.
# ----------------------------------------------------------------------------


def _check_prompt_shape(shape, name: str):
  if len(shape) != 2:
    raise ValueError(f'{name} initialises a prompt [P, H]; got shape {shape}')


def _embedding_table(embedding: EmbeddingSource, embed_dim: int,
                     name: str) -> np.ndarray:
  """Loads the embedding table if given as a path and checks its width."""
  if isinstance(embedding, (str, os.PathLike)):
    from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
    embedding = prompt_files.load_embedding(embedding)
  table = np.asarray(embedding, dtype=np.float32)
  if table.ndim != 2 or table.shape[1] != embed_dim:
    raise ValueError(f'{name}: the embedding table has shape {table.shape}, '
                     f'expected [vocab, {embed_dim}] to match the prompt')
  return table


def random_uniform(scale: float = 0.5) -> Initializer:
  """Uniform in `[-scale, scale]` (the paper's random initialisation).

  Gin: `Transformer.prompt_init = @prompts.random_uniform()`.
  """

  def init(rng, shape, dtype=jnp.float32):
    _check_prompt_shape(shape, 'random_uniform')
    return jax.random.uniform(rng, shape, dtype, -scale, scale)

  return init


def from_sampled_vocab(embedding: EmbeddingSource,
                       population_size: int = 5000) -> Initializer:
  """Each position is the embedding of a token drawn from the first
  `population_size` rows (the paper's 5,000 most common SentencePiece tokens;
  T5's vocabulary is ordered by frequency).

  Gin:
    Transformer.prompt_init = @prompts.from_sampled_vocab()
    prompts.from_sampled_vocab.embedding = %EMBEDDING_FILE
  """

  def init(rng, shape, dtype=jnp.float32):
    _check_prompt_shape(shape, 'from_sampled_vocab')
    table = _embedding_table(embedding, shape[1], 'from_sampled_vocab')
    population = min(population_size, table.shape[0])
    # Distinct tokens while the population allows it.
    ids = jax.random.choice(rng, population, (shape[0],),
                            replace=shape[0] > population)
    return jnp.asarray(table)[ids].astype(dtype)

  return init


def _token_ids(vocabulary: Any, text: str, name: str) -> Sequence[int]:
  ids = list(vocabulary.encode(text))
  if not ids:
    raise ValueError(f'{name}: {text!r} encodes to no tokens')
  return ids


def from_class_labels(embedding: EmbeddingSource, vocabulary: Any,
                      class_labels: Sequence[str],
                      fallback: Optional[Initializer] = None) -> Initializer:
  """The first positions hold the class labels, the rest come from `fallback`.

  Each label is tokenised and its sub-token embeddings averaged into one prompt
  position, as the paper does for multi-token labels. The default fallback is
  `from_sampled_vocab(embedding)`, the paper's choice.

  Gin:
    Transformer.prompt_init = @prompts.from_class_labels()
    prompts.from_class_labels.embedding = %EMBEDDING_FILE
    prompts.from_class_labels.vocabulary = %VOCABULARY
    prompts.from_class_labels.class_labels = %CLASS_LABELS
  """

  def init(rng, shape, dtype=jnp.float32):
    _check_prompt_shape(shape, 'from_class_labels')
    if not class_labels:
      raise ValueError('from_class_labels needs class labels (gin: '
                       f'CLASS_LABELS = [...]); got {class_labels!r}')
    if len(class_labels) > shape[0]:
      raise ValueError(f'from_class_labels: {len(class_labels)} class labels '
                       f'do not fit a prompt of length {shape[0]}')
    table = _embedding_table(embedding, shape[1], 'from_class_labels')
    rest = (fallback or from_sampled_vocab(table))(rng, shape, dtype)
    rows = [table[_token_ids(vocabulary, label, 'from_class_labels')].mean(0)
            for label in class_labels]
    if not rows:
      return rest
    return rest.at[:len(rows)].set(jnp.asarray(np.stack(rows), dtype))

  return init


def from_string(embedding: EmbeddingSource, vocabulary: Any, text: str,
                fallback: Optional[Initializer] = None) -> Initializer:
  """The first positions are the embeddings of `text`'s tokens, the rest come
  from `fallback` (default: sampled vocabulary).

  Gin:
    Transformer.prompt_init = @prompts.from_string()
    prompts.from_string.text = "Classify the sentiment:"
  """

  def init(rng, shape, dtype=jnp.float32):
    _check_prompt_shape(shape, 'from_string')
    table = _embedding_table(embedding, shape[1], 'from_string')
    ids = _token_ids(vocabulary, text, 'from_string')
    if len(ids) > shape[0]:
      raise ValueError(f'from_string: {text!r} is {len(ids)} tokens, longer '
                       f'than the prompt length {shape[0]}')
    rest = (fallback or from_sampled_vocab(table))(rng, shape, dtype)
    return rest.at[:len(ids)].set(jnp.asarray(table[ids], dtype))

  return init


def from_array(array: Union[np.ndarray, Array], source: str = 'array'
               ) -> Initializer:
  """Exactly `array`, whose shape must be the prompt's."""

  def init(rng, shape, dtype=jnp.float32):
    del rng
    if tuple(array.shape) != tuple(shape):
      raise ValueError(f'{source} holds a prompt of shape {tuple(array.shape)} '
                       f'but the model expects {tuple(shape)} '
                       '(PROMPT_LENGTH x d_model)')
    return jnp.asarray(array, dtype)

  return init


def from_file(path: Union[str, os.PathLike]) -> Initializer:
  """A prompt saved as `.npy` (e.g. a released prompt, or SPoT transfer).

  Gin:
    Transformer.prompt_init = @prompts.from_file()
    prompts.from_file.path = %PROMPT_FILE
  """

  def init(rng, shape, dtype=jnp.float32):
    from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
    array = prompt_files.load_prompt(path, expected_shape=tuple(shape))
    return from_array(array, source=os.fspath(path))(rng, shape, dtype)

  # Read by the commands that check a prompt against the run it came from.
  init.prompt_file = None if path is None else os.fspath(path)
  return init
