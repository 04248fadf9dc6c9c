"""Postprocessors: decoded strings -> the values `metrics` scores.

Every function here has seqio's postprocess signature
`fn(output_or_target, example=None, is_target=False)`. seqio calls it once per
example on the decoded target string (`is_target=True`) and once on the
decoded model output (`is_target=False`), passing the same preprocessed
example (a dict of numpy values) both times.

Factories (`string_label_to_class_id`, `string_to_float`, `multirc`) bind
their options and return such a function, e.g. in a task registration:

  postprocess_fn=postprocessors.string_label_to_class_id(
      ('entailment', 'contradiction', 'neutral')),
  metric_fns=[metrics.accuracy, metrics.mean_multiclass_f1(num_classes=3)],
"""
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence

import numpy as np

PostprocessFn = Callable[..., Any]

# Class id of a decoded string that is none of the labels; metrics score it
# as wrong.
INVALID_CLASS_ID = -1


def _to_text(value: Any) -> str:
  """A str from a str, bytes, or numpy string scalar (bytes as UTF-8)."""
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, bytes):  # Also np.bytes_.
    return value.decode('utf-8')
  if isinstance(value, str):  # Also np.str_.
    return str(value)
  raise ValueError(f'expected a str or bytes, got {type(value).__name__} '
                   f'{value!r}.')


def string_label_to_class_id(label_classes: Sequence[str]) -> PostprocessFn:
  """Makes a postprocessor mapping a label string to its class id.

  The decoded string and the labels are compared after stripping surrounding
  whitespace, case-sensitively; any other string maps to -1 (invalid). That
  holds for targets too: a target outside `label_classes` is a task
  configuration error, which the metrics that know the label set report.

  Args:
    label_classes: `[C]` label strings; class id i is `label_classes[i]`.

  Returns:
    `fn(output_or_target, example=None, is_target=False) -> int` in
    `[-1, C)`, with the stripped labels as its `label_classes` attribute.

  Raises:
    ValueError: if `label_classes` is empty, not strings, or has duplicates
      after stripping.
  """
  if isinstance(label_classes, (str, bytes)):
    raise ValueError(
        f'label_classes is the string {label_classes!r}; expected a sequence '
        'of label strings.')
  labels = [_to_text(c).strip() for c in label_classes]
  if not labels:
    raise ValueError('label_classes is empty; expected at least one label.')
  if len(set(labels)) != len(labels):
    raise ValueError(
        f'label_classes {labels!r} has duplicate labels (after stripping '
        'whitespace); expected distinct labels.')
  class_ids = {label: i for i, label in enumerate(labels)}

  def postprocess_fn(output_or_target: Any,
                     example: Optional[Mapping[str, Any]] = None,
                     is_target: bool = False) -> int:
    del example, is_target  # Targets and outputs are mapped alike.
    return class_ids.get(_to_text(output_or_target).strip(), INVALID_CLASS_ID)

  # The task's label set, for rank classification of inputs with no target.
  postprocess_fn.label_classes = tuple(labels)
  return postprocess_fn


def string_to_float(default: float = -1.0) -> PostprocessFn:
  """Makes a postprocessor parsing a number (STS-B).

  Args:
    default: the value of a string that is no finite number ('nan' and 'inf'
      included).

  Returns:
    `fn(output_or_target, example=None, is_target=False) -> float`.
  """
  default = float(default)

  def postprocess_fn(output_or_target: Any,
                     example: Optional[Mapping[str, Any]] = None,
                     is_target: bool = False) -> float:
    del example, is_target
    try:
      value = float(_to_text(output_or_target).strip())
    except ValueError:
      return default
    return value if np.isfinite(value) else default

  return postprocess_fn


def _multirc_group(example: Mapping[str, Any]) -> tuple[int, int]:
  """(paragraph, question) ids of a tfds super_glue/multirc example."""
  idx = example.get('idx')
  if isinstance(idx, Mapping) and 'paragraph' in idx and 'question' in idx:
    paragraph, question = idx['paragraph'], idx['question']
  elif 'idx/paragraph' in example and 'idx/question' in example:
    # The same ids after the example's features were flattened.
    paragraph, question = example['idx/paragraph'], example['idx/question']
  else:
    raise ValueError(
        f'multirc: example has keys {sorted(example)} (idx: {idx!r}); '
        "expected example['idx'] with 'paragraph' and 'question' keys, as in "
        'tfds super_glue/multirc.')
  # NOTE: question ids are read together with the paragraph id so that the
  # group is unique even if question ids restart per paragraph.
  return int(np.asarray(paragraph)), int(np.asarray(question))


def multirc(label_classes: Sequence[str] = ('False', 'True')) -> PostprocessFn:
  """Makes MultiRC's postprocessor: class id plus the question it answers.

  `metrics.multirc_metrics` groups answers by question for exact match.

  Args:
    label_classes: label strings of class 0 (wrong answer) and 1 (right).

  Returns:
    `fn(output_or_target, example, is_target=False) -> {'group': (paragraph,
    question), 'value': class id or -1}`. The group comes from
    `example['idx']` for targets and predictions alike; without an example
    (predictions only) it is None.

  Raises:
    ValueError: if `label_classes` is not two distinct labels; the returned
      function raises it for a target without an example or an example
      without ids.
  """
  if len(label_classes) != 2:
    raise ValueError(
        f'multirc: label_classes is {tuple(label_classes)!r}; expected two '
        'labels, (wrong answer, right answer).')
  to_class_id = string_label_to_class_id(label_classes)

  def postprocess_fn(output_or_target: Any,
                     example: Optional[Mapping[str, Any]] = None,
                     is_target: bool = False) -> dict[str, Any]:
    group: Optional[Hashable] = None
    if example is not None:
      group = _multirc_group(example)
    elif is_target:
      raise ValueError(
          'multirc: a target came without its example; the example is needed '
          'for the question id.')
    return {'group': group, 'value': to_class_id(output_or_target)}

  return postprocess_fn


def _gold_answers(name: str, example: Optional[Mapping[str, Any]]) -> list[str]:
  """The gold answers of `example['answers']` as a list of str."""
  if example is None or 'answers' not in example:
    keys = None if example is None else sorted(example)
    raise ValueError(
        f'{name}: target example has keys {keys}; expected an '
        "example with an 'answers' feature.")
  answers = example['answers']
  if isinstance(answers, Mapping):  # tfds squad: {'text': [...], ...}.
    answers = answers['text']
  if isinstance(answers, (str, bytes)):
    answers = [answers]
  return [_to_text(a) for a in np.asarray(answers, dtype=object).reshape(-1)]


def record(output: Any,
           example: Optional[Mapping[str, Any]] = None,
           is_target: bool = False) -> Any:
  """ReCoRD: gold answers for targets, the decoded string for predictions.

  As `squad` (arguments, result and errors), reading the example's
  'answers', a `[K]` array of bytes or str.
  """
  if is_target:
    return _gold_answers('record', example)
  return _to_text(output)


def squad(output: Any,
          example: Optional[Mapping[str, Any]] = None,
          is_target: bool = False) -> Any:
  """SQuAD / MRQA: gold answers for targets, the decoded string otherwise.

  Args:
    output: the decoded target or model output.
    example: the preprocessed example; for targets it must hold 'answers',
      a `[K]` array of bytes or str, or tfds squad's {'text': [K], ...}.
    is_target: whether `output` is the target.

  Returns:
    For targets a list of K answer strings; for predictions `output` (bytes
    decoded as UTF-8).

  Raises:
    ValueError: for a target whose example has no 'answers'.
  """
  if is_target:
    return _gold_answers('squad', example)
  return _to_text(output)
