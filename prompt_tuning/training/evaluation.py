"""Evaluation of a model's parameters on seqio tasks, during training or once.

  * `Evaluator`: caches a task's or mixture's eval split once, evaluates any
    number of parameter sets (one per training step) with the model functions
    of `predict`, and writes the metrics with clu writers (TensorBoard under
    `EVAL_DIR/<task>`) and as JSON lines in `EVAL_DIR/metrics.jsonl`.
    `evaluate` is the one-shot form.
  * `BestCheckpointTracker`: remembers the best step by the selection score
    and keeps `MODEL_DIR/best_prompt.npy` and `best_prompt.json` up to date.
  * `make_train_evaluator`: the two together, as the trainer's periodic
    validation.

Multi-host: every process evaluates the whole split (seqio caches it on each
host) and computes the same metrics; only process 0 writes files and
summaries.
"""
import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from absl import logging
from clu import metric_writers
import jax
import numpy as np
import seqio
import tensorflow as tf

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.checkpoints import run_dir
from prompt_tuning.model import prompts
from prompt_tuning.tasks import metrics as metrics_lib
from prompt_tuning.training import predict
from prompt_tuning.utils import files

Array = jax.Array
PyTree = Any
# {task name: {metric name: value}}.
AllMetrics = Dict[str, Dict[str, float]]


# ---------------------------------------------------------------------------
# Files: metrics.jsonl, best_prompt.json.
# ---------------------------------------------------------------------------


def _append_text(path: str, text: str) -> None:
  """Appends `text` to `path` (GCS objects cannot append: rewritten)."""
  if files.is_gcs(path):
    old = ''
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path, 'r') as f:
        old = f.read()
    files.atomic_write_bytes(path, (old + text).encode())
    return
  with open(path, 'a') as f:
    f.write(text)


def scalar_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
  """The numeric metrics as floats (seqio `Scalar`s unwrapped; others dropped).

  Args:
    metrics: metric name -> number, 0-d array or seqio `MetricValue`.

  Returns:
    metric name -> float, for the values that are single numbers.
  """
  out = {}
  for name, value in metrics.items():
    value = getattr(value, 'value', value)  # seqio.metrics.Scalar.
    try:
      array = np.asarray(value)
    except (TypeError, ValueError):
      continue
    if array.ndim == 0 and np.issubdtype(array.dtype, np.number):
      out[name] = float(array)
  return out


def read_metrics_jsonl(path: str) -> List[Dict[str, Any]]:
  """The records of a metrics.jsonl file: {'step', 'task', 'metrics'} each.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: naming the line, if one is not a JSON object.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'metrics file {path} does not exist')
  records = []
  with tf.io.gfile.GFile(path, 'r') as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f'metrics file {path} line {number} is not JSON: '
                         f'{line[:80]!r}') from e
      if not isinstance(record, dict):
        raise ValueError(f'metrics file {path} line {number} holds '
                         f'{type(record).__name__}; expected a JSON object.')
      records.append(record)
  return records


# ---------------------------------------------------------------------------
# The evaluator.
# ---------------------------------------------------------------------------


class Evaluator:
  """Evaluates parameter sets on the eval split of tasks or mixtures.

  The split is read, preprocessed and cached once at construction; every
  `evaluate(params, step)` then decodes (mode 'decode') or rank-classifies
  (mode 'rank') it, computes each task's seqio metrics and writes them:

    EVAL_DIR/<task>/events.*   TensorBoard scalars 'eval/<metric>'
    EVAL_DIR/metrics.jsonl     {"step": ..., "task": ..., "metrics": {...}}

  EVAL_DIR is `eval_dir`, else `model_dir`/eval; with neither, metrics are
  only logged. Tasks with score metrics are also scored
  (`predict.make_score_fn`).
  Predict-with-aux metrics get aux value 'scores': the decode's score in mode
  'decode', the `[C]` label log-likelihoods in mode 'rank'.

    evaluator = Evaluator(model, 'glue_rte_v200', split='validation',
                          feature_lengths={'inputs': 512, 'targets': 8},
                          batch_size=32, mode='rank',
                          label_strings=('entailment', 'not_entailment'),
                          model_dir=MODEL_DIR)
    metrics = evaluator.evaluate(params, step=1000)  # {task: {metric: x}}
  """

  def __init__(self,
               model: Any,
               tasks_or_mixture: Union[str, Sequence[str]],
               *,
               split: str = 'validation',
               feature_lengths: Optional[Mapping[str, int]] = None,
               batch_size: int = 32,
               mode: str = 'decode',
               decode_kwargs: Optional[Mapping[str, Any]] = None,
               label_strings: Union[None, Sequence[str],
                                    Mapping[str, Sequence[str]]] = None,
               model_dir: Optional[str] = None,
               eval_dir: Optional[str] = None,
               num_examples: Optional[int] = None,
               shuffle: bool = False,
               seed: Optional[int] = 42,
               use_cached: bool = False,
               feature_converter: Optional[seqio.FeatureConverter] = None,
               mesh=None,
               rules=None,
               log_every: int = 0,
               seqio_logger_cls: Sequence[type] = ()):
    """Caches the eval data and builds the model functions.

    Args:
      model: an `EncoderDecoderModel`.
      tasks_or_mixture: a registered task or mixture name, or several.
      split: the eval split, e.g. 'validation'.
      feature_lengths: e.g. {'inputs': 512, 'targets': 8}; None: the longest
        example of each feature.
      batch_size: rows of every batch (a multiple of the mesh's data axis).
      mode: 'decode' (predictions by `predict_batch`) or 'rank' (the best of
        `label_strings` by `rank_classify`).
      decode_kwargs: `predict_batch` arguments for mode 'decode'.
      label_strings: for mode 'rank': one label list for every task, or a
        mapping task name -> label list covering every evaluated task.
      model_dir: MODEL_DIR; metrics go to MODEL_DIR/eval unless `eval_dir`.
      eval_dir: where summaries and metrics.jsonl go.
      num_examples: evaluate only the first this many examples of each task.
      shuffle: shuffle before taking `num_examples` (once, with `seed`).
      seed: seqio's data seed.
      use_cached: read seqio's offline cache of the tasks.
      feature_converter: default `seqio.EncDecFeatureConverter(pack=False)`.
      mesh: optional device mesh; batches are split on its data axis.
      rules: logical axis rules for `mesh` (default: standard).
      log_every: progress log period in batches (0: every
        `predict.PROGRESS_SECONDS` only; see `predict.run_batches`).
      seqio_logger_cls: seqio `Logger` classes (e.g. `seqio.JSONLogger` for
        per-example inferences), written under EVAL_DIR.

    Raises:
      ValueError: on a bad mode, decode argument, batch size or label list,
        or if no task has the split and a metric.
    """
    if mode not in predict.MODES:
      raise ValueError(f'eval mode is {mode!r}; expected one of '
                       f'{predict.MODES}.')
    if mode == 'rank' and label_strings is None:
      raise ValueError("eval mode 'rank' needs label_strings (e.g. "
                       "CLASS_LABELS); got None.")
    predict.check_batch_size(batch_size, mesh)
    self.model = model
    self.mode = mode
    self.split = split
    self.batch_size = batch_size
    if eval_dir is None and model_dir is not None:
      eval_dir = run_dir.eval_dir(os.fspath(model_dir))
    self.eval_dir = None if eval_dir is None else os.fspath(eval_dir)
    self._is_writer = jax.process_index() == 0
    if self.eval_dir is not None and self._is_writer:
      tf.io.gfile.makedirs(self.eval_dir)

    names = ([tasks_or_mixture] if isinstance(tasks_or_mixture, str) else
             list(tasks_or_mixture))
    converter = feature_converter or seqio.EncDecFeatureConverter(pack=False)
    self._seqio_evaluators = []
    self._task_of_dataset = []  # [(dataset, task name)], by identity.
    for name in names:
      evaluator = seqio.Evaluator(
          mixture_or_task_name=name, feature_converter=converter,
          eval_split=split, use_cached=use_cached, seed=seed,
          sequence_length=(dict(feature_lengths) if feature_lengths else
                           None),
          num_examples=num_examples, shuffle=shuffle,
          logger_cls=tuple(seqio_logger_cls) if self.eval_dir else (),
          log_dir=self.eval_dir, async_compute_metrics=False)
      if not evaluator.eval_tasks:
        raise ValueError(
            f'{name!r} has no task with a {split!r} split and metric '
            'functions; expected at least one to evaluate.')
      for task in evaluator.eval_tasks:
        if any(task.name == t for _, t in self._task_of_dataset):
          raise ValueError(f'task {task.name!r} is in more than one of '
                           f'{names}; expected each task once.')
        self._task_of_dataset.append(
            (evaluator.cached_model_datasets[task.name], task.name))
      self._seqio_evaluators.append(evaluator)
    self.task_names = tuple(t for _, t in self._task_of_dataset)

    fn_kwargs = dict(batch_size=batch_size, mesh=mesh, rules=rules,
                     log_every=log_every)
    self._score_fn = predict.make_score_fn(model, **fn_kwargs)
    self._predict_fns: Dict[str, Callable[..., Any]] = {}
    if mode == 'decode':
      predict_fn = predict.make_predict_fn(model, decode_kwargs, **fn_kwargs)
      self._predict_fns = {task: predict_fn for task in self.task_names}
    else:
      if isinstance(label_strings, Mapping):
        missing = [t for t in self.task_names if t not in label_strings]
        if missing:
          raise ValueError(
              f'label_strings has no labels for task(s) {missing}; expected '
              f'a label list for every evaluated task {list(self.task_names)}.')
        per_task = {t: tuple(label_strings[t]) for t in self.task_names}
      else:
        per_task = {t: tuple(label_strings) for t in self.task_names}
      by_labels = {}  # Tasks with the same labels share a compiled function.
      for task, labels in per_task.items():
        if labels not in by_labels:
          by_labels[labels] = predict.rank_classification_predict_fn(
              model, labels, **fn_kwargs)
        self._predict_fns[task] = by_labels[labels]
    self._writers: Dict[str, metric_writers.MetricWriter] = {}

  def _task_name(self, dataset: tf.data.Dataset) -> str:
    for cached, task in self._task_of_dataset:
      if cached is dataset:
        return task
    raise ValueError('seqio passed a dataset that is none of the cached eval '
                     'datasets; expected one of tasks '
                     f'{list(self.task_names)}.')

  def _writer(self, task: str) -> metric_writers.MetricWriter:
    if task not in self._writers:
      logdir = (None if self.eval_dir is None else
                os.path.join(self.eval_dir, task))
      self._writers[task] = metric_writers.create_default_writer(
          logdir, just_logging=not self._is_writer)
    return self._writers[task]

  def evaluate(self, params: PyTree, step: int, *,
               prompt: Optional[Array] = None,
               rng: Optional[Array] = None) -> AllMetrics:
    """Evaluates `params` on every task and writes the metrics.

    Args:
      params: the model's parameter tree (the same structure and shapes at
        every call, so nothing recompiles).
      step: the training step, for summaries and metrics.jsonl.
      prompt: optional prompt passed to the model functions (`[P, H]` or a
        bank), overriding the one in `params`.
      rng: decoding rng for sampling (default PRNGKey(0)).

    Returns:
      {task name: {metric name: float}} (numeric metrics only).
    """
    def predict_fn(dataset):
      task = self._task_name(dataset)
      description = f'{task} ({self.split}, step {step})'
      if self.mode == 'decode':
        return self._predict_fns[task](dataset, params, prompt=prompt, rng=rng,
                                       description=description)
      return self._predict_fns[task](dataset, params, prompt=prompt,
                                     description=description)

    def predict_with_aux_fn(dataset):
      task = self._task_name(dataset)
      description = f'{task} ({self.split}, step {step}, with aux)'
      if self.mode == 'decode':
        return self._predict_fns[task](dataset, params, prompt=prompt, rng=rng,
                                       description=description, with_aux=True)
      return self._predict_fns[task](dataset, params, prompt=prompt,
                                     description=description, with_aux=True)

    def score_fn(dataset):
      task = self._task_name(dataset)
      return self._score_fn(dataset, params, prompt=prompt,
                            description=f'{task} ({self.split} scores)')

    results: AllMetrics = {}
    for evaluator in self._seqio_evaluators:
      future, _ = evaluator.evaluate(
          compute_metrics=True, step=int(step), predict_fn=predict_fn,
          score_fn=score_fn,
          predict_with_aux_fn=predict_with_aux_fn)
      for task, task_metrics in future.result().items():
        results[task] = self._write(task, task_metrics, int(step))
    return results

  def _write(self, task: str, task_metrics: Mapping[str, Any],
             step: int) -> Dict[str, float]:
    """Logs and writes one task's metrics; returns the numeric ones."""
    scalars = scalar_metrics(task_metrics)
    logging.info('eval %s step %d: %s', task, step,
                 ', '.join(f'{k}={v:.4g}' for k, v in sorted(scalars.items())))
    writer = self._writer(task)
    writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
    texts = {f'eval/{k}': str(getattr(v, 'textdata', v))
             for k, v in task_metrics.items() if k not in scalars}
    if texts:
      writer.write_texts(step, texts)
    writer.flush()
    if self.eval_dir is not None and self._is_writer:
      record = {'step': step, 'task': task, 'metrics': scalars}
      _append_text(run_dir.metrics_path(self.eval_dir),
                   json.dumps(record, sort_keys=True) + '\n')
    return scalars

  def close(self) -> None:
    """Flushes and closes the writers and seqio's evaluators."""
    for writer in self._writers.values():
      writer.close()
    self._writers = {}
    for evaluator in self._seqio_evaluators:
      evaluator.close()

  def __enter__(self) -> 'Evaluator':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def evaluate(model: Any,
             params: PyTree,
             tasks_or_mixture: Union[str, Sequence[str]],
             split: str = 'validation',
             feature_lengths: Optional[Mapping[str, int]] = None,
             batch_size: int = 32,
             mode: str = 'decode',
             step: int = 0,
             decode_kwargs: Optional[Mapping[str, Any]] = None,
             label_strings: Union[None, Sequence[str],
                                  Mapping[str, Sequence[str]]] = None,
             *,
             prompt: Optional[Array] = None,
             **evaluator_kwargs) -> AllMetrics:
  """Evaluates once: builds an `Evaluator`, evaluates `params`, closes it.

  Args:
    model, tasks_or_mixture, split, feature_lengths, batch_size, mode,
    decode_kwargs, label_strings: as for `Evaluator`.
    params: the model's parameter tree.
    step: the step recorded with the metrics.
    prompt: optional prompt overriding the one in `params`.
    **evaluator_kwargs: other `Evaluator` arguments (model_dir, eval_dir,
      num_examples, mesh, ...).

  Returns:
    {task name: {metric name: float}}.
  """
  with Evaluator(model, tasks_or_mixture, split=split,
                 feature_lengths=feature_lengths, batch_size=batch_size,
                 mode=mode, decode_kwargs=decode_kwargs,
                 label_strings=label_strings,
                 **evaluator_kwargs) as evaluator:
    return evaluator.evaluate(params, step, prompt=prompt)


# ---------------------------------------------------------------------------
# Best-step selection.
# ---------------------------------------------------------------------------


def selection_score(
    all_metrics: Mapping[str, Mapping[str, Any]],
    task_score_fn: Callable[[Mapping[str, Any]], float] = (
        metrics_lib.mean_of_metrics)
) -> float:
  """The checkpoint-selection score: mean over tasks of each task's score.

  Args:
    all_metrics: {task name: {metric name: value}}; one task for a task, one
      per sub-task for a mixture.
    task_score_fn: one task's score, by default the mean of its metrics.

  Returns:
    The score (higher is better).

  Raises:
    ValueError: if there is no task, or (from `task_score_fn`) a task has no
      metric or a value that is not a finite number.
  """
  if not all_metrics:
    raise ValueError('selection_score: got no tasks; expected {task: '
                     '{metric: value}}.')
  return float(np.mean([task_score_fn(m) for m in all_metrics.values()]))


@dataclasses.dataclass
class BestCheckpointTracker:
  """Remembers the best evaluated step and saves its prompt.

  On each new best, `MODEL_DIR/best_prompt.npy` (the prompt, written
  atomically) and then `MODEL_DIR/best_prompt.json` ({'step', 'score',
  'metrics'}) are rewritten, by process 0 only. A tracker made on a directory
  that already holds best_prompt.json starts from it, so a resumed run keeps
  its best. A higher score wins; on a tie the earlier step is kept.

    tracker = BestCheckpointTracker(model_dir)
    if tracker.update(step, evaluator.evaluate(params, step), prompt):
      logging.info('new best step %d', step)

  Attributes:
    model_dir: where the files go; None keeps the best in memory only.
    task_score_fn: one task's score (default: mean of its metrics).
    restore: read an existing best_prompt.json at construction.
    best_step, best_score, best_metrics: the best so far (None before any).
  """
  model_dir: Optional[str]
  task_score_fn: Callable[[Mapping[str, Any]], float] = (
      metrics_lib.mean_of_metrics)
  restore: bool = True
  best_step: Optional[int] = dataclasses.field(default=None, init=False)
  best_score: Optional[float] = dataclasses.field(default=None, init=False)
  best_metrics: Optional[AllMetrics] = dataclasses.field(default=None,
                                                         init=False)

  def __post_init__(self):
    if self.model_dir is not None:
      self.model_dir = os.fspath(self.model_dir)
    if (self.restore and self.model_dir is not None and
        tf.io.gfile.exists(self.json_path)):
      self._restore()

  @property
  def json_path(self) -> Optional[str]:
    return (None if self.model_dir is None else
            run_dir.best_prompt_json_path(self.model_dir))

  @property
  def prompt_path(self) -> Optional[str]:
    return (None if self.model_dir is None else
            run_dir.best_prompt_path(self.model_dir))

  def _restore(self) -> None:
    path = self.json_path
    with tf.io.gfile.GFile(path, 'r') as f:
      text = f.read()
    try:
      record = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f'best-step file {path} is not JSON: {text[:80]!r}'
                      ) from e
    if (not isinstance(record, dict) or
        not isinstance(record.get('step'), int) or
        not isinstance(record.get('score'), (int, float))):
      raise ValueError(
          f'best-step file {path} holds {text[:200]!r}; expected a JSON '
          'object with an integer "step" and a number "score".')
    self.best_step = record['step']
    self.best_score = float(record['score'])
    self.best_metrics = record.get('metrics')
    logging.info('Best step so far (from %s): %d, score %.4f', path,
                 self.best_step, self.best_score)

  def is_better(self, step: int, score: float) -> bool:
    """Whether (step, score) beats the best: higher, or equal and earlier."""
    if self.best_score is None:
      return True
    return score > self.best_score or (score == self.best_score and
                                       step < self.best_step)

  def update(self, step: int, all_metrics: Mapping[str, Mapping[str, Any]],
             prompt: Optional[Any] = None) -> bool:
    """Records one evaluation; on a new best saves the prompt and the json.

    Args:
      step: the evaluated step.
      all_metrics: {task name: {metric name: value}} of that step.
      prompt: the step's prompt `[P, H]` (or bank), a host-readable array;
        None (e.g. model tuning) writes only the json.

    Returns:
      Whether this step is the new best.

    Raises:
      ValueError: from `selection_score` on empty or non-finite metrics.
    """
    step = int(step)
    score = selection_score(all_metrics, self.task_score_fn)
    if not self.is_better(step, score):
      logging.info('eval step %d: score %.4f (best: step %d, %.4f)', step,
                   score, self.best_step, self.best_score)
      return False
    self.best_step, self.best_score = step, score
    self.best_metrics = {t: scalar_metrics(m) for t, m in all_metrics.items()}
    logging.info('eval step %d: new best score %.4f', step, score)
    if self.model_dir is not None and jax.process_index() == 0:
      tf.io.gfile.makedirs(self.model_dir)
      if prompt is not None:
        prompt_files.save_prompt(np.asarray(prompt), self.prompt_path)
      record = {'step': step, 'score': score, 'metrics': self.best_metrics}
      files.atomic_write_bytes(
          self.json_path,
          (json.dumps(record, indent=2, sort_keys=True) + '\n').encode())
    return True


def _lookup(tree: PyTree, name: str) -> Optional[Any]:
  """The leaf at '/'-joined `name` in nested mappings, or None."""
  node = tree
  for key in name.split('/'):
    if not isinstance(node, Mapping) or key not in node:
      return None
    node = node[key]
  return node


def make_train_evaluator(evaluator: Evaluator,
                         tracker: Optional[BestCheckpointTracker] = None,
                         prompt_param: str = prompts.PROMPT_PATH
                        ) -> Callable[[int, PyTree, PyTree], AllMetrics]:
  """The periodic-validation callback of `trainer.train(evaluator=...)`.

  Args:
    evaluator: evaluates the full parameter tree.
    tracker: if given, updated with each evaluation and the prompt found at
      `prompt_param` in the trainable parameters (None if absent, e.g. model
      tuning: then only best_prompt.json is written).
    prompt_param: '/'-joined name of the prompt parameter.

  Returns:
    `fn(step, params, trainable) -> {task: {metric: float}}`.
  """

  def run(step: int, params: PyTree, trainable: PyTree) -> AllMetrics:
    results = evaluator.evaluate(params, step)
    if tracker is not None:
      prompt = _lookup(trainable, prompt_param)
      tracker.update(step, results,
                     None if prompt is None else jax.device_get(prompt))
    return results

  return run
