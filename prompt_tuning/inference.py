"""Evaluate and infer with a frozen model and a prompt: what the `eval` and
`infer` entry points configure through gin.

`evaluate` scores a model (with, e.g., a prompt from `PROMPT_FILE`) on a task's
split with the task's metrics; `infer` writes one JSON line per input, either
the decoded prediction ('predict') or the targets' log-likelihood ('score').
"""
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax

from prompt_tuning import evaluation
from prompt_tuning import models
from prompt_tuning import partitioning
from prompt_tuning import trainer


def evaluate(*,
             model: models.EncoderDecoderModel,
             initial_checkpoint_path: Optional[str],
             mixture_or_task_name: str,
             feature_lengths: Mapping[str, int],
             output_dir: str,
             split: str = 'validation',
             batch_size: int = 32,
             mode: str = 'decode',
             decode_kwargs: Optional[Mapping[str, Any]] = None,
             class_labels: Optional[Sequence[str]] = None,
             num_examples: Optional[int] = None,
             step: int = 0,
             assignment_map: Sequence[Tuple[str, Optional[str]]] = (
                 (trainer.PROMPT_REGEX, None),),
             mesh_config: partitioning.MeshConfig = partitioning.MeshConfig(),
             seed: int = 0) -> Dict[str, Dict[str, float]]:
  """Evaluates the model on every task of `mixture_or_task_name`.

  The prompt is whatever the model's `prompt_init` makes: with
  `prompts/from_file.gin`, the saved `PROMPT_FILE`. Metrics are written to
  `output_dir` (TensorBoard and metrics.jsonl) and returned.
  """
  setup = trainer.setup_model(model, initial_checkpoint_path, assignment_map,
                              seed, mesh_config)
  results = evaluation.evaluate(
      model, setup.params, mixture_or_task_name, split=split,
      feature_lengths=feature_lengths, batch_size=batch_size, mode=mode,
      step=step, decode_kwargs=decode_kwargs, label_strings=class_labels,
      eval_dir=output_dir, num_examples=num_examples, mesh=setup.mesh,
      rules=setup.rules)
  for task, metrics in sorted(results.items()):
    logging.info('%s (%s): %s', task, split, metrics)
  return results


def _examples(task, split: str, feature_lengths: Mapping[str, int],
              num_examples: Optional[int]):
  """(texts [(inputs, targets)], converted tf.data dataset of (i, features))."""
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dataset = task.get_dataset(sequence_length=dict(feature_lengths),
                             split=split, shuffle=False, num_epochs=1)
  if num_examples is not None:
    dataset = dataset.take(num_examples)
  texts = [(ex.get('inputs_pretokenized', b'').decode(),
            ex.get('targets_pretokenized', b'').decode())
           for ex in dataset.as_numpy_iterator()]
  converted = seqio.EncDecFeatureConverter(pack=False)(
      dataset, dict(feature_lengths))
  indexed = tf.data.Dataset.zip((tf.data.Dataset.range(len(texts)),
                                 converted))
  return texts, indexed


def infer(*,
          model: models.EncoderDecoderModel,
          initial_checkpoint_path: Optional[str],
          mixture_or_task_name: str,
          feature_lengths: Mapping[str, int],
          output_file: str,
          split: str = 'validation',
          mode: str = 'predict',
          batch_size: int = 32,
          decode_kwargs: Optional[Mapping[str, Any]] = None,
          num_examples: Optional[int] = None,
          assignment_map: Sequence[Tuple[str, Optional[str]]] = (
              (trainer.PROMPT_REGEX, None),),
          mesh_config: partitioning.MeshConfig = partitioning.MeshConfig(),
          seed: int = 0) -> int:
  """Writes one JSON line per input of a task's split; returns the count.

  mode 'predict': {"index", "inputs", "targets", "prediction"} (decoded);
  mode 'score': {"index", "inputs", "targets", "score"} (the targets' summed
  log-likelihood).

  Raises:
    ValueError: an unknown mode.
  """
  if mode not in ('predict', 'score'):
    raise ValueError(f"infer mode is {mode!r}; expected 'predict' or 'score'")
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  task = task_utils.get_mixture_or_task(mixture_or_task_name)
  setup = trainer.setup_model(model, initial_checkpoint_path, assignment_map,
                              seed, mesh_config)
  texts, dataset = _examples(task, split, feature_lengths, num_examples)
  if mode == 'predict':
    outputs = evaluation.make_predict_fn(
        model, decode_kwargs, batch_size=batch_size, mesh=setup.mesh,
        rules=setup.rules)(dataset, setup.params, description='infer')
    vocabulary = task.output_features['targets'].vocabulary
    values = [vocabulary.decode(ids) for _, ids in outputs]
  else:
    outputs = evaluation.make_score_fn(
        model, batch_size=batch_size, mesh=setup.mesh,
        rules=setup.rules)(dataset, setup.params, description='score')
    values = [float(score) for _, score in outputs]
  key = 'prediction' if mode == 'predict' else 'score'
  if jax.process_index() == 0:
    directory = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(directory, exist_ok=True)
    temporary = output_file + '.tmp'
    with open(temporary, 'w') as f:
      for (index, _), value in zip(outputs, values):
        inputs, targets = texts[index]
        f.write(json.dumps({'index': int(index), 'inputs': inputs,
                            'targets': targets, key: value}) + '\n')
    os.replace(temporary, output_file)
  logging.info('wrote %d %s lines to %s', len(values), mode, output_file)
  return len(values)


def format_metrics(results: Mapping[str, Mapping[str, float]]) -> str:
  """One line per task: 'task: metric value, ...'."""
  return '\n'.join(
      f'{task}: ' + ', '.join(f'{name} {value:.2f}'
                              for name, value in sorted(metrics.items()))
      for task, metrics in sorted(results.items()))

