"""What the benchmark suites share: sizes, batches, timing, analyses, tables.

The suites (`bench` for train steps, `bench_serving` for inference and
serving, `bench_scaling` for curves) time *cases*: objects with a `name`, an
`info` dict, a list of `times` and `run(steps) -> seconds`, where `run`
returns only once the results are ready. `Timed` makes a case of any
function; the train-step case of `bench` keeps its own state. Cases of one
comparison are warmed up, then timed in interleaved order (ABBA: A B, B A,
A B, ...), so that noise on a shared machine falls on all of them, and only
ratios measured in the same run are reported.

Compilation is counted, not assumed: `trainer.TraceCounter` counts the traces of a
jitted function (jit traces it exactly when it compiles a new
specialisation), and `count_backend_compiles` counts every XLA compilation in
the process while it is open (e.g. around the timed repetitions, where there
must be none).

Letters: B batch, T input length, U target length.
"""
import contextlib
import dataclasses
import datetime
import os
import platform
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import t5
from prompt_tuning.training import trainer
from prompt_tuning.utils import tables

PyTree = Any

# Small presets beside `t5.CONFIGS` (small, base, large, xl, xxl).
SIZES = {
    # The PEFT anchor config: T5 1.1 at d_model 256, 4+4 layers, T5's
    # vocabulary.
    'anchor': t5.T5Config(vocab_size=32128, emb_dim=256, num_heads=4,
                          head_dim=64, mlp_dim=1024, num_encoder_layers=4,
                          num_decoder_layers=4),
    # The embedded default model's sizes (gin/embedded/model.gin).
    'embedded': t5.T5Config(vocab_size=868, emb_dim=128, num_heads=4,
                            head_dim=32, mlp_dim=256, num_encoder_layers=2,
                            num_decoder_layers=2),
    # For smoke tests: compiles in seconds.
    'tiny': t5.T5Config(vocab_size=101, emb_dim=24, num_heads=2, head_dim=12,
                        mlp_dim=40, num_encoder_layers=1, num_decoder_layers=1,
                        relative_attention_num_buckets=8,
                        relative_attention_max_distance=16),
    **t5.CONFIGS,
}

DTYPES = ('float32', 'bfloat16')


def size_config(size: str, dtype: str = 'float32', remat: bool = False
                ) -> t5.T5Config:
  """The T5Config of a size name, with the activation dtype and remat set.

  Raises:
    ValueError: an unknown size or dtype.
  """
  if size not in SIZES:
    raise ValueError(f'--size={size!r} is not a known size; expected one of '
                     f'{sorted(SIZES)}')
  if dtype not in DTYPES:
    raise ValueError(f'--dtype={dtype!r}; expected one of {list(DTYPES)}')
  return dataclasses.replace(SIZES[size], dtype=jnp.dtype(dtype), remat=remat)


def check_positive(**values: int) -> None:
  """Raises ValueError naming the first flag whose value is below 1."""
  for flag, value in values.items():
    if value < 1:
      raise ValueError(f'--{flag}={value}; expected a positive integer')


def random_batch(rng: np.random.Generator, batch_size: int, input_length: int,
                 target_length: int, vocab_size: int) -> Dict[str, np.ndarray]:
  """A fixed-shape batch of random tokens, no padding.

  Returns:
    encoder_input_tokens [B, T], decoder_input_tokens [B, U] (the targets
    shifted right), decoder_target_tokens [B, U], decoder_loss_weights [B, U]
    (all ones); int32.
  """
  # Ids 0 (padding) and 1 (EOS) are avoided so every position is a token.
  inputs = rng.integers(2, vocab_size, (batch_size, input_length), np.int32)
  targets = rng.integers(2, vocab_size, (batch_size, target_length), np.int32)
  return {
      'encoder_input_tokens': inputs,
      'decoder_input_tokens': np.pad(targets[:, :-1], ((0, 0), (1, 0))),
      'decoder_target_tokens': targets,
      'decoder_loss_weights': np.ones_like(targets),
  }


def environment() -> Dict[str, Any]:
  """The machine and software a record was measured with."""
  device = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      names = [line.split(':', 1)[1].strip() for line in f
               if line.startswith('model name')]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {
      'device': device.device_kind, 'platform': device.platform,
      'num_devices': jax.device_count(), 'jax_version': jax.__version__,
      'prng_impl': str(jax.config.jax_default_prng_impl),
      'cpu': cpu, 'cpu_count': os.cpu_count(),
      'date': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
  }


# ----------------------------------------------------------------------------
# Counting compilations.
# ----------------------------------------------------------------------------


def jit_counted(fn: Callable[..., Any], counter: trainer.TraceCounter,
                **jit_kwargs) -> Callable[..., Any]:
  """`jax.jit(fn, **jit_kwargs)` whose traces `counter` counts."""

  def counted(*args, **kwargs):
    counter()
    return fn(*args, **kwargs)

  return jax.jit(counted, **jit_kwargs)


_BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


@contextlib.contextmanager
def count_backend_compiles() -> Iterator[List[float]]:
  """Collects the duration of every XLA compilation while open.

  Yields a list that grows by one entry (seconds) per compilation in this
  process, whatever function it is for.
  """
  durations = []

  def listener(event: str, duration: float, **_) -> None:
    if event == _BACKEND_COMPILE_EVENT:
      durations.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield durations
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


# ----------------------------------------------------------------------------
# Analyses of the jaxpr and of the compiled executable.
# ----------------------------------------------------------------------------


def _sub_jaxprs(value):
  """The jaxprs inside an equation parameter (closed or open, or lists)."""
  if hasattr(value, 'eqns'):
    yield value
  elif hasattr(value, 'jaxpr') and hasattr(value.jaxpr, 'eqns'):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)


def dot_shapes(jaxpr) -> List[Tuple[int, ...]]:
  """Result shapes of every `dot_general` in a jaxpr, nested calls included."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  shapes = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      shapes.extend(tuple(v.aval.shape) for v in eqn.outvars)
    for param in eqn.params.values():
      for sub in _sub_jaxprs(param):
        shapes.extend(dot_shapes(sub))
  return shapes


def count_weight_gradient_dots(jaxpr, params: PyTree) -> int:
  """Matmuls in a step's jaxpr whose result has a weight matrix's shape.

  Every T5 matmul on activations keeps a batch (and length) axis, so its
  result has 3 or more axes; only a weight gradient (activations contracted
  over batch and length) comes out with the 2-D shape of a parameter (or its
  transpose). A prompt-tuning step must have none: no gradient for frozen
  weights.

  Args:
    jaxpr: the step's (closed) jaxpr.
    params: the full parameter tree (its 2-D shapes are the weight shapes).
  """
  weight_shapes = set()
  for x in jax.tree_util.tree_leaves(params):
    if len(x.shape) == 2:
      weight_shapes.update({tuple(x.shape), tuple(x.shape)[::-1]})
  return sum(1 for shape in dot_shapes(jaxpr) if shape in weight_shapes)


def compiled_flops(compiled) -> float:
  """FLOPs XLA counts for one call of a compiled executable."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0]
  return float((analysis or {}).get('flops', float('nan')))


def compiled_memory(compiled) -> Dict[str, Optional[int]]:
  """Byte counts from the compiled executable's `memory_analysis()`.

  NOTE: donated inputs share their buffers with the outputs (`alias`), so the
  peak is arguments + outputs - aliased + temporaries; the plain sum
  arguments + outputs + temporaries counts the donated state twice.
  """
  stats = compiled.memory_analysis()
  if stats is None:
    return {k: None for k in ('argument', 'output', 'alias', 'temp', 'peak')}
  argument = int(stats.argument_size_in_bytes)
  output = int(stats.output_size_in_bytes)
  alias = int(stats.alias_size_in_bytes)
  temp = int(stats.temp_size_in_bytes)
  return {'argument': argument, 'output': output, 'alias': alias,
          'temp': temp, 'peak': argument + output - alias + temp}


def device_memory(device) -> Dict[str, Optional[int]]:
  """`bytes_in_use` and the process's `peak_bytes_in_use` (None on CPU)."""
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  stats = stats or {}
  return {'bytes_in_use': stats.get('bytes_in_use'),
          'peak_bytes_in_use': stats.get('peak_bytes_in_use')}


# ----------------------------------------------------------------------------
# Timing.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Timed:
  """A case made of a function: `run` calls it and waits for its outputs.

  Attributes:
    name: the case's name in records and tables.
    call: one step; returns what to wait for (device arrays, or anything
      when `wait` is a no-op, e.g. PyTorch on CPU).
    wait: blocks until `call`'s outputs are ready.
    info: what is known of the case besides its times (goes into its record).
    times: seconds of each timed repetition.
  """
  name: str
  call: Callable[[], Any]
  wait: Callable[[Any], Any] = jax.block_until_ready
  info: Dict[str, Any] = dataclasses.field(default_factory=dict)
  times: List[float] = dataclasses.field(default_factory=list)

  def run(self, steps: int = 1) -> float:
    """Runs `steps` calls; the wall time until the last one's outputs exist."""
    start = time.perf_counter()
    outputs = None
    for _ in range(steps):
      outputs = self.call()
    self.wait(outputs)
    return time.perf_counter() - start


def warm_up(case, steps: int) -> None:
  """Runs the first step (its time is `info['first_step_s']`; for a jitted
  case it includes the compilation unless that was done ahead) and `steps - 1`
  more, untimed."""
  case.info['first_step_s'] = case.run()
  if steps > 1:
    case.run(steps - 1)


def interleave(cases: Sequence[Any], repeats: int, steps_per_repeat: int = 1
               ) -> int:
  """Times each case `repeats` times, alternating the order (ABBA).

  Repetition r runs the cases in order when r is even and in reverse when r
  is odd, so each case runs as often first as last. Appends each
  repetition's seconds to `case.times`.

  Returns:
    The number of XLA compilations in the process while timing (0 when every
    case was warmed up).
  """
  with count_backend_compiles() as compiles:
    for repeat in range(repeats):
      order = list(cases) if repeat % 2 == 0 else list(cases)[::-1]
      for case in order:
        case.times.append(case.run(steps_per_repeat))
  return len(compiles)


def summarise(times: Sequence[float], steps_per_repeat: int = 1,
              per_step: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
  """Median and spread of the step time, and rates of `per_step` work.

  Args:
    times: seconds of each repetition of `steps_per_repeat` steps.
    steps_per_repeat: steps in one repetition.
    per_step: work per step, e.g. {'tokens': 1088}; each gives
      `<name>_per_step` and `<name>_per_s` (at the median step time).
  """
  step_times = np.asarray(times, np.float64) / steps_per_repeat
  median = float(np.median(step_times))
  q25, q75 = np.percentile(step_times, [25, 75])
  summary = {
      'step_time_median_s': median,
      'step_time_min_s': float(step_times.min()),
      'step_time_max_s': float(step_times.max()),
      'step_time_iqr_s': float(q75 - q25),
      'step_times_s': [float(t) for t in step_times],
  }
  for name, amount in (per_step or {}).items():
    summary[f'{name}_per_step'] = amount
    summary[f'{name}_per_s'] = amount / median
  return summary


# ----------------------------------------------------------------------------
# The machine's own ceiling and load.
# ----------------------------------------------------------------------------


def matmul_cases(shapes: Sequence[Tuple[int, int, int]], dtype: str,
                 seed: int = 0) -> List[Timed]:
  """One jitted plain matmul `[M, K] x [K, N]` case per shape.

  Timed in the same interleaving as the steps, they measure what this
  process gets from the machine for a matmul right then: the ceiling the
  steps' FLOP/s are compared with (`matmul_peak`).
  """
  rng = np.random.default_rng(seed)
  matmul = jax.jit(jnp.matmul)
  cases = []
  for m, k, n in shapes:
    a = jnp.asarray(rng.normal(size=(m, k)), dtype)
    b = jnp.asarray(rng.normal(size=(k, n)), dtype)
    cases.append(Timed(f'matmul_{m}x{k}x{n}',
                       lambda f=matmul, a=a, b=b: f(a, b),
                       info={'shape': [m, k, n], 'flops': 2.0 * m * k * n}))
  return cases


def matmul_peak(cases: Sequence[Timed], steps_per_repeat: int = 1
                ) -> Dict[str, Any]:
  """The best median FLOP/s of timed `matmul_cases`, and each shape's."""
  rates = {}
  for case in cases:
    median = float(np.median(case.times)) / steps_per_repeat
    rates['x'.join(map(str, case.info['shape']))] = case.info['flops'] / median
  best = max(rates, key=rates.get)
  return {'matmul_peak_flops_per_s': rates[best],
          'matmul_peak_shape': best, 'matmul_flops_per_s': rates}


# A plain matmul loop, the "loaded machine" of `background_load`.
_LOAD_LOOP = (
    'import numpy as np\n'
    'a = np.random.default_rng(0).normal(size=(1024, 1024)).astype("f4")\n'
    'while True:\n'
    '  a = np.tanh(a @ a)\n')


@contextlib.contextmanager
def background_load(threads: int) -> Iterator[Dict[str, Any]]:
  """Runs a `threads`-thread numpy matmul loop in a child process meanwhile
  (none for 0); yields what to record of it."""
  if threads <= 0:
    yield {'background_load_threads': 0}
    return
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, **{name: str(threads) for name in (
      'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')})
  child = subprocess.Popen([sys.executable, '-c', _LOAD_LOOP], env=env,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  try:
    time.sleep(1.0)  # let it start multiplying
    yield {'background_load_threads': threads,
           'background_load': f'numpy matmul loop (1024^2, float32), '
                              f'{threads} threads, pid {child.pid}'}
  finally:
    child.kill()
    child.wait()


def load_average() -> Optional[List[float]]:
  """The machine's 1, 5 and 15 minute load averages (None where unknown)."""
  try:
    return [float(x) for x in os.getloadavg()]
  except (AttributeError, OSError):
    return None


# ----------------------------------------------------------------------------
# Tables.
# ----------------------------------------------------------------------------


def _prng(record: Dict[str, Any]) -> str:
  impl = record.get('prng_impl')
  return '' if impl in (None, 'threefry2x32') else f'PRNG {impl}; '


def config_line(record: Dict[str, Any]) -> str:
  """One line naming the model, shapes, repeats, machine and date of a record
  (the shapes the record has: batch, inputs, targets)."""
  r = record
  shapes = ', '.join(f'{name} {r[key]}' for key, name in (
      ('batch_size', 'batch'), ('input_length', 'inputs'),
      ('target_length', 'targets')) if r.get(key) is not None)
  return (f'{r["size"]} (d_model {r["emb_dim"]}, {r["num_encoder_layers"]}+'
          f'{r["num_decoder_layers"]} layers, {r["num_heads"]} heads x '
          f'{r["head_dim"]}, mlp {r["mlp_dim"]}, vocab {r["vocab_size"]}, '
          f'{r["dtype"]}{", remat" if r.get("remat") else ""}), {shapes}; '
          f'{_prng(r)}'
          f'{r["repeats"]} repeats x {r["steps_per_repeat"]} step(s) after '
          f'{r["warmup_steps"]} warm-up; device {r["device"]} '
          f'({r["platform"]}, {r["num_devices"]} device(s), '
          f'{r["cpu_count"]} CPU cores: {r["cpu"]}), jax {r["jax_version"]}, '
          f'{r["date"]}')


def ratio(a, b) -> Optional[float]:
  """a / b, or None when either is missing or b is 0."""
  if a is None or b is None or not b:
    return None
  return a / b


def _scaled(value: float, units: Sequence[str], base: float) -> str:
  for unit in units[:-1]:
    if abs(value) < base:
      return f'{value:.2f} {unit}'
    value /= base
  return f'{value:.2f} {units[-1]}'


def fmt(value, kind: str) -> str:
  """A value as table text: kind is ms, s, bytes, flops, ratio, pct, int, num
  or text."""
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return 'n/a'
  if kind == 'ms':
    return f'{value * 1e3:.2f} ms'
  if kind == 's':
    return f'{value:.2f} s'
  if kind == 'bytes':
    return _scaled(value, ('B', 'KiB', 'MiB', 'GiB', 'TiB'), 1024.0)
  if kind == 'flops':
    return _scaled(value, ('FLOP', 'kFLOP', 'MFLOP', 'GFLOP', 'TFLOP',
                           'PFLOP'), 1000.0)
  if kind == 'ratio':
    return f'{value:.3f}'
  if kind == 'pct':
    return f'{100 * value:.1f}%'
  if kind == 'int':
    return f'{int(value):,}'
  if kind == 'text':
    return str(value)
  return f'{value:,.0f}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: str = 'l') -> str:
  """A Markdown table (no trailing newline); the first column left-aligned,
  the others `align` ('l' or 'r')."""
  return tables.markdown_table(
      header, rows, align='l' + ('r' if align == 'r' else 'l') * (
          len(header) - 1), escape=False, trailing_newline=False)
