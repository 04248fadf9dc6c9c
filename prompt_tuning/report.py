r"""Turns finished runs into the paper's tables (Markdown) and figures (PNG).

    python -m prompt_tuning.report /tmp/runs/*/ [ensemble.json ...] \
      --output_dir=/tmp/report

Each positional argument is a run directory (a `MODEL_DIR` written by
`python -m prompt_tuning.train`) or an ensemble report (a `.json` file, see
`experiments.runs.read_ensemble_report`). What it reads from a run
directory and what it infers from the run's config.gin (method, model size,
initialisation, pretraining) is documented at `experiments.runs`.

Runs that agree on everything but the seed form a group; a group's numbers
are the mean and sample standard deviation (n - 1) over its runs. Written to
`--output_dir`:

  report.md                   summary, runs, parameter counts (Table 4-like),
                              MRQA (Table 1-like), paraphrase transfer
                              (Table 2-like) and ensembles (Table 3-like),
                              with the paper's numbers (`paper_numbers`) as
                              reference columns where a table matches them
  figure1_<task>.png          score against model parameters (log axis), one
                              line per method, seed std as error bars
  figure3_<task>.png          prompt-tuning ablations against model
                              parameters: prompt length, initialisation,
                              pretraining objective

NOTE: the paper printed no per-size numbers for Figures 1 and 3, so the
figures carry no paper line, only a note saying so.
"""
import pathlib
from typing import Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils


def define_flags() -> None:
  """The command's flags (defined only when it runs, so that importing this
  module as a library defines none)."""
  flags.DEFINE_string('output_dir', None, 'Where report.md and the PNGs go.')
  flags.DEFINE_bool('figures', True, 'Draw the figures (needs matplotlib).')


def main(argv: Sequence[str]) -> None:
  output_dir, figures = flags.FLAGS.output_dir, flags.FLAGS.figures
  if not output_dir:
    raise app.UsageError('--output_dir is required')
  if figures:
    try:
      import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError as e:
      raise app.UsageError('figures need matplotlib: pip install matplotlib '
                           '(or pass --nofigures)') from e
  from prompt_tuning.experiments import reports  # pylint: disable=g-import-not-at-top
  written = reports.write_report(argv[1:], output_dir, figures=figures)
  print((pathlib.Path(written['report'])).read_text())
  for name, path in sorted(written.items()):
    print(f'{name}: {path}')


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
