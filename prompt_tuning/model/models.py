"""The model-level API the trainer, evaluation and inference use.

`EncoderDecoderModel` wraps the T5 module with what a task needs: the loss
(T5's cross-entropy with z-loss), per-example scores, decoding with the
key/value cache, and rank classification. Batches are the dicts made by
`seqio.EncDecFeatureConverter(pack=False)`:

  encoder_input_tokens [B, T], decoder_input_tokens [B, U],
  decoder_target_tokens [B, U], decoder_loss_weights [B, U],
  optionally prompt_ids [B] (each example's row of a prompt bank).

Letters: B batch, T input length, U target length, V vocabulary, C classes,
K decodes per example, L decode length.
"""
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp

from prompt_tuning.model import decoding
from prompt_tuning.model import t5

Array = jax.Array
Batch = Mapping[str, Array]
Params = Any

DECODE_METHODS = ('greedy', 'beam', 'sample')


def cross_entropy_with_z_loss(logits: Array, targets: Array, weights: Array,
                              z_loss: float = 1e-4,
                              label_smoothing: float = 0.0
                              ) -> Tuple[Array, Array]:
  """T5's token cross-entropy plus `z_loss * log(Z)^2`, weighted and summed.

  NOTE: summed over tokens and examples, not averaged: the paper's released
  configs set no loss normalising factor (t5x's default). Adafactor's update
  is insensitive to the gradient's scale.

  Args:
    logits: `[B, U, V]` float32.
    targets: `[B, U]` int.
    weights: `[B, U]`, 0 at padding.
    z_loss: coefficient of the log-partition penalty.
    label_smoothing: probability mass spread over the other tokens.

  Returns:
    (total loss, total z-loss), scalars.
  """
  vocab_size = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab_size - 1)
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [B, U]
  log_softmax = logits - log_z[..., None]  # [B, U, V]
  target_log_prob = jnp.take_along_axis(log_softmax, targets[..., None],
                                        axis=-1)[..., 0]
  if label_smoothing:
    others = jnp.sum(log_softmax, axis=-1) - target_log_prob
    token_loss = -(confidence * target_log_prob + low * others)
  else:
    token_loss = -target_log_prob
  token_z_loss = z_loss * jnp.square(log_z)
  weights = weights.astype(jnp.float32)
  return (jnp.sum((token_loss + token_z_loss) * weights),
          jnp.sum(token_z_loss * weights))


@dataclasses.dataclass(frozen=True)
class EncoderDecoderModel:
  """T5 plus its vocabularies and loss settings.

  Attributes:
    module: the Flax `t5.Transformer`.
    input_vocabulary: seqio vocabulary of the inputs.
    output_vocabulary: seqio vocabulary of the targets (EOS id for decoding).
    z_loss: coefficient of T5's log-partition penalty (paper: 1e-4).
    label_smoothing: paper: 0.
  """
  module: t5.Transformer
  input_vocabulary: Any = None
  output_vocabulary: Any = None
  z_loss: float = 1e-4
  label_smoothing: float = 0.0

  @property
  def eos_id(self) -> int:
    return 1 if self.output_vocabulary is None else self.output_vocabulary.eos_id

  # --------------------------------------------------------------------------
  # Parameters.
  # --------------------------------------------------------------------------

  def init(self, rng: Array, input_length: int = 4, target_length: int = 2):
    """Boxed initial parameters (`nn.LogicallyPartitioned` leaves).

    Wrap in `jax.eval_shape` for shapes and axis names without memory.
    """
    variables = self.module.init(
        rng, jnp.ones((1, input_length), jnp.int32),
        jnp.ones((1, target_length), jnp.int32))
    return variables['params']

  # --------------------------------------------------------------------------
  # Training.
  # --------------------------------------------------------------------------

  def loss_fn(self, params: Params, batch: Batch,
              dropout_rng: Optional[Array]) -> Tuple[Array, Dict[str, Array]]:
    """Summed token loss and metrics; dropout on when `dropout_rng` is given."""
    rngs = None if dropout_rng is None else {'dropout': dropout_rng}
    logits = self.module.apply(
        {'params': params}, batch['encoder_input_tokens'],
        batch['decoder_input_tokens'], batch['decoder_target_tokens'],
        prompt_ids=batch.get('prompt_ids'),
        enable_dropout=dropout_rng is not None, rngs=rngs)
    weights = batch['decoder_loss_weights']
    loss, z_loss = cross_entropy_with_z_loss(
        logits, batch['decoder_target_tokens'], weights, self.z_loss,
        self.label_smoothing)
    num_tokens = jnp.sum(weights.astype(jnp.float32))
    correct = (jnp.argmax(logits, -1) == batch['decoder_target_tokens'])
    metrics = {
        'loss': loss,
        'z_loss': z_loss,
        'num_tokens': num_tokens,
        'accuracy': jnp.sum(correct * weights) / jnp.maximum(num_tokens, 1.0),
    }
    return loss, metrics

  # --------------------------------------------------------------------------
  # Scoring and decoding.
  # --------------------------------------------------------------------------

  def _encode(self, params, batch, prompt):
    return self.module.apply(
        {'params': params}, batch['encoder_input_tokens'], prompt,
        batch.get('prompt_ids'), method=self.module.encode)

  def score_batch(self, params: Params, batch: Batch,
                  prompt: Optional[Array] = None) -> Array:
    """Log-likelihood of each example's targets, `[B]` float32."""
    logits = self.module.apply(
        {'params': params}, batch['encoder_input_tokens'],
        batch['decoder_input_tokens'], batch['decoder_target_tokens'],
        prompt=prompt, prompt_ids=batch.get('prompt_ids'))
    log_probs = jax.nn.log_softmax(logits)
    token = jnp.take_along_axis(log_probs,
                                batch['decoder_target_tokens'][..., None],
                                axis=-1)[..., 0]
    return jnp.sum(token * batch['decoder_loss_weights'], axis=-1)

  def rank_classify(self, params: Params, batch: Batch, label_token_ids: Array,
                    prompt: Optional[Array] = None) -> Array:
    """Log-likelihood of every label string for every example, `[B, C]`.

    The encoder runs once per example; the C labels (`[C, U]` int, EOS
    included, 0-padded) are scored together against each encoding, as a
    decoder batch of B*C rows (example-major) whose cross-attention keys and
    values are projected once per example, not once per label.
    """
    encoded = self._encode(params, batch, prompt)  # [B, P+T, H]
    batch_size = encoded.shape[0]
    targets = jnp.tile(label_token_ids, (batch_size, 1))  # [B*C, U]
    decoder_inputs = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)))
    logits = self.module.apply(
        {'params': params}, encoded, batch['encoder_input_tokens'],
        decoder_inputs, targets, method=self.module.decode)  # [B*C, U, V]
    token = jnp.take_along_axis(jax.nn.log_softmax(logits),
                                targets[..., None], axis=-1)[..., 0]
    scores = jnp.sum(token * (targets > 0), axis=-1)  # [B*C]
    return scores.reshape(batch_size, label_token_ids.shape[0])

  def predict_batch(self, params: Params, batch: Batch,
                    rng: Optional[Array] = None, *, method: str = 'greedy',
                    num_decodes: int = 1, temperature: float = 1.0,
                    topk: int = 0, topp: float = 0.0, alpha: float = 0.6,
                    max_decode_length: Optional[int] = None,
                    prompt: Optional[Array] = None,
                    return_scores: bool = False):
    """Decodes each example with the key/value cache; the best decode `[B, L]`.

    Args:
      params: model parameters.
      batch: needs `encoder_input_tokens`; `decoder_input_tokens` [B, L] sets
        the decode length L (its content is ignored).
      rng: for `method='sample'`.
      method: 'greedy', 'beam' (length-normalised, `alpha`) or 'sample'
        (`temperature`, `topk`, `topp`).
      num_decodes: beams or samples per example.
      temperature, topk, topp, alpha: decoding settings.
      max_decode_length: stop after this many tokens (<= L).
      prompt: an explicit prompt (see `t5.Transformer`).
      return_scores: also return the best decode's score `[B]`.

    Returns:
      int32 `[B, L]` token ids, EOS then zeros (and scores if asked).
    """
    if method not in DECODE_METHODS:
      raise ValueError(f'unknown decoding method {method!r}; known: '
                       f'{DECODE_METHODS}')
    inputs = batch['encoder_input_tokens']
    batch_size = inputs.shape[0]
    length = batch['decoder_input_tokens'].shape[1]
    encoded = self._encode(params, batch, prompt)  # [B, P+T, H]

    def make_cache():
      return self.module.init(
          jax.random.PRNGKey(0), encoded, inputs,
          jnp.zeros((batch_size, length), jnp.int32), decode=True,
          max_decode_length=length, method=self.module.decode)['cache']

    # Zeros of the cache's shapes, [B, L, N, D] per layer; the decoding
    # routines repeat it per beam or sample.
    cache = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                   jax.eval_shape(make_cache))
    decodes = 1 if method == 'greedy' else num_decodes
    if decodes > 1:
      # -> [B*K, ...], the K decodes of each example adjacent.
      encoded = decoding.flat_batch_beam_expand(encoded, decodes)
      inputs = decoding.flat_batch_beam_expand(inputs, decodes)

    def tokens_to_logits(state: decoding.DecodingState):
      logits, variables = self.module.apply(
          {'params': params, 'cache': state.cache}, encoded, inputs,
          state.cur_token[:, None], decode=True, max_decode_length=length,
          method=self.module.decode, mutable=['cache'])
      return logits[:, 0, :], variables['cache']

    start = jnp.zeros((batch_size, length), jnp.int32)
    if method == 'greedy':
      sequences, scores = decoding.greedy(
          start, cache, tokens_to_logits, self.eos_id,
          max_decode_len=max_decode_length)
    elif method == 'sample':
      rng = jax.random.PRNGKey(0) if rng is None else rng
      sequences, scores = decoding.temperature_sample(
          start, cache, tokens_to_logits, self.eos_id, rng,
          num_decodes=num_decodes, temperature=temperature, topk=topk,
          topp=topp, max_decode_len=max_decode_length)
      sequences, scores = sequences[:, 0], scores[:, 0]  # most likely first
    else:
      sequences, scores = decoding.beam_search(
          start, cache, tokens_to_logits, self.eos_id,
          num_decodes=num_decodes, alpha=alpha,
          max_decode_len=max_decode_length)
      sequences, scores = sequences[:, -1], scores[:, -1]  # best last
    return (sequences, scores) if return_scores else sequences
