"""The paper in miniature, as a library: the plan and its runs
(`miniature_report.py` scores them and writes the report;
`python -m prompt_tuning.miniature` runs it, and its docstring describes the
experiments and what is written).

Every run but the ensemble is `python -m prompt_tuning.train`'s job, run in
this process with the same gin files; a run that finished before (its
`miniature.json` exists) is not run again, so an interrupted miniature resumes.
"""
import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import run_dir

METHODS = ('prompt tuning', 'model tuning', 'from scratch')
# The paper's prompt-design baseline (GPT-3 in Figure 1): the frozen model
# given a text instruction before each input, nothing trained. Only the
# suite's tasks have instructions (`corpus_suite_tasks.INSTRUCTIONS`).
DESIGN = 'prompt design'
_METHOD_GIN = {'prompt tuning': 'corpus/prompt_tune.gin',
               'model tuning': 'corpus/model_tune.gin',
               'from scratch': 'corpus/from_scratch.gin',
               # Evaluated as the trainer's zero-shot evaluation (the model
               # without its prompt) after 0 steps.
               DESIGN: 'corpus/prompt_tune.gin'}
_METHOD_SLUG = {'prompt tuning': 'pt', 'model tuning': 'mt',
                'from scratch': 'scratch', DESIGN: 'design'}
# `Plan.task` of the corpus suite (`tasks/corpus_suite.py`): every setting
# runs once per suite task, and its score is the suite average, the mean
# over tasks of each task's score (as `corpus_suite_tasks.suite_average`).
SUITE = 'suite'
# Inputs of the design runs: the instruction comes on top of the longest
# suite input (123 tokens), and an evaluation-only run can afford more.
_DESIGN_INPUT_LENGTH = 192
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
  # The suite task of a `SUITE` plan's run; None otherwise.
  suite_task: Optional[str] = None

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
    if self.suite_task is not None:
      parts.append(self.suite_task)
    parts.append(f's{self.seed}')
    return '-'.join(parts)

  @property
  def setting(self) -> 'Run':
    """The run without its suite task: what the suite average is over."""
    return dataclasses.replace(self, suite_task=None)


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
  # Seeds of each data-size setting: one unless a plan asks for error bars
  # (corpus_topic's published control is one seed's).
  data_size_seeds: int = 1
  experiments: Tuple[str, ...] = EXPERIMENTS
  # Figure 1's lines; `DESIGN` needs the suite.
  figure1_methods: Tuple[str, ...] = ('prompt tuning', 'model tuning')
  # A `SUITE` plan's tasks (None: all of `corpus_suite.TASKS`).
  suite_tasks: Optional[Tuple[str, ...]] = None
  # A `SUITE` plan's difficulty, as (name, value) pairs of
  # `corpus_suite.Knobs` fields (None: the registered tasks' defaults); for
  # calibration pilots. Its tasks are registered under `suite_prefix`.
  knobs: Optional[Tuple[Tuple[str, Any], ...]] = None
  # Training examples of the runs that name none (all but `data_size`'s);
  # None: the task's registered default.
  default_train_size: Optional[int] = None

  def __post_init__(self):
    if DESIGN in self.figure1_methods and self.task != SUITE:
      raise ValueError(f'miniature.Plan: {DESIGN!r} needs the suite '
                       f"(task={SUITE!r}), whose tasks have instructions; "
                       f'task is {self.task!r}')
    for name in ('suite_tasks', 'knobs'):
      if getattr(self, name) is not None and self.task != SUITE:
        raise ValueError(f'miniature.Plan: {name}={getattr(self, name)} with '
                         f'task={self.task!r}; expected task={SUITE!r}')
    if self.knobs is not None:
      from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
      corpus_suite.Knobs(**dict(self.knobs))  # Checks names and values.

  @property
  def suite_prefix(self) -> str:
    """The seqio prefix of the suite's tasks: `corpus_suite`, or with
    `knobs` a name made from them (registered on first use)."""
    from prompt_tuning.tasks import corpus_suite_tasks  # pylint: disable=g-import-not-at-top
    if self.knobs is None:
      return corpus_suite_tasks.MIXTURE
    return corpus_suite_tasks.knobs_prefix(self.knobs)

  @property
  def tasks(self) -> Tuple[Optional[str], ...]:
    """The suite tasks each setting runs on ((None,) for a corpus task)."""
    if self.task != SUITE:
      return (None,)
    from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
    return self.suite_tasks or corpus_suite.TASKS

  @property
  def task_label(self) -> str:
    """How the report names the plan's task."""
    return 'corpus_suite' if self.task == SUITE else f'corpus_{self.task}'


FULL = Plan()
QUICK = Plan(sizes=('tiny', 'small'), seeds=1, train_steps=50,
             eval_examples=200, prompt_lengths=(1, 20),
             inits=('random_uniform', 'from_class_labels'),
             objectives=(('span_corruption', False),
                         ('lm_adapted_long', False)),
             ensemble_prompts=3, data_size_train_sizes=(32, 512))
# The power of scale on the ladder: the suite, every size, prompt design in
# Figure 1 (docs/miniature.md states its size and what of it has run).
SUITE_FULL = dataclasses.replace(
    FULL, task=SUITE, sizes=embedded.SIZES, seeds=3, data_size_seeds=3,
    train_steps=300,
    figure1_methods=('prompt tuning', 'model tuning', DESIGN))
SUITE_QUICK = dataclasses.replace(
    QUICK, task=SUITE, sizes=('tiny', 'mini'), train_steps=50,
    eval_examples=100, figure1_methods=SUITE_FULL.figure1_methods,
    experiments=('figure1', 'prompt_length', 'init'))


def plan_runs(plan: Plan) -> Dict[str, List[Run]]:
  """The runs of each experiment of `plan` (settings shared between
  experiments are one run)."""
  seeds = range(plan.seeds)
  runs = {}
  if 'figure1' in plan.experiments:
    runs['figure1'] = [Run(method=m, size=z, seed=s)
                       for z in plan.sizes
                       for m in plan.figure1_methods
                       # Prompt design trains nothing: one seed.
                       for s in (seeds if m != DESIGN else (0,))]
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
    runs['data_size'] = [Run(method=m, size=plan.main_size, train_size=n,
                             seed=s)
                         for n in plan.data_size_train_sizes
                         for m in plan.data_size_methods
                         for s in range(plan.data_size_seeds)]
  return {name: [dataclasses.replace(r, suite_task=t)
                 for r in settings for t in plan.tasks]
          for name, settings in runs.items()}


def task_name(plan: Plan, run: Run) -> str:
  """The seqio task a run trains on (a design run: evaluates on)."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import corpus_suite_tasks
  from prompt_tuning.tasks import corpus_tasks
  # pylint: enable=g-import-not-at-top
  train_size = (plan.default_train_size if run.train_size is None
                else run.train_size)
  if plan.task != SUITE:
    name = corpus_tasks.task_name(plan.task, train_size)
  elif run.method == DESIGN:
    return corpus_suite_tasks.design_task_name(run.suite_task,
                                               plan.suite_prefix)
  else:
    name = corpus_suite_tasks.task_name(run.suite_task, train_size,
                                        plan.suite_prefix)
  return name + '_sentinel' if run.sentinel else name


def class_labels(plan: Plan, run: Run) -> List[str]:
  """The bare label words of a run's task (the class-label init's)."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import corpus_suite_tasks
  from prompt_tuning.tasks import corpus_tasks
  # pylint: enable=g-import-not-at-top
  if plan.task == SUITE:
    return list(corpus_suite_tasks.SUITE_LABELS[run.suite_task])
  return list(corpus_tasks.CORPUS_LABELS[plan.task])


def gin_arguments(plan: Plan, run: Run, model_dir: str
                  ) -> Tuple[List[str], List[str]]:
  """The gin files and bindings of `python -m prompt_tuning.train` for a run.
  """
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
  if run.method in ('prompt tuning', DESIGN):
    files.append(f'prompts/{run.init}.gin')
    labels = class_labels(plan, run)
    bindings += [f'PROMPT_LENGTH = {run.prompt_length}',
                 f'CLASS_LABELS = {labels!r}',
                 # A prompt shorter than the label set starts from its first
                 # labels (the initialiser refuses labels that do not fit).
                 'prompts.from_class_labels.class_labels = '
                 f'{labels[:run.prompt_length]!r}',
                 'trainer.train.eval_before_training = False',
                 f'trainer.train.eval_zero_shot = {run.method == DESIGN}']
  if run.method == DESIGN:
    # Nothing trains: the zero-shot evaluation (the frozen model without
    # the prompt) of the instructed inputs is the run.
    bindings = [b for b in bindings
                if not b.startswith(('TRAIN_STEPS', 'EVAL_PERIOD',
                                     'trainer.train.checkpoint_period'))]
    bindings += ['TRAIN_STEPS = 0', 'EVAL_PERIOD = 1',
                 'trainer.train.checkpoint_period = 1',
                 "TASK_FEATURE_LENGTHS = {'inputs': %d, 'targets': 8}"
                 % _DESIGN_INPUT_LENGTH]
  return files, bindings


def train_run(plan: Plan, run: Run, output_dir: str) -> Dict[str, Any]:
  """Trains one run in this process (unless it finished before).

  Returns:
    {'run': the setting, 'model_dir', 'score' (the final validation
    evaluation's selection score, the mean of the task's metrics: accuracy,
    or F1 and exact match for the suite's qa; %), 'metrics' (those metrics),
    'seconds'}, also in MODEL_DIR/miniature.json.
  """
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import evaluation  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  model_dir = os.path.join(output_dir, 'runs', run.name)
  record_path = pathlib.Path(model_dir) / RUN_FILE
  budget = {'train_steps': plan.train_steps,
            'eval_examples': plan.eval_examples, 'task': plan.task}
  # Another difficulty or training set is another run.
  if plan.knobs is not None:
    budget['knobs'] = dict(plan.knobs)
  if plan.default_train_size is not None:
    budget['default_train_size'] = plan.default_train_size
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
  final = (result.zero_shot_metrics if run.method == DESIGN else
           result.eval_history[-1]['metrics'])
  (metrics,) = final.values()
  record = {'run': dataclasses.asdict(run), 'name': run.name,
            'budget': budget, 'model_dir': model_dir,
            'score': evaluation.selection_score(final),
            'metrics': {k: float(v) for k, v in metrics.items()},
            'seconds': time.time() - start}
  from prompt_tuning.utils import files  # pylint: disable=g-import-not-at-top
  files.atomic_write_bytes(
      str(record_path), json.dumps(record, indent=1).encode())
  return record


def run_ensemble(plan: Plan, records: Sequence[Mapping[str, Any]],
                 output_dir: str) -> str:
  """Ensembles the prompts of `records` (one setting and task, several
  seeds); returns the ensemble report's JSON path (`ensemble/`, or
  `ensemble/<suite task>/` in a suite plan)."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.serving import ensemble  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  ensemble_dir = os.path.join(output_dir, 'ensemble',
                              records[0]['run']['suite_task'] or '')
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
