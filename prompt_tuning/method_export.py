r"""Exports a finished training run for serving (`methods.export` does the work).

    python -m prompt_tuning.method_export --model_dir=/tmp/lora \
      [--output_dir=/tmp/lora/export]

rebuilds the run from its record (`MODEL_DIR/run.json`: the gin files and
bindings it was trained with, so its method's hyperparameters, such as the
LoRA rank and alpha, are the trained ones), reads the trained parameters from
its last train state and the frozen ones from its initial checkpoint. The
gin files alone also work (t5x style):

    python -m prompt_tuning.method_export \
      --gin_file=embedded/prompt_tune.gin --gin_file=methods/lora.gin \
      --gin.MODEL_DIR="'/tmp/lora'"

Either way, a configuration whose architecture or method hyperparameters
differ from the run's record is refused, naming both values.
"""
import os
import sys
from typing import Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags, the gin flags among them, in `flag_values`.
  """
  flags.DEFINE_string('output_dir', None, 'Default: MODEL_DIR/export.',
                      flag_values=flag_values)
  gin_utils.define_gin_flags(flag_values)
  run_config.define_model_dir_flag(flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Exports the run the gin files and bindings configure.

  Returns:
    The exit status: 2 if neither `--model_dir` nor `--gin_file` was given.
  """
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  if not flag_values.gin_file and not flag_values.model_dir:
    print('error: pass the run as --model_dir (or its --gin_file(s) and '
          '--gin.MODEL_DIR)', file=sys.stderr)
    return 2
  try:
    if flag_values.model_dir:
      record = run_config.configure(
          flag_values.model_dir, flag_values.gin_file,
          flag_values.gin_bindings, flag_values.gin_search_paths)
      arguments = run_config.train_arguments()
      run_config.check_arguments(record, arguments, flag_values.model_dir)
    else:
      sweep.configure(flag_values.gin_file, flag_values.gin_bindings,
                      flag_values.gin_search_paths)
      arguments = run_config.train_arguments()
    exported = run_config.export_run(arguments, flag_values.output_dir)
  except (ValueError, FileNotFoundError) as e:  # Mismatches, missing runs.
    print(f'error: {run_config.error_line(e)}', file=sys.stderr)
    return 1
  print(f'exported to {exported.directory} ({exported.num_bytes:,} bytes): '
        + ', '.join(os.path.basename(p) for p in (
            exported.prompt_file, exported.method_params_file,
            exported.checkpoint) if p))
  from prompt_tuning.methods import export as export_lib  # pylint: disable=g-import-not-at-top
  serve_gin = os.path.join(exported.directory, export_lib.SERVE_GIN)
  print(f'serve it with --gin_file={serve_gin} after an eval or infer config')
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main)
