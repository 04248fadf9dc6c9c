r"""Turns finished runs into the paper's tables (Markdown) and figures (PNG).

    python -m prompt_tuning.report /tmp/runs/*/ [ensemble.json ...] \
      --output_dir=/tmp/report

Each positional argument is a run directory (a `MODEL_DIR` written by
`python -m prompt_tuning.train`) or an ensemble report (a `.json` file, see
`read_ensemble_report`). From a run directory it reads:

  config.gin          the operative gin config: task, trainable regexes,
                      T5Config sizes, prompt length and initialiser, seed,
                      training steps, learning rate, initial checkpoint
  best_prompt.json    {"step", "score", "metrics": {task: {metric: value}}}:
                      the metrics of the best validation step
  eval/metrics.jsonl  one {"step", "task", "metrics"} line per evaluation:
                      how far the run got

What is inferred from config.gin (`read_run`):

  method      'model tuning' if the trainable regexes match every parameter,
              'prompt tuning' if they match only the prompt, otherwise
              'partial tuning'; prefixed by 'multi-task ' when the task is a
              mixture with text prefixes (see `is_multi_task`)
  model       parameter count of the frozen model (`count_parameters`, in
              closed form from the T5Config bindings), named after the
              paper's size when the config is one of `t5.CONFIGS`
  init        the `PROMPT` initialiser, e.g. 'class labels'
  pretraining the objective of the initial checkpoint, from its path
              ('LM adaptation 100K' for `t5_1_1_lm100k_*`, 'span
              corruption' for `t5_1_1_*`, '+ sentinel' for `*_sentinel`
              tasks)

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
import collections
import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
from gin import config_parser
import numpy as np

from prompt_tuning.experiments import paper_numbers
from prompt_tuning.model import t5

# task -> metric -> value.
TaskMetrics = Dict[str, Dict[str, float]]

CONFIG_FILE = 'config.gin'
BEST_FILE = 'best_prompt.json'
METRICS_FILE = os.path.join('eval', 'metrics.jsonl')
REPORT_FILE = 'report.md'
_DODGE_NOTE = ('lines are shifted sideways by up to a few percent so points '
               'at one size do not hide each other')
NOT_TRANSCRIBED = ('paper values not transcribed: the paper printed no '
                   'per-size numbers for this figure')

PROMPT_PARAM_PREFIX = 'encoder/prompt/'
SENTINEL_SUFFIX = '_sentinel'
_SIZE_NAMES = {'small': 'T5 1.1 Small', 'base': 'T5 1.1 Base',
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
_SUPERGLUE_RE = re.compile(
    r'super_glue_(boolq|cb|copa|multirc|record|rte|wic|wsc)_')
_PARAPHRASE_RE = re.compile(r'glue_(qqp|mrpc)_to_(qqp|mrpc)_')


# ---------------------------------------------------------------------------
# Parameter counts.
# ---------------------------------------------------------------------------


def parameter_shapes(config: t5.T5Config,
                     prompt_length: int = 0) -> Dict[str, Tuple[int, ...]]:
  """The shapes of `t5.Transformer(config, prompt_length)`'s parameters.

  Computed in closed form (no tracing), named as in the parameter tree
  (flaxformer's names, '/'-joined), so trainable regexes can be matched
  against them as the trainer does.

  Args:
    config: the model's sizes.
    prompt_length: P; 0 for a model without a prompt.

  Returns:
    parameter name -> shape, e.g. 'encoder/prompt/prompt/prompt' -> (P, H).
  """
  h, v, mlp = config.emb_dim, config.vocab_size, config.mlp_dim
  joined = config.num_heads * config.head_dim
  shapes = {'token_embedder/embedding': (v, h)}

  def attention(prefix):
    for name in ('query', 'key', 'value'):
      shapes[f'{prefix}/{name}/kernel'] = (h, joined)
    shapes[f'{prefix}/out/kernel'] = (joined, h)

  def mlp_block(prefix):
    n = len(config.mlp_activations)
    for name in ([f'wi_{i}' for i in range(n)] if n > 1 else ['wi']):
      shapes[f'{prefix}/mlp/{name}/kernel'] = (h, mlp)
    shapes[f'{prefix}/mlp/wo/kernel'] = (mlp, h)

  relpos = (config.num_heads, config.relative_attention_num_buckets)
  if prompt_length:
    shapes[PROMPT_PARAM_PREFIX + 'prompt/prompt'] = (prompt_length, h)
  shapes['encoder/relpos_bias/rel_embedding'] = relpos
  for i in range(config.num_encoder_layers):
    layer = f'encoder/layers_{i}'
    shapes[f'{layer}/pre_attention_layer_norm/scale'] = (h,)
    attention(f'{layer}/attention')
    shapes[f'{layer}/pre_mlp_layer_norm/scale'] = (h,)
    mlp_block(layer)
  shapes['encoder/encoder_norm/scale'] = (h,)
  shapes['decoder/relpos_bias/rel_embedding'] = relpos
  for i in range(config.num_decoder_layers):
    layer = f'decoder/layers_{i}'
    shapes[f'{layer}/pre_self_attention_layer_norm/scale'] = (h,)
    attention(f'{layer}/self_attention')
    shapes[f'{layer}/pre_cross_attention_layer_norm/scale'] = (h,)
    attention(f'{layer}/encoder_decoder_attention')
    shapes[f'{layer}/pre_mlp_layer_norm/scale'] = (h,)
    mlp_block(layer)
  shapes['decoder/decoder_norm/scale'] = (h,)
  if not config.logits_via_embedding:
    shapes['decoder/logits_dense/kernel'] = (h, v)
  return shapes


def count_parameters(config: t5.T5Config, prompt_length: int = 0) -> int:
  """Number of parameters of `t5.Transformer(config, prompt_length)`.

  For `t5.CONFIGS` with `prompt_length=100` this gives the paper's Table 4
  totals (e.g. 11,135,741,952 for XXL).
  """
  return sum(math.prod(s) for s in
             parameter_shapes(config, prompt_length).values())


def size_name(config: t5.T5Config) -> Optional[str]:
  """The `t5.CONFIGS` key whose parameter tree `config` has, else None."""
  for name, known in t5.CONFIGS.items():
    if all(getattr(config, f) == getattr(known, f) for f in _STRUCTURE_FIELDS):
      return name
  return None


# ---------------------------------------------------------------------------
# Reading config.gin without executing it.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GinReference:
  """`@name()` (evaluate=True) or `@name` in a gin file."""
  name: str
  evaluate: bool


@dataclasses.dataclass(frozen=True)
class GinMacro:
  """`%NAME` in a gin file."""
  name: str


class _Delegate(config_parser.ParserDelegate):

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return GinReference(scoped_configurable_name, evaluate)

  def macro(self, macro_name):
    return GinMacro(macro_name)


def read_gin_bindings(path: str) -> Dict[Tuple[str, str, str], Any]:
  """The bindings of a gin file, parsed but not executed.

  Nothing is imported or called, so a report never needs the run's modules.

  Args:
    path: a gin file (e.g. a run's operative config.gin).

  Returns:
    (scope, selector, argument) -> value; a macro `NAME = v` is
    ('', 'NAME', ''). References and macros in values are `GinReference`
    and `GinMacro`.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: naming the file, if it is not valid gin.
  """
  text = pathlib.Path(path).read_text()
  bindings = {}
  try:
    for statement in config_parser.ConfigParser(text, _Delegate()):
      if isinstance(statement, config_parser.BindingStatement):
        bindings[(statement.scope, statement.selector,
                  statement.arg_name)] = statement.value
  except SyntaxError as e:
    raise ValueError(f'{path} is not a valid gin file: {e}') from e
  return bindings


def _resolve(bindings, value, depth=0):
  """Replaces macros in `value` by their bound values, recursively."""
  if depth > 20:
    raise ValueError(f'gin macros nest too deep (a cycle?) at {value!r}')
  if isinstance(value, GinMacro):
    key = ('', value.name, '')
    if key not in bindings:
      return value
    return _resolve(bindings, bindings[key], depth + 1)
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(bindings, v, depth + 1) for v in value)
  if isinstance(value, dict):
    return {k: _resolve(bindings, v, depth + 1) for k, v in value.items()}
  return value


def gin_value(bindings, configurable: str, argument: str,
              macro: Optional[str] = None, default: Any = None) -> Any:
  """A configurable's bound argument (macros resolved), else `macro`'s value.

  Args:
    bindings: from `read_gin_bindings`.
    configurable: e.g. 't5.T5Config'; matches any scope, and selectors that
      end with it (a full module path); the scope 'MODEL' or none is
      preferred when several scopes bind it.
    argument: e.g. 'emb_dim'.
    macro: a macro to read if the configurable has no such binding.
    default: returned when neither is bound.
  """
  found = {}
  for (scope, selector, arg), value in bindings.items():
    if arg == argument and (selector == configurable or
                            selector.endswith('.' + configurable)):
      found[scope] = value
  for scope in ('MODEL', ''):
    if scope in found:
      return _resolve(bindings, found[scope])
  if found:
    return _resolve(bindings, next(iter(found.values())))
  if macro is not None and ('', macro, '') in bindings:
    return _resolve(bindings, bindings[('', macro, '')])
  return default


def _reference_name(value: Any) -> Optional[str]:
  """'random_uniform' for `@prompts.random_uniform()` (any scope)."""
  if isinstance(value, GinReference):
    return value.name.split('/')[-1].split('.')[-1]
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
    names: every parameter name of the model (`parameter_shapes`).
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
  elif all(n.startswith(PROMPT_PARAM_PREFIX) for n in trainable):
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
  if isinstance(checkpoint, GinReference):
    name = _reference_name(checkpoint)
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
  config_path = _require(root, CONFIG_FILE, 'the operative gin config')
  best_path = _require(root, BEST_FILE, 'the best step and its metrics')
  last_step = _last_step(_require(root, METRICS_FILE, 'the eval metrics'))
  bindings = read_gin_bindings(str(config_path))

  # Model sizes and prompt.
  kwargs = {}
  for field in _STRUCTURE_FIELDS:
    value = gin_value(bindings, 't5.T5Config', field)
    if value is not None and not isinstance(value, (GinMacro, GinReference)):
      kwargs[field] = value
  if 'emb_dim' not in kwargs:
    raise ValueError(f'{config_path} binds no t5.T5Config sizes; expected '
                     'e.g. `t5.T5Config.emb_dim = 512` in the operative config')
  config = t5.T5Config(**kwargs)
  prompt_length = int(gin_value(bindings, 't5.Transformer', 'prompt_length',
                                macro='PROMPT_LENGTH', default=0) or 0)
  shapes = parameter_shapes(config, prompt_length)
  model_parameters = count_parameters(config, 0)

  # What trained, on what.
  task = gin_value(bindings, 'trainer.train', 'mixture_or_task_name',
                   macro='MIXTURE_OR_TASK_NAME')
  if not isinstance(task, str):
    raise ValueError(f'{config_path} binds no task; expected '
                     "MIXTURE_OR_TASK_NAME = '...' or "
                     'trainer.train.mixture_or_task_name')
  regexes = gin_value(bindings, 'trainer.train', 'trainable_regexes',
                      macro='PROMPT_REGEX', default=['encoder/prompt/.*'])
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
  checkpoint = gin_value(bindings, 'trainer.train', 'initial_checkpoint_path',
                         macro='INITIAL_CHECKPOINT_PATH')
  pretraining = infer_pretraining(checkpoint, task)
  if name:
    model = _SIZE_NAMES[name]
  elif pretraining.startswith('embedded'):
    model = 'embedded T5'
  else:
    model = (f'T5 d_model {config.emb_dim}, {config.num_encoder_layers}+'
             f'{config.num_decoder_layers} layers')
  init = ''
  if prompt_length:
    init_name = _reference_name(gin_value(bindings, 't5.Transformer',
                                          'prompt_init', macro='PROMPT'))
    init = _INIT_NAMES.get(init_name, init_name or 'default')
  train_steps = gin_value(bindings, 'trainer.train', 'train_steps',
                          macro='TRAIN_STEPS')
  learning_rate = gin_value(bindings, 'trainer.adafactor', 'learning_rate',
                            macro='LEARNING_RATE')
  return Run(
      run_dir=os.path.normpath(run_dir), task=task, method=method,
      model=model,
      model_parameters=model_parameters,
      total_parameters=sum(math.prod(s) for s in shapes.values()),
      trainable_parameters=trainable,
      prompt_length=prompt_length, init=init, pretraining=pretraining,
      seed=int(gin_value(bindings, 'trainer.train', 'seed', macro='SEED',
                         default=0)),
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


def _variant(run: Run) -> str:
  """A short label of a run's method and prompt setting."""
  label = run.method
  if run.prompt_length:
    label += f', P={run.prompt_length}, {run.init}'
  return label


# ---------------------------------------------------------------------------
# Markdown tables.
# ---------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub Markdown table; '|' in cells is escaped."""
  def cell(x):
    return str(x).replace('|', '\\|')
  lines = ['| ' + ' | '.join(cell(h) for h in header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(cell(x) for x in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def _lr(value: Optional[float]) -> str:
  return '' if value is None else f'{value:g}'


def _steps(run: Run) -> str:
  if run.train_steps is None or run.last_step >= run.train_steps:
    return str(run.last_step)
  return f'{run.last_step} of {run.train_steps} (unfinished)'


def summary_table(groups: Sequence[Group]) -> str:
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
  return markdown_table(
      ['task', 'method', 'model', 'model parameters', 'trainable', 'prompt',
       'init', 'pretraining', 'steps', 'lr', 'seeds', 'score',
       'metrics at the best step'], rows)


def runs_table(runs: Sequence[Run]) -> str:
  """One row per run."""
  rows = [[r.run_dir, r.task, r.method, r.model, r.prompt_length or '',
           r.init, r.seed, _steps(r), r.best_step, f'{r.score:.2f}']
          for r in sorted(runs, key=lambda r: (r.task, r.method,
                                               r.model_parameters,
                                               r.prompt_length, r.init,
                                               r.seed, r.run_dir))]
  return markdown_table(['run', 'task', 'method', 'model', 'prompt', 'init',
                         'seed', 'steps', 'best step', 'score'], rows)


def parameters_table(runs: Sequence[Run]) -> str:
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
    size = next((k for k, v in _SIZE_NAMES.items() if v == model), None)
    if (size and method == 'prompt tuning' and
        length == paper_numbers.TABLE4_PROMPT_LENGTH):
      trainable, paper_total = paper_numbers.TABLE4_PARAMETERS[size]
      paper = f'{trainable:,} / {paper_total:,}'
    rows.append([model, method, length or '', f'{run.trainable_parameters:,}',
                 f'{total:,}', f'{100 * run.trainable_parameters / total:.5f}%',
                 paper])
  return markdown_table(['model', 'method', 'prompt', 'trainable', 'total',
                         '% trainable', 'paper trainable / total'], rows)


def _variants(runs: Sequence[Run]) -> Dict[str, List[Run]]:
  """Runs by method and prompt setting (+ pretraining where it differs)."""
  several = len({r.pretraining for r in runs}) > 1
  by_variant = collections.defaultdict(list)
  for run in runs:
    label = _variant(run) + (f', {run.pretraining}' if several else '')
    by_variant[label].append(run)
  return dict(sorted(by_variant.items()))


def _fmt(stat: Optional[Stat]) -> str:
  return stat.format() if stat else ''


def _paper(pair: Tuple[float, float]) -> str:
  return f'{pair[0]:.1f} ± {pair[1]:.1f}'


def mrqa_table(runs: Sequence[Run]) -> str:
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
      stats = {v: metric_stat(rs, task, 'f1') for v, rs in variants.items()}
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
               markdown_table(header, rows))
  return '\n'.join(out)


def paraphrase_table(runs: Sequence[Run]) -> str:
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
        acc = metric_stat(selected, target_tasks[0], 'accuracy')
        f1 = metric_stat(selected, target_tasks[0], 'f1')
        any_value = True
        cells.append(f'{_fmt(acc)} / {_fmt(f1)} ({len(selected)})')
      if not any_value:
        continue
      paper = paper_numbers.TABLE2_PARAPHRASE[(source, target)]
      rows.append([model, f'{source.upper()} → {target.upper()}'] + cells + [
          f'{_paper(paper[m]["accuracy"])} / {_paper(paper[m]["f1"])}'
          for m in ('model tuning', 'prompt tuning')])
  return markdown_table(
      ['model', 'train → eval'] + [f'{v}: acc. / F1 (n)' for v in names] +
      [f'paper model tuning ({paper_numbers.TABLES_1_TO_3_MODEL})',
       f'paper prompt tuning ({paper_numbers.TABLES_1_TO_3_MODEL})'], rows)


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
  missing = [k for k in _ENSEMBLE_KEYS if not isinstance(data, dict) or k not in data]
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


def _superglue_name(task: str) -> Optional[str]:
  match = _SUPERGLUE_RE.search(task + '_')
  return match.group(1) if match else None


def ensemble_table(report: EnsembleReport) -> str:
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
  return markdown_table(
      ['task', 'metric', 'prompts', 'average prompt', 'best prompt',
       'ensemble', f'paper average ({model})', f'paper best ({model})',
       f'paper ensemble ({model})'], rows)


# ---------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------


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


def _plot_line(ax, groups: Sequence[Group], label: str,
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


def _figure1_lines(groups: Sequence[Group]) -> Dict[str, List[Group]]:
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
    lines[_variant(selected[0].first)] = selected
  return lines


def plot_score_vs_parameters(groups: Sequence[Group], path: str) -> str:
  """Figure 1-like: score against model parameters, one line per method.

  Args:
    groups: the groups of one task.
    path: the PNG to write.

  Returns:
    The figure's caption.
  """
  task = groups[0].first.task.removesuffix(SENTINEL_SUFFIX)
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


def plot_ablations(groups: Sequence[Group], path: str) -> Optional[str]:
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
  task = prompt[0].first.task.removesuffix(SENTINEL_SUFFIX)

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


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


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
    ValueError: if `paths` is empty, or from `read_run` /
      `read_ensemble_report`.
    FileNotFoundError: naming the run directory at fault.
  """
  if not paths:
    raise ValueError('no run directories given; expected one or more '
                     'MODEL_DIRs (or ensemble report .json files)')
  ensemble_paths = [p for p in paths if str(p).endswith('.json')]
  runs = [read_run(p) for p in paths if not str(p).endswith('.json')]
  ensembles = [read_ensemble_report(p) for p in ensemble_paths]
  out = pathlib.Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  written = {}
  groups = group_runs(runs)

  sections = ['# Prompt-tuning report\n']
  if runs:
    sections.append(
        f'{len(runs)} runs in {len(groups)} groups. A group is the runs that '
        'share task, method, model, prompt length, initialisation, '
        'pretraining, steps and learning rate; its numbers are mean ± sample '
        'std (n - 1) over its seeds. The score is the best validation step\'s '
        'selection score (the mean of the task\'s metrics).\n')
    sections += ['## Summary\n', summary_table(groups)]
    sections += ['## Runs\n', runs_table(runs)]
    sections += ['## Parameters (Table 4-like)\n',
                 'Trainable and total parameters (frozen model + prompt for '
                 'prompt tuning). The paper\'s counts are shown for its sizes '
                 'with a 100-token prompt.\n', parameters_table(runs)]
    table1 = mrqa_table(runs)
    if table1:
      sections += ['## MRQA zero-shot transfer (Table 1-like)\n',
                   'Trained on SQuAD, F1 on each evaluation set at the best '
                   'step; the paper\'s columns are T5-XXL, mean ± std over 3 '
                   'runs.\n', table1]
    table2 = paraphrase_table(runs)
    if table2:
      sections += ['## Paraphrase zero-shot transfer (Table 2-like)\n',
                   'Accuracy / F1 on the target dataset at the best step '
                   '(selected on the source); the paper\'s columns are '
                   'T5-XXL.\n', table2]
  for report in ensembles:
    sections += [f'## Prompt ensemble (Table 3-like): {report.path}\n',
                 ensemble_table(report)]

  if figures and runs:
    sections.append('## Figures\n')
    # '+ sentinel' runs are a pretraining setting of their task's figures.
    by_task = collections.defaultdict(list)
    for group in groups:
      by_task[group.first.task.removesuffix(SENTINEL_SUFFIX)].append(group)
    for task, task_groups in sorted(by_task.items()):
      name = f'figure1_{_file_name(task)}.png'
      caption = plot_score_vs_parameters(task_groups, str(out / name))
      written[name[:-4]] = str(out / name)
      sections.append(f'![{task}: score vs model parameters]({name})\n\n'
                      f'*{caption}*\n')
      name = f'figure3_{_file_name(task)}.png'
      caption = plot_ablations(task_groups, str(out / name))
      if caption:
        written[name[:-4]] = str(out / name)
        sections.append(f'![{task}: ablations]({name})\n\n*{caption}*\n')

  path = out / REPORT_FILE
  path.write_text('\n'.join(sections))
  written['report'] = str(path)
  logging.info('wrote %s', ', '.join(written.values()))
  return written


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
  written = write_report(argv[1:], output_dir, figures=figures)
  print((pathlib.Path(written['report'])).read_text())
  for name, path in sorted(written.items()):
    print(f'{name}: {path}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
