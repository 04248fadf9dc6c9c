r"""The paper in miniature: its experiments on the embedded corpus models.

    python -m prompt_tuning.miniature --output_dir=/tmp/miniature
    python -m prompt_tuning.miniature --output_dir=/tmp/miniature_quick --quick
    python -m prompt_tuning.miniature --task=suite --output_dir=/tmp/suite

Runs, on the frozen corpus models that `prompt_tuning.embedded` ships
(pretrained only with span corruption and LM adaptation; the downstream
task is never shown to them in input -> label form), the paper's
experiments on one downstream task (`--task`, default the main job's), or
on the corpus suite (`--task=suite`: every setting runs once per suite
task, its score is the suite average, and Figure 1 adds prompt design):

| experiment      | paper          | runs                                          |
|-----------------|----------------|-----------------------------------------------|
| `figure1`       | Figure 1       | prompt tuning vs model tuning (and prompt design on the suite), every size |
| `prompt_length` | Figure 3(a)    | prompt lengths `plan.prompt_lengths`          |
| `init`          | Figure 3(b)    | random uniform, sampled vocab, class labels   |
| `objective`     | Figure 3(c, d) | span corruption, + sentinel, LM adaptation short and long |
| `ensemble`      | Table 3        | `plan.ensemble_prompts` seeds of one prompt, ensembled |
| `data_size`     | (the control)  | prompt tuning, model tuning and the architecture trained from scratch, against the number of training examples (`plan.data_size_seeds` seeds) |

Every run but the ensemble is `python -m prompt_tuning.train`'s job, run in
this process with the same gin files (`gin/corpus/{prompt_tune,model_tune,
from_scratch}.gin` plus `corpus/sizes/<size>.gin`), each in its own
`MODEL_DIR` under `--output_dir/runs/`; the ensemble is
`prompt_tuning.ensemble`'s. A run that finished before (its `miniature.json`
exists) is not run again, so an interrupted miniature resumes. Unless stated,
a run uses the main job's settings: the small model, LM adaptation (long),
a 20-token class-label prompt (a prompt shorter than the label set starts
from its first labels), Adafactor (learning rate 0.3 for prompts,
0.001 for model tuning, 0.01 from scratch), batch 32, `plan.train_steps`
steps, decoding (exact match) on the validation split at the end.

Written to `--output_dir`: `report.md` (the tables and figures of
`prompt_tuning.report`, then the training-set-size control, the findings
set against the paper's statements, and the run times),
`figure1_<task>.png`, `figure3_<task>.png`, `data_size_<task>.png`, and
`miniature.json` (every run's setting, score and time); on the suite also
`figure1_corpus_suite.png` and `figure3_corpus_suite.png` (the suite
average), each followed by its table.

NOTE: the plans' run times on 2 CPU cores are stated in docs/miniature.md,
as measured; `--quick` is a smaller plan (fewer sizes, settings and steps,
one seed) for checks.
"""
import dataclasses
import pathlib
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from prompt_tuning.checkpoints import embedded
from prompt_tuning.cli import gin_utils

# A copy of experiments.miniature.EXPERIMENTS (a test pins it), so that
# --help answers before JAX loads.
EXPERIMENTS = ('figure1', 'prompt_length', 'init', 'objective', 'ensemble',
               'data_size')


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags (only when it runs) in `flag_values`."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('output_dir', None, 'Where the runs and the report go.',
                      **fv)
  flags.DEFINE_bool('quick', False, 'The smaller plan (QUICK), for checks.',
                    **fv)
  flags.DEFINE_list('sizes', None, "Override the plan's model sizes.", **fv)
  flags.DEFINE_integer('seeds', None, 'Override the number of seeds.', **fv)
  flags.DEFINE_integer('data_size_seeds', None,
                       'Override the number of seeds of the data-size '
                       'control.', **fv)
  flags.DEFINE_integer('train_steps', None, 'Override the steps of every run.',
                       **fv)
  flags.DEFINE_integer('eval_examples', None,
                       'Evaluate on this many validation examples.', **fv)
  flags.DEFINE_list('experiments', None,
                    f'Run only these of {list(EXPERIMENTS)}.', **fv)
  flags.DEFINE_string('task', None,
                      'The downstream task (topic, sentiment, author), or '
                      "'suite': the corpus suite on the ladder of sizes "
                      '(plans SUITE_FULL and SUITE_QUICK).', **fv)
  flags.DEFINE_integer('train_size', None,
                       'Training examples of every run but the data-size '
                       "control's (one of 32, 128, 512, 2048; default: the "
                       "task's own).", **fv)
  flags.DEFINE_list('suite_tasks', None,
                    'With --task=suite: run only these suite tasks.', **fv)
  flags.DEFINE_list('knobs', None,
                    'With --task=suite: difficulty knobs NAME=VALUE of '
                    'prompt_tuning.tasks.corpus_suite.Knobs, for calibration '
                    '(the tasks are registered under a name made from them).',
                    **fv)


def plan_from_flags(values: flags.FlagValues = flags.FLAGS
                    ) -> 'miniature_lib.Plan':
  """The plan (`FULL`, or `QUICK` with --quick; `SUITE_FULL` and
  `SUITE_QUICK` with --task=suite) with the flags' overrides.

  Raises:
    app.UsageError: an unknown size, experiment or task.
  """
  from prompt_tuning.experiments import miniature as miniature_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import corpus_tasks  # pylint: disable=g-import-not-at-top
  if values.task == miniature_lib.SUITE:
    plan = (miniature_lib.SUITE_QUICK if values.quick else
            miniature_lib.SUITE_FULL)
  else:
    plan = miniature_lib.QUICK if values.quick else miniature_lib.FULL
  overrides = {}
  if values.sizes:
    unknown = set(values.sizes) - set(embedded.SIZES)
    if unknown:
      raise app.UsageError(f'--sizes: unknown {sorted(unknown)}; expected '
                           f'some of {list(embedded.SIZES)}')
    overrides['sizes'] = tuple(values.sizes)
  if values.experiments:
    unknown = set(values.experiments) - set(miniature_lib.EXPERIMENTS)
    if unknown:
      raise app.UsageError(f'--experiments: unknown {sorted(unknown)}; '
                           'expected some of '
                           f'{list(miniature_lib.EXPERIMENTS)}')
    overrides['experiments'] = tuple(values.experiments)
  if values.task and values.task != miniature_lib.SUITE:
    if values.task not in corpus_tasks.CORPUS_LABELS:
      raise app.UsageError(
          f'--task: unknown {values.task!r}; expected one of '
          f'{sorted(corpus_tasks.CORPUS_LABELS) + [miniature_lib.SUITE]}')
    overrides['task'] = values.task
  if values.suite_tasks or values.knobs:
    if values.task != miniature_lib.SUITE:
      raise app.UsageError('--suite_tasks and --knobs need --task=suite')
    overrides.update(_suite_overrides(values.suite_tasks, values.knobs))
  if values.train_size is not None:
    if values.train_size not in corpus_tasks.TRAIN_SIZES:
      raise app.UsageError(f'--train_size is {values.train_size}; expected '
                           f'one of {list(corpus_tasks.TRAIN_SIZES)}')
    overrides['default_train_size'] = values.train_size
  for name in ('seeds', 'data_size_seeds', 'train_steps', 'eval_examples'):
    value = getattr(values, name)
    if value is not None:
      if value < 1:
        raise app.UsageError(f'--{name} is {value}; expected >= 1')
      overrides[name] = value
  return dataclasses.replace(plan, **overrides)


def _suite_overrides(suite_tasks, knobs) -> dict:
  """The plan's `suite_tasks` and `knobs` from their flags' values.

  Raises:
    app.UsageError: an unknown task or knob, or a value of the wrong type.
  """
  from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
  overrides = {}
  if suite_tasks:
    unknown = set(suite_tasks) - set(corpus_suite.TASKS)
    if unknown:
      raise app.UsageError(f'--suite_tasks: unknown {sorted(unknown)}; '
                           f'expected some of {list(corpus_suite.TASKS)}')
    overrides['suite_tasks'] = tuple(suite_tasks)
  if knobs:
    try:
      overrides['knobs'] = corpus_suite.parse_knobs(knobs)
    except ValueError as e:
      raise app.UsageError(f'--{e}') from None
  return overrides


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS.output_dir:
    raise app.UsageError('--output_dir is required')
  logging.set_verbosity(logging.WARNING)
  from prompt_tuning.experiments import miniature_report  # pylint: disable=g-import-not-at-top
  plan = plan_from_flags()
  written = miniature_report.run_miniature(plan, flags.FLAGS.output_dir)
  print(pathlib.Path(written['report']).read_text())
  for name, path in sorted(written.items()):
    print(f'{name}: {path}')


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main)
