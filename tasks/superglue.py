"""SuperGLUE tasks (tfds `super_glue/<config>:1.0.2`) in T5's text format.

Registered on import, each in two variants:

  super_glue_{name}_v102           "<task> key1: value1 ..." (T5's inputs)
  taskless_super_glue_{name}_v102  the same inputs without the task token;
                                   what prompt tuning trains on

for name in boolq, cb, copa, multirc, rte, wic, axb, axg (AX-b and AX-g: the
`test` split only, cast as RTE, to evaluate an RTE model), plus

  {prefix}super_glue_record_v102   mixture: `_train` (one example per gold
                                   answer, T5's cast) + `_eval` (validation
                                   and test, one example per query)
  {prefix}super_glue_wsc_v102      mixture: `_simple_train` (WSC as T5's
                                   "simple" referent generation, correct
                                   referents only) + `_simple_eval`
  {prefix}super_glue_v102          mixture of the eight tasks, rates = number
                                   of training examples (T5's)

with prefix '' or 'taskless_'. Training on a mixture reads only the tasks
with a train split; evaluating reads the ones with a validation split, so
each name above is one training run and one evaluation run.

Label strings are the tfds class names: boolq, multirc, wic False/True; cb
entailment/contradiction/neutral; copa choice1/choice2; rte, axb, axg
entailment/not_entailment.
"""
import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional

import seqio

from prompt_tuning.tasks import glue
from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors
from prompt_tuning.tasks import preprocessors
from prompt_tuning.tasks import utils
from prompt_tuning.tasks import vocab

TFDS_VERSION = '1.0.2'
VERSION_TAG = 'v102'
# T5's inputs, and the same without the task token.
PREFIXES = ('', utils.TASKLESS_PREFIX)


@dataclasses.dataclass(frozen=True)
class _Classification:
  """A SuperGLUE config cast by `preprocessors.format_glue`."""
  config: str
  benchmark_name: str  # The leading task token.
  feature_names: tuple[str, ...]  # Text fields in input order (T5's).
  label_names: tuple[str, ...]
  metric_fns: tuple[Callable[..., Any], ...]
  splits: Optional[tuple[str, ...]] = None  # None: every tfds split.
  # Fields renamed before formatting, {new name: tfds field}.
  rename: Optional[Mapping[str, str]] = None


_BOOL = ('False', 'True')
_NLI2 = ('entailment', 'not_entailment')

CLASSIFICATION_TASKS = {
    t.config: t for t in (
        _Classification('boolq', 'boolq', ('passage', 'question'), _BOOL,
                        (metrics.accuracy,)),
        _Classification('cb', 'cb', ('hypothesis', 'premise'),
                        ('entailment', 'contradiction', 'neutral'),
                        (metrics.accuracy,
                         metrics.mean_multiclass_f1(num_classes=3))),
        _Classification('copa', 'copa',
                        ('choice1', 'choice2', 'premise', 'question'),
                        ('choice1', 'choice2'), (metrics.accuracy,)),
        _Classification('multirc', 'multirc',
                        ('question', 'answer', 'paragraph'), _BOOL,
                        (metrics.multirc_metrics,)),
        _Classification('rte', 'rte', ('hypothesis', 'premise'), _NLI2,
                        (metrics.accuracy,)),
        _Classification('wic', 'wic', ('sentence1', 'sentence2', 'word'),
                        _BOOL, (metrics.accuracy,)),
        # The diagnostics are cast as RTE; AX-b's sentence1/sentence2 are
        # renamed to RTE's premise/hypothesis first, as in T5.
        _Classification('axb', 'rte', ('hypothesis', 'premise'), _NLI2,
                        (metrics.matthews_corrcoef,), splits=('test',),
                        rename={'premise': 'sentence1',
                                'hypothesis': 'sentence2'}),
        _Classification('axg', 'rte', ('hypothesis', 'premise'), _NLI2,
                        (metrics.accuracy,), splits=('test',)),
    )
}

# Training examples per task (T5's mixing rates); ReCoRD counts queries, WSC
# the records with a correct referent. Evaluation-only parts reuse them.
MIXING_RATES = {
    'boolq': 9_427., 'cb': 250., 'copa': 400., 'multirc': 27_243.,
    'record': 138_854., 'rte': 2_490., 'wic': 5_428., 'wsc': 259.,
}
MIXTURE_TASKS = tuple(MIXING_RATES)  # The eight tasks; not axb, axg.

_RECORD_FIELDS = ('passage', 'query', 'entities', 'answers', 'idx/passage',
                  'idx/query')
_WSC_FIELDS = ('text', 'span1_text', 'span2_index', 'span2_text', 'label',
               'idx')
# WSC's determiners, ignored when comparing a predicted referent.
_DETERMINERS = frozenset((
    'a', 'an', 'few', 'her', 'his', 'each', 'every', 'many', 'much', 'my',
    'our', 'some', 'that', 'the', 'their', 'these', 'this', 'those', 'which',
    'whose', 'your'))


def _text(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _clean_referent(text: Any) -> str:
  words = _text(text).strip().lower().split(' ')
  return ' '.join(w for w in words if w not in _DETERMINERS)


def wsc_simple_postprocess(output: Any,
                           example: Optional[Mapping[str, Any]] = None,
                           is_target: bool = False) -> int:
  """WSC "simple": 1 if the generated referent is span1, else 0 (T5's rule).

  Case and determiners are ignored; either word set may contain the other
  ("fuzzy bunny" matches "bunny"), unless exactly one side has a possessive
  apostrophe ("Bob" does not match "Bob's hat").

  Args:
    output: the decoded model output or target.
    example: the preprocessed example: 'label' and 'targets_pretokenized'
      (span1, the candidate referent).
    is_target: whether `output` is the target.

  Returns:
    For targets the record's label (0/1, -1 unlabeled); for predictions
    whether the model named the candidate (1/0), -1 for an empty output.
  """
  if example is None:
    raise ValueError('wsc_simple_postprocess needs the example (its label and '
                     'targets_pretokenized); got example=None.')
  if is_target:
    return int(example['label'])
  prediction = _clean_referent(output)
  if not prediction:
    return -1
  referent = _clean_referent(example['targets_pretokenized'])
  if ("'" in prediction) != ("'" in referent):
    return 0
  predicted, candidate = set(prediction.split(' ')), set(referent.split(' '))
  return int(predicted <= candidate or candidate <= predicted)


def _tfds_name(config: str) -> str:
  return f'super_glue/{config}:{TFDS_VERSION}'


def _add_classification(prefix: str, task: _Classification) -> str:
  """Registers one GLUE-style SuperGLUE task; returns its name."""
  name = f'{prefix}super_glue_{task.config}_{VERSION_TAG}'
  benchmark = utils.task_token(prefix, task.benchmark_name)
  renamed = ([functools.partial(seqio.preprocessors.rekey,
                                key_map={**task.rename, 'label': 'label',
                                         'idx': 'idx'})]
             if task.rename else [])
  if task.config == 'multirc':
    formatter = functools.partial(
        preprocessors.format_multirc, benchmark_name=benchmark,
        label_names=task.label_names)
    postprocess_fn = postprocessors.multirc(label_classes=task.label_names)
    fields = task.feature_names + ('label', 'idx/paragraph', 'idx/question',
                                   'idx/answer')
  else:
    formatter, postprocess_fn = glue.label_formatting(
        benchmark, task.label_names, task.feature_names)
    tfds_fields = [(task.rename or {}).get(f, f) for f in task.feature_names]
    fields = tuple(tfds_fields) + ('label', 'idx')
  utils.add_tfds_task(
      name,
      tfds_name=_tfds_name(task.config),
      fields=fields,
      splits=task.splits,
      text_preprocessors=renamed + [formatter],
      output_features=vocab.T5_OUTPUT_FEATURES,
      postprocess_fn=postprocess_fn,
      metric_fns=task.metric_fns)
  return name


def _add_train_eval(name: str, suffixes: tuple[str, str], tfds_config: str,
                    fields, text_preprocessor, postprocess_fn,
                    metric_fn) -> str:
  """Registers a task's train and eval variants and their mixture `name`.

  The train variant (split 'train') is formatted for training and scored by
  nothing; the eval variant (validation and test) by `metric_fn`.
  `text_preprocessor(train)` gives the formatter of each variant.
  """
  for suffix, splits, train in ((suffixes[0], ('train',), True),
                                (suffixes[1], ('validation', 'test'), False)):
    utils.add_tfds_task(
        name + suffix,
        tfds_name=_tfds_name(tfds_config),
        fields=fields,
        splits=splits,
        text_preprocessors=[text_preprocessor(train)],
        output_features=vocab.T5_OUTPUT_FEATURES,
        postprocess_fn=None if train else postprocess_fn,
        metric_fns=() if train else (metric_fn,))
  seqio.MixtureRegistry.add(name, [name + s for s in suffixes],
                            default_rate=1.0)
  return name


def _add_record(prefix: str) -> str:
  """Registers ReCoRD's train and eval tasks (one example per answer for
  training) and their mixture."""
  return _add_train_eval(
      f'{prefix}super_glue_record_{VERSION_TAG}', ('_train', '_eval'),
      'record', _RECORD_FIELDS,
      lambda train: functools.partial(
          preprocessors.format_record,
          benchmark_name=utils.task_token(prefix, 'record'),
          one_example_per_answer=train),
      postprocessors.record, metrics.record_metrics)


def _add_wsc(prefix: str) -> str:
  """Registers WSC's simple train and eval tasks (correct referents only for
  training) and their mixture."""
  return _add_train_eval(
      f'{prefix}super_glue_wsc_{VERSION_TAG}',
      ('_simple_train', '_simple_eval'), 'wsc.fixed', _WSC_FIELDS,
      lambda train: functools.partial(
          preprocessors.format_wsc_simple,
          prefix=utils.task_token(prefix, 'wsc:'),
          correct_referent_only=train),
      wsc_simple_postprocess, metrics.accuracy)


def _register() -> None:
  for prefix in PREFIXES:
    for task in CLASSIFICATION_TASKS.values():
      _add_classification(prefix, task)
    _add_record(prefix)
    _add_wsc(prefix)
    components = []
    for config in MIXTURE_TASKS:
      base = f'{prefix}super_glue_{config}_{VERSION_TAG}'
      parts = {'record': [base + '_train', base + '_eval'],
               'wsc': [base + '_simple_train', base + '_simple_eval']}
      components += [(n, MIXING_RATES[config])
                     for n in parts.get(config, [base])]
    seqio.MixtureRegistry.add(f'{prefix}super_glue_{VERSION_TAG}', components)


_register()
