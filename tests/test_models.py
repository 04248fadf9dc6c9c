"""The model-level API: loss, scores, decoding with the cache, ranking."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import models
from prompt_tuning.model import t5

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')

ENC = np.array([[3, 4, 5, 6, 1, 0], [7, 8, 1, 0, 0, 0]], np.int32)
TGT = np.array([[9, 10, 11, 1], [12, 1, 0, 0]], np.int32)
BATCH = {
    'encoder_input_tokens': ENC,
    'decoder_input_tokens': np.pad(TGT[:, :-1], ((0, 0), (1, 0))),
    'decoder_target_tokens': TGT,
    'decoder_loss_weights': (TGT > 0).astype(np.float32),
}


@pytest.fixture(scope='module')
def model(tiny_config):
  return models.EncoderDecoderModel(t5.Transformer(tiny_config))


def _teacher_forced_log_probs(model, params, batch, prompt=None):
  logits = model.module.apply({'params': params}, batch['encoder_input_tokens'],
                              batch['decoder_input_tokens'],
                              batch['decoder_target_tokens'], prompt=prompt)
  return np.asarray(jax.nn.log_softmax(logits))


def test_loss_is_summed_cross_entropy_plus_z_loss(model, tiny_params):
  loss, metrics = model.loss_fn(tiny_params, BATCH, dropout_rng=None)
  logits = np.asarray(model.module.apply(
      {'params': tiny_params}, ENC, BATCH['decoder_input_tokens'], TGT))
  log_z = np.log(np.exp(logits.astype(np.float64)).sum(-1))
  picked = np.take_along_axis(logits, TGT[..., None], -1)[..., 0]
  weights = BATCH['decoder_loss_weights']
  expected = np.sum((log_z - picked + 1e-4 * log_z**2) * weights)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics['z_loss'],
                             np.sum(1e-4 * log_z**2 * weights), rtol=1e-5)
  assert metrics['num_tokens'] == 6


def test_label_smoothing_changes_loss(tiny_config, tiny_params):
  """The loss becomes the cross entropy against the smoothed targets: 0.9 on
  the target token, 0.1 spread evenly over the other V - 1 tokens."""
  smoothing = 0.1
  smooth = models.EncoderDecoderModel(t5.Transformer(tiny_config),
                                      label_smoothing=smoothing)
  plain = models.EncoderDecoderModel(t5.Transformer(tiny_config))
  loss = smooth.loss_fn(tiny_params, BATCH, None)[0]
  logits = np.asarray(plain.module.apply(
      {'params': tiny_params}, ENC, BATCH['decoder_input_tokens'],
      TGT)).astype(np.float64)
  vocab_size = logits.shape[-1]
  log_z = np.log(np.exp(logits).sum(-1))  # [B, U]
  log_probs = logits - log_z[..., None]  # [B, U, V]
  targets = np.full(logits.shape, smoothing / (vocab_size - 1))
  np.put_along_axis(targets, TGT[..., None], 1.0 - smoothing, -1)
  token_loss = -(targets * log_probs).sum(-1) + 1e-4 * log_z**2
  expected = np.sum(token_loss * BATCH['decoder_loss_weights'])
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert abs(expected - plain.loss_fn(tiny_params, BATCH, None)[0]) > 1e-2


def test_score_batch_sums_target_log_probs(model, tiny_params):
  log_probs = _teacher_forced_log_probs(model, tiny_params, BATCH)
  picked = np.take_along_axis(log_probs, TGT[..., None], -1)[..., 0]
  expected = (picked * (TGT > 0)).sum(-1)
  np.testing.assert_allclose(model.score_batch(tiny_params, BATCH), expected,
                             rtol=1e-5)


@pytest.mark.slow
def test_rank_classify_equals_scoring_each_label(model, tiny_params):
  labels = np.array([[9, 10, 1], [12, 1, 0], [20, 1, 0]], np.int32)
  prompt = jax.random.normal(jax.random.PRNGKey(0),
                             (2, model.module.config.emb_dim))
  ranked = np.asarray(model.rank_classify(tiny_params, BATCH, labels,
                                          prompt=prompt))
  assert ranked.shape == (2, 3)
  for c, label in enumerate(labels):
    tiled = np.tile(label, (2, 1))
    batch = {'encoder_input_tokens': ENC,
             'decoder_input_tokens': np.pad(tiled[:, :-1], ((0, 0), (1, 0))),
             'decoder_target_tokens': tiled,
             'decoder_loss_weights': (tiled > 0).astype(np.float32)}
    np.testing.assert_allclose(
        ranked[:, c], model.score_batch(tiny_params, batch, prompt=prompt),
        rtol=1e-5, atol=1e-5)


def _greedy_by_hand(model, params, enc, length, prompt=None):
  """Greedy decoding by re-running the full forward at each step."""
  out = np.zeros((enc.shape[0], length), np.int32)
  done = np.zeros(enc.shape[0], bool)
  for step in range(length):
    dec_in = np.pad(out[:, :-1], ((0, 0), (1, 0)))
    logits = model.module.apply({'params': params}, enc, dec_in, prompt=prompt)
    token = np.asarray(jnp.argmax(logits[:, step], -1))
    out[:, step] = np.where(done, 0, token)
    done |= token == 1
  return out


@pytest.mark.slow
@pytest.mark.parametrize('with_prompt', [False, True])
def test_greedy_with_cache_equals_full_recompute(model, tiny_params,
                                                 with_prompt):
  prompt = (jax.random.normal(jax.random.PRNGKey(1),
                              (3, model.module.config.emb_dim))
            if with_prompt else None)
  batch = dict(BATCH, decoder_input_tokens=np.zeros((2, 5), np.int32))
  predicted = jax.jit(lambda p, b: model.predict_batch(p, b, prompt=prompt))(
      tiny_params, batch)
  np.testing.assert_array_equal(
      predicted, _greedy_by_hand(model, tiny_params, ENC, 5, prompt))


@pytest.mark.slow
def test_beam_and_sampling_run(model, tiny_params):
  batch = dict(BATCH, decoder_input_tokens=np.zeros((2, 4), np.int32))
  beam, beam_scores = model.predict_batch(tiny_params, batch, method='beam',
                                          num_decodes=3, return_scores=True)
  assert beam.shape == (2, 4) and beam_scores.shape == (2,)
  greedy_sample = model.predict_batch(tiny_params, batch, method='sample',
                                      num_decodes=2, temperature=0.0)
  np.testing.assert_array_equal(greedy_sample,
                                model.predict_batch(tiny_params, batch))
  with pytest.raises(ValueError, match='unknown decoding method'):
    model.predict_batch(tiny_params, batch, method='nucleus')
