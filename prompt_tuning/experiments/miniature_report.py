"""The miniature's results: each setting's scores (averaged over the suite's
tasks for a suite plan), the tables, the training-set-size control, the
findings against the paper, and `run_miniature`, which runs a plan
(`miniature.py`) and writes its report.
"""
import dataclasses
import json
import os
import pathlib
import statistics
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from prompt_tuning.checkpoints import embedded
from prompt_tuning.experiments import figures as figures_lib
from prompt_tuning.experiments import miniature
from prompt_tuning.experiments import reports
from prompt_tuning.experiments import runs as runs_lib
from prompt_tuning.utils import tables


# ---------------------------------------------------------------------------
# Aggregates, the control and the findings.
# ---------------------------------------------------------------------------


def suite_averages(plan: miniature.Plan, records: Sequence[Mapping[str, Any]]
                   ) -> List[Dict[str, Any]]:
  """One record per setting and seed: a suite plan's runs averaged over its
  tasks (a corpus task's records as they are).

  Returns:
    Records as `train_run`'s, the suite task left out of 'run', with
    'score' the mean of the task runs' scores (the suite average),
    'tasks' {suite task: its score} and 'seconds' their sum. A setting
    missing a task is left out, with a warning.
  """
  if plan.task != miniature.SUITE:
    return [dict(r) for r in records]
  by_setting = {}
  for record in records:
    run = miniature.Run(**record['run'])
    by_setting.setdefault(run.setting, []).append(record)
  averaged = []
  for setting, members in by_setting.items():
    tasks = {m['run']['suite_task']: m for m in members}
    if set(tasks) != set(plan.tasks):
      logging.warning('miniature: %s ran on %s, not every suite task %s; '
                      'left out of the averages', setting.name, sorted(tasks),
                      list(plan.tasks))
      continue
    averaged.append({
        'run': dataclasses.asdict(setting), 'name': setting.name,
        'score': statistics.fmean(tasks[t]['score'] for t in plan.tasks),
        'tasks': {t: tasks[t]['score'] for t in plan.tasks},
        'seconds': sum(m['seconds'] for m in members)})
  return averaged


def suite_task_table(plan: miniature.Plan, averages: Sequence[Mapping[str, Any]]
                     ) -> str:
  """Figure 1's settings by size: each suite task's score and the average
  (mean ± std over seeds)."""
  rows = []
  for size in plan.sizes:
    for method in plan.figure1_methods:
      chosen = _select(averages, method=method, size=size,
                       train_size=None, **_FIGURE1_SETTING)
      if not chosen:
        continue
      cells = [_cell([{'score': r['tasks'][t]} for r in chosen])
               for t in plan.tasks]
      rows.append([size, method, len(chosen)] + cells + [_cell(chosen)])
  return tables.markdown_table(
      ['size', 'method', 'seeds'] + list(plan.tasks) + ['suite average'],
      rows, align='llr' + 'r' * (len(plan.tasks) + 1))


# Figure 1's prompt: the main job's.
_FIGURE1_SETTING = {'prompt_length': 20, 'init': 'from_class_labels',
                    'kind': embedded.DEFAULT_KIND, 'sentinel': False}


def _stat(records: Sequence[Mapping[str, Any]]) -> Tuple[float, float, int]:
  """Mean and sample std (0 for one run) of the scores (%)."""
  scores = [r['score'] for r in records]
  std = statistics.stdev(scores) if len(scores) > 1 else 0.0
  return statistics.fmean(scores), std, len(scores)


def _cell(records: Sequence[Mapping[str, Any]]) -> str:
  if not records:
    return 'n/a'
  mean, std, n = _stat(records)
  return f'{mean:.1f} ± {std:.1f}' if n > 1 else f'{mean:.1f}'


def _select(records: Sequence[Mapping[str, Any]], **setting
            ) -> List[Mapping[str, Any]]:
  return [r for r in records
          if all(r['run'][k] == v for k, v in setting.items())]


def _mean(records, **setting) -> Optional[float]:
  chosen = _select(records, **setting)
  return _stat(chosen)[0] if chosen else None


def data_size_table(plan: miniature.Plan,
                    records: Sequence[Mapping[str, Any]]) -> str:
  """Validation accuracy against the number of training examples."""
  methods = [m for m in miniature.METHODS if _select(records, method=m)]
  rows = [[n] + [_cell(_select(records, method=m, train_size=n))
                 for m in methods]
          for n in plan.data_size_train_sizes]
  return tables.markdown_table(['training examples'] + methods, rows,
                               align='r' * (1 + len(methods)))


def plot_data_size(plan: miniature.Plan, records: Sequence[Mapping[str, Any]],
                   path: str) -> None:
  """Accuracy against training-set size (log axis), one line per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  # Distinct markers and line styles: equal scores (all at 100%) would
  # otherwise hide one method's line under another's.
  styles = (('o', '-', 9), ('s', '--', 6), ('^', ':', 5))
  for method, (marker, line, size) in zip(miniature.METHODS, styles):
    # (n, mean, sample std) of every size the method ran at.
    points = [(n,) + _stat(chosen)[:2] for n in plan.data_size_train_sizes
              if (chosen := _select(records, method=method, train_size=n))]
    if points:
      xs, means, stds = zip(*points)
      style = dict(marker=marker, linestyle=line, markersize=size,
                   label=method)
      if max(stds) > 0:
        ax.errorbar(xs, means, yerr=stds, capsize=3, **style)
      else:
        ax.plot(xs, means, **style)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('training examples')
  what = 'suite average' if plan.task == miniature.SUITE else 'accuracy'
  ax.set_ylabel(f'validation {what} (%)')
  ax.set_ylim(0, 102)
  ax.set_title(f'{plan.task_label}: {what} vs training-set size '
               f'({plan.train_steps} steps)')
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _points(values: Sequence[Tuple[str, Optional[float]]]) -> str:
  return ', '.join(f'{name} {value:.1f}' for name, value in values
                   if value is not None) or 'not run'


def findings(plan: miniature.Plan, records: Sequence[Mapping[str, Any]],
             ensemble_reports: Sequence[runs_lib.EnsembleReport]) -> str:
  """Each of the paper's claims next to what this run measured.

  The right column is computed from the runs (`suite_averages` of them;
  mean validation score, %); it states the comparison, whatever its
  direction. `ensemble_reports`: none, one, or one per suite task.
  """
  rows = []

  def by_size(**setting):
    return [(size, _mean(records, size=size, **setting))
            for size in plan.sizes]

  def difference(a, b):
    pairs = [(size, x - y) for (size, x), (_, y) in zip(a, b)
             if x is not None and y is not None]
    return ', '.join(f'{size} {d:+.1f}' for size, d in pairs) or 'not run'

  if 'figure1' in plan.experiments:
    prompt = by_size(method='prompt tuning', train_size=None,
                     **_FIGURE1_SETTING)
    model = by_size(method='model tuning', train_size=None)
    rows.append(('Figure 1: prompt tuning closes the gap to model tuning as '
                 'the model grows (matches it at XXL)',
                 'prompt − model tuning by size: ' +
                 difference(prompt, model)))
    if miniature.DESIGN in plan.figure1_methods:
      design = by_size(method=miniature.DESIGN, train_size=None,
                       **_FIGURE1_SETTING)
      rows.append(('Figure 1: prompt design (GPT-3 few-shot) trails prompt '
                   'tuning at every size',
                   'prompt tuning − prompt design by size: ' +
                   difference(prompt, design)))
  if 'prompt_length' in plan.experiments and len(plan.prompt_lengths) > 1:
    lengths = sorted(plan.prompt_lengths)
    cells = []
    for size in plan.sizes:
      values = [(f'P={p}', _mean(records, method='prompt tuning', size=size,
                                 prompt_length=p, init='from_class_labels',
                                 kind=embedded.DEFAULT_KIND, sentinel=False,
                                 train_size=None)) for p in lengths]
      cells.append(f'{size}: {_points(values)}')
    rows.append(('Figure 3(a): 20+ tokens give a large boost over 1; beyond '
                 '20 the gains are marginal', '; '.join(cells)))
  if 'init' in plan.experiments and len(plan.inits) > 1:
    cells = []
    for size in plan.sizes:
      values = [(init, _mean(records, method='prompt tuning', size=size,
                             prompt_length=20, init=init,
                             kind=embedded.DEFAULT_KIND, sentinel=False,
                             train_size=None)) for init in plan.inits]
      cells.append(f'{size}: {_points(values)}')
    rows.append(('Figure 3(b): class-label init beats sampled vocab, which '
                 'beats random uniform; the gap closes with size',
                 '; '.join(cells)))
  if 'objective' in plan.experiments and len(plan.objectives) > 1:
    cells = []
    for size in plan.sizes:
      values = [(kind + (' + sentinel' if sentinel else ''),
                 _mean(records, method='prompt tuning', size=size,
                       prompt_length=20, init='from_class_labels', kind=kind,
                       sentinel=sentinel, train_size=None))
                for kind, sentinel in plan.objectives]
      cells.append(f'{size}: {_points(values)}')
    rows.append(('Figure 3(c, d): span corruption makes a poor frozen model, '
                 '+ sentinel helps a little, LM adaptation helps most, more '
                 'adaptation is better', '; '.join(cells)))
  if ensemble_reports:
    def score(field):
      # Mean over the reports (one per suite task) of each task's score,
      # the mean of its metrics.
      return statistics.fmean(
          statistics.fmean(task_metrics.values())
          for report in ensemble_reports
          for task_metrics in getattr(report, field).values())
    rows.append(('Table 3: the ensemble beats the average and the best of '
                 'its prompts',
                 f'average {score("average"):.1f}, best '
                 f'{score("best"):.1f}, ensemble '
                 f'{score("ensemble"):.1f}'))
  if 'data_size' in plan.experiments:
    cells = []
    for n in plan.data_size_train_sizes:
      values = [(m, _mean(records, method=m, train_size=n))
                for m in plan.data_size_methods]
      cells.append(f'{n} examples: {_points(values)}')
    rows.append(('(the control) pretraining matters: with few examples the '
                 'prompted frozen model beats the architecture trained from '
                 'scratch', '; '.join(cells)))
  what = ('suite average' if plan.task == miniature.SUITE else
          'validation accuracy')
  return tables.markdown_table(['the paper', f'this run ({what}, %)'], rows)


def _times_table(records: Sequence[Mapping[str, Any]]) -> str:
  by_method = {}
  for r in records:
    by_method.setdefault((r['run']['method'], r['run']['size']),
                         []).append(r['seconds'])
  rows = [[method, size, len(seconds), f'{statistics.fmean(seconds):.1f}']
          for (method, size), seconds in sorted(by_method.items())]
  return tables.markdown_table(
      ['method', 'size', 'runs', 'mean seconds per run'], rows, align='llrr')


# ---------------------------------------------------------------------------
# The command.
# ---------------------------------------------------------------------------


def _suite_runs(plan: miniature.Plan,
                records: Mapping[miniature.Run, Mapping[str, Any]],
                settings: Sequence[miniature.Run]) -> List[runs_lib.Run]:
  """The report's runs of `settings`, one per setting and seed, each the
  average of its suite tasks' runs (task 'corpus_suite', score the suite
  average, metrics those of every task).

  A design run trained nothing and has no run directory to read: it is
  described as the frozen model of a prompt-tuning run of its size (no
  prompt, nothing trained). Settings with a task missing are left out.
  """
  by_size = {}
  for run, record in records.items():
    if run.method == 'prompt tuning':
      by_size.setdefault(run.size, record['model_dir'])
  averaged = []
  for setting in dict.fromkeys(settings):
    members = [records.get(dataclasses.replace(setting, suite_task=t))
               for t in plan.tasks]
    if any(m is None for m in members):
      continue
    if setting.method == miniature.DESIGN:
      if setting.size not in by_size:
        continue
      base = runs_lib.read_run(by_size[setting.size])
      base = dataclasses.replace(
          base, method=miniature.DESIGN, total_parameters=base.model_parameters,
          trainable_parameters=0, prompt_length=0, init='', train_steps=0,
          last_step=0, learning_rate=None, best_step=0)
      task_runs = [
          dataclasses.replace(base, score=m['score'], metrics={
              miniature.task_name(plan, miniature.Run(**m['run'])):
                  m['metrics']})
          for m in members]
    else:
      task_runs = [runs_lib.read_run(m['model_dir']) for m in members]
    metrics = {}
    for task_run in task_runs:
      metrics.update(task_run.metrics)
    averaged.append(dataclasses.replace(
        task_runs[0], task=plan.task_label, run_dir=setting.name,
        score=statistics.fmean(r.score for r in task_runs), metrics=metrics))
  return averaged


def ablation_table(plan: miniature.Plan,
                   averages: Sequence[Mapping[str, Any]]) -> str:
  """Figure 3's settings: the suite average (mean ± std over seeds) of each
  prompt length, initialisation and pretraining objective, by size."""
  panels = []
  if 'prompt_length' in plan.experiments:
    panels += [('(a) prompt length', f'P={p}', dict(prompt_length=p))
               for p in sorted(plan.prompt_lengths)]
  if 'init' in plan.experiments:
    panels += [('(b) initialisation', i, dict(init=i)) for i in plan.inits]
  if 'objective' in plan.experiments:
    panels += [('(c, d) pretraining', k + (' + sentinel' if t else ''),
                dict(kind=k, sentinel=t)) for k, t in plan.objectives]
  rows = []
  for panel, value, varied in panels:
    setting = {**_FIGURE1_SETTING, **varied}
    rows.append([panel, value] + [
        _cell(_select(averages, method='prompt tuning', size=z,
                      train_size=None, **setting)) for z in plan.sizes])
  return tables.markdown_table(['panel', 'setting'] + list(plan.sizes), rows,
                               align='ll' + 'r' * len(plan.sizes))


def _suite_sections(plan: miniature.Plan,
                    experiments: Mapping[str, Sequence[miniature.Run]],
                    records: Mapping[miniature.Run, Mapping[str, Any]],
                    averages: Sequence[Mapping[str, Any]], output_dir: str,
                    written: Dict[str, str]) -> List[str]:
  """The suite-average Figure 1 and Figure 3, each with its table."""
  sections = []
  tasks = ', '.join(plan.tasks)
  # Every seed of a setting counts (the ensemble's seeds are seeds of
  # Figure 1's prompt), as in the tables.
  def seeds_of(settings):
    keys = {dataclasses.replace(r.setting, seed=0) for r in settings}
    return [r.setting for r in records
            if dataclasses.replace(r.setting, seed=0) in keys]

  if 'figure1' in experiments:
    groups = runs_lib.group_runs(_suite_runs(
        plan, records, seeds_of(experiments['figure1'])))
    if groups:
      name = 'figure1_corpus_suite'
      path = os.path.join(output_dir, name + '.png')
      caption = figures_lib.plot_score_vs_parameters(groups, path)
      written[name] = path
      sections += [
          '## Figure 1 on the suite average\n',
          f'Each setting trained (or, for prompt design, evaluated) once per '
          f'suite task ({tasks}); a seed\'s score is the mean over the tasks '
          'of each task\'s score (accuracy; for qa the mean of F1 and exact '
          'match), as `corpus_suite_tasks.suite_average` computes it. Prompt '
          'design is the frozen model given the task\'s instruction '
          '(`corpus_suite_tasks.INSTRUCTIONS`) before each input, nothing '
          'trained, one evaluation.\n',
          f'![corpus_suite: suite average vs model parameters]({name}.png)\n',
          f'*{caption}*\n', suite_task_table(plan, averages)]
  ablations = seeds_of([r for name in ('prompt_length', 'init', 'objective')
                        for r in experiments.get(name, ())])
  if ablations:
    groups = runs_lib.group_runs(_suite_runs(plan, records, ablations))
    name = 'figure3_corpus_suite'
    path = os.path.join(output_dir, name + '.png')
    caption = figures_lib.plot_ablations(groups, path)
    if caption:
      written[name] = path
      sections += ['## Figure 3 on the suite average\n',
                   f'![corpus_suite: ablations]({name}.png)\n',
                   f'*{caption}*\n', ablation_table(plan, averages)]
  return sections


def run_miniature(plan: miniature.Plan, output_dir: str) -> Dict[str, str]:
  """Runs the plan's experiments and writes the report; returns the paths
  written (as `reports.write_report`, plus 'data_size', 'summary' and, for
  the suite, 'figure1_corpus_suite' and 'figure3_corpus_suite')."""
  start = time.time()
  experiments = miniature.plan_runs(plan)
  unique = list(dict.fromkeys(r for runs in experiments.values()
                              for r in runs))
  records = {}
  for i, run in enumerate(unique):
    print(f'[{i + 1}/{len(unique)}] {run.name}', flush=True)
    records[run] = miniature.train_run(plan, run, output_dir)
    print(f'    score {records[run]["score"]:.1f}%  '
          f'({records[run]["seconds"]:.0f} s; '
          f'{time.time() - start:.0f} s so far)', flush=True)
  all_records = list(records.values())
  averages = suite_averages(plan, all_records)

  # Design runs have no run directory for the report (nothing trained).
  paths = [records[r]['model_dir'] for name, runs in experiments.items()
           if name != 'data_size'
           for r in runs if r.method != miniature.DESIGN]
  ensemble_reports = []
  if 'ensemble' in experiments:
    print('ensembling', plan.ensemble_prompts, 'prompts', flush=True)
    for task in plan.tasks:
      ensemble_path = miniature.run_ensemble(
          plan, [records[r] for r in experiments['ensemble']
                 if r.suite_task == task], output_dir)
      paths.append(ensemble_path)
      ensemble_reports.append(runs_lib.read_ensemble_report(ensemble_path))
  if paths:
    written = reports.write_report(list(dict.fromkeys(paths)), output_dir)
    sections = [pathlib.Path(written['report']).read_text()]
  else:
    written = {'report': os.path.join(output_dir, reports.REPORT_FILE)}
    sections = ['# Prompt-tuning report\n']
  if plan.task == miniature.SUITE:
    sections += _suite_sections(plan, experiments, records, averages,
                                output_dir, written)
  what = 'suite average' if plan.task == miniature.SUITE else 'accuracy'
  if 'data_size' in experiments:
    settings = {run.setting for run in experiments['data_size']}
    size_records = [r for r in averages
                    if miniature.Run(**r['run']) in settings]
    figure = f'data_size_{plan.task_label}.png'
    plot_data_size(plan, size_records, os.path.join(output_dir, figure))
    written['data_size'] = os.path.join(output_dir, figure)
    sections += [
        '## Training-set size: pretraining against the from-scratch control\n',
        f'{plan.task_label}, model size {plan.main_size}, '
        f'{plan.train_steps} steps each, final validation {what} (%)'
        + ('. ' if plan.data_size_seeds == 1 else
           f', mean ± sample std over {plan.data_size_seeds} seeds. ') +
        'Prompt tuning and model tuning start from the frozen LM-adapted '
        'model; "from scratch" trains the same architecture from random '
        'weights on the same examples for the same number of steps '
        '(each of its steps costs more than a prompt-tuning step, so it '
        'gets more time, not less).\n',
        data_size_table(plan, size_records),
        f'![{what} vs training-set size]({figure})\n']
  sections += ['## The miniature against the paper\n',
               'Each claim of the paper next to what these runs measured '
               '(mean over seeds). Where they disagree, the runs are '
               'reported as they are.\n',
               findings(plan, averages, ensemble_reports)]
  elapsed = time.time() - start
  run_seconds = sum(r['seconds'] for r in all_records)
  designs = sum(run.method == miniature.DESIGN for run in unique)
  counted = f'{len(unique)} runs'
  if designs:  # They train nothing.
    counted += (f' ({designs} of them prompt design, evaluated only; the '
                f'others {plan.train_steps} steps each)')
  else:
    counted += f', {plan.train_steps} steps each'
  if 'ensemble' in plan.experiments:
    counted += ', plus the ensembles'
  sections += ['## Run time\n',
               f'{counted}, on {os.cpu_count()} CPU '
               f'cores: {run_seconds / 60:.1f} minutes of training run time '
               'in all (each run timed where it ran; runs reused from an '
               'earlier invocation keep their original time); this '
               f'invocation took {elapsed / 60:.1f} minutes.\n',
               _times_table(all_records)]
  from prompt_tuning.utils import files  # pylint: disable=g-import-not-at-top
  files.atomic_write_bytes(written['report'], '\n'.join(sections).encode())
  summary = {'plan': dataclasses.asdict(plan), 'seconds': elapsed,
             'runs': all_records}
  if plan.task == miniature.SUITE:
    summary['suite_averages'] = averages
  written['summary'] = os.path.join(output_dir, miniature.SUMMARY_FILE)
  files.atomic_write_bytes(written['summary'],
                           json.dumps(summary, indent=1).encode())
  return written
