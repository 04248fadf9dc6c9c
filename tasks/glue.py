"""GLUE tasks (tfds `glue/<config>`) in T5's text format, and QQP <-> MRPC.

Registered on import, for each TFDS version (tag v200 = 2.0.0, and v002 =
1.0.0, the version of the paper's paraphrase-transfer experiments; the two
differ only in where QQP was downloaded from):

  glue_{name}_{tag}            "<task> key1: value1 ..." (T5's inputs)
  taskless_glue_{name}_{tag}   the same without the task token

for name in cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte. MNLI's seqio split
'validation' (and 'test') is the matched one; 'validation_matched',
'validation_mismatched', 'test_matched', 'test_mismatched' are there too.
STS-B is T5's 26-way regression cast (`preprocessors.format_stsb`).

Paraphrase transfer (the paper's Table 2). The prompt can only transfer if
both datasets look alike, so QQP is recast in MRPC's taskless format:
"sentence1: ... sentence2: ..." -> not_equivalent / equivalent (QQP's
question1/question2 renamed, its not_duplicate/duplicate class ids kept):

  taskless_glue_qqp_as_mrpc_{tag}    QQP in that format, every split
  taskless_glue_mrpc_from_qqp_{tag}  MRPC validation (eval only)
  taskless_glue_qqp_from_mrpc_{tag}  QQP-as-MRPC validation (eval only)
  taskless_glue_qqp_to_mrpc_{tag}    mixture: train on QQP; evaluate on QQP
                                     (checkpoint selection) and MRPC
  taskless_glue_mrpc_to_qqp_{tag}    mixture: train on MRPC; evaluate on
                                     MRPC and QQP
"""
import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import seqio

from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors
from prompt_tuning.tasks import preprocessors
from prompt_tuning.tasks import utils
from prompt_tuning.tasks import vocab

VERSIONS = {'v200': '2.0.0', 'v002': '1.0.0'}  # Name tag -> TFDS version.
PREFIXES = ('', utils.TASKLESS_PREFIX)
_MNLI_SPLITS = {
    'train': 'train',
    'validation': 'validation_matched',
    'validation_matched': 'validation_matched',
    'validation_mismatched': 'validation_mismatched',
    'test': 'test_matched',
    'test_matched': 'test_matched',
    'test_mismatched': 'test_mismatched',
}


@dataclasses.dataclass(frozen=True)
class _Glue:
  config: str
  feature_names: tuple[str, ...]  # Text fields in input order (T5's).
  label_names: Optional[tuple[str, ...]]  # None: STS-B's regression.
  metric_fns: tuple[Callable[..., Any], ...]
  splits: Optional[Mapping[str, str]] = None  # None: every tfds split.


GLUE_TASKS = {
    t.config: t for t in (
        _Glue('cola', ('sentence',), ('unacceptable', 'acceptable'),
              (metrics.matthews_corrcoef,)),
        _Glue('sst2', ('sentence',), ('negative', 'positive'),
              (metrics.accuracy,)),
        _Glue('mrpc', ('sentence1', 'sentence2'),
              ('not_equivalent', 'equivalent'), (metrics.f1_and_accuracy,)),
        _Glue('qqp', ('question1', 'question2'), ('not_duplicate', 'duplicate'),
              (metrics.f1_and_accuracy,)),
        _Glue('stsb', ('sentence1', 'sentence2'), None,
              (metrics.pearson_and_spearman,)),
        _Glue('mnli', ('hypothesis', 'premise'),
              ('entailment', 'neutral', 'contradiction'), (metrics.accuracy,),
              splits=_MNLI_SPLITS),
        _Glue('qnli', ('question', 'sentence'),
              ('entailment', 'not_entailment'), (metrics.accuracy,)),
        _Glue('rte', ('sentence1', 'sentence2'),
              ('entailment', 'not_entailment'), (metrics.accuracy,)),
    )
}

# QQP recast as MRPC: {MRPC field: QQP field}.
QQP_AS_MRPC_FIELDS = {'sentence1': 'question1', 'sentence2': 'question2'}


def _tfds_name(config: str, tag: str) -> str:
  return f'glue/{config}:{VERSIONS[tag]}'


def label_formatting(benchmark_name: Optional[str],
                     label_names: Sequence[str],
                     feature_names: Sequence[str]):
  """T5's cast of a classification task: the formatter that writes
  `<benchmark> <feature>: <text> ...` -> label name, and the postprocessor
  that maps a predicted label name back to its class id."""
  formatter = functools.partial(
      preprocessors.format_glue, benchmark_name=benchmark_name,
      label_names=label_names, feature_names=feature_names)
  return formatter, postprocessors.string_label_to_class_id(
      label_classes=label_names)


def _add_glue(prefix: str, tag: str, task: _Glue) -> str:
  """Registers one GLUE task; returns its name."""
  name = f'{prefix}glue_{task.config}_{tag}'
  token = utils.task_token(prefix, task.config)
  if task.label_names is None:
    formatter = functools.partial(preprocessors.format_stsb,
                                  benchmark_name=token)
    postprocess_fn = postprocessors.string_to_float()
  else:
    formatter, postprocess_fn = label_formatting(
        token, task.label_names, task.feature_names)
  utils.add_tfds_task(
      name,
      tfds_name=_tfds_name(task.config, tag),
      fields=task.feature_names + ('label', 'idx'),
      splits=task.splits,
      text_preprocessors=[formatter],
      output_features=vocab.T5_OUTPUT_FEATURES,
      postprocess_fn=postprocess_fn,
      metric_fns=task.metric_fns)
  return name


def _add_paraphrase_transfer(tag: str) -> None:
  """Registers the QQP <-> MRPC zero-shot transfer tasks and mixtures."""
  mrpc = GLUE_TASKS['mrpc']
  prefix = utils.TASKLESS_PREFIX
  qqp_as_mrpc = [
      functools.partial(seqio.preprocessors.rekey,
                        key_map={**QQP_AS_MRPC_FIELDS, 'label': 'label',
                                 'idx': 'idx'}),
      functools.partial(preprocessors.format_glue, benchmark_name=None,
                        label_names=mrpc.label_names,
                        feature_names=mrpc.feature_names),
  ]
  mrpc_format = qqp_as_mrpc[1:]
  common = dict(
      fields=tuple(QQP_AS_MRPC_FIELDS.values()) + ('label', 'idx'),
      output_features=vocab.T5_OUTPUT_FEATURES,
      postprocess_fn=postprocessors.string_label_to_class_id(
          label_classes=mrpc.label_names),
      metric_fns=mrpc.metric_fns)
  utils.add_tfds_task(f'{prefix}glue_qqp_as_mrpc_{tag}',
                      tfds_name=_tfds_name('qqp', tag),
                      text_preprocessors=qqp_as_mrpc, **common)
  utils.add_tfds_task(f'{prefix}glue_qqp_from_mrpc_{tag}',
                      tfds_name=_tfds_name('qqp', tag), splits=('validation',),
                      text_preprocessors=qqp_as_mrpc, **common)
  common['fields'] = mrpc.feature_names + ('label', 'idx')
  utils.add_tfds_task(f'{prefix}glue_mrpc_from_qqp_{tag}',
                      tfds_name=_tfds_name('mrpc', tag), splits=('validation',),
                      text_preprocessors=mrpc_format, **common)
  seqio.MixtureRegistry.add(
      f'{prefix}glue_qqp_to_mrpc_{tag}',
      [f'{prefix}glue_qqp_as_mrpc_{tag}', f'{prefix}glue_mrpc_from_qqp_{tag}'],
      default_rate=1.0)
  seqio.MixtureRegistry.add(
      f'{prefix}glue_mrpc_to_qqp_{tag}',
      [f'{prefix}glue_mrpc_{tag}', f'{prefix}glue_qqp_from_mrpc_{tag}'],
      default_rate=1.0)


def _register() -> None:
  for tag in VERSIONS:
    for prefix in PREFIXES:
      for task in GLUE_TASKS.values():
        _add_glue(prefix, tag, task)
    _add_paraphrase_transfer(tag)


_register()
