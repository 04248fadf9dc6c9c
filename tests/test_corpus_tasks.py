"""Tests for the seqio tasks on the synthetic corpus."""
import numpy as np
import pytest
import seqio

import prompt_tuning.tasks  # pylint: disable=unused-import
from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import corpus_tasks

LM_TASKS = (corpus_tasks.SPAN_CORRUPTION_TASK, corpus_tasks.PREFIX_LM_TASK)
DOWNSTREAM = sorted(corpus.DOWNSTREAM_TASKS)
SIZES = corpus_tasks.TRAIN_SIZES + (None,)
DOWNSTREAM_NAMES = [corpus_tasks.task_name(t, n)
                    for t in DOWNSTREAM for n in SIZES]
# Pretraining examples built per objective for the leak check.
NUM_LM_EXAMPLES = 2000
EOS = 1


def _dataset(name, split='train', sequence_length=None):
  if sequence_length is None:
    sequence_length = corpus_tasks.SEQUENCE_LENGTHS.get(
        name, corpus_tasks.SEQUENCE_LENGTHS['downstream'])
  return seqio.get_mixture_or_task(name).get_dataset(
      dict(sequence_length), split=split, shuffle=False, num_epochs=1,
      use_cached=False, seed=0)


def _strip_eos(ids):
  ids = list(ids)
  assert ids and ids[-1] == EOS, f'no EOS at the end of {ids}'
  return ids[:-1]


def _lm_examples(name, n):
  return [{k: _strip_eos(v) for k, v in ex.items()}
          for ex in _dataset(name).take(n).as_numpy_iterator()]


@pytest.fixture(scope='module')
def vocab():
  return corpus.vocabulary()


@pytest.fixture(scope='module')
def span_examples():
  return _lm_examples(corpus_tasks.SPAN_CORRUPTION_TASK, NUM_LM_EXAMPLES)


@pytest.fixture(scope='module')
def prefix_examples():
  return _lm_examples(corpus_tasks.PREFIX_LM_TASK, NUM_LM_EXAMPLES)


def _is_sentinel(i, vocab):
  return i >= vocab.vocab_size - corpus.EXTRA_IDS


def _reconstruct(inputs, targets, vocab):
  """Fills each sentinel of `inputs` with the span after it in `targets`."""
  spans, current = {}, None
  for i in targets:
    if _is_sentinel(i, vocab):
      current = spans.setdefault(i, [])
    else:
      assert current is not None, 'targets do not start with a sentinel'
      current.append(i)
  out = []
  for i in inputs:
    out += spans.pop(i) if _is_sentinel(i, vocab) else [i]
  assert not spans, f'sentinels {sorted(spans)} only in the targets'
  return out


# ------------------------------------------------------------------------------
# Registration and shapes.
# ------------------------------------------------------------------------------
def test_names_and_labels():
  assert set(DOWNSTREAM) == {'topic', 'sentiment', 'author'}
  for name in LM_TASKS + tuple(DOWNSTREAM_NAMES):
    assert name in seqio.TaskRegistry.names(), name
  assert corpus_tasks.CORPUS_LABELS['topic'] == corpus.TOPICS
  for task in DOWNSTREAM:
    assert corpus_tasks.TARGETS[task] == tuple(
        label + '.' for label in corpus_tasks.CORPUS_LABELS[task])


@pytest.mark.parametrize('name', LM_TASKS)
def test_lm_tasks_yield_examples_within_lengths(name, vocab):
  lengths = corpus_tasks.SEQUENCE_LENGTHS[name]
  examples = list(_dataset(name).take(50).as_numpy_iterator())
  assert len(examples) == 50
  for ex in examples:
    for key in ('inputs', 'targets'):
      assert ex[key].dtype == np.int32 or ex[key].dtype == np.int64
      assert 2 <= len(ex[key]) <= lengths[key], (key, len(ex[key]))
      assert ex[key][-1] == EOS
      assert np.all(ex[key][:-1] != EOS) and np.all(ex[key] > 0)
      assert np.all(ex[key] < vocab.vocab_size)


# Every task's training split, and the evaluation splits (shared by all
# training sizes) of the default tasks.
DOWNSTREAM_CASES = (
    [(name, 'train') for name in DOWNSTREAM_NAMES] +
    [(corpus_tasks.task_name(t), split) for t in DOWNSTREAM
     for split in ('validation', 'test')])


@pytest.mark.parametrize('name,split', DOWNSTREAM_CASES)
def test_downstream_tasks_hold_their_examples_untruncated(name, split, vocab):
  task = name.split('_')[1]
  train_size = (corpus_tasks.DEFAULT_TRAIN_SIZE if name == f'corpus_{task}'
                else int(name.rsplit('_n', 1)[1]))
  n = train_size if split == 'train' else corpus_tasks.EVAL_SIZE
  # Decoding is checked on a prefix (the examples are nested, so the first
  # 200 are those of any larger n).
  expected = corpus.downstream_examples(task, corpus_tasks.SPLITS[split],
                                        min(n, 200))
  lengths = corpus_tasks.SEQUENCE_LENGTHS['downstream']
  got = list(_dataset(name, split).as_numpy_iterator())
  assert len(got) == n
  for ex, want in zip(got, expected):
    assert len(ex['inputs']) <= lengths['inputs']
    assert len(ex['targets']) <= lengths['targets']
    assert vocab.decode(_strip_eos(ex['inputs'])) == want['inputs']
    assert vocab.decode(_strip_eos(ex['targets'])) == want['targets']
    assert want['targets'] in corpus_tasks.TARGETS[task]


def test_training_sets_are_nested():
  small = corpus_tasks._downstream_fn('train', False, task='topic',
                                      train_size=32)
  large = corpus_tasks._downstream_fn('train', False, task='topic',
                                      train_size=128)
  small = [x['inputs'] for x in small.as_numpy_iterator()]
  large = [x['inputs'] for x in large.as_numpy_iterator()]
  assert large[:32] == small


@pytest.mark.parametrize('task', DOWNSTREAM)
def test_postprocessor_and_metric(task):
  t = seqio.get_mixture_or_task(corpus_tasks.task_name(task))
  targets = corpus_tasks.TARGETS[task]
  ids = [t.postprocess_fn(s, is_target=True) for s in targets]
  assert ids == list(range(len(targets)))
  assert t.postprocess_fn(corpus_tasks.CORPUS_LABELS[task][0]) == -1
  assert t.metric_fns[0](ids, ids) == {'accuracy': 100.0}


# ------------------------------------------------------------------------------
# Objectives.
# ------------------------------------------------------------------------------
def test_span_corruption_reconstructs_the_corpus(span_examples, vocab):
  stream = []
  for ex in span_examples:
    inputs, targets = ex['inputs'], ex['targets']
    sentinels = [i for i in inputs if _is_sentinel(i, vocab)]
    # One sentinel per span, from <extra_id_0> down, same order on both sides.
    assert sentinels == [vocab.vocab_size - 1 - k
                         for k in range(len(sentinels))]
    assert sentinels == [i for i in targets if _is_sentinel(i, vocab)]
    assert targets[0] == vocab.vocab_size - 1
    assert vocab.decode([vocab.vocab_size - 1]) == '<extra_id_0>'
    stream += _reconstruct(inputs, targets, vocab)
  # Segments are consecutive, so together they are the tokenized corpus.
  corpus_ids = []
  for text in corpus.pretraining_texts(len(stream) // 40 + 1):
    corpus_ids += vocab.encode(text)
    if len(corpus_ids) >= len(stream):
      break
  assert stream == corpus_ids[:len(stream)]


def test_prefix_lm_splits_each_document(prefix_examples, vocab):
  texts = corpus.pretraining_texts(len(prefix_examples))
  for ex, text in zip(prefix_examples, texts):
    assert ex['targets'], 'empty continuation'
    assert ex['inputs'] + ex['targets'] == vocab.encode(text)


# ------------------------------------------------------------------------------
# No leak: pretraining never presents a downstream input -> label pair.
# ------------------------------------------------------------------------------
def test_pretraining_never_presents_downstream_pairs(span_examples,
                                                     prefix_examples, vocab):
  size = max(corpus_tasks.TRAIN_SIZES)
  # Every task asks about the same documents: generate them once.
  documents = corpus.generate_documents('downstream_train', size)
  pairs = {(d.body, corpus.target_form(d.label(attribute)))
           for attribute, _ in corpus.DOWNSTREAM_TASKS.values()
           for d in documents}
  assert len(pairs) == size * len(DOWNSTREAM)
  inputs = sorted({x for x, _ in pairs})
  assert len(inputs) == size
  pretrain_pairs = set()
  texts = []
  for ex in prefix_examples:
    pretrain_pairs.add((vocab.decode(ex['inputs']),
                        vocab.decode(ex['targets'])))
    texts.append(vocab.decode(ex['inputs'] + ex['targets']))
  stream = []
  for ex in span_examples:
    pretrain_pairs.add((vocab.decode(ex['inputs']),
                        vocab.decode(ex['targets'])))
    stream += _reconstruct(ex['inputs'], ex['targets'], vocab)
  texts.append(vocab.decode(stream))
  assert not pairs & pretrain_pairs
  everything = '\n'.join(texts)
  # Sanity: the check can fire, since pretraining text contains its own docs.
  assert corpus.pretraining_texts(1)[0] in everything
  leaked = [x for x in inputs if x in everything]
  assert not leaked, f'{len(leaked)} downstream inputs in pretraining'


@pytest.mark.parametrize('gin_file, bindings', [
    ('corpus/pretrain_span_corruption.gin', []),
    ('corpus/lm_adapt.gin', ["--gin.INITIAL_CHECKPOINT_PATH='/ckpt/checkpoint_1'"]),
    ('corpus/prompt_tune.gin', ["--gin.INITIAL_CHECKPOINT_PATH='/ckpt/checkpoint_1'"]),
])
def test_corpus_pretraining_configs_pass_the_dry_run(gin_file, bindings):
  from prompt_tuning.cli import config_check  # pylint: disable=g-import-not-at-top
  config = config_check.config_from_args(
      [f'--gin_file={gin_file}', "--gin.MODEL_DIR='/tmp/corpus_dry_run'",
       '--num_devices=1', *bindings])
  estimates, failures = config_check.run_configs([config])
  assert not failures, failures
  assert estimates[0].total_bytes > 0


@pytest.mark.parametrize('objective', [corpus_tasks.SPAN_CORRUPTION_TASK,
                                       corpus_tasks.PREFIX_LM_TASK])
def test_the_unrevealed_variant_reads_the_same_documents_without_statements(
    objective):
  """`..._unrevealed` pretrains on the same bodies, none of them followed by
  a statement of its topic, sentiment or author."""
  n = 64
  def source_texts(name):
    source = seqio.get_mixture_or_task(name).source
    return [ex['targets'].decode() for ex in source.get_dataset(
        'train', shuffle=False).take(n).as_numpy_iterator()]
  revealed = source_texts(objective)
  unrevealed = source_texts(objective + corpus_tasks.UNREVEALED_SUFFIX)
  bodies = [d.body for d in corpus.generate_documents('pretrain', n)]
  assert unrevealed == bodies
  assert revealed == corpus.pretraining_texts(n)
  assert sum(r != b for r, b in zip(revealed, bodies)) > n // 4
