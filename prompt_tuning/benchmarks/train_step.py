"""Benchmark suite: the prompt-tuning train step against model tuning and PEFT.

Run through `python -m prompt_tuning.bench --suite=train` (the default).

The steps are made as `trainer.train` makes its step:
`trainer.make_train_step` on the trainable/frozen split of
`trainer.split_params` (prompt tuning: `prompts.PROMPT_REGEX`, Adafactor at
the paper's learning rate 0.3; model tuning: `presets.MODEL_TUNING_REGEX`,
0.001, the paper's model-tuning baseline), dropout keys folded from the step
number, `NamedSharding`s from the logical axis rules, the trainable
parameters and optimizer state donated, the frozen weights optionally kept in
bfloat16 (`frozen_dtype`, `trainer.cast_frozen`) and the layers optionally
rematerialised (`remat`). Dropout is on (T5 1.1's rate 0.1, as in the
paper's runs). A fixed random token batch is fed every step (no input
pipeline). Each step is traced, lowered and compiled ahead (times reported),
then run through the jitted function, whose traces are counted: a step
compiled once, and no XLA compilation at all while timing, is what "no
recompilation after the first step" means here; both counts are reported.

With 'peft' among the frameworks, HF PEFT prompt tuning (`bench_torch`) runs
on the same T5 1.1, with the same weights, prompt and batch, in the same
interleaved timing; its initial loss is checked against ours. Prompt tuning
(ours and PEFT's) also runs without dropout, beside the dropout cases.

The ceiling is measured in the same run: plain jitted matmuls of the step's
shapes (encoder rows x d_model x mlp, and back; x heads) are timed in the
same interleaving, and every record gives its model FLOP/s as a fraction of
their best (`fraction_of_matmul_peak`), with the load average before and
after timing; `background_load` runs a matmul loop in a child process
meanwhile (a loaded machine) and records it.

Reported per case: step time (median, min, max, interquartile range),
tokens/s (encoder plus decoder tokens of the batch, the prompt not counted),
model FLOPs per step from the config (`model.costs`: 2W + 3A for prompt
tuning, 3W + 3A for model tuning) and XLA's count (`cost_analysis`), MFU on
accelerators with a known peak, trainable parameters, optimizer state bytes
(and what Adafactor should keep for the trainable shapes), the number of
weight-gradient matmuls in the step's jaxpr, and memory from the compiled
executable's `memory_analysis()` (plus the device's `memory_stats()` where
the backend has them; not on CPU).

By default model tuning runs the same prompted model (every parameter, the
prompt included, trainable), so both steps share one forward pass and differ
only by the weight gradients and the optimizer; `model_tuning_prompt=False`
benchmarks the paper's model-tuning baseline without a prompt instead.
"""
import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from prompt_tuning.methods import presets
from prompt_tuning.model import costs
from prompt_tuning.benchmarks import common as bench_utils
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.training import partitioning
from prompt_tuning.model import t5
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.training import trainer
from prompt_tuning.utils import trees

PyTree = Any

SIZES = bench_utils.SIZES

# NOTE: the paper's learning rates: 0.3 for prompt tuning; 0.001 (constant,
# Adafactor) for its model-tuning baseline. Other Adafactor settings are the
# same for both cases, so the two steps differ only in what they train.
PROMPT_TUNING_LR = 0.3
MODEL_TUNING_LR = 1e-3

CASES = ('prompt_tuning', 'model_tuning', 'prompt_tuning_no_dropout')
PEFT_CASE = 'peft_prompt_tuning'
PEFT_NO_DROPOUT_CASE = 'peft_prompt_tuning_no_dropout'
FRAMEWORKS = ('jax', 'peft')


# ----------------------------------------------------------------------------
# One case: a jitted train step and its state.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
  """A jitted train step with its state, and what was measured of it."""
  name: str
  learning_rate: float
  prompt_length: int
  step_fn: Any
  mesh: Any
  rules: Any
  trainable: PyTree
  frozen: PyTree
  opt_state: PyTree
  batch: Dict[str, jax.Array]
  info: Dict[str, Any]
  traces: trainer.TraceCounter
  step: int = 0
  times: List[float] = dataclasses.field(default_factory=list)

  def run(self, steps: int = 1) -> float:
    """Runs `steps` steps; returns the wall time until the results are ready."""
    start = time.perf_counter()
    with partitioning.mesh_context(self.mesh, self.rules):
      for _ in range(steps):
        self.trainable, self.opt_state, metrics = self.step_fn(
            self.trainable, self.frozen, self.opt_state, self.batch,
            np.int32(self.step))
        self.step += 1
    jax.block_until_ready((self.trainable, self.opt_state, metrics))
    return time.perf_counter() - start



def random_setup(config: t5.T5Config, prompt_length: int, seed: int = 0
                 ) -> Tuple[models.EncoderDecoderModel, setup_lib.ModelSetup]:
  """The model and its random weights, laid out as the trainer lays them."""
  model = models.EncoderDecoderModel(
      t5.Transformer(config, prompt_length=prompt_length))
  return model, setup_lib.setup_model(model, None, seed=seed)


def build_case(name: str, model: models.EncoderDecoderModel,
               setup: setup_lib.ModelSetup, trainable_regex: str,
               learning_rate: float, batch: Dict[str, np.ndarray],
               seed: int = 0, frozen_dtype: Optional[str] = None,
               analyse: bool = True, dropout: bool = True) -> Case:
  """The trainer's step for `setup`'s weights, compiled and analysed.

  The step is traced, lowered and compiled here (each timed); with `analyse`
  its jaxpr and the compiled executable are analysed (the forward pass is
  compiled too, for its FLOPs). The trainable part is copied (the step
  donates it), so cases may share one `setup`: its frozen weights are never
  written. `dropout=False` runs the step without dropout (the trainer's
  `use_dropout=False`).
  """
  mesh, rules = setup.mesh, setup.rules
  prompt_length = model.module.prompt_length
  trainable, frozen = trainer.split_params(setup.params, [trainable_regex])
  frozen = trainer.cast_frozen(frozen, frozen_dtype)
  trainable_shardings, frozen_shardings = trainer.split_params(
      partitioning.unbox(setup.shardings), [trainable_regex])
  optimizer = trainer.adafactor(learning_rate=learning_rate)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_state = jax.jit(optimizer.init, out_shardings=replicated)(trainable)
  batch_sharding = partitioning.data_sharding(mesh)
  global_batch = partitioning.host_local_to_global(batch, mesh)
  dropout_root = trainer.dropout_root_key(seed) if dropout else None
  traces = trainer.TraceCounter()
  jitted_step = trainer.make_train_step(model, optimizer, mesh,
                                        trainable_shardings, frozen_shardings,
                                        dropout_root, on_trace=traces)

  with partitioning.mesh_context(mesh, rules):
    start = time.perf_counter()
    traced = jitted_step.trace(trainable, frozen, opt_state, global_batch,
                               np.int32(0))
    lowered = traced.lower()
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start

  n_trainable, b_trainable = trainer.count_params(trainable)
  n_frozen, b_frozen = trainer.count_params(frozen)
  _, b_opt = trainer.count_params(opt_state)
  info = {
      'trainable_regex': trainable_regex,
      'learning_rate': learning_rate,
      'prompt_length': prompt_length,
      'frozen_dtype': frozen_dtype or 'float32',
      'dropout_rate': model.module.config.dropout_rate if dropout else 0.0,
      'trainable_params': n_trainable,
      'trainable_bytes': b_trainable,
      'frozen_params': n_frozen,
      'frozen_bytes': b_frozen,
      'opt_state_bytes': b_opt,
      'expected_opt_state_bytes': costs.adafactor_state_bytes(trainable),
      'opt_state_per_trainable_byte': b_opt / b_trainable,
      'trace_lower_s': lower_s,
      'compile_s': compile_s,
  }
  if analyse:

    def forward_fn(trainable, frozen, batch, step):
      dropout_rng = (None if dropout_root is None
                     else jax.random.fold_in(dropout_root, step))
      return model.loss_fn(trainer.merge_params(trainable, frozen), batch,
                           dropout_rng)[0]

    with partitioning.mesh_context(mesh, rules):
      forward = jax.jit(forward_fn, in_shardings=(
          trainable_shardings, frozen_shardings, batch_sharding,
          replicated)).lower(trainable, frozen, global_batch,
                             np.int32(0)).compile()
    dots = bench_utils.dot_shapes(traced.jaxpr)
    flops = bench_utils.compiled_flops(compiled)
    forward_flops = bench_utils.compiled_flops(forward)
    memory = bench_utils.compiled_memory(compiled)
    info.update({
        'flops': flops,
        'forward_flops': forward_flops,
        'flops_per_forward': flops / forward_flops,
        'dot_generals': len(dots),
        'weight_gradient_dots': bench_utils.count_weight_gradient_dots(
            traced.jaxpr, setup.params),
        **{f'compiled_{k}_bytes': v for k, v in memory.items()},
    })
  # The step donates its trainable part: give it buffers of its own, so
  # another case sharing `setup` never sees a donated, deleted array.
  trainable = jax.tree_util.tree_map(
      lambda x: jax.device_put(x, x.sharding, may_alias=False), trainable)
  return Case(name=name, learning_rate=learning_rate,
              prompt_length=prompt_length, step_fn=jitted_step, mesh=mesh,
              rules=rules, trainable=trainable, frozen=frozen,
              opt_state=opt_state, batch=global_batch, info=info,
              traces=traces)


# ----------------------------------------------------------------------------
# The train suite.
# ----------------------------------------------------------------------------


def _warm_up(case: Case, device, steps: int) -> None:
  """Runs the first step (timed apart) and `steps - 1` more, untimed.

  NOTE: the device's `peak_bytes_in_use` is the process's peak so far, and
  both cases' buffers are alive side by side. Prompt tuning warms up first,
  so its reading is its own; model tuning's also holds prompt tuning's
  resident buffers (the frozen weights), given as `device_bytes_in_use_before`
  (measured just before the case's first step, its own inputs included).
  """
  before = bench_utils.device_memory(device)['bytes_in_use']
  bench_utils.warm_up(case, steps)
  memory = bench_utils.device_memory(device)
  case.info['device_bytes_in_use_before'] = before
  case.info['device_bytes_in_use'] = memory['bytes_in_use']
  case.info['device_peak_bytes_in_use'] = memory['peak_bytes_in_use']


def _check_frameworks(frameworks: Sequence[str]) -> None:
  unknown = sorted(set(frameworks) - set(FRAMEWORKS))
  if unknown or 'jax' not in frameworks:
    raise ValueError(f'--frameworks={",".join(frameworks)}; expected jax '
                     f'and optionally peft (of {list(FRAMEWORKS)})')


def run_benchmark(size: str = 'anchor', batch_size: int = 8,
                  input_length: int = 128, target_length: int = 8,
                  prompt_length: int = 100, repeats: int = 10,
                  steps_per_repeat: int = 1, warmup_steps: int = 2,
                  dtype: str = 'float32', frozen_dtype: Optional[str] = None,
                  remat: bool = False, model_tuning_prompt: bool = True,
                  frameworks: Sequence[str] = ('jax',), seed: int = 0,
                  background_load: int = 0) -> List[Dict[str, Any]]:
  """The train suite: every case side by side; one record per case.

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
    frozen_dtype: None (float32) or 'bfloat16', the frozen weights' dtype.
    remat: rematerialise the encoder and decoder layers.
    model_tuning_prompt: model tuning trains the same prompted model (same
      forward pass); False: model tuning has no prompt (the paper's baseline).
    frameworks: 'jax' (ours) and optionally 'peft' (HF PEFT prompt tuning on
      the same weights; needs torch, transformers and peft).
    seed: weights, batch and dropout.
    background_load: threads of a numpy matmul loop run in a child process
      while the cases warm up and are timed (0: none), a loaded machine.

  Every case is also run without dropout beside its dropout one (prompt
  tuning, and PEFT's), and plain matmuls of the step's shapes
  (`bench_utils.matmul_cases`) are timed in the same interleaving: each
  record gives its model FLOP/s as a fraction of their best
  (`fraction_of_matmul_peak`), and the load average before and after timing.

  Returns:
    Records of prompt tuning, model tuning, prompt tuning without dropout
    (and PEFT prompt tuning with and without dropout): flat JSON-able dicts.

  Raises:
    ValueError: a bad size, dtype, length or framework.
    ImportError: 'peft' asked for but not installed.
  """
  config = bench_utils.size_config(size, dtype, remat)
  bench_utils.check_positive(
      batch_size=batch_size, input_length=input_length,
      target_length=target_length, prompt_length=prompt_length,
      repeats=repeats, steps_per_repeat=steps_per_repeat,
      warmup_steps=warmup_steps)
  frozen_dtype = None if frozen_dtype == 'float32' else frozen_dtype
  if frozen_dtype is not None and frozen_dtype not in trainer.FROZEN_DTYPES:
    raise ValueError(f'--frozen_dtype={frozen_dtype!r}; expected one of '
                     f'{list(trainer.FROZEN_DTYPES)}')
  _check_frameworks(frameworks)
  if 'peft' in frameworks:
    from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
    bench_torch.versions()  # raises ImportError with the install hint
  batch = bench_utils.random_batch(np.random.default_rng(seed), batch_size,
                                   input_length, target_length,
                                   config.vocab_size)
  device = jax.devices()[0]
  env = bench_utils.environment()
  common = {
      'suite': 'train', 'size': size, 'dtype': dtype, 'remat': remat,
      'emb_dim': config.emb_dim, 'num_heads': config.num_heads,
      'head_dim': config.head_dim, 'mlp_dim': config.mlp_dim,
      'num_encoder_layers': config.num_encoder_layers,
      'num_decoder_layers': config.num_decoder_layers,
      'vocab_size': config.vocab_size, 'batch_size': batch_size,
      'input_length': input_length, 'target_length': target_length,
      'repeats': repeats, 'steps_per_repeat': steps_per_repeat,
      'warmup_steps': warmup_steps, **env,
  }
  with bench_utils.background_load(background_load) as load:
    common.update(load)
    return _run_cases(config, common, batch, device, seed, prompt_length,
                      frozen_dtype, warmup_steps, model_tuning_prompt,
                      frameworks, repeats, steps_per_repeat)


def _run_cases(config, common, batch, device, seed, prompt_length,
               frozen_dtype, warmup_steps, model_tuning_prompt, frameworks,
               repeats, steps_per_repeat) -> List[Dict[str, Any]]:
  """`run_benchmark`'s cases, built, warmed up, timed and recorded."""
  batch_size, input_length = batch['encoder_input_tokens'].shape
  target_length = batch['decoder_target_tokens'].shape[1]
  dtype = common['dtype']
  # Prompt tuning is built and warmed up first, so the device's peak memory
  # after its warm-up is its own (the process peak only grows).
  t5_model, setup = random_setup(config, prompt_length, seed)
  prompt = build_case('prompt_tuning', t5_model, setup, prompts.PROMPT_REGEX,
                      PROMPT_TUNING_LR, batch, seed, frozen_dtype)
  prompt.info['framework'] = 'jax'
  _warm_up(prompt, device, warmup_steps)
  no_dropout = build_case('prompt_tuning_no_dropout', t5_model, setup,
                          prompts.PROMPT_REGEX, PROMPT_TUNING_LR, batch, seed,
                          frozen_dtype, dropout=False)
  no_dropout.info['framework'] = 'jax'
  _warm_up(no_dropout, device, warmup_steps)
  theirs = []
  if 'peft' in frameworks:
    # Same weights, prompt and batch as ours, before any step changes them.
    initial_prompt, weights = prompt_and_weights(setup.params)
    loss_ours = mean_token_loss(t5_model, setup.params, batch)
    for name, rate in ((PEFT_CASE, None),
                       (PEFT_NO_DROPOUT_CASE, 0.0)):
      theirs.append(peft_case(config, weights, initial_prompt, batch, name,
                              rate))
      theirs[-1].info['initial_loss_ours'] = loss_ours
  if not model_tuning_prompt:
    t5_model, setup = random_setup(config, 0, seed)
  model = build_case('model_tuning', t5_model, setup,
                     presets.MODEL_TUNING_REGEX, MODEL_TUNING_LR, batch, seed,
                     frozen_dtype)
  model.info['framework'] = 'jax'
  del setup
  _warm_up(model, device, warmup_steps)
  cases = [prompt, model, no_dropout]
  for case in theirs:
    bench_utils.warm_up(case, warmup_steps)
    cases.append(case)
  # The ceiling: plain matmuls of the step's shapes (encoder rows x d_model
  # x mlp, and back; x heads), timed in the same interleaving.
  rows = batch_size * (prompt_length + input_length)
  ceiling = bench_utils.matmul_cases(
      [(rows, config.emb_dim, config.mlp_dim),
       (rows, config.mlp_dim, config.emb_dim),
       (rows, config.emb_dim, config.num_heads * config.head_dim)], dtype,
      seed)
  for case in ceiling:
    bench_utils.warm_up(case, warmup_steps)

  load_before = bench_utils.load_average()
  compiles_while_timing = bench_utils.interleave(cases + ceiling, repeats,
                                                 steps_per_repeat)
  common = {**common, 'load_average_before': load_before,
            'load_average_after': bench_utils.load_average(),
            **bench_utils.matmul_peak(ceiling, steps_per_repeat)}

  tokens_per_step = batch_size * (input_length + target_length)
  records = []
  for case in cases:
    info = dict(case.info)
    method = ('model_tuning' if case.name == 'model_tuning'
              else 'prompt_tuning')
    case_prompt = info.get('prompt_length', prompt_length)
    model_flops = costs.step_flops(config, batch_size, input_length,
                                         target_length, case_prompt, method)
    summary = bench_utils.summarise(case.times, steps_per_repeat,
                                    {'tokens': tokens_per_step})
    record = {'case': case.name, **common, **info, **summary,
              'model_flops_per_step': model_flops,
              'model_flops_per_token': model_flops / tokens_per_step,
              'model_flops_per_s': model_flops / summary['step_time_median_s'],
              'peak_flops': costs.peak_flops(common['device'], dtype),
              'fraction_of_matmul_peak': (
                  model_flops / summary['step_time_median_s']
                  / common['matmul_peak_flops_per_s']),
              'mfu': costs.mfu(model_flops,
                                     summary['step_time_median_s'],
                                     common['device'], dtype,
                                     common['num_devices']),
              'backend_compiles_while_timing': compiles_while_timing}
    if isinstance(case, Case):
      record['step_compilations'] = case.traces.count
      record['recompilations'] = case.traces.count - 1
    else:
      from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
      bench_torch.finish_train_case(case)
      record.update(case.info)
      # Not ours: the formula's FLOPs, on PEFT's device kind.
      record['mfu'] = None
    records.append(record)
  return records


def mean_token_loss(model: models.EncoderDecoderModel, params: PyTree,
                    batch: Dict[str, np.ndarray]) -> float:
  """Mean token cross-entropy (z-loss left out), dropout off."""
  _, metrics = jax.jit(model.loss_fn, static_argnums=2)(params, batch, None)
  return float((metrics['loss'] - metrics['z_loss']) / metrics['num_tokens'])


def prompt_and_weights(params: PyTree) -> Tuple[np.ndarray, PyTree]:
  """The owned prompt `[P, H]` and the other weights, on the host."""
  trained, frozen = trainer.split_params(params, [prompts.PROMPT_REGEX])
  prompt = jax.device_get(trees.flatten(trained)[prompts.PROMPT_PATH])
  return np.asarray(prompt), jax.device_get(frozen)


def peft_case(config: t5.T5Config, frozen: PyTree, prompt: np.ndarray,
              batch: Dict[str, np.ndarray], name: str = PEFT_CASE,
              dropout_rate: Optional[float] = None):
  """PEFT prompt tuning on an HF T5 holding `frozen`, prompt `[P, H]`;
  `dropout_rate` default the config's."""
  from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
  rate = config.dropout_rate if dropout_rate is None else dropout_rate
  hf_model = bench_torch.hf_t5(frozen, config, rate)
  peft_model = bench_torch.peft_prompt_model(hf_model, prompt)
  loss = bench_torch.initial_loss(peft_model, batch)
  case = bench_torch.train_case(name, peft_model, PROMPT_TUNING_LR, batch)
  case.info.update({
      'framework': 'peft', 'prompt_length': prompt.shape[0],
      'initial_loss': loss, 'dropout_rate': rate,
      'peft_settings': (
          f'PromptTuningConfig(SEQ_2_SEQ_LM, num_virtual_tokens='
          f'{prompt.shape[0]}, num_transformer_submodules=1: one encoder '
          f'prompt, as ours), HF T5 dropout_rate {rate}, HF Adafactor lr '
          f'{PROMPT_TUNING_LR} (trainer.adafactor settings), same weights, '
          'prompt and batch, float32')})
  return case


# ----------------------------------------------------------------------------
# Tables.
# ----------------------------------------------------------------------------


_TRAIN_ROWS = (
    ('step time, median', 'step_time_median_s', 'ms'),
    ('step time, min', 'step_time_min_s', 'ms'),
    ('step time, max', 'step_time_max_s', 'ms'),
    ('step time, IQR', 'step_time_iqr_s', 'ms'),
    ('tokens/s (enc+dec)', 'tokens_per_s', 'num'),
    ('compile', 'compile_s', 's'),
    ('trace + lower', 'trace_lower_s', 's'),
    ('first step', 'first_step_s', 's'),
    ('step compilations (recompilations)', 'step_compilations', 'int'),
    ('trainable params', 'trainable_params', 'int'),
    ('frozen weights', 'frozen_bytes', 'bytes'),
    ('optimizer state', 'opt_state_bytes', 'bytes'),
    ('optimizer state, Adafactor rule', 'expected_opt_state_bytes', 'bytes'),
    ('optimizer state / trainable bytes', 'opt_state_per_trainable_byte',
     'ratio'),
    ('compiled peak (arg+out-alias+temp)', 'compiled_peak_bytes', 'bytes'),
    ('compiled temp', 'compiled_temp_bytes', 'bytes'),
    ('compiled arguments', 'compiled_argument_bytes', 'bytes'),
    ('device peak_bytes_in_use', 'device_peak_bytes_in_use', 'bytes'),
    ('model FLOPs / step (formula)', 'model_flops_per_step', 'flops'),
    ('step FLOPs (XLA)', 'flops', 'flops'),
    ('forward FLOPs (XLA)', 'forward_flops', 'flops'),
    ('step / forward FLOPs (XLA)', 'flops_per_forward', 'ratio'),
    ('model FLOP/s', 'model_flops_per_s', 'flops'),
    ('MFU', 'mfu', 'pct'),
    ('model FLOP/s / same-run matmul peak', 'fraction_of_matmul_peak', 'pct'),
    ('weight-gradient matmuls', 'weight_gradient_dots', 'int'),
)


def summary_table(records: Sequence[Dict[str, Any]]) -> str:
  """Markdown: prompt vs model tuning (ours), then ours vs PEFT if run."""
  by_case = {r['case']: r for r in records}
  prompt, model = by_case['prompt_tuning'], by_case['model_tuning']
  rows = []
  for label, key, kind in _TRAIN_ROWS:
    if key == 'step_compilations':
      cells = [f'{r.get(key)} ({r.get("recompilations")})'
               for r in (prompt, model)]
      rows.append([label] + cells + [''])
      continue
    ratio = bench_utils.ratio(prompt.get(key), model.get(key))
    rows.append([label, bench_utils.fmt(prompt.get(key), kind),
                 bench_utils.fmt(model.get(key), kind),
                 bench_utils.fmt(ratio, 'ratio')])
  lines = [bench_utils.config_line(prompt) + f'; prompt {prompt["prompt_length"]} '
           f'(model tuning: {model["prompt_length"]}); frozen weights '
           f'{prompt["frozen_dtype"]}', '',
           bench_utils.markdown_table(
               ['', 'prompt tuning', 'model tuning', 'prompt / model'], rows,
               'r'), '',
           f'XLA compilations while timing: '
           f'{prompt["backend_compiles_while_timing"]}; each step compiled '
           f'once, before its first step: '
           f'{all(r.get("recompilations") == 0 for r in (prompt, model))}.']
  if PEFT_CASE in by_case:
    lines += ['', peft_table(prompt, by_case[PEFT_CASE])]
  lines += ['', ceiling_table(records)]
  return '\n'.join(lines)


def ceiling_table(records: Sequence[Dict[str, Any]]) -> str:
  """Markdown: every case's model FLOP/s against the same run's matmul peak,
  with and without dropout, ours beside PEFT's; the machine's load."""
  by_case = {r['case']: r for r in records}
  first = records[0]
  rows = []
  for name in ('prompt_tuning', PEFT_CASE, 'prompt_tuning_no_dropout',
               PEFT_NO_DROPOUT_CASE, 'model_tuning'):
    r = by_case.get(name)
    if r is None:
      continue
    peft = {'prompt_tuning': PEFT_CASE,
            'prompt_tuning_no_dropout': PEFT_NO_DROPOUT_CASE}.get(name)
    versus = bench_utils.ratio(r['tokens_per_s'],
                               by_case.get(peft, {}).get('tokens_per_s'))
    rows.append([name, r['framework'], f'{r.get("dropout_rate", 0.0):g}',
                 bench_utils.fmt(r['step_time_median_s'], 'ms'),
                 bench_utils.fmt(r['tokens_per_s'], 'num'),
                 bench_utils.fmt(r['model_flops_per_s'], 'flops'),
                 bench_utils.fmt(r['fraction_of_matmul_peak'], 'pct'),
                 bench_utils.fmt(versus, 'ratio')])
  rates = ', '.join(f'{shape}: {bench_utils.fmt(rate, "flops")}/s'
                    for shape, rate in first['matmul_flops_per_s'].items())
  load = first.get('background_load') or 'none started by the bench'
  return '\n'.join([
      'Against the same run\'s plain matmul peak '
      f'({bench_utils.fmt(first["matmul_peak_flops_per_s"], "flops")}/s, '
      f'best of {rates}; timed interleaved with the steps):', '',
      bench_utils.markdown_table(
          ['case', 'framework', 'dropout', 'step', 'tokens/s',
           'model FLOP/s', 'of matmul peak', 'ours / PEFT tokens/s'], rows,
          'r'), '',
      f'Load average (1, 5, 15 min) before timing '
      f'{first.get("load_average_before")}, after '
      f'{first.get("load_average_after")}; background load: {load}.'])


def peft_table(ours: Dict[str, Any], peft: Dict[str, Any]) -> str:
  """Markdown: our prompt-tuning step against PEFT's, same run."""
  rows = []
  for label, key, kind in (
      ('step time, median', 'step_time_median_s', 'ms'),
      ('step time, IQR', 'step_time_iqr_s', 'ms'),
      ('tokens/s (enc+dec)', 'tokens_per_s', 'num'),
      ('first step', 'first_step_s', 's'),
      ('trainable params', 'trainable_params', 'int'),
      ('optimizer state', 'opt_state_bytes', 'bytes'),
      ('model FLOP/s', 'model_flops_per_s', 'flops'),
      ('device peak memory', 'device_peak_bytes_in_use', 'bytes')):
    ratio = bench_utils.ratio(ours.get(key), peft.get(key))
    rows.append([label, bench_utils.fmt(ours.get(key), kind),
                 bench_utils.fmt(peft.get(key), kind),
                 bench_utils.fmt(ratio, 'ratio')])
  return '\n'.join([
      f'Ours against HF PEFT prompt tuning (torch {peft["torch_version"]}, '
      f'transformers {peft["transformers_version"]}, peft '
      f'{peft["peft_version"]}, {peft["torch_threads"]} torch threads on '
      f'{peft["torch_device"]}, OMP_WAIT_POLICY {peft["omp_wait_policy"]}), '
      'same weights, prompt and batch; initial '
      f'loss (dropout off): ours {peft.get("initial_loss_ours", float("nan")):.5f}, '
      f'PEFT {peft["initial_loss"]:.5f}', '',
      bench_utils.markdown_table(['', 'ours', 'PEFT', 'ours / PEFT'], rows,
                                 'r'), '',
      f'Our prompt-tuning throughput is '
      f'{ours["tokens_per_s"] / peft["tokens_per_s"]:.2f}x PEFT\'s.'])


