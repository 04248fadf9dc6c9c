r"""Prompt ensembles: one ensembled pass against N separate passes.

`time_passes` decodes the same batches both ways on the devices: once with a
bank `[N, P, H]` and every example repeated N times (`ensemble.expand_batch`),
and N times with one prompt `[P, H]` each. `benchmark` runs it on a task's
split with the prompt files of an ensemble's gin config
(gin/runs/prompt_ensemble.gin binds `ensembles.benchmark`); it is what
`python -m prompt_tuning.ensemble --benchmark` runs, and writes
benchmark.json.

Letters: N prompts, P prompt length, H embedding size, B examples per batch,
T input length, L decode length.
"""
import json
import os
import statistics
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import models
from prompt_tuning.model import prompts as prompt_lib
from prompt_tuning.serving import ensemble
from prompt_tuning.serving import inference
from prompt_tuning.training import partitioning
from prompt_tuning.training import predict
from prompt_tuning.utils import files
from prompt_tuning.utils import tables

Array = jax.Array
PyTree = Any

BENCHMARK_JSON = 'benchmark.json'


def _fixed_batches(dataset, batch_size: int) -> List[Dict[str, np.ndarray]]:
  """The `(index, features)` dataset as batches of exactly `batch_size` rows
  (the last one padded by repeating its examples, as in evaluation)."""
  batches = []
  for _, features in dataset.batch(batch_size).as_numpy_iterator():
    batch = {k: np.asarray(features[k]) for k in predict.MODEL_FEATURES
             if k in features}
    n = len(batch['encoder_input_tokens'])
    if n < batch_size:
      rows = np.arange(batch_size) % n
      batch = {k: v[rows] for k, v in batch.items()}
    batches.append(batch)
  return batches


def time_passes(model: models.EncoderDecoderModel,
                params: PyTree,
                bank: Array,
                batches: Sequence[Mapping[str, np.ndarray]],
                decode_kwargs: Optional[Mapping[str, Any]] = None,
                *,
                repeats: int = 5,
                warmup: int = 1,
                mesh=None,
                rules=None) -> Dict[str, Any]:
  """Times one ensembled pass over `batches` against N single-prompt passes.

  The ensembled pass decodes each batch once with B*N rows
  (`ensemble.expand_batch`); the separate passes decode each batch N times,
  once per prompt `[P, H]`, with B rows. Both run the same batches already on the
  devices, and are timed alternately in the same process: `warmup` untimed
  rounds (the first one compiles; its time is reported), then `repeats`
  timed rounds, each waiting for all outputs.

  Args:
    model, params: the frozen model and its parameters.
    bank: `[N, P, H]`.
    batches: model features `[B, ...]` each.
    decode_kwargs: `predict_batch` settings (greedy by default).
    repeats: timed rounds (the median is reported).
    warmup: untimed rounds first (at least 1).
    mesh, rules: optional device mesh and logical axis rules.

  Returns:
    {'num_prompts', 'batch_size', 'num_batches', 'repeats',
     'ensembled_seconds', 'separate_seconds' (medians),
     'ensembled_all', 'separate_all' (every round),
     'ensembled_first_seconds', 'separate_first_seconds' (compile + first
     round), 'speedup' (separate / ensembled), 'same_outputs' (whether both
     ways decoded the same tokens), 'device'}.

  Raises:
    ValueError: no batches, or fewer than 1 warm-up round.
  """
  if not batches:
    raise ValueError('time_passes got no batches; expected at least one.')
  if warmup < 1 or repeats < 1:
    raise ValueError(f'warmup {warmup} and repeats {repeats}; expected at '
                     'least 1 each.')
  decode_kwargs = predict.check_decode_kwargs(decode_kwargs)
  num_prompts = int(np.shape(bank)[0])
  ensembled = predict.jit_on_mesh(
      ensemble.bank_outputs(model, num_prompts, 'decode', decode_kwargs, None),
      mesh, rules)

  def single_fn(params, batch, prompt, rng):
    # [B, T] -> [B, L]
    return model.predict_batch(params, batch, rng, prompt=prompt,
                               **decode_kwargs)

  single = predict.jit_on_mesh(single_fn, mesh, rules)
  if mesh is None:
    placed = [jax.device_put(b) for b in batches]
  else:
    sharding = partitioning.data_sharding(mesh)
    placed = [jax.device_put(b, sharding) for b in batches]
  bank = jax.device_put(jnp.asarray(bank))
  prompts = [bank[i] for i in range(num_prompts)]  # N of [P, H]
  rng = jax.random.PRNGKey(0)

  def ensembled_round():
    outputs = [ensembled(params, b, bank, rng) for b in placed]
    return jax.block_until_ready(outputs)  # [batches] of [B, N, L]

  def separate_round():
    outputs = [single(params, b, p, rng) for p in prompts for b in placed]
    return jax.block_until_ready(outputs)  # [N * batches] of [B, L]

  def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

  first = {'ensembled': timed(ensembled_round),
           'separate': timed(separate_round)}
  # Both ways must give the same tokens: [N, batches, B, L] each.
  # [batches, B, N, L] -> [N, batches, B, L]
  together = np.stack([np.asarray(x) for x in ensembled_round()]).transpose(
      2, 0, 1, 3)
  alone = np.asarray(separate_round()).reshape(together.shape)
  same_outputs = bool(np.array_equal(together, alone))
  for _ in range(warmup - 1):
    ensembled_round()
    separate_round()
  times = {'ensembled': [], 'separate': []}
  for _ in range(repeats):
    times['ensembled'].append(timed(ensembled_round))
    times['separate'].append(timed(separate_round))
  ensembled_median = statistics.median(times['ensembled'])
  separate_median = statistics.median(times['separate'])
  device = jax.devices()[0]
  return {
      'num_prompts': num_prompts,
      'batch_size': int(batches[0]['encoder_input_tokens'].shape[0]),
      'num_batches': len(batches),
      'repeats': repeats,
      'warmup': warmup,
      'ensembled_seconds': ensembled_median,
      'separate_seconds': separate_median,
      'ensembled_all': times['ensembled'],
      'separate_all': times['separate'],
      'ensembled_first_seconds': first['ensembled'],
      'separate_first_seconds': first['separate'],
      'speedup': separate_median / ensembled_median,
      'same_outputs': same_outputs,
      'device': f'{jax.device_count()} x {device.device_kind} '
                f'({device.platform})',
  }


def format_benchmark(result: Mapping[str, Any]) -> str:
  """A short Markdown table of `time_passes`' result."""
  n, b = result['num_prompts'], result['batch_size']
  rows = result['num_batches'] * b
  table = tables.markdown_table(
      ['', 'seconds (median)', 'first round (with compile)',
       'rows x prompts / s'],
      [[f'{label} ({rows_per_batch} rows per batch)',
        f'{result[f"{kind}_seconds"]:.4f}',
        f'{result[f"{kind}_first_seconds"]:.2f}',
        f'{rows * n / result[f"{kind}_seconds"]:.0f}']
       for label, rows_per_batch, kind in (
           ('one ensembled pass', b * n, 'ensembled'),
           (f'{n} separate passes', b, 'separate'))],
      escape=False, tight_empty=True)
  return (
      f'{n} prompts, {result["num_batches"]} batches of {b} examples '
      f'({rows} rows per prompt with padding), {result["device"]}; median of '
      f'{result["repeats"]} rounds after {result["warmup"]} warm-up:\n\n' +
      table + '\n'
      f'speedup of the ensembled pass: {result["speedup"]:.2f}x; same '
      f'tokens both ways: {result["same_outputs"]}\n')


def benchmark(*,
              model: models.EncoderDecoderModel,
              initial_checkpoint_path: Optional[str],
              prompt_files: Sequence[str],
              mixture_or_task_name: str,
              feature_lengths: Mapping[str, int],
              output_dir: Optional[str] = None,
              split: str = 'validation',
              batch_size: int = 32,
              decode_kwargs: Optional[Mapping[str, Any]] = None,
              num_examples: Optional[int] = None,
              repeats: int = 5,
              warmup: int = 1,
              assignment_map: Sequence[Tuple[str, Optional[str]]] = (
                  (prompt_lib.PROMPT_REGEX, None),),
              mesh_config: partitioning.MeshConfig = (
                  partitioning.MeshConfig()),
              seed: int = 0) -> Dict[str, Any]:
  """`time_passes` on the (first) task's split with the prompt files.

  Takes the arguments of `ensemble.evaluate_ensemble` (one gin config binds
  both)
  except `mode` and `class_labels` (the benchmark decodes), plus `repeats`
  and `warmup`; writes benchmark.json to `output_dir`. Single-process only.

  Returns:
    `time_passes`' result, plus 'task' and 'num_examples'.
  """
  options = inference.RunOptions(
      model=model, initial_checkpoint_path=initial_checkpoint_path,
      feature_lengths=feature_lengths, split=split, batch_size=batch_size,
      decode_kwargs=decode_kwargs, num_examples=num_examples,
      assignment_map=assignment_map, mesh_config=mesh_config, seed=seed)
  return _benchmark(options, prompt_files, mixture_or_task_name, output_dir,
                    repeats=repeats, warmup=warmup)


def _benchmark(options: inference.RunOptions, prompt_files: Sequence[str],
               mixture_or_task_name: str, output_dir: Optional[str], *,
               repeats: int, warmup: int) -> Dict[str, Any]:
  """`benchmark` with its shared arguments in `options`."""
  bank = inference.load_prompt_bank(prompt_files, flag='PROMPT_FILES')
  task = ensemble.eval_tasks(mixture_or_task_name, options.split)[0]
  setup = options.setup_model()
  predict.check_batch_size(options.batch_size, setup.mesh, 'ensemble')
  examples, dataset = options.task_examples(task)
  result = time_passes(options.model, setup.params, bank,
                       _fixed_batches(dataset, options.batch_size),
                       options.decode_kwargs, repeats=repeats, warmup=warmup,
                       mesh=setup.mesh, rules=setup.rules)
  result.update(task=task.name, num_examples=len(examples))
  logging.info('ensemble benchmark:\n%s', format_benchmark(result))
  if output_dir is not None and jax.process_index() == 0:
    os.makedirs(output_dir, exist_ok=True)
    files.atomic_write_bytes(
        os.path.join(output_dir, BENCHMARK_JSON),
        (json.dumps(result, indent=2, sort_keys=True) + '\n').encode())
  return result
