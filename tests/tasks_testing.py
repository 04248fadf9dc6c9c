"""Shared helpers for the task tests: run a registered task on small records.

`run_task` feeds hand-written records, in the task's TFDS feature format,
through the task's real source (split mapping and field check included) and
preprocessors, with a byte vocabulary in place of the T5 one (nothing is
downloaded; the text fields 'inputs_pretokenized' and 'targets_pretokenized'
are what the T5 vocabulary would tokenize).
"""
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_tuning.tasks import vocab

BYTE_VOCAB = seqio.ByteVocabulary(extra_ids=100)
BYTE_FEATURES = vocab.output_features(BYTE_VOCAB)


def _split_name(split: Any) -> str:
  return split if isinstance(split, str) else str(split)


def run_task(name: str,
             records: Sequence[Mapping[str, Any]],
             split: str = 'validation',
             sequence_length: Optional[Mapping[str, int]] = None,
             encode: bool = True,
             loaded_splits: Optional[list[str]] = None) -> list[dict[str, Any]]:
  """Returns the examples task `name` makes from `records` for `split`.

  Args:
    name: a registered task.
    records: raw records as the TFDS builder would yield them (labels may be
      class names; they are encoded with the builder's features).
    split: the seqio split to read.
    sequence_length: passed to `get_dataset`.
    encode: encode the records with the builder's features (which checks
      that they are complete and well typed); False feeds them as they are.
    loaded_splits: if given, the TFDS split names read are appended to it.

  Returns:
    The task's examples as numpy dicts.
  """
  task = seqio.TaskRegistry.get(name).replace(output_features=BYTE_FEATURES)

  def as_dataset(builder, split, *args, **kwargs):
    del args, kwargs
    if loaded_splits is not None:
      loaded_splits.append(_split_name(split))
    features = builder.info.features
    if not encode:
      keys = sorted(records[0])
      return tf.data.Dataset.from_tensor_slices(
          {k: [r[k] for r in records] for k in keys})
    # Serialized and parsed back as TFDS reads its record files.
    serialized = [features.serialize_example(r) for r in records]
    return tf.data.Dataset.from_tensor_slices(serialized).map(
        features.deserialize_example)

  with tfds.testing.mock_data(as_dataset_fn=as_dataset,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    dataset = task.get_dataset(sequence_length, split=split, shuffle=False,
                               try_in_mem_cache=False)
    return list(dataset.as_numpy_iterator())


def text(value: Any) -> Any:
  """bytes -> str, arrays of bytes -> lists of str; other values as they are."""
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [text(v) for v in value.tolist()]
  return value


def fn_name(fn: Any) -> str:
  """The defining function's name of a function, closure or partial."""
  while hasattr(fn, 'func'):
    fn = fn.func
  return fn.__qualname__.split('.')[0]
