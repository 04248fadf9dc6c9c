"""What a report knows of a finished run, read from its MODEL_DIR.

From a run directory (a `MODEL_DIR` written by `python -m prompt_tuning.train`)
`read_run` reads:

  config.gin          the operative gin config: task, trainable regexes,
                      T5Config sizes, prompt length and initialiser, seed,
                      training steps, learning rate, initial checkpoint
  best_prompt.json    {"step", "score", "metrics": {task: {metric: value}}}:
                      the metrics of the best validation step
  eval/metrics.jsonl  one {"step", "task", "metrics"} line per evaluation:
                      how far the run got

What is inferred from config.gin:

  method      'model tuning' if the trainable regexes match every parameter,
              'prompt tuning' if they match only the prompt, otherwise
              'partial tuning'; prefixed by 'multi-task ' when the task is a
              mixture with text prefixes (see `is_multi_task`)
  model       parameter count of the frozen model (`costs.count_parameters`, in
              closed form from the T5Config bindings), named after the
              paper's size when the config is one of `t5.CONFIGS`
  init        the `PROMPT` initialiser, e.g. 'class labels'
  pretraining the objective of the initial checkpoint, from its path
              ('LM adaptation 100K' for `t5_1_1_lm100k_*`, 'span
              corruption' for `t5_1_1_*`, '+ sentinel' for `*_sentinel`
              tasks)

Runs that agree on everything but the seed form a `Group`; a group's numbers
are the mean and sample standard deviation (n - 1) over its runs
(`Stat`). Ensemble reports (Table 3) are read by `read_ensemble_report`.
"""
import collections
import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from prompt_tuning.checkpoints import run_dir as run_dir_lib
from prompt_tuning.experiments import gin_text
from prompt_tuning.model import costs
from prompt_tuning.model import prompts
from prompt_tuning.model import t5

# task -> metric -> value.
TaskMetrics = Dict[str, Dict[str, float]]

# The eval metrics, relative to MODEL_DIR.
METRICS_FILE = run_dir_lib.metrics_path(run_dir_lib.EVAL_DIR)

SENTINEL_SUFFIX = '_sentinel'
SIZE_NAMES = {'small': 'T5 1.1 Small', 'base': 'T5 1.1 Base',
               'large': 'T5 1.1 Large', 'xl': 'T5 1.1 XL',
               'xxl': 'T5 1.1 XXL'}
_INIT_NAMES = {'random_uniform': 'random uniform',
               'from_sampled_vocab': 'sampled vocab',
               'from_class_labels': 'class labels',
               'from_string': 'string',
               'from_file': 'file'}
# T5Config fields that set the parameter tree (dtype and dropout do not).
_STRUCTURE_FIELDS = ('vocab_size', 'emb_dim', 'num_heads', 'head_dim',
                     'mlp_dim', 'num_encoder_layers', 'num_decoder_layers',
                     'relative_attention_num_buckets',
                     'relative_attention_max_distance', 'layer_norm_epsilon',
                     'mlp_activations', 'logits_via_embedding')


# ---------------------------------------------------------------------------
# Model sizes.
# ---------------------------------------------------------------------------


def size_name(config: t5.T5Config) -> Optional[str]:
  """The `t5.CONFIGS` key whose parameter tree `config` has, else None."""
  for name, known in t5.CONFIGS.items():
    if all(getattr(config, f) == getattr(known, f) for f in _STRUCTURE_FIELDS):
      return name
  return None



# ---------------------------------------------------------------------------
# Reading runs.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
  """What a report needs of one training run.

  Attributes:
    run_dir: the run's MODEL_DIR.
    task: MIXTURE_OR_TASK_NAME it trained on.
    method: see `infer_method`.
    model: the model's name ('T5 1.1 Base', 'embedded T5', ...).
    model_parameters: parameters of the model without a prompt.
    total_parameters: parameters of the model with its prompt.
    trainable_parameters: parameters the run trained.
    prompt_length: P (0 without a prompt).
    init: the prompt initialiser ('' without a prompt).
    pretraining: the initial checkpoint's objective.
    seed: the trainer's seed.
    train_steps: steps the run was configured for.
    last_step: the last evaluated step in eval/metrics.jsonl.
    learning_rate: Adafactor's learning rate, None if not bound.
    best_step: the best validation step.
    score: its selection score (the mean of the task's metrics).
    metrics: eval task -> metric -> value at the best step.
  """
  run_dir: str
  task: str
  method: str
  model: str
  model_parameters: int
  total_parameters: int
  trainable_parameters: int
  prompt_length: int
  init: str
  pretraining: str
  seed: int
  train_steps: Optional[int]
  last_step: int
  learning_rate: Optional[float]
  best_step: int
  score: float
  metrics: TaskMetrics

  def setting(self) -> Tuple[Any, ...]:
    """Everything that defines the run except its seed (the group key)."""
    return (self.task, self.method, self.model, self.model_parameters,
            self.prompt_length, self.init, self.pretraining, self.train_steps,
            self.learning_rate)


def is_multi_task(task: str, eval_tasks: Sequence[str]) -> bool:
  """Whether a run trained one model on several prefixed tasks together.

  The rule, from the names alone: the run evaluates more than one task, its
  mixture's inputs keep their text prefixes (the name does not start with
  'taskless_'), and it is not one of the transfer mixtures that train on one
  task and evaluate on others (names with '_to_', e.g.
  'squad_v110_to_mrqa_v100', 'taskless_glue_qqp_to_mrpc_v002').
  """
  return (len(eval_tasks) > 1 and not task.startswith('taskless_') and
          '_to_' not in task)


def infer_method(trainable_regexes: Sequence[str], names: Sequence[str],
                 task: str, eval_tasks: Sequence[str]) -> str:
  """'prompt tuning', 'model tuning' or 'partial tuning' (+ 'multi-task ').

  Args:
    trainable_regexes: the trainer's regexes; a parameter trains if its
      '/'-joined name fully matches one (as `trainer.split_params`).
    names: every parameter name of the model (`costs.t5_parameter_shapes`).
    task: the training task or mixture.
    eval_tasks: the tasks evaluated.

  Raises:
    ValueError: if the regexes match no parameter.
  """
  patterns = [re.compile(r) for r in trainable_regexes]
  trainable = {n for n in names if any(p.fullmatch(n) for p in patterns)}
  if not trainable:
    raise ValueError(f'trainable regexes {list(trainable_regexes)} match no '
                     'parameter of the model')
  if trainable == set(names):
    method = 'model tuning'
  elif all(n.startswith(prompts.PROMPT_PREFIX) for n in trainable):
    method = 'prompt tuning'
  else:
    method = 'partial tuning'
  return ('multi-task ' if is_multi_task(task, eval_tasks) else '') + method


def infer_pretraining(checkpoint: Any, task: str) -> str:
  """The initial checkpoint's pretraining objective, from its path.

  Args:
    checkpoint: INITIAL_CHECKPOINT_PATH: a path, or a gin reference
      (`@embedded.checkpoint_path()` is the embedded model).
    task: the training task; '*_sentinel' tasks add '+ sentinel'.
  """
  if isinstance(checkpoint, gin_text.GinReference):
    name = gin_text.reference_name(checkpoint)
    objective = ('embedded (offline_all)' if name == 'checkpoint_path'
                 and 'embedded' in checkpoint.name else f'@{checkpoint.name}')
  elif isinstance(checkpoint, str) and checkpoint:
    lowered = checkpoint.lower()
    lm = re.search(r'lm(\d+)k', lowered)
    corpus = re.search(r'corpus_t5/[^/]+/(span_corruption|lm_adapted_\w+)/'
                       r'checkpoint_(\d+)', lowered)
    if corpus and corpus.group(1) == 'span_corruption':
      objective = 'span corruption'
    elif corpus:
      objective = f'LM adaptation {corpus.group(2)} steps'
    elif lm:
      objective = f'LM adaptation {lm.group(1)}K'
    elif re.search(r't5_1_1_(small|base|large|xl|xxl)', lowered):
      objective = 'span corruption'
    else:
      parts = [p for p in lowered.rstrip('/').split('/') if p]
      tail = parts[-2:] if parts and parts[-1].startswith('checkpoint') else (
          parts[-1:])
      objective = '/'.join(tail) or checkpoint
  else:
    objective = 'unknown'
  if task.endswith(SENTINEL_SUFFIX):
    objective += ' + sentinel'
  return objective


def _read_json(path: pathlib.Path, what: str) -> Any:
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'{what} {path} is not valid JSON: {e}') from e


def _require(run_dir: pathlib.Path, relative: str, what: str) -> pathlib.Path:
  path = run_dir / relative
  if not path.is_file():
    raise FileNotFoundError(
        f'run directory {run_dir} has no {relative} ({what}); expected a '
        'MODEL_DIR written by python -m prompt_tuning.train (is the run '
        'finished, or is this the right directory?)')
  return path


def _last_step(path: pathlib.Path) -> int:
  steps = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      steps.append(int(record['step']))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
      raise ValueError(
          f'{path} line {number}: expected a JSON object with "step", '
          f'"task" and "metrics"; got {line[:80]!r}') from e
  if not steps:
    raise ValueError(f'{path} holds no evaluation; expected at least one '
                     '{"step", "task", "metrics"} line')
  return max(steps)


def _task_metrics(value: Any, where: str) -> TaskMetrics:
  """Checks {task: {metric: number}} and makes the numbers floats."""
  if not isinstance(value, dict) or not all(
      isinstance(m, dict) for m in value.values()):
    raise ValueError(f'{where}: expected {{task: {{metric: value}}}}; got '
                     f'{str(value)[:120]}')
  return {task: {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
          for task, metrics in value.items()}


def read_run(run_dir: str) -> Run:
  """Reads one run directory (see the module docstring for the files).

  Raises:
    FileNotFoundError: naming the run directory and the missing file.
    ValueError: naming the file, if one cannot be read or lacks a value.
  """
  root = pathlib.Path(run_dir)
  if not root.is_dir():
    raise FileNotFoundError(f'run directory {run_dir} does not exist or is '
                            'not a directory')
  config_path = _require(root, run_dir_lib.CONFIG_FILE,
                         'the operative gin config')
  best_path = _require(root, run_dir_lib.BEST_PROMPT_JSON,
                       'the best step and its metrics')
  last_step = _last_step(_require(root, METRICS_FILE, 'the eval metrics'))
  bindings = gin_text.read_gin_bindings(str(config_path))

  # Model sizes and prompt.
  kwargs = {}
  for field in _STRUCTURE_FIELDS:
    value = gin_text.gin_value(bindings, 't5.T5Config', field)
    if value is not None and not isinstance(
        value, (gin_text.GinMacro, gin_text.GinReference)):
      kwargs[field] = value
  if 'emb_dim' not in kwargs:
    raise ValueError(f'{config_path} binds no t5.T5Config sizes; expected '
                     'e.g. `t5.T5Config.emb_dim = 512` in the operative config')
  config = t5.T5Config(**kwargs)
  prompt_length = int(gin_text.gin_value(
      bindings, 't5.Transformer', 'prompt_length', macro='PROMPT_LENGTH',
      default=0) or 0)
  shapes = costs.t5_parameter_shapes(config, prompt_length)
  model_parameters = costs.count_parameters(config, 0)

  # What trained, on what.
  task = gin_text.gin_value(bindings, 'trainer.train',
                            'mixture_or_task_name',
                            macro='MIXTURE_OR_TASK_NAME')
  if not isinstance(task, str):
    raise ValueError(f'{config_path} binds no task; expected '
                     "MIXTURE_OR_TASK_NAME = '...' or "
                     'trainer.train.mixture_or_task_name')
  regexes = gin_text.gin_value(bindings, 'trainer.train',
                               'trainable_regexes', macro='PROMPT_REGEX',
                               default=[prompts.PROMPT_REGEX])
  if isinstance(regexes, str):
    regexes = [regexes]
  best = _read_json(best_path, 'best-step file')
  if not (isinstance(best, dict) and
          {'step', 'score', 'metrics'} <= set(best)):
    raise ValueError(f'best-step file {best_path} must hold "step", "score" '
                     f'and "metrics"; got {str(best)[:120]}')
  metrics = _task_metrics(best['metrics'], str(best_path))
  try:
    method = infer_method(regexes, list(shapes), task, list(metrics))
  except ValueError as e:
    raise ValueError(f'{config_path}: {e}') from e
  trainable = sum(math.prod(s) for n, s in shapes.items()
                  if any(re.fullmatch(r, n) for r in regexes))

  name = size_name(config)
  checkpoint = gin_text.gin_value(bindings, 'trainer.train',
                                  'initial_checkpoint_path',
                                  macro='INITIAL_CHECKPOINT_PATH')
  pretraining = infer_pretraining(checkpoint, task)
  if name:
    model = SIZE_NAMES[name]
  elif pretraining.startswith('embedded'):
    model = 'embedded T5'
  else:
    model = (f'T5 d_model {config.emb_dim}, {config.num_encoder_layers}+'
             f'{config.num_decoder_layers} layers')
  init = ''
  if prompt_length:
    init_name = gin_text.reference_name(gin_text.gin_value(
        bindings, 't5.Transformer', 'prompt_init', macro='PROMPT'))
    init = _INIT_NAMES.get(init_name, init_name or 'default')
  train_steps = gin_text.gin_value(bindings, 'trainer.train', 'train_steps',
                                   macro='TRAIN_STEPS')
  learning_rate = gin_text.gin_value(bindings, 'trainer.adafactor',
                                     'learning_rate', macro='LEARNING_RATE')
  return Run(
      run_dir=os.path.normpath(run_dir), task=task, method=method,
      model=model,
      model_parameters=model_parameters,
      total_parameters=sum(math.prod(s) for s in shapes.values()),
      trainable_parameters=trainable,
      prompt_length=prompt_length, init=init, pretraining=pretraining,
      seed=int(gin_text.gin_value(bindings, 'trainer.train', 'seed',
                                  macro='SEED', default=0)),
      train_steps=int(train_steps) if isinstance(train_steps, int) else None,
      last_step=last_step,
      learning_rate=(float(learning_rate)
                     if isinstance(learning_rate, (int, float)) else None),
      best_step=int(best['step']), score=float(best['score']),
      metrics=metrics)


# ---------------------------------------------------------------------------
# Groups of seeds.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stat:
  """Mean and sample standard deviation (n - 1; NaN for one value)."""
  mean: float
  std: float
  n: int

  @classmethod
  def of(cls, values: Sequence[float]) -> 'Stat':
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float('nan')
    return cls(float(np.mean(values)), std, len(values))

  def format(self, digits: int = 2) -> str:
    if self.n > 1:
      return f'{self.mean:.{digits}f} ± {self.std:.{digits}f}'
    return f'{self.mean:.{digits}f}'


def metric_stat(runs: Sequence[Run], task: str,
                metric: str) -> Optional[Stat]:
  """A metric's Stat over the runs that report it; None if none does."""
  values = [r.metrics[task][metric] for r in runs
            if metric in r.metrics.get(task, {})]
  return Stat.of(values) if values else None


@dataclasses.dataclass(frozen=True)
class Group:
  """Runs with the same setting (everything but the seed)."""
  runs: Tuple[Run, ...]

  @property
  def first(self) -> Run:
    return self.runs[0]

  @property
  def seeds(self) -> List[int]:
    return sorted(r.seed for r in self.runs)

  @property
  def score(self) -> Stat:
    return Stat.of([r.score for r in self.runs])

  def metric(self, task: str, metric: str) -> Optional[Stat]:
    return metric_stat(self.runs, task, metric)

  def metric_names(self) -> List[Tuple[str, str]]:
    names = {}
    for run in self.runs:
      for task, metrics in run.metrics.items():
        for metric in metrics:
          names[(task, metric)] = None
    return list(names)


def group_runs(runs: Sequence[Run]) -> List[Group]:
  """Groups runs by `Run.setting()`, sorted by task, method, size, length.

  A group with a repeated seed is kept (both runs count) with a warning.
  """
  by_setting = collections.defaultdict(list)
  for run in runs:
    by_setting[run.setting()].append(run)
  groups = []
  for setting, members in by_setting.items():
    seeds = [r.seed for r in members]
    if len(set(seeds)) < len(seeds):
      logging.warning('runs %s share a setting and a seed (%s); all are '
                      'averaged', [r.run_dir for r in members], seeds)
    groups.append(Group(tuple(sorted(members, key=lambda r: (r.seed,
                                                             r.run_dir)))))
  return sorted(groups, key=lambda g: (
      g.first.task, g.first.method, g.first.model_parameters,
      g.first.prompt_length, g.first.init, g.first.pretraining,
      g.first.train_steps or 0, g.first.learning_rate or 0.0))


def variant(run: Run) -> str:
  """A short label of a run's method and prompt setting."""
  label = run.method
  if run.prompt_length:
    label += f', P={run.prompt_length}, {run.init}'
  return label



# ---------------------------------------------------------------------------
# Ensemble reports (Table 3).
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnsembleReport:
  """An ensemble's scores: each prompt, their average, the best, the vote."""
  path: str
  prompts: Tuple[Tuple[str, TaskMetrics], ...]
  average: TaskMetrics
  best: TaskMetrics
  ensemble: TaskMetrics


def _ensemble_metrics(value: Any, task: str, where: str) -> TaskMetrics:
  """{metric: v} (for `task`) or {task: {metric: v}} -> {task: {metric: v}}."""
  if isinstance(value, dict) and value and all(
      isinstance(v, (int, float)) and not isinstance(v, bool)
      for v in value.values()):
    return {task: {k: float(v) for k, v in value.items()}}
  return _task_metrics(value, where)


_ENSEMBLE_KEYS = ('prompts', 'average', 'best', 'ensemble')


def _from_ensemble_command(data: Any) -> Any:
  """The ensemble command's `ensemble.json` ({task: its summary, with
  "best" as {"prompt", "name", "metrics"} and prompts named by "name"}) in
  the nested form below; anything else is returned as it is."""
  if not (isinstance(data, dict) and data and all(
      isinstance(v, dict) and all(k in v for k in _ENSEMBLE_KEYS)
      and isinstance(v['prompts'], list) and isinstance(v['best'], dict)
      and 'metrics' in v['best'] for v in data.values())):
    return data
  summaries = list(data.values())
  num_prompts = min(len(s['prompts']) for s in summaries)
  return {
      'prompts': [{'file': str(summaries[0]['prompts'][i].get('name', '')),
                   'metrics': {task: s['prompts'][i].get('metrics')
                               for task, s in data.items()}}
                  for i in range(num_prompts)],
      'average': {task: s['average'] for task, s in data.items()},
      'best': {task: s['best']['metrics'] for task, s in data.items()},
      'ensemble': {task: s['ensemble'] for task, s in data.items()}}


def read_ensemble_report(path: str) -> EnsembleReport:
  """Reads an ensemble report JSON file.

  Reads what `python -m prompt_tuning.ensemble` writes (its `ensemble.json`,
  one summary per task), or this schema (metrics are {metric: value} for the
  report's "task", or {task: {metric: value}}):

    {"task": "taskless_super_glue_rte_v102",           # optional
     "prompts": [{"file": "a/best_prompt.npy", "metrics": {...}}, ...],
     "average": {...}, "best": {...}, "ensemble": {...}}

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: naming the file and the key at fault.
  """
  data = _from_ensemble_command(_read_json(pathlib.Path(path),
                                          'ensemble report'))
  missing = [k for k in _ENSEMBLE_KEYS
             if not isinstance(data, dict) or k not in data]
  if missing:
    raise ValueError(f'ensemble report {path} lacks {missing}; expected keys '
                     '"prompts", "average", "best", "ensemble"')
  task = str(data.get('task', ''))
  if not isinstance(data['prompts'], list) or not all(
      isinstance(p, dict) and 'metrics' in p for p in data['prompts']):
    raise ValueError(f'ensemble report {path}: "prompts" must be a list of '
                     '{"file", "metrics"} objects')
  return EnsembleReport(
      path=str(path),
      prompts=tuple((str(p.get('file', '')), _ensemble_metrics(
          p['metrics'], task, f'{path} prompts[{i}]'))
                    for i, p in enumerate(data['prompts'])),
      average=_ensemble_metrics(data['average'], task, f'{path} "average"'),
      best=_ensemble_metrics(data['best'], task, f'{path} "best"'),
      ensemble=_ensemble_metrics(data['ensemble'], task, f'{path} "ensemble"'))
