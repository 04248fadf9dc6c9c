"""The report's Markdown tables: the summary, the runs, and the paper's
Tables 1-4, with the paper's numbers (`paper_numbers`) as reference columns
where a table matches them."""
import collections
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from prompt_tuning.experiments import paper_numbers
from prompt_tuning.experiments import runs as runs_lib
from prompt_tuning.utils import tables

_SUPERGLUE_RE = re.compile(
    r'super_glue_(boolq|cb|copa|multirc|record|rte|wic|wsc)_')
_PARAPHRASE_RE = re.compile(r'glue_(qqp|mrpc)_to_(qqp|mrpc)_')


def _lr(value: Optional[float]) -> str:
  return '' if value is None else f'{value:g}'


def _steps(run: runs_lib.Run) -> str:
  if run.train_steps is None or run.last_step >= run.train_steps:
    return str(run.last_step)
  return f'{run.last_step} of {run.train_steps} (unfinished)'


def summary_table(groups: Sequence[runs_lib.Group]) -> str:
  """One row per group: setting, seeds, score and metrics as mean ± std."""
  rows = []
  for group in groups:
    run = group.first
    names = group.metric_names()
    one_task = len({t for t, _ in names}) == 1
    metrics = '<br>'.join(
        f'{m if one_task else f"{t}/{m}"} {group.metric(t, m).format()}'
        for t, m in names)
    rows.append([run.task, run.method, run.model,
                 f'{run.model_parameters:,}', f'{run.trainable_parameters:,}',
                 run.prompt_length or '', run.init, run.pretraining,
                 run.train_steps or '', _lr(run.learning_rate),
                 ', '.join(map(str, group.seeds)), group.score.format(),
                 metrics])
  return tables.markdown_table(
      ['task', 'method', 'model', 'model parameters', 'trainable', 'prompt',
       'init', 'pretraining', 'steps', 'lr', 'seeds', 'score',
       'metrics at the best step'], rows)


def runs_table(runs: Sequence[runs_lib.Run]) -> str:
  """One row per run."""
  rows = [[r.run_dir, r.task, r.method, r.model, r.prompt_length or '',
           r.init, r.seed, _steps(r), r.best_step, f'{r.score:.2f}']
          for r in sorted(runs, key=lambda r: (r.task, r.method,
                                               r.model_parameters,
                                               r.prompt_length, r.init,
                                               r.seed, r.run_dir))]
  return tables.markdown_table(['run', 'task', 'method', 'model', 'prompt',
                                'init', 'seed', 'steps', 'best step',
                                'score'], rows)


def parameters_table(runs: Sequence[runs_lib.Run]) -> str:
  """Table 4-like: trainable and total parameters per model and setting.

  The paper's counts are given where the model is one of its sizes and the
  setting is a 100-token prompt.
  """
  seen = {}
  for run in runs:
    seen.setdefault((run.model_parameters, run.model, run.method,
                     run.prompt_length), run)
  rows = []
  for (_, model, method, length), run in sorted(seen.items()):
    total = run.total_parameters
    paper = ''
    size = next((k for k, v in runs_lib.SIZE_NAMES.items() if v == model), None)
    if (size and method == 'prompt tuning' and
        length == paper_numbers.TABLE4_PROMPT_LENGTH):
      trainable, paper_total = paper_numbers.TABLE4_PARAMETERS[size]
      paper = f'{trainable:,} / {paper_total:,}'
    rows.append([model, method, length or '', f'{run.trainable_parameters:,}',
                 f'{total:,}', f'{100 * run.trainable_parameters / total:.5f}%',
                 paper])
  return tables.markdown_table(['model', 'method', 'prompt', 'trainable',
                                'total', '% trainable',
                                'paper trainable / total'], rows)


def _variants(runs: Sequence[runs_lib.Run]) -> Dict[str, List[runs_lib.Run]]:
  """Runs by method and prompt setting (+ pretraining where it differs)."""
  several = len({r.pretraining for r in runs}) > 1
  by_variant = collections.defaultdict(list)
  for run in runs:
    label = runs_lib.variant(run) + (f', {run.pretraining}' if several else '')
    by_variant[label].append(run)
  return dict(sorted(by_variant.items()))


def _fmt(stat: Optional[runs_lib.Stat]) -> str:
  return stat.format() if stat else ''


def _paper(pair: Tuple[float, float]) -> str:
  return f'{pair[0]:.1f} ± {pair[1]:.1f}'


def mrqa_table(runs: Sequence[runs_lib.Run]) -> str:
  """Table 1-like: F1 on SQuAD and the MRQA out-of-domain sets ('' if none).

  One table per model; one column per method and prompt setting (seeds and
  training mixtures pooled), a delta column when exactly one model-tuning and
  one prompt-tuning setting are present, and the paper's T5-XXL columns.
  """
  tasks = paper_numbers.TABLE1_MRQA_F1
  eligible = [r for r in runs if set(r.metrics) & set(tasks)]
  if not eligible:
    return ''
  out = []
  for model in sorted({r.model for r in eligible},
                      key=lambda m: min(r.model_parameters for r in eligible
                                        if r.model == m)):
    variants = _variants([r for r in eligible if r.model == model])
    model_v = [v for v in variants if v.startswith('model tuning')]
    prompt_v = [v for v in variants if v.startswith('prompt tuning')]
    delta = len(model_v) == 1 and len(prompt_v) == 1
    header = ['dataset', 'domain'] + [f'{v} (n)' for v in variants]
    if delta:
      header.append('delta')
    header += [f'paper model tuning ({paper_numbers.TABLES_1_TO_3_MODEL})',
               f'paper prompt tuning ({paper_numbers.TABLES_1_TO_3_MODEL})',
               'paper delta']
    rows = []
    for task, (name, domain, paper_mt, paper_pt) in tasks.items():
      stats = {v: runs_lib.metric_stat(rs, task, 'f1')
               for v, rs in variants.items()}
      if not any(stats.values()):
        continue
      row = [name, domain] + [f'{_fmt(s)} ({s.n})' if s else ''
                              for s in stats.values()]
      if delta:
        m, p = stats[model_v[0]], stats[prompt_v[0]]
        row.append(f'{p.mean - m.mean:+.2f}' if m and p else '')
      row += [_paper(paper_mt), _paper(paper_pt),
              f'{paper_pt[0] - paper_mt[0]:+.1f}']
      rows.append(row)
    out.append(f'{model}, F1 (mean ± std over runs):\n\n' +
               tables.markdown_table(header, rows))
  return '\n'.join(out)


def paraphrase_table(runs: Sequence[runs_lib.Run]) -> str:
  """Table 2-like: zero-shot accuracy / F1 on the target dataset ('' if none).

  Rows are QQP -> MRPC and MRPC -> QQP per model; columns are the method and
  prompt settings, then the paper's model- and prompt-tuning numbers.
  """
  rows = []
  variants_all = _variants([r for r in runs if _PARAPHRASE_RE.search(r.task)])
  if not variants_all:
    return ''
  names = list(variants_all)
  for model in sorted({r.model for rs in variants_all.values() for r in rs}):
    for source, target in paper_numbers.TABLE2_PARAPHRASE:
      cells, any_value = [], False
      for variant in names:
        selected = [r for r in variants_all[variant] if r.model == model and
                    _PARAPHRASE_RE.search(r.task).groups() == (source, target)]
        target_tasks = sorted({t for r in selected for t in r.metrics
                               if f'{target}_from_{source}' in t})
        if not target_tasks:
          cells.append('')
          continue
        acc = runs_lib.metric_stat(selected, target_tasks[0], 'accuracy')
        f1 = runs_lib.metric_stat(selected, target_tasks[0], 'f1')
        any_value = True
        cells.append(f'{_fmt(acc)} / {_fmt(f1)} ({len(selected)})')
      if not any_value:
        continue
      paper = paper_numbers.TABLE2_PARAPHRASE[(source, target)]
      rows.append([model, f'{source.upper()} → {target.upper()}'] + cells + [
          f'{_paper(paper[m]["accuracy"])} / {_paper(paper[m]["f1"])}'
          for m in ('model tuning', 'prompt tuning')])
  return tables.markdown_table(
      ['model', 'train → eval'] + [f'{v}: acc. / F1 (n)' for v in names] +
      [f'paper model tuning ({paper_numbers.TABLES_1_TO_3_MODEL})',
       f'paper prompt tuning ({paper_numbers.TABLES_1_TO_3_MODEL})'], rows)



def _superglue_name(task: str) -> Optional[str]:
  match = _SUPERGLUE_RE.search(task + '_')
  return match.group(1) if match else None


def ensemble_table(report: runs_lib.EnsembleReport) -> str:
  """Table 3-like: average prompt, best prompt, ensemble, with the paper's.

  Rows are (task, metric); the paper's T5-XXL values are given for the
  SuperGLUE tasks. A 'SuperGLUE score' row (mean over tasks of the mean of
  the paper's metrics) is added when all eight tasks are present.
  """
  rows = []
  tasks = list(report.ensemble)
  order = list(paper_numbers.TABLE3_ENSEMBLE)
  tasks.sort(key=lambda t: (order.index(_superglue_name(t))
                            if _superglue_name(t) in order else len(order), t))
  for task in tasks:
    paper = paper_numbers.TABLE3_ENSEMBLE.get(_superglue_name(task), {})
    for metric in report.ensemble[task]:
      values = [part.get(task, {}).get(metric) for part in
                (report.average, report.best, report.ensemble)]
      rows.append([task or '(task not named)', metric, len(report.prompts)] +
                  ['' if v is None else f'{v:.2f}' for v in values] +
                  ([f'{x:.1f}' for x in paper[metric]] if metric in paper
                   else ['', '', '']))
  superglue = {_superglue_name(t): t for t in tasks if _superglue_name(t)}
  if set(superglue) == set(order):
    scores = []
    for part in (report.average, report.best, report.ensemble):
      try:
        # The paper's score: mean over tasks of the mean of its metrics.
        task_means = [
            np.mean([part[superglue[name]][metric]
                     for metric in paper_numbers.TABLE3_ENSEMBLE[name]])
            for name in order]
        scores.append(f'{np.mean(task_means):.2f}')
      except KeyError:
        scores.append('')
    rows.append(['SuperGLUE score', '', len(report.prompts)] + scores +
                [f'{x:.1f}' for x in paper_numbers.TABLE3_SUPERGLUE_SCORE])
  model = paper_numbers.TABLES_1_TO_3_MODEL
  return tables.markdown_table(
      ['task', 'metric', 'prompts', 'average prompt', 'best prompt',
       'ensemble', f'paper average ({model})', f'paper best ({model})',
       f'paper ensemble ({model})'], rows)
