"""The paper in miniature, as a library: the plan, its runs, the
training-set-size control and the findings (`python -m prompt_tuning.miniature`
runs it; its docstring describes the experiments and what is written).

Every run but the ensemble is `python -m prompt_tuning.train`'s job, run in
this process with the same gin files; a run that finished before (its
`miniature.json` exists) is not run again, so an interrupted miniature resumes.
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
from prompt_tuning.checkpoints import run_dir
from prompt_tuning.experiments import reports
from prompt_tuning.experiments import runs as runs_lib
from prompt_tuning.utils import tables

METHODS = ('prompt tuning', 'model tuning', 'from scratch')
_METHOD_GIN = {'prompt tuning': 'corpus/prompt_tune.gin',
               'model tuning': 'corpus/model_tune.gin',
               'from scratch': 'corpus/from_scratch.gin'}
_METHOD_SLUG = {'prompt tuning': 'pt', 'model tuning': 'mt',
                'from scratch': 'scratch'}
INITS = ('random_uniform', 'from_sampled_vocab', 'from_class_labels')
# (kind of frozen model, '+ sentinel' at tuning time), Figure 3(c, d) order.
OBJECTIVES = (('span_corruption', False), ('span_corruption', True),
              ('lm_adapted_short', False), ('lm_adapted_long', False))
EXPERIMENTS = ('figure1', 'prompt_length', 'init', 'objective', 'ensemble',
               'data_size')
RUN_FILE = 'miniature.json'
SUMMARY_FILE = 'miniature.json'


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run's setting (the rest is the main job's)."""
  method: str = 'prompt tuning'
  size: str = embedded.DEFAULT_SIZE
  kind: str = embedded.DEFAULT_KIND
  sentinel: bool = False
  prompt_length: int = 20
  init: str = 'from_class_labels'
  train_size: Optional[int] = None  # None: the task's default size
  seed: int = 0

  @property
  def name(self) -> str:
    """A directory name that differs for every setting."""
    parts = [_METHOD_SLUG[self.method], self.size]
    if self.method != 'from scratch':
      parts.append(self.kind + ('_sentinel' if self.sentinel else ''))
    if self.method == 'prompt tuning':
      parts += [f'p{self.prompt_length}', self.init]
    if self.train_size is not None:
      parts.append(f'n{self.train_size}')
    parts.append(f's{self.seed}')
    return '-'.join(parts)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the miniature runs."""
  task: str = 'topic'
  # The sizes of the report in docs/miniature.md; `embedded.SIZES` is the
  # whole ladder.
  sizes: Tuple[str, ...] = ('tiny', 'small')
  # The model of the ensemble and of the training-set-size control.
  main_size: str = embedded.DEFAULT_SIZE
  seeds: int = 2
  train_steps: int = 100
  eval_examples: Optional[int] = None  # None: the whole validation split
  prompt_lengths: Tuple[int, ...] = (1, 5, 20, 100)
  inits: Tuple[str, ...] = INITS
  objectives: Tuple[Tuple[str, bool], ...] = OBJECTIVES
  ensemble_prompts: int = 5
  data_size_train_sizes: Tuple[int, ...] = (32, 128, 512, 2048)
  data_size_methods: Tuple[str, ...] = METHODS
  experiments: Tuple[str, ...] = EXPERIMENTS


FULL = Plan()
QUICK = Plan(sizes=('tiny', 'small'), seeds=1, train_steps=50,
             eval_examples=200, prompt_lengths=(1, 20),
             inits=('random_uniform', 'from_class_labels'),
             objectives=(('span_corruption', False),
                         ('lm_adapted_long', False)),
             ensemble_prompts=3, data_size_train_sizes=(32, 512))


def plan_runs(plan: Plan) -> Dict[str, List[Run]]:
  """The runs of each experiment of `plan` (settings shared between
  experiments are one run)."""
  seeds = range(plan.seeds)
  runs = {}
  if 'figure1' in plan.experiments:
    runs['figure1'] = [Run(method=m, size=z, seed=s)
                       for z in plan.sizes
                       for m in ('prompt tuning', 'model tuning')
                       for s in seeds]
  if 'prompt_length' in plan.experiments:
    runs['prompt_length'] = [Run(size=z, prompt_length=p, seed=s)
                             for z in plan.sizes
                             for p in plan.prompt_lengths for s in seeds]
  if 'init' in plan.experiments:
    runs['init'] = [Run(size=z, init=i, seed=s)
                    for z in plan.sizes for i in plan.inits for s in seeds]
  if 'objective' in plan.experiments:
    runs['objective'] = [Run(size=z, kind=k, sentinel=t, seed=s)
                         for z in plan.sizes for k, t in plan.objectives
                         for s in seeds]
  if 'ensemble' in plan.experiments:
    runs['ensemble'] = [Run(size=plan.main_size, seed=s)
                        for s in range(plan.ensemble_prompts)]
  if 'data_size' in plan.experiments:
    runs['data_size'] = [Run(method=m, size=plan.main_size, train_size=n)
                         for n in plan.data_size_train_sizes
                         for m in plan.data_size_methods]
  return runs


def task_name(plan: Plan, run: Run) -> str:
  """The seqio task a run trains on."""
  from prompt_tuning.tasks import corpus_tasks  # pylint: disable=g-import-not-at-top
  name = corpus_tasks.task_name(plan.task, run.train_size)
  return name + '_sentinel' if run.sentinel else name


def gin_arguments(plan: Plan, run: Run, model_dir: str
                  ) -> Tuple[List[str], List[str]]:
  """The gin files and bindings of `python -m prompt_tuning.train` for a run.
  """
  from prompt_tuning.tasks import corpus_tasks  # pylint: disable=g-import-not-at-top
  files = [_METHOD_GIN[run.method], f'corpus/sizes/{run.size}.gin']
  bindings = [f'MODEL_DIR = {model_dir!r}',
              f'MIXTURE_OR_TASK_NAME = {task_name(plan, run)!r}',
              f'TRAIN_STEPS = {plan.train_steps}',
              f'EVAL_PERIOD = {plan.train_steps}',
              f'SEED = {run.seed}',
              f'trainer.train.checkpoint_period = {plan.train_steps}',
              f'trainer.train.eval_num_examples = {plan.eval_examples}']
  if run.method != 'from scratch':
    path = embedded.corpus_checkpoint_path(run.size, run.kind)
    bindings.append(f'INITIAL_CHECKPOINT_PATH = {path!r}')
  if run.method == 'prompt tuning':
    files.append(f'prompts/{run.init}.gin')
    labels = list(corpus_tasks.CORPUS_LABELS[plan.task])
    bindings += [f'PROMPT_LENGTH = {run.prompt_length}',
                 f'CLASS_LABELS = {labels!r}',
                 # A prompt shorter than the label set starts from its first
                 # labels (the initialiser refuses labels that do not fit).
                 'prompts.from_class_labels.class_labels = '
                 f'{labels[:run.prompt_length]!r}',
                 'trainer.train.eval_before_training = False',
                 'trainer.train.eval_zero_shot = False']
  return files, bindings


def train_run(plan: Plan, run: Run, output_dir: str) -> Dict[str, Any]:
  """Trains one run in this process (unless it finished before).

  Returns:
    {'run': the setting, 'model_dir', 'score' (final validation accuracy,
    %), 'seconds'}, also in MODEL_DIR/miniature.json.
  """
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  model_dir = os.path.join(output_dir, 'runs', run.name)
  record_path = pathlib.Path(model_dir) / RUN_FILE
  budget = {'train_steps': plan.train_steps,
            'eval_examples': plan.eval_examples, 'task': plan.task}
  if record_path.exists():
    record = json.loads(record_path.read_text())
    if record.get('budget') == budget:
      return record
    raise ValueError(f'{model_dir} holds a run with {record.get("budget")}, '
                     f'not {budget}; use another --output_dir')
  files, bindings = gin_arguments(plan, run, model_dir)
  logging.info('miniature run %s', run.name)
  start = time.time()
  gin.clear_config()
  gin_utils.parse_gin_flags(gin_utils.gin_search_paths(), files, bindings)
  gin_utils.summarize_gin_config(model_dir, operative=False)
  result = gin.get_configurable(trainer.train)()
  gin_utils.summarize_gin_config(model_dir)
  gin.clear_config()
  final = result.eval_history[-1]['metrics']
  (metrics,) = final.values()
  record = {'run': dataclasses.asdict(run), 'name': run.name,
            'budget': budget, 'model_dir': model_dir,
            'score': float(metrics['accuracy']),
            'seconds': time.time() - start}
  from prompt_tuning.utils import files  # pylint: disable=g-import-not-at-top
  files.atomic_write_bytes(
      str(record_path), json.dumps(record, indent=1).encode())
  return record


def run_ensemble(plan: Plan, records: Sequence[Mapping[str, Any]],
                 output_dir: str) -> str:
  """Ensembles the prompts of `records` (one setting, several seeds);
  returns the ensemble report's JSON path."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.serving import ensemble  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  ensemble_dir = os.path.join(output_dir, 'ensemble')
  report = os.path.join(ensemble_dir, ensemble.REPORT_JSON)
  if os.path.exists(report):
    return report
  run = Run(**records[0]['run'])
  prompt_files = [run_dir.best_prompt_path(r['model_dir']) for r in records]
  path = embedded.corpus_checkpoint_path(run.size, run.kind)
  gin.clear_config()
  gin_utils.parse_gin_flags(
      gin_utils.gin_search_paths(),
      ['corpus/model.gin', f'corpus/sizes/{run.size}.gin',
       'runs/prompt_ensemble.gin'],
      [f'INITIAL_CHECKPOINT_PATH = {path!r}',
       f'MIXTURE_OR_TASK_NAME = {task_name(plan, run)!r}',
       f'PROMPT_FILES = {prompt_files!r}',
       f'ENSEMBLE_OUTPUT_DIR = {ensemble_dir!r}',
       "TASK_FEATURE_LENGTHS = {'inputs': 128, 'targets': 8}",
       f'ensemble.evaluate_ensemble.num_examples = {plan.eval_examples}'])
  gin.get_configurable(ensemble.evaluate_ensemble)()
  gin.clear_config()
  return report


# ---------------------------------------------------------------------------
# Aggregates, the control and the findings.
# ---------------------------------------------------------------------------


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


def data_size_table(plan: Plan, records: Sequence[Mapping[str, Any]]) -> str:
  """Validation accuracy against the number of training examples."""
  methods = [m for m in METHODS if _select(records, method=m)]
  rows = [[n] + [_cell(_select(records, method=m, train_size=n))
                 for m in methods]
          for n in plan.data_size_train_sizes]
  return tables.markdown_table(['training examples'] + methods, rows,
                               align='r' * (1 + len(methods)))


def plot_data_size(plan: Plan, records: Sequence[Mapping[str, Any]],
                   path: str) -> None:
  """Accuracy against training-set size (log axis), one line per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  # Distinct markers and line styles: equal scores (all at 100%) would
  # otherwise hide one method's line under another's.
  styles = (('o', '-', 9), ('s', '--', 6), ('^', ':', 5))
  for method, (marker, line, size) in zip(METHODS, styles):
    points = [(n, _mean(records, method=method, train_size=n))
              for n in plan.data_size_train_sizes]
    points = [(n, y) for n, y in points if y is not None]
    if points:
      ax.plot(*zip(*points), marker=marker, linestyle=line, markersize=size,
              label=method)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('training examples')
  ax.set_ylabel('validation accuracy (%)')
  ax.set_ylim(0, 102)
  ax.set_title(f'corpus_{plan.task}: accuracy vs training-set size '
               f'({plan.train_steps} steps)')
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _points(values: Sequence[Tuple[str, Optional[float]]]) -> str:
  return ', '.join(f'{name} {value:.1f}' for name, value in values
                   if value is not None) or 'not run'


def findings(plan: Plan, records: Sequence[Mapping[str, Any]],
             ensemble_report: Optional[runs_lib.EnsembleReport]) -> str:
  """Each of the paper's claims next to what this run measured.

  The right column is computed from the runs (mean validation accuracy, %);
  it states the comparison, whatever its direction.
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
    prompt = by_size(method='prompt tuning', prompt_length=20,
                     init='from_class_labels', kind=embedded.DEFAULT_KIND,
                     sentinel=False, train_size=None)
    model = by_size(method='model tuning', train_size=None)
    rows.append(('Figure 1: prompt tuning closes the gap to model tuning as '
                 'the model grows (matches it at XXL)',
                 'prompt − model tuning by size: ' +
                 difference(prompt, model)))
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
  if ensemble_report:
    def accuracy(metrics):
      (task_metrics,) = metrics.values()
      return task_metrics['accuracy']
    rows.append(('Table 3: the ensemble beats the average and the best of '
                 'its prompts',
                 f'average {accuracy(ensemble_report.average):.1f}, best '
                 f'{accuracy(ensemble_report.best):.1f}, ensemble '
                 f'{accuracy(ensemble_report.ensemble):.1f}'))
  if 'data_size' in plan.experiments:
    cells = []
    for n in plan.data_size_train_sizes:
      values = [(m, _mean(records, method=m, train_size=n))
                for m in plan.data_size_methods]
      cells.append(f'{n} examples: {_points(values)}')
    rows.append(('(the control) pretraining matters: with few examples the '
                 'prompted frozen model beats the architecture trained from '
                 'scratch', '; '.join(cells)))
  return tables.markdown_table(
      ['the paper', 'this run (validation accuracy, %)'], rows)


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


def run_miniature(plan: Plan, output_dir: str) -> Dict[str, str]:
  """Runs the plan's experiments and writes the report; returns the paths
  written (as `reports.write_report`, plus 'data_size' and
  'summary')."""
  start = time.time()
  experiments = plan_runs(plan)
  unique = list(dict.fromkeys(r for runs in experiments.values()
                              for r in runs))
  records = {}
  for i, run in enumerate(unique):
    print(f'[{i + 1}/{len(unique)}] {run.name}', flush=True)
    records[run] = train_run(plan, run, output_dir)
    print(f'    accuracy {records[run]["score"]:.1f}%  '
          f'({records[run]["seconds"]:.0f} s; '
          f'{time.time() - start:.0f} s so far)', flush=True)
  all_records = list(records.values())

  paths = [records[r]['model_dir'] for name, runs in experiments.items()
           if name != 'data_size' for r in runs]
  ensemble_report = None
  if 'ensemble' in experiments:
    print('ensembling', len(experiments['ensemble']), 'prompts', flush=True)
    ensemble_path = run_ensemble(
        plan, [records[r] for r in experiments['ensemble']], output_dir)
    paths.append(ensemble_path)
    ensemble_report = runs_lib.read_ensemble_report(ensemble_path)
  if paths:
    written = reports.write_report(list(dict.fromkeys(paths)), output_dir)
    sections = [pathlib.Path(written['report']).read_text()]
  else:
    written = {'report': os.path.join(output_dir, reports.REPORT_FILE)}
    sections = ['# Prompt-tuning report\n']
  if 'data_size' in experiments:
    size_records = [records[r] for r in experiments['data_size']]
    figure = f'data_size_corpus_{plan.task}.png'
    plot_data_size(plan, size_records, os.path.join(output_dir, figure))
    written['data_size'] = os.path.join(output_dir, figure)
    sections += [
        '## Training-set size: pretraining against the from-scratch control\n',
        f'corpus_{plan.task}, model size {plan.main_size}, '
        f'{plan.train_steps} steps each, final validation accuracy (%). '
        'Prompt tuning and model tuning start from the frozen LM-adapted '
        'model; "from scratch" trains the same architecture from random '
        'weights on the same examples for the same number of steps '
        '(each of its steps costs more than a prompt-tuning step, so it '
        'gets more time, not less).\n',
        data_size_table(plan, size_records),
        f'![accuracy vs training-set size]({figure})\n']
  sections += ['## The miniature against the paper\n',
               'Each claim of the paper next to what these runs measured '
               '(mean over seeds). Where they disagree, the runs are '
               'reported as they are.\n',
               findings(plan, all_records, ensemble_report)]
  elapsed = time.time() - start
  run_seconds = sum(r['seconds'] for r in all_records)
  sections += ['## Run time\n',
               f'{len(unique)} training runs (plus the ensemble), '
               f'{plan.train_steps} steps each, on {os.cpu_count()} CPU '
               f'cores: {run_seconds / 60:.1f} minutes of training run time '
               'in all (each run timed where it ran; runs reused from an '
               'earlier invocation keep their original time); this '
               f'invocation took {elapsed / 60:.1f} minutes.\n',
               _times_table(all_records)]
  from prompt_tuning.utils import files  # pylint: disable=g-import-not-at-top
  files.atomic_write_bytes(written['report'],
                                 '\n'.join(sections).encode())
  summary = {'plan': dataclasses.asdict(plan), 'seconds': elapsed,
             'runs': all_records}
  written['summary'] = os.path.join(output_dir, SUMMARY_FILE)
  files.atomic_write_bytes(written['summary'],
                                 json.dumps(summary, indent=1).encode())
  return written
