"""Model-agnostic autoregressive decoding: greedy, temperature sampling, beam.

Letters used in shapes: B batch, K decodes (beams or samples) per example,
L max decode length, V vocabulary. A leading `B*K` axis is the batch axis with
the K decodes of each example next to each other (example-major).

Nothing here imports a model. Each routine takes
`tokens_to_logits(state: DecodingState) -> (logits [B*K, V], new_cache)`,
where the cache is any pytree whose non-scalar leaves have a leading batch axis
(`B`, or `B*K` once expanded); scalar leaves (a shared step index) pass through
expansion and reordering unchanged.

Decoding starts from the decoder start token 0 at position 0. Step `i` feeds
the token at decoder-input position `i` and chooses output token `i`; the
returned sequences are the L output tokens (the start token is not included),
zero after the first EOS. `inputs` is the shifted decoder prompt: all zeros to
decode from scratch; a non-zero `inputs[:, j]` (j >= 1) forces output token
`j - 1` (teacher-forced prefix, as in t5x). Forced tokens add nothing to the
log-probabilities and never end a row.

All routines are traceable: call them inside `jax.jit`, with `eos_id`,
`num_decodes`, `topk` and `max_decode_len` static (Python ints) and
`tokens_to_logits` closed over.
"""
from typing import Any, Callable, Optional, Tuple, Union

import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any

# Temperatures at or below this are treated as 0 (greedy), so that dividing by
# the temperature cannot overflow.
MIN_TEMPERATURE = 1e-4

# Score of an empty or impossible hypothesis. NOTE: -inf rather than a large
# finite value: it survives sums and divisions unchanged, so an invalid beam can
# never turn into a valid one, and `score > -inf` tells the two apart.
_NEG_INF = -np.inf


@flax.struct.dataclass
class DecodingState:
  """What `tokens_to_logits` sees at one decoding step.

  Attributes:
    cur_index: [B*K] int32, the decoder-input position being fed (the same for
      every row); the logits returned predict output token `cur_index`.
    sequences: [B*K, L] int32 decoder inputs so far: position 0 holds the start
      token 0, positions 1..cur_index the tokens chosen so far, zeros after.
    cur_token: [B*K] int32, `sequences[:, cur_index]`.
    cache: the model's cache pytree, leaves `[B*K, ...]` (or scalars).
  """
  cur_index: Array
  sequences: Array
  cur_token: Array
  cache: PyTree


TokensToLogits = Callable[[DecodingState], Tuple[Array, PyTree]]


# ------------------------------------------------------------------------------
# Beam-axis helpers.
# ------------------------------------------------------------------------------


def brevity_penalty(alpha: float, length: Union[int, Array]) -> Array:
  """Wu et al. (2016) length penalty `((5 + length) / 6) ** alpha`.

  Args:
    alpha: the exponent; 0 disables length normalisation.
    length: number of generated tokens, EOS included.

  Returns:
    A float32 scalar (or the shape of `length`).
  """
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def add_beam_dim(x: Array, beam_size: int) -> Array:
  """Tiles `[B, ...]` into `[B, K, ...]`; scalars are returned unchanged."""
  if x.ndim == 0:
    return x
  # [B, ...] -> [B, 1, ...] -> [B, K, ...]
  x = jnp.expand_dims(x, axis=1)
  return jnp.repeat(x, beam_size, axis=1)


def flatten_beam_dim(x: Array) -> Array:
  """Merges the leading axes `[B, K, ...]` into `[B*K, ...]`."""
  if x.ndim == 0:
    return x
  return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unflatten_beam_dim(x: Array, batch_size: int, beam_size: int) -> Array:
  """Splits the leading axis `[B*K, ...]` into `[B, K, ...]`."""
  if x.ndim == 0:
    return x
  assert x.shape[0] == batch_size * beam_size, (x.shape, batch_size, beam_size)
  return x.reshape((batch_size, beam_size) + x.shape[1:])


def flat_batch_beam_expand(x: Array, beam_size: int) -> Array:
  """Repeats each example K times in place: `[B, ...]` -> `[B*K, ...]`."""
  return flatten_beam_dim(add_beam_dim(x, beam_size))


def gather_beams(nested: PyTree, beam_indices: Array) -> PyTree:
  """Selects beams per example from every leaf of a pytree.

  Args:
    nested: pytree of `[B, K_old, ...]` arrays; scalar leaves pass through.
    beam_indices: [B, K_new] int32 indices into the K_old axis.

  Returns:
    The pytree with leaves `[B, K_new, ...]`, where
    `out[b, k] = leaf[b, beam_indices[b, k]]`.
  """
  batch_size = beam_indices.shape[0]
  # [B, 1] broadcasts against [B, K_new].
  batch_indices = jnp.arange(batch_size)[:, None]

  def gather(x):
    if x.ndim == 0:
      return x
    return x[batch_indices, beam_indices]

  return jax.tree_util.tree_map(gather, nested)


def cache_map(fn: Callable[[Array], Array], cache: PyTree) -> PyTree:
  """Applies `fn` to every non-scalar leaf of a cache pytree.

  Scalar leaves (for example a shared `cache_index` step counter) have no batch
  axis, so they are left as they are. FrozenDicts and other registered pytrees
  keep their type.
  """
  return jax.tree_util.tree_map(
      lambda x: x if jnp.ndim(x) == 0 else fn(x), cache)


# ------------------------------------------------------------------------------
# Argument checks (at trace time; all of them are on static values).
# ------------------------------------------------------------------------------


def _check_inputs(inputs: Array, max_decode_len: Optional[int]) -> int:
  """Validates the prompt and returns the number of decoding steps."""
  if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
    raise ValueError(
        f'inputs must be an integer [batch, length] array; got shape '
        f'{inputs.shape} and dtype {inputs.dtype}')
  length = inputs.shape[1]
  if max_decode_len is None:
    return length
  if not 1 <= max_decode_len <= length:
    raise ValueError(
        f'max_decode_len={max_decode_len} must be in [1, {length}] (the '
        f'length of inputs, shape {inputs.shape})')
  return max_decode_len


def _is_static(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _token_log_prob(log_probs: Array, tokens: Array) -> Array:
  """[N, V], [N] -> [N]: the log-probability of each row's token."""
  return jnp.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]


# ------------------------------------------------------------------------------
# Greedy decoding and temperature sampling (one loop, two token choosers).
# ------------------------------------------------------------------------------


@flax.struct.dataclass
class _SamplingState:
  """Loop carry of `_sample_loop` (N = B*K rows)."""
  step: Array       # scalar int32: the decoder-input position fed next.
  tokens: Array     # int32 [N, L+1]: start token 0, then the output tokens.
  cache: PyTree     # leaves [N, ...]
  ended: Array      # bool [N]: the row has emitted EOS.
  log_prob: Array   # float32 [N]: model log-prob of the emitted tokens.
  rng: Array        # PRNG key


ChooseFn = Callable[[Array, Array], Array]


def _sample_loop(inputs: Array, cache: PyTree,
                 tokens_to_logits: TokensToLogits, eos_id: int,
                 num_steps: int, choose: ChooseFn,
                 rng: Array) -> Tuple[Array, Array]:
  """Decodes one token per row per step until every row has ended.

  Args:
    inputs: [N, L] int32 shifted decoder prompt (see the module docstring).
    cache: pytree with leaves [N, ...].
    tokens_to_logits: the model step.
    eos_id: the end-of-sequence id.
    num_steps: at most this many output tokens (<= L).
    choose: `(logits [N, V] float32, rng) -> tokens [N] int32`.
    rng: PRNG key, split once per step and passed to `choose`.

  Returns:
    sequences [N, L] int32, zeros after EOS and after `num_steps`;
    log_prob [N] float32, the summed model log-probabilities of the
    non-forced tokens up to and including EOS.
  """
  num_rows, length = inputs.shape
  # Output token j is forced to inputs[:, j + 1] when that is non-zero; the
  # zero column appended makes the last output unforced.
  # [N, L] -> [N, L+1]
  forced_tokens = jnp.concatenate(
      [inputs.astype(jnp.int32), jnp.zeros((num_rows, 1), jnp.int32)], axis=1)

  def cond_fn(state: _SamplingState) -> Array:
    return (state.step < num_steps) & ~jnp.all(state.ended)

  def body_fn(state: _SamplingState) -> _SamplingState:
    i = state.step
    rng, step_rng = jax.random.split(state.rng)
    # [N, L+1] -> [N]
    cur_token = lax.dynamic_index_in_dim(state.tokens, i, 1, keepdims=False)
    decoding_state = DecodingState(
        cur_index=jnp.full((num_rows,), i, jnp.int32),
        sequences=state.tokens[:, :length],
        cur_token=cur_token,
        cache=state.cache)
    # [N, V]
    logits, new_cache = tokens_to_logits(decoding_state)
    logits = logits.astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits)
    # [N]
    chosen = choose(logits, step_rng)
    forced = lax.dynamic_index_in_dim(forced_tokens, i + 1, 1, keepdims=False)
    is_forced = forced != 0
    next_token = jnp.where(is_forced, forced, chosen)
    next_token = jnp.where(state.ended, 0, next_token)
    scored = ~state.ended & ~is_forced
    log_prob = state.log_prob + jnp.where(
        scored, _token_log_prob(log_probs, next_token), 0.0)
    # [N, L+1]
    tokens = lax.dynamic_update_index_in_dim(state.tokens, next_token, i + 1,
                                             1)
    ended = state.ended | (scored & (next_token == eos_id))
    return _SamplingState(step=i + 1, tokens=tokens, cache=new_cache,
                          ended=ended, log_prob=log_prob, rng=rng)

  init = _SamplingState(
      step=jnp.zeros((), jnp.int32),
      tokens=jnp.zeros((num_rows, length + 1), jnp.int32),
      cache=cache,
      ended=jnp.zeros((num_rows,), jnp.bool_),
      log_prob=jnp.zeros((num_rows,), jnp.float32),
      rng=rng)
  final = lax.while_loop(cond_fn, body_fn, init)
  # Drop the start token: [N, L+1] -> [N, L]
  return final.tokens[:, 1:], final.log_prob


def greedy(inputs: Array, cache: PyTree, tokens_to_logits: TokensToLogits,
           eos_id: int,
           max_decode_len: Optional[int] = None) -> Tuple[Array, Array]:
  """Greedy decoding: the most likely token at every step.

  The loop stops as soon as every row has emitted EOS (or after
  `max_decode_len` tokens), so it calls `tokens_to_logits` at most that many
  times.

  Args:
    inputs: [B, L] int32 shifted decoder prompt; zeros to decode from scratch.
    cache: the model's cache, leaves [B, ...] (or scalars).
    tokens_to_logits: `DecodingState -> (logits [B, V], new_cache)`.
    eos_id: end-of-sequence id (static).
    max_decode_len: at most this many tokens (static, <= L); default L.

  Returns:
    sequences: [B, L] int32 generated tokens, zero after EOS.
    log_probs: [B] float32 sum of the model's log-probabilities of the
      generated tokens up to and including EOS.

  Raises:
    ValueError: if `inputs` is not `[B, L]` integer or `max_decode_len` is not
      in [1, L].
  """
  num_steps = _check_inputs(inputs, max_decode_len)
  argmax = lambda logits, rng: jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return _sample_loop(inputs, cache, tokens_to_logits, eos_id, num_steps,
                      argmax, jax.random.PRNGKey(0))


def _topk_filter(logits: Array, k: int) -> Array:
  """Sets all but the k largest logits of each row to -inf.

  Args:
    logits: [N, V] float32.
    k: 1 <= k <= V.

  Returns:
    [N, V]; ties with the k-th largest value are kept too.
  """
  # [N, k] -> [N, 1]
  kth_largest = lax.top_k(logits, k)[0][:, -1:]
  return jnp.where(logits < kth_largest, -jnp.inf, logits)


def _topp_filter(logits: Array, p: Union[float, Array]) -> Array:
  """Nucleus filter: keeps the fewest most likely tokens whose mass reaches p.

  Args:
    logits: [N, V] float32 (may already hold -inf).
    p: the mass; p <= 0 or p >= 1 keeps every token. May be traced.

  Returns:
    [N, V] with the tokens outside the nucleus set to -inf. The most likely
    token is always kept; ties with the smallest kept logit are kept too.
  """
  p = jnp.asarray(p, jnp.float32)
  # [N, V], most likely first.
  sorted_logits = -jnp.sort(-logits, axis=-1)
  sorted_probs = jax.nn.softmax(sorted_logits, axis=-1)
  # Mass of the tokens ranked strictly before each token.
  mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
  keep = (mass_before < p) | (p <= 0.0) | (p >= 1.0)
  # The first position is always kept (mass_before == 0 < p).
  keep = keep.at[:, 0].set(True)
  # [N, 1] smallest kept logit.
  threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1,
                      keepdims=True)
  return jnp.where(logits < threshold, -jnp.inf, logits)


def temperature_sample(
    inputs: Array,
    cache: PyTree,
    tokens_to_logits: TokensToLogits,
    eos_id: int,
    decode_rng: Array,
    *,
    num_decodes: int = 1,
    temperature: Union[float, Array] = 1.0,
    topk: int = 0,
    topp: Union[float, Array] = 0.0,
    max_decode_len: Optional[int] = None) -> Tuple[Array, Array]:
  """Samples `num_decodes` continuations per example.

  At each step the logits are divided by the temperature, then filtered by
  top-k (if `topk > 0`) and then by nucleus top-p (if `0 < topp < 1`), and the
  next token is drawn from what remains. A temperature of 0 (<= 1e-4) is
  greedy decoding whatever `topk` and `topp` are.

  NOTE: the returned log-probabilities are the model's own (temperature 1,
  unfiltered), the quantity used to rank or score samples; t5x calls this
  `rescale_log_probs=False`. Unlike t5x, which sorts samples ascending, samples
  are returned most likely first.

  Args:
    inputs: [B, L] int32 shifted decoder prompt; zeros to decode from scratch.
    cache: the model's cache, leaves [B, ...] (or scalars); repeated to
      [B*K, ...] before the first step.
    tokens_to_logits: `DecodingState -> (logits [B*K, V], new_cache)`.
    eos_id: end-of-sequence id (static).
    decode_rng: PRNG key.
    num_decodes: K, samples per example (static).
    temperature: scalar, or [B] per example; may be traced.
    topk: keep only the k most likely tokens; 0 disables (static).
    topp: keep the smallest set of most likely tokens whose probability
      reaches topp; 0 (or 1) disables it. A scalar; may be traced.
    max_decode_len: at most this many tokens (static, <= L); default L.

  Returns:
    sequences: [B, K, L] int32 sampled tokens, zero after EOS.
    log_probs: [B, K] float32 model log-probability of each sample up to and
      including EOS; each example's samples sorted by it, highest first.

  Raises:
    ValueError: for a malformed `inputs`, `max_decode_len` out of [1, L],
      `num_decodes < 1`, `topk` out of [0, V], a per-example temperature
      whose length is not B, or a static negative temperature or `topp` out
      of [0, 1].
  """
  num_steps = _check_inputs(inputs, max_decode_len)
  if num_decodes < 1:
    raise ValueError(f'num_decodes must be >= 1; got {num_decodes}')
  if topk < 0:
    raise ValueError(f'topk must be >= 0 (0 disables it); got {topk}')
  if _is_static(topp) and not 0.0 <= float(topp) <= 1.0:
    raise ValueError(f'topp must be in [0, 1] (0 disables it); got {topp}')
  if _is_static(temperature) and np.any(np.asarray(temperature) < 0):
    raise ValueError(f'temperature must be >= 0; got {temperature}')
  use_topp = not (_is_static(topp) and float(topp) == 0.0)
  batch_size = inputs.shape[0]

  temperature = jnp.asarray(temperature, jnp.float32)
  if temperature.ndim == 1:
    if temperature.shape[0] != batch_size:
      raise ValueError(
          f'a per-example temperature must have shape [{batch_size}] (the '
          f'batch size of inputs); got {temperature.shape}')
    # [B] -> [B*K, 1]
    temperature = jnp.repeat(temperature, num_decodes)[:, None]
  elif temperature.ndim != 0:
    raise ValueError(
        f'temperature must be a scalar or a [batch] vector; got shape '
        f'{temperature.shape}')

  def choose(logits: Array, rng: Array) -> Array:
    # [B*K, V]
    scaled = logits / jnp.maximum(temperature, MIN_TEMPERATURE)
    if topk:
      if topk > logits.shape[-1]:
        raise ValueError(
            f'topk={topk} exceeds the vocabulary size {logits.shape[-1]}')
      scaled = _topk_filter(scaled, topk)
    if use_topp:
      scaled = _topp_filter(scaled, topp)
    # [B*K]
    sampled = jax.random.categorical(rng, scaled, axis=-1).astype(jnp.int32)
    greedy_token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    is_greedy = jnp.reshape(temperature <= MIN_TEMPERATURE, (-1,))
    return jnp.where(is_greedy, greedy_token, sampled)

  # [B, L] -> [B*K, L]; cache leaves [B, ...] -> [B*K, ...]
  flat_inputs = flat_batch_beam_expand(inputs, num_decodes)
  flat_cache = cache_map(lambda x: flat_batch_beam_expand(x, num_decodes),
                         cache)
  # [B*K, L], [B*K]
  flat_sequences, flat_log_probs = _sample_loop(
      flat_inputs, flat_cache, tokens_to_logits, eos_id, num_steps, choose,
      decode_rng)
  # -> [B, K, L], [B, K]
  sequences = unflatten_beam_dim(flat_sequences, batch_size, num_decodes)
  log_probs = unflatten_beam_dim(flat_log_probs, batch_size, num_decodes)
  # Most likely first. [B, K]
  order = jnp.argsort(-log_probs, axis=-1)
  sequences = jnp.take_along_axis(sequences, order[:, :, None], axis=1)
  log_probs = jnp.take_along_axis(log_probs, order, axis=1)
  return sequences, log_probs


# ------------------------------------------------------------------------------
# Beam search.
# ------------------------------------------------------------------------------


@flax.struct.dataclass
class BeamState:
  """Loop carry of `beam_search`. Beams are kept best first."""
  step: Array             # scalar int32: the decoder-input position fed next.
  live_seqs: Array        # int32 [B, K, L+1]: start token, then tokens.
  live_log_probs: Array   # float32 [B, K]: -inf marks an empty beam.
  finished_seqs: Array    # int32 [B, K, L+1]: hypotheses that ended in EOS.
  finished_scores: Array  # float32 [B, K]: length-normalised; -inf = empty.
  cache: PyTree           # leaves [B*K, ...], aligned with live_seqs.


def beam_search(inputs: Array,
                cache: PyTree,
                tokens_to_logits: TokensToLogits,
                eos_id: int,
                *,
                num_decodes: int = 4,
                alpha: float = 0.6,
                max_decode_len: Optional[int] = None) -> Tuple[Array, Array]:
  """Beam search with the brevity penalty of Wu et al. (2016).

  Each step extends every live beam by every token, keeps the 2K best
  extensions (so that K live beams remain even if K of them end), moves those
  ending in EOS into the finished set with score
  `log_prob / brevity_penalty(alpha, length)` (length counts EOS), and keeps
  the K best of the rest alive. The cache rows are reordered to follow their
  beams. The search stops after `max_decode_len` steps, or earlier once no live
  beam can beat the worst of K finished hypotheses (the best a live beam can
  reach is its log-prob over the largest penalty, as log-probs only fall).

  Hypotheses that have not produced EOS by `max_decode_len` count only if an
  example has no finished hypothesis at all; then its live beams are returned,
  scored by `log_prob / brevity_penalty(alpha, max_decode_len)`.

  NOTE: as in t5x, results are sorted by score in ascending order, so the best
  hypothesis is the last one (`sequences[:, -1]`). Slots that hold no
  hypothesis (fewer than K found) have score -inf and zero tokens.

  Args:
    inputs: [B, L] int32 shifted decoder prompt; zeros to decode from scratch.
      Forced prefix tokens score 0 but count towards the length.
    cache: the model's cache, leaves [B, ...] (or scalars); repeated to
      [B*K, ...] before the first step.
    tokens_to_logits: `DecodingState -> (logits [B*K, V], new_cache)`.
    eos_id: end-of-sequence id (static).
    num_decodes: K, the beam size and the number of hypotheses returned
      (static).
    alpha: brevity-penalty exponent, >= 0; 0 ranks by total log-prob.
    max_decode_len: at most this many tokens (static, <= L); default L.

  Returns:
    sequences: [B, K, L] int32, zero after EOS, best last.
    scores: [B, K] float32 length-normalised log-probabilities, ascending.

  Raises:
    ValueError: for a malformed `inputs`, `max_decode_len` out of [1, L],
      `num_decodes < 1`, a negative static `alpha`, or a vocabulary of fewer
      than 2 tokens.
  """
  num_steps = _check_inputs(inputs, max_decode_len)
  if num_decodes < 1:
    raise ValueError(f'num_decodes must be >= 1; got {num_decodes}')
  if _is_static(alpha) and alpha < 0:
    raise ValueError(
        f'alpha must be >= 0 (the early-stopping bound relies on it); got '
        f'{alpha}')
  beam_size = num_decodes
  batch_size, length = inputs.shape
  # Output token j is forced to inputs[:, j + 1] when that is non-zero.
  # [B, L] -> [B, L+1]
  forced_tokens = jnp.concatenate(
      [inputs.astype(jnp.int32), jnp.zeros((batch_size, 1), jnp.int32)],
      axis=1)
  max_penalty = brevity_penalty(alpha, num_steps)

  def cond_fn(state: BeamState) -> Array:
    # [B] best score any live beam could still reach.
    best_reachable = jnp.max(state.live_log_probs, axis=1) / max_penalty
    # [B] -inf while some finished slot is empty.
    worst_finished = jnp.min(state.finished_scores, axis=1)
    search_over = jnp.all(worst_finished > best_reachable)
    return (state.step < num_steps) & ~search_over

  def body_fn(state: BeamState) -> BeamState:
    i = state.step
    # [B, K, L+1] -> [B, K] -> [B*K]
    cur_token = flatten_beam_dim(
        lax.dynamic_index_in_dim(state.live_seqs, i, 2, keepdims=False))
    decoding_state = DecodingState(
        cur_index=jnp.full((batch_size * beam_size,), i, jnp.int32),
        sequences=flatten_beam_dim(state.live_seqs[:, :, :length]),
        cur_token=cur_token,
        cache=state.cache)
    # [B*K, V]
    flat_logits, new_cache = tokens_to_logits(decoding_state)
    vocab_size = flat_logits.shape[-1]
    if vocab_size < 2:
      raise ValueError(
          f'beam search needs a vocabulary of at least 2 tokens; the logits '
          f'have shape {flat_logits.shape}')
    # [B*K, V] -> [B, K, V]
    log_probs = unflatten_beam_dim(
        jax.nn.log_softmax(flat_logits.astype(jnp.float32)), batch_size,
        beam_size)
    # A forced token scores 0 and every other token -inf. [B]
    forced = lax.dynamic_index_in_dim(forced_tokens, i + 1, 1, keepdims=False)
    is_forced = forced != 0
    forced_log_probs = jnp.where(
        jnp.arange(vocab_size) == forced[:, None, None], 0.0, -jnp.inf)
    log_probs = jnp.where(is_forced[:, None, None], forced_log_probs, log_probs)
    # [B, K, V] -> [B, K*V]
    candidates = (state.live_log_probs[:, :, None] + log_probs).reshape(
        batch_size, beam_size * vocab_size)

    # The 2K best extensions. [B, 2K]
    top_log_probs, top_indices = lax.top_k(candidates, 2 * beam_size)
    parent = top_indices // vocab_size
    token = (top_indices % vocab_size).astype(jnp.int32)
    # [B, K, L+1] -> [B, 2K, L+1]
    top_seqs = gather_beams(state.live_seqs, parent)
    top_seqs = lax.dynamic_update_index_in_dim(top_seqs, token[:, :, None],
                                               i + 1, 2)
    # [B, 2K]
    ends = ((token == eos_id) & ~is_forced[:, None]
            & (top_log_probs > _NEG_INF))

    # Live: the K best extensions that did not end. [B, K]
    live_candidates = jnp.where(ends, _NEG_INF, top_log_probs)
    live_log_probs, live_pick = lax.top_k(live_candidates, beam_size)
    # [B, 2K, L+1] -> [B, K, L+1]
    live_seqs = gather_beams(top_seqs, live_pick)
    # The live beams' rows in the previous step's beams. [B, K]
    live_parent = jnp.take_along_axis(parent, live_pick, axis=1)
    # Leaves [B*K, ...] -> [B, K, ...] -> gathered -> [B*K, ...]
    live_cache = cache_map(
        lambda x: flatten_beam_dim(
            gather_beams(unflatten_beam_dim(x, batch_size, beam_size),
                         live_parent)),
        new_cache)

    # Finished: merge the new endings into the K best so far. [B, 2K]
    new_scores = jnp.where(ends, top_log_probs / brevity_penalty(alpha, i + 1),
                           _NEG_INF)
    # [B, 3K], [B, 3K, L+1]
    merged_scores = jnp.concatenate([state.finished_scores, new_scores], axis=1)
    merged_seqs = jnp.concatenate([state.finished_seqs, top_seqs], axis=1)
    # [B, K], [B, K, L+1]
    finished_scores, finished_pick = lax.top_k(merged_scores, beam_size)
    finished_seqs = gather_beams(merged_seqs, finished_pick)

    return BeamState(step=i + 1, live_seqs=live_seqs,
                     live_log_probs=live_log_probs,
                     finished_seqs=finished_seqs,
                     finished_scores=finished_scores, cache=live_cache)

  init = BeamState(
      step=jnp.zeros((), jnp.int32),
      live_seqs=jnp.zeros((batch_size, beam_size, length + 1), jnp.int32),
      # Only the first beam exists at the start. [B, K]
      live_log_probs=jnp.tile(
          jnp.array([0.0] + [_NEG_INF] * (beam_size - 1), jnp.float32),
          (batch_size, 1)),
      finished_seqs=jnp.zeros((batch_size, beam_size, length + 1), jnp.int32),
      finished_scores=jnp.full((batch_size, beam_size), _NEG_INF, jnp.float32),
      cache=cache_map(lambda x: flat_batch_beam_expand(x, beam_size), cache))
  final = lax.while_loop(cond_fn, body_fn, init)

  # An example with no finished hypothesis falls back to its live beams.
  # [B]
  any_finished = final.finished_scores[:, 0] > _NEG_INF
  live_scores = final.live_log_probs / brevity_penalty(alpha, final.step)
  # [B, K], [B, K, L+1]
  scores = jnp.where(any_finished[:, None], final.finished_scores, live_scores)
  seqs = jnp.where(any_finished[:, None, None], final.finished_seqs,
                   final.live_seqs)
  seqs = jnp.where((scores > _NEG_INF)[:, :, None], seqs, 0)
  # Best first -> ascending (best last); drop the start token.
  # [B, K, L], [B, K]
  return seqs[:, ::-1, 1:], scores[:, ::-1]
