"""A synthetic corpus with latent structure, for self-supervised pretraining.

Every document is a short review (4 to 9 sentences, about 30 to 80 words) by
one author about one outing, built from word lists and templates. Three latent
attributes shape its wording:

| attribute   | values                        | what it changes                     |
|-------------|-------------------------------|-------------------------------------|
| `topic`     | food, music, science, sports  | places, things, verbs               |
| `sentiment` | negative, positive            | adjectives, the closing sentence    |
| `author`    | 12 first names                | the subject of the review           |

With probability `reveal_prob` (independently per attribute) the document ends
with a natural-language statement that reveals the attribute, in one of
several phrasings, e.g.

    Anna went to the bistro on Friday. ... Anna would gladly go back.
    This review is about food. Overall it was positive.

NOTE: every revealing statement ends with the attribute's label word and the
final period (`" food."`, `" positive."`, `" Anna."`). That is the form the
downstream targets take (`downstream_examples`): a label word followed by a
period, exactly as the corpus writes it at the end of a statement, so that a
model pretrained on the corpus can be prompted to produce it. Label words
without the period are not what the corpus ever ends a statement with.

Splits. `pretrain` feeds the self-supervised objectives; `downstream_train`,
`downstream_validation` and `downstream_test` feed the downstream tasks. Each
(split, seed) pair draws from its own random streams, and the splits are
disjoint by construction: a document body (its text without the revealing
statements) belongs to the split chosen by a hash of the body text, and a
split only keeps bodies that hash to it. So no body occurs in two splits for
any seeds or sizes, and a downstream input never occurs in pretraining, with
or without its revealing statement.

Generation is pure Python from string-seeded `random.Random` streams
(independent of `PYTHONHASHSEED`), so every machine sees the same documents.
The first `n` documents of a split do not depend on how many more are asked
for, and every attribute is balanced within each block of its values.

Tokens use the corpus's own SentencePiece model, `data/corpus_spm.model`,
made by `python -m prompt_tuning.tasks.make_corpus_vocab`.
"""
import dataclasses
import hashlib
import pathlib
import random
import types
from typing import Dict, Iterator, List, Mapping, Sequence, Tuple

import seqio

VOCABULARY_PATH = pathlib.Path(__file__).parent / 'data' / 'corpus_spm.model'
EXTRA_IDS = 100
DEFAULT_SEED = 20210418
DEFAULT_REVEAL_PROB = 0.3

# The share of the body hash space that each split owns, in order.
SPLIT_SHARES = types.MappingProxyType({
    'pretrain': 0.85,
    'downstream_train': 0.05,
    'downstream_validation': 0.05,
    'downstream_test': 0.05,
})
DOWNSTREAM_SPLITS = ('downstream_train', 'downstream_validation',
                     'downstream_test')

# ------------------------------------------------------------------------------
# Word lists.
# ------------------------------------------------------------------------------
TOPICS = ('food', 'music', 'science', 'sports')
SENTIMENTS = ('negative', 'positive')
AUTHORS = ('Anna', 'Ben', 'Carla', 'David', 'Emma', 'Felix', 'Grace', 'Hugo',
           'Iris', 'Jonas', 'Karin', 'Leo')
# Other people who may come along; never an author, so the author question
# cannot be answered by "the only name in the text".
COMPANIONS = ('Mia', 'Noah', 'Olga', 'Paul', 'Rosa', 'Sam')
DAYS = ('Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday',
        'Sunday')

PLACES = types.MappingProxyType({
    'food': ('bistro', 'bakery', 'restaurant', 'cafe', 'food market',
             'noodle bar'),
    'music': ('concert hall', 'jazz club', 'opera house', 'festival',
              'music school', 'record shop'),
    'science': ('museum', 'laboratory', 'observatory', 'lecture hall',
                'science fair', 'planetarium'),
    'sports': ('stadium', 'arena', 'sports club', 'race track',
               'swimming pool', 'tennis court'),
})
THINGS = types.MappingProxyType({
    'food': ('soup', 'pizza', 'bread', 'salad', 'cake', 'curry', 'pasta',
             'dessert', 'coffee', 'menu'),
    'music': ('concert', 'song', 'album', 'band', 'choir', 'singer', 'melody',
              'orchestra', 'drummer', 'encore'),
    'science': ('experiment', 'telescope', 'lecture', 'microscope', 'exhibit',
                'talk', 'theory', 'demonstration', 'poster', 'speaker'),
    'sports': ('match', 'race', 'game', 'team', 'coach', 'final', 'goalkeeper',
               'crowd', 'referee', 'tournament'),
})
# Past-tense verb phrases whose object is one of the topic's things.
VERBS = types.MappingProxyType({
    'food': ('tasted', 'ordered', 'tried', 'shared'),
    'music': ('listened to', 'heard', 'sang along with', 'danced to'),
    'science': ('studied', 'looked at', 'learned about', 'asked about'),
    'sports': ('watched', 'cheered for', 'followed', 'played against'),
})
ADJECTIVES = types.MappingProxyType({
    'negative': ('awful', 'terrible', 'boring', 'dreadful', 'poor', 'horrible',
                 'dull', 'disappointing', 'bad', 'weak', 'messy', 'tiresome'),
    'positive': ('great', 'wonderful', 'excellent', 'lovely', 'brilliant',
                 'superb', 'delightful', 'amazing', 'fantastic', 'pleasant',
                 'charming', 'splendid'),
})
INTENSIFIERS = ('', 'very ', 'really ', 'quite ', 'truly ', 'rather ')
CLOSINGS = types.MappingProxyType({
    'negative': ('{name} would not go back.',
                 '{name} cannot recommend it to anyone.',
                 'It was a waste of an evening for {name}.',
                 '{name} left early and felt let down.'),
    'positive': ('{name} would gladly go back.',
                 '{name} can recommend it to anyone.',
                 'It was a perfect evening for {name}.',
                 '{name} stayed late and felt very happy.'),
})

# ------------------------------------------------------------------------------
# Templates. Slots: {name} author, {friend} companion, {day}, {place}, {thing},
# {verb}, {adj} (intensifier + adjective).
# ------------------------------------------------------------------------------
OPENINGS = (
    '{name} went to the {place} on {day}.',
    'Last {day}, {name} visited the {place}.',
    'On {day} {name} spent the evening at the {place}.',
    '{name} finally tried the {place} on {day}.',
    'It was {day} when {name} went to the new {place}.',
)
DETAILS = (
    'The {thing} was {adj}.',
    '{name} {verb} the {thing} and found it {adj}.',
    'Everyone agreed that the {thing} was {adj}.',
    'To be honest, the {thing} seemed {adj}.',
    '{name} thought the {thing} was {adj}.',
    'Then {name} {verb} the {thing}, which was {adj}.',
    'The {thing} at the {place} felt {adj}.',
)
NEUTRALS = (
    'The weather was mild that day.',
    '{friend} came along as well.',
    'Getting there took about twenty minutes.',
    'It was busier than usual.',
    '{name} met {friend} at the entrance.',
    'The tickets were checked at the door.',
    'There was a long queue outside.',
)
# Revealing statements; each ends with " {label}." (see the module NOTE).
REVEALS = types.MappingProxyType({
    'topic': ('This review is about {label}.',
              'The review is about {label}.',
              'In short, it was all about {label}.',
              'This one is filed under {label}.'),
    'sentiment': ('Overall it was {label}.',
                  'Overall the review is {label}.',
                  'All in all, the experience was {label}.',
                  'The verdict is {label}.'),
    'author': ('This review was written by {label}.',
               'The author of this review is {label}.',
               'It was written by {label}.'),
})
ATTRIBUTES = tuple(REVEALS)  # ('topic', 'sentiment', 'author')
ATTRIBUTE_VALUES: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    'topic': TOPICS, 'sentiment': SENTIMENTS, 'author': AUTHORS})


@dataclasses.dataclass(frozen=True)
class Document:
  """One generated document and the latent attributes it was built from.

  Attributes:
    body: the document without revealing statements (a downstream input).
    reveals: the revealing statements appended to `body`, in order; empty for
      most documents.
    revealed: the attribute each statement of `reveals` reveals, same order.
    topic: one of `TOPICS`.
    sentiment: one of `SENTIMENTS`.
    author: one of `AUTHORS`.
  """
  body: str
  reveals: Tuple[str, ...]
  revealed: Tuple[str, ...]
  topic: str
  sentiment: str
  author: str

  @property
  def text(self) -> str:
    """The full document as the corpus presents it: body + statements."""
    return ' '.join((self.body,) + self.reveals)

  def label(self, attribute: str) -> str:
    """The label word of `attribute` (e.g. 'food'), without the period."""
    return getattr(self, attribute)


# ------------------------------------------------------------------------------
# Generation.
# ------------------------------------------------------------------------------
def _rng(seed: int, split: str, stream: str) -> random.Random:
  # NOTE: string seeds hash with SHA-512 inside `random`, so streams are the
  # same on every machine and independent of PYTHONHASHSEED.
  return random.Random(f'corpus/{seed}/{split}/{stream}')


def _balanced_stream(rng: random.Random,
                     values: Sequence[str]) -> Iterator[str]:
  """Endless shuffled permutations of `values`: balanced in every block."""
  while True:
    block = list(values)
    rng.shuffle(block)
    yield from block


def split_of(body: str) -> str:
  """The split that owns a document body, from a hash of its text."""
  digest = hashlib.sha256(body.encode('utf-8')).digest()
  u = int.from_bytes(digest[:8], 'big') / 2.0**64  # uniform in [0, 1)
  total = 0.0
  for split, share in SPLIT_SHARES.items():
    total += share
    if u < total:
      return split
  return split  # pylint: disable=undefined-loop-variable  (rounding at 1.0)


def _draw_body(rng: random.Random, topic: str, sentiment: str,
               author: str) -> str:
  """One document body for fixed attributes; free slots drawn from `rng`."""
  place = rng.choice(PLACES[topic])
  friend = rng.choice(COMPANIONS)

  def fill(template: str) -> str:
    return template.format(
        name=author, friend=friend, day=rng.choice(DAYS), place=place,
        thing=rng.choice(THINGS[topic]), verb=rng.choice(VERBS[topic]),
        adj=rng.choice(INTENSIFIERS) + rng.choice(ADJECTIVES[sentiment]))

  sentences = [fill(rng.choice(OPENINGS))]
  middle = [fill(t) for t in rng.sample(DETAILS, rng.randint(3, 4))]
  middle += [fill(t) for t in rng.sample(NEUTRALS, rng.randint(1, 2))]
  rng.shuffle(middle)
  sentences += middle
  sentences.append(fill(rng.choice(CLOSINGS[sentiment])))
  return ' '.join(sentences)


def generate_documents(split: str, n: int, seed: int = DEFAULT_SEED, *,
                       reveal_prob: float = DEFAULT_REVEAL_PROB
                       ) -> List[Document]:
  """The first `n` documents of one split.

  Args:
    split: one of `SPLIT_SHARES`.
    n: number of documents; the first `m < n` are those of `n=m`.
    seed: generation seed; each (split, seed) has its own random streams.
    reveal_prob: probability, per document and attribute independently, that
      the document ends with a statement revealing that attribute.

  Returns:
    `n` documents with distinct bodies, all owned by `split` (`split_of`).

  Raises:
    ValueError: if `split`, `n` or `reveal_prob` is out of range.
  """
  if split not in SPLIT_SHARES:
    raise ValueError(f'corpus: unknown split {split!r}; expected one of '
                     f'{list(SPLIT_SHARES)}')
  if n < 0:
    raise ValueError(f'corpus: n={n}; expected a count >= 0')
  if not 0.0 <= reveal_prob <= 1.0:
    raise ValueError(f'corpus: reveal_prob={reveal_prob}; expected a '
                     'probability in [0, 1]')
  streams = {a: _balanced_stream(_rng(seed, split, a), ATTRIBUTE_VALUES[a])
             for a in ATTRIBUTES}
  free = _rng(seed, split, 'free')
  reveal_rng = _rng(seed, split, 'reveal')
  seen = set()
  documents = []
  for _ in range(n):
    labels = {a: next(s) for a, s in streams.items()}
    # The attributes are fixed per index; only the free slots are redrawn
    # until the body is new and owned by this split (about 1 / share draws).
    for _ in range(10_000):
      body = _draw_body(free, **labels)
      if body not in seen and split_of(body) == split:
        break
    else:
      raise AssertionError(f'corpus: no new body for {labels} in {split}')
    seen.add(body)
    revealed = [a for a in ATTRIBUTES if reveal_rng.random() < reveal_prob]
    reveal_rng.shuffle(revealed)
    reveals = tuple(
        reveal_rng.choice(REVEALS[a]).format(label=labels[a])
        for a in revealed)
    documents.append(Document(body=body, reveals=reveals,
                              revealed=tuple(revealed), **labels))
  return documents


def pretraining_texts(n: int, seed: int = DEFAULT_SEED, *,
                      reveal_prob: float = DEFAULT_REVEAL_PROB) -> List[str]:
  """The texts of the first `n` pretraining documents (body + statements)."""
  return [d.text for d in generate_documents('pretrain', n, seed,
                                             reveal_prob=reveal_prob)]


# ------------------------------------------------------------------------------
# Downstream tasks.
# ------------------------------------------------------------------------------
def target_form(label: str) -> str:
  """A label word as the corpus writes it at the end of a statement."""
  return label + '.'


# Task name -> (attribute asked about, every possible target string). The two
# classification tasks and the short-answer task (the author's name, 12
# possible answers, all present in the input).
DOWNSTREAM_TASKS: Mapping[str, Tuple[str, Tuple[str, ...]]] = (
    types.MappingProxyType({
        name: (name, tuple(target_form(v) for v in ATTRIBUTE_VALUES[name]))
        for name in ('topic', 'sentiment', 'author')
    }))


def downstream_examples(task: str, split: str, n: int,
                        seed: int = DEFAULT_SEED) -> List[Dict[str, str]]:
  """Input -> target pairs of one downstream task.

  Args:
    task: a key of `DOWNSTREAM_TASKS` ('topic', 'sentiment', 'author').
    split: one of `DOWNSTREAM_SPLITS`.
    n: number of examples (the first `n` documents of the split).
    seed: generation seed.

  Returns:
    A list of `{'inputs': body, 'targets': label + '.'}`: the input is the
    document without its revealing statements, the target the label word with
    the final period (`'food.'`, `'positive.'`, `'Anna.'`), as in the corpus.

  Raises:
    ValueError: if `task` or `split` is unknown (or `split` is 'pretrain').
  """
  if task not in DOWNSTREAM_TASKS:
    raise ValueError(f'corpus: unknown downstream task {task!r}; expected one '
                     f'of {sorted(DOWNSTREAM_TASKS)}')
  if split not in DOWNSTREAM_SPLITS:
    raise ValueError(f'corpus: split {split!r} is not a downstream split; '
                     f'expected one of {list(DOWNSTREAM_SPLITS)}')
  attribute, _ = DOWNSTREAM_TASKS[task]
  return [{'inputs': d.body, 'targets': target_form(d.label(attribute))}
          for d in generate_documents(split, n, seed)]


def vocabulary() -> seqio.SentencePieceVocabulary:
  """The corpus vocabulary: `data/corpus_spm.model` + 100 extra ids."""
  if not VOCABULARY_PATH.exists():
    raise FileNotFoundError(
        f'corpus vocabulary {VOCABULARY_PATH} is missing; make it with '
        'python -m prompt_tuning.tasks.make_corpus_vocab')
  return seqio.SentencePieceVocabulary(str(VOCABULARY_PATH),
                                       extra_ids=EXTRA_IDS)
