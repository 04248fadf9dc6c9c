"""Trains every method with the same step budget and compares them (the
library of `python -m prompt_tuning.compare_methods`).

The comparison is a config sweep: for each method, a base gin config plus
`gin/methods/<method>.gin`, run by the one trainer with the same
`TRAIN_STEPS`, batch, data and seed, evaluated before training and at the
end on the validation split; each trained method is exported and its train
step timed and measured separately (`measure_step`).
"""
import dataclasses
import os
import statistics
import time
from typing import Any, Dict, Mapping, Sequence

import jax
import numpy as np

from prompt_tuning.checkpoints import run_dir as run_dir_lib
from prompt_tuning.experiments import sweep
from prompt_tuning.methods import export as method_export
from prompt_tuning.methods import presets
from prompt_tuning.model import prompts
from prompt_tuning.training import evaluation
from prompt_tuning.training import partitioning
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.training import trainer
from prompt_tuning.utils import tables


@dataclasses.dataclass(frozen=True)
class Row:
  """One method's line of the comparison."""
  method: str
  untrained_score: float
  tuned_score: float
  trainable: int
  step_seconds: float
  step_bytes: int
  export_kind: str
  export_bytes: int
  metrics: Mapping[str, Any]


def _score(record: Mapping[str, Any]) -> float:
  return evaluation.selection_score(record['metrics'])


def measure_step(model: Any, optimizer: Any, trainable_regexes: Sequence[str],
                 setup: setup_lib.ModelSetup, batch: Mapping[str, np.ndarray],
                 repeats: int = 5) -> Dict[str, float]:
  """Compiles the trainer's sharded step for one batch and times it.

  Returns:
    {'seconds': median step time after compilation, 'bytes': XLA's memory
    estimate (arguments + outputs + temporaries - aliased)}.
  """
  mesh, rules = setup.mesh, setup.rules
  trainable, frozen = trainer.split_params(setup.params, trainable_regexes)
  trainable_shardings, frozen_shardings = trainer.split_params(
      partitioning.unbox(setup.shardings), trainable_regexes)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_state = jax.jit(optimizer.init, out_shardings=replicated)(trainable)
  step_fn = trainer.make_train_step(model, optimizer, mesh,
                                    trainable_shardings, frozen_shardings,
                                    dropout_root=None)
  batch = partitioning.host_local_to_global(dict(batch), mesh)
  with partitioning.mesh_context(mesh, rules):
    compiled = step_fn.lower(trainable, frozen, opt_state, batch,
                             np.int32(0)).compile()
    memory = compiled.memory_analysis()
    times = []
    for step in range(repeats + 1):
      start = time.perf_counter()
      trainable, opt_state, metrics = compiled(trainable, frozen, opt_state,
                                               batch, np.int32(step))
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  step_bytes = 0
  if memory is not None:
    step_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                  + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  return {'seconds': statistics.median(times[1:]), 'bytes': int(step_bytes)}


def _export_kind(exported: method_export.Export) -> str:
  parts = []
  if exported.prompt_file:
    parts.append('prompt')
  if exported.method_params_file:
    parts.append('method params')
  if exported.checkpoint:
    parts.append('t5x checkpoint')
  return ' + '.join(parts)


def compare_one(name: str, output_dir: str, gin_files: Sequence[str],
                bindings: Sequence[str], search_paths: Sequence[str],
                train_steps: int) -> Row:
  """Trains, evaluates, exports and measures one method."""
  presets.preset(name)  # an unknown name fails here, listing the known ones
  run_dir = os.path.join(output_dir, name)
  result, arguments = sweep.train(
      list(gin_files) + [f'methods/{name}.gin'],
      list(bindings) + [
          sweep.string_binding('MODEL_DIR', run_dir),
          f'TRAIN_STEPS = {train_steps}',
          'trainer.train.eval_before_training = True',
          # Step 0 is each method's untrained score; a zero-shot pass (the
          # model without a prompt) is not defined for every method.
          'trainer.train.eval_zero_shot = False',
          'trainer.train.eval_period = 0',
          f'trainer.train.checkpoint_period = {train_steps}',
          f'trainer.train.log_period = {max(train_steps // 4, 1)}'],
      search_paths)
  if len(result.eval_history) < 2:
    raise ValueError(f'{name}: the run evaluated {len(result.eval_history)} '
                     'time(s); expected step 0 and the last step (EVAL_MODE '
                     'must not be None)')
  model = arguments['model']
  regexes = list(arguments['trainable_regexes'])
  setup = setup_lib.setup_model(
      model, arguments.get('initial_checkpoint_path'),
      arguments.get('assignment_map', ((prompts.PROMPT_REGEX, None),)),
      arguments.get('seed', 0))
  _, frozen = trainer.split_params(setup.params, regexes)
  params = trainer.merge_params(result.trainable, jax.device_get(frozen))
  exported = method_export.export(model, params, regexes,
                                  run_dir_lib.export_dir(run_dir))
  dataset = trainer.train_dataset(
      arguments['mixture_or_task_name'], arguments['task_feature_lengths'],
      arguments['batch_size'], arguments.get('seed', 0))
  batch = jax.tree_util.tree_map(lambda t: t.numpy(), next(iter(dataset)))
  measured = measure_step(model, arguments['optimizer'], regexes, setup,
                          batch)
  n_trainable, _ = trainer.count_params(result.trainable)
  return Row(method=name,
             untrained_score=_score(result.eval_history[0]),
             tuned_score=_score(result.eval_history[-1]),
             trainable=n_trainable, step_seconds=measured['seconds'],
             step_bytes=measured['bytes'],
             export_kind=_export_kind(exported),
             export_bytes=exported.num_bytes,
             metrics=result.eval_history[-1]['metrics'])


def _size(n: int) -> str:
  for unit, scale in (('GB', 2**30), ('MB', 2**20), ('KB', 2**10)):
    if n >= scale:
      return f'{n / scale:.1f} {unit}'
  return f'{n} B'


def markdown(rows: Sequence[Row], train_steps: int, task: str) -> str:
  """The comparison table, under a line naming the task and the budget."""
  table = tables.markdown_table(
      ['method', 'untrained', 'tuned', 'trainable params', 'step time (ms)',
       'step memory', 'export', 'export size'],
      [[r.method, f'{r.untrained_score:.2f}', f'{r.tuned_score:.2f}',
        f'{r.trainable:,}', f'{1000 * r.step_seconds:.1f}',
        _size(r.step_bytes), r.export_kind, _size(r.export_bytes)]
       for r in rows],
      align='lrrrrrlr', escape=False)
  return (f'{task}, {train_steps} training steps per method; validation '
          'score = mean of the task\'s metrics.\n\n' + table)
