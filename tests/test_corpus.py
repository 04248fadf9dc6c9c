"""Tests for the synthetic pretraining corpus and its vocabulary."""
import collections
import itertools
import re

import pytest
import sentencepiece as spm

from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import make_corpus_vocab

SPLITS = list(corpus.SPLIT_SHARES)
TASKS = sorted(corpus.DOWNSTREAM_TASKS)
# Sizes: multiples of 12 (the block length of the author stream, and of 4 and
# 2), so every attribute is exactly balanced.
N_PRETRAIN = 2400
N_DOWNSTREAM = 240


@pytest.fixture(scope='module')
def pretrain():
  return corpus.generate_documents('pretrain', N_PRETRAIN)


@pytest.fixture(scope='module')
def documents(pretrain):
  docs = {'pretrain': pretrain}
  for split in corpus.DOWNSTREAM_SPLITS:
    docs[split] = corpus.generate_documents(split, N_DOWNSTREAM)
  return docs


@pytest.fixture(scope='module')
def processor():
  return spm.SentencePieceProcessor(model_file=str(corpus.VOCABULARY_PATH))


def _statement_openings():
  """The text of every revealing statement before its label, e.g. 'This
  review is about'."""
  return [t.split('{label}')[0].strip()
          for templates in corpus.REVEALS.values() for t in templates]


# ------------------------------------------------------------------------------
# Generation.
# ------------------------------------------------------------------------------
@pytest.mark.parametrize('split', SPLITS)
def test_generation_is_deterministic_and_depends_on_seed(split):
  first = corpus.generate_documents(split, 60)
  assert first == corpus.generate_documents(split, 60)
  # A longer request starts with the same documents.
  assert corpus.generate_documents(split, 90)[:60] == first
  other = corpus.generate_documents(split, 60, seed=corpus.DEFAULT_SEED + 1)
  assert not {d.body for d in other} & {d.body for d in first}


def test_documents_are_multi_sentence_and_30_to_90_words(pretrain):
  for doc in pretrain[:500]:
    words = len(doc.text.split())
    assert 30 <= words <= 90, doc.text
    assert doc.text.count('.') >= 4, doc.text
    assert doc.author in doc.body


def test_attributes_shape_the_wording(pretrain):
  for doc in pretrain[:500]:
    body = doc.body
    assert any(re.search(rf'\b{t}\b', body) for t in corpus.THINGS[doc.topic])
    for topic in corpus.TOPICS:
      if topic != doc.topic:
        assert not any(p in body for p in corpus.PLACES[topic]), (topic, body)
    other = corpus.SENTIMENTS[1 - corpus.SENTIMENTS.index(doc.sentiment)]
    assert not any(re.search(rf'\b{a}\b', body)
                   for a in corpus.ADJECTIVES[other]), body


@pytest.mark.parametrize('seeds', [(corpus.DEFAULT_SEED,) * 2,
                                   (corpus.DEFAULT_SEED, 7)])
def test_splits_are_disjoint(documents, seeds):
  seed_a, seed_b = seeds
  bodies = {s: [d.body for d in docs] for s, docs in documents.items()}
  if seed_b != seed_a:  # downstream splits drawn with another seed
    for split in corpus.DOWNSTREAM_SPLITS:
      bodies[split] = [d.body for d in
                       corpus.generate_documents(split, N_DOWNSTREAM, seed_b)]
  for split, texts in bodies.items():
    assert len(set(texts)) == len(texts), f'duplicates in {split}'
    assert all(corpus.split_of(b) == split for b in texts)
  for a, b in itertools.combinations(SPLITS, 2):
    assert not set(bodies[a]) & set(bodies[b]), f'{a} and {b} overlap'
  # Full texts too (body + statements).
  texts = {s: {d.text for d in docs} for s, docs in documents.items()}
  for a, b in itertools.combinations(SPLITS, 2):
    assert not texts[a] & texts[b]


@pytest.mark.parametrize('split', SPLITS)
def test_attributes_are_balanced(documents, split):
  docs = documents[split]
  for attribute, values in corpus.ATTRIBUTE_VALUES.items():
    counts = collections.Counter(d.label(attribute) for d in docs)
    assert set(counts) == set(values)
    assert len(set(counts.values())) == 1, (attribute, counts)


def test_attributes_are_independent(pretrain):
  pairs = collections.Counter((d.topic, d.sentiment) for d in pretrain)
  expected = len(pretrain) / 8
  assert len(pairs) == 8
  assert all(0.8 * expected <= c <= 1.2 * expected for c in pairs.values()), (
      pairs)


def test_reveal_rate_is_near_the_configured_probability(pretrain):
  # Binomial(2400, 0.3): standard deviation 0.0094; allow 4 of them.
  for attribute in corpus.ATTRIBUTES:
    rate = sum(attribute in d.revealed for d in pretrain) / len(pretrain)
    assert abs(rate - corpus.DEFAULT_REVEAL_PROB) < 0.038, (attribute, rate)


@pytest.mark.parametrize('prob,expected', [(0.0, 0), (1.0, 3)])
def test_reveal_probability_extremes(prob, expected):
  docs = corpus.generate_documents('downstream_test', 24, reveal_prob=prob)
  assert all(len(d.reveals) == expected for d in docs)


def test_revealing_statements_end_with_the_target_form(pretrain):
  for doc in pretrain[:500]:
    assert doc.text == ' '.join((doc.body,) + doc.reveals)
    assert len(doc.reveals) == len(doc.revealed)
    assert len(set(doc.revealed)) == len(doc.revealed)
    for statement, attribute in zip(doc.reveals, doc.revealed):
      target = corpus.target_form(doc.label(attribute))
      assert statement.endswith(' ' + target), statement
      assert statement in [t.format(label=doc.label(attribute))
                           for t in corpus.REVEALS[attribute]]


@pytest.mark.parametrize('kwargs', [dict(split='dev', n=3),
                                    dict(split='pretrain', n=-1),
                                    dict(split='pretrain', n=3,
                                         reveal_prob=1.5)])
def test_bad_arguments_raise(kwargs):
  with pytest.raises(ValueError, match='dev|n=-1|1.5'):
    corpus.generate_documents(**kwargs)


# ------------------------------------------------------------------------------
# Downstream examples.
# ------------------------------------------------------------------------------
@pytest.mark.parametrize('split', corpus.DOWNSTREAM_SPLITS)
@pytest.mark.parametrize('task', TASKS)
def test_downstream_examples(documents, task, split):
  examples = corpus.downstream_examples(task, split, N_DOWNSTREAM)
  docs = documents[split]
  attribute, targets = corpus.DOWNSTREAM_TASKS[task]
  assert len(examples) == len(docs)
  openings = _statement_openings()
  for ex, doc in zip(examples, docs):
    assert ex['inputs'] == doc.body
    assert not any(o in ex['inputs'] for o in openings), ex['inputs']
    # The documented form: the label word and the final period.
    assert ex['targets'] == doc.label(attribute) + '.'
    assert ex['targets'] in targets
    assert re.fullmatch(r'[A-Za-z]+\.', ex['targets'])
  counts = collections.Counter(ex['targets'] for ex in examples)
  assert set(counts) == set(targets)
  assert len(set(counts.values())) == 1, counts


def test_the_short_answer_is_in_the_input():
  for ex in corpus.downstream_examples('author', 'downstream_train', 60):
    assert ex['targets'][:-1] in ex['inputs']


@pytest.mark.parametrize('kwargs', [dict(task='nope', split='downstream_train'),
                                    dict(task='topic', split='pretrain')])
def test_downstream_bad_arguments_raise(kwargs):
  with pytest.raises(ValueError, match='nope|pretrain'):
    corpus.downstream_examples(n=3, **kwargs)


def test_pretraining_never_presents_a_downstream_input_label_pair():
  texts = corpus.pretraining_texts(N_PRETRAIN)
  assert texts == [d.text for d in corpus.generate_documents(
      'pretrain', N_PRETRAIN)]
  joined = '\n'.join(texts)
  for task in TASKS:
    for ex in corpus.downstream_examples(task, 'downstream_train',
                                         N_DOWNSTREAM):
      # Not the input at all, so in particular never followed by a statement
      # that ends with its label.
      assert ex['inputs'] not in joined
      for template in corpus.REVEALS[task]:
        statement = template.format(label=ex['targets'][:-1])
        assert ex['inputs'] + ' ' + statement not in joined


# ------------------------------------------------------------------------------
# Vocabulary.
# ------------------------------------------------------------------------------
def test_vocabulary_special_ids(processor):
  assert (processor.pad_id(), processor.eos_id(), processor.unk_id(),
          processor.bos_id()) == (0, 1, 2, -1)
  assert processor.get_piece_size() == make_corpus_vocab.VOCAB_SIZE
  assert corpus.VOCABULARY_PATH.stat().st_size < 300_000


def test_vocabulary_round_trips_the_corpus(processor, documents):
  texts = [d.text for docs in documents.values() for d in docs[:200]]
  texts += [t for _, targets in corpus.DOWNSTREAM_TASKS.values()
            for t in targets]
  ids = processor.encode(texts)
  assert [processor.decode(x) for x in ids] == texts
  assert not any(processor.unk_id() in x for x in ids)
  # Every word is one piece, punctuation apart, so documents stay short.
  words = sum(len(t.split()) for t in texts)
  assert sum(map(len, ids)) / words < 1.3


def test_targets_are_at_most_two_pieces(processor):
  for _, targets in corpus.DOWNSTREAM_TASKS.values():
    for target in targets:
      assert len(processor.encode(target)) <= 2, target


def test_vocabulary_round_trips_unseen_text_by_byte_fallback(processor):
  text = 'Zoë wrote: "¿qué?" 42'
  ids = processor.encode(text)
  assert processor.unk_id() not in ids
  assert processor.decode(ids) == text


def test_seqio_vocabulary_with_extra_ids(processor):
  vocab = corpus.vocabulary()
  assert vocab.vocab_size == processor.get_piece_size() + 100
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  text = corpus.generate_documents('downstream_validation', 1)[0].text
  assert list(vocab.encode(text)) == processor.encode(text)
  assert vocab.decode(processor.encode(text)) == text
  # Sentinels are the last ids, <extra_id_0> the very last.
  assert vocab.encode('<extra_id_0>')[-1] == vocab.vocab_size - 1
  assert vocab.encode('<extra_id_99>')[-1] == vocab.vocab_size - 100
  assert vocab.decode([vocab.vocab_size - 1]) == '<extra_id_0>'


def test_script_regenerates_the_vocabulary_byte_for_byte():
  model = make_corpus_vocab.train_vocabulary(
      make_corpus_vocab.vocabulary_texts())
  assert model == corpus.VOCABULARY_PATH.read_bytes(), (
      'tasks/data/corpus_spm.model is stale: rerun '
      'python -m prompt_tuning.tasks.make_corpus_vocab')
