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

import jax

from prompt_tuning.methods import export as export_lib


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
  model_dir = arguments['model_dir']
  state_dir = os.path.join(os.path.abspath(model_dir), 'train_state')
  steps = sorted(int(n) for n in (os.listdir(state_dir)
                                  if os.path.isdir(state_dir) else [])
                 if n.isdigit())
  if not steps:
    raise FileNotFoundError(f'no train state under {state_dir}; train with '
                            f'these gin files first (MODEL_DIR {model_dir})')
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(state_dir, str(steps[-1]), 'default'))
  model = arguments['model']
  regexes = list(arguments.get('trainable_regexes', (trainer.PROMPT_REGEX,)))
  setup = trainer.setup_model(
      model, arguments.get('initial_checkpoint_path'),
      arguments.get('assignment_map', ((trainer.PROMPT_REGEX, None),)),
      arguments.get('seed', 0))
  _, frozen = trainer.split_params(jax.device_get(setup.params), regexes)
  params = trainer.merge_params(restored['trainable'], frozen)
  return export_lib.export(model, params, regexes,
                output_dir or os.path.join(model_dir, 'export'))


def main(argv: Sequence[str]) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      description='Exports a finished training run for serving.')
  parser.add_argument('--output_dir', default=None,
                      help='Default: MODEL_DIR/export.')
  sweep.add_gin_flags(parser, ())
  args, gin_files, bindings, search_paths = sweep.parse_args(parser, argv)
  if not gin_files:
    print('error: pass the run\'s --gin_file(s) and --gin.MODEL_DIR',
          file=sys.stderr)
    return 2
  sweep.configure(gin_files, bindings, search_paths)
  exported = export_run(sweep.train_arguments(), args.output_dir)
  print(f'exported to {exported.directory} ({exported.num_bytes:,} bytes): '
        + ', '.join(os.path.basename(p) for p in (
            exported.prompt_file, exported.method_params_file,
            exported.checkpoint) if p))
  serve_gin = os.path.join(exported.directory, export_lib.SERVE_GIN)
  print(f'serve it with --gin_file={serve_gin} after an eval or infer config')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
