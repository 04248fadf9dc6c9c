r"""Prompt ensembling (paper section 6): N prompts, one pass, majority vote.

N prompts tuned for one task (e.g. from different seeds) form a bank
`[N, P, H]`. Every example is repeated N times with `prompt_ids` 0..N-1, so a
batch of B examples becomes one forward (or decoding) pass over B*N rows of
the frozen model: the prompts are never run separately. Each prompt's
decodes are postprocessed with the task's postprocessor and scored with the
task's metrics; the ensemble predicts, per example, the most common
postprocessed prediction (majority vote). The report has the paper's
Table 3 form: each prompt, their average, the best, and the ensemble.

`evaluate_ensemble` is what `python -m prompt_tuning.ensemble` configures
through gin (gin/runs/prompt_ensemble.gin binds `ensemble.evaluate_ensemble`);
it writes OUTPUT_DIR/ensemble.md (the tables), ensemble.json and
`<task>.predictions.jsonl`.

Letters: N prompts, P prompt length, H embedding size, B examples per batch,
T input length, L decode length, C label strings, n examples.
"""
import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.serving import inference
from prompt_tuning.tasks import metrics as metrics_lib
from prompt_tuning.training import evaluation
from prompt_tuning.training import partitioning
from prompt_tuning.training import predict
from prompt_tuning.utils import tables

Array = jax.Array
PyTree = Any

MODES = ('decode', 'rank')
REPORT_MD = 'ensemble.md'
REPORT_JSON = 'ensemble.json'


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


def bank_outputs(model: models.EncoderDecoderModel, num_prompts: int,
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
                             log_every: int = 0) -> Callable[..., Any]:
  """Makes the ensembled predict function: every prompt of a bank, one pass.

  Args:
    model: the frozen model (its own prompt, if any, is replaced by the bank).
    num_prompts: N, the rows of the banks it will be given.
    decode_kwargs: `predict_batch` settings for mode 'decode' (greedy by
      default).
    mode: 'decode' or 'rank' (the most likely of `label_strings`, as
      `predict.rank_classification_predict_fn`).
    label_strings: the labels for mode 'rank'.
    batch_size: B examples per batch; each pass runs B*N rows.
    mesh, rules: optional device mesh (batches split on its data axis) and
      logical axis rules.
    log_every: progress log period in batches (0: every
      `predict.PROGRESS_SECONDS` only; see `predict.run_batches`).

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
  predict.check_batch_size(batch_size, mesh, 'ensemble')
  decode_kwargs = predict.check_decode_kwargs(decode_kwargs)
  label_ids = None
  if mode == 'rank':
    if label_strings is None:
      raise ValueError("ensemble mode 'rank' needs label_strings (e.g. "
                       'CLASS_LABELS); got None.')
    label_ids = predict.label_token_ids(model.output_vocabulary,
                                        label_strings)
  jitted = predict.jit_on_mesh(bank_outputs(model, num_prompts, mode,
                                            decode_kwargs, label_ids),
                               mesh, rules)

  def predict_fn(dataset, params: PyTree, bank: Array, *,
                 rng: Optional[Array] = None,
                 description: str = 'ensemble'):
    if np.ndim(bank) != 3 or np.shape(bank)[0] != num_prompts:
      raise ValueError(f'the prompt bank has shape {np.shape(bank)}; '
                       f'expected [{num_prompts}, P, H].')
    rng = jax.random.PRNGKey(0) if rng is None else rng
    compute = lambda batch, i: jitted(params, batch, bank,
                                      jax.random.fold_in(rng, i))
    indices, ids = predict.run_batches(
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

    def row(label, values):
      return [label] + [_cell(values[m]) for m in metric_names]

    rows = []
    for i, metrics in enumerate(result.prompt_metrics):
      label = f'prompt {i + 1}'
      if i < len(names):
        label += f' (`{names[i]}`)'
      rows.append(row(label, metrics))
    rows.append(row('average', result.average_metrics()))
    best = result.best_prompt()
    rows.append(row(f'best (prompt {best + 1})',
                    result.prompt_metrics[best]))
    rows.append(row('**ensemble** (majority vote)', result.ensemble_metrics))
    blocks.append(
        f'### {result.task} ({result.split}, {result.num_examples} '
        f'examples, {result.num_prompts} prompts)\n\n' +
        tables.markdown_table([''] + metric_names, rows, escape=False,
                              tight_empty=True) +
        f'\nAll {result.num_prompts} prompts agree on '
        f'{100 * result.agreement():.1f}% of the examples.')
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


def eval_tasks(mixture_or_task_name: str, split: str) -> List[Any]:
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
                          (prompts.PROMPT_REGEX, None),),
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
  options = inference.RunOptions(
      model=model, initial_checkpoint_path=initial_checkpoint_path,
      feature_lengths=feature_lengths, split=split, batch_size=batch_size,
      decode_kwargs=decode_kwargs, num_examples=num_examples,
      assignment_map=assignment_map, mesh_config=mesh_config, seed=seed)
  return _evaluate_ensemble(options, prompt_files, mixture_or_task_name,
                            output_dir, mode=mode, class_labels=class_labels)


def _evaluate_ensemble(options: inference.RunOptions,
                       prompt_files: Sequence[str], mixture_or_task_name: str,
                       output_dir: Optional[str], *, mode: str,
                       class_labels: Optional[Sequence[str]]
                      ) -> List[TaskEnsemble]:
  """`evaluate_ensemble` with its shared arguments in `options`."""
  bank = inference.load_prompt_bank(prompt_files, flag='PROMPT_FILES')
  names = [os.fspath(f) for f in prompt_files]
  tasks = eval_tasks(mixture_or_task_name, options.split)
  setup = options.setup_model()
  predict_fn = make_ensemble_predict_fn(
      options.model, len(names), options.decode_kwargs, mode=mode,
      label_strings=class_labels, batch_size=options.batch_size,
      mesh=setup.mesh, rules=setup.rules)
  results = [ensemble_task(options.model, setup.params, bank, task,
                           feature_lengths=options.feature_lengths,
                           split=options.split,
                           batch_size=options.batch_size,
                           num_examples=options.num_examples,
                           predict_fn=predict_fn, prompt_names=names)
             for task in tasks]
  if output_dir is not None:
    report = write_report(results, output_dir)
    logging.info('wrote the ensemble report to %s', output_dir)
  else:
    report = format_report(results)
  logging.info('prompt ensemble:\n%s', report)
  return results
