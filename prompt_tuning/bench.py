r"""Speed and memory benchmarks: train steps, inference, serving, scaling.

    python -m prompt_tuning.bench                          # train, anchor
    python -m prompt_tuning.bench --suite=train,inference,serving
    python -m prompt_tuning.bench --suite=scaling --plot_dir=/tmp/curves
    python -m prompt_tuning.bench --size=xl --dtype=bfloat16 \
      --frozen_dtype=bfloat16 --batch_size=32 --input_length=512   # on a GPU

Not a test: it measures. Each suite builds its cases from random weights,
compiles and warms each one up, then times them `--repeats` times in
interleaved order (ABBA, see `bench_utils`), so only ratios measured in the
same run are compared. One JSON line per case is printed (and appended to
`--output`), then a Markdown summary with the ratios and the command line
(also written to `--markdown_output`).

Suites (`--suite`, comma-separated):
- train (`bench_train`): the trainer's step for prompt tuning and model
  tuning on one model and batch and, with `--frameworks` including peft, HF
  PEFT prompt tuning on the same T5 1.1 with the same weights, prompt and
  batch (torch, transformers and peft: `pip install -e ".[bench]"`; skipped
  with a note when they are not installed);
- inference, serving (`bench_serving`): greedy decoding with the cache
  against HF `generate`, rank classification against decoding; an ensemble
  of prompts in one pass against separate passes, a mixed-task batch against
  per-task batches;
- scaling (`bench_scaling`): the step's cost against prompt length, batch
  and input length, with fitted slopes and PNG curves (`--plot_dir`).

On a GPU or TPU the train records carry MFU (model FLOPs of `model.costs`
over the device's peak); on a CPU it is n/a.

NOTE: PyTorch's OpenMP threads spin after each operation while waiting for
work (`OMP_WAIT_POLICY=ACTIVE`, libgomp's behaviour by default). With both
frameworks in one process on a CPU, the spinning threads take the cores from
the JAX case that runs next, and on a machine shared with other jobs they
make PyTorch itself several times slower. `main` therefore sets
`OMP_WAIT_POLICY=PASSIVE` unless it is already set (before torch is
imported); every PEFT record names the policy and the thread count
(`--torch_threads`).
"""
import json
import os
import sys
from typing import List, Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils
from prompt_tuning.utils import files

# Copies of the library's names (benchmarks.suites.SUITES,
# benchmarks.common.DTYPES, training.trainer.FROZEN_DTYPES; a test pins
# them), so that --help and bad flags answer before JAX loads.
SUITES = ('train', 'inference', 'serving', 'scaling')
DTYPES = ('float32', 'bfloat16')
FROZEN_DTYPES = ('float32', 'bfloat16')


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------

_SUITE = flags.DEFINE_list('suite', ['train'],
                           f'Suites to run, of {list(SUITES)}.')
_SIZE = flags.DEFINE_string(
    'size', 'anchor', 'Model size: anchor, embedded, tiny or a T5 1.1 size '
    '(small, base, large, xl, xxl).')
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
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(DTYPES),
                           'Activation dtype (parameters stay float32).')
_FROZEN_DTYPE = flags.DEFINE_enum(
    'frozen_dtype', 'float32', list(FROZEN_DTYPES),
    'dtype the frozen weights are kept in (FROZEN_DTYPE of the trainer).')
_REMAT = flags.DEFINE_boolean('remat', False,
                              'Rematerialise encoder and decoder layers.')
_MODEL_TUNING_PROMPT = flags.DEFINE_boolean(
    'model_tuning_prompt', True, 'Model tuning trains the same prompted '
    'model (same forward pass); --nomodel_tuning_prompt: no prompt, the '
    "paper's model-tuning baseline.")
_FRAMEWORKS = flags.DEFINE_list(
    'frameworks', ['jax', 'peft'], 'jax (ours) and peft (HF PEFT on torch, '
    'skipped with a note when not installed).')
_TORCH_THREADS = flags.DEFINE_integer(
    'torch_threads', 0, 'Threads of the PEFT cases (torch.set_num_threads); '
    "0: torch's default (the number of cores).")
_PRNG_IMPL = flags.DEFINE_enum(
    'prng_impl', None, ['threefry2x32', 'rbg', 'unsafe_rbg'],
    "jax's default PRNG (the dropout masks); default: jax's own "
    '(threefry2x32).')
_SEED = flags.DEFINE_integer('seed', 0, 'Weights, batch and dropout.')
_BACKGROUND_LOAD = flags.DEFINE_integer(
    'background_load', 0, 'train: threads of a numpy matmul loop run in a '
    'child process while timing (a loaded machine); 0: none.')
_OUTPUT = flags.DEFINE_string(
    'output', None, 'JSON lines file the records are appended to.')
_MARKDOWN_OUTPUT = flags.DEFINE_string(
    'markdown_output', None, 'File the Markdown summary is written to.')
# Serving and inference.
_NUM_PROMPTS = flags.DEFINE_integer(
    'num_prompts', 5, 'serving: prompts of the ensemble (N).')
_NUM_TASKS = flags.DEFINE_integer(
    'num_tasks', 4, 'serving: tasks of the mixed-task batch.')
_SERVING_BATCH_SIZE = flags.DEFINE_integer(
    'serving_batch_size', 32, 'serving: examples per batch (B).')
_DECODE_LENGTH = flags.DEFINE_integer(
    'decode_length', 16, 'inference: tokens decoded per example.')
_NUM_CLASSES = flags.DEFINE_integer(
    'num_classes', 4, 'inference: label strings of rank classification (C).')
_LABEL_LENGTH = flags.DEFINE_integer(
    'label_length', 4, 'inference: tokens per label string (EOS included).')
# Scaling.
_PROMPT_LENGTHS = flags.DEFINE_list(
    'prompt_lengths', ['1', '5', '20', '50', '100', '150'],
    'scaling: prompt lengths.')
_BATCH_SIZES = flags.DEFINE_list(
    'batch_sizes', ['1', '2', '4', '8', '16', '32', '64'],
    'scaling: batch sizes.')
_INPUT_LENGTHS = flags.DEFINE_list(
    'input_lengths', ['64', '128', '256', '512'], 'scaling: input lengths.')
_SCALING_AXES = flags.DEFINE_list(
    'scaling_axes', ['prompt_length', 'batch_size', 'input_length'],
    'scaling: which sweeps to run.')
_PLOT_DIR = flags.DEFINE_string(
    'plot_dir', None, 'scaling: directory the PNG curves are written to.')


def _ints(name: str, values: Sequence[str]) -> List[int]:
  try:
    return [int(v) for v in values]
  except ValueError as e:
    raise ValueError(f'--{name}={",".join(values)}; expected integers') from e



def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax  # pylint: disable=g-import-not-at-top
  from prompt_tuning.benchmarks import suites as bench_suites  # pylint: disable=g-import-not-at-top
  # See the module's NOTE; read when torch is first imported.
  policy = os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  if _PRNG_IMPL.value:
    jax.config.update('jax_default_prng_impl', _PRNG_IMPL.value)
  if _TORCH_THREADS.value:
    from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
    bench_torch.set_threads(_TORCH_THREADS.value)
  command = ('python -m prompt_tuning.bench ' + ' '.join(sys.argv[1:]) +
             f'  (OMP_WAIT_POLICY={policy})')
  try:
    if 'scaling' in _SUITE.value:
      scaling_values = {
          'prompt_length': _ints('prompt_lengths', _PROMPT_LENGTHS.value),
          'batch_size': _ints('batch_sizes', _BATCH_SIZES.value),
          'input_length': _ints('input_lengths', _INPUT_LENGTHS.value)}
    else:
      scaling_values = {}
    records, sections = bench_suites.run_suites(
        _SUITE.value, frameworks=_FRAMEWORKS.value, size=_SIZE.value,
        repeats=_REPEATS.value, warmup_steps=_WARMUP_STEPS.value,
        dtype=_DTYPE.value, seed=_SEED.value, batch_size=_BATCH_SIZE.value,
        input_length=_INPUT_LENGTH.value, target_length=_TARGET_LENGTH.value,
        prompt_length=_PROMPT_LENGTH.value,
        steps_per_repeat=_STEPS_PER_REPEAT.value,
        frozen_dtype=_FROZEN_DTYPE.value, remat=_REMAT.value,
        model_tuning_prompt=_MODEL_TUNING_PROMPT.value,
        decode_length=_DECODE_LENGTH.value, num_classes=_NUM_CLASSES.value,
        label_length=_LABEL_LENGTH.value,
        serving_batch_size=_SERVING_BATCH_SIZE.value,
        num_prompts=_NUM_PROMPTS.value, num_tasks=_NUM_TASKS.value,
        scaling_axes=_SCALING_AXES.value, scaling_values=scaling_values,
        plot_dir=_PLOT_DIR.value, background_load=_BACKGROUND_LOAD.value)
  except (ValueError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  for record in records:
    print(json.dumps(record))
  if _OUTPUT.value:
    text = ''.join(json.dumps(record) + '\n' for record in records)
    with open(_OUTPUT.value, 'a') as f:
      f.write(text)
  markdown = '\n\n'.join([f'Command: `{command}`'] + sections) + '\n'
  print()
  print(markdown)
  if _MARKDOWN_OUTPUT.value:
    files.atomic_write_bytes(_MARKDOWN_OUTPUT.value, markdown.encode())
  return 0


if __name__ == '__main__':
  gin_utils.run(main, tensorflow=False)
