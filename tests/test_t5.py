"""Behaviour of the T5 1.1 network: names, shapes, masks, prompts, decoding."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import t5

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')

# Table 4 of the paper: total parameters with a 100-token prompt.
PAPER_TOTAL_PARAMS = {
    'small': 77_012_352,
    'base': 247_654_656,
    'large': 783_252_480,
    'xl': 2_849_961_984,
    'xxl': 11_135_741_952,
}

ENC = np.array([[3, 4, 5, 6, 0, 0], [7, 8, 0, 0, 0, 0]], np.int32)
DEC_IN = np.array([[0, 9, 10, 11], [0, 12, 0, 0]], np.int32)
DEC_TGT = np.array([[9, 10, 11, 1], [12, 1, 0, 0]], np.int32)


def _flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep='/')


@functools.partial(jax.jit, static_argnums=(0, 4))
def _jitted_apply(config, params, args, kwargs, enable_dropout, rngs):
  return t5.Transformer(config).apply({'params': params}, *args,
                                      enable_dropout=enable_dropout, rngs=rngs,
                                      **kwargs)


def _apply(config, params, *args, enable_dropout=False, rngs=None, **kwargs):
  # Jitted: compiling once per shape is much faster than op-by-op execution.
  return _jitted_apply(config, params, args, kwargs, enable_dropout, rngs)


@pytest.mark.parametrize('size', sorted(PAPER_TOTAL_PARAMS))
def test_sizes_match_paper_parameter_counts(size):
  model = t5.Transformer(t5.CONFIGS[size], prompt_length=100)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.ones((1, 4), jnp.int32), jnp.ones((1, 2), jnp.int32))
  flat = _flat(flax.core.meta.unbox(shapes['params']))
  assert flat['encoder/prompt/prompt/prompt'].shape == (
      100, t5.CONFIGS[size].emb_dim)
  assert sum(int(np.prod(v.shape)) for v in flat.values()) == (
      PAPER_TOTAL_PARAMS[size])


def test_every_parameter_has_logical_axes(tiny_config):
  variables = jax.eval_shape(t5.Transformer(tiny_config, prompt_length=2).init,
                             jax.random.PRNGKey(0), ENC, DEC_IN)
  allowed = {'embed', 'mlp', 'heads', 'kv', 'vocab', 'prompt', None}
  for name, leaf in _flat(variables['params']).items():
    assert isinstance(leaf, flax.linen.LogicallyPartitioned), name
    assert len(leaf.names) == leaf.value.ndim, name
    assert set(leaf.names) <= allowed, (name, leaf.names)
    assert leaf.value.dtype == jnp.float32, name


def test_parameter_names_and_shapes(tiny_config, tiny_params):
  flat = {k: v.shape for k, v in _flat(tiny_params).items()}
  c = tiny_config
  inner = c.num_heads * c.head_dim
  assert flat['token_embedder/embedding'] == (c.vocab_size, c.emb_dim)
  assert flat['encoder/relpos_bias/rel_embedding'] == (
      c.num_heads, c.relative_attention_num_buckets)
  assert flat['encoder/layers_1/attention/query/kernel'] == (c.emb_dim, inner)
  assert flat['encoder/layers_1/attention/out/kernel'] == (inner, c.emb_dim)
  assert flat['decoder/layers_0/encoder_decoder_attention/key/kernel'] == (
      c.emb_dim, inner)
  assert flat['decoder/layers_0/mlp/wi_1/kernel'] == (c.emb_dim, c.mlp_dim)
  assert flat['decoder/layers_0/mlp/wo/kernel'] == (c.mlp_dim, c.emb_dim)
  assert flat['decoder/logits_dense/kernel'] == (c.emb_dim, c.vocab_size)
  assert flat['decoder/decoder_norm/scale'] == (c.emb_dim,)
  # embedder, 2 relpos tables, 2 final norms, logits_dense; 9 and 14 per layer.
  assert len(flat) == 6 + 9 * c.num_encoder_layers + 14 * c.num_decoder_layers


def test_tied_variant_uses_scaled_embedding(tiny_config):
  import dataclasses
  config = dataclasses.replace(tiny_config, logits_via_embedding=True)
  variables = t5.Transformer(config).init(jax.random.PRNGKey(1), ENC, DEC_IN)
  params = flax.core.meta.unbox(variables['params'])
  assert 'logits_dense' not in params['decoder']
  model = t5.Transformer(config)
  encoded = model.apply({'params': params}, ENC, method=model.encode)

  def final_hidden(module):
    # Recompute the decoder's last hidden state through a capture.
    _, state = module.apply({'params': params}, encoded, ENC, DEC_IN, DEC_TGT,
                            method=module.decode, capture_intermediates=True)
    return state['intermediates']['decoder']['decoder_norm']['__call__'][0]

  hidden = final_hidden(model)
  expected = hidden @ params['token_embedder']['embedding'].T / np.sqrt(
      config.emb_dim)
  logits = model.apply({'params': params}, ENC, DEC_IN, DEC_TGT)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_encoder_padding_does_not_change_real_positions(tiny_config,
                                                        tiny_params):
  padded = np.pad(ENC, ((0, 0), (0, 5)))
  base = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT)
  more = _apply(tiny_config, tiny_params, padded, DEC_IN, DEC_TGT)
  # Padded decoder rows are fully masked and average over everything, so
  # only real decoder positions are compared.
  real = DEC_TGT > 0
  np.testing.assert_allclose(base[real], more[real], rtol=1e-5, atol=1e-5)


def test_decoder_padding_does_not_change_real_positions(tiny_config,
                                                        tiny_params):
  base = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT)
  padded = _apply(tiny_config, tiny_params, ENC, np.pad(DEC_IN, ((0, 0), (0, 3))),
                  np.pad(DEC_TGT, ((0, 0), (0, 3))))
  real = DEC_TGT > 0
  np.testing.assert_allclose(base[real], padded[:, :4][real], rtol=1e-5,
                             atol=1e-5)


def test_padding_invariance_with_prompt(tiny_config, tiny_params):
  prompt = jax.random.normal(jax.random.PRNGKey(2), (4, tiny_config.emb_dim))
  base = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT, prompt=prompt)
  more = _apply(tiny_config, tiny_params, np.pad(ENC, ((0, 0), (0, 7))), DEC_IN,
                DEC_TGT, prompt=prompt)
  real = DEC_TGT > 0
  np.testing.assert_allclose(base[real], more[real], rtol=1e-5, atol=1e-5)


def test_per_example_prompts_equal_separate_runs(tiny_config, tiny_params):
  prompts = jax.random.normal(jax.random.PRNGKey(3), (2, 4, tiny_config.emb_dim))
  batched = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT,
                   prompt=prompts)
  for i in range(2):
    alone = _apply(tiny_config, tiny_params, ENC[i:i + 1], DEC_IN[i:i + 1],
                   DEC_TGT[i:i + 1], prompt=prompts[i])
    np.testing.assert_allclose(batched[i:i + 1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_prompt_bank_equals_per_example_form(tiny_config, tiny_params):
  bank = jax.random.normal(jax.random.PRNGKey(4), (3, 4, tiny_config.emb_dim))
  ids = np.array([2, 0], np.int32)
  from_bank = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT, prompt=bank,
                     prompt_ids=ids)
  per_example = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT,
                       prompt=bank[ids])
  np.testing.assert_array_equal(from_bank, per_example)


def test_prompt_is_attended_when_input_is_all_padding(tiny_config, tiny_params):
  empty = np.zeros_like(ENC)
  p1 = jax.random.normal(jax.random.PRNGKey(5), (3, tiny_config.emb_dim))
  p2 = p1.at[1].add(1.0)
  out1 = _apply(tiny_config, tiny_params, empty, DEC_IN, DEC_TGT, prompt=p1)
  out2 = _apply(tiny_config, tiny_params, empty, DEC_IN, DEC_TGT, prompt=p2)
  assert np.all(np.isfinite(out1))
  # The decoder sees the prompt through cross-attention: changing one prompt
  # row changes every real decoder position.
  changed = np.abs(out1 - out2).max(-1)
  assert np.all(changed[DEC_TGT > 0] > 1e-4)


def test_prompt_positions_are_never_masked_but_padding_is(tiny_config,
                                                          tiny_params):
  """Changing the embedding that padded positions would get has no effect."""
  prompt = jax.random.normal(jax.random.PRNGKey(6), (2, tiny_config.emb_dim))
  other_pad = np.where(ENC > 0, ENC, 0)
  base = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT, prompt=prompt)
  params = jax.tree_util.tree_map(lambda x: x, tiny_params)
  emb = params['token_embedder']['embedding']
  params['token_embedder']['embedding'] = emb.at[0].set(emb[0] + 3.0)
  moved_pad = _apply(tiny_config, params, other_pad, DEC_IN, DEC_TGT,
                     prompt=prompt)
  real = DEC_TGT > 0
  # Token 0 also starts the decoder input, so compare through the encoder only.
  enc_model = t5.Transformer(tiny_config)
  e1 = enc_model.apply({'params': tiny_params}, ENC, prompt=prompt,
                       method=enc_model.encode)
  e2 = enc_model.apply({'params': params}, ENC, prompt=prompt,
                       method=enc_model.encode)
  valid = np.concatenate([np.ones((2, 2), bool), ENC > 0], 1)
  np.testing.assert_allclose(np.asarray(e1)[valid], np.asarray(e2)[valid],
                             rtol=1e-5, atol=1e-5)
  assert base.shape == moved_pad.shape and real.any()


def test_owned_prompt_is_used_and_external_prompt_overrides(tiny_config):
  model = t5.Transformer(tiny_config, prompt_length=3)
  variables = model.init(jax.random.PRNGKey(7), ENC, DEC_IN)
  params = flax.core.meta.unbox(variables['params'])
  owned = params['encoder']['prompt']['prompt']['prompt']
  assert owned.shape == (3, tiny_config.emb_dim)
  with_owned = model.apply({'params': params}, ENC, DEC_IN, DEC_TGT)
  explicit = model.apply({'params': params}, ENC, DEC_IN, DEC_TGT, prompt=owned)
  np.testing.assert_array_equal(with_owned, explicit)
  other = model.apply({'params': params}, ENC, DEC_IN, DEC_TGT,
                      prompt=owned + 1.0)
  assert not np.allclose(with_owned, other)


def test_bad_prompt_shapes_raise(tiny_config, tiny_params):
  with pytest.raises(ValueError, match='embedding size 7'):
    _apply(tiny_config, tiny_params, ENC, DEC_IN, prompt=jnp.ones((2, 7)))
  with pytest.raises(ValueError, match='prompt_ids'):
    _apply(tiny_config, tiny_params, ENC, DEC_IN,
           prompt=jnp.ones((5, 2, tiny_config.emb_dim)))
  with pytest.raises(ValueError, match='bank'):
    _apply(tiny_config, tiny_params, ENC, DEC_IN,
           prompt=jnp.ones((2, tiny_config.emb_dim)),
           prompt_ids=np.array([0, 0]))


@pytest.mark.slow
def test_dropout_only_in_training(tiny_config, tiny_params):
  eval1 = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT)
  eval2 = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT,
                 rngs={'dropout': jax.random.PRNGKey(1)})
  np.testing.assert_array_equal(eval1, eval2)
  train = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT,
                 enable_dropout=True, rngs={'dropout': jax.random.PRNGKey(1)})
  assert not np.allclose(eval1, train)


def test_bfloat16_activations_close_to_float32(tiny_config, tiny_params):
  import dataclasses
  config = dataclasses.replace(tiny_config, dtype='bfloat16')
  assert config.dtype == jnp.bfloat16
  full = _apply(tiny_config, tiny_params, ENC, DEC_IN, DEC_TGT)
  half = _apply(config, tiny_params, ENC, DEC_IN, DEC_TGT)
  assert half.dtype == jnp.float32  # logits stay float32
  np.testing.assert_allclose(half, full, atol=0.15, rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize('prompt_length', [0, 3])
def test_cached_decoding_equals_teacher_forcing(tiny_config, tiny_params,
                                                prompt_length):
  model = t5.Transformer(tiny_config)
  prompt = (jax.random.normal(jax.random.PRNGKey(8),
                              (prompt_length, tiny_config.emb_dim))
            if prompt_length else None)
  full = model.apply({'params': tiny_params}, ENC, DEC_IN, prompt=prompt)
  encoded = model.apply({'params': tiny_params}, ENC, prompt=prompt,
                        method=model.encode)
  length = DEC_IN.shape[1]
  cache = model.init(jax.random.PRNGKey(0), encoded, ENC,
                     np.zeros_like(DEC_IN), decode=True,
                     max_decode_length=length, method=model.decode)['cache']
  for step in range(length):
    logits, mutated = model.apply(
        {'params': tiny_params, 'cache': cache}, encoded, ENC,
        DEC_IN[:, step:step + 1], decode=True, max_decode_length=length,
        method=model.decode, mutable=['cache'])
    cache = mutated['cache']
    np.testing.assert_allclose(logits[:, 0], full[:, step], rtol=1e-5,
                               atol=1e-5)


def test_relative_position_buckets_known_values():
  from prompt_tuning.model import layers
  rel = np.arange(-20, 21)[None, :]
  bi = layers.relative_position_bucket(rel, True, 32, 128)[0]
  # Exact buckets for |d| < 8: keys before the query in 0..7, keys after it
  # in the upper half 16..23.
  assert list(bi[20:12:-1]) == [0, 1, 2, 3, 4, 5, 6, 7]
  assert list(bi[21:28]) == [17, 18, 19, 20, 21, 22, 23]
  assert bi[12] == 8 and bi[28] == 24  # first logarithmic buckets
  causal = layers.relative_position_bucket(rel, False, 32, 128)[0]
  assert np.all(causal[20:] == 0)  # future keys all share bucket 0
  assert list(causal[20:3:-1][:16]) == list(range(16))
  far = layers.relative_position_bucket(np.array([[-1000, 1000]]), True, 32, 128)
  assert far.tolist() == [[15, 31]]


def test_config_validation():
  with pytest.raises(ValueError, match='num_heads'):
    t5.T5Config(num_heads=0)


def test_config_from_params_reads_sizes(tiny_config, tiny_params):
  config = t5.config_from_params(
      tiny_params, dropout_rate=tiny_config.dropout_rate,
      relative_attention_max_distance=tiny_config.relative_attention_max_distance)
  assert config == tiny_config
