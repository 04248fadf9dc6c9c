"""seqio tasks of the corpus suite (`corpus_suite.py`) and its mixture.

Registered on import, for task in `corpus_suite.TASKS` (qa, negation,
claim, outing) and N in `corpus_tasks.TRAIN_SIZES` (32, 128, 512, 2048):

| name                          | what                                                          |
|-------------------------------|---------------------------------------------------------------|
| `corpus_suite_<task>_n<N>`    | the task with N training examples                             |
| `corpus_suite_<task>`         | the same with `DEFAULT_TRAIN_SIZE` (2048)                     |
| `corpus_suite[_n<N>]`         | mixture of the four, equal rates; its headline score is `suite_average` |
| `..._sentinel`                | each of the above in the "+ sentinel" setting                 |
| `corpus_suite_<task>_design`  | the task with `INSTRUCTIONS[task]` before every input: the prompt-design baseline (a frozen model given a text instruction, no training) |

`register(prefix, knobs)` registers the same names under another prefix with
other difficulty knobs, for calibration.

Splits as the corpus tasks': 'train' (the first N examples built from the
corpus's `downstream_train` documents), 'validation' and 'test'
(`corpus_tasks.EVAL_SIZE` examples each). Training sets are nested.
Classification tasks are scored by accuracy after mapping the decoded
output to its class id; `qa` by SQuAD token F1 and exact match against the
answer span (`metrics.squad`, which ignores case, articles and the final
period). `suite_average` is the SuperGLUE-style headline: the mean over
tasks of each task's mean metric (`metrics.superglue_average`).

Feature lengths: with the default knobs every input is at most 123 corpus
tokens (measured on the three splits, 2,048 training examples; `qa`,
`claim` and `negation` reach 114 to 123, `outing` 74) and every target at
most 3 (`food market.`), so
`SEQUENCE_LENGTHS` is 128 / 8 with EOS, as for the corpus tasks. Harder knobs
(more distractors) make longer inputs; seqio truncates them.
"""
import functools
import hashlib
import re
import types
from typing import Any, Dict, List, Mapping, Optional, Tuple

import seqio
import tensorflow as tf

from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import corpus_suite
from prompt_tuning.tasks import corpus_tasks
from prompt_tuning.tasks import lm
from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors

MIXTURE = 'corpus_suite'
# Training examples of `corpus_suite_<task>`: the most registered, as the
# larger SuperGLUE tasks have thousands. Calibrated on the ladder (pilots in
# docs/tasks.md): with 128 the binary tasks stay at chance even for model
# tuning, which memorises its examples; with 2,048 `base` learns them.
DEFAULT_TRAIN_SIZE = 2048
SEQUENCE_LENGTHS = types.MappingProxyType({'inputs': 128, 'targets': 8})

# Every target string of each classification task, in class-id order.
TARGETS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    task: corpus_suite.targets(task) for task in corpus_suite.TASKS
    if task != 'qa'})
# The bare label words, for class-label prompt initialisation. `qa` answers
# are spans (37 names, days and places); its list is the 13 one-word answers
# that are not places (days, companions), so that it fits a 20-token prompt.
SUITE_LABELS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    **{task: tuple(t[:-1] for t in targets)
       for task, targets in TARGETS.items()},
    'qa': corpus.DAYS + corpus.COMPANIONS,
})
# Prompt design: the instruction a user would write before each input, in
# the corpus's words where it has them (its label words included).
INSTRUCTIONS: Mapping[str, str] = types.MappingProxyType({
    'qa': 'Answer the question with a word of the review.',
    'negation': 'Was the review positive or negative?',
    'claim': 'Does the review support the claim? Answer agreed or not.',
    'outing': 'Are the two reviews of the same outing, the same place on the '
              'same day? Answer agreed or not.',
})
DESIGN_SUFFIX = '_design'
# The metrics each task reports, all of which enter `suite_average`.
REPORTED_METRICS: Mapping[str, Tuple[str, ...]] = types.MappingProxyType({
    task: ('f1', 'exact_match') if task == 'qa' else ('accuracy',)
    for task in corpus_suite.TASKS})


def task_name(task: str, train_size: Optional[int] = None,
              prefix: str = MIXTURE) -> str:
  """The seqio name of a suite task: `<prefix>_<task>[_n<N>]`."""
  if train_size is None:
    return f'{prefix}_{task}'
  return f'{prefix}_{task}_n{train_size}'


def design_task_name(task: str, prefix: str = MIXTURE) -> str:
  """The seqio name of a suite task with its instruction before each input
  (`INSTRUCTIONS`): `<prefix>_<task>_design`."""
  return task_name(task, prefix=prefix) + DESIGN_SUFFIX


def mixture_name(train_size: Optional[int] = None,
                 prefix: str = MIXTURE) -> str:
  """The seqio name of the suite's mixture: `<prefix>[_n<N>]`."""
  return prefix if train_size is None else f'{prefix}_n{train_size}'


@functools.lru_cache(maxsize=None)
def _examples(task: str, split: str, n: int,
              knobs: corpus_suite.Knobs = corpus_suite.DEFAULT_KNOBS
             ) -> Tuple[Dict[str, Any], ...]:
  return tuple(corpus_suite.examples(task, corpus_tasks.SPLITS[split], n,
                                     knobs=knobs))


def _suite_fn(split: str, shuffle_files: bool, seed: Optional[int] = None, *,
              task: str, train_size: int, knobs: corpus_suite.Knobs,
              name: str, instruction: str = '') -> tf.data.Dataset:
  """seqio `FunctionDataSource` function of a suite task.

  NOTE: as for the corpus tasks, the examples always come from
  `corpus.DEFAULT_SEED`; `shuffle_files` and `seed` are not used here.
  """
  del shuffle_files, seed
  if split not in corpus_tasks.SPLITS:
    raise ValueError(f'{name}: unknown split {split!r}; expected one of '
                     f'{list(corpus_tasks.SPLITS)}')
  n = train_size if split == 'train' else corpus_tasks.EVAL_SIZE
  examples = _examples(task, split, n, knobs)
  features = {'inputs': [f'{instruction} {e["inputs"]}' if instruction
                         else e['inputs'] for e in examples],
              'targets': [e['targets'] for e in examples]}
  if task == 'qa':
    features['answers'] = [list(e['answers']) for e in examples]
  return tf.data.Dataset.from_tensor_slices(features)


def suite_average(all_metrics: Mapping[str, Mapping[str, Any]],
                  prefix: str = MIXTURE) -> float:
  """The suite's headline score, as SuperGLUE's: mean over the four tasks of
  each task's mean reported metric.

  Args:
    all_metrics: {task name: {metric: value}}, e.g. an evaluation of the
      `corpus_suite` mixture; names may carry a training size or the
      sentinel suffix. Other tasks and metrics are ignored.
    prefix: the suite's name prefix (see `register`).

  Returns:
    The score on 0-100.

  Raises:
    ValueError: if a suite task or one of its reported metrics is missing.
  """
  scores = {}
  for task in corpus_suite.TASKS:
    base = task_name(task, prefix=prefix)
    names = [n for n in all_metrics
             if n == base or re.fullmatch(re.escape(base) + r'(_n\d+)?'
                                          r'(_sentinel)?', n)]
    if len(names) != 1:
      raise ValueError(f'suite_average: expected one evaluation of '
                       f'{base!r}, got {names} among {sorted(all_metrics)}')
    missing = [m for m in REPORTED_METRICS[task]
               if m not in all_metrics[names[0]]]
    if missing:
      raise ValueError(f'suite_average: {names[0]} lacks {missing}; it has '
                       f'{sorted(all_metrics[names[0]])}')
    scores[task] = {m: all_metrics[names[0]][m]
                    for m in REPORTED_METRICS[task]}
  return metrics.superglue_average(scores)


def chance_levels(split: str = 'validation') -> Dict[str, float]:
  """Each task's chance level: its majority-target rate (0-100) on `split`."""
  return {task: corpus_suite.majority_rate(
      _examples(task, split, corpus_tasks.EVAL_SIZE))
          for task in corpus_suite.TASKS}


def register(prefix: str = MIXTURE,
             knobs: corpus_suite.Knobs = corpus_suite.DEFAULT_KNOBS
            ) -> List[str]:
  """Registers the suite's tasks and mixtures under `prefix` with `knobs`.

  Importing this module registers the defaults ('corpus_suite'); calibrating
  difficulty registers variants, e.g.

    corpus_suite_tasks.register('corpus_suite_easy',
                                corpus_suite.Knobs(qa_distractors=0))

  in a module that a gin file imports, then trains on
  'corpus_suite_easy_qa'.

  Returns:
    The registered mixture names (`<prefix>[_n<N>]`, without sentinels).
  """
  features = corpus_tasks.output_features()

  def add(name, task, size, instruction=''):
    if task == 'qa':
      postprocess_fn, metric_fns = postprocessors.squad, [metrics.squad]
    else:
      postprocess_fn = postprocessors.string_label_to_class_id(TARGETS[task])
      metric_fns = [metrics.accuracy]
    corpus_tasks.add_downstream_task(
        name,
        functools.partial(_suite_fn, task=task, train_size=size, knobs=knobs,
                          name=name, instruction=instruction),
        size, features, postprocess_fn, metric_fns)

  for task in corpus_suite.TASKS:
    add(design_task_name(task, prefix), task,
        DEFAULT_TRAIN_SIZE, INSTRUCTIONS[task])
  mixtures = []
  for train_size in corpus_tasks.TRAIN_SIZES + (None,):
    size = DEFAULT_TRAIN_SIZE if train_size is None else train_size
    for task in corpus_suite.TASKS:
      add(task_name(task, train_size, prefix), task, size)
    mixtures.append(mixture_name(train_size, prefix))
    seqio.MixtureRegistry.add(
        mixtures[-1],
        [task_name(task, train_size, prefix) for task in corpus_suite.TASKS],
        default_rate=1.0)
    lm.add_sentinel_variant(mixtures[-1])
  return mixtures


def knobs_prefix(knobs: corpus_suite.KnobPairs) -> str:
  """The prefix of the suite with `knobs` (as `corpus_suite.parse_knobs`
  gives them), a name made from them: `corpus_suite_knobs_<hash>`.
  Registers its tasks on first use, so a calibration pilot's names are the
  same in every command that takes `--knobs`."""
  digest = hashlib.sha256(repr(sorted(knobs)).encode()).hexdigest()
  prefix = f'{MIXTURE}_knobs_{digest[:8]}'
  if prefix not in seqio.MixtureRegistry.names():
    register(prefix, corpus_suite.Knobs(**dict(knobs)))
  return prefix


def with_prefix(name: str, prefix: str) -> str:
  """The registered suite task or mixture `name` (`corpus_suite...`), as
  named under `prefix` (e.g. `knobs_prefix`'s).

  Raises:
    ValueError: `name` is not one of the default suite's names.
  """
  registered = seqio.TaskRegistry.names() | seqio.MixtureRegistry.names()
  renamed = prefix + name[len(MIXTURE):]
  # A variant's own name (`..._knobs_<hash>_...`) renames to nothing registered.
  if (not re.fullmatch(f'{MIXTURE}(_.*)?', name) or name not in registered
      or renamed not in registered):
    raise ValueError(f'{name!r} is not a task or mixture of the corpus suite '
                     f'({MIXTURE}_<task>[_n<N>], <task> one of '
                     f'{list(corpus_suite.TASKS)}); only those take knobs')
  return renamed


register()
