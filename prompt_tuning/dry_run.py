r"""Checks training configs and estimates memory per device, with no hardware.

    python -m prompt_tuning.dry_run \
      --gin_file=models/t5_1_1_xxl_prompt.gin \
      --gin_file=prompts/from_class_labels.gin \
      --gin_file=runs/prompt_finetune.gin \
      --gin_file=models/pretrained/t5_1_1_lm100k_xxl.gin \
      --gin.MODEL_DIR="'/tmp/rte'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.CLASS_LABELS="['entailment', 'not_entailment']" \
      --gin.NUM_PARTITIONS=8 --num_devices=32     # or --mesh=data:4,model:8

    python -m prompt_tuning.dry_run --sweep=configs.txt   # one config a line

Takes exactly the flags of `python -m prompt_tuning.train` (t5x's gin flags,
`--gin.NAME=VALUE`, the package `gin/` always searched) plus the target mesh.
For each config it does what training does before it touches data or
weights, and stops there:

  1. parses the gin files and overrides as `train` does
     (`gin_utils.parse_gin_flags`, same search paths, finalized: a
     `%gin.REQUIRED` macro left unset is an error);
  2. reads the arguments `trainer.train` would be called with (references
     evaluated, so the model, optimizer and mesh config are built) and checks
     the task or mixture is registered and the batch splits over the data axis;
  3. builds the parameter shapes with `jax.eval_shape(model.init)` (the prompt
     initialiser swapped for a shape-only one, so no checkpoint or vocabulary
     is read), splits them with `trainer.split_params` and the configured
     trainable regexes, and lays them out with the configured logical axis
     rules on a `jax.sharding.AbstractMesh` of the target shape;
  4. estimates the memory per device (`training.memory.estimate_memory`).

It prints one table row per distinct estimate and exits non-zero if any config
failed, naming it and the reason. One process handles a whole sweep: after the
first config, a config costs a gin parse (tens of milliseconds) and, for a
setting not seen yet, the shapes and the estimate (a model of a new size is
traced once at full depth; another prompt length of it, at one layer).

Target mesh: `--mesh=data:D,model:M`, or `--num_devices=N` with the model axis
from `--num_partitions` or, by default, the config's
`partitioning.MeshConfig` (`NUM_PARTITIONS`), as a real run would use.

A sweep file holds one config per line: the same flags, shell-quoted (bash:
`printf '%q ' "${args[@]}"`), plus optionally `--name=LABEL`; blank lines
and lines starting with '#' are skipped.
"""
import logging as std_logging
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from prompt_tuning.cli import config_check
from prompt_tuning.cli import gin_utils


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Checks the configs of the flags and of `--sweep`; prints the table.

  Exits with status 1 if a config failed or none was given.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  from prompt_tuning.training import memory  # pylint: disable=g-import-not-at-top
  # The per-config gin dump and gin's search-path misses would bury the table.
  if flag_values['verbosity'].using_default_value:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger().setLevel(std_logging.CRITICAL)
  try:
    configs = (config_check.read_sweep(flag_values.sweep)
               if flag_values.sweep else [])
    if flag_values.gin_file:
      configs.append(config_check.config_from_flags(flag_values))
  except (ValueError, FileNotFoundError) as e:
    print(f'dry run: {e}', file=sys.stderr)
    sys.exit(1)
  if not configs:
    print('dry run: nothing to check; give --gin_file (a training config) or '
          '--sweep=FILE.', file=sys.stderr)
    sys.exit(1)
  estimates, failures = config_check.run_configs(configs)
  print(memory.format_table(estimates))
  print(f'dry run: {len(configs) - len(failures)} of {len(configs)} '
        'configs passed (memory per device; activations estimated, see '
        'prompt_tuning.training.memory.activation_bytes).')
  if failures:
    for label, message in failures:
      print(f'FAILED {label}: {message}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  config_check.define_flags()
  flags.DEFINE_string('sweep', None, 'File of configs, one argument list a '
                      'line (shell-quoted).')
  gin_utils.run(main)
