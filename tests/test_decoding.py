"""Tests for prompt_tuning.model.decoding on toy next-token models.

The toy model's logits at decoder-input position j are
`table[j, token fed at j] + context_bias[first output token] + row_bias[row]`,
where the first output token is read back from the cache's record of the fed
tokens. A cache that is not threaded or not reordered with its beam therefore
changes the logits, and a numpy re-implementation of the model gives exact
reference scores. The cache also counts steps per row and holds a scalar index
that must pass through expansion and gathering untouched.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import decoding

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')

EOS = 1


# ------------------------------------------------------------------------------
# The toy model and its numpy reference.
# ------------------------------------------------------------------------------


class ToyModel:
  """A next-token table plus a dependence on the cache's token history."""

  def __init__(self, table, context_bias, row_bias):
    self.table = np.asarray(table, np.float32)              # [L, V, V]
    self.context_bias = np.asarray(context_bias, np.float32)  # [V, V]
    self.row_bias = np.asarray(row_bias, np.float32)        # [B, V]
    self.calls = []     # cur_index of every call, when recording.
    self.problems = []  # cache/state inconsistencies seen by the checks.

  @property
  def length(self):
    return self.table.shape[0]

  @property
  def batch(self):
    return self.row_bias.shape[0]

  def init_cache(self):
    return {
        'history': jnp.zeros((self.batch, self.length), jnp.int32),
        'steps': jnp.zeros((self.batch,), jnp.int32),
        'row_bias': jnp.asarray(self.row_bias),
        'index': jnp.zeros((), jnp.int32),  # scalar: shared by all rows.
    }

  def tokens_to_logits(self, state, record=False):
    cache = state.cache
    rows = jnp.arange(state.cur_token.shape[0])
    if record:
      jax.debug.callback(self._check, state.cur_index, state.sequences,
                         state.cur_token, cache['history'], cache['steps'],
                         cache['index'])
    history = cache['history'].at[rows, state.cur_index].set(state.cur_token)
    # 0 until the first output token is fed (a one-step model has none).
    context = history[:, min(1, self.length - 1)] * (self.length > 1)
    logits = (jnp.asarray(self.table)[state.cur_index, state.cur_token]
              + jnp.asarray(self.context_bias)[context] + cache['row_bias'])
    new_cache = dict(cache, history=history, steps=cache['steps'] + 1,
                     index=cache['index'] + 1)
    return logits, new_cache

  def _check(self, cur_index, sequences, cur_token, history, steps, index):
    cur_index, sequences, cur_token, history, steps = map(
        np.asarray, (cur_index, sequences, cur_token, history, steps))
    i = int(cur_index[0])
    self.calls.append(i)
    if not np.all(cur_index == i):
      self.problems.append(f'cur_index not uniform: {cur_index}')
    if not np.array_equal(cur_token, sequences[:, i]):
      self.problems.append(f'step {i}: cur_token != sequences[:, {i}]')
    if not np.array_equal(history[:, :i], sequences[:, :i]):
      self.problems.append(f'step {i}: cache history != own sequence')
    if not np.all(steps == i) or int(index) != i:
      self.problems.append(f'step {i}: step counters {steps}, {index}')

  # --- numpy reference -------------------------------------------------------

  def log_probs(self, row, prefix):
    """[V] model log-probs of the next output token after `prefix`."""
    j = len(prefix)
    fed = ([0] + list(prefix))[j]
    context = prefix[0] if j >= 1 else 0
    logits = (self.table[j, fed] + self.context_bias[context]
              + self.row_bias[row]).astype(np.float64)
    return logits - np.logaddexp.reduce(logits)

  def sequence_log_prob(self, row, tokens, num_forced=0):
    """Summed log-prob of `tokens` (up to EOS), skipping forced ones."""
    total = 0.0
    for j, token in enumerate(tokens):
      if j >= num_forced:
        total += self.log_probs(row, tokens[:j])[token]
      if token == EOS and j >= num_forced:
        break
    return total

  def greedy(self, row, num_steps, forced=()):
    out = []
    for j in range(num_steps):
      if j < len(forced):
        out.append(forced[j])
        continue
      out.append(int(np.argmax(self.log_probs(row, out))))
      if out[-1] == EOS:
        break
    return out


def _pad(tokens, length):
  return list(tokens) + [0] * (length - len(tokens))


def _random_model(seed, length, vocab, batch, eos_shift=0.0):
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(length, vocab, vocab)) * 1.5
  table[:, :, EOS] += eos_shift
  context_bias = rng.normal(size=(vocab, vocab))
  row_bias = rng.normal(size=(batch, vocab))
  return ToyModel(table, context_bias, row_bias)


def _jit(fn, model, record=False, **kwargs):
  ttl = functools.partial(model.tokens_to_logits, record=record)
  return jax.jit(functools.partial(fn, tokens_to_logits=ttl, **kwargs))


def _finish(model):
  jax.effects_barrier()
  assert not model.problems, model.problems[:5]


# ------------------------------------------------------------------------------
# Helpers.
# ------------------------------------------------------------------------------


def test_beam_axis_helpers():
  x = jnp.arange(6).reshape(2, 3)
  expanded = decoding.add_beam_dim(x, 4)
  assert expanded.shape == (2, 4, 3)
  np.testing.assert_array_equal(expanded[:, 2], x)
  flat = decoding.flatten_beam_dim(expanded)
  assert flat.shape == (8, 3)
  # Example-major: the 4 copies of example 0 come first.
  np.testing.assert_array_equal(flat[:4], np.tile(x[:1], (4, 1)))
  np.testing.assert_array_equal(decoding.flat_batch_beam_expand(x, 4), flat)
  np.testing.assert_array_equal(
      decoding.unflatten_beam_dim(flat, 2, 4), expanded)


def test_gather_beams_and_cache_map():
  # [B=2, K=3, 2]
  x = jnp.arange(12).reshape(2, 3, 2)
  idx = jnp.array([[2, 2, 0, 1], [1, 0, 0, 0]])
  tree = {'x': x, 'scalar': jnp.array(7)}
  out = decoding.gather_beams(tree, idx)
  assert out['x'].shape == (2, 4, 2)
  np.testing.assert_array_equal(out['x'][0], x[0][np.array([2, 2, 0, 1])])
  np.testing.assert_array_equal(out['x'][1], x[1][np.array([1, 0, 0, 0])])
  assert int(out['scalar']) == 7
  mapped = decoding.cache_map(lambda a: a * 2, tree)
  np.testing.assert_array_equal(mapped['x'], x * 2)
  assert int(mapped['scalar']) == 7


def test_brevity_penalty():
  np.testing.assert_allclose(decoding.brevity_penalty(0.6, 7), 2.0**0.6,
                             rtol=1e-6)
  assert float(decoding.brevity_penalty(0.0, 11)) == 1.0


# ------------------------------------------------------------------------------
# Greedy.
# ------------------------------------------------------------------------------


@pytest.mark.parametrize('max_decode_len', [None, 3])
def test_greedy_matches_stepwise_argmax(max_decode_len):
  length, vocab = 6, 6
  model = _random_model(0, length, vocab, batch=3)
  # Row 0 ends early, row 1 never emits EOS, row 2 is left to chance.
  model.row_bias[0, EOS] += 2.5
  model.row_bias[1, EOS] = -30.0
  num_steps = max_decode_len or length
  expected = [model.greedy(b, num_steps) for b in range(3)]
  assert expected[0][-1] == EOS and len(expected[0]) < num_steps
  assert EOS not in expected[1] and len(expected[1]) == num_steps

  inputs = jnp.zeros((3, length), jnp.int32)
  decode = _jit(decoding.greedy, model, record=True, eos_id=EOS,
                max_decode_len=max_decode_len)
  sequences, log_probs = decode(inputs, model.init_cache())
  _finish(model)
  assert sequences.shape == (3, length) and log_probs.shape == (3,)
  for b in range(3):
    np.testing.assert_array_equal(sequences[b], _pad(expected[b], length))
    np.testing.assert_allclose(
        log_probs[b], model.sequence_log_prob(b, expected[b]), rtol=1e-5)


def test_greedy_exits_when_all_rows_ended():
  length, vocab = 6, 5
  model = _random_model(1, length, vocab, batch=2)
  model.table[2, :, EOS] += 40.0  # Every row ends at output position 2.
  decode = _jit(decoding.greedy, model, record=True, eos_id=EOS)
  sequences, _ = decode(jnp.zeros((2, length), jnp.int32), model.init_cache())
  _finish(model)
  assert model.calls == [0, 1, 2]
  np.testing.assert_array_equal(sequences[:, 2], [EOS, EOS])
  np.testing.assert_array_equal(sequences[:, 3:], 0)


def test_greedy_forced_prefix():
  length, vocab = 6, 6
  model = _random_model(2, length, vocab, batch=2)
  model.row_bias[:, EOS] = -30.0
  # Row 0 is forced to start with [3, 2]; row 1 decodes from scratch.
  inputs = jnp.array([[0, 3, 2, 0, 0, 0], [0, 0, 0, 0, 0, 0]], jnp.int32)
  decode = _jit(decoding.greedy, model, record=True, eos_id=EOS)
  sequences, log_probs = decode(inputs, model.init_cache())
  _finish(model)
  expected0 = model.greedy(0, length, forced=[3, 2])
  expected1 = model.greedy(1, length)
  np.testing.assert_array_equal(sequences[0], expected0)
  np.testing.assert_array_equal(sequences[1], expected1)
  np.testing.assert_allclose(
      log_probs[0], model.sequence_log_prob(0, expected0, num_forced=2),
      rtol=1e-5)


# ------------------------------------------------------------------------------
# Beam search.
# ------------------------------------------------------------------------------


def _brute_force(model, row, num_steps, alpha, forced=()):
  """All EOS-terminated outputs with their length-normalised scores."""
  hypotheses = []
  others = [t for t in range(model.table.shape[-1]) if t != EOS]
  for n in range(len(forced) + 1, num_steps + 1):
    for middle in itertools.product(others, repeat=n - 1 - len(forced)):
      tokens = list(forced) + list(middle) + [EOS]
      log_prob = model.sequence_log_prob(row, tokens, num_forced=len(forced))
      score = log_prob / ((5.0 + n) / 6.0)**alpha
      hypotheses.append((score, tokens))
  return sorted(hypotheses)


def test_beam_search_exhaustive_equals_brute_force():
  # With 2K >= (V - 1)^(L - 1) * V every candidate survives each step, so the
  # search is exact: its finished set is every EOS-terminated sequence.
  length, vocab, beams = 4, 5, 160
  model = _random_model(3, length, vocab, batch=2)
  # alpha is traced, so both values share one compilation.
  decode = _jit(decoding.beam_search, model, record=True, eos_id=EOS,
                num_decodes=beams)
  for alpha in (0.0, 0.6):
    sequences, scores = decode(jnp.zeros((2, length), jnp.int32),
                               model.init_cache(), alpha=jnp.float32(alpha))
    _finish(model)
    assert sequences.shape == (2, beams, length)
    assert scores.shape == (2, beams)
    for b in range(2):
      expected = _brute_force(model, b, length, alpha)
      assert len(expected) == 85
      num_empty = beams - len(expected)
      # Ascending, best last; empty slots first.
      assert np.all(np.isneginf(scores[b, :num_empty]))
      np.testing.assert_array_equal(sequences[b, :num_empty], 0)
      np.testing.assert_allclose(scores[b, num_empty:],
                                 [s for s, _ in expected], rtol=1e-5,
                                 atol=1e-5)
      np.testing.assert_array_equal(
          sequences[b, num_empty:], [_pad(t, length) for _, t in expected])


def test_beam_search_forced_prefix_equals_brute_force():
  length, vocab, beams = 4, 5, 40
  model = _random_model(4, length, vocab, batch=2)
  prefixes = [[3], [2, 4]]
  inputs = jnp.array([[0, 3, 0, 0], [0, 2, 4, 0]], jnp.int32)
  decode = _jit(decoding.beam_search, model, record=True, eos_id=EOS,
                num_decodes=beams, alpha=0.6)
  sequences, scores = decode(inputs, model.init_cache())
  _finish(model)
  for b, prefix in enumerate(prefixes):
    expected = _brute_force(model, b, length, 0.6, forced=prefix)
    found = len(expected)
    np.testing.assert_allclose(scores[b, -found:], [s for s, _ in expected],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        sequences[b, -found:], [_pad(t, length) for _, t in expected])
    assert np.all(np.isneginf(scores[b, :-found]))


def test_beam_size_one_equals_greedy():
  length, vocab = 6, 6
  model = _random_model(5, length, vocab, batch=3)
  # EOS is (almost) impossible except at output position 2, where it wins, so
  # no cheaper ending exists for the single beam to find.
  model.table[:, :, EOS] = -20.0
  model.table[2, :, EOS] = 20.0
  inputs = jnp.zeros((3, length), jnp.int32)
  greedy_seqs, greedy_log_probs = _jit(decoding.greedy, model, eos_id=EOS)(
      inputs, model.init_cache())
  decode = _jit(decoding.beam_search, model, record=True, eos_id=EOS,
                num_decodes=1)
  for alpha in (0.0, 0.6):
    model.calls.clear()
    sequences, scores = decode(inputs, model.init_cache(),
                               alpha=jnp.float32(alpha))
    _finish(model)
    np.testing.assert_array_equal(sequences[:, 0], greedy_seqs)
    np.testing.assert_allclose(
        scores[:, 0],
        greedy_log_probs / decoding.brevity_penalty(alpha, 3), rtol=1e-5)
    # No live beam can catch up once the EOS is found: the search stops early.
    assert model.calls == [0, 1, 2]


def test_beam_search_without_eos_returns_live_beams():
  length, vocab, beams, steps = 4, 5, 16, 2
  model = _random_model(6, length, vocab, batch=2)
  model.table[:, :, EOS] = -np.inf  # EOS is impossible.
  decode = _jit(decoding.beam_search, model, record=True, eos_id=EOS,
                num_decodes=beams, alpha=0.6, max_decode_len=steps)
  sequences, scores = decode(jnp.zeros((2, length), jnp.int32),
                             model.init_cache())
  _finish(model)
  others = [t for t in range(vocab) if t != EOS]
  for b in range(2):
    expected = sorted(
        (model.sequence_log_prob(b, list(t)) / ((5.0 + steps) / 6.0)**0.6,
         list(t)) for t in itertools.product(others, repeat=steps))
    np.testing.assert_allclose(scores[b], [s for s, _ in expected], rtol=1e-5)
    np.testing.assert_array_equal(
        sequences[b], [_pad(t, length) for _, t in expected])


# ------------------------------------------------------------------------------
# Temperature sampling.
# ------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def sampling_model():
  """A random 2-example model and its greedy decodes (compiled once)."""
  length, vocab = 5, 6
  model = _random_model(7, length, vocab, batch=2)
  inputs = jnp.zeros((2, length), jnp.int32)
  greedy_seqs, greedy_log_probs = _jit(decoding.greedy, model, eos_id=EOS)(
      inputs, model.init_cache())
  return model, inputs, np.asarray(greedy_seqs), np.asarray(greedy_log_probs)


@pytest.mark.parametrize('kwargs', [
    dict(temperature=0.0),
    dict(temperature=0.0, topk=3, topp=0.5),
    dict(temperature=1.0, topk=1),
    dict(temperature=1.5, topp=1e-6),
])
def test_sampling_degenerates_to_greedy(sampling_model, kwargs):
  model, inputs, greedy_seqs, greedy_log_probs = sampling_model
  sample = _jit(decoding.temperature_sample, model, eos_id=EOS, num_decodes=3,
                **kwargs)
  sequences, log_probs = sample(inputs, model.init_cache(),
                                decode_rng=jax.random.PRNGKey(0))
  assert sequences.shape == (2, 3, inputs.shape[1])
  assert log_probs.shape == (2, 3)
  for k in range(3):
    np.testing.assert_array_equal(sequences[:, k], greedy_seqs)
    np.testing.assert_allclose(log_probs[:, k], greedy_log_probs, rtol=1e-5)


def test_per_example_temperature(sampling_model):
  model, inputs, greedy_seqs, _ = sampling_model
  sample = _jit(decoding.temperature_sample, model, eos_id=EOS,
                num_decodes=64)
  sequences, _ = sample(inputs, model.init_cache(),
                        decode_rng=jax.random.PRNGKey(1),
                        temperature=jnp.array([0.0, 3.0]))
  np.testing.assert_array_equal(sequences[0],
                                np.tile(greedy_seqs[0], (64, 1)))
  assert len({tuple(s) for s in np.asarray(sequences[1])}) > 1


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max())
  return e / e.sum()


@pytest.fixture(scope='module')
def one_step_sampler():
  """A one-step model and a sampler per topk (temperature, topp traced)."""
  vocab, num_samples = 6, 4000
  logits = np.array([1.0, -0.5, 0.3, 1.4, -1.0, 0.6], np.float32)
  model = ToyModel(logits[None, None, :].repeat(vocab, axis=1),
                   np.zeros((vocab, vocab)), np.zeros((1, vocab)))

  @functools.lru_cache(maxsize=None)
  def sampler(topk):
    return _jit(decoding.temperature_sample, model, eos_id=EOS,
                num_decodes=num_samples, topk=topk)

  return model, logits, sampler


@pytest.mark.parametrize('temperature,topk,topp', [
    (1.0, 0, 0.0),
    (0.5, 0, 0.0),
    (1.0, 2, 0.0),
    (2.0, 0, 0.7),
])
def test_one_step_frequencies_match_filtered_softmax(one_step_sampler,
                                                    temperature, topk, topp):
  model, logits, sampler = one_step_sampler
  vocab = logits.shape[0]
  sequences, log_probs = sampler(topk)(
      jnp.zeros((1, 1), jnp.int32), model.init_cache(),
      decode_rng=jax.random.PRNGKey(42), temperature=jnp.float32(temperature),
      topp=jnp.float32(topp))
  tokens = np.asarray(sequences[0, :, 0])
  num_samples = tokens.shape[0]
  # Reference distribution: temperature, then top-k, then the nucleus.
  probs = _softmax(logits / temperature)
  order = np.argsort(-probs)
  keep = np.zeros(vocab, bool)
  if topk:
    keep[order[:topk]] = True
  elif topp:
    mass_before = np.cumsum(probs[order]) - probs[order]
    keep[order[mass_before < topp]] = True
  else:
    keep[:] = True
  expected = np.where(keep, probs, 0.0) / np.where(keep, probs, 0.0).sum()
  frequencies = np.bincount(tokens, minlength=vocab) / num_samples
  np.testing.assert_allclose(frequencies, expected, atol=0.03)
  assert np.all(frequencies[~keep] == 0)
  # The returned log-probs are the model's (temperature 1, unfiltered).
  np.testing.assert_allclose(
      log_probs[0], np.log(_softmax(logits))[tokens], rtol=1e-5)


@pytest.mark.parametrize('topk,topp', [(2, 0.0), (0, 0.8)])
def test_sampled_sequences_are_consistent(topk, topp):
  length, vocab, num_samples = 5, 6, 64
  model = _random_model(9, length, vocab, batch=2, eos_shift=0.5)
  inputs = jnp.array([[0, 4, 0, 0, 0], [0, 0, 0, 0, 0]], jnp.int32)
  sample = _jit(decoding.temperature_sample, model, record=True, eos_id=EOS,
                num_decodes=num_samples, temperature=1.3, topk=topk, topp=topp)
  sequences, log_probs = sample(inputs, model.init_cache(),
                                decode_rng=jax.random.PRNGKey(3))
  _finish(model)
  sequences, log_probs = np.asarray(sequences), np.asarray(log_probs)
  assert np.all(np.diff(log_probs, axis=1) <= 0)  # Most likely first.
  num_ended = 0
  for b in range(2):
    num_forced = 1 if b == 0 else 0
    for k in range(num_samples):
      tokens = list(sequences[b, k])
      if num_forced:
        assert tokens[0] == 4
      if EOS in tokens[num_forced:]:
        end = tokens.index(EOS, num_forced) + 1
        assert not any(tokens[end:])
        tokens = tokens[:end]
        num_ended += 1
      np.testing.assert_allclose(
          log_probs[b, k],
          model.sequence_log_prob(b, tokens, num_forced=num_forced),
          rtol=1e-4, atol=1e-5)
      if topk:
        for j in range(num_forced, len(tokens)):
          top = np.argsort(-model.log_probs(b, tokens[:j]))[:topk]
          assert tokens[j] in top
  assert num_ended > 0


# ------------------------------------------------------------------------------
# Argument checks.
# ------------------------------------------------------------------------------


@pytest.mark.parametrize('fn,kwargs,match', [
    (decoding.greedy, dict(max_decode_len=9), 'max_decode_len=9'),
    (decoding.beam_search, dict(num_decodes=0), 'num_decodes'),
    (decoding.beam_search, dict(alpha=-1.0), 'alpha'),
    (decoding.temperature_sample,
     dict(decode_rng=jax.random.PRNGKey(0), topp=1.5), 'topp'),
    (decoding.temperature_sample,
     dict(decode_rng=jax.random.PRNGKey(0), topk=7), 'topk=7'),
])
def test_bad_arguments_raise(fn, kwargs, match):
  model = _random_model(10, 4, 5, batch=1)
  with pytest.raises(ValueError, match=match):
    fn(jnp.zeros((1, 4), jnp.int32), model.init_cache(),
       model.tokens_to_logits, EOS, **kwargs)
