"""An offline task suite: short synthetic reviews, several questions on each.

Every task reads the same kind of sentence, a one-line review such as

    on monday anna said the soup was really lovely.

and asks a different question about it:

| task        | question                       | labels                       |
|-------------|--------------------------------|------------------------------|
| `sentiment` | positive or negative review?   | negative, positive           |
| `topic`     | which kind of thing?           | food, music, science, sports |
| `weekend`   | said on a weekend day?         | no, yes                      |
| `speaker`   | who gave the review?           | 10 first names               |
| `object`    | which thing is reviewed?       | 32 nouns, 8 per topic        |

Each task is registered twice with seqio:

- `offline_<task>`: inputs start with the task prefix `"<task>: "` (model
  tuning on the mixture `offline_all` learns every task from its prefix);
- `taskless_offline_<task>`: the bare sentence. Without the prefix the
  question is ambiguous, so a frozen model needs a tuned prompt to say which
  task to answer.

The data are generated in pure Python from `random.Random(seed)`, so every
machine sees the same examples and nothing is downloaded. All tasks of a
split share one pool of sentences; the pools of the splits are disjoint, and
each label slot (polarity, noun, weekday class, speaker) is balanced and
drawn independently of the others, so no task's answer predicts another's.

Tokens use the suite's own SentencePiece model, `data/offline_spm.model`,
made by `python -m prompt_tuning.tasks.make_offline_vocab`.
"""
import dataclasses
import functools
import pathlib
import random
import types
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import seqio
import tensorflow as tf

from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors

VOCABULARY_PATH = pathlib.Path(__file__).parent / 'data' / 'offline_spm.model'
EXTRA_IDS = 100
DEFAULT_SEED = 20210418
SPLIT_SIZES = types.MappingProxyType(
    {'train': 4000, 'validation': 400, 'test': 400})
MIXTURE_NAME = 'offline_all'

# ------------------------------------------------------------------------------
# Word lists.
# ------------------------------------------------------------------------------
NAMES = ('anna', 'ben', 'carla', 'david', 'emma', 'felix', 'grace', 'hugo',
         'iris', 'jonas')
TOPICS = ('food', 'music', 'science', 'sports')
NOUNS = types.MappingProxyType({
    'food': ('soup', 'pizza', 'bread', 'salad', 'cake', 'curry', 'pasta',
             'sushi'),
    'music': ('concert', 'song', 'album', 'band', 'choir', 'opera', 'melody',
              'symphony'),
    'science': ('experiment', 'telescope', 'theory', 'microscope', 'study',
                'hypothesis', 'equation', 'laboratory'),
    'sports': ('match', 'race', 'game', 'tournament', 'team', 'goal',
               'marathon', 'league'),
})
POLARITIES = ('negative', 'positive')
ADJECTIVES = types.MappingProxyType({
    'negative': ('awful', 'terrible', 'boring', 'dreadful', 'poor', 'horrible',
                 'dull', 'disappointing', 'bad', 'weak'),
    'positive': ('great', 'wonderful', 'excellent', 'lovely', 'brilliant',
                 'superb', 'delightful', 'amazing', 'fantastic', 'pleasant'),
})
INTENSIFIERS = ('', 'very ', 'really ', 'quite ', 'truly ')
WEEKDAYS = ('monday', 'tuesday', 'wednesday', 'thursday', 'friday')
WEEKEND_DAYS = ('saturday', 'sunday')
# NOTE: no template contains ':' so that a prefix "<task>: " is never confused
# with the sentence, and every template names all four slots, so every
# question can be answered from every sentence.
TEMPLATES = (
    'on {day} {name} said the {noun} was {adj}.',
    '{name} found the {noun} {adj} on {day}.',
    '{name} thought the {noun} on {day} was {adj}.',
    'what a {adj} {noun}, {name} wrote on {day}.',
    'the {noun} was {adj}, {name} told us on {day}.',
    '{name} called the {day} {noun} {adj}.',
)


@dataclasses.dataclass(frozen=True)
class Review:
  """One generated sentence and the slots it was built from."""
  name: str
  day: str
  topic: str
  noun: str
  polarity: str
  adjective: str
  intensifier: str
  template: int

  @property
  def text(self) -> str:
    return TEMPLATES[self.template].format(
        day=self.day, name=self.name, noun=self.noun,
        adj=self.intensifier + self.adjective)


@dataclasses.dataclass(frozen=True)
class OfflineTask:
  """One question asked of every review.

  Attributes:
    name: short name; the seqio tasks are `offline_<name>` and
      `taskless_offline_<name>`, and the prefix is `"<name>: "`.
    labels: every possible target string; a target's class id is its index.
    label_fn: maps a `Review` to its target, one of `labels`.
  """
  name: str
  labels: Tuple[str, ...]
  label_fn: Callable[[Review], str]

  @property
  def prefix(self) -> str:
    return f'{self.name}: '


_ALL_NOUNS = tuple(n for t in TOPICS for n in NOUNS[t])

TASKS: Mapping[str, OfflineTask] = types.MappingProxyType({
    t.name: t for t in (
        OfflineTask('sentiment', POLARITIES, lambda r: r.polarity),
        OfflineTask('topic', TOPICS, lambda r: r.topic),
        OfflineTask('weekend', ('no', 'yes'),
                    lambda r: 'yes' if r.day in WEEKEND_DAYS else 'no'),
        OfflineTask('speaker', NAMES, lambda r: r.name),
        OfflineTask('object', _ALL_NOUNS, lambda r: r.noun),
    )
})
# The label classes per task, for class-label prompt initialisation and rank
# classification.
LABELS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType(
    {name: task.labels for name, task in TASKS.items()})


# ------------------------------------------------------------------------------
# Generation.
# ------------------------------------------------------------------------------
def _balanced(rng: random.Random, values: Sequence[str], n: int) -> List[str]:
  """`n` values, each of `values` used n // len(values) or one more times."""
  out = [values[i % len(values)] for i in range(n)]
  rng.shuffle(out)
  return out


def _split_reviews(rng: random.Random, n: int, seen: set) -> List[Review]:
  """Draws `n` reviews not in `seen` (and adds them to it)."""
  # Nouns interleaved by topic, so that cycling through them balances both the
  # nouns and the topics.
  nouns = [NOUNS[t][i] for i in range(len(NOUNS[TOPICS[0]])) for t in TOPICS]
  noun_topic = {n: t for t in TOPICS for n in NOUNS[t]}
  names = _balanced(rng, NAMES, n)
  nouns = _balanced(rng, nouns, n)
  polarities = _balanced(rng, POLARITIES, n)
  weekends = _balanced(rng, ('no', 'yes'), n)
  reviews = []
  for i in range(n):
    # Labels are fixed per index; only the free slots are redrawn when the
    # sentence was already drawn (in this split or an earlier one).
    for _ in range(1000):
      review = Review(
          name=names[i],
          day=rng.choice(WEEKEND_DAYS if weekends[i] == 'yes' else WEEKDAYS),
          topic=noun_topic[nouns[i]],
          noun=nouns[i],
          polarity=polarities[i],
          adjective=rng.choice(ADJECTIVES[polarities[i]]),
          intensifier=rng.choice(INTENSIFIERS),
          template=rng.randrange(len(TEMPLATES)))
      if review.text not in seen:
        break
    assert review.text not in seen, 'too few free slots to avoid duplicates'
    seen.add(review.text)
    reviews.append(review)
  return reviews


def generate_reviews(split: str, seed: int = DEFAULT_SEED) -> List[Review]:
  """The reviews of one split, shared by all tasks.

  The splits are drawn in the order of `SPLIT_SIZES` from one
  `random.Random(seed)`, so they are disjoint and reproducible anywhere.

  Args:
    split: one of `SPLIT_SIZES` ('train', 'validation', 'test').
    seed: generation seed.

  Returns:
    `SPLIT_SIZES[split]` reviews.

  Raises:
    ValueError: if `split` is unknown.
  """
  if split not in SPLIT_SIZES:
    raise ValueError(f'offline suite: unknown split {split!r}; expected one of '
                     f'{sorted(SPLIT_SIZES)}')
  rng = random.Random(seed)
  seen = set()
  for name, size in SPLIT_SIZES.items():
    reviews = _split_reviews(rng, size, seen)
    if name == split:
      return reviews
  raise AssertionError('unreachable')


def generate_examples(task: str, split: str, *, prefixed: bool = True,
                      seed: int = DEFAULT_SEED) -> List[Dict[str, str]]:
  """Text examples of one task and split.

  Args:
    task: a key of `TASKS`.
    split: one of `SPLIT_SIZES`.
    prefixed: whether inputs start with the task prefix `"<task>: "`.
    seed: generation seed.

  Returns:
    A list of `{'inputs': str, 'targets': str}`, in generation order.

  Raises:
    ValueError: if `task` or `split` is unknown.
  """
  if task not in TASKS:
    raise ValueError(f'offline suite: unknown task {task!r}; expected one of '
                     f'{sorted(TASKS)}')
  spec = TASKS[task]
  prefix = spec.prefix if prefixed else ''
  return [{'inputs': prefix + r.text, 'targets': spec.label_fn(r)}
          for r in generate_reviews(split, seed)]


def vocabulary_corpus(seed: int = DEFAULT_SEED) -> List[str]:
  """All text of the suite, in a fixed order, as often as it occurs.

  For every split and every task: the inputs with and without the prefix and
  the targets (so frequent words are frequent here too), then each label word
  once more, so that labels of tasks that never produce them still appear.
  The SentencePiece model is trained on exactly this list.
  """
  lines = []
  for split in SPLIT_SIZES:
    for review in generate_reviews(split, seed):
      for task in TASKS.values():
        lines += [task.prefix + review.text, review.text, task.label_fn(review)]
  lines.extend(label for task in TASKS.values() for label in task.labels)
  return lines


# ------------------------------------------------------------------------------
# seqio registration.
# ------------------------------------------------------------------------------
def vocabulary() -> seqio.SentencePieceVocabulary:
  """The suite's vocabulary: the offline SentencePiece model + 100 extra ids."""
  return seqio.SentencePieceVocabulary(str(VOCABULARY_PATH),
                                       extra_ids=EXTRA_IDS)


def _dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None,
                *, task: str, prefixed: bool) -> tf.data.Dataset:
  """seqio `FunctionDataSource` function.

  NOTE: `shuffle_files` and `seed` are seqio's shuffling arguments; the
  examples themselves always come from `DEFAULT_SEED`, and shuffling (when
  asked for) happens later in the seqio pipeline.
  """
  del shuffle_files, seed
  examples = generate_examples(task, split, prefixed=prefixed)
  return tf.data.Dataset.from_tensor_slices({
      'inputs': [e['inputs'] for e in examples],
      'targets': [e['targets'] for e in examples],
  })


def task_name(task: str, *, prefixed: bool = True) -> str:
  """The seqio name of an offline task: `[taskless_]offline_<task>`."""
  return f'offline_{task}' if prefixed else f'taskless_offline_{task}'


def _register() -> None:
  """Registers every task twice (prefixed, taskless) and `offline_all`."""
  vocab = vocabulary()
  features = {
      'inputs': seqio.Feature(vocabulary=vocab, add_eos=True),
      'targets': seqio.Feature(vocabulary=vocab, add_eos=True),
  }
  for name, spec in TASKS.items():
    for prefixed in (True, False):
      seqio.TaskRegistry.add(
          task_name(name, prefixed=prefixed),
          source=seqio.FunctionDataSource(
              functools.partial(_dataset_fn, task=name, prefixed=prefixed),
              splits=tuple(SPLIT_SIZES),
              num_input_examples=dict(SPLIT_SIZES)),
          preprocessors=[
              seqio.preprocessors.tokenize,
              seqio.preprocessors.append_eos_after_trim,
          ],
          output_features=features,
          postprocess_fn=postprocessors.string_label_to_class_id(spec.labels),
          metric_fns=[metrics.accuracy])
  seqio.MixtureRegistry.add(
      MIXTURE_NAME,
      [task_name(name) for name in TASKS],
      default_rate=seqio.mixing_rate_num_examples)


_register()
