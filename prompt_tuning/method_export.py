r"""Exports a finished training run for serving (`methods.export` does the work).

    python -m prompt_tuning.method_export \
      --gin_file=embedded/prompt_tune.gin --gin_file=methods/lora.gin \
      --gin.MODEL_DIR="'/tmp/lora'" [--output_dir=/tmp/lora/export]

reads the trained parameters from the run's last train state and the frozen
ones from its `INITIAL_CHECKPOINT_PATH`.
"""
import os
import sys
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
import jax

from prompt_tuning.checkpoints import run_dir
from prompt_tuning.cli import gin_utils
from prompt_tuning.methods import export as export_lib
from prompt_tuning.model import prompts


def export_run(arguments: Dict[str, Any], output_dir: Optional[str] = None
               ) -> export_lib.Export:
  """Exports a finished run from its `trainer.train` arguments (as
  `sweep.train_arguments()` gives them): the trained parameters of its last
  train state in `model_dir`, the frozen ones from its initial checkpoint.

  Raises:
    FileNotFoundError: the run has no train state.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import setup as setup_lib  # pylint: disable=g-import-not-at-top
  model_dir = arguments['model_dir']
  state_dir = run_dir.train_state_dir(model_dir)
  steps = sorted(int(n) for n in (os.listdir(state_dir)
                                  if os.path.isdir(state_dir) else [])
                 if n.isdigit())
  if not steps:
    raise FileNotFoundError(f'no train state under {state_dir}; train with '
                            f'these gin files first (MODEL_DIR {model_dir})')
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(state_dir, str(steps[-1]), 'default'))
  model = arguments['model']
  regexes = list(arguments.get('trainable_regexes', (prompts.PROMPT_REGEX,)))
  setup = setup_lib.setup_model(
      model, arguments.get('initial_checkpoint_path'),
      arguments.get('assignment_map', ((prompts.PROMPT_REGEX, None),)),
      arguments.get('seed', 0))
  _, frozen = trainer.split_params(jax.device_get(setup.params), regexes)
  params = trainer.merge_params(restored['trainable'], frozen)
  return export_lib.export(model, params, regexes,
                output_dir or run_dir.export_dir(model_dir))


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags, the gin flags among them, in `flag_values`.
  """
  flags.DEFINE_string('output_dir', None, 'Default: MODEL_DIR/export.',
                      flag_values=flag_values)
  gin_utils.define_gin_flags(flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Exports the run the gin files and bindings configure.

  Returns:
    The exit status: 2 if no `--gin_file` was given.
  """
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  if not flag_values.gin_file:
    print('error: pass the run\'s --gin_file(s) and --gin.MODEL_DIR',
          file=sys.stderr)
    return 2
  sweep.configure(flag_values.gin_file, flag_values.gin_bindings,
                  flag_values.gin_search_paths)
  exported = export_run(sweep.train_arguments(), flag_values.output_dir)
  print(f'exported to {exported.directory} ({exported.num_bytes:,} bytes): '
        + ', '.join(os.path.basename(p) for p in (
            exported.prompt_file, exported.method_params_file,
            exported.checkpoint) if p))
  serve_gin = os.path.join(exported.directory, export_lib.SERVE_GIN)
  print(f'serve it with --gin_file={serve_gin} after an eval or infer config')
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main)
