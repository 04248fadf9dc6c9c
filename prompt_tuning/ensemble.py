r"""Prompt ensembling (paper section 6): N prompts, one pass, majority vote.

    python -m prompt_tuning.ensemble --model_dir=/tmp/s0 --model_dir=/tmp/s1 \
      --model_dir=/tmp/s2 [--gin.ENSEMBLE_OUTPUT_DIR="'/tmp/ensemble'"]

ensembles the best prompts of runs of one model and task, on the first run's
validation task and settings (runs of another model are refused); or, with
gin files alone:

    python -m prompt_tuning.ensemble \
      --gin_file=embedded/prompt_ensemble.gin \
      --gin.PROMPT_FILES="['/tmp/s0/best_prompt.npy', '/tmp/s1/best_prompt.npy', '/tmp/s2/best_prompt.npy']" \
      --gin.ENSEMBLE_OUTPUT_DIR="'/tmp/ensemble'"

writes ENSEMBLE_OUTPUT_DIR/ensemble.md (the tables, also printed),
ensemble.json and `<task>.predictions.jsonl`. With `--benchmark` it instead
times one ensembled pass against N separate single-prompt passes over the
same batches (`--benchmark_repeats`, `--benchmark_warmup`) and writes
benchmark.json.

Configures and calls `prompt_tuning.serving.ensemble.evaluate_ensemble`, or
with `--benchmark` `prompt_tuning.benchmarks.ensembles.benchmark`.
"""
from absl import flags
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config


def _define_flags() -> None:
  gin_utils.define_flags()
  run_config.define_model_dir_flag(multiple=True)
  flags.DEFINE_boolean(
      'benchmark', False,
      'Time one ensembled pass against N separate passes instead of '
      'evaluating.')
  flags.DEFINE_integer('benchmark_repeats', 5,
                       'Timed rounds of the benchmark (median reported).')
  flags.DEFINE_integer('benchmark_warmup', 1,
                       'Untimed rounds before timing (the first compiles).')


def main(argv) -> None:
  """Evaluates (or, with --benchmark, times) the gin-configured ensemble."""
  from prompt_tuning.benchmarks import ensembles as ensemble_benchmarks  # pylint: disable=g-import-not-at-top
  from prompt_tuning.serving import ensemble  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS
  if flag_values.model_dir:
    import sys  # pylint: disable=g-import-not-at-top
    if flag_values.benchmark:
      sys.exit('error: --benchmark takes gin files, not --model_dir')
    arguments = run_config.arguments_of_runs(run_config.ensemble_arguments,
                                             argv, flag_values)
    print(ensemble.format_report(ensemble.evaluate_ensemble(**arguments)),
          end='')
    return
  gin_utils.configure_from_flags(argv)
  if flag_values.benchmark:
    result = gin.get_configurable(ensemble_benchmarks.benchmark)(
        repeats=flag_values.benchmark_repeats,
        warmup=flag_values.benchmark_warmup)
    print(f'{result["task"]} ({result["num_examples"]} examples)')
    print(ensemble_benchmarks.format_benchmark(result), end='')
    return
  results = gin.get_configurable(ensemble.evaluate_ensemble)()
  print(ensemble.format_report(results), end='')


if __name__ == '__main__':
  _define_flags()
  gin_utils.run(main)
