"""Language-modeling tasks on C4, and the "+ sentinel" task variants.

Registered on import:

  c4_v220_span_corruption  T5's pretraining objective (15% noise, mean span
                           3) on tfds `c4/en:2.2.0`, the C4 release T5's
                           `c4_v220` tasks read
  c4_v220_prefix_lm        the prefix-LM objective of the "LM adapted" T5 1.1
                           checkpoints (split at a uniformly random point)
  taskless_super_glue_{name}_v102_sentinel, taskless_super_glue_v102_sentinel
                           the paper's "span corruption + sentinel" setting:
                           every taskless SuperGLUE task (and the mixture)
                           with `<extra_id_0>` before each target

`add_sentinel_variant(name)` registers such a variant of any task or mixture.
"""
import functools
from typing import Any, Callable, Mapping, Optional

import seqio

from prompt_tuning.tasks import lm_preprocessors
from prompt_tuning.tasks import preprocessors
from prompt_tuning.tasks import superglue
from prompt_tuning.tasks import utils
from prompt_tuning.tasks import vocab

C4_TFDS_NAME = 'c4/en:2.2.0'
SPAN_CORRUPTION_TASK = 'c4_v220_span_corruption'
PREFIX_LM_TASK = 'c4_v220_prefix_lm'
SENTINEL_SUFFIX = '_sentinel'
# How seqio's SentencePiece vocabulary decodes the first sentinel id.
SENTINEL_TEXT = '<extra_id_0>'


def strip_sentinel(postprocess_fn: Optional[Callable[..., Any]],
                   sentinel_text: str = SENTINEL_TEXT) -> Callable[..., Any]:
  """Wraps a postprocessor to drop a leading sentinel from model outputs.

  Targets are the original strings (the sentinel is added to their tokens
  only), so they pass through unchanged.

  Args:
    postprocess_fn: `fn(output, example=None, is_target=False)` or None.
    sentinel_text: the decoded sentinel.

  Returns:
    The wrapped postprocessor.
  """

  def fn(output: Any, example: Optional[Mapping[str, Any]] = None,
         is_target: bool = False) -> Any:
    if not is_target:
      text = output.decode('utf-8') if isinstance(output, bytes) else output
      if isinstance(text, str) and text.lstrip().startswith(sentinel_text):
        output = text.lstrip()[len(sentinel_text):].strip()
    if postprocess_fn is None:
      return output
    return postprocess_fn(output, example=example, is_target=is_target)

  return fn


def add_sentinel_variant(name: str) -> str:
  """Registers `name + '_sentinel'`: `name` with `<extra_id_0>` targets.

  The first sentinel is prepended to every tokenized target
  (`preprocessors.add_sentinel_to_targets`, right after the cache
  placeholder) and stripped from model outputs before postprocessing. A
  mixture gets the variant of each of its tasks, at the same rates. Calling
  it again for a registered variant returns the existing name. The variant
  shares the task's source, so field errors name the original task.

  Args:
    name: a registered task or mixture.

  Returns:
    The variant's name.

  Raises:
    ValueError: if `name` is not registered (with the closest names).
  """
  new_name = name + SENTINEL_SUFFIX
  if new_name in utils.registered_names():
    return new_name
  provider = utils.get_mixture_or_task(name)
  if isinstance(provider, seqio.Mixture):
    seqio.MixtureRegistry.add(
        new_name, [(add_sentinel_variant(t.name), provider.get_rate(t))
                   for t in provider.tasks])
    return new_name
  steps = list(provider.preprocessors)
  at = next((i + 1 for i, p in enumerate(steps)
             if isinstance(p, seqio.CacheDatasetPlaceholder)), None)
  if at is None:
    raise ValueError(
        f'add_sentinel_variant: task {name!r} has no CacheDatasetPlaceholder '
        'to place the sentinel after (expected tokenize, placeholder, ...).')
  steps.insert(at, preprocessors.add_sentinel_to_targets)
  seqio.TaskRegistry.add(
      new_name,
      source=provider.source,
      preprocessors=steps,
      output_features=provider.output_features,
      postprocess_fn=strip_sentinel(provider.postprocessor),
      metric_fns=list(provider.metric_fns))
  return new_name


def _add_c4_task(name: str, objective: Callable[..., Any]) -> None:
  utils.add_tfds_task(
      name,
      tfds_name=C4_TFDS_NAME,
      fields=('text',),
      text_preprocessors=[functools.partial(seqio.preprocessors.rekey,
                                            key_map={'targets': 'text'})],
      token_preprocessors=[objective],
      output_features=vocab.T5_OUTPUT_FEATURES)


def _register() -> None:
  _add_c4_task(SPAN_CORRUPTION_TASK, lm_preprocessors.span_corruption)
  _add_c4_task(PREFIX_LM_TASK, lm_preprocessors.prefix_lm)
  prefix = utils.TASKLESS_PREFIX
  for config in tuple(superglue.CLASSIFICATION_TASKS) + ('record', 'wsc'):
    add_sentinel_variant(
        f'{prefix}super_glue_{config}_{superglue.VERSION_TAG}')
  add_sentinel_variant(f'{prefix}super_glue_{superglue.VERSION_TAG}')


_register()
