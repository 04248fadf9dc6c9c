"""The report: finished runs and ensemble reports in, report.md and the
figures out (see `python -m prompt_tuning.report`)."""
import collections
import pathlib
import re
from typing import Dict, Sequence

from absl import logging

from prompt_tuning.experiments import figures as figures_lib
from prompt_tuning.experiments import report_tables
from prompt_tuning.experiments import runs as runs_lib

REPORT_FILE = 'report.md'


def _file_name(task: str) -> str:
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', task)


def write_report(paths: Sequence[str], output_dir: str, *,
                 figures: bool = True) -> Dict[str, str]:
  """Reads runs and ensemble reports and writes report.md and the figures.

  Args:
    paths: run directories, and ensemble report files (ending in '.json').
    output_dir: where to write (created if needed).
    figures: also draw the PNG figures (needs matplotlib).

  Returns:
    {'report': path of report.md, 'figure1_<task>' / 'figure3_<task>':
    path of each PNG}.

  Raises:
    ValueError: if `paths` is empty, or from `runs.read_run` /
      `runs.read_ensemble_report`.
    FileNotFoundError: naming the run directory at fault.
  """
  if not paths:
    raise ValueError('no run directories given; expected one or more '
                     'MODEL_DIRs (or ensemble report .json files)')
  ensemble_paths = [p for p in paths if str(p).endswith('.json')]
  runs = [runs_lib.read_run(p) for p in paths if not str(p).endswith('.json')]
  ensembles = [runs_lib.read_ensemble_report(p) for p in ensemble_paths]
  out = pathlib.Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  written = {}
  groups = runs_lib.group_runs(runs)

  sections = ['# Prompt-tuning report\n']
  if runs:
    sections.append(
        f'{len(runs)} runs in {len(groups)} groups. A group is the runs that '
        'share task, method, model, prompt length, initialisation, '
        'pretraining, steps and learning rate; its numbers are mean ± sample '
        'std (n - 1) over its seeds. The score is the best validation step\'s '
        'selection score (the mean of the task\'s metrics).\n')
    sections += ['## Summary\n', report_tables.summary_table(groups)]
    sections += ['## Runs\n', report_tables.runs_table(runs)]
    sections += ['## Parameters (Table 4-like)\n',
                 'Trainable and total parameters (frozen model + prompt for '
                 'prompt tuning). The paper\'s counts are shown for its sizes '
                 'with a 100-token prompt.\n',
                 report_tables.parameters_table(runs)]
    table1 = report_tables.mrqa_table(runs)
    if table1:
      sections += ['## MRQA zero-shot transfer (Table 1-like)\n',
                   'Trained on SQuAD, F1 on each evaluation set at the best '
                   'step; the paper\'s columns are T5-XXL, mean ± std over 3 '
                   'runs.\n', table1]
    table2 = report_tables.paraphrase_table(runs)
    if table2:
      sections += ['## Paraphrase zero-shot transfer (Table 2-like)\n',
                   'Accuracy / F1 on the target dataset at the best step '
                   '(selected on the source); the paper\'s columns are '
                   'T5-XXL.\n', table2]
  for report in ensembles:
    sections += [f'## Prompt ensemble (Table 3-like): {report.path}\n',
                 report_tables.ensemble_table(report)]

  if figures and runs:
    sections.append('## Figures\n')
    # '+ sentinel' runs are a pretraining setting of their task's figures.
    by_task = collections.defaultdict(list)
    for group in groups:
      task = group.first.task.removesuffix(runs_lib.SENTINEL_SUFFIX)
      by_task[task].append(group)
    for task, task_groups in sorted(by_task.items()):
      name = f'figure1_{_file_name(task)}.png'
      caption = figures_lib.plot_score_vs_parameters(task_groups,
                                                     str(out / name))
      written[name[:-4]] = str(out / name)
      sections.append(f'![{task}: score vs model parameters]({name})\n\n'
                      f'*{caption}*\n')
      name = f'figure3_{_file_name(task)}.png'
      caption = figures_lib.plot_ablations(task_groups, str(out / name))
      if caption:
        written[name[:-4]] = str(out / name)
        sections.append(f'![{task}: ablations]({name})\n\n*{caption}*\n')

  path = out / REPORT_FILE
  path.write_text('\n'.join(sections))
  written['report'] = str(path)
  logging.info('wrote %s', ', '.join(written.values()))
  return written
