"""Conformance with real artifacts in shared/reference (t5x checkpoint, T5
vocabulary, released prompts). Skips when the folder is absent, fails under
CI=true."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio

import commands

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import prompts
from prompt_tuning.model import t5

# The reference checkpoint's configuration (shared/reference/README.md).
TINY_REFERENCE = t5.T5Config(
    vocab_size=32128, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
    num_encoder_layers=2, num_decoder_layers=2,
    relative_attention_num_buckets=4, relative_attention_max_distance=8,
    dropout_rate=0.0)
CHECKPOINT = 't5x_t5_1_1_tiny/checkpoint_3'


def _abstract_params(config, prompt_length=0):
  model = t5.Transformer(config, prompt_length=prompt_length)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.ones((1, 4), jnp.int32), jnp.ones((1, 2), jnp.int32))
  return flax.core.meta.unbox(shapes['params'])


def test_reference_tree_is_exactly_the_module_tree(reference_path):
  params = t5x.load_t5x(reference_path(CHECKPOINT))
  expected = _abstract_params(TINY_REFERENCE)
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  want = flax.traverse_util.flatten_dict(expected, sep='/')
  assert sorted(flat) == sorted(want)
  for name, value in flat.items():
    assert value.shape == want[name].shape, name
    assert value.dtype == np.float32, name
  t5x.check_tree(params, expected, source='reference')


def test_forward_pass_on_reference_checkpoint(reference_path):
  expected = _abstract_params(TINY_REFERENCE)
  params = t5x.load_t5x(reference_path(CHECKPOINT), like=expected)
  model = t5.Transformer(TINY_REFERENCE)
  logits = model.apply({'params': params}, np.array([[37, 423, 1, 0]]),
                       np.array([[0, 1465]]), np.array([[1465, 1]]))
  assert logits.shape == (1, 2, 32128)
  assert np.all(np.isfinite(logits))


def test_reference_checkpoint_loads_with_a_fresh_prompt(reference_path):
  """Partial restore: the prompt is not in the checkpoint and is initialised."""
  model = t5.Transformer(TINY_REFERENCE, prompt_length=5)
  variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32),
                         jnp.ones((1, 2), jnp.int32))
  init = flax.core.meta.unbox(variables['params'])
  params = t5x.load_t5x(
      reference_path(CHECKPOINT), like=init,
      assignment_map=[(r'encoder/prompt/.*', None)])
  np.testing.assert_array_equal(params['encoder']['prompt']['prompt']['prompt'],
                                init['encoder']['prompt']['prompt']['prompt'])
  np.testing.assert_array_equal(
      params['token_embedder']['embedding'],
      np.load(reference_path('t5x_t5_1_1_tiny/token_embedder_embedding.npy')))


def test_tree_not_matching_the_config_names_path_and_parameter(reference_path):
  import dataclasses
  wrong = _abstract_params(dataclasses.replace(TINY_REFERENCE, mlp_dim=6))
  path = str(reference_path(CHECKPOINT))
  with pytest.raises(ValueError) as error:
    t5x.load_t5x(path, like=wrong)
  assert path in str(error.value)
  assert 'mlp/wi_0/kernel' in str(error.value)


def test_save_then_load_is_bit_identical(reference_path, tmp_path):
  params = t5x.load_t5x(reference_path(CHECKPOINT))
  t5x.save_t5x(params, tmp_path / 'checkpoint_0')
  again = t5x.load_t5x(tmp_path / 'checkpoint_0')
  flat, flat_again = (flax.traverse_util.flatten_dict(t, sep='/')
                      for t in (params, again))
  assert sorted(flat) == sorted(flat_again)
  for name in flat:
    assert flat[name].dtype == flat_again[name].dtype
    np.testing.assert_array_equal(flat[name], flat_again[name])


def _t5_vocabulary(reference_path):
  return seqio.SentencePieceVocabulary(
      str(reference_path('t5_vocab/sentencepiece.model')), extra_ids=100)


def test_real_vocabulary_loads_with_extra_ids(reference_path):
  vocabulary = _t5_vocabulary(reference_path)
  assert vocabulary.vocab_size == 32100
  assert list(vocabulary.encode('positive negative')) == [1465, 2841]
  assert vocabulary.decode(vocabulary.encode('The quick brown fox')) == (
      'The quick brown fox')


def test_class_label_init_uses_label_embeddings(reference_path):
  vocabulary = _t5_vocabulary(reference_path)
  embedding_file = reference_path('t5x_t5_1_1_tiny/token_embedder_embedding.npy')
  table = np.load(embedding_file)
  for source in (embedding_file, reference_path(CHECKPOINT), table):
    init = prompts.from_class_labels(source, vocabulary,
                                     ['positive', 'negative'])
    prompt = np.asarray(init(jax.random.PRNGKey(0), (6, 4)))
    np.testing.assert_array_equal(prompt[0], table[1465])
    np.testing.assert_array_equal(prompt[1], table[2841])
    # The rest are rows of the 5000 most common tokens.
    for row in prompt[2:]:
      assert np.any(np.all(table[:5000] == row, axis=1))


def test_multi_token_label_is_averaged(reference_path):
  vocabulary = _t5_vocabulary(reference_path)
  table = np.load(
      reference_path('t5x_t5_1_1_tiny/token_embedder_embedding.npy'))
  ids = list(vocabulary.encode('not_entailment'))
  assert len(ids) > 1
  init = prompts.from_class_labels(table, vocabulary, ['not_entailment'])
  prompt = np.asarray(init(jax.random.PRNGKey(0), (3, 4)))
  np.testing.assert_allclose(prompt[0], table[ids].mean(0), rtol=1e-6)


@pytest.mark.parametrize('task', ['sst2', 'mrpc', 'rte'])
def test_released_prompts_load_as_base_sized(reference_path, task):
  path = reference_path(f'released_prompts/t5_1_1_lm100k_base/{task}.npy')
  shape = (100, t5.CONFIGS['base'].emb_dim)
  prompt = prompt_files.load_prompt(path, expected_shape=shape)
  assert prompt.shape == shape and prompt.dtype == np.float32
  init = prompts.from_file(path)
  np.testing.assert_array_equal(init(jax.random.PRNGKey(0), shape), prompt)
  with pytest.raises(ValueError, match=r'\(100, 768\).*\(20, 768\)|\(20, 768\).*\(100, 768\)'):
    prompts.from_file(path)(jax.random.PRNGKey(0), (20, 768))


@pytest.mark.slow
def test_forward_command_on_reference(reference_path):
  import sys  # pylint: disable=g-import-not-at-top
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.forward',
       f'--checkpoint={reference_path(CHECKPOINT)}',
       f'--vocabulary={reference_path("t5_vocab/sentencepiece.model")}',
       '--relative_attention_max_distance=8', '--targets=positive'],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'parameters: 257,856' in result.stdout
  assert "'positive' -> [1465, 1]" in result.stdout
