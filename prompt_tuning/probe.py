r"""Linear probes of frozen encoders: what a task's classifier can read off
a frozen model's encoder states, against the same architecture with random
weights.

    python -m prompt_tuning.probe --sizes=tiny,mini,small,base \
      --tasks=corpus_suite_negation,corpus_suite_claim,corpus_suite_outing

`--sizes` probes the shipped corpus models (`--kind`, by default
`lm_adapted_long`, the kind the miniature tunes); `--checkpoint` probes a
t5x checkpoint instead, or a model-tuning run's weights
(`MODEL_DIR/numpy_checkpoints/checkpoint_STEP`). Each task's training split (or its first
`--train_examples`) fits the probe, its validation split (or the first
`--eval_examples`) scores it. `--knobs` probes the corpus suite's tasks at
other difficulty knobs (a calibration pilot). Prints a Markdown table; `--output` also
writes the rows as JSON. See `prompt_tuning.experiments.probe` for what is
pooled and fitted.
"""
import json
import sys
from typing import Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils
from prompt_tuning.utils import files

# A copy of checkpoints.embedded's SIZES and KINDS (a test pins them), so
# that --help and bad flags answer before JAX loads.
CORPUS_SIZES = ('tiny', 'mini', 'small', 'base')
CORPUS_KINDS = ('span_corruption', 'lm_adapted_short', 'lm_adapted_long')


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags in `flag_values`."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_list('tasks', None, 'seqio tasks to probe (their train and '
                    'validation splits).', **fv)
  flags.DEFINE_list('sizes', [], f'Corpus models to probe, of {CORPUS_SIZES}.',
                    **fv)
  flags.DEFINE_enum('kind', 'lm_adapted_long', CORPUS_KINDS,
                    'Which checkpoint of each corpus size.', **fv)
  flags.DEFINE_string(
      'checkpoint', None, 'A model to probe instead of --sizes: a t5x '
      "checkpoint, or a model-tuning run's numpy checkpoint "
      '(MODEL_DIR/numpy_checkpoints/checkpoint_STEP).', **fv)
  flags.DEFINE_integer(
      'relative_attention_max_distance', None,
      "With a t5x --checkpoint: not stored in it (T5's 128 if unset); a "
      "run's numpy checkpoint takes its run's.",
      **fv)
  flags.DEFINE_list(
      'knobs', None, 'Difficulty knobs NAME=VALUE of '
      'prompt_tuning.tasks.corpus_suite.Knobs: --tasks, corpus suite tasks, '
      'are probed with them (registered under a name made from them, as '
      "the miniature's --knobs does), for a calibration pilot in seconds.",
      **fv)
  flags.DEFINE_integer('train_examples', None,
                       'Fit on the first N training examples (all if unset).',
                       lower_bound=1, **fv)
  flags.DEFINE_integer('eval_examples', None,
                       'Score on the first N validation examples (all if '
                       'unset).', lower_bound=1, **fv)
  flags.DEFINE_bool('control', True, 'Also probe the architecture with '
                    'random weights.', **fv)
  flags.DEFINE_integer('control_seed', 0, "The random weights' seed.", **fv)
  flags.DEFINE_string('output', None, 'JSON file the rows are written to.',
                      **fv)
  flags.mark_flag_as_required('tasks', flag_values=flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Probes each model on each task.

  Returns:
    The exit status: 2 for flags that name no model, or both kinds of
    model, an unknown size, a checkpoint without the whole model, or a task
    whose vocabulary is not the model's; knobs that are not
    `corpus_suite.Knobs`, or given with a task that is not the suite's.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  fv = flag_values
  sizes = [s.strip() for s in fv.sizes if s.strip()]
  tasks = [t.strip() for t in fv.tasks if t.strip()]
  problem = None
  if bool(sizes) == bool(fv.checkpoint):
    problem = 'give either --sizes (corpus models) or --checkpoint, not both'
  elif set(sizes) - set(CORPUS_SIZES):
    problem = (f'--sizes {sorted(set(sizes) - set(CORPUS_SIZES))} are not '
               f'corpus model sizes {CORPUS_SIZES}')
  elif not tasks:
    problem = '--tasks names no task'
  if problem:
    print(f'error: {problem}', file=sys.stderr)
    return 2
  import prompt_tuning.tasks  # pylint: disable=g-import-not-at-top,unused-import
  from prompt_tuning.checkpoints import embedded  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import probe  # pylint: disable=g-import-not-at-top
  if fv.knobs:
    from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
    from prompt_tuning.tasks import corpus_suite_tasks  # pylint: disable=g-import-not-at-top
    try:
      knobs = corpus_suite.parse_knobs(fv.knobs)
    except ValueError as e:
      print(f'error: --{e}', file=sys.stderr)
      return 2
    prefix = corpus_suite_tasks.knobs_prefix(knobs)
    try:
      tasks = [corpus_suite_tasks.with_prefix(t, prefix) for t in tasks]
    except ValueError as e:
      print(f'error: --tasks with --knobs: {e}', file=sys.stderr)
      return 2
    print(f'--knobs {",".join(fv.knobs)}: tasks {", ".join(tasks)}',
          flush=True)
  models = ([(f'{size} ({fv.kind})', embedded.corpus_checkpoint_path(
      size, fv.kind)) for size in sizes] or [(fv.checkpoint, fv.checkpoint)])
  rows = []
  for name, path in models:
    try:
      model = probe.load_model(path, name, fv.relative_attention_max_distance)
      for task in tasks:
        row = probe.probe_task(
            model, task, train_limit=fv.train_examples,
            validation_limit=fv.eval_examples,
            control_seed=fv.control_seed if fv.control else None)
        control = (', random weights '
                   f'{100 * row.control.validation_accuracy:.2f}'
                   if row.control else '')
        print(f'{name} {task}: probe '
              f'{100 * row.score.validation_accuracy:.2f}{control}, '
              f'majority {100 * row.majority:.2f} ({row.seconds:.0f} s)',
              flush=True)
        rows.append(row)
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
  print()
  print(probe.format_rows(rows), end='')
  if fv.output:
    files.atomic_write_bytes(fv.output, json.dumps(
        [probe.row_record(r) for r in rows], indent=1).encode())
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main)
