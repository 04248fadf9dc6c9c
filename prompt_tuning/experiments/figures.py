"""The report's figures (PNG, matplotlib's Agg backend): score against
model parameters (Figure 1-like) and the prompt-tuning ablations (Figure
3-like).

NOTE: the paper printed no per-size numbers for Figures 1 and 3, so the
figures carry no paper line, only a note saying so.
"""
import collections
from typing import Any, Dict, List, Optional, Sequence

from prompt_tuning.experiments import runs as runs_lib

_DODGE_NOTE = ('lines are shifted sideways by up to a few percent so points '
               'at one size do not hide each other')
NOT_TRANSCRIBED = ('paper values not transcribed: the paper printed no '
                   'per-size numbers for this figure')



def _new_figure(width: float, height: float):
  """A matplotlib figure drawn by the Agg backend (no pyplot, no display)."""
  # pylint: disable=g-import-not-at-top
  from matplotlib import figure as mpl_figure
  from matplotlib.backends import backend_agg
  # pylint: enable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(width, height))
  backend_agg.FigureCanvasAgg(fig)
  return fig


def _dodges(count: int) -> List[float]:
  """x factors that spread `count` lines' points apart at one size (~2%)."""
  return [10 ** (0.01 * (i - (count - 1) / 2)) for i in range(count)]


def _plot_line(ax, groups: Sequence[runs_lib.Group], label: str,
               dodge: float = 1.0) -> None:
  """One line: mean score per model size, seed std as error bars."""
  groups = sorted(groups, key=lambda g: g.first.model_parameters)
  x = [g.first.model_parameters * dodge for g in groups]
  y = [g.score.mean for g in groups]
  err = [0.0 if g.score.n < 2 else g.score.std for g in groups]
  counts = sorted({g.score.n for g in groups})
  n = (f'{counts[0]}' if len(counts) == 1 else f'{counts[0]}-{counts[-1]}')
  ax.errorbar(x, y, yerr=err, marker='o', capsize=3,
              label=f'{label} ({n} seeds)')


def _style_axis(ax, title: str) -> None:
  ax.set_xscale('log')
  ax.set_xlabel('model parameters')
  ax.set_ylabel('score (best step)')
  ax.set_title(title, fontsize=9)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=7)
  xs = [x for line in ax.get_lines() for x in line.get_xdata()]
  if xs and max(xs) < 1.2 * min(xs):  # One size: widen the axis around it.
    ax.set_xlim(min(xs) / 3, max(xs) * 3)
  # Label the decades only: minor-tick labels within a decade overlap.
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _mode(values: Sequence[Any]) -> Any:
  counts = collections.Counter(values)
  return max(counts, key=lambda v: (counts[v], str(v)))


def _figure1_lines(groups: Sequence[runs_lib.Group]
                   ) -> Dict[str, List[runs_lib.Group]]:
  """One line per method: its most-run setting (ties: the longer prompt)."""
  by_method = collections.defaultdict(list)
  for group in groups:
    by_method[group.first.method].append(group)
  lines = {}
  for method, members in sorted(by_method.items()):
    def setting(g):
      r = g.first
      return (r.prompt_length, r.init, r.pretraining, r.train_steps or 0,
              r.learning_rate or 0.0)
    counts = collections.Counter()
    for g in members:
      counts[setting(g)] += len(g.runs)
    # Ties: the longer prompt, then the paper's default initialisation.
    chosen = max(counts, key=lambda s: (counts[s], s[0],
                                        s[1] == 'class labels'))
    selected = [g for g in members if setting(g) == chosen]
    lines[runs_lib.variant(selected[0].first)] = selected
  return lines


def plot_score_vs_parameters(groups: Sequence[runs_lib.Group],
                             path: str) -> str:
  """Figure 1-like: score against model parameters, one line per method.

  Args:
    groups: the groups of one task.
    path: the PNG to write.

  Returns:
    The figure's caption.
  """
  task = groups[0].first.task.removesuffix(runs_lib.SENTINEL_SUFFIX)
  fig = _new_figure(6.4, 4.4)
  ax = fig.add_subplot()
  lines = _figure1_lines(groups)
  for (label, members), dodge in zip(lines.items(), _dodges(len(lines))):
    _plot_line(ax, members, label, dodge)
  _style_axis(ax, f'{task}: score vs model parameters')
  fig.text(0.01, 0.01, NOT_TRANSCRIBED, fontsize=7, style='italic')
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(path, dpi=110)
  return (f'Figure 1-like, {task}: best-step score against model parameters '
          '(log axis), one line per method (for each method its most-run '
          'setting: ' + '; '.join(lines) + '); error bars: sample std over '
          f'seeds; {_DODGE_NOTE}. {NOT_TRANSCRIBED}.')


_ABLATIONS = (('prompt length', 'prompt_length'),
              ('prompt initialisation', 'init'),
              ('pretraining objective', 'pretraining'))


def plot_ablations(groups: Sequence[runs_lib.Group],
                   path: str) -> Optional[str]:
  """Figure 3-like panels: prompt length, initialisation, pretraining.

  Each panel draws the prompt-tuning groups of one task against model
  parameters, one line per value of its setting, with the other settings
  held at their most common value (by number of runs).

  Args:
    groups: the groups of one task.
    path: the PNG to write.

  Returns:
    The figure's caption, or None (nothing written) without prompt tuning.
  """
  prompt = [g for g in groups if 'prompt tuning' in g.first.method]
  if not prompt:
    return None
  task = prompt[0].first.task.removesuffix(runs_lib.SENTINEL_SUFFIX)

  def attrs(g):
    r = g.first
    return {'method': r.method, 'prompt_length': r.prompt_length,
            'init': r.init, 'pretraining': r.pretraining,
            'train_steps': r.train_steps, 'learning_rate': r.learning_rate}

  held = {k: _mode([attrs(g)[k] for g in prompt for _ in g.runs])
          for k in attrs(prompt[0])}
  fig = _new_figure(4.2 * len(_ABLATIONS), 4.2)
  notes = []
  for i, (title, varied) in enumerate(_ABLATIONS):
    ax = fig.add_subplot(1, len(_ABLATIONS), i + 1)
    fixed = {k: v for k, v in held.items() if k != varied}
    members = [g for g in prompt
               if all(attrs(g)[k] == v for k, v in fixed.items())]
    values = sorted({attrs(g)[varied] for g in members}, key=str)
    if varied == 'prompt_length':
      values = sorted(values)
    for value, dodge in zip(values, _dodges(len(values))):
      _plot_line(ax, [g for g in members if attrs(g)[varied] == value],
                 f'P={value}' if varied == 'prompt_length' else str(value),
                 dodge)
    others = ', '.join(f'{k.replace("_", " ")} {v}' for k, v in fixed.items()
                       if k in ('prompt_length', 'init', 'pretraining'))
    _style_axis(ax, f'({"abc"[i]}) {title}\n({others})')
    notes.append(f'({"abc"[i]}) {title}: {len(values)} value(s)')
  fig.text(0.01, 0.01, NOT_TRANSCRIBED, fontsize=7, style='italic')
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(path, dpi=110)
  return (f'Figure 3-like, {task}: prompt-tuning ablations against model '
          'parameters (log axis); each panel varies one setting and holds '
          'the others at their most common value; ' + '; '.join(notes) +
          f'; {_DODGE_NOTE}. {NOT_TRANSCRIBED}.')
