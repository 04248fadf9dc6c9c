"""The train step's t5x-faithful dropout, its RNG switch, and the faster
attention paths: each must compute what the plain computation computes."""
import dataclasses
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_tuning.model import layers
from prompt_tuning.model import models
from prompt_tuning.model import t5
from prompt_tuning.training import trainer

pytestmark = pytest.mark.usefixtures('fast_compiles')

B, T, U, P = 2, 7, 3, 4


def _batch():
  rng = np.random.default_rng(0)
  inputs = rng.integers(2, 37, (B, T)).astype(np.int32)
  inputs[1, 5:] = 0  # padding, so the masks matter
  targets = rng.integers(2, 37, (B, U)).astype(np.int32)
  targets[0, -1] = 0
  return inputs, np.pad(targets[:, :-1], ((0, 0), (1, 0))), targets


def _prompted(config):
  module = t5.Transformer(config, prompt_length=P)
  variables = module.init(jax.random.PRNGKey(1), jnp.ones((1, T), jnp.int32),
                          jnp.ones((1, U), jnp.int32))
  return module, flax.core.meta.unbox(variables['params'])


def test_dropout_masks_have_t5x_shapes(tiny_config, monkeypatch):
  """Attention-weight masks are [B, N, 1, S] (shared by every query, as
  t5x's T5 draws them); hidden-state masks [B, 1, H] / [B, 1, F] (shared
  along the length)."""
  shapes = []
  bernoulli = jax.random.bernoulli

  def recording(key, p=0.5, shape=None, **kwargs):
    shapes.append(tuple(shape))
    return bernoulli(key, p, shape, **kwargs)

  monkeypatch.setattr(jax.random, 'bernoulli', recording)
  module, params = _prompted(tiny_config)
  inputs, decoder_inputs, targets = _batch()
  jax.eval_shape(lambda p: module.apply(
      {'params': p}, inputs, decoder_inputs, targets, enable_dropout=True,
      rngs={'dropout': jax.random.PRNGKey(0)}), params)
  cfg = tiny_config
  heads, encoded = cfg.num_heads, P + T
  attention = {(B, heads, 1, encoded), (B, heads, 1, U)}
  hidden = {(B, 1, cfg.emb_dim), (B, 1, cfg.mlp_dim)}
  assert set(shapes) == attention | hidden
  # One mask per attention: encoder self, decoder self and cross.
  attention_masks = [s for s in shapes if len(s) == 4]
  assert len(attention_masks) == (cfg.num_encoder_layers
                                  + 2 * cfg.num_decoder_layers)


def test_dropout_at_rate_zero_changes_nothing(tiny_config):
  """enable_dropout with rate 0 is the deterministic computation, and the
  deterministic path takes no dropout key at all."""
  config = dataclasses.replace(tiny_config, dropout_rate=0.0)
  module, params = _prompted(config)
  inputs, decoder_inputs, targets = _batch()
  plain = module.apply({'params': params}, inputs, decoder_inputs, targets)
  enabled = module.apply({'params': params}, inputs, decoder_inputs, targets,
                         enable_dropout=True,
                         rngs={'dropout': jax.random.PRNGKey(3)})
  np.testing.assert_array_equal(plain, enabled)
  # At rate 0.1 the same call does change the logits: the test can fail.
  module, _ = _prompted(tiny_config)
  dropped = module.apply({'params': params}, inputs, decoder_inputs, targets,
                         enable_dropout=True,
                         rngs={'dropout': jax.random.PRNGKey(3)})
  assert not np.allclose(plain, dropped)


def _attention_reference(module, params, inputs_q, inputs_kv, mask, bias):
  """Masking each layer's logits, as the attention did before the fold."""
  def project(name):
    kernel = params[name]['kernel']
    y = inputs_q if name == 'query' else inputs_kv
    y = y @ kernel
    return y.reshape(y.shape[:-1] + (module.num_heads, module.head_dim))
  logits = jnp.einsum('btnd,bsnd->bnts', project('query'), project('key'))
  logits = jnp.where(mask, logits + bias, -1e10)
  out = jnp.einsum('bnts,bsnd->btnd', jax.nn.softmax(logits), project('value'))
  return out.reshape(out.shape[:2] + (-1,)) @ params['out']['kernel']


@pytest.mark.parametrize('prefix_length', [0, 2])
def test_folded_mask_equals_masking_each_layer(prefix_length):
  module = layers.MultiHeadAttention(num_heads=2, head_dim=3)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(B, T, 5)), jnp.float32)
  valid = jnp.asarray(np.arange(T)[None] < np.array([[T], [4]]))
  mask = layers.attention_mask(valid, valid)
  bias = jnp.asarray(rng.normal(size=(1, 2, T, prefix_length + T)),
                     jnp.float32)
  params = module.init(jax.random.PRNGKey(0), x, x, mask,
                       bias[..., prefix_length:])['params']
  params = flax.core.meta.unbox(params)
  folded = layers.fold_mask_into_bias(mask, bias)
  assert folded.shape == (B, 2, T, prefix_length + T)
  if prefix_length:
    prefix = tuple(jnp.asarray(rng.normal(size=(prefix_length, 6)),
                               jnp.float32) for _ in range(2))
    got = module.apply({'params': params}, x, x, None, folded, prefix=prefix)
    want = module.apply({'params': params}, x, x, mask, bias, prefix=prefix)
  else:
    got = module.apply({'params': params}, x, x, None, folded)
    want = _attention_reference(module, params, x, x, mask, bias)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_rank_classify_projects_each_encoding_once(tiny_config):
  """Scores equal the old computation (each encoding repeated per label), and
  the cross-attention key/value projections see B rows, not B*C."""
  config = dataclasses.replace(tiny_config, dropout_rate=0.0)
  module, params = _prompted(config)
  model = models.EncoderDecoderModel(module)
  inputs, _, _ = _batch()
  labels = jnp.asarray([[5, 1, 0], [7, 8, 1], [9, 1, 0]], jnp.int32)  # vocab 37
  batch = {'encoder_input_tokens': inputs}
  scores = model.rank_classify(params, batch, labels)

  encoded = module.apply({'params': params}, inputs, method=module.encode)
  classes = labels.shape[0]
  targets = jnp.tile(labels, (B, 1))
  logits = module.apply(
      {'params': params}, jnp.repeat(encoded, classes, axis=0),
      jnp.repeat(inputs, classes, axis=0),
      jnp.pad(targets[:, :-1], ((0, 0), (1, 0))), targets,
      method=module.decode)
  token = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None],
                              axis=-1)[..., 0]
  want = jnp.sum(token * (targets > 0), axis=-1).reshape(B, classes)
  np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)

  jaxpr = jax.make_jaxpr(lambda p: model.rank_classify(p, batch, labels))(
      params)
  rows = [eqn.invars[0].aval.shape[0] for eqn in jaxpr.jaxpr.eqns
          if eqn.primitive.name == 'dot_general'
          and eqn.invars[0].aval.shape[1:2] == (P + T,)]
  # Encoder projections and each decoder layer's cross key and value.
  assert rows and set(rows) == {B}


def test_grouped_queries_reject_a_bias():
  module = layers.MultiHeadAttention(num_heads=2, head_dim=3)
  q, kv = jnp.ones((4, 2, 5)), jnp.ones((2, 3, 5))
  params = module.init(jax.random.PRNGKey(0), q, kv)
  with pytest.raises(ValueError, match='batch 4 attend to .* batch 2'):
    module.apply(params, q, kv, bias=jnp.zeros((1, 2, 2, 3)))


@pytest.mark.parametrize('impl', ['rbg', 'unsafe_rbg'])
def test_dropout_root_key_has_the_impl(impl):
  root = trainer.dropout_root_key(0, impl)
  assert str(jax.random.key_impl(root)) == impl
  # The default stays the raw threefry key the trainer always used.
  np.testing.assert_array_equal(trainer.dropout_root_key(0),
                                jax.random.split(jax.random.PRNGKey(0))[1])


def _prompt_step_inputs(config):
  """The prompted model, its prompt and frozen weights, and a batch: what
  `trainer.train_step` takes."""
  module, params = _prompted(config)
  trainable, frozen = trainer.split_params(params, ['encoder/prompt/.*'])
  inputs, decoder_inputs, targets = _batch()
  batch = {'encoder_input_tokens': inputs,
           'decoder_input_tokens': decoder_inputs,
           'decoder_target_tokens': targets,
           'decoder_loss_weights': (targets > 0).astype(np.int32)}
  return models.EncoderDecoderModel(module), trainable, frozen, batch


@pytest.mark.slow
def test_dropout_rng_impl_is_wired(tiny_config):
  """The step trains with 'rbg' keys (finite loss, the prompt moves) and
  draws other masks than with threefry's."""
  root = trainer.dropout_root_key(0, 'rbg')
  model, trainable, frozen, batch = _prompt_step_inputs(tiny_config)
  optimizer = optax.sgd(0.1)
  step = jax.jit(lambda tr, rng: trainer.train_step(
      model, optimizer, tr, frozen, optimizer.init(tr), batch, rng))
  new, _, metrics = step(trainable, jax.random.fold_in(root, 0))
  assert np.isfinite(float(metrics['loss']))
  assert not np.allclose(jax.tree_util.tree_leaves(new)[0],
                         jax.tree_util.tree_leaves(trainable)[0])
  threefry = trainer.dropout_root_key(0)
  _, _, other = step(trainable, jax.random.fold_in(threefry, 0))
  assert float(other['loss']) != float(metrics['loss'])


def test_dropout_rng_impl_rejects_unknown():
  with pytest.raises(ValueError, match="dropout_rng_impl is 'philox'"):
    trainer.dropout_root_key(0, 'philox')


def _moved_kernels(compiled_text, kernel_shapes):
  """The transpose and copy instructions of compiled HLO whose result has
  the shape of a frozen kernel or of its transpose."""
  shapes = set(kernel_shapes) | {s[::-1] for s in kernel_shapes}
  moved = []
  for line in compiled_text.splitlines():
    match = re.search(r'= f32\[([\d,]+)\]\{[\d,]*\} (transpose|copy)\(', line)
    if match and tuple(int(d) for d in match[1].split(',')) in shapes:
      moved.append(line.strip())
  return moved


@pytest.mark.slow
def test_the_step_reads_frozen_kernels_in_place(tiny_config):
  """With XLA's default optimisations (what users run) the compiled prompt
  step transposes and copies no frozen kernel: the activation-gradient
  matmuls read each kernel as stored, so a pre-transposed copy of the frozen
  weights would save nothing."""
  model, trainable, frozen, batch = _prompt_step_inputs(tiny_config)
  optimizer = optax.sgd(0.1)  # The optimizer never sees the frozen kernels.
  kernels = {tuple(k.shape) for k in jax.tree_util.tree_leaves(frozen)
             if k.ndim == 2}
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)
  try:
    step = jax.jit(lambda tr: trainer.train_step(
        model, optimizer, tr, frozen, optimizer.init(tr), batch, None))
    text = step.lower(trainable).compile().as_text()
    # The check finds a transposed kernel where one is forced to exist.
    kernel = next(k for k in jax.tree_util.tree_leaves(frozen) if k.ndim == 2)
    forced = jax.jit(lambda x, w: x @ jax.lax.optimization_barrier(w.T).T)
    forced_text = forced.lower(jnp.ones((2, kernel.shape[0])),
                               kernel).compile().as_text()
  finally:
    jax.config.update('jax_disable_most_optimizations', previous)
  assert len(re.findall(r' dot\(', text)) > 20
  assert _moved_kernels(text, kernels) == []
  assert _moved_kernels(forced_text, {tuple(kernel.shape)})
