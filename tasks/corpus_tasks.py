"""seqio tasks on the synthetic corpus (`corpus.py`): pretraining objectives
and the downstream tasks they never present.

Registered on import:

| name                              | what                                                          |
|-----------------------------------|---------------------------------------------------------------|
| `corpus_span_corruption`          | T5's span corruption over `pretraining_texts(20000)`          |
| `corpus_prefix_lm`                | the prefix-LM ("LM adaptation") objective over the same texts |
| `..._unrevealed`                  | either objective over the same documents without their revealing statements (an ablation: what pretraining that never states a label does to prompt tuning) |
| `corpus_<task>_n<N>`              | downstream `task` (topic, sentiment, author), N training examples, N in `TRAIN_SIZES` |
| `corpus_<task>`                   | the same with `DEFAULT_TRAIN_SIZE` training examples          |
| `corpus_<task>[_n<N>]_sentinel`   | the paper's "+ sentinel" setting: `<extra_id_0>` before each target |

The pretraining tasks have one split, 'train'; infinite training is the
trainer's business (`num_epochs=None`). Like T5's C4 tasks they tokenize the
text into 'targets', then run the objective (`lm_preprocessors`) and append
EOS to both features.

The downstream tasks have 'train' (the first N documents of the corpus's
`downstream_train` split), 'validation' and 'test' (`EVAL_SIZE` documents of
`downstream_validation` / `downstream_test`). Inputs are document bodies
without revealing statements, targets the label word with its final period
(`'food.'`), scored by exact-match accuracy after mapping the decoded output
to its class id. The training sets are nested: `corpus_topic_n32`'s examples
are the first 32 of `corpus_topic_n128`'s, and every task asks about the same
documents.

NOTE: the main job trains on `corpus_topic_n32`, the size chosen from the
measured curve of accuracy against training examples (`python -m
prompt_tuning.miniature`, experiment `data_size`, model `small`, 100 steps):
the architecture trained from scratch reached 69% on 32 examples but 99% on
128, while the prompted LM-adapted model reached 100% on both; so only the
smaller set shows what pretraining brings. `DEFAULT_TRAIN_SIZE` (128) is the
size of the unsuffixed `corpus_<task>` names.

Feature lengths (`SEQUENCE_LENGTHS`) come from measured token counts with the
corpus vocabulary (seed `corpus.DEFAULT_SEED`): pretraining documents have 37
to 83 words, 1.17 pieces per word, 44 to 96 pieces (median 65); downstream
inputs have 43 to 78 pieces; every target string is 2 pieces ('food' + '.').
So 128 input tokens hold any document with EOS; span corruption on 128 input
tokens corrupts segments of 141 raw tokens and gives 29-token targets.

Label strings (`CORPUS_LABELS[task]`) are the bare label words ('food',
'positive', 'Anna'), for class-label prompt initialisation (the paper embeds
each label's tokens; the period would add the same '.' embedding to every
class). Rank classification and the postprocessor compare whole target
strings, so they use `TARGETS[task]`, the '.'-suffixed form the tasks emit.
"""
import functools
import types
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import seqio
import tensorflow as tf

from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import lm
from prompt_tuning.tasks import lm_preprocessors
from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors
from prompt_tuning.tasks import utils

PRETRAIN_SIZE = 20_000
TRAIN_SIZES = (32, 128, 512, 2048)
DEFAULT_TRAIN_SIZE = 128
EVAL_SIZE = 400
SPAN_CORRUPTION_TASK = 'corpus_span_corruption'
PREFIX_LM_TASK = 'corpus_prefix_lm'
# The pretraining tasks' variant over documents that never reveal a label.
UNREVEALED_SUFFIX = '_unrevealed'
# The task split name -> the corpus split it reads.
SPLITS = types.MappingProxyType({
    'train': 'downstream_train',
    'validation': 'downstream_validation',
    'test': 'downstream_test',
})

# Feature lengths that hold every example (see the module docstring).
SEQUENCE_LENGTHS: Mapping[str, Mapping[str, int]] = types.MappingProxyType({
    SPAN_CORRUPTION_TASK: types.MappingProxyType(
        {'inputs': 128, 'targets': 32}),
    PREFIX_LM_TASK: types.MappingProxyType({'inputs': 128, 'targets': 128}),
    'downstream': types.MappingProxyType({'inputs': 128, 'targets': 8}),
})

# Every target string of each downstream task, in class-id order.
TARGETS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType(
    {task: targets for task, (_, targets) in corpus.DOWNSTREAM_TASKS.items()})
# The bare label words, for class-label prompt initialisation.
CORPUS_LABELS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    task: corpus.ATTRIBUTE_VALUES[attribute]
    for task, (attribute, _) in corpus.DOWNSTREAM_TASKS.items()})


def task_name(task: str, train_size: Optional[int] = None) -> str:
  """The seqio name of a downstream task: `corpus_<task>[_n<N>]`."""
  if train_size is None:
    return f'corpus_{task}'
  return f'corpus_{task}_n{train_size}'


# ------------------------------------------------------------------------------
# Sources.
# ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _pretraining_texts(reveal_prob: float) -> Tuple[str, ...]:
  return tuple(corpus.pretraining_texts(PRETRAIN_SIZE,
                                        reveal_prob=reveal_prob))


def _pretrain_fn(split: str, shuffle_files: bool,
                 seed: Optional[int] = None, *,
                 reveal_prob: float = corpus.DEFAULT_REVEAL_PROB
                ) -> tf.data.Dataset:
  """seqio `FunctionDataSource` function of the pretraining tasks.

  NOTE: `shuffle_files` and `seed` are seqio's shuffling arguments; the texts
  always come from `corpus.DEFAULT_SEED`, and the objectives draw their random
  spans and split points from seqio's seeds later in the pipeline.
  """
  del shuffle_files, seed
  if split != 'train':
    raise ValueError(f'{SPAN_CORRUPTION_TASK}/{PREFIX_LM_TASK}: split '
                     f"{split!r}; expected 'train'")
  return tf.data.Dataset.from_tensor_slices(
      {'targets': list(_pretraining_texts(reveal_prob))})


@functools.lru_cache(maxsize=None)
def _documents(split: str, n: int) -> Tuple[corpus.Document, ...]:
  return tuple(corpus.generate_documents(SPLITS[split], n))


def _examples(task: str, split: str, n: int) -> Tuple[Dict[str, str], ...]:
  """`corpus.downstream_examples(task, SPLITS[split], n)`, from documents
  generated once for all tasks."""
  attribute, _ = corpus.DOWNSTREAM_TASKS[task]
  return tuple({'inputs': d.body,
                'targets': corpus.target_form(d.label(attribute))}
               for d in _documents(split, n))


def _downstream_fn(split: str, shuffle_files: bool, seed: Optional[int] = None,
                   *, task: str, train_size: int) -> tf.data.Dataset:
  """seqio `FunctionDataSource` function of a downstream task.

  NOTE: as for `_pretrain_fn`, the examples always come from
  `corpus.DEFAULT_SEED`; `shuffle_files` and `seed` are not used here.
  """
  del shuffle_files, seed
  if split not in SPLITS:
    raise ValueError(f'{task_name(task, train_size)}: unknown split '
                     f'{split!r}; expected one of {list(SPLITS)}')
  n = train_size if split == 'train' else EVAL_SIZE
  # The first n examples of a split do not depend on how many are drawn, so
  # every training size slices the largest one.
  size = max(TRAIN_SIZES + (train_size,)) if split == 'train' else n
  examples = _examples(task, split, size)[:n]
  return tf.data.Dataset.from_tensor_slices({
      'inputs': [e['inputs'] for e in examples],
      'targets': [e['targets'] for e in examples],
  })


# ------------------------------------------------------------------------------
# Registration.
# ------------------------------------------------------------------------------
def output_features() -> Dict[str, seqio.Feature]:
  """inputs/targets with the corpus vocabulary, EOS on both (as T5)."""
  vocab = corpus.vocabulary()
  return {
      'inputs': seqio.Feature(vocabulary=vocab, add_eos=True),
      'targets': seqio.Feature(vocabulary=vocab, add_eos=True),
  }


def add_downstream_task(name: str, examples_fn: Callable[..., tf.data.Dataset],
                        train_size: int, features: Mapping[str, seqio.Feature],
                        postprocess_fn: Callable[..., Any],
                        metric_fns: Sequence[Callable[..., Any]]) -> None:
  """Registers a downstream task on the corpus and its + sentinel variant:
  `examples_fn` (a `FunctionDataSource` function) gives `train_size`
  training and `EVAL_SIZE` validation and test examples, tokenized with
  `features` and nothing else done to them."""
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          examples_fn, splits=tuple(SPLITS),
          num_input_examples={'train': train_size, 'validation': EVAL_SIZE,
                              'test': EVAL_SIZE}),
      preprocessors=utils.t5_preprocessors(),
      output_features=features,
      postprocess_fn=postprocess_fn,
      metric_fns=list(metric_fns))
  lm.add_sentinel_variant(name)


def _register() -> None:
  """Registers both pretraining tasks and every downstream task."""
  features = output_features()
  for suffix, reveal_prob in (('', corpus.DEFAULT_REVEAL_PROB),
                              (UNREVEALED_SUFFIX, 0.0)):
    pretrain_source = seqio.FunctionDataSource(
        functools.partial(_pretrain_fn, reveal_prob=reveal_prob),
        splits=('train',), num_input_examples={'train': PRETRAIN_SIZE})
    for name, objective in ((SPAN_CORRUPTION_TASK,
                             lm_preprocessors.span_corruption),
                            (PREFIX_LM_TASK, lm_preprocessors.prefix_lm)):
      seqio.TaskRegistry.add(
          name + suffix,
          source=pretrain_source,
          preprocessors=utils.t5_preprocessors(
              token_preprocessors=[objective]),
          output_features=features,
          metric_fns=[])
  for task in corpus.DOWNSTREAM_TASKS:
    for train_size in TRAIN_SIZES + (None,):
      size = DEFAULT_TRAIN_SIZE if train_size is None else train_size
      add_downstream_task(
          task_name(task, train_size),
          functools.partial(_downstream_fn, task=task, train_size=size),
          size, features,
          postprocessors.string_label_to_class_id(TARGETS[task]),
          [metrics.accuracy])

_register()
