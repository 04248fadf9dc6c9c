"""Benchmark suite: prompt-tuning step cost as the work grows.

Run through `python -m prompt_tuning.bench --suite=scaling --plot_dir=DIR`.

Three sweeps around one base point (`--prompt_length`, `--batch_size`,
`--input_length`), each changing one of them: prompt length (default 1..150),
batch (1..64) and input length (64..512). At every point our prompt-tuning
step (`bench_train.build_case`, as the train suite builds it) and, with
`--frameworks` including peft, PEFT's step are compiled and warmed up; then
all points of one sweep are timed together in interleaved order (ABBA over
every point and framework), so a change of machine load falls on the whole
curve rather than bending it.

Each curve (sweep x framework) is fitted by least squares with a line,
`time = intercept + slope x value` (slope in seconds per prompt token, per
example or per input token) and, on log-log axes, a power
`time ~ value^exponent` (1 is linear; below 1, fixed costs still dominate).
`plot_curves` draws one PNG per sweep: the measured medians with their
interquartile range, and the fitted lines.

Letters: B batch, T input length, U target length, P prompt length.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from prompt_tuning.benchmarks import train_step as bench_train
from prompt_tuning.model import costs
from prompt_tuning.benchmarks import common as bench_utils
from prompt_tuning.model import prompts

AXES = ('prompt_length', 'batch_size', 'input_length')
_UNITS = {'prompt_length': 'prompt token', 'batch_size': 'example',
          'input_length': 'input token'}


def fit_curve(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
  """Least-squares line and log-log power law through the points (x, y).

  Returns:
    {'slope', 'intercept' (y units per x unit, y units), 'r2' (of the line),
     'exponent' (the log-log slope; nan if any value is not positive)}.

  Raises:
    ValueError: fewer than 2 distinct x values.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if len(np.unique(x)) < 2:
    raise ValueError(f'a curve needs at least 2 distinct values; got {x}')
  slope, intercept = np.polyfit(x, y, 1)
  residual = y - (intercept + slope * x)
  total = np.sum((y - y.mean()) ** 2)
  r2 = 1.0 - np.sum(residual ** 2) / total if total > 0 else 1.0
  exponent = (float(np.polyfit(np.log(x), np.log(y), 1)[0])
              if np.all(x > 0) and np.all(y > 0) else float('nan'))
  return {'slope': float(slope), 'intercept': float(intercept),
          'r2': float(r2), 'exponent': exponent}


def _point_cases(config, frameworks, point: Mapping[str, int],
                 target_length: int, frozen_dtype: Optional[str], seed: int,
                 setups: Dict[int, Any]):
  """Our prompt-tuning case (and PEFT's) at one point of a sweep; `setups`
  keeps the random model of each prompt length, made once."""
  batch = bench_utils.random_batch(
      np.random.default_rng(seed), point['batch_size'], point['input_length'],
      target_length, config.vocab_size)
  length = point['prompt_length']
  if length not in setups:
    setups[length] = bench_train.random_setup(config, length, seed)
  model, setup = setups[length]
  ours = bench_train.build_case('prompt_tuning', model, setup,
                          prompts.PROMPT_REGEX, bench_train.PROMPT_TUNING_LR, batch,
                          seed, frozen_dtype, analyse=False)
  ours.info['framework'] = 'jax'
  cases = [ours]
  if 'peft' in frameworks:
    prompt, frozen = bench_train.prompt_and_weights(setup.params)
    cases.append(bench_train.peft_case(config, frozen, prompt, batch))
  return cases


def run_scaling(axes: Sequence[str] = AXES,
                values: Optional[Mapping[str, Sequence[int]]] = None,
                size: str = 'anchor', batch_size: int = 8,
                input_length: int = 128, target_length: int = 8,
                prompt_length: int = 100, repeats: int = 3,
                warmup_steps: int = 1, dtype: str = 'float32',
                frozen_dtype: Optional[str] = None, remat: bool = False,
                frameworks: Sequence[str] = ('jax',), seed: int = 0
                ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
  """Runs the sweeps; returns (one record per point and framework, curves).

  Args:
    axes: sweeps to run, of `AXES`.
    values: the values of each swept axis (default: P 1..150, B 1..64,
      T 64..512).
    size, batch_size, input_length, target_length, prompt_length: the model
      and the base point the sweeps vary one axis of.
    repeats, warmup_steps, dtype, frozen_dtype, remat, seed: as the train
      suite's.
    frameworks: 'jax' and optionally 'peft'.

  Returns:
    records: per point and framework, as the train suite's, plus 'axis' and
      'value'.
    curves: per axis and framework, {'axis', 'framework', 'values',
      'step_time_median_s', 'slope', 'intercept', 'r2', 'exponent'}.

  Raises:
    ValueError: an unknown axis, a non-positive value, or a sweep of fewer
      than 2 values.
  """
  values = dict(values or {'prompt_length': [1, 5, 20, 50, 100, 150],
                           'batch_size': [1, 2, 4, 8, 16, 32, 64],
                           'input_length': [64, 128, 256, 512]})
  unknown = sorted(set(axes) - set(AXES))
  if unknown:
    raise ValueError(f'--scaling_axes: unknown {unknown}; expected some of '
                     f'{list(AXES)}')
  for axis in axes:
    swept = values.get(axis, ())
    if len(set(swept)) < 2 or min(swept) < 1:
      raise ValueError(f'the {axis} sweep is {list(swept)}; expected at least '
                       '2 distinct positive values')
  bench_utils.check_positive(
      batch_size=batch_size, input_length=input_length,
      target_length=target_length, prompt_length=prompt_length,
      repeats=repeats, warmup_steps=warmup_steps)
  frozen_dtype = None if frozen_dtype == 'float32' else frozen_dtype
  config = bench_utils.size_config(size, dtype, remat)
  env = bench_utils.environment()
  base = {'prompt_length': prompt_length, 'batch_size': batch_size,
          'input_length': input_length}
  records, curves = [], []
  setups = {}
  for axis in axes:
    points = []
    for value in values[axis]:
      point = {**base, axis: int(value)}
      cases = _point_cases(config, frameworks, point, target_length,
                           frozen_dtype, seed, setups)
      for case in cases:
        bench_utils.warm_up(case, warmup_steps)
      points.append((point, cases))
    compiles = bench_utils.interleave(
        [case for _, cases in points for case in cases], repeats)
    for point, cases in points:
      tokens = point['batch_size'] * (point['input_length'] + target_length)
      flops = costs.step_flops(config, point['batch_size'],
                                     point['input_length'], target_length,
                                     point['prompt_length'], 'prompt_tuning')
      for case in cases:
        if not isinstance(case, bench_train.Case):
          from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
          bench_torch.finish_train_case(case)
        record = {
            'suite': 'scaling', 'case': case.name, 'axis': axis,
            'value': point[axis], 'size': size, 'dtype': dtype,
            'remat': remat, 'emb_dim': config.emb_dim,
            'num_heads': config.num_heads, 'head_dim': config.head_dim,
            'mlp_dim': config.mlp_dim,
            'num_encoder_layers': config.num_encoder_layers,
            'num_decoder_layers': config.num_decoder_layers,
            'vocab_size': config.vocab_size, 'target_length': target_length,
            'repeats': repeats, 'steps_per_repeat': 1,
            'warmup_steps': warmup_steps, **point, **env, **case.info,
            **bench_utils.summarise(case.times, 1, {'tokens': tokens}),
            'model_flops_per_step': flops,
            'backend_compiles_while_timing': compiles}
        record['mfu'] = (costs.mfu(flops, record['step_time_median_s'],
                                         env['device'], dtype,
                                         env['num_devices'])
                         if isinstance(case, bench_train.Case) else None)
        if isinstance(case, bench_train.Case):
          record['step_compilations'] = case.traces.count
          record['recompilations'] = case.traces.count - 1
        records.append(record)
    del points
    for framework in frameworks:
      mine = [r for r in records
              if r['axis'] == axis and r['framework'] == framework]
      x = [r['value'] for r in mine]
      y = [r['step_time_median_s'] for r in mine]
      curves.append({'axis': axis, 'framework': framework, 'values': x,
                     'step_time_median_s': y, **fit_curve(x, y)})
  return records, curves


def scaling_table(records: Sequence[Dict[str, Any]],
                  curves: Sequence[Dict[str, Any]]) -> str:
  """Markdown: each point's step time per framework, then the fits."""
  if not records:
    return 'no scaling records'
  lines = [bench_utils.config_line({**records[0], 'batch_size': None,
                                    'input_length': None}), '']
  frameworks = sorted({r['framework'] for r in records},
                      key=lambda f: (f != 'jax', f))
  for axis in dict.fromkeys(r['axis'] for r in records):
    mine = [r for r in records if r['axis'] == axis]
    rows = []
    for value in dict.fromkeys(r['value'] for r in mine):
      at = {r['framework']: r for r in mine if r['value'] == value}
      row = [str(value)]
      for framework in frameworks:
        r = at.get(framework)
        row += [bench_utils.fmt(r and r['step_time_median_s'], 'ms'),
                bench_utils.fmt(r and r['tokens_per_s'], 'num')]
      if 'peft' in at and 'jax' in at:
        row.append(bench_utils.fmt(
            at['jax']['tokens_per_s'] / at['peft']['tokens_per_s'], 'ratio'))
      rows.append(row)
    header = [axis]
    for framework in frameworks:
      name = 'ours' if framework == 'jax' else framework.upper()
      header += [f'{name} step', f'{name} tokens/s']
    if len(frameworks) > 1:
      header.append('ours / PEFT tokens/s')
    other = {a: mine[0][a] for a in AXES if a != axis}
    lines += [f'{axis} swept ({", ".join(f"{k} {v}" for k, v in other.items())}'
              f'; XLA compilations while timing: '
              f'{mine[0]["backend_compiles_while_timing"]}):', '',
              bench_utils.markdown_table(header, rows, 'r'), '']
  fit_rows = []
  for curve in curves:
    name = 'ours' if curve['framework'] == 'jax' else curve['framework']
    fit_rows.append([
        curve['axis'], name,
        f'{1e3 * curve["slope"]:.3f} ms per {_UNITS[curve["axis"]]}',
        f'{1e3 * curve["intercept"]:.1f} ms', f'{curve["r2"]:.3f}',
        f'{curve["exponent"]:.2f}'])
  lines += ['Fitted: step time = intercept + slope x value; exponent of a '
            'log-log fit (1 = linear).', '',
            bench_utils.markdown_table(
                ['sweep', 'framework', 'slope', 'intercept', 'R^2 (line)',
                 'exponent'], fit_rows, 'r')]
  return '\n'.join(lines)


def plot_curves(records: Sequence[Dict[str, Any]],
                curves: Sequence[Dict[str, Any]], plot_dir: str) -> List[str]:
  """One PNG per sweep (`scaling_<axis>.png`); returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(plot_dir, exist_ok=True)
  paths = []
  for axis in dict.fromkeys(c['axis'] for c in curves):
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for curve in [c for c in curves if c['axis'] == axis]:
      mine = [r for r in records if r['axis'] == axis
              and r['framework'] == curve['framework']]
      x = np.array([r['value'] for r in mine], np.float64)
      times = [np.asarray(r['step_times_s']) * 1e3 for r in mine]
      median = np.array([np.median(t) for t in times])
      low = median - np.array([np.percentile(t, 25) for t in times])
      high = np.array([np.percentile(t, 75) for t in times]) - median
      name = 'ours (JAX)' if curve['framework'] == 'jax' else 'HF PEFT'
      line = ax.errorbar(x, median, yerr=[low, high], marker='o',
                         capsize=3, label=name)[0]
      grid = np.linspace(x.min(), x.max(), 50)
      ax.plot(grid, 1e3 * (curve['intercept'] + curve['slope'] * grid), '--',
              color=line.get_color(), alpha=0.6,
              label=f'{name} fit: {1e3 * curve["slope"]:.2f} ms per '
                    f'{_UNITS[axis]}')
    ax.set_xlabel(axis.replace('_', ' '))
    ax.set_ylabel('prompt-tuning step time (ms)')
    r = records[0]
    ax.set_title(f'{r["size"]} T5 1.1, {r["dtype"]}, {r["device"]}',
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(plot_dir, f'scaling_{axis}.png')
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
  return paths
