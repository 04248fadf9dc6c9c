"""Tests for the offline task suite and its vocabulary."""
import collections
import itertools

import pytest
import seqio
import sentencepiece as spm

import prompt_tuning.tasks  # pylint: disable=unused-import
from prompt_tuning.tasks import make_offline_vocab
from prompt_tuning.tasks import offline

TASK_NAMES = sorted(offline.TASKS)
SPLITS = sorted(offline.SPLIT_SIZES)
SEQIO_NAMES = ([offline.task_name(t) for t in TASK_NAMES] +
               [offline.task_name(t, prefixed=False) for t in TASK_NAMES] +
               [offline.MIXTURE_NAME])
# The suite promises short inputs and 1-3 token targets (EOS included below).
MAX_INPUT_TOKENS = 32
MAX_TARGET_TOKENS = 3


@pytest.fixture(scope='module')
def processor():
  return spm.SentencePieceProcessor(
      model_file=str(offline.VOCABULARY_PATH))


def _validation_texts():
  texts = []
  for task in TASK_NAMES:
    for prefixed in (True, False):
      for ex in offline.generate_examples(task, 'validation',
                                          prefixed=prefixed):
        texts += [ex['inputs'], ex['targets']]
  return texts


# ------------------------------------------------------------------------------
# Generation.
# ------------------------------------------------------------------------------
def test_generation_is_deterministic_and_depends_on_seed():
  first = offline.generate_reviews('validation')
  assert first == offline.generate_reviews('validation')
  assert offline.generate_examples('topic', 'test') == (
      offline.generate_examples('topic', 'test'))
  other = offline.generate_reviews('validation', seed=offline.DEFAULT_SEED + 1)
  assert [r.text for r in other] != [r.text for r in first]


def test_splits_have_their_sizes_and_are_disjoint():
  texts = {s: [r.text for r in offline.generate_reviews(s)] for s in SPLITS}
  for split, size in offline.SPLIT_SIZES.items():
    assert len(texts[split]) == size
    assert len(set(texts[split])) == size, f'duplicates in {split}'
  for a, b in itertools.combinations(SPLITS, 2):
    assert not set(texts[a]) & set(texts[b]), f'{a} and {b} overlap'


@pytest.mark.parametrize('split', SPLITS)
@pytest.mark.parametrize('task', TASK_NAMES)
def test_labels_are_balanced(task, split):
  counts = collections.Counter(
      ex['targets'] for ex in offline.generate_examples(task, split))
  assert set(counts) == set(offline.LABELS[task])
  assert max(counts.values()) - min(counts.values()) <= 1, counts


@pytest.mark.parametrize('task_a,task_b', [('sentiment', 'topic'),
                                           ('sentiment', 'weekend'),
                                           ('topic', 'weekend'),
                                           ('speaker', 'sentiment')])
def test_labels_of_different_tasks_are_independent(task_a, task_b):
  # Every label pair occurs about equally often, so one task's answer does not
  # give away another's (a wrong prompt then scores near chance).
  a = offline.generate_examples(task_a, 'train')
  b = offline.generate_examples(task_b, 'train')
  pairs = collections.Counter(
      (x['targets'], y['targets']) for x, y in zip(a, b))
  cells = len(offline.LABELS[task_a]) * len(offline.LABELS[task_b])
  expected = len(a) / cells
  assert len(pairs) == cells
  assert all(0.75 * expected <= c <= 1.25 * expected for c in pairs.values()), (
      pairs)


@pytest.mark.parametrize('task', TASK_NAMES)
def test_prefixed_and_taskless_differ_exactly_by_the_prefix(task):
  prefixed = offline.generate_examples(task, 'validation', prefixed=True)
  bare = offline.generate_examples(task, 'validation', prefixed=False)
  assert len(prefixed) == len(bare)
  for p, b in zip(prefixed, bare):
    assert p['inputs'] == f'{task}: ' + b['inputs']
    assert p['targets'] == b['targets']
    assert ':' not in b['inputs']


def test_all_tasks_share_the_sentences_of_a_split():
  inputs = [[ex['inputs'] for ex in offline.generate_examples(
      t, 'test', prefixed=False)] for t in TASK_NAMES]
  assert all(x == inputs[0] for x in inputs)


@pytest.mark.parametrize('kwargs', [dict(task='nope', split='train'),
                                    dict(task='topic', split='dev')])
def test_unknown_task_or_split_raises(kwargs):
  with pytest.raises(ValueError, match='nope|dev'):
    offline.generate_examples(**kwargs)


# ------------------------------------------------------------------------------
# Vocabulary.
# ------------------------------------------------------------------------------
def test_vocabulary_special_ids(processor):
  assert (processor.pad_id(), processor.eos_id(), processor.unk_id(),
          processor.bos_id()) == (0, 1, 2, -1)
  vocab = offline.vocabulary()
  assert vocab.vocab_size == processor.get_piece_size() + 100
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  assert processor.get_piece_size() == make_offline_vocab.VOCAB_SIZE


def test_vocabulary_round_trips_every_validation_text(processor):
  texts = _validation_texts()
  ids = processor.encode(texts)
  assert [processor.decode(x) for x in ids] == texts
  assert not any(processor.unk_id() in x for x in ids)
  # seqio's wrapper (with the 100 extra ids) agrees.
  vocab = offline.vocabulary()
  for text, expected in zip(texts[:50], ids[:50]):
    assert list(vocab.encode(text)) == expected
    assert vocab.decode(expected) == text


def test_vocabulary_round_trips_unseen_text_by_byte_fallback(processor):
  text = 'Zoë wrote: "¿qué?" 42'
  ids = processor.encode(text)
  assert processor.unk_id() not in ids
  assert processor.decode(ids) == text


@pytest.mark.parametrize('task', TASK_NAMES)
def test_labels_and_prefixes_are_single_pieces(processor, task):
  for label in offline.LABELS[task]:
    assert len(processor.encode(label)) == 1, label
  # "<task>:" is the task word and the colon.
  assert len(processor.encode(offline.TASKS[task].prefix.strip())) == 2


def test_script_regenerates_the_vocabulary_byte_for_byte():
  model = make_offline_vocab.train_vocabulary(offline.vocabulary_corpus())
  assert model == offline.VOCABULARY_PATH.read_bytes(), (
      'tasks/data/offline_spm.model is stale: rerun '
      'python -m prompt_tuning.tasks.make_offline_vocab')


# ------------------------------------------------------------------------------
# seqio registration.
# ------------------------------------------------------------------------------
def test_registered_names():
  registered = set(seqio.TaskRegistry.names()) | set(
      seqio.MixtureRegistry.names())
  assert set(SEQIO_NAMES) <= registered
  mixture = seqio.get_mixture_or_task(offline.MIXTURE_NAME)
  assert sorted(t.name for t in mixture.tasks) == sorted(
      offline.task_name(t) for t in TASK_NAMES)
  rates = {mixture.get_rate(t) for t in mixture.tasks}
  assert rates == {float(offline.SPLIT_SIZES['train'])}


@pytest.mark.parametrize('name', SEQIO_NAMES)
def test_seqio_yields_tokenized_examples(name, processor):
  provider = seqio.get_mixture_or_task(name)
  kwargs = dict(sequence_length={'inputs': 64, 'targets': 8},
                split='validation', shuffle=False)
  if isinstance(provider, seqio.Mixture):
    # NOTE: seqio's mixture sampling stops when its first task runs out, so a
    # single epoch of the mixture is a little short of all examples.
    ds = provider.get_dataset(**kwargs, num_epochs=1, seed=0,
                              copy_pretokenized=True).take(500)
    expected_count = 500
  else:
    ds = provider.get_dataset(**kwargs)
    expected_count = offline.SPLIT_SIZES['validation']
  count = 0
  for ex in ds.as_numpy_iterator():
    count += 1
    for key, limit in (('inputs', MAX_INPUT_TOKENS),
                       ('targets', MAX_TARGET_TOKENS)):
      ids = ex[key].tolist()
      assert 2 <= len(ids) <= limit + 1, (key, ids)
      assert ids[-1] == 1 and 1 not in ids[:-1], ids
      text = ex[f'{key}_pretokenized'].decode()
      assert processor.decode(ids[:-1]) == text
  assert count == expected_count


@pytest.mark.parametrize('task', TASK_NAMES)
def test_postprocess_and_metric_score_labels_as_class_ids(task):
  seqio_task = seqio.get_mixture_or_task(offline.task_name(task))
  labels = offline.LABELS[task]
  targets = [seqio_task.postprocess_fn(label, example={}, is_target=True)
             for label in labels]
  assert targets == list(range(len(labels)))
  predictions = [seqio_task.postprocess_fn(label, example={}, is_target=False)
                 for label in labels[1:] + ('not a label',)]
  (metric,) = seqio_task.metric_fns
  assert metric(targets, targets) == {'accuracy': 100.0}
  assert metric(targets, predictions) == {'accuracy': 0.0}
