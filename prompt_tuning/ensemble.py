r"""Prompt ensembling (paper section 6): N prompts, one pass, majority vote.

N prompts tuned for one task (e.g. from different seeds) form a bank
`[N, P, H]`. Every example is repeated N times with `prompt_ids` 0..N-1, so a
batch of B examples becomes one forward (or decoding) pass over B*N rows of
the frozen model: the prompts are never run separately. Each prompt's
decodes are postprocessed with the task's postprocessor and scored with the
task's metrics; the ensemble predicts, per example, the most common
postprocessed prediction (majority vote). The report has the paper's
Table 3 form: each prompt, their average, the best, and the ensemble.

    python -m prompt_tuning.ensemble \
      --gin_file=embedded/prompt_ensemble.gin \
      --gin.PROMPT_FILES="['/tmp/s0/best_prompt.npy', '/tmp/s1/best_prompt.npy', '/tmp/s2/best_prompt.npy']" \
      --gin.ENSEMBLE_OUTPUT_DIR="'/tmp/ensemble'"

writes ENSEMBLE_OUTPUT_DIR/ensemble.md (the tables, also printed),
ensemble.json and `<task>.predictions.jsonl`. With `--benchmark` it instead
times one ensembled pass against N separate single-prompt passes over the
same batches (`--benchmark_repeats`, `--benchmark_warmup`) and writes
benchmark.json.

Letters: N prompts, P prompt length, H embedding size, B examples per batch,
T input length, L decode length, C label strings, n examples.
"""
import dataclasses
import json
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.training import evaluation
from prompt_tuning.serving import inference
from prompt_tuning.model import models
from prompt_tuning.training import partitioning
from prompt_tuning.training import trainer
from prompt_tuning.tasks import metrics as metrics_lib

Array = jax.Array
PyTree = Any

MODES = ('decode', 'rank')
REPORT_MD = 'ensemble.md'
REPORT_JSON = 'ensemble.json'
BENCHMARK_JSON = 'benchmark.json'


# ---------------------------------------------------------------------------
# The ensembled pass.
# ---------------------------------------------------------------------------


def expand_batch(batch: Mapping[str, Array], num_prompts: int
                ) -> Dict[str, Array]:
  """Repeats each example once per prompt of a bank: `[B, ...] -> [B*N, ...]`.

  Row `b*N + i` is example b with `prompt_ids = i`, so each example's N rows
  are adjacent (a batch split on the data axis keeps them on one device).

  Args:
    batch: model features `[B, ...]` without `prompt_ids`.
    num_prompts: N.

  Returns:
    The features `[B*N, ...]` plus `prompt_ids` int32 `[B*N]`.

  Raises:
    ValueError: the batch already selects prompts (`prompt_ids`).
  """
  if 'prompt_ids' in batch:
    raise ValueError('an ensembled batch gets its prompt_ids from the bank; '
                     'the input batch already has prompt_ids.')
  batch_size = batch['encoder_input_tokens'].shape[0]
  # [B, ...] -> [B*N, ...]
  expanded = {k: jnp.repeat(v, num_prompts, axis=0) for k, v in batch.items()}
  # [N] -> [B*N]: 0..N-1, 0..N-1, ...
  expanded['prompt_ids'] = jnp.tile(jnp.arange(num_prompts, dtype=jnp.int32),
                                    batch_size)
  return expanded


def _check_batch_size(batch_size: int, mesh) -> None:
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f'ensemble batch_size is {batch_size!r}; expected a '
                     'positive integer (examples per batch).')
  if mesh is not None and batch_size % mesh.shape['data']:
    raise ValueError(
        f'ensemble batch_size {batch_size} is not a multiple of the mesh data '
        f'axis size {mesh.shape["data"]}; expected a multiple.')


def _bank_outputs(model: models.EncoderDecoderModel, num_prompts: int,
                  mode: str, decode_kwargs: Mapping[str, Any],
                  label_ids: Optional[np.ndarray]
                 ) -> Callable[..., Array]:
  """`fn(params, batch [B, ...], bank [N, P, H], rng) -> ids [B, N, L]`."""

  def outputs(params, batch, bank, rng):
    rows = expand_batch(batch, num_prompts)  # [B*N, ...]
    batch_size = batch['encoder_input_tokens'].shape[0]
    if mode == 'decode':
      # [B*N, T] -> [B*N, L]
      ids = model.predict_batch(params, rows, rng, prompt=bank,
                                **decode_kwargs)
    else:
      # [B*N, T], [C, U] -> [B*N, C] -> [B*N] -> [B*N, U]
      scores = model.rank_classify(params, rows, label_ids, prompt=bank)
      ids = jnp.take(label_ids, jnp.argmax(scores, axis=-1), axis=0)
    # [B*N, L] -> [B, N, L]
    return ids.reshape(batch_size, num_prompts, -1)

  return outputs


def make_ensemble_predict_fn(model: models.EncoderDecoderModel,
                             num_prompts: int,
                             decode_kwargs: Optional[Mapping[str, Any]] = None,
                             *,
                             mode: str = 'decode',
                             label_strings: Optional[Sequence[str]] = None,
                             batch_size: int = 32,
                             mesh=None,
                             rules=None,
                             log_every: int = 100) -> Callable[..., Any]:
  """Makes the ensembled predict function: every prompt of a bank, one pass.

  Args:
    model: the frozen model (its own prompt, if any, is replaced by the bank).
    num_prompts: N, the rows of the banks it will be given.
    decode_kwargs: `predict_batch` settings for mode 'decode' (greedy by
      default).
    mode: 'decode' or 'rank' (the most likely of `label_strings`, as
      `evaluation.rank_classification_predict_fn`).
    label_strings: the labels for mode 'rank'.
    batch_size: B examples per batch; each pass runs B*N rows.
    mesh, rules: optional device mesh (batches split on its data axis) and
      logical axis rules.
    log_every: progress log period in batches.

  Returns:
    `fn(dataset, params, bank, *, rng=None, description='ensemble') ->
    (indices [n], ids [n, N, L])`: `dataset` yields `(index, features)`;
    `ids[j, i]` are prompt i's output tokens for example j (EOS then zeros;
    label tokens in mode 'rank'), equal to what prompt i alone gives with a
    deterministic decoding (greedy, beam) or rank classification.

  Raises:
    ValueError: a bad mode, decode argument, label list or batch size.
  """
  if mode not in MODES:
    raise ValueError(f'ensemble mode is {mode!r}; expected one of {MODES}.')
  if num_prompts < 1:
    raise ValueError(f'num_prompts is {num_prompts}; expected at least 1.')
  _check_batch_size(batch_size, mesh)
  decode_kwargs = evaluation.check_decode_kwargs(decode_kwargs)
  label_ids = None
  if mode == 'rank':
    if label_strings is None:
      raise ValueError("ensemble mode 'rank' needs label_strings (e.g. "
                       'CLASS_LABELS); got None.')
    label_ids = evaluation.label_token_ids(model.output_vocabulary,
                                           label_strings)
  jitted = evaluation.jit_on_mesh(_bank_outputs(model, num_prompts, mode, decode_kwargs,
                              label_ids), mesh, rules)

  def predict_fn(dataset, params: PyTree, bank: Array, *,
                 rng: Optional[Array] = None,
                 description: str = 'ensemble'):
    if np.ndim(bank) != 3 or np.shape(bank)[0] != num_prompts:
      raise ValueError(f'the prompt bank has shape {np.shape(bank)}; '
                       f'expected [{num_prompts}, P, H].')
    rng = jax.random.PRNGKey(0) if rng is None else rng
    compute = lambda batch, i: jitted(params, batch, bank,
                                      jax.random.fold_in(rng, i))
    indices, ids = evaluation.run_batches(
        dataset, compute, batch_size, mesh=mesh, description=description,
        log_every=log_every)
    if ids is None:
      ids = np.zeros((0, num_prompts, 0), np.int32)
    return indices, ids

  return predict_fn


# ---------------------------------------------------------------------------
# Voting and metrics.
# ---------------------------------------------------------------------------


def _vote_key(value: Any) -> str:
  """A hashable key under which equal postprocessed predictions meet."""
  return json.dumps(value, sort_keys=True, default=repr)


def majority_vote(predictions: Sequence[Any]) -> Tuple[Any, int]:
  """The most common of one example's N predictions.

  NOTE: ties go to the prediction of the lowest-indexed prompt among the tied
  ones (the tied prediction that occurs first in prompt order), so an
  ensemble of one prompt, or of N prompts that all disagree, predicts what
  prompt 1 predicts. Predictions are compared after postprocessing (equal
  labels vote together even if their decoded text differs, e.g. in spacing).

  Args:
    predictions: N postprocessed predictions, in prompt order.

  Returns:
    `(winner, i)`: the winning prediction and the first prompt i that gave it.

  Raises:
    ValueError: no predictions.
  """
  if not predictions:
    raise ValueError('majority_vote got no predictions; expected one per '
                     'prompt.')
  counts: Dict[str, int] = {}
  first: Dict[str, int] = {}
  for i, prediction in enumerate(predictions):
    key = _vote_key(prediction)
    counts[key] = counts.get(key, 0) + 1
    first.setdefault(key, i)
  # The highest count; among equal counts the earliest first occurrence.
  best = min(counts, key=lambda k: (-counts[k], first[k]))
  return predictions[first[best]], first[best]


def _targets(task, examples: Sequence[Mapping[str, Any]]) -> List[Any]:
  """The postprocessed targets, as seqio's evaluator makes them."""
  vocabulary = task.output_features['targets'].vocabulary
  targets = []
  for ex in examples:
    if 'targets_pretokenized' in ex:
      text = ex['targets_pretokenized']
    else:
      text = vocabulary.decode(list(ex['targets']))
    if isinstance(text, bytes):
      text = text.decode('utf-8')
    targets.append(task.postprocess_fn(text, example=ex, is_target=True))
  return targets


def task_metrics(task, targets: Sequence[Any],
                 predictions: Sequence[Any]) -> Dict[str, float]:
  """The task's predict metrics (`(targets, predictions)` metric fns).

  Raises:
    ValueError: the task has no such metric function.
  """
  if not task.predict_metric_fns:
    raise ValueError(
        f'task {task.name!r} has no (targets, predictions) metric function; '
        'a majority vote over predictions needs one.')
  results = {}
  for metric_fn in task.predict_metric_fns:
    results.update(metric_fn(list(targets), list(predictions)))
  return evaluation.scalar_metrics(results)


@dataclasses.dataclass(frozen=True)
class TaskEnsemble:
  """One task's ensembled evaluation.

  Attributes:
    task: the task name.
    split: the evaluated split.
    prompt_metrics: N dicts {metric: value}, one per prompt.
    ensemble_metrics: {metric: value} of the majority vote.
    outputs: N lists of n decoded output texts.
    predictions: N lists of n postprocessed predictions (of `outputs`).
    ensemble_predictions: n voted predictions.
    winners: n prompt indices, the first prompt that gave each vote's winner.
    targets: n postprocessed targets.
    texts: n (inputs, targets) texts.
    ids: `[n, N, L]` the prompts' output tokens.
    prompt_names: N names for the report (e.g. the files); default
      'prompt i'.
  """
  task: str
  split: str
  prompt_metrics: List[Dict[str, float]]
  ensemble_metrics: Dict[str, float]
  outputs: List[List[str]]
  predictions: List[List[Any]]
  ensemble_predictions: List[Any]
  winners: List[int]
  targets: List[Any]
  texts: List[Tuple[str, str]]
  ids: np.ndarray
  prompt_names: Tuple[str, ...] = ()

  @property
  def num_prompts(self) -> int:
    return len(self.prompt_metrics)

  @property
  def num_examples(self) -> int:
    return len(self.targets)

  def average_metrics(self) -> Dict[str, float]:
    """Each metric's mean over the prompts."""
    return {k: float(np.mean([m[k] for m in self.prompt_metrics]))
            for k in self.prompt_metrics[0]}

  def std_metrics(self) -> Dict[str, float]:
    """Each metric's standard deviation over the prompts."""
    return {k: float(np.std([m[k] for m in self.prompt_metrics]))
            for k in self.prompt_metrics[0]}

  def best_prompt(self) -> int:
    """The prompt with the best mean of its metrics (the first of equals)."""
    scores = [metrics_lib.mean_of_metrics(m) for m in self.prompt_metrics]
    return int(np.argmax(scores))

  def agreement(self) -> float:
    """The fraction of examples on which all prompts predict the same."""
    if not self.targets:
      return float('nan')
    same = sum(len({_vote_key(p[j]) for p in self.predictions}) == 1
               for j in range(self.num_examples))
    return same / self.num_examples

  def names(self) -> List[str]:
    """The prompts' names, `prompt_names` or 'prompt i'."""
    return list(self.prompt_names or [f'prompt {i + 1}'
                                      for i in range(self.num_prompts)])

  def summary(self) -> Dict[str, Any]:
    """The JSON form of the report."""
    names = self.names()
    best = self.best_prompt()
    return {
        'task': self.task,
        'split': self.split,
        'num_examples': self.num_examples,
        'prompts': [{'prompt': i + 1, 'name': names[i], 'metrics': m}
                    for i, m in enumerate(self.prompt_metrics)],
        'average': self.average_metrics(),
        'std': self.std_metrics(),
        'best': {'prompt': best + 1, 'name': names[best],
                 'metrics': self.prompt_metrics[best]},
        'ensemble': self.ensemble_metrics,
        'agreement': self.agreement(),
    }


def ensemble_task(model: models.EncoderDecoderModel,
                  params: PyTree,
                  bank: Array,
                  task,
                  *,
                  feature_lengths: Mapping[str, int],
                  split: str = 'validation',
                  batch_size: int = 32,
                  mode: str = 'decode',
                  decode_kwargs: Optional[Mapping[str, Any]] = None,
                  label_strings: Optional[Sequence[str]] = None,
                  num_examples: Optional[int] = None,
                  mesh=None,
                  rules=None,
                  predict_fn: Optional[Callable[..., Any]] = None,
                  prompt_names: Sequence[str] = ()) -> TaskEnsemble:
  """Evaluates every prompt of `bank` on a task in one pass, and their vote.

  Args:
    model: the frozen model.
    params: its parameters.
    bank: `[N, P, H]` prompts.
    task: a seqio Task (with predict metric functions).
    feature_lengths: e.g. {'inputs': 512, 'targets': 8}.
    split: the evaluated split.
    batch_size: B examples per batch (B*N rows per pass).
    mode, decode_kwargs, label_strings: as `make_ensemble_predict_fn`.
    num_examples: evaluate only the first this many examples.
    mesh, rules: optional device mesh and logical axis rules.
    predict_fn: a `make_ensemble_predict_fn` result to reuse (it must match
      the bank's N and these settings); made here if None.
    prompt_names: N names for the report (e.g. the prompt files).

  Returns:
    The task's `TaskEnsemble`.

  Raises:
    ValueError: from `make_ensemble_predict_fn` or `task_metrics`.
  """
  num_prompts = int(np.shape(bank)[0])
  if not task.predict_metric_fns:
    raise ValueError(
        f'task {task.name!r} has no (targets, predictions) metric function; '
        'a majority vote over predictions needs one.')
  if task.predict_with_aux_metric_fns or task.score_metric_fns:
    logging.warning('task %s: its score and predict-with-aux metrics are not '
                    'ensembled; reporting its predict metrics only.',
                    task.name)
  if predict_fn is None:
    predict_fn = make_ensemble_predict_fn(
        model, num_prompts, decode_kwargs, mode=mode,
        label_strings=label_strings, batch_size=batch_size, mesh=mesh,
        rules=rules)
  examples, dataset = inference.task_examples(task, split, feature_lengths,
                                              num_examples)
  indices, ids = predict_fn(dataset, params, bank,
                            description=f'{task.name} ({split}, ensemble)')
  order = np.argsort(indices, kind='stable')
  ids = ids[order]  # [n, N, L] in example order
  vocabulary = task.output_features['targets'].vocabulary
  outputs = [[vocabulary.decode(ids[j, i].tolist())
              for j in range(len(examples))] for i in range(num_prompts)]
  predictions = [[task.postprocess_fn(text, example=ex, is_target=False)
                  for text, ex in zip(texts, examples)] for texts in outputs]
  votes = [majority_vote([p[j] for p in predictions])
           for j in range(len(examples))]
  targets = _targets(task, examples)
  prompt_metrics = [task_metrics(task, targets, p) for p in predictions]
  ensemble_predictions = [winner for winner, _ in votes]
  return TaskEnsemble(
      task=task.name, split=split, prompt_metrics=prompt_metrics,
      ensemble_metrics=task_metrics(task, targets, ensemble_predictions),
      outputs=outputs, predictions=predictions,
      ensemble_predictions=ensemble_predictions,
      winners=[i for _, i in votes], targets=targets,
      texts=[inference.example_texts(ex) for ex in examples], ids=ids,
      prompt_names=tuple(prompt_names))


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


def _cell(value: float) -> str:
  return f'{value:.2f}'


def format_report(results: Sequence[TaskEnsemble]) -> str:
  """Markdown tables in the form of the paper's Table 3, one per task.

  Rows: each prompt, their average, the best prompt, and the ensemble
  (majority vote); columns: the task's metrics.
  """
  blocks = []
  for result in results:
    names = list(result.prompt_names)
    metric_names = sorted(result.ensemble_metrics)
    header = '| | ' + ' | '.join(metric_names) + ' |'
    rule = '|---|' + '---|' * len(metric_names)

    def row(label, values):
      return (f'| {label} | ' +
              ' | '.join(_cell(values[m]) for m in metric_names) + ' |')

    lines = [f'### {result.task} ({result.split}, {result.num_examples} '
             f'examples, {result.num_prompts} prompts)', '', header, rule]
    for i, metrics in enumerate(result.prompt_metrics):
      label = f'prompt {i + 1}'
      if i < len(names):
        label += f' (`{names[i]}`)'
      lines.append(row(label, metrics))
    lines.append(row('average', result.average_metrics()))
    best = result.best_prompt()
    lines.append(row(f'best (prompt {best + 1})',
                     result.prompt_metrics[best]))
    lines.append(row('**ensemble** (majority vote)', result.ensemble_metrics))
    lines.append('')
    lines.append(f'All {result.num_prompts} prompts agree on '
                 f'{100 * result.agreement():.1f}% of the examples.')
    blocks.append('\n'.join(lines))
  return '\n\n'.join(blocks) + '\n'


def _write_text(path: str, text: str) -> None:
  temporary = path + '.tmp'
  with open(temporary, 'w') as f:
    f.write(text)
  os.replace(temporary, path)


def write_report(results: Sequence[TaskEnsemble], output_dir: str) -> str:
  """Writes ensemble.md, ensemble.json and `<task>.predictions.jsonl`.

  Returns:
    The Markdown report.
  """
  report = format_report(results)
  if jax.process_index() != 0:
    return report
  os.makedirs(output_dir, exist_ok=True)
  _write_text(os.path.join(output_dir, REPORT_MD), report)
  summary = {r.task: r.summary() for r in results}
  _write_text(os.path.join(output_dir, REPORT_JSON),
              json.dumps(summary, indent=2, sort_keys=True) + '\n')
  for result in results:
    lines = []
    for j, (inputs, targets) in enumerate(result.texts):
      lines.append(json.dumps({
          'index': j, 'inputs': inputs, 'targets': targets,
          'outputs': [o[j] for o in result.outputs],
          'predictions': [p[j] for p in result.predictions],
          'ensemble': result.ensemble_predictions[j],
          'winner': result.winners[j] + 1}, default=repr))
    _write_text(os.path.join(output_dir, f'{result.task}.predictions.jsonl'),
                '\n'.join(lines) + '\n')
  return report


# ---------------------------------------------------------------------------
# The gin-configured entry.
# ---------------------------------------------------------------------------


def _eval_tasks(mixture_or_task_name: str, split: str) -> List[Any]:
  """The task, or the mixture's tasks that have `split` and predict metrics.

  Raises:
    ValueError: an unknown name, or no task to evaluate.
  """
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  found = task_utils.get_mixture_or_task(mixture_or_task_name)
  tasks = list(getattr(found, 'tasks', [found]))
  usable = [t for t in tasks
            if split in t.splits and t.predict_metric_fns]
  if not usable:
    raise ValueError(
        f'{mixture_or_task_name!r} has no task with a {split!r} split and a '
        '(targets, predictions) metric function; expected at least one to '
        'ensemble.')
  return usable


def evaluate_ensemble(*,
                      model: models.EncoderDecoderModel,
                      initial_checkpoint_path: Optional[str],
                      prompt_files: Sequence[str],
                      mixture_or_task_name: str,
                      feature_lengths: Mapping[str, int],
                      output_dir: Optional[str],
                      split: str = 'validation',
                      batch_size: int = 32,
                      mode: str = 'decode',
                      decode_kwargs: Optional[Mapping[str, Any]] = None,
                      class_labels: Optional[Sequence[str]] = None,
                      num_examples: Optional[int] = None,
                      assignment_map: Sequence[Tuple[str, Optional[str]]] = (
                          (trainer.PROMPT_REGEX, None),),
                      mesh_config: partitioning.MeshConfig = (
                          partitioning.MeshConfig()),
                      seed: int = 0) -> List[TaskEnsemble]:
  """Evaluates an ensemble of prompts on a task (or a mixture's tasks).

  The prompts (`.npy` files `[P, H]`, all of one shape) form a bank
  `[N, P, H]`; each task's split is evaluated in one pass over the frozen
  model (`ensemble_task`) and the Table-3-style report is logged and, with
  `output_dir`, written there (`write_report`).

  Gin (gin/runs/prompt_ensemble.gin):

    PROMPT_FILES = ['/tmp/s0/best_prompt.npy', '/tmp/s1/best_prompt.npy']
    ENSEMBLE_OUTPUT_DIR = '/tmp/ensemble'

  Args:
    model: the frozen model; a prompt it owns is replaced by the bank.
    initial_checkpoint_path: its t5x checkpoint.
    prompt_files: N `.npy` prompts.
    mixture_or_task_name: a registered task or mixture.
    feature_lengths: e.g. {'inputs': 512, 'targets': 8}.
    output_dir: where the report goes (None: only logged).
    split: the evaluated split.
    batch_size: examples per batch (each pass runs batch_size * N rows).
    mode: 'decode' or 'rank' (with `class_labels`).
    decode_kwargs: `predict_batch` settings for 'decode'.
    class_labels: label strings for 'rank'.
    num_examples: evaluate only the first this many examples of each task.
    assignment_map, mesh_config, seed: as `inference.evaluate`.

  Returns:
    One `TaskEnsemble` per evaluated task.

  Raises:
    ValueError, FileNotFoundError: bad prompt files, task, mode or sizes.
  """
  bank = inference.load_prompt_bank(prompt_files, flag='PROMPT_FILES')
  names = [os.fspath(f) for f in prompt_files]
  tasks = _eval_tasks(mixture_or_task_name, split)
  setup = trainer.setup_model(model, initial_checkpoint_path, assignment_map,
                              seed, mesh_config)
  predict_fn = make_ensemble_predict_fn(
      model, len(names), decode_kwargs, mode=mode, label_strings=class_labels,
      batch_size=batch_size, mesh=setup.mesh, rules=setup.rules)
  results = [ensemble_task(model, setup.params, bank, task,
                           feature_lengths=feature_lengths, split=split,
                           batch_size=batch_size, num_examples=num_examples,
                           predict_fn=predict_fn, prompt_names=names)
             for task in tasks]
  if output_dir is not None:
    report = write_report(results, output_dir)
    logging.info('wrote the ensemble report to %s', output_dir)
  else:
    report = format_report(results)
  logging.info('prompt ensemble:\n%s', report)
  return results


# ---------------------------------------------------------------------------
# Benchmark: one ensembled pass against N separate passes.
# ---------------------------------------------------------------------------


def _fixed_batches(dataset, batch_size: int) -> List[Dict[str, np.ndarray]]:
  """The `(index, features)` dataset as batches of exactly `batch_size` rows
  (the last one padded by repeating its examples, as in evaluation)."""
  batches = []
  for _, features in dataset.batch(batch_size).as_numpy_iterator():
    batch = {k: np.asarray(features[k]) for k in evaluation.MODEL_FEATURES
             if k in features}
    n = len(batch['encoder_input_tokens'])
    if n < batch_size:
      rows = np.arange(batch_size) % n
      batch = {k: v[rows] for k, v in batch.items()}
    batches.append(batch)
  return batches


def time_passes(model: models.EncoderDecoderModel,
                params: PyTree,
                bank: Array,
                batches: Sequence[Mapping[str, np.ndarray]],
                decode_kwargs: Optional[Mapping[str, Any]] = None,
                *,
                repeats: int = 5,
                warmup: int = 1,
                mesh=None,
                rules=None) -> Dict[str, Any]:
  """Times one ensembled pass over `batches` against N single-prompt passes.

  The ensembled pass decodes each batch once with B*N rows
  (`expand_batch`); the separate passes decode each batch N times, once per
  prompt `[P, H]`, with B rows. Both run the same batches already on the
  devices, and are timed alternately in the same process: `warmup` untimed
  rounds (the first one compiles; its time is reported), then `repeats`
  timed rounds, each waiting for all outputs.

  Args:
    model, params: the frozen model and its parameters.
    bank: `[N, P, H]`.
    batches: model features `[B, ...]` each.
    decode_kwargs: `predict_batch` settings (greedy by default).
    repeats: timed rounds (the median is reported).
    warmup: untimed rounds first (at least 1).
    mesh, rules: optional device mesh and logical axis rules.

  Returns:
    {'num_prompts', 'batch_size', 'num_batches', 'repeats',
     'ensembled_seconds', 'separate_seconds' (medians),
     'ensembled_all', 'separate_all' (every round),
     'ensembled_first_seconds', 'separate_first_seconds' (compile + first
     round), 'speedup' (separate / ensembled), 'same_outputs' (whether both
     ways decoded the same tokens), 'device'}.

  Raises:
    ValueError: no batches, or fewer than 1 warm-up round.
  """
  if not batches:
    raise ValueError('time_passes got no batches; expected at least one.')
  if warmup < 1 or repeats < 1:
    raise ValueError(f'warmup {warmup} and repeats {repeats}; expected at '
                     'least 1 each.')
  decode_kwargs = evaluation.check_decode_kwargs(decode_kwargs)
  num_prompts = int(np.shape(bank)[0])
  ensembled = evaluation.jit_on_mesh(_bank_outputs(model, num_prompts, 'decode', decode_kwargs,
                                 None), mesh, rules)

  def single_fn(params, batch, prompt, rng):
    # [B, T] -> [B, L]
    return model.predict_batch(params, batch, rng, prompt=prompt,
                               **decode_kwargs)

  single = evaluation.jit_on_mesh(single_fn, mesh, rules)
  if mesh is None:
    placed = [jax.device_put(b) for b in batches]
  else:
    sharding = partitioning.data_sharding(mesh)
    placed = [jax.device_put(b, sharding) for b in batches]
  bank = jax.device_put(jnp.asarray(bank))
  prompts = [bank[i] for i in range(num_prompts)]  # N of [P, H]
  rng = jax.random.PRNGKey(0)

  def ensembled_round():
    outputs = [ensembled(params, b, bank, rng) for b in placed]
    return jax.block_until_ready(outputs)  # [batches] of [B, N, L]

  def separate_round():
    outputs = [single(params, b, p, rng) for p in prompts for b in placed]
    return jax.block_until_ready(outputs)  # [N * batches] of [B, L]

  def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

  first = {'ensembled': timed(ensembled_round),
           'separate': timed(separate_round)}
  # Both ways must give the same tokens: [N, batches, B, L] each.
  # [batches, B, N, L] -> [N, batches, B, L]
  together = np.stack([np.asarray(x) for x in ensembled_round()]).transpose(
      2, 0, 1, 3)
  alone = np.asarray(separate_round()).reshape(together.shape)
  same_outputs = bool(np.array_equal(together, alone))
  for _ in range(warmup - 1):
    ensembled_round()
    separate_round()
  times = {'ensembled': [], 'separate': []}
  for _ in range(repeats):
    times['ensembled'].append(timed(ensembled_round))
    times['separate'].append(timed(separate_round))
  ensembled_median = statistics.median(times['ensembled'])
  separate_median = statistics.median(times['separate'])
  device = jax.devices()[0]
  return {
      'num_prompts': num_prompts,
      'batch_size': int(batches[0]['encoder_input_tokens'].shape[0]),
      'num_batches': len(batches),
      'repeats': repeats,
      'warmup': warmup,
      'ensembled_seconds': ensembled_median,
      'separate_seconds': separate_median,
      'ensembled_all': times['ensembled'],
      'separate_all': times['separate'],
      'ensembled_first_seconds': first['ensembled'],
      'separate_first_seconds': first['separate'],
      'speedup': separate_median / ensembled_median,
      'same_outputs': same_outputs,
      'device': f'{jax.device_count()} x {device.device_kind} '
                f'({device.platform})',
  }


def format_benchmark(result: Mapping[str, Any]) -> str:
  """A short Markdown table of `time_passes`' result."""
  n, b = result['num_prompts'], result['batch_size']
  rows = result['num_batches'] * b
  return '\n'.join([
      f'{n} prompts, {result["num_batches"]} batches of {b} examples '
      f'({rows} rows per prompt with padding), {result["device"]}; median of '
      f'{result["repeats"]} rounds after {result["warmup"]} warm-up:',
      '',
      '| | seconds (median) | first round (with compile) | '
      'rows x prompts / s |',
      '|---|---|---|---|',
      f'| one ensembled pass ({b * n} rows per batch) | '
      f'{result["ensembled_seconds"]:.4f} | '
      f'{result["ensembled_first_seconds"]:.2f} | '
      f'{rows * n / result["ensembled_seconds"]:.0f} |',
      f'| {n} separate passes ({b} rows per batch) | '
      f'{result["separate_seconds"]:.4f} | '
      f'{result["separate_first_seconds"]:.2f} | '
      f'{rows * n / result["separate_seconds"]:.0f} |',
      '',
      f'speedup of the ensembled pass: {result["speedup"]:.2f}x; same '
      f'tokens both ways: {result["same_outputs"]}',
  ]) + '\n'


def benchmark(*,
              model: models.EncoderDecoderModel,
              initial_checkpoint_path: Optional[str],
              prompt_files: Sequence[str],
              mixture_or_task_name: str,
              feature_lengths: Mapping[str, int],
              output_dir: Optional[str] = None,
              split: str = 'validation',
              batch_size: int = 32,
              decode_kwargs: Optional[Mapping[str, Any]] = None,
              num_examples: Optional[int] = None,
              repeats: int = 5,
              warmup: int = 1,
              assignment_map: Sequence[Tuple[str, Optional[str]]] = (
                  (trainer.PROMPT_REGEX, None),),
              mesh_config: partitioning.MeshConfig = (
                  partitioning.MeshConfig()),
              seed: int = 0) -> Dict[str, Any]:
  """`time_passes` on the (first) task's split with the prompt files.

  Takes the arguments of `evaluate_ensemble` (one gin config binds both)
  except `mode` and `class_labels` (the benchmark decodes), plus `repeats`
  and `warmup`; writes benchmark.json to `output_dir`. Single-process only.

  Returns:
    `time_passes`' result, plus 'task' and 'num_examples'.
  """
  bank = inference.load_prompt_bank(prompt_files, flag='PROMPT_FILES')
  task = _eval_tasks(mixture_or_task_name, split)[0]
  setup = trainer.setup_model(model, initial_checkpoint_path, assignment_map,
                              seed, mesh_config)
  _check_batch_size(batch_size, setup.mesh)
  examples, dataset = inference.task_examples(task, split, feature_lengths,
                                              num_examples)
  result = time_passes(model, setup.params, bank,
                       _fixed_batches(dataset, batch_size), decode_kwargs,
                       repeats=repeats, warmup=warmup, mesh=setup.mesh,
                       rules=setup.rules)
  result.update(task=task.name, num_examples=len(examples))
  logging.info('ensemble benchmark:\n%s', format_benchmark(result))
  if output_dir is not None and jax.process_index() == 0:
    os.makedirs(output_dir, exist_ok=True)
    _write_text(os.path.join(output_dir, BENCHMARK_JSON),
                json.dumps(result, indent=2, sort_keys=True) + '\n')
  return result


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  gin_utils.define_flags()
  flags.DEFINE_boolean(
      'benchmark', False,
      'Time one ensembled pass against N separate passes instead of '
      'evaluating.')
  flags.DEFINE_integer('benchmark_repeats', 5,
                       'Timed rounds of the benchmark (median reported).')
  flags.DEFINE_integer('benchmark_warmup', 1,
                       'Untimed rounds before timing (the first compiles).')


def main(argv) -> None:
  """Evaluates (or, with --benchmark, times) the gin-configured ensemble."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  # NOTE: run as `python -m`, this file is `__main__`; gin configures the
  # functions of the imported module `prompt_tuning.ensemble`.
  from prompt_tuning import ensemble as configured  # pylint: disable=g-import-not-at-top,import-self
  gin_utils.configure_from_flags(argv)
  flag_values = flags.FLAGS
  if flag_values.benchmark:
    result = gin.get_configurable(configured.benchmark)(
        repeats=flag_values.benchmark_repeats,
        warmup=flag_values.benchmark_warmup)
    print(f'{result["task"]} ({result["num_examples"]} examples)')
    print(configured.format_benchmark(result), end='')
    return
  results = gin.get_configurable(configured.evaluate_ensemble)()
  print(configured.format_report(results), end='')


if __name__ == '__main__':
  from prompt_tuning.cli import gin_utils as _gin_utils  # pylint: disable=g-import-not-at-top
  _define_flags()
  _gin_utils.run(main)
