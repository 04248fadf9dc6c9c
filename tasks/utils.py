"""Helpers for registering and looking up the seqio tasks of this package.

- `get_mixture_or_task(name)`: seqio's lookup, with an error that lists the
  closest registered names.
- `FieldCheckedTfdsSource`: a `seqio.TfdsDataSource` that checks, when a split
  is loaded, that its records carry the fields the task's preprocessors read,
  so a malformed record fails with the task, split and field named instead of
  a `KeyError` deep inside a `tf.data` trace.
- `add_tfds_task(...)`: the T5 recipe shared by all text tasks here: text
  preprocessors, tokenize, cache placeholder, EOS after trimming.
"""
import difflib
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import seqio
import tensorflow as tf

# Number of registered names suggested for an unknown one.
_NUM_SUGGESTIONS = 5
# Task name prefix of the variants whose inputs lack the leading task token.
TASKLESS_PREFIX = 'taskless_'


def task_token(prefix: str, token: str) -> Optional[str]:
  """The leading task token for a name prefix: None for taskless names."""
  return None if prefix == TASKLESS_PREFIX else token


def registered_names() -> list[str]:
  """All registered task and mixture names, sorted."""
  return sorted(set(seqio.TaskRegistry.names()) |
                set(seqio.MixtureRegistry.names()))


def get_mixture_or_task(name: str) -> Union[seqio.Task, seqio.Mixture]:
  """Returns the registered seqio Task or Mixture called `name`.

  Args:
    name: a task or mixture name, e.g. 'taskless_super_glue_rte_v102'.

  Returns:
    The Mixture if `name` is a mixture, otherwise the Task.

  Raises:
    ValueError: if nothing is registered under `name`; the message lists the
      closest registered names.
  """
  if name in registered_names():
    return seqio.get_mixture_or_task(name)
  names = registered_names()
  close = difflib.get_close_matches(name, names, n=_NUM_SUGGESTIONS, cutoff=0.5)
  hint = (f'closest registered names: {close}' if close else
          'no registered name is close')
  raise ValueError(
      f'Unknown task or mixture {name!r} ({len(names)} registered); {hint}. '
      'Registering happens on import: import prompt_tuning.tasks (or the '
      'module that defines the task) first.')


def _has_field(spec: Any, path: str) -> bool:
  """Whether the nested element spec has the '/'-separated field `path`."""
  for key in path.split('/'):
    if not isinstance(spec, Mapping) or key not in spec:
      return False
    spec = spec[key]
  return True


def _field_paths(spec: Any, prefix: str = '') -> list[str]:
  """'/'-joined paths of the leaves of a nested element spec."""
  if not isinstance(spec, Mapping):
    return [prefix]
  paths = []
  for key, value in spec.items():
    paths.extend(_field_paths(value, f'{prefix}{key}' if not prefix else
                              f'{prefix}/{key}'))
  return sorted(paths)


def check_fields(dataset: tf.data.Dataset, *, task_name: str, split: str,
                 fields: Sequence[str]) -> tf.data.Dataset:
  """Checks that the records of `dataset` have every one of `fields`.

  The check reads `dataset.element_spec` in Python, so it costs nothing per
  record and fails before any preprocessor is traced.

  Args:
    dataset: the records as loaded from the source.
    task_name: the task the records are for (named in the error).
    split: the split they come from (named in the error).
    fields: the field paths the task reads; nested fields as 'idx/question'.

  Returns:
    `dataset`, unchanged.

  Raises:
    ValueError: naming the task, the split, the missing fields and the fields
      found.
  """
  spec = dataset.element_spec
  missing = [f for f in fields if not _has_field(spec, f)]
  if missing:
    raise ValueError(
        f'Task {task_name!r}, split {split!r}: records lack field(s) '
        f'{missing}; found {_field_paths(spec)}, expected at least '
        f'{sorted(fields)}.')
  return dataset


class FieldCheckedTfdsSource(seqio.TfdsDataSource):
  """A TFDS source that checks its records' fields for one task.

  Behaves as `seqio.TfdsDataSource`; `get_dataset` also runs `check_fields`
  on what it loads, so the error names the task and split, and rejects a
  split the task does not have with the splits it has.
  """

  def __init__(self, tfds_name: str, *, task_name: str,
               fields: Sequence[str],
               splits: Optional[Mapping[str, str]] = None, **kwargs):
    """Makes the source.

    Args:
      tfds_name: e.g. 'super_glue/rte:1.0.2'.
      task_name: the task this source feeds.
      fields: the fields its preprocessors read ('/' for nested ones).
      splits: {seqio split: tfds split}; None exposes every tfds split.
      **kwargs: passed to `seqio.TfdsDataSource` (tfds_data_dir, ...).
    """
    super().__init__(tfds_name=tfds_name, splits=splits, **kwargs)
    self._split_map = dict(splits) if splits else None
    self._task_name = task_name
    self._fields = tuple(fields)

  @property
  def fields(self) -> tuple[str, ...]:
    return self._fields

  @property
  def split_map(self) -> Optional[dict[str, str]]:
    """{seqio split: tfds split}, or None when every tfds split is exposed."""
    return dict(self._split_map) if self._split_map else None

  def get_dataset(self, split: Optional[str] = None, shuffle: bool = True,
                  seed: Optional[int] = None, shard_info=None, **kwargs
                  ) -> tf.data.Dataset:
    split = split or 'train'
    if self._split_map and split not in self._split_map:
      raise ValueError(
          f'Task {self._task_name!r} has no split {split!r}; its splits are '
          f'{list(self._split_map)}.')
    dataset = super().get_dataset(split=split, shuffle=shuffle, seed=seed,
                                  shard_info=shard_info, **kwargs)
    return check_fields(dataset, task_name=self._task_name, split=split,
                        fields=self._fields)


def t5_preprocessors(
    text_preprocessors: Sequence[Callable[..., tf.data.Dataset]] = (),
    token_preprocessors: Sequence[Callable[..., tf.data.Dataset]] = ()
) -> list:
  """T5's preprocessing order: `text_preprocessors`, tokenization, the cache
  placeholder, `token_preprocessors`, then EOS appended after trimming."""
  return [*text_preprocessors, seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(), *token_preprocessors,
          seqio.preprocessors.append_eos_after_trim]


def add_tfds_task(
    name: str,
    *,
    tfds_name: str,
    fields: Sequence[str],
    text_preprocessors: Sequence[Callable[..., tf.data.Dataset]],
    output_features: Mapping[str, seqio.Feature],
    splits: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
    token_preprocessors: Sequence[Callable[..., tf.data.Dataset]] = (),
    postprocess_fn: Optional[Callable[..., Any]] = None,
    metric_fns: Sequence[Callable[..., Any]] = (),
) -> seqio.Task:
  """Registers a text-to-text task on a TFDS dataset, T5's way.

  Preprocessing is `text_preprocessors`, tokenization, a cache placeholder,
  `token_preprocessors` and finally EOS appended after trimming to the
  sequence length.

  Args:
    name: the task name.
    tfds_name: TFDS name with config and version.
    fields: the source fields `text_preprocessors` read.
    text_preprocessors: map raw records to {'inputs', 'targets', ...} strings.
    output_features: the task's output features (vocabulary, EOS).
    splits: the splits to expose, or a map from seqio split to TFDS split;
      None exposes every split of the TFDS dataset.
    token_preprocessors: run on token ids after the cache placeholder.
    postprocess_fn: `fn(output, example=None, is_target=False)`.
    metric_fns: `fn(targets, predictions) -> dict`.

  Returns:
    The registered task.
  """
  if isinstance(splits, Sequence) and not isinstance(splits, str):
    splits = {s: s for s in splits}
  source = FieldCheckedTfdsSource(
      tfds_name, task_name=name, fields=fields, splits=splits)
  return seqio.TaskRegistry.add(
      name,
      source=source,
      preprocessors=t5_preprocessors(text_preprocessors, token_preprocessors),
      output_features=output_features,
      postprocess_fn=postprocess_fn,
      metric_fns=list(metric_fns),
  )
