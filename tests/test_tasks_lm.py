"""LM objectives (span corruption, prefix LM), C4 tasks, sentinel variants."""
import pytest

pytest.importorskip('prompt_tuning.tasks.metrics')

import numpy as np  # pylint: disable=g-import-not-at-top
import seqio
import tensorflow as tf

from prompt_tuning.tasks import lm
from prompt_tuning.tasks import lm_preprocessors
from prompt_tuning.tasks import preprocessors
from prompt_tuning.tasks import superglue
from prompt_tuning.tasks import vocab
import tasks_testing as tt

VOCAB_SIZE = tt.BYTE_VOCAB.vocab_size  # 359: 3 special, 256 bytes, 100 extra.
FIRST_SENTINEL = VOCAB_SIZE - 1
SPAN_LENGTHS = {'inputs': 256, 'targets': 64}
RAW_LENGTH, TARGETS_LENGTH = 284, 58  # What SPAN_LENGTHS['inputs'] implies.


def _documents(num, max_length, seed=0):
  rng = np.random.RandomState(seed)
  # Byte ids 3..258: nonzero and below the sentinel ids.
  return [rng.randint(3, 259, n).astype(np.int32)
          for n in rng.randint(1, max_length, num)]


def _dataset(documents):
  return tf.data.Dataset.from_generator(
      lambda: ({'targets': d} for d in documents),
      output_signature={'targets': tf.TensorSpec([None], tf.int32)})


def _is_sentinel(token):
  return token >= VOCAB_SIZE - vocab.T5_EXTRA_IDS


def _sentinels(tokens):
  return [int(t) for t in tokens if _is_sentinel(t)]


def _uncorrupt(inputs, targets):
  """Puts the target spans back in place of the input sentinels."""
  spans, current = {}, None
  for token in targets:
    if _is_sentinel(token):
      current = int(token)
      spans[current] = []
    else:
      spans[current].append(int(token))
  out = []
  for token in inputs:
    out.extend(spans.get(int(token), []) if _is_sentinel(token) else
               [int(token)])
  return out


@pytest.fixture(scope='module')
def corrupted():
  documents = _documents(100, 400)
  with seqio.map_seed_manager(7):
    dataset = lm_preprocessors.span_corruption(
        _dataset(documents), SPAN_LENGTHS, tt.BYTE_FEATURES)
    examples = list(dataset.as_numpy_iterator())
  return documents, examples


def test_span_corruption_lengths_are_t5s():
  assert lm_preprocessors.span_corruption_lengths(512, 0.15, 3.0) == (568,
                                                                      114)
  assert lm_preprocessors.span_corruption_lengths(256, 0.15, 3.0) == (
      RAW_LENGTH, TARGETS_LENGTH)


def test_span_corruption_reconstructs_the_documents(corrupted):
  documents, examples = corrupted
  rebuilt = [_uncorrupt(e['inputs'], e['targets']) for e in examples]
  assert all(len(r) == RAW_LENGTH for r in rebuilt[:-1])
  assert np.concatenate(rebuilt).tolist() == np.concatenate(documents).tolist()
  for example in examples:
    assert len(example['inputs']) <= SPAN_LENGTHS['inputs'] - 1
    assert len(example['targets']) <= TARGETS_LENGTH - 1


def test_span_corruption_noise_density_and_sentinels(corrupted):
  _, examples = corrupted
  noise = total = 0
  masks = set()
  for example in examples:
    inputs, targets = example['inputs'], example['targets']
    num_noise = sum(not _is_sentinel(t) for t in targets)
    num_spans = len(_sentinels(inputs))
    length = len(inputs) - num_spans + num_noise
    noise, total = noise + num_noise, total + length
    # Sentinels count down from the last vocabulary id, in both features.
    assert _sentinels(inputs) == list(
        range(FIRST_SENTINEL, FIRST_SENTINEL - num_spans, -1))
    assert _sentinels(targets)[:num_spans] == _sentinels(inputs)
    assert not _is_sentinel(inputs[0])  # Spans start with non-noise.
    if length == RAW_LENGTH:
      assert num_noise == 43 and num_spans == 14  # round(.15 L), noise / 3.
      masks.add(tuple(np.flatnonzero([_is_sentinel(t) for t in inputs])))
  assert 0.145 < noise / total < 0.155
  assert len(masks) > 1  # Span positions differ between examples.


def test_span_corruption_is_reproducible_with_a_seed(corrupted):
  documents, examples = corrupted
  with seqio.map_seed_manager(7):
    again = list(lm_preprocessors.span_corruption(
        _dataset(documents), SPAN_LENGTHS,
        tt.BYTE_FEATURES).as_numpy_iterator())
  assert all(np.array_equal(a['inputs'], b['inputs'])
             for a, b in zip(examples, again))


def test_span_corruption_rejects_short_targets():
  with pytest.raises(ValueError, match='targets'):
    lm_preprocessors.span_corruption(_dataset([]), {'inputs': 256,
                                                    'targets': 16},
                                     tt.BYTE_FEATURES)


def test_random_spans_noise_mask_counts():
  mask = lm_preprocessors.random_spans_noise_mask(
      tf.constant(100), 0.15, tf.constant([1, 2]), 3.0).numpy()
  starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
  assert mask.sum() == 15 and len(starts) == 5 and not mask[0]
  assert lm_preprocessors.random_spans_noise_mask(
      tf.constant(1), 0.15, tf.constant([1, 2])).numpy().tolist() == [False]


def test_prefix_lm_splits_each_segment_once():
  documents = _documents(40, 100, seed=1)
  with seqio.map_seed_manager(3):
    examples = list(lm_preprocessors.prefix_lm(
        _dataset(documents), {'inputs': 32, 'targets': 32},
        tt.BYTE_FEATURES).as_numpy_iterator())
  pieces, split_points = [], set()
  for example in examples:
    inputs, targets = example['inputs'].tolist(), example['targets'].tolist()
    length = len(inputs) + len(targets)
    assert length <= 31
    assert (1 <= len(inputs) <= length - 1) if length > 1 else not inputs
    split_points.add(len(inputs))
    pieces.append(inputs + targets)
  assert np.concatenate(pieces).tolist() == np.concatenate(documents).tolist()
  assert len(split_points) > 5


def test_add_sentinel_to_targets_prepends_last_id():
  dataset = tf.data.Dataset.from_tensors(
      {'inputs': tf.constant([5, 6]), 'targets': tf.constant([7, 8])})
  (example,) = preprocessors.add_sentinel_to_targets(
      dataset, tt.BYTE_FEATURES).as_numpy_iterator()
  assert example['targets'].tolist() == [FIRST_SENTINEL, 7, 8]
  assert example['inputs'].tolist() == [5, 6]


def test_sentinel_with_the_t5_vocabulary(reference_path):
  t5 = vocab.t5_vocabulary(str(reference_path('t5_vocab/sentencepiece.model')))
  features = vocab.output_features(t5)
  dataset = tf.data.Dataset.from_tensors(
      {'targets': tf.constant(t5.encode('positive negative'))})
  (example,) = preprocessors.add_sentinel_to_targets(
      dataset, features).as_numpy_iterator()
  assert example['targets'].tolist() == [32099, 1465, 2841]
  decoded = t5.decode(example['targets'].tolist())
  assert decoded == f'{lm.SENTINEL_TEXT} positive negative'
  assert lm.strip_sentinel(None)(decoded) == 'positive negative'


def test_sentinel_variants_are_registered():
  names = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  for config in tuple(superglue.CLASSIFICATION_TASKS) + ('record', 'wsc'):
    assert f'taskless_super_glue_{config}_v102_sentinel' in names
  mixture = seqio.MixtureRegistry.get('taskless_super_glue_v102_sentinel')
  base = seqio.MixtureRegistry.get('taskless_super_glue_v102')
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == {
      t.name + '_sentinel': base.get_rate(t) for t in base.tasks}
  assert lm.add_sentinel_variant('taskless_super_glue_rte_v102') == (
      'taskless_super_glue_rte_v102_sentinel')  # Registered once.


def test_sentinel_variant_targets_and_postprocessing():
  record = {'premise': 'P.', 'hypothesis': 'H.', 'label': 'not_entailment',
            'idx': 0}
  name = 'taskless_super_glue_rte_v102'
  (plain,) = tt.run_task(name, [record])
  (example,) = tt.run_task(name + '_sentinel', [record])
  assert example['targets'].tolist() == [FIRST_SENTINEL] + (
      plain['targets'].tolist())
  assert example['inputs'].tolist() == plain['inputs'].tolist()
  assert example['targets_pretokenized'] == plain['targets_pretokenized']
  task = seqio.TaskRegistry.get(name + '_sentinel')
  assert task.postprocess_fn('<extra_id_0> not_entailment', example={}) == 1
  assert task.postprocess_fn(b'<extra_id_0>entailment', example={}) == 0
  assert task.postprocess_fn('entailment', example={}, is_target=True) == 0
  assert ([tt.fn_name(f) for f in task.metric_fns] ==
          [tt.fn_name(f) for f in seqio.TaskRegistry.get(name).metric_fns])


C4_RECORD = {'url': 'u', 'content-type': 't', 'content-length': '1',
             'timestamp': 's'}


def test_c4_tasks_end_to_end():
  for name in (lm.SPAN_CORRUPTION_TASK, lm.PREFIX_LM_TASK):
    task = seqio.TaskRegistry.get(name)
    assert task.source.tfds_dataset.name == 'c4/en:2.2.0'
  records = [dict(C4_RECORD, text='The cat sat on the mat. ' * 4),
             dict(C4_RECORD, text='Dogs bark.')]
  text = ''.join(r['text'] for r in records)
  examples = tt.run_task(lm.SPAN_CORRUPTION_TASK, records, 'train',
                         {'inputs': 64, 'targets': 32})
  rebuilt = []
  for example in examples:
    assert example['inputs'][-1] == example['targets'][-1] == 1  # EOS.
    rebuilt += _uncorrupt(example['inputs'][:-1], example['targets'][:-1])
  assert tt.BYTE_VOCAB.decode(rebuilt) == text
  examples = tt.run_task(lm.PREFIX_LM_TASK, records, 'train',
                         {'inputs': 64, 'targets': 64})
  assert tt.BYTE_VOCAB.decode(np.concatenate(
      [np.concatenate([e['inputs'][:-1], e['targets'][:-1]])
       for e in examples]).tolist()) == text
