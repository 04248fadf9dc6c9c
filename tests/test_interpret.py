"""Nearest-neighbour interpretation of prompts and the prompt diagnostics."""
import json
import os
import sys

from absl import flags
import jax
import numpy as np
import pytest

import commands

from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import prompt_files
from prompt_tuning import interpret
from prompt_tuning.model import neighbours
from prompt_tuning.model import prompts
from prompt_tuning.tasks import offline


class FakeVocabulary:
  """Words `w0 .. w{V-1}`; a label `a+b` encodes to the ids of `a` and `b`."""

  def __init__(self, size):
    self.vocab_size = size

  def encode(self, text):
    return [int(part[1:]) for part in text.split('+')]

  def decode(self, ids):
    return ' '.join(f'w{i}' for i in ids)


def _brute_force(prompt, embedding, k):
  """Cosine top k in float64 over the whole table; ties to the lower id."""
  p = prompt / np.linalg.norm(prompt, axis=1, keepdims=True)
  e = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
  sims = p.astype(np.float64) @ e.astype(np.float64).T
  ids = np.stack([np.lexsort((np.arange(len(row)), -row))[:k] for row in sims])
  return ids, np.take_along_axis(sims, ids, axis=1)


@pytest.fixture(scope='module')
def embedded_setup():
  return (prompt_files.load_embedding(embedded.checkpoint_path()),
          offline.vocabulary())


@pytest.mark.parametrize('chunk_size', [1, 7, 64, 8192])
def test_ranking_matches_brute_force(chunk_size):
  rng = np.random.RandomState(0)
  embedding = rng.randn(53, 11).astype(np.float32)
  prompt = rng.randn(6, 11).astype(np.float32)
  ids, sims = neighbours.nearest_neighbours(prompt, embedding, k=5,
                                            chunk_size=chunk_size)
  want_ids, want_sims = _brute_force(prompt, embedding, 5)
  assert ids.shape == sims.shape == (6, 5)
  assert ids.dtype == np.int32 and sims.dtype == np.float32
  np.testing.assert_array_equal(ids, want_ids)
  np.testing.assert_allclose(sims, want_sims, atol=1e-6)


def test_cosine_ignores_scale_and_ties_go_to_lower_id():
  embedding = np.array([[1., 0.], [0., 1.], [2., 0.], [0., 0.], [-1., 0.]],
                       np.float32)
  ids, sims = neighbours.nearest_neighbours(np.array([[3., 0.]], np.float32),
                                            embedding, k=5, chunk_size=2)
  # Rows 0 and 2 point the same way (cosine 1); the zero row scores 0.
  np.testing.assert_array_equal(ids, [[0, 2, 1, 3, 4]])
  np.testing.assert_allclose(sims, [[1, 1, 0, 0, -1]], atol=1e-7)


@pytest.mark.parametrize('prompt_shape,embedding_shape,k,message', [
    ((2, 4, 3), (10, 3), 1, 'prompt \\[P, H\\]'),
    ((2, 3), (10, 4), 1, 'width 3'),
    ((2, 3), (10, 3), 0, 'k=0'),
    ((2, 3), (10, 3), 11, 'k=11'),
])
def test_bad_arguments(prompt_shape, embedding_shape, k, message):
  with pytest.raises(ValueError, match=message):
    neighbours.nearest_neighbours(np.ones(prompt_shape),
                                  np.ones(embedding_shape), k)


@pytest.mark.parametrize('task', ['sentiment', 'topic'])
def test_class_label_prompt_has_its_labels_as_nearest_neighbours(
    embedded_setup, task):
  """Paper section 7: an untrained class-label prompt, at the label positions,
  has the labels as nearest neighbours (embedded model, offline vocabulary)."""
  embedding, vocabulary = embedded_setup
  labels = offline.LABELS[task]
  prompt = prompts.from_class_labels(embedding, vocabulary, labels)(
      jax.random.PRNGKey(0), (len(labels) + 3, embedding.shape[1]))
  rows = neighbours.describe(prompt, embedding, vocabulary, k=3,
                             class_labels=labels)
  assert len(rows) == len(labels) + 3
  for position, label in enumerate(labels):
    first = rows[position]['neighbours'][0]
    assert first['labels'] == [label]
    assert first['id'] in vocabulary.encode(label)
    assert first['token'].lstrip('▁') == label
    assert first['similarity'] == pytest.approx(1.0, abs=1e-5)
    assert rows[position]['labels'] == [label]


def test_class_label_prompt_with_the_t5_vocabulary(reference_path):
  import seqio  # pylint: disable=g-import-not-at-top
  vocabulary = seqio.SentencePieceVocabulary(
      str(reference_path('t5_vocab/sentencepiece.model')), extra_ids=100)
  embedding = np.load(reference_path(
      't5x_t5_1_1_tiny/token_embedder_embedding.npy'))
  labels = ['positive', 'negative']  # single tokens: 1465, 2841
  prompt = prompts.from_class_labels(embedding, vocabulary, labels)(
      jax.random.PRNGKey(0), (4, embedding.shape[1]))
  rows = neighbours.describe(prompt, embedding, vocabulary, k=5,
                             class_labels=labels)
  for position, (label, token_id) in enumerate(zip(labels, [1465, 2841])):
    first = rows[position]['neighbours'][0]
    assert (first['id'], first['token'], first['labels']) == (
        token_id, '▁' + label, [label])
  # The 28 padding rows after the vocabulary's 32100 ids are never neighbours.
  assert all(n['id'] < 32100 for r in rows for n in r['neighbours'])


def test_multi_token_labels_mark_every_sub_token():
  rng = np.random.RandomState(1)
  # Nearly orthogonal rows: the mean of two rows is closest to those two.
  embedding = rng.randn(40, 256).astype(np.float32)
  vocabulary = FakeVocabulary(40)
  labels = ['w3+w7', 'w7+w9', 'w12']
  prompt = np.stack([embedding[[3, 7]].mean(0), embedding[[7, 9]].mean(0),
                     embedding[12], embedding[20]])
  rows = neighbours.describe(prompt, embedding, vocabulary, k=3,
                             class_labels=labels)
  top2 = [sorted(n['id'] for n in r['neighbours'][:2]) for r in rows[:2]]
  assert top2 == [[3, 7], [7, 9]]
  by_id = {n['id']: n['labels'] for n in rows[0]['neighbours']}
  assert by_id[3] == ['w3+w7'] and by_id[7] == ['w3+w7', 'w7+w9']
  assert rows[0]['labels'] == ['w3+w7', 'w7+w9']
  assert rows[2]['labels'] == ['w12']
  assert rows[3]['neighbours'][0]['id'] == 20 and rows[3]['labels'] == []
  assert rows[3]['neighbours'][0]['token'] == 'w20'


def test_markdown_and_json_output():
  embedding = np.eye(4, dtype=np.float32)
  rows = neighbours.describe(np.array([[1., .5, 0, 0], [0, 0, 0, 1.]]),
                             embedding, FakeVocabulary(4), k=2,
                             class_labels=['w1'])
  table = neighbours.to_markdown(rows)
  lines = table.splitlines()
  assert lines[0] == '| position | 1 | 2 |'
  assert lines[2] == '| 0 | `w0` 0.89 | **`w1` 0.45** (w1) |'
  assert lines[3].startswith('| 1 | `w3` 1.00 | ')
  document = json.loads(json.dumps(neighbours.summary(rows, k=2)))
  assert document['k'] == 2
  assert document['positions_with_label'] == {'w1': 1}
  assert document['rows'][0]['neighbours'][1] == {
      'id': 1, 'token': 'w1', 'similarity': pytest.approx(0.4472136),
      'labels': ['w1']}
  assert neighbours.nearest_neighbour_text(
      np.array([[1., .5, 0, 0], [0, 0, 0, 1.]]), embedding, FakeVocabulary(4),
      k=2, class_labels=['w1']) == table


def test_markdown_escapes_pipes():
  rows = [{'position': 0, 'labels': [], 'neighbours': [
      {'id': 5, 'token': 'a|b', 'similarity': 0.5, 'labels': []}]}]
  assert '`a\\|b` 0.50' in neighbours.to_markdown(rows)


def test_prompt_diagnostics_on_a_hand_example():
  initial = np.array([[3., 4.], [0., 2.]], np.float32)   # norms 5, 2
  prompt = np.array([[3., 4.], [2., 0.]], np.float32)    # norms 5, 2
  embedding = np.array([[1., 0.], [0., 3.]], np.float32)  # norms 1, 3
  values = neighbours.prompt_diagnostics(prompt, initial, embedding)
  assert values == pytest.approx({
      'prompt/norm': 3.5,
      'prompt/embedding_norm': 2.0,
      'prompt/norm_ratio': 1.75,
      # Row 0 did not move; row 1 moved from (0, 2) to (2, 0).
      'prompt/drift_l2': (0 + np.sqrt(8)) / 2,
      'prompt/drift_cosine': (1 + 0) / 2,
  })
  assert all(isinstance(v, float) for v in values.values())
  unmoved = neighbours.prompt_diagnostics(initial, initial, embedding)
  assert unmoved['prompt/drift_l2'] == 0
  assert unmoved['prompt/drift_cosine'] == pytest.approx(1)


def test_prompt_diagnostics_shape_errors():
  with pytest.raises(ValueError, match='initial prompt shape'):
    neighbours.prompt_diagnostics(np.ones((2, 3)), np.ones((3, 3)),
                                  np.ones((5, 3)))
  with pytest.raises(ValueError, match='embedding'):
    neighbours.prompt_diagnostics(np.ones((2, 3)), np.ones((2, 3)),
                                  np.ones((5, 4)))


def _main_in_process(*args):
  """Runs the CLI's main on its own flag registry (no subprocess start-up)."""
  flag_values = flags.FlagValues()
  interpret.define_flags(flag_values)
  flag_values(['interpret', *args])
  interpret.main(['interpret'], flag_values)


def test_cli_writes_table_and_json(tmp_path, embedded_setup, capsys):
  embedding, vocabulary = embedded_setup
  labels = offline.LABELS['weekend']
  prompt = prompts.from_class_labels(embedding, vocabulary, labels)(
      jax.random.PRNGKey(1), (3, embedding.shape[1]))
  prompt_files.save_prompt(prompt, tmp_path / 'prompt.npy')
  output = tmp_path / 'neighbours.json'
  _main_in_process(f'--prompt={tmp_path / "prompt.npy"}',
                   f'--embedding={embedded.checkpoint_path()}',
                   '--vocabulary=offline', '--k=4',
                   f'--class_labels={",".join(labels)}', f'--output={output}')
  stdout = capsys.readouterr().out
  assert '| 0 | **`▁no` 1.00** (no) |' in stdout
  assert '| 1 | **`▁yes` 1.00** (yes) |' in stdout
  document = json.loads(output.read_text())
  assert document['class_labels'] == {'no': [454], 'yes': [456]}
  assert document['positions_with_label'] == {'no': 1, 'yes': 1}
  assert [len(r['neighbours']) for r in document['rows']] == [4, 4, 4]


def test_cli_names_a_missing_vocabulary(tmp_path):
  """The program itself (`python -m`): exits non-zero naming the file."""
  np.save(tmp_path / 'prompt.npy', np.ones((2, 128), np.float32))
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.interpret',
       f'--prompt={tmp_path / "prompt.npy"}',
       f'--embedding={embedded.checkpoint_path()}',
       f'--vocabulary={tmp_path / "nope.model"}'],
      capture_output=True, text=True, check=False, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode != 0
  assert 'nope.model' in result.stderr
