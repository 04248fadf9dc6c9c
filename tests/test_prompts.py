"""Prompt initialisers and placement."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.model import prompts

TABLE = np.arange(40 * 6, dtype=np.float32).reshape(40, 6) / 100.0


class _FakeVocabulary:
  """Maps each word to a fixed list of ids."""
  IDS = {'yes': [3], 'no': [4], 'maybe': [5, 6, 7], 'say': [8], 'hello': [9]}

  def encode(self, text):
    return [i for word in text.split() for i in self.IDS[word]]


def test_random_uniform_range_and_scale():
  prompt = prompts.random_uniform(0.25)(jax.random.PRNGKey(0), (50, 6))
  assert prompt.shape == (50, 6) and prompt.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(prompt))) <= 0.25
  assert float(jnp.max(jnp.abs(prompt))) > 0.2


def test_sampled_vocab_rows_come_from_population():
  prompt = np.asarray(prompts.from_sampled_vocab(TABLE, population_size=10)(
      jax.random.PRNGKey(1), (8, 6)))
  rows = [int(np.where(np.all(TABLE == row, axis=1))[0][0]) for row in prompt]
  assert all(r < 10 for r in rows)
  assert len(set(rows)) == 8  # distinct while the population allows


def test_sampled_vocab_longer_than_population_repeats():
  prompt = np.asarray(prompts.from_sampled_vocab(TABLE, population_size=3)(
      jax.random.PRNGKey(1), (7, 6)))
  assert prompt.shape == (7, 6)
  # Each row is a row of the table, drawn from the first 3 only.
  matches = [np.where(np.all(TABLE == row, axis=1))[0] for row in prompt]
  assert all(len(m) == 1 for m in matches), prompt
  rows = [int(m[0]) for m in matches]
  assert all(r < 3 for r in rows), rows
  # 7 draws from 3 tokens must repeat; with replacement, every key spreads
  # them, this one over all three.
  assert len(set(rows)) < len(rows)
  assert set(rows) == {0, 1, 2}, rows


def test_class_labels_average_subtokens_and_fill_rest():
  fallback = prompts.random_uniform(0.01)
  init = prompts.from_class_labels(TABLE, _FakeVocabulary(),
                                   ['yes', 'maybe'], fallback=fallback)
  prompt = np.asarray(init(jax.random.PRNGKey(2), (5, 6)))
  np.testing.assert_array_equal(prompt[0], TABLE[3])
  np.testing.assert_allclose(prompt[1], TABLE[[5, 6, 7]].mean(0), rtol=1e-6)
  expected_rest = np.asarray(fallback(jax.random.PRNGKey(2), (5, 6)))[2:]
  np.testing.assert_array_equal(prompt[2:], expected_rest)


def test_class_labels_too_many_for_prompt():
  init = prompts.from_class_labels(TABLE, _FakeVocabulary(), ['yes', 'no'])
  with pytest.raises(ValueError, match='2 class labels.*length 1'):
    init(jax.random.PRNGKey(0), (1, 6))


def test_from_string_places_token_embeddings_first():
  init = prompts.from_string(TABLE, _FakeVocabulary(), 'say hello maybe')
  prompt = np.asarray(init(jax.random.PRNGKey(0), (7, 6)))
  np.testing.assert_array_equal(prompt[:5], TABLE[[8, 9, 5, 6, 7]])
  with pytest.raises(ValueError, match='5 tokens'):
    init(jax.random.PRNGKey(0), (4, 6))


def test_embedding_width_mismatch_names_both():
  init = prompts.from_sampled_vocab(TABLE)
  with pytest.raises(ValueError, match=r'\(40, 6\).*\[vocab, 8\]'):
    init(jax.random.PRNGKey(0), (3, 8))


def test_embedding_from_npy_file(tmp_path):
  path = tmp_path / 'embedding.npy'
  np.save(path, TABLE)
  init = prompts.from_class_labels(str(path), _FakeVocabulary(), ['no'])
  np.testing.assert_array_equal(init(jax.random.PRNGKey(0), (2, 6))[0], TABLE[4])


def test_from_file_checks_shape_and_names_file(tmp_path):
  path = tmp_path / 'prompt.npy'
  saved = np.random.RandomState(0).randn(4, 6).astype(np.float32)
  prompt_files.save_prompt(saved, path)
  np.testing.assert_array_equal(
      prompts.from_file(path)(jax.random.PRNGKey(0), (4, 6)), saved)
  with pytest.raises(ValueError) as error:
    prompts.from_file(path)(jax.random.PRNGKey(0), (5, 6))
  message = str(error.value)
  assert 'prompt.npy' in message and '(4, 6)' in message and '(5, 6)' in message


def test_from_file_missing_names_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothing.npy'):
    prompts.from_file(tmp_path / 'nothing.npy')(jax.random.PRNGKey(0), (4, 6))


def test_input_mask_keeps_prompt_visible():
  tokens = np.array([[0, 0, 0], [5, 0, 0]])
  mask = np.asarray(prompts.input_mask(tokens, 2))
  np.testing.assert_array_equal(mask, [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])


def test_prepend_forms():
  embedded = jnp.zeros((2, 3, 6))
  single = prompts.prepend(jnp.ones((4, 6)), embedded)
  assert single.shape == (2, 7, 6)
  bank = jnp.stack([jnp.full((4, 6), float(i)) for i in range(3)])
  picked = prompts.prepend(bank, embedded, prompt_ids=jnp.array([2, 1]))
  np.testing.assert_array_equal(picked[:, 0, 0], [2.0, 1.0])
  with pytest.raises(ValueError, match='per-example'):
    prompts.prepend(bank, embedded)


@pytest.mark.parametrize('labels', [None, []])
def test_class_labels_missing(labels):
  init = prompts.from_class_labels(TABLE, _FakeVocabulary(), labels)
  with pytest.raises(ValueError, match='CLASS_LABELS'):
    init(jax.random.PRNGKey(0), (3, 6))
