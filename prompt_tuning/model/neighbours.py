"""The nearest-neighbour view of a prompt (paper section 7).

For each position of a prompt `[P, H]`, its k nearest vocabulary tokens by
cosine similarity in the frozen model's embedding table `[V, H]`
(`nearest_neighbours`), as rows with the neighbours that are (sub-tokens of)
class labels marked (`describe`), a markdown table (`to_markdown`) or a JSON
document (`summary`); `python -m prompt_tuning.interpret` prints and writes
them.

The prompt diagnostics the trainer writes to TensorBoard are here too:
`prompt_diagnostics` (scalars: prompt norm against the embedding norm, drift
from the initial prompt) and `nearest_neighbour_text` (a markdown table for a
text summary).

Letters: P prompt length, H embed, V vocabulary, K neighbours.
"""
import functools
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.model import prompts
from prompt_tuning.utils import tables

Array = Any  # np.ndarray or jax.Array

# NOTE: rows with an L2 norm below this count as zero vectors: their cosine
# similarity with anything is 0 rather than NaN.
_EPS = 1e-12


# ----------------------------------------------------------------------------
# Nearest neighbours.
# ----------------------------------------------------------------------------


def _normalise(x: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm (zero rows stay zero); `[N, H] -> [N, H]`."""
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.maximum(norm, _EPS)


@functools.partial(jax.jit, static_argnames=('k',))
def _merge_chunk(best_sims: jax.Array, best_ids: jax.Array,
                 unit_prompt: jax.Array, chunk: jax.Array, offset: jax.Array,
                 k: int) -> Tuple[jax.Array, jax.Array]:
  """Folds one chunk of the vocabulary `[C, H]` into the running top k.

  Args:
    best_sims: `[P, K]` float32, the best similarities so far (-inf if none).
    best_ids: `[P, K]` int32, their token ids.
    unit_prompt: `[P, H]` float32, unit-norm prompt rows.
    chunk: `[C, H]`, rows `offset .. offset + C` of the embedding table.
    offset: scalar int32, the id of the chunk's first row.
    k: neighbours kept.

  Returns:
    The new `(best_sims, best_ids)`, each `[P, K]`, best first.
  """
  unit_chunk = _normalise(chunk.astype(jnp.float32))
  # NOTE: full float32 precision; the default on TPU would round the inputs
  # to bfloat16 and could reorder close neighbours.
  # [P, H] x [C, H] -> [P, C]
  sims = jnp.einsum('ph,ch->pc', unit_prompt, unit_chunk,
                    precision=jax.lax.Precision.HIGHEST)
  ids = offset + jnp.arange(chunk.shape[0], dtype=jnp.int32)
  # [P, K + C]; earlier (lower) ids come first, and top_k keeps the lower index
  # among equal values, so ties go to the lower token id.
  all_sims = jnp.concatenate([best_sims, sims], axis=1)
  all_ids = jnp.concatenate(
      [best_ids, jnp.broadcast_to(ids, sims.shape)], axis=1)
  top_sims, where = jax.lax.top_k(all_sims, k)
  return top_sims, jnp.take_along_axis(all_ids, where, axis=1)


def nearest_neighbours(prompt: Array, embedding: Array, k: int = 5, *,
                       chunk_size: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
  """The k rows of `embedding` closest to each prompt position by cosine.

  The vocabulary is read in chunks of `chunk_size` rows, so memory stays at
  `[P, chunk_size + k]` similarities whatever V is. Ties go to the lower id.

  Args:
    prompt: `[P, H]`.
    embedding: `[V, H]`, the model's token embedding table.
    k: neighbours per position, `1 <= k <= V`.
    chunk_size: vocabulary rows compared at once.

  Returns:
    `(ids, sims)`: `[P, K]` int32 token ids and `[P, K]` float32 cosine
    similarities, most similar first.

  Raises:
    ValueError: shapes that are not `[P, H]` and `[V, H]`, or a bad `k`.
  """
  if np.ndim(prompt) != 2 or np.ndim(embedding) != 2:
    raise ValueError(f'nearest_neighbours needs a prompt [P, H] and an '
                     f'embedding [V, H]; got {np.shape(prompt)} and '
                     f'{np.shape(embedding)}')
  (length, width), (vocab, embed_width) = np.shape(prompt), np.shape(embedding)
  if width != embed_width:
    raise ValueError(f'the prompt has width {width} but the embedding table '
                     f'{np.shape(embedding)} has width {embed_width}')
  if not 1 <= k <= vocab:
    raise ValueError(f'k={k} must be between 1 and the vocabulary size {vocab}')
  if chunk_size < 1:
    raise ValueError(f'chunk_size={chunk_size} must be positive')
  unit_prompt = _normalise(jnp.asarray(prompt, jnp.float32))
  best_sims = jnp.full((length, k), -jnp.inf, jnp.float32)
  best_ids = jnp.zeros((length, k), jnp.int32)
  for start in range(0, vocab, chunk_size):
    chunk = embedding[start:start + chunk_size]
    best_sims, best_ids = _merge_chunk(best_sims, best_ids, unit_prompt,
                                       jnp.asarray(chunk), jnp.int32(start),
                                       k=k)
  return np.asarray(best_ids), np.asarray(best_sims)


# ----------------------------------------------------------------------------
# Tables of neighbours.
# ----------------------------------------------------------------------------


def token_text(vocabulary: Any, token_id: int) -> str:
  """A readable form of one token id.

  The SentencePiece piece when the vocabulary has one (`▁positive`, keeping
  the word-start mark and showing control tokens as `</s>`), else the
  vocabulary's decoding of the single id.
  """
  tokenizer = getattr(vocabulary, 'tokenizer', None)
  if tokenizer is not None and hasattr(tokenizer, 'id_to_piece'):
    if 0 <= token_id < tokenizer.GetPieceSize():
      return tokenizer.id_to_piece(int(token_id))
  return vocabulary.decode([int(token_id)])


def label_piece_ids(vocabulary: Any,
                    class_labels: Sequence[str]) -> Dict[str, List[int]]:
  """Each class label's token ids, as `prompts.from_class_labels` sees them.

  Raises:
    ValueError: a label encodes to no tokens.
  """
  result = {}
  for label in class_labels:
    ids = [int(i) for i in vocabulary.encode(label)]
    if not ids:
      raise ValueError(f'class label {label!r} encodes to no tokens')
    result[label] = ids
  return result


def describe(prompt: Array, embedding: Array, vocabulary: Any, k: int = 5,
             class_labels: Optional[Sequence[str]] = None) -> List[Dict]:
  """The k nearest vocabulary tokens of every prompt position, as rows.

  A neighbour is marked with a class label when its id is one of that label's
  token ids (a label may be several sub-tokens, and a sub-token may belong to
  several labels, e.g. `▁not` in `not_entailment` and `not_equivalent`).

  NOTE: only the first `vocabulary.vocab_size` rows are searched when the
  table is longer: T5 checkpoints pad the vocabulary (32100 ids) to 32128
  rows, and the padding rows are no tokens.

  Args:
    prompt: `[P, H]`.
    embedding: `[V, H]`.
    vocabulary: a seqio vocabulary (`encode`, `decode`, `vocab_size`).
    k: neighbours per position.
    class_labels: label strings to mark among the neighbours.

  Returns:
    One dict per position, JSON-ready: `{'position': p, 'neighbours': [{'id',
    'token', 'similarity', 'labels'}] (best first), 'labels': [...]}`, where
    a neighbour's `labels` lists the labels it is a token of and the row's
    `labels` those marked anywhere in the row, in `class_labels` order.
  """
  vocab_size = getattr(vocabulary, 'vocab_size', None)
  table_rows = np.shape(embedding)[0]
  # A table padded to a multiple of 128 rows (as T5's) is expected.
  if vocab_size is not None and table_rows not in (
      vocab_size, -(-vocab_size // 128) * 128):
    logging.warning('the vocabulary has %d ids but the embedding table %d '
                    'rows: are they from the same model?', vocab_size,
                    table_rows)
  if vocab_size is not None and vocab_size < table_rows:
    embedding = embedding[:vocab_size]
  ids, sims = nearest_neighbours(prompt, embedding, k)
  label_ids = label_piece_ids(vocabulary, class_labels or ())
  result = []
  for position in range(ids.shape[0]):
    neighbours = []
    for token_id, sim in zip(ids[position].tolist(), sims[position].tolist()):
      labels = [l for l, l_ids in label_ids.items() if token_id in l_ids]
      neighbours.append({'id': token_id,
                         'token': token_text(vocabulary, token_id),
                         'similarity': sim, 'labels': labels})
    marked = {l for n in neighbours for l in n['labels']}
    result.append({'position': position, 'neighbours': neighbours,
                   'labels': [l for l in label_ids if l in marked]})
  return result


def _cell(neighbour: Mapping[str, Any]) -> str:
  # `|` would end the markdown cell; backticks keep spaces and `▁` visible.
  token = neighbour['token'].replace('|', '\\|').replace('`', "'")
  text = f'`{token}` {neighbour["similarity"]:.2f}'
  if neighbour['labels']:
    text = f'**{text}** ({", ".join(neighbour["labels"])})'
  return text


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
  """A markdown table of `describe`'s rows: one line per prompt position.

  Each cell is `` `token` similarity``; a class-label neighbour is bold and
  followed by its label(s) in parentheses.
  """
  k = max((len(r['neighbours']) for r in rows), default=0)
  table_rows = []
  for row in rows:
    cells = [_cell(n) for n in row['neighbours']]
    table_rows.append([row['position']] + cells + [''] * (k - len(cells)))
  # `_cell` escapes what it must and writes Markdown.
  return tables.markdown_table(['position'] + [i + 1 for i in range(k)],
                               table_rows, align='r' + 'l' * k, escape=False)


def summary(rows: Sequence[Mapping[str, Any]], **metadata) -> Dict[str, Any]:
  """The JSON document the CLI writes: `metadata`, then the rows, plus how
  many positions have a class label among their neighbours (per label)."""
  counts = {}
  for row in rows:
    for label in row['labels']:
      counts[label] = counts.get(label, 0) + 1
  return {**metadata, 'positions_with_label': counts, 'rows': list(rows)}


# ----------------------------------------------------------------------------
# Training diagnostics.
# ----------------------------------------------------------------------------


def prompt_diagnostics(prompt: Array, initial_prompt: Array,
                       embedding: Array) -> Dict[str, float]:
  """Scalars that track how a prompt moves during training.

  NOTE: the paper (section 7) observes that learned prompts drift far from
  the vocabulary's scale; the ratio of the prompt's mean row norm to the
  embedding's shows it, and the drift from the initial prompt shows how much
  the initialisation (e.g. class labels) survives.

  Args:
    prompt: `[P, H]`, the current prompt.
    initial_prompt: `[P, H]`, the prompt at step 0.
    embedding: `[V, H]`, the frozen embedding table.

  Returns:
    Python floats keyed for TensorBoard:
    - `prompt/norm`: mean L2 norm of the prompt's rows;
    - `prompt/embedding_norm`: mean L2 norm of the embedding's rows;
    - `prompt/norm_ratio`: their ratio;
    - `prompt/drift_l2`: mean over positions of `|prompt_p - initial_p|`;
    - `prompt/drift_cosine`: mean over positions of the cosine between
      `prompt_p` and `initial_p` (1 at initialisation).

  Raises:
    ValueError: the prompts' shapes differ or do not match the embedding.
  """
  if np.shape(prompt) != np.shape(initial_prompt):
    raise ValueError(f'prompt shape {np.shape(prompt)} differs from the '
                     f'initial prompt shape {np.shape(initial_prompt)}')
  if (np.ndim(prompt) != 2 or np.ndim(embedding) != 2 or
      np.shape(prompt)[1] != np.shape(embedding)[1]):
    raise ValueError(f'prompt_diagnostics needs a prompt [P, H] and an '
                     f'embedding [V, H]; got {np.shape(prompt)} and '
                     f'{np.shape(embedding)}')
  values = _diagnostics(jnp.asarray(prompt), jnp.asarray(initial_prompt),
                        jnp.asarray(embedding))
  return {name: float(value) for name, value in values.items()}


@jax.jit
def _diagnostics(prompt, initial_prompt, embedding):
  prompt = prompt.astype(jnp.float32)
  initial_prompt = initial_prompt.astype(jnp.float32)
  # [P, H] -> [P]
  prompt_norm = jnp.linalg.norm(prompt, axis=-1).mean()
  # [V, H] -> [V]
  embedding_norm = jnp.linalg.norm(embedding.astype(jnp.float32),
                                   axis=-1).mean()
  drift = jnp.linalg.norm(prompt - initial_prompt, axis=-1).mean()
  cosine = jnp.sum(_normalise(prompt) * _normalise(initial_prompt), axis=-1)
  return {'prompt/norm': prompt_norm,
          'prompt/embedding_norm': embedding_norm,
          'prompt/norm_ratio': prompt_norm / jnp.maximum(embedding_norm, _EPS),
          'prompt/drift_l2': drift,
          'prompt/drift_cosine': cosine.mean()}


def nearest_neighbour_text(prompt: Array, embedding: Array, vocabulary: Any,
                           k: int = 5,
                           class_labels: Optional[Sequence[str]] = None) -> str:
  """`to_markdown(describe(...))`: a table for a TensorBoard text summary."""
  return to_markdown(describe(prompt, embedding, vocabulary, k, class_labels))


# ----------------------------------------------------------------------------
# Loading what the command line names.
# ----------------------------------------------------------------------------


def load_vocabulary(spec: str, extra_ids: int = 100) -> Any:
  """`offline` (the offline suite's vocabulary) or a SentencePiece file.

  Raises:
    FileNotFoundError: `spec` is neither `offline` nor an existing file.
  """
  if spec == 'offline':
    from prompt_tuning.tasks import offline  # pylint: disable=g-import-not-at-top
    return offline.vocabulary()
  if not os.path.exists(spec):
    raise FileNotFoundError(f'--vocabulary {spec}: no such SentencePiece model '
                            "file (or pass 'offline')")
  import seqio  # pylint: disable=g-import-not-at-top
  return seqio.SentencePieceVocabulary(spec, extra_ids=extra_ids)


def load_prompt_or_checkpoint(path: str) -> np.ndarray:
  """A prompt `[P, H]` from an `.npy` file or a t5x checkpoint directory.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: unreadable, or not 2-D.
  """
  if os.path.isdir(path):
    prompt = prompt_files.prompt_from_t5x(path, prompts.PROMPT_PATH)
  else:
    prompt = prompt_files.load_prompt(path)
  if prompt.ndim != 2:
    raise ValueError(f'prompt file {path} holds shape {prompt.shape}, '
                     'expected one prompt [P, H]')
  return prompt
