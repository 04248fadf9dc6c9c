r"""Prints a few preprocessed examples of a registered seqio task or mixture.

For each example and each output feature: the text, the token ids (after the
task's preprocessors, EOS included) and, for SentencePiece vocabularies, the
pieces. Registered names come from importing `prompt_tuning.tasks`.

Usage:

    python -m prompt_tuning.tasks.show offline_sentiment
    python -m prompt_tuning.tasks.show offline_all --split=train --n=5

An unknown name prints the registered names closest to it on stderr and exits
with status 1.
"""
import sys
from typing import Any, Dict, List, Mapping, Sequence, Union

from absl import app
from absl import flags
import numpy as np
import seqio
import tensorflow as tf

import prompt_tuning.tasks  # pylint: disable=unused-import  (registers tasks)
from prompt_tuning.tasks.utils import get_mixture_or_task

Provider = Union[seqio.Task, seqio.Mixture]


def preprocessed_examples(provider: Provider, split: str,
                          n: int) -> List[Dict[str, Any]]:
  """The first `n` preprocessed examples of `split`, unshuffled.

  Features keep their `<feature>_pretokenized` text. A mixture samples its
  tasks with a fixed seed, so repeated calls give the same examples.

  Raises:
    ValueError: if `split` is not a split of `provider`.
  """
  if split not in provider.splits:
    raise ValueError(f'{provider.name!r} has no split {split!r}; its splits '
                     f'are {sorted(provider.splits)}')
  if isinstance(provider, seqio.Mixture):
    ds = provider.get_dataset(sequence_length=None, split=split, shuffle=False,
                              num_epochs=1, seed=0, copy_pretokenized=True,
                              log_mixing_proportions=False)
  else:
    ds = provider.get_dataset(sequence_length=None, split=split, shuffle=False,
                              num_epochs=1)
  return list(ds.take(n).as_numpy_iterator())


def _text(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def format_example(example: Mapping[str, Any],
                   output_features: Mapping[str, seqio.Feature]) -> str:
  """Text, ids and pieces of each output feature of one example, one per line.

  Args:
    example: a preprocessed example; token features are `[T]` int arrays.
    output_features: the provider's features, for their vocabularies.

  Returns:
    Lines `  <feature> text: ...`, `  <feature> ids (T): ...` and, when the
    vocabulary is SentencePiece, `  <feature> pieces: ...`.
  """
  lines = []
  for key, feature in output_features.items():
    if key not in example:
      continue
    ids = np.asarray(example[key]).reshape(-1).tolist()
    text = example.get(f'{key}_pretokenized')
    text = _text(text) if text is not None else feature.vocabulary.decode(ids)
    lines.append(f'  {key} text: {text!r}')
    lines.append(f'  {key} ids ({len(ids)}): {" ".join(map(str, ids))}')
    tokenizer = getattr(feature.vocabulary, 'tokenizer', None)
    if tokenizer is not None:
      pieces = [tokenizer.id_to_piece(i) for i in ids]
      lines.append(f'  {key} pieces: {" ".join(pieces)}')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> int:
  if len(argv) != 2:
    raise app.UsageError(
        f'expected one TASK (a task or mixture name), got {argv[1:]}')
  split, n = flags.FLAGS.split, flags.FLAGS.n
  tf.config.set_visible_devices([], 'GPU')
  try:
    provider = get_mixture_or_task(argv[1])
    examples = preprocessed_examples(provider, split, n)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  kind = 'mixture' if isinstance(provider, seqio.Mixture) else 'task'
  print(f'{provider.name} ({kind}), split {split!r}: '
        f'{len(examples)} example(s)')
  for i, example in enumerate(examples):
    print(f'[{i}]')
    print(format_example(example, provider.output_features))
  return 0


if __name__ == '__main__':
  # Flags are defined here, not at import, so that importing this module next
  # to other entry points cannot define a flag twice.
  flags.DEFINE_string('split', 'validation', 'Split to read.')
  flags.DEFINE_integer('n', 3, 'Number of examples to print.', lower_bound=1)
  app.run(main)
