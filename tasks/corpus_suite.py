"""A SuperGLUE-like downstream suite on the synthetic corpus (`corpus.py`).

Four tasks ask questions about held-out corpus reviews that need more than
spotting one keyword, each with difficulty knobs (`Knobs`, defaults below):

| task       | kind                  | input                                  | targets                    |
|------------|-----------------------|----------------------------------------|----------------------------|
| `qa`       | extractive QA (span)  | `question: Where did Anna go? review: ...` | the span: `bistro.`, `Friday.`, `Mia.` |
| `negation` | sentiment             | a review whose details are negated or contrasted | `negative.`, `positive.` |
| `claim`    | entailment            | `review: ... claim: Anna did not go to the cafe.` | `agreed.`, `not.`   |
| `outing`   | pair                  | `review1: ... review2: ...`            | `agreed.` (same outing: same place, same day), `not.` |

Every target is a word the corpus writes followed by the period, as the
corpus ends its statements (`corpus.target_form`), so the corpus vocabulary
holds each label word as one piece (`agreed`, `not`, `positive`, the names,
days and places).

How each task defeats a keyword:
  - `qa`: `qa_distractors` sentences mention another person, place and day
    ("Noah had been to the cafe on Monday."), so the answer is the mention
    tied to the author, not the only one of its kind.
  - `negation`: each detail sentence is, with `negation_rate`, rewritten to
    "not" + an adjective of the opposite sentiment ("The soup was not
    awful."), with `contrast_rate` prefixed by an opposite first
    impression ("At first the soup seemed awful, but in the end the soup was
    great."); the closing sentence, which names the verdict ("would gladly go
    back"), is kept only with `closing_rate`. At the defaults the count of
    positive minus negative adjectives says nothing about the label.
  - `claim`: the claim states a place, day, companion or quality; with
    `claim_negated_rate` it is negated ("did not go to"), with
    `claim_paraphrase_rate` worded unlike the review; a distractor sentence
    (`claim_distractor_rate`) supplies the false entity of hard negatives
    (`claim_hard_rate`), so the claimed entity is in the text either way.
  - `outing`: the second review's place and day are set to the first's for
    `agreed.`; a hard negative (`outing_hard_rate`) changes only one of them
    (same topic), an easy one is a review of another topic.

Splits and leaks. Every example is built from documents of one downstream
split of the corpus (`corpus.generate_documents`), so its source bodies never
occur in pretraining, as for `corpus_topic`; what the suite adds (field
markers such as `question:`, negated and contrasted sentences, distractor
sentences, claims) is text the corpus never writes. On top, every input is
owned by its split by a hash of its text (`owner`, the corpus's SHA-256
split over the three downstream splits in equal shares): choices are
redrawn until it is, so no input occurs in two splits, for any seed and
knobs.

Generation is pure Python from string-seeded `random.Random` streams, like
the corpus: the first `n` examples of a split do not depend on `n`, and each
task's label (or question type, or claim type) is balanced in every block of
its values.
"""
import dataclasses
import functools
import hashlib
import random
import re
from typing import (Any, Callable, Dict, Iterator, List, Optional,
                    Sequence, Tuple)

from prompt_tuning.tasks import corpus

TASKS = ('qa', 'negation', 'claim', 'outing')
# Binary label words: the review supports the claim / the two reviews are of
# the same outing ('agreed'), or not ('not'). Class id 0 is 'not'.
AGREED, NOT = 'agreed', 'not'
BINARY_LABELS = (NOT, AGREED)
QUESTION_TYPES = ('where', 'when', 'who')
CLAIM_TYPES = ('place', 'day', 'companion', 'quality')
# Redraws of an example's free choices before its source document is skipped
# (only degenerate knobs, with nothing left to redraw, need that).
_REDRAWS = 64

# Sentences that mention another person, place and day than the outing's.
DISTRACTORS = (
    '{person} had been to the {place} on {day}.',
    'The week before, {person} went to the {place} on {day}.',
    '{person} would rather have gone to the {place} on {day}.',
)
COMPANION_SENTENCE = '{friend} came along as well.'
QUESTIONS = {
    'where': 'Where did {name} go?',
    'when': 'On which day did {name} go to the {place}?',
    'who': 'Who came along with {name}?',
}
# claim type -> (plain, plain negated, paraphrase, paraphrase negated).
CLAIMS = {
    'place': ('{name} went to the {value}.',
              '{name} did not go to the {value}.',
              '{name} spent time at the {value}.',
              '{name} did not spend time at the {value}.'),
    'day': ('{name} went out on {value}.',
            '{name} did not go out on {value}.',
            'The outing was on a {value}.',
            'The outing was not on a {value}.'),
    'companion': ('{value} came along.',
                  '{value} did not come along.',
                  '{name} went there with {value}.',
                  '{name} did not go there with {value}.'),
    'quality': ('The {thing} was {value}.',
                'The {thing} was not {value}.',
                '{name} found the {thing} {value}.',
                '{name} did not find the {thing} {value}.'),
}
CONTRAST = 'At first the {thing} seemed {adj}, but in the end {rest}'

_INTENSIFIERS = '|'.join(re.escape(i) for i in corpus.INTENSIFIERS if i)
_ALL_ADJECTIVES = sorted(a for v in corpus.ADJECTIVES.values() for a in v)
_ADJECTIVE = re.compile(r'\b(?:(?:%s))?(%s)\b' % (
    _INTENSIFIERS, '|'.join(_ALL_ADJECTIVES)))


@dataclasses.dataclass(frozen=True)
class Knobs:
  """Difficulty knobs of the suite; the defaults are the registered tasks'.

  Attributes:
    qa_distractors: distractor sentences per `qa` review, 0 to 4.
    negation_rate: `negation`: share of detail sentences negated, with an
      adjective of the opposite sentiment.
    contrast_rate: `negation`: share of detail sentences given an opposite
      first impression ("At first ... but in the end ..."); at most
      `1 - negation_rate`, the rest stay plain. At the defaults plain and
      negated sentences are equally likely, so counting the adjectives of
      each sentiment says nothing about the label.
    closing_rate: `negation`: probability of keeping the review's closing
      sentence, which states the verdict in keywords.
    claim_negated_rate: `claim`: share of negated claims.
    claim_paraphrase_rate: `claim`: share of claims worded unlike the review.
    claim_distractor_rate: `claim`: probability of a distractor sentence in
      the review.
    claim_hard_rate: `claim`: share of false place/day/companion claims whose
      entity is the distractor's (in the text), not one absent from it.
    outing_hard_rate: `outing`: share of negatives that differ in only the
      place or only the day (same topic), not in topic.
    outing_sentences: `outing`: sentences kept of each review (the first, with
      place and day, and random others), at least 1.
  """
  qa_distractors: int = 1
  negation_rate: float = 0.4
  contrast_rate: float = 0.2
  closing_rate: float = 0.0
  claim_negated_rate: float = 0.3
  claim_paraphrase_rate: float = 0.5
  claim_distractor_rate: float = 1.0
  claim_hard_rate: float = 0.75
  outing_hard_rate: float = 0.75
  outing_sentences: int = 3

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.type is float and not 0.0 <= value <= 1.0:
        raise ValueError(f'corpus_suite.Knobs: {field.name}={value}; expected '
                         'a probability in [0, 1]')
    if self.negation_rate + self.contrast_rate > 1.0:
      raise ValueError(f'corpus_suite.Knobs: negation_rate + contrast_rate = '
                       f'{self.negation_rate + self.contrast_rate}; expected '
                       'at most 1 (they share the detail sentences)')
    if not 0 <= self.qa_distractors <= 4:
      raise ValueError(f'corpus_suite.Knobs: qa_distractors='
                       f'{self.qa_distractors}; expected 0 to 4 (6 companions '
                       'and 6 places per topic to draw from)')
    if self.outing_sentences < 1:
      raise ValueError(f'corpus_suite.Knobs: outing_sentences='
                       f'{self.outing_sentences}; expected at least 1')


DEFAULT_KNOBS = Knobs()
KnobPairs = Tuple[Tuple[str, Any], ...]


def parse_knobs(items: Sequence[str]) -> KnobPairs:
  """`NAME=VALUE` strings (a command's `--knobs`) as sorted (name, value)
  pairs of `Knobs` fields, each value of its field's type.

  Raises:
    ValueError: an unknown name, a value of the wrong type, or values that
      `Knobs` refuses; the message names the item at fault.
  """
  types = {f.name: f.type for f in dataclasses.fields(Knobs)}
  parsed = {}
  for item in items:
    name, _, value = item.partition('=')
    if name not in types or not value:
      raise ValueError(f'knobs: {item!r}; expected NAME=VALUE with NAME one '
                       f'of {sorted(types)}')
    try:
      parsed[name] = (int if types[name] is int else float)(value)
    except ValueError as e:
      raise ValueError(f'knobs: {item!r}: {e}') from None
  try:
    Knobs(**parsed)
  except ValueError as e:
    raise ValueError(f'knobs: {e}') from None
  return tuple(sorted(parsed.items()))


# ------------------------------------------------------------------------------
# Reading a corpus document.
# ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Facts:
  """What a document body states, read back from its text."""
  sentences: Tuple[str, ...]
  place: str
  day: str
  friend: Optional[str]  # None when no sentence names the companion.
  things: Tuple[str, ...]


@functools.lru_cache(maxsize=None)
def _word_pattern(word: str) -> 're.Pattern[str]':
  return re.compile(r'\b%s\b' % re.escape(word))


def _words_in(text: str, words: Sequence[str]) -> List[str]:
  return [w for w in words if _word_pattern(w).search(text)]


@functools.lru_cache(maxsize=4096)
def _facts(document: corpus.Document) -> _Facts:
  body = document.body
  places = [p for p in corpus.PLACES[document.topic]
            if re.search(r'\b(?:the|new) %s\b' % re.escape(p), body)]
  days = _words_in(body, corpus.DAYS)
  friends = _words_in(body, corpus.COMPANIONS)
  if len(places) != 1 or len(days) != 1 or len(friends) > 1:
    raise AssertionError(f'corpus_suite: cannot read the outing of {body!r}: '
                         f'places {places}, days {days}, friends {friends}')
  return _Facts(sentences=tuple(re.split(r'(?<=\.) ', body)),
                place=places[0], day=days[0],
                friend=friends[0] if friends else None,
                things=tuple(_words_in(body.replace(places[0], ''),
                                       corpus.THINGS[document.topic])))


def _insert(sentences: List[str], sentence: str, rng: random.Random) -> None:
  """Inserts after the opening and before the closing sentence."""
  sentences.insert(rng.randint(1, max(1, len(sentences) - 1)), sentence)


def _sentences_with_companion(
    facts: _Facts, needs_companion: bool, rng: random.Random
) -> Tuple[List[str], Optional[str]]:
  """The review's sentences and its companion, one added (a sentence in the
  corpus's words) where the example needs one and the review has none."""
  sentences, friend = list(facts.sentences), facts.friend
  if needs_companion and friend is None:
    friend = rng.choice(corpus.COMPANIONS)
    _insert(sentences, COMPANION_SENTENCE.format(friend=friend), rng)
  return sentences, friend


def _other(rng: random.Random, values: Sequence[str], *used: str) -> str:
  return rng.choice([v for v in values if v not in used])


def _distractor(rng: random.Random, topic: str, people: Sequence[str],
                places: Sequence[str], days: Sequence[str]
               ) -> Tuple[str, str, str, str]:
  """A distractor sentence and its (person, place, day), none of them used."""
  person = _other(rng, corpus.COMPANIONS, *people)
  place = _other(rng, corpus.PLACES[topic], *places)
  day = _other(rng, corpus.DAYS, *days)
  sentence = rng.choice(DISTRACTORS).format(person=person, place=place,
                                            day=day)
  return sentence, person, place, day


def owner(inputs: str) -> str:
  """The downstream split that owns a suite input, from a hash of its text.

  The corpus's hash (`corpus.split_of`: the first 8 bytes of SHA-256 as a
  number in [0, 1)) of the salted text, over the three downstream splits in
  equal shares, so an example is accepted after three draws on average.
  """
  # NOTE: the salt makes the hash independent of `corpus.split_of`: an input
  # that is a corpus body unchanged (knobs with nothing to rewrite) would
  # otherwise always fall in its own corpus split's narrow range.
  digest = hashlib.sha256(b'corpus_suite/' + inputs.encode('utf-8')).digest()
  u = int.from_bytes(digest[:8], 'big') / 2.0**64
  return corpus.DOWNSTREAM_SPLITS[min(int(3 * u), 2)]


def _opposite(sentiment: str) -> str:
  return corpus.SENTIMENTS[1 - corpus.SENTIMENTS.index(sentiment)]


# ------------------------------------------------------------------------------
# The tasks: one example from a document, its label and an rng.
# ------------------------------------------------------------------------------
Example = Dict[str, object]


def _qa(document: corpus.Document, qtype: str, knobs: Knobs,
        rng: random.Random) -> Example:
  facts = _facts(document)
  sentences, friend = _sentences_with_companion(facts, qtype == 'who', rng)
  people, places, days = [friend], [facts.place], [facts.day]
  for _ in range(knobs.qa_distractors):
    sentence, person, place, day = _distractor(rng, document.topic, people,
                                               places, days)
    people.append(person)
    places.append(place)
    days.append(day)
    _insert(sentences, sentence, rng)
  question = QUESTIONS[qtype].format(name=document.author, place=facts.place)
  answer = {'where': facts.place, 'when': facts.day, 'who': friend}[qtype]
  return {'inputs': f'question: {question} review: {" ".join(sentences)}',
          'targets': corpus.target_form(answer), 'answers': (answer,)}


def _drop_lead(sentence: str) -> str:
  """The sentence without a leading 'To be honest, ' or 'Then '."""
  return re.sub(r'^(To be honest, |Then )', '', sentence)


def _lower_first(sentence: str) -> str:
  first = sentence.split(' ', 1)[0]
  if first in corpus.AUTHORS:
    return sentence
  return sentence[0].lower() + sentence[1:]


def _negation(document: corpus.Document, knobs: Knobs,
              rng: random.Random) -> Example:
  """The label is the document's own sentiment."""
  facts = _facts(document)
  opposite = corpus.ADJECTIVES[_opposite(document.sentiment)]
  sentences = [facts.sentences[0]]
  for sentence in facts.sentences[1:-1]:
    match = _ADJECTIVE.search(sentence)
    if match is None:  # A neutral sentence.
      sentences.append(sentence)
      continue
    u = rng.random()
    if u < knobs.negation_rate:
      sentence = (sentence[:match.start()] + 'not ' + rng.choice(opposite) +
                  sentence[match.end():])
    elif u < knobs.negation_rate + knobs.contrast_rate:
      # The place is dropped first: 'race track' holds the thing 'race'.
      thing, = _words_in(sentence.replace(facts.place, ''),
                         corpus.THINGS[document.topic])
      sentence = CONTRAST.format(thing=thing, adj=rng.choice(opposite),
                                 rest=_lower_first(_drop_lead(sentence)))
    sentences.append(sentence)
  if rng.random() < knobs.closing_rate:
    sentences.append(facts.sentences[-1])
  return {'inputs': ' '.join(sentences),
          'targets': corpus.target_form(document.sentiment)}


def _claim(document: corpus.Document, label: str, ctype: str, knobs: Knobs,
           rng: random.Random) -> Example:
  facts = _facts(document)
  sentences, friend = _sentences_with_companion(facts, ctype == 'companion',
                                                rng)
  distractor = None
  if rng.random() < knobs.claim_distractor_rate:
    sentence, *distractor = _distractor(rng, document.topic, [friend],
                                        [facts.place], [facts.day])
    _insert(sentences, sentence, rng)
  negated = rng.random() < knobs.claim_negated_rate
  paraphrase = rng.random() < knobs.claim_paraphrase_rate
  hard = distractor is not None and rng.random() < knobs.claim_hard_rate
  stated_true = (label == AGREED) != negated
  thing = rng.choice(facts.things)
  text = ' '.join(sentences)
  if ctype == 'quality':
    sentiment = (document.sentiment if stated_true else
                 _opposite(document.sentiment))
    value = rng.choice(corpus.ADJECTIVES[sentiment])
  else:
    slot = CLAIM_TYPES.index(ctype)  # place, day, companion
    true_value = (facts.place, facts.day, friend)[slot]
    if stated_true:
      value = true_value
    elif hard:
      value = distractor[(1, 2, 0)[slot]]  # distractor = [person, place, day]
    else:  # An entity the text does not mention.
      pool = {'place': [p for t in corpus.TOPICS if t != document.topic
                        for p in corpus.PLACES[t]],
              'day': corpus.DAYS, 'companion': corpus.COMPANIONS}[ctype]
      value = rng.choice([v for v in pool if not _words_in(text, [v])])
  template = CLAIMS[ctype][2 * paraphrase + negated]
  claim = template.format(name=document.author, value=value, thing=thing)
  return {'inputs': f'review: {text} claim: {claim}',
          'targets': corpus.target_form(label)}


def _trimmed(facts: _Facts, k: int, rng: random.Random) -> List[str]:
  """The first sentence and `k - 1` others, in order."""
  rest = sorted(rng.sample(range(1, len(facts.sentences)),
                           min(k - 1, len(facts.sentences) - 1)))
  return [facts.sentences[0]] + [facts.sentences[i] for i in rest]


def _outing(first: corpus.Document, partner: corpus.Document, label: str,
            kind: str, knobs: Knobs, rng: random.Random) -> Example:
  """`kind`: 'same', or what the negative changes: 'place', 'day', 'topic'."""
  one, two = _facts(first), _facts(partner)
  place, day = two.place, two.day
  if kind in ('same', 'day'):
    place = one.place
  elif kind == 'place':
    place = _other(rng, corpus.PLACES[first.topic], one.place)
  if kind in ('same', 'place'):
    day = one.day
  elif kind == 'day':
    day = _other(rng, corpus.DAYS, one.day)
  second = []
  for sentence in _trimmed(two, knobs.outing_sentences, rng):
    sentence = re.sub(r'\b%s\b' % re.escape(two.place), place, sentence)
    second.append(re.sub(r'\b%s\b' % re.escape(two.day), day, sentence))
  text_one = ' '.join(_trimmed(one, knobs.outing_sentences, rng))
  return {'inputs': f'review1: {text_one} review2: {" ".join(second)}',
          'targets': corpus.target_form(label)}


# ------------------------------------------------------------------------------
# Streams of examples.
# ------------------------------------------------------------------------------
class _Documents:
  """The documents of one corpus split, generated as far as asked for.

  Every task reads the same documents: they are kept per (split, seed), and
  regenerated only when an example needs one past the end (the first n
  documents of a split do not depend on how many are generated).
  """
  _generated: Dict[Tuple[str, int], List[corpus.Document]] = {}

  def __init__(self, split: str, seed: int, size_hint: int):
    self._key = (split, seed)
    # The examples use about one document each; the pair task looks ahead.
    self._size_hint = size_hint + 64

  def __getitem__(self, i: int) -> corpus.Document:
    documents = self._generated.get(self._key, [])
    if i >= len(documents):
      split, seed = self._key
      documents = corpus.generate_documents(
          split, max(self._size_hint, i + 1, 2 * len(documents)), seed)
      self._generated[self._key] = documents
    return documents[i]


def _rng(seed: int, task: str, split: str, stream: str) -> random.Random:
  return random.Random(f'corpus_suite/{seed}/{task}/{split}/{stream}')


def _balanced(rng: random.Random, values: Sequence[str]) -> Iterator[str]:
  while True:
    block = list(values)
    rng.shuffle(block)
    yield from block


def _builders(task: str, documents: _Documents, seed: int, split: str,
              knobs: Knobs) -> Iterator[Callable[[int, random.Random],
                                                 Example]]:
  """Per example: `build(document index, rng)`, its label already drawn.

  `build` may be called again with the next document index (and the rng
  advanced) when its input is not owned by the split.
  """
  labels = _balanced(_rng(seed, task, split, 'label'), BINARY_LABELS)
  kinds = _balanced(_rng(seed, task, split, 'kind'),
                    {'qa': QUESTION_TYPES, 'claim': CLAIM_TYPES}.get(
                        task, ('place', 'day')))
  while True:
    if task == 'qa':
      qtype = next(kinds)
      yield lambda i, rng, q=qtype: _qa(documents[i], q, knobs, rng)
    elif task == 'negation':
      yield lambda i, rng: _negation(documents[i], knobs, rng)
    elif task == 'claim':
      label, ctype = next(labels), next(kinds)
      yield lambda i, rng, l=label, c=ctype: _claim(documents[i], l, c, knobs,
                                                    rng)
    else:
      label = next(labels)
      hard_kind = next(kinds) if label == NOT else None

      def build(i, rng, label=label, hard_kind=hard_kind):
        first = documents[i]
        kind = 'same'
        if label == NOT:
          kind = (hard_kind if rng.random() < knobs.outing_hard_rate else
                  'topic')
        same_topic = kind != 'topic'
        j = i + rng.randint(1, 8)
        while (documents[j].author == first.author or
               (documents[j].topic == first.topic) != same_topic):
          j += 1
        return _outing(first, documents[j], label, kind, knobs, rng)

      yield build


def examples(task: str, split: str, n: int, seed: int = corpus.DEFAULT_SEED,
             knobs: Knobs = DEFAULT_KNOBS) -> List[Example]:
  """The first `n` examples of one suite task.

  Args:
    task: one of `TASKS`.
    split: one of `corpus.DOWNSTREAM_SPLITS`; examples are built from that
      split's documents only.
    n: number of examples; the first `m < n` are those of `n=m`.
    seed: generation seed (of the corpus documents and of the suite's
      choices).
    knobs: difficulty knobs.

  Returns:
    `n` dicts {'inputs': str, 'targets': label + '.'}, `qa` ones also with
    'answers': (the answer span,). Every input is distinct and owned by
    `split` (`owner(inputs) == split`).

  Raises:
    ValueError: if `task` or `split` is unknown or `n` is negative.
  """
  if task not in TASKS:
    raise ValueError(f'corpus_suite: unknown task {task!r}; expected one of '
                     f'{list(TASKS)}')
  if split not in corpus.DOWNSTREAM_SPLITS:
    raise ValueError(f'corpus_suite: split {split!r} is not a downstream '
                     f'split; expected one of {list(corpus.DOWNSTREAM_SPLITS)}')
  if n < 0:
    raise ValueError(f'corpus_suite: n={n}; expected a count >= 0')
  documents = _Documents(split, seed, n)
  rng = _rng(seed, task, split, 'free')
  builders = _builders(task, documents, seed, split, knobs)
  out, seen, index = [], set(), 0
  while len(out) < n:
    build = next(builders)
    example = None
    while example is None:
      # Redraw the free choices until the input is owned by the split; past
      # `_REDRAWS` tries, or once the redraws repeat themselves (few or no
      # free choices), take the next document.
      tried = set()
      for _ in range(_REDRAWS):
        candidate = build(index, rng)
        if candidate['inputs'] in tried and len(tried) < _REDRAWS // 4:
          break
        tried.add(candidate['inputs'])
        if (candidate['inputs'] not in seen and
            owner(candidate['inputs']) == split):
          example = candidate
          break
      index += 1
    seen.add(example['inputs'])
    out.append(example)
  return out


def targets(task: str) -> Optional[Tuple[str, ...]]:
  """Every target string of a classification task; None for `qa` (spans)."""
  if task == 'negation':
    return tuple(corpus.target_form(s) for s in corpus.SENTIMENTS)
  if task in ('claim', 'outing'):
    return tuple(corpus.target_form(label) for label in BINARY_LABELS)
  if task == 'qa':
    return None
  raise ValueError(f'corpus_suite: unknown task {task!r}; expected one of '
                   f'{list(TASKS)}')


def majority_rate(task_examples: Sequence[Example]) -> float:
  """The chance level: the share (0-100) of the most common target."""
  if not task_examples:
    raise ValueError('corpus_suite.majority_rate: got no examples')
  counts: Dict[object, int] = {}
  for example in task_examples:
    counts[example['targets']] = counts.get(example['targets'], 0) + 1
  return 100.0 * max(counts.values()) / len(task_examples)
