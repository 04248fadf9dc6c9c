r"""Benchmarks a prompt-tuning step against a model-tuning step, side by side.

    python -m prompt_tuning.bench                       # the anchor config
    python -m prompt_tuning.bench --size=small --batch_size=8 --repeats=10
    python -m prompt_tuning.bench --size=tiny --repeats=2 --output=/tmp/b.jsonl

For one model size and batch it builds the trainer's jitted step twice from
random weights: prompt tuning (`trainer.PROMPT_REGEX` trainable, Adafactor
with the paper's learning rate 0.3) and model tuning (`trainer.
MODEL_TUNING_REGEX`, learning rate 0.001, the paper's model-tuning baseline;
the learning rate does not change the cost of a step). Both steps are made as
`trainer.train` makes its step: `trainer.train_step` on the trainable/frozen
split of `trainer.split_params`, dropout keys folded from the step number,
`NamedSharding`s from the logical axis rules, trainable parameters and
optimizer state donated.

Dropout is on (T5 1.1's rate 0.1, as in the paper's runs). Each step is
compiled once (trace, lower and compile times are reported apart from the step
time), run `--warmup_steps` times untimed (the first step's time is reported),
then timed `--repeats` times with the two cases interleaved (ABBA order), so
machine noise falls on both. A fixed random token batch is fed every step (no
input pipeline).

Reported per case (one JSON line each, then a Markdown table of the ratios):
step time (median, min, max, interquartile range), tokens/s (encoder plus
decoder tokens of the batch, the prompt not counted), trainable parameters,
optimizer state bytes, FLOPs of the compiled step and of the forward pass
(XLA's `cost_analysis`), the number of weight-gradient matmuls in the step's
jaxpr, and memory from the compiled executable's `memory_analysis()` (plus the
device's `memory_stats()` where the backend has them; not on CPU). The
executable's figures are per step and exact for what XLA planned; the device's
are process-wide (see `_warm_up`).

By default model tuning runs the same prompted model (every parameter, the
prompt included, trainable), so both steps share one forward pass and differ
only by the weight gradients and the optimizer; `--nomodel_tuning_prompt`
benchmarks the paper's model-tuning baseline without a prompt instead.
"""
import dataclasses
import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning import models
from prompt_tuning import partitioning
from prompt_tuning import t5
from prompt_tuning import trainer

PyTree = Any

# Small presets beside `t5.CONFIGS` (small, base, large, xl, xxl).
SIZES = {
    # The PEFT anchor config: T5 1.1 at d_model 256, 4+4 layers, T5's
    # vocabulary; a step takes about a second on a laptop CPU.
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

# NOTE: the paper's learning rates: 0.3 for prompt tuning; 0.001 (constant,
# Adafactor) for its model-tuning baseline. Other Adafactor settings are the
# same for both cases, so the two steps differ only in what they train.
PROMPT_TUNING_LR = 0.3
MODEL_TUNING_LR = 1e-3

CASES = ('prompt_tuning', 'model_tuning')


def size_config(size: str, dtype: str = 'float32') -> t5.T5Config:
  """The T5Config of a size name, with the activation dtype set.

  Raises:
    ValueError: an unknown size or dtype.
  """
  if size not in SIZES:
    raise ValueError(f'--size={size!r} is not a known size; expected one of '
                     f'{sorted(SIZES)}')
  if dtype not in ('float32', 'bfloat16'):
    raise ValueError(f'--dtype={dtype!r}; expected float32 or bfloat16')
  return dataclasses.replace(SIZES[size], dtype=jnp.dtype(dtype))


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
  return float(analysis.get('flops', float('nan')))


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
# One case: a jitted train step and its state.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
  """A compiled train step with its state, and what was measured of it."""
  name: str
  learning_rate: float
  prompt_length: int
  compiled: Any
  trainable: PyTree
  frozen: PyTree
  opt_state: PyTree
  batch: Dict[str, jax.Array]
  info: Dict[str, Any]
  step: int = 0
  times: List[float] = dataclasses.field(default_factory=list)

  def run(self, steps: int = 1) -> float:
    """Runs `steps` steps; returns the wall time until the results are ready."""
    start = time.perf_counter()
    for _ in range(steps):
      self.trainable, self.opt_state, metrics = self.compiled(
          self.trainable, self.frozen, self.opt_state, self.batch,
          np.int32(self.step))
      self.step += 1
    jax.block_until_ready((self.trainable, self.opt_state, metrics))
    return time.perf_counter() - start


def random_setup(config: t5.T5Config, prompt_length: int, seed: int = 0
                 ) -> Tuple[models.EncoderDecoderModel, trainer.ModelSetup]:
  """The model and its random weights, laid out as the trainer lays them."""
  model = models.EncoderDecoderModel(
      t5.Transformer(config, prompt_length=prompt_length))
  return model, trainer.setup_model(model, None, seed=seed)


def build_case(name: str, model: models.EncoderDecoderModel,
               setup: trainer.ModelSetup, trainable_regex: str,
               learning_rate: float, batch: Dict[str, np.ndarray],
               seed: int = 0) -> Case:
  """The trainer's step for `setup`'s weights, compiled and analysed.

  The step is traced, lowered and compiled here (each timed); its jaxpr and
  the compiled executable are analysed. The trainable part is copied (the
  step donates it), so cases may share one `setup`: its frozen weights are
  never written.
  """
  mesh, rules = setup.mesh, setup.rules
  prompt_length = model.module.prompt_length
  trainable, frozen = trainer.split_params(setup.params, [trainable_regex])
  trainable_shardings, frozen_shardings = trainer.split_params(
      partitioning.unbox(setup.shardings), [trainable_regex])
  optimizer = trainer.adafactor(learning_rate=learning_rate)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_state = jax.jit(optimizer.init, out_shardings=replicated)(trainable)
  batch_sharding = partitioning.data_sharding(mesh)
  global_batch = partitioning.host_local_to_global(batch, mesh)
  dropout_root = jax.random.split(jax.random.PRNGKey(seed))[1]

  jitted_step = trainer.make_train_step(model, optimizer, mesh,
                                        trainable_shardings, frozen_shardings,
                                        dropout_root)

  def forward_fn(trainable, frozen, batch, step):
    dropout_rng = jax.random.fold_in(dropout_root, step)
    return model.loss_fn(trainer.merge_params(trainable, frozen), batch,
                         dropout_rng)[0]

  jitted_forward = jax.jit(
      forward_fn, in_shardings=(trainable_shardings, frozen_shardings,
                                batch_sharding, replicated))

  with partitioning.mesh_context(mesh, rules):
    start = time.perf_counter()
    traced = jitted_step.trace(trainable, frozen, opt_state, global_batch,
                               np.int32(0))
    lowered = traced.lower()
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    forward = jitted_forward.lower(trainable, frozen, global_batch,
                                   np.int32(0)).compile()

  n_trainable, b_trainable = trainer.count_params(trainable)
  n_frozen, b_frozen = trainer.count_params(frozen)
  _, b_opt = trainer.count_params(opt_state)
  dots = dot_shapes(traced.jaxpr)
  flops = compiled_flops(compiled)
  forward_flops = compiled_flops(forward)
  memory = compiled_memory(compiled)
  info = {
      'trainable_regex': trainable_regex,
      'learning_rate': learning_rate,
      'prompt_length': prompt_length,
      'trainable_params': n_trainable,
      'trainable_bytes': b_trainable,
      'frozen_params': n_frozen,
      'frozen_bytes': b_frozen,
      'opt_state_bytes': b_opt,
      'trace_lower_s': lower_s,
      'compile_s': compile_s,
      'flops': flops,
      'forward_flops': forward_flops,
      'flops_per_forward': flops / forward_flops,
      'dot_generals': len(dots),
      'weight_gradient_dots': count_weight_gradient_dots(traced.jaxpr,
                                                         setup.params),
      **{f'compiled_{k}_bytes': v for k, v in memory.items()},
  }
  # The step donates its trainable part: give it buffers of its own, so
  # another case sharing `setup` never sees a donated, deleted array.
  trainable = jax.tree_util.tree_map(
      lambda x: jax.device_put(x, x.sharding, may_alias=False), trainable)
  return Case(name=name, learning_rate=learning_rate,
              prompt_length=prompt_length, compiled=compiled,
              trainable=trainable, frozen=frozen, opt_state=opt_state,
              batch=global_batch, info=info)


# ----------------------------------------------------------------------------
# The benchmark.
# ----------------------------------------------------------------------------


def _warm_up(case: Case, device, steps: int) -> None:
  """Runs the first step (timed apart) and `steps - 1` more, untimed.

  NOTE: the device's `peak_bytes_in_use` is the process's peak so far, and
  both cases' buffers are alive side by side. Prompt tuning warms up first,
  so its reading is its own; model tuning's also holds prompt tuning's
  resident buffers (the frozen weights), given as `device_bytes_in_use_before`
  (measured just before the case's first step, its own inputs included).
  """
  before = device_memory(device)['bytes_in_use']
  case.info['first_step_s'] = case.run()
  if steps > 1:
    case.run(steps - 1)
  memory = device_memory(device)
  case.info['device_bytes_in_use_before'] = before
  case.info['device_bytes_in_use'] = memory['bytes_in_use']
  case.info['device_peak_bytes_in_use'] = memory['peak_bytes_in_use']


def _summarise(case: Case, tokens_per_step: int,
               steps_per_repeat: int) -> Dict[str, Any]:
  step_times = np.asarray(case.times) / steps_per_repeat
  median = float(np.median(step_times))
  q25, q75 = np.percentile(step_times, [25, 75])
  return {
      'step_time_median_s': median,
      'step_time_min_s': float(step_times.min()),
      'step_time_max_s': float(step_times.max()),
      'step_time_iqr_s': float(q75 - q25),
      'step_times_s': [float(t) for t in step_times],
      'tokens_per_step': tokens_per_step,
      'tokens_per_s': tokens_per_step / median,
  }


def run_benchmark(size: str = 'anchor', batch_size: int = 8,
                  input_length: int = 128, target_length: int = 8,
                  prompt_length: int = 100, repeats: int = 10,
                  steps_per_repeat: int = 1, warmup_steps: int = 2,
                  dtype: str = 'float32',
                  model_tuning_prompt: bool = True, seed: int = 0
                  ) -> List[Dict[str, Any]]:
  """Measures both cases side by side; one record per case.

  Args:
    size: a name in `SIZES`.
    batch_size: B, the global batch.
    input_length: T, encoder tokens per example (the prompt adds P).
    target_length: U, decoder tokens per example.
    prompt_length: P.
    repeats: timed repetitions of each case, interleaved.
    steps_per_repeat: steps per timed repetition (the time is per step).
    warmup_steps: untimed steps of each case after compiling (the first is
      reported as `first_step_s`).
    dtype: activation dtype, 'float32' or 'bfloat16'.
    model_tuning_prompt: model tuning trains the same prompted model (same
      forward pass); False: model tuning has no prompt (the paper's baseline).
    seed: weights, batch and dropout.

  Returns:
    [prompt tuning record, model tuning record], flat JSON-able dicts.

  Raises:
    ValueError: a bad size, dtype or length.
  """
  config = size_config(size, dtype)
  for flag, value in (('batch_size', batch_size), ('input_length',
                                                   input_length),
                      ('target_length', target_length),
                      ('prompt_length', prompt_length), ('repeats', repeats),
                      ('steps_per_repeat', steps_per_repeat),
                      ('warmup_steps', warmup_steps)):
    if value < 1:
      raise ValueError(f'--{flag}={value}; expected a positive integer')
  batch = random_batch(np.random.default_rng(seed), batch_size, input_length,
                       target_length, config.vocab_size)
  device = jax.devices()[0]
  common = {
      'size': size, 'dtype': dtype, 'emb_dim': config.emb_dim,
      'num_heads': config.num_heads, 'head_dim': config.head_dim,
      'mlp_dim': config.mlp_dim,
      'num_encoder_layers': config.num_encoder_layers,
      'num_decoder_layers': config.num_decoder_layers,
      'vocab_size': config.vocab_size, 'batch_size': batch_size,
      'input_length': input_length, 'target_length': target_length,
      'repeats': repeats, 'steps_per_repeat': steps_per_repeat,
      'warmup_steps': warmup_steps,
      'device': device.device_kind, 'platform': device.platform,
      'num_devices': jax.device_count(), 'jax_version': jax.__version__,
  }
  # Prompt tuning is built and warmed up first, so the device's peak memory
  # after its warm-up is its own (the process peak only grows).
  t5_model, setup = random_setup(config, prompt_length, seed)
  prompt = build_case('prompt_tuning', t5_model, setup, trainer.PROMPT_REGEX,
                      PROMPT_TUNING_LR, batch, seed)
  _warm_up(prompt, device, warmup_steps)
  if not model_tuning_prompt:
    t5_model, setup = random_setup(config, 0, seed)
  model = build_case('model_tuning', t5_model, setup,
                     trainer.MODEL_TUNING_REGEX, MODEL_TUNING_LR, batch, seed)
  del setup
  _warm_up(model, device, warmup_steps)

  for repeat in range(repeats):
    order = (prompt, model) if repeat % 2 == 0 else (model, prompt)
    for case in order:
      case.times.append(case.run(steps_per_repeat))

  tokens_per_step = batch_size * (input_length + target_length)
  return [{'case': case.name, **common, **case.info,
           **_summarise(case, tokens_per_step, steps_per_repeat)}
          for case in (prompt, model)]


def _ratio(a, b) -> Optional[float]:
  if a is None or b is None or not b:
    return None
  return a / b


def _scaled(value: float, units: Sequence[str], base: float) -> str:
  for unit in units[:-1]:
    if abs(value) < base:
      return f'{value:.2f} {unit}'
    value /= base
  return f'{value:.2f} {units[-1]}'


def _fmt(value, kind: str) -> str:
  if value is None:
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
  if kind == 'int':
    return f'{int(value):,}'
  return f'{value:,.0f}'


def summary_table(records: Sequence[Dict[str, Any]]) -> str:
  """A Markdown table: prompt tuning, model tuning, and their ratio."""
  prompt, model = records
  rows = [
      ('step time, median', 'step_time_median_s', 'ms'),
      ('step time, min', 'step_time_min_s', 'ms'),
      ('step time, max', 'step_time_max_s', 'ms'),
      ('step time, IQR', 'step_time_iqr_s', 'ms'),
      ('tokens/s (enc+dec)', 'tokens_per_s', 'num'),
      ('compile', 'compile_s', 's'),
      ('trace + lower', 'trace_lower_s', 's'),
      ('first step', 'first_step_s', 's'),
      ('trainable params', 'trainable_params', 'int'),
      ('optimizer state', 'opt_state_bytes', 'bytes'),
      ('compiled peak (arg+out-alias+temp)', 'compiled_peak_bytes', 'bytes'),
      ('compiled temp', 'compiled_temp_bytes', 'bytes'),
      ('compiled arguments', 'compiled_argument_bytes', 'bytes'),
      ('device peak_bytes_in_use', 'device_peak_bytes_in_use', 'bytes'),
      ('step FLOPs', 'flops', 'flops'),
      ('forward FLOPs', 'forward_flops', 'flops'),
      ('step / forward FLOPs', 'flops_per_forward', 'ratio'),
      ('weight-gradient matmuls', 'weight_gradient_dots', 'int'),
  ]
  p = prompt
  lines = [
      f'{p["size"]} (d_model {p["emb_dim"]}, {p["num_encoder_layers"]}+'
      f'{p["num_decoder_layers"]} layers, {p["num_heads"]} heads x '
      f'{p["head_dim"]}, mlp {p["mlp_dim"]}, vocab {p["vocab_size"]}, '
      f'{p["dtype"]}), batch {p["batch_size"]}, inputs {p["input_length"]}, '
      f'targets {p["target_length"]}, prompt {p["prompt_length"]} '
      f'(model tuning: {model["prompt_length"]}); {p["repeats"]} repeats x '
      f'{p["steps_per_repeat"]} step(s); device {p["device"]} '
      f'({p["platform"]}, {p["num_devices"]} device(s)), jax '
      f'{p["jax_version"]}',
      '',
      '| | prompt tuning | model tuning | prompt / model |',
      '|---|---:|---:|---:|',
  ]
  for label, key, kind in rows:
    ratio = _ratio(prompt.get(key), model.get(key))
    lines.append(f'| {label} | {_fmt(prompt.get(key), kind)} | '
                 f'{_fmt(model.get(key), kind)} | {_fmt(ratio, "ratio")} |')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------

_SIZE = flags.DEFINE_string(
    'size', 'anchor', f'Model size, one of {sorted(SIZES)}.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Global batch size.')
_INPUT_LENGTH = flags.DEFINE_integer('input_length', 128,
                                     'Encoder input tokens per example.')
_TARGET_LENGTH = flags.DEFINE_integer('target_length', 8,
                                      'Decoder tokens per example.')
_PROMPT_LENGTH = flags.DEFINE_integer('prompt_length', 100,
                                      'Prompt length (paper: 100).')
_REPEATS = flags.DEFINE_integer('repeats', 10,
                                'Timed repetitions of each case.')
_STEPS_PER_REPEAT = flags.DEFINE_integer(
    'steps_per_repeat', 1, 'Steps per timed repetition (raise it on fast '
    'accelerators).')
_WARMUP_STEPS = flags.DEFINE_integer(
    'warmup_steps', 2, 'Untimed steps of each case after compiling.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Activation dtype (parameters stay float32).')
_MODEL_TUNING_PROMPT = flags.DEFINE_boolean(
    'model_tuning_prompt', True, 'Model tuning trains the same prompted '
    'model (same forward pass); --nomodel_tuning_prompt: no prompt, the '
    "paper's model-tuning baseline.")
_SEED = flags.DEFINE_integer('seed', 0, 'Weights, batch and dropout.')
_OUTPUT = flags.DEFINE_string(
    'output', None, 'JSON lines file the records are appended to.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    records = run_benchmark(
        size=_SIZE.value, batch_size=_BATCH_SIZE.value,
        input_length=_INPUT_LENGTH.value, target_length=_TARGET_LENGTH.value,
        prompt_length=_PROMPT_LENGTH.value, repeats=_REPEATS.value,
        steps_per_repeat=_STEPS_PER_REPEAT.value,
        warmup_steps=_WARMUP_STEPS.value, dtype=_DTYPE.value,
        model_tuning_prompt=_MODEL_TUNING_PROMPT.value, seed=_SEED.value)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  for record in records:
    print(json.dumps(record))
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'a') as f:
      for record in records:
        f.write(json.dumps(record) + '\n')
  print()
  print(summary_table(records))
  return 0


if __name__ == '__main__':
  app.run(main)
