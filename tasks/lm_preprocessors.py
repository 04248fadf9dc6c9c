"""Token preprocessors for T5's pretraining objectives: span corruption and
prefix LM (the objective of the "LM adapted" T5 1.1 checkpoints).

Both follow `t5.data.preprocessors` (`span_corruption`, `prefix_lm`) step by
step, with stateless TF random ops seeded by seqio, so a pipeline with a fixed
seed is reproducible:

  span_corruption: a random chunk of each document (<= 65,536 tokens) ->
    documents concatenated in groups of 128 -> segments of the raw length that
    fills `inputs` exactly -> 15% of the tokens, in spans of mean length 3,
    replaced in the inputs by one sentinel per span; the targets are the
    dropped spans, each after its sentinel:
      "The cat sat on the mat ." ->
      inputs  "The <X> on the mat ."   targets "<X> cat sat <Y>"
  prefix_lm: a random chunk -> segments of `inputs` length - 1 -> each split
    at a uniformly random point: prefix -> inputs, continuation -> targets.

Sentinels are the last ids of the vocabulary, in decreasing order within an
example: `vocab_size - 1` (<extra_id_0>), `vocab_size - 2`, ...

Letters: L tokens in a sequence, S noise spans.
"""
from typing import Mapping

import seqio
import tensorflow as tf

MAX_CHUNK_LENGTH = 65_536  # T5's cap on the tokens kept from one document.
CONCAT_BATCH_SIZE = 128  # Documents concatenated before span corruption.


# ============================== shaping ======================================
def select_random_chunk(dataset: tf.data.Dataset, *,
                        max_length: int = MAX_CHUNK_LENGTH,
                        feature_key: str = 'targets') -> tf.data.Dataset:
  """Keeps one random chunk of at most `max_length` tokens per example.

  The chunk is one of the ceil(L / max_length) aligned segments, uniformly
  (T5's default), so every token is equally likely to be kept. Empty examples
  are dropped; only `feature_key` is kept.

  Args:
    dataset: examples with `feature_key` `[L]` int.
    max_length: the longest chunk.
    feature_key: the token feature.

  Returns:
    Examples {feature_key: `[<= max_length]`}.
  """

  @seqio.map_over_dataset(num_seeds=1)
  def chunk(x, seed):
    tokens = x[feature_key]
    num_tokens = tf.shape(tokens)[0]
    num_segments = (num_tokens + max_length - 1) // max_length
    start = max_length * tf.random.stateless_uniform(
        [], seed=seed, maxval=num_segments, dtype=tf.int32)
    return {feature_key: tokens[start:start + max_length]}

  dataset = dataset.filter(lambda x: tf.size(x[feature_key]) > 0)
  return chunk(dataset)


def reduce_concat_tokens(dataset: tf.data.Dataset, *,
                         feature_key: str = 'targets',
                         batch_size: int = CONCAT_BATCH_SIZE
                         ) -> tf.data.Dataset:
  """Concatenates the tokens of each `batch_size` consecutive examples.

  NOTE: padding is removed by dropping id 0, so real tokens must be nonzero
  (0 is the pad id of T5's vocabularies and never a text token).

  Args:
    dataset: examples with `feature_key` `[L]` int.
    feature_key: the token feature.
    batch_size: examples per concatenation.

  Returns:
    Examples {feature_key: `[sum of L]`}.
  """
  dataset = dataset.map(lambda x: {feature_key: x[feature_key]},
                        num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.padded_batch(batch_size,
                                 padded_shapes={feature_key: [None]})

  def concat(x):
    tokens = tf.reshape(x[feature_key], [-1])
    return {feature_key: tf.boolean_mask(tokens, tokens != 0)}

  return dataset.map(concat, num_parallel_calls=tf.data.AUTOTUNE)


def split_tokens(dataset: tf.data.Dataset, *, max_tokens_per_segment: int,
                 feature_key: str = 'targets') -> tf.data.Dataset:
  """Splits each example into segments of `max_tokens_per_segment` tokens.

  Only the last segment of an example may be shorter. Empty examples are
  dropped; only `feature_key` is kept.

  Args:
    dataset: examples with `feature_key` `[L]` int.
    max_tokens_per_segment: the segment length.
    feature_key: the token feature.

  Returns:
    Examples {feature_key: `[<= max_tokens_per_segment]`}.
  """
  length = max_tokens_per_segment

  def segments(x):
    tokens = x[feature_key]
    num_tokens = tf.shape(tokens)[0]
    num_segments = (num_tokens + length - 1) // length
    padding = num_segments * length - num_tokens
    # [num_segments, length]
    rows = tf.reshape(tf.pad(tokens, [[0, padding]]), [num_segments, length])
    lengths = tf.concat(
        [tf.fill([num_segments - 1], length), [length - padding]], axis=0)
    return tf.data.Dataset.from_tensor_slices((rows, lengths)).map(
        lambda row, n: {feature_key: row[:n]})

  dataset = dataset.filter(lambda x: tf.size(x[feature_key]) > 0)
  return dataset.flat_map(segments)


# ============================ span corruption ================================
def span_corruption_lengths(inputs_length: int, noise_density: float,
                            mean_noise_span_length: float) -> tuple[int, int]:
  """Raw tokens per example that exactly fill `inputs_length`, and the
  resulting targets length (T5's `random_spans_helper`).

  Inputs hold the non-noise tokens, one sentinel per noise span and EOS;
  targets hold the noise tokens, one sentinel per span and EOS.

  Args:
    inputs_length: the inputs length, EOS included (e.g. 512).
    noise_density: fraction of tokens corrupted (0.15).
    mean_noise_span_length: mean span length (3).

  Returns:
    (raw tokens per example, targets length with EOS), e.g. 512 -> (568, 114).
  """

  def lengths(num_tokens):
    num_noise = int(round(num_tokens * noise_density))
    num_spans = int(round(num_noise / mean_noise_span_length))
    return num_tokens - num_noise + num_spans + 1, num_noise + num_spans + 1

  num_tokens = inputs_length - 1
  while lengths(num_tokens + 1)[0] <= inputs_length:
    num_tokens += 1
  return num_tokens, lengths(num_tokens)[1]


def _random_segmentation(num_items: tf.Tensor, num_segments: tf.Tensor,
                         seed: tf.Tensor) -> tf.Tensor:
  """Splits `num_items` into `num_segments` random nonempty parts.

  Every composition is equally likely.

  Args:
    num_items: int32 scalar >= num_segments.
    num_segments: int32 scalar >= 1.
    seed: `[2]` int stateless seed.

  Returns:
    `[num_segments]` int32 positive lengths summing to `num_items`.
  """
  # [num_items - 1] with num_segments - 1 ones at random: segment starts.
  starts = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
  order = tf.argsort(
      tf.random.stateless_uniform(tf.shape(starts), seed=seed))
  starts = tf.gather(starts, order)
  # [num_items] segment id of each item.
  segment_ids = tf.concat([[0], tf.cumsum(starts)], axis=0)
  return tf.math.unsorted_segment_sum(
      tf.ones_like(segment_ids), segment_ids, num_segments)


def random_spans_noise_mask(length: tf.Tensor, noise_density: float,
                            seed: tf.Tensor,
                            mean_noise_span_length: float = 3.0) -> tf.Tensor:
  """A noise mask of S random spans (T5's `random_spans_noise_mask`).

  round(L * noise_density) noise tokens (at least 1, at most L - 1) are split
  into S = round(noise tokens / mean_noise_span_length) spans (at least 1);
  spans alternate non-noise, noise, ... starting with non-noise, all span
  lengths positive and every such mask equally likely.

  Args:
    length: int32 scalar L.
    noise_density: fraction of noise tokens.
    seed: `[2]` int stateless seed.
    mean_noise_span_length: mean noise span length.

  Returns:
    `[L]` bool, True on noise tokens.
  """
  length = tf.cast(length, tf.int32)
  padded_length = tf.maximum(length, 2)  # Room for one noise, one non-noise.
  num_noise = tf.cast(
      tf.round(tf.cast(padded_length, tf.float32) * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, padded_length - 1)
  num_spans = tf.maximum(tf.cast(tf.round(
      tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32), 1)
  noise_seed, nonnoise_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  noise_lengths = _random_segmentation(num_noise, num_spans, noise_seed)
  nonnoise_lengths = _random_segmentation(padded_length - num_noise, num_spans,
                                          nonnoise_seed)
  # [2S]: non-noise, noise, non-noise, noise, ...
  span_lengths = tf.reshape(
      tf.stack([nonnoise_lengths, noise_lengths], axis=1), [-1])
  span_is_noise = tf.tile([False, True], [num_spans])
  return tf.repeat(span_is_noise, span_lengths)[:length]


def spans_to_sentinels(tokens: tf.Tensor, mask: tf.Tensor,
                       vocab_size: int) -> tf.Tensor:
  """Replaces each run of masked tokens by one sentinel id.

  The k-th run (k = 0, 1, ...) becomes `vocab_size - 1 - k`.

  Args:
    tokens: `[L]` int.
    mask: `[L]` bool.
    vocab_size: the vocabulary size; its last ids are the sentinels.

  Returns:
    `[L - masked tokens + runs]` int.
  """
  previous = tf.pad(mask[:-1], [[1, 0]])
  first = tf.logical_and(mask, tf.logical_not(previous))
  later = tf.logical_and(mask, previous)
  sentinels = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
  return tf.boolean_mask(tf.where(first, sentinels, tokens),
                         tf.logical_not(later))


def span_corruption(dataset: tf.data.Dataset,
                    sequence_length: Mapping[str, int],
                    output_features: Mapping[str, seqio.Feature],
                    noise_density: float = 0.15,
                    mean_noise_span_length: float = 3.0) -> tf.data.Dataset:
  """T5's span-corruption objective on tokenized 'targets' documents.

  Use after tokenization (and the cache placeholder), before
  `append_eos_after_trim`.

  Args:
    dataset: examples with 'targets' `[L]` int (the document's tokens).
    sequence_length: {'inputs': Ti, 'targets': Tt}; Ti sets the raw segment
      length (`span_corruption_lengths`).
    output_features: the task's features (the targets vocabulary gives the
      sentinel ids).
    noise_density: fraction of tokens corrupted.
    mean_noise_span_length: mean corrupted span length.

  Returns:
    Examples {'inputs': `[<= Ti - 1]`, 'targets': `[<= Tt - 1]`} (EOS is
    appended later).

  Raises:
    ValueError: if `sequence_length` lacks 'inputs', or its 'targets' is
      shorter than the targets span corruption produces.
  """
  if not sequence_length or 'inputs' not in sequence_length:
    raise ValueError(f'span_corruption: sequence_length is {sequence_length};'
                     " expected a dict with 'inputs' and 'targets' lengths.")
  num_tokens, targets_length = span_corruption_lengths(
      sequence_length['inputs'], noise_density, mean_noise_span_length)
  if sequence_length.get('targets', targets_length) < targets_length:
    raise ValueError(
        f"span_corruption: sequence_length['targets'] is "
        f"{sequence_length['targets']}, but inputs of "
        f"{sequence_length['inputs']} give targets of {targets_length} tokens;"
        ' raise the targets length.')
  vocab_size = output_features['targets'].vocabulary.vocab_size

  @seqio.map_over_dataset(num_seeds=1)
  def corrupt(x, seed):
    tokens = x['targets']
    mask = random_spans_noise_mask(tf.size(tokens), noise_density, seed,
                                   mean_noise_span_length)
    return {
        'inputs': spans_to_sentinels(tokens, mask, vocab_size),
        'targets': spans_to_sentinels(tokens, tf.logical_not(mask),
                                      vocab_size),
    }

  dataset = select_random_chunk(dataset)
  dataset = reduce_concat_tokens(dataset)
  dataset = split_tokens(dataset, max_tokens_per_segment=num_tokens)
  return corrupt(dataset)


# =============================== prefix LM ===================================
def prefix_lm(dataset: tf.data.Dataset,
              sequence_length: Mapping[str, int],
              output_features: Mapping[str, seqio.Feature]
              ) -> tf.data.Dataset:
  """T5's prefix-LM objective ("LM adaptation") on tokenized documents.

  Each document's random chunk is cut into segments of Ti - 1 tokens (room
  for EOS); each segment is split at k, uniform in [1, L - 1] (k = 0 for a
  one-token segment): inputs = tokens[:k], targets = tokens[k:].

  Args:
    dataset: examples with 'targets' `[L]` int.
    sequence_length: {'inputs': Ti, ...}.
    output_features: the task's features (whether inputs get EOS).

  Returns:
    Examples {'inputs': `[k]`, 'targets': `[L - k]`}.

  Raises:
    ValueError: if `sequence_length` lacks 'inputs'.
  """
  if not sequence_length or 'inputs' not in sequence_length:
    raise ValueError(f'prefix_lm: sequence_length is {sequence_length}; '
                     "expected a dict with an 'inputs' length.")
  max_tokens = sequence_length['inputs']
  if output_features['inputs'].add_eos:
    max_tokens -= 1

  @seqio.map_over_dataset(num_seeds=1)
  def split(x, seed):
    tokens = x['targets']
    num_tokens = tf.size(tokens)
    split_at = tf.random.stateless_uniform(
        [], seed=seed, minval=tf.minimum(1, num_tokens - 1),
        maxval=num_tokens, dtype=tf.int32)
    return {'inputs': tokens[:split_at], 'targets': tokens[split_at:]}

  dataset = select_random_chunk(dataset)
  dataset = split_tokens(dataset, max_tokens_per_segment=max_tokens)
  return split(dataset)

