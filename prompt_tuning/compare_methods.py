r"""Trains every method with the same step budget and compares them.

    python -m prompt_tuning.compare_methods --output_dir=/tmp/compare \
      [--methods=prompt_tuning,lora,...] [--train_steps=100] \
      [--gin_file=corpus/prompt_tune.gin] [--gin.NAME=VALUE ...]

The comparison is a config sweep: for each method, the base gin config
(`--gin_file`, default the main job: the frozen LM-adapted corpus model on
its held-out task) plus `gin/methods/<method>.gin`, run by the one trainer
with the same `TRAIN_STEPS`, batch, data and seed, evaluated before training
and at the end on the validation split. Each trained method is exported
(`method_export`) and its train step timed and measured separately.

Writes `OUTPUT_DIR/comparison.md` and `comparison.json`, and each method's run
and export under `OUTPUT_DIR/<method>/`; prints the table:

  untrained / tuned   the validation score (mean of the task's metrics) at
                      step 0 and after the budget
  trainable           the method's trainable parameter count
  step time           median wall time of one jitted train step on one
                      batch, after compilation (no data loading, no eval)
  step memory         XLA's buffer estimate for that step: arguments +
                      outputs + temporaries - donated (what the compiled
                      step needs, frozen weights included)
  export              what serving loads and its size on disk
"""
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import List, Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils
from prompt_tuning.utils import files

DEFAULT_GIN_FILES = ('corpus/prompt_tune.gin',)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags, the gin flags among them, in `flag_values`.
  """
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('output_dir', None, 'Where the runs and the comparison '
                      'go.', **fv)
  flags.DEFINE_string('methods', '',
                      'Comma-separated method names (default: all).', **fv)
  flags.DEFINE_integer('train_steps', 100, 'Training steps of every method.',
                       **fv)
  flags.DEFINE_boolean('overwrite', False,
                       'Replace existing runs under --output_dir.', **fv)
  gin_utils.define_gin_flags(flag_values)
  flags.mark_flag_as_required('output_dir', flag_values=flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Compares the methods; the base config is `--gin_file`, by default
  `DEFAULT_GIN_FILES`.

  Returns:
    The exit status: 2 for an unknown method or an existing run.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  from prompt_tuning.experiments import compare  # pylint: disable=g-import-not-at-top
  from prompt_tuning.methods import presets  # pylint: disable=g-import-not-at-top
  output_dir, train_steps = flag_values.output_dir, flag_values.train_steps
  gin_files = list(flag_values.gin_file or DEFAULT_GIN_FILES)
  bindings = list(flag_values.gin_bindings)
  search_paths = list(flag_values.gin_search_paths)
  names = [n.strip() for n in flag_values.methods.split(',')
           if n.strip()] or list(presets.PRESETS)
  try:
    for name in names:
      presets.preset(name)
      run_dir = os.path.join(output_dir, name)
      if os.path.exists(run_dir):
        if not flag_values.overwrite:
          raise ValueError(f'{run_dir} exists; pass --overwrite or use a new '
                           '--output_dir (a finished run would not be '
                           'evaluated again)')
        shutil.rmtree(run_dir)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  rows: List[compare.Row] = []
  task = None
  for name in names:
    start = time.time()
    rows.append(compare.compare_one(name, output_dir, gin_files,
                                    bindings, search_paths, train_steps))
    task = task or ', '.join(sorted(rows[-1].metrics))
    print(f'{name}: untrained {rows[-1].untrained_score:.2f}, tuned '
          f'{rows[-1].tuned_score:.2f} ({time.time() - start:.0f} s)',
          flush=True)
  text = compare.markdown(rows, train_steps, task)
  print(text)
  files.atomic_write_bytes(os.path.join(output_dir, 'comparison.md'),
                           text.encode())
  files.atomic_write_bytes(
      os.path.join(output_dir, 'comparison.json'),
      json.dumps({'train_steps': train_steps, 'gin_files': gin_files,
                  'gin_bindings': bindings,
                  'rows': [dataclasses.asdict(r) for r in rows]},
                 indent=1, default=float).encode())
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main)
