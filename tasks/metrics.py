"""Evaluation metrics for the paper's tasks (GLUE, SuperGLUE, SQuAD, MRQA).

Every metric has seqio's prediction-metric signature
`fn(targets, predictions) -> dict[str, float]`: `targets` and `predictions`
are equal-length lists of already postprocessed values (see
`prompt_tuning.tasks.postprocessors`), and every score is on a 0-100 scale as
in T5's evaluation. Classification scores come from scikit-learn and
correlations from scipy; only the SQuAD-style token F1 / exact match, which
neither library has, is written here, after the official SQuAD v1.1 script.

Conventions shared by all metrics:
  - Empty inputs or inputs of different lengths raise `ValueError` naming the
    metric.
  - An invalid prediction (class id -1, from a decoded string that is no
    label) is always scored as wrong; it is never dropped.
  - Degenerate inputs (one class only, a constant vector) return a defined
    number, never nan, and raise no warnings.

Scores of several tasks are combined by `superglue_average` (the paper's
SuperGLUE score) and `mean_of_metrics` (one number per task, used to select
the best checkpoint).
"""
import collections
import re
import string
from typing import Any, Callable, Hashable, Mapping, Sequence
import warnings

import numpy as np
import scipy.stats
import sklearn.metrics

MetricFn = Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]


# ------------------------------------------------------------------ helpers


def _check_inputs(name: str, targets: Sequence[Any],
                  predictions: Sequence[Any]) -> None:
  """Raises ValueError if the inputs are empty or of different lengths."""
  if len(targets) != len(predictions):
    raise ValueError(
        f'{name}: got {len(targets)} targets and {len(predictions)} '
        'predictions; expected one prediction per target.')
  if not targets:
    raise ValueError(
        f'{name}: got 0 targets and 0 predictions; expected at least one '
        'example.')


def _binary_arrays(name: str, targets: Sequence[int],
                   predictions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """Class-id arrays for binary F1, with invalid predictions made wrong.

  Args:
    name: the metric's name, for errors.
    targets: `[N]` class ids, each 0 or 1.
    predictions: `[N]` class ids; anything but 0 or 1 (e.g. -1) is invalid.

  Returns:
    `([N] targets, [N] predictions)` as int64 arrays, where every invalid
    prediction is replaced by `1 - target`.

  Raises:
    ValueError: if a target is not 0 or 1.
  """
  t = np.asarray(targets, dtype=np.int64)
  p = np.asarray(predictions, dtype=np.int64)
  bad = np.flatnonzero((t != 0) & (t != 1))
  if bad.size:
    raise ValueError(
        f'{name}: target {bad[0]} is {t[bad[0]]}; expected binary class ids '
        '0 or 1 (a target that is no label points at the postprocessor\'s '
        'label_classes).')
  # NOTE: an invalid prediction becomes the opposite of its target, so it is
  # a false negative when the target is 1 and a false positive when it is 0
  # (T5's `f1_score_with_invalid`). Dropping it would inflate F1.
  invalid = (p != 0) & (p != 1)
  p = np.where(invalid, 1 - t, p)
  return t, p


def _binary_f1(t: np.ndarray, p: np.ndarray) -> float:
  """F1 of class 1 on 0/1 arrays, on 0-100; 0 when class 1 never occurs."""
  # NOTE: with no positive target and no positive prediction F1 is 0/0;
  # scikit-learn's default (and T5's) reports 0, made explicit here to keep
  # it silent.
  return 100.0 * float(
      sklearn.metrics.f1_score(
          t, p, pos_label=1, average='binary', zero_division=0.0))


def _as_float(name: str, key: str, value: Any) -> float:
  """A finite float from a number, a 0-d array or a seqio `Scalar`."""
  value = getattr(value, 'value', value)  # seqio.metrics.Scalar.
  try:
    out = float(np.asarray(value))
  except (TypeError, ValueError) as e:
    raise ValueError(
        f'{name}: metric {key!r} is {value!r}; expected a number.') from e
  if not np.isfinite(out):
    raise ValueError(f'{name}: metric {key!r} is {out}; expected a finite '
                     'number.')
  return out


# ------------------------------------------------------ classification


def accuracy(targets: Sequence[Any],
             predictions: Sequence[Any]) -> dict[str, float]:
  """Percentage of predictions equal to their target.

  Args:
    targets: `[N]` class ids (or any labels scikit-learn accepts).
    predictions: `[N]` class ids; -1 (invalid) never equals a target.

  Returns:
    {'accuracy': 0-100}.

  Raises:
    ValueError: on empty inputs or inputs of different lengths.
  """
  _check_inputs('accuracy', targets, predictions)
  return {
      'accuracy':
          100.0 * float(
              sklearn.metrics.accuracy_score(
                  np.asarray(targets), np.asarray(predictions)))
  }


def exact_match(targets: Sequence[str],
                predictions: Sequence[str]) -> dict[str, float]:
  """Percentage of predicted strings identical to their target string.

  No normalisation is applied (see `squad` for the normalised variant).

  Args:
    targets: `[N]` strings.
    predictions: `[N]` strings.

  Returns:
    {'exact_match': 0-100}.

  Raises:
    ValueError: on empty inputs or inputs of different lengths.
  """
  _check_inputs('exact_match', targets, predictions)
  matches = [t == p for t, p in zip(targets, predictions)]
  return {'exact_match': 100.0 * float(np.mean(matches))}


def f1_and_accuracy(targets: Sequence[int],
                    predictions: Sequence[int]) -> dict[str, float]:
  """Binary F1 of class 1 and accuracy (MRPC, QQP).

  Args:
    targets: `[N]` class ids, each 0 or 1.
    predictions: `[N]` class ids; an invalid one (-1) counts as wrong in both
      scores: a false negative if its target is 1, a false positive if 0.

  Returns:
    {'f1': 0-100, 'accuracy': 0-100}. F1 is 0 when neither targets nor
    predictions contain class 1.

  Raises:
    ValueError: on empty inputs, inputs of different lengths, or a target
      that is not 0 or 1.
  """
  _check_inputs('f1_and_accuracy', targets, predictions)
  t, p = _binary_arrays('f1_and_accuracy', targets, predictions)
  return {
      'f1': _binary_f1(t, p),
      'accuracy': 100.0 * float(sklearn.metrics.accuracy_score(t, p)),
  }


def mean_multiclass_f1(num_classes: int) -> MetricFn:
  """Makes a metric of the macro-averaged F1 over `num_classes` classes.

  Every class in `range(num_classes)` enters the mean, also a class that no
  target and no prediction contains (its F1 is 0), as in SuperGLUE's CB
  scorer. An invalid prediction (-1) belongs to no class: it is a false
  negative for its target's class.

  Gin / task use:
    metric_fns=[metrics.accuracy, metrics.mean_multiclass_f1(num_classes=3)]

  Args:
    num_classes: number of classes, at least 2.

  Returns:
    `fn(targets, predictions) -> {'mean_<num_classes>class_f1': 0-100}`, with
    targets `[N]` class ids in `range(num_classes)` and predictions `[N]`
    class ids.

  Raises:
    ValueError: if `num_classes < 2`; the returned function raises it on
      empty inputs, inputs of different lengths, or a target outside
      `range(num_classes)`.
  """
  if (isinstance(num_classes, bool) or
      not isinstance(num_classes, (int, np.integer)) or num_classes < 2):
    raise ValueError(
        f'mean_multiclass_f1: num_classes is {num_classes!r}; expected an '
        'integer of at least 2.')
  num_classes = int(num_classes)
  key = f'mean_{num_classes}class_f1'

  def metric_fn(targets: Sequence[int],
                predictions: Sequence[int]) -> dict[str, float]:
    _check_inputs(key, targets, predictions)
    t = np.asarray(targets, dtype=np.int64)
    bad = np.flatnonzero((t < 0) | (t >= num_classes))
    if bad.size:
      raise ValueError(
          f'{key}: target {bad[0]} is {t[bad[0]]}; expected a class id in '
          f'[0, {num_classes}).')
    p = np.asarray(predictions, dtype=np.int64)
    f1 = sklearn.metrics.f1_score(
        t, p, labels=list(range(num_classes)), average='macro',
        zero_division=0.0)
    return {key: 100.0 * float(f1)}

  metric_fn.__name__ = key
  metric_fn.__qualname__ = key
  return metric_fn


def matthews_corrcoef(targets: Sequence[int],
                      predictions: Sequence[int]) -> dict[str, float]:
  """Matthews correlation coefficient (CoLA, AX-b).

  NOTE: an invalid prediction (-1) is passed to scikit-learn as a class of
  its own, as T5 does, so it lies off the diagonal of the confusion matrix
  (always wrong) and the multiclass form of MCC is computed. When targets or
  predictions are constant the coefficient is 0/0; scikit-learn defines it
  as 0, and that is what is returned.

  Args:
    targets: `[N]` class ids.
    predictions: `[N]` class ids.

  Returns:
    {'matthews_corrcoef': -100 to 100}.

  Raises:
    ValueError: on empty inputs or inputs of different lengths.
  """
  _check_inputs('matthews_corrcoef', targets, predictions)
  with warnings.catch_warnings():
    # A single label in both inputs warns about the confusion matrix shape;
    # the returned 0 is the intended value.
    warnings.simplefilter('ignore', UserWarning)
    warnings.simplefilter('ignore', RuntimeWarning)
    mcc = sklearn.metrics.matthews_corrcoef(
        np.asarray(targets, dtype=np.int64),
        np.asarray(predictions, dtype=np.int64))
  mcc = float(mcc)
  return {'matthews_corrcoef': 100.0 * (mcc if np.isfinite(mcc) else 0.0)}


# --------------------------------------------------------- regression


def pearson_and_spearman(targets: Sequence[float],
                         predictions: Sequence[float]) -> dict[str, float]:
  """Pearson and Spearman correlation (STS-B).

  NOTE: a correlation with a constant vector (or a single example) is 0/0,
  for which scipy returns nan with a warning. Here both correlations are
  defined as 0.0 in that case: a model that always outputs one number has no
  correlation with the gold scores, and a nan would poison averages and
  checkpoint selection.

  Args:
    targets: `[N]` gold similarity scores.
    predictions: `[N]` predicted scores (an unparseable output arrives as the
      postprocessor's default, e.g. -1.0, and is scored as that number).

  Returns:
    {'pearson_corrcoef': -100 to 100, 'spearman_corrcoef': -100 to 100}.

  Raises:
    ValueError: on empty inputs, inputs of different lengths, or a value
      that is not finite.
  """
  _check_inputs('pearson_and_spearman', targets, predictions)
  t = np.asarray(targets, dtype=np.float64)
  p = np.asarray(predictions, dtype=np.float64)
  for what, x in (('target', t), ('prediction', p)):
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
      raise ValueError(
          f'pearson_and_spearman: {what} {bad[0]} is {x[bad[0]]}; expected '
          'a finite number.')
  if np.ptp(t) == 0 or np.ptp(p) == 0:
    return {'pearson_corrcoef': 0.0, 'spearman_corrcoef': 0.0}
  return {
      'pearson_corrcoef': 100.0 * float(scipy.stats.pearsonr(t, p).statistic),
      'spearman_corrcoef':
          100.0 * float(scipy.stats.spearmanr(t, p).statistic),
  }


# ------------------------------------------------------------ MultiRC


def multirc_metrics(targets: Sequence[Mapping[str, Any]],
                    predictions: Sequence[Mapping[str, Any]]
                   ) -> dict[str, float]:
  """MultiRC's F1a over all answers and exact match per question.

  Each example is one candidate answer to one question; a question's answers
  share a `group`. Groups are taken from the targets; a prediction's group,
  when present and not None, must equal its target's.

  Args:
    targets: `[N]` dicts {'group': hashable question id, 'value': 0 or 1}.
    predictions: `[N]` dicts {'group': ..., 'value': class id}; -1 (invalid)
      counts as wrong.

  Returns:
    {'f1a': binary F1 of value 1 over all N answers (0-100),
     'exact_match': percentage of questions whose answers are all right}.

  Raises:
    ValueError: on empty inputs, inputs of different lengths, a target value
      that is not 0 or 1, or a prediction whose group differs from its
      target's.
  """
  name = 'multirc_metrics'
  _check_inputs(name, targets, predictions)
  groups: list[Hashable] = []
  for i, (target, prediction) in enumerate(zip(targets, predictions)):
    group = target['group']
    predicted_group = prediction.get('group')
    if predicted_group is not None and predicted_group != group:
      raise ValueError(
          f'{name}: prediction {i} has group {predicted_group!r} but its '
          f'target has group {group!r}; expected predictions in the order of '
          'the targets.')
    groups.append(group)
  t, p = _binary_arrays(name, [x['value'] for x in targets],
                        [x['value'] for x in predictions])
  correct_by_group: dict[Hashable, list[bool]] = collections.defaultdict(list)
  for group, correct in zip(groups, t == p):
    correct_by_group[group].append(bool(correct))
  all_correct = [all(v) for v in correct_by_group.values()]
  return {
      'f1a': _binary_f1(t, p),
      'exact_match': 100.0 * float(np.mean(all_correct)),
  }


# ----------------------------------------------------- SQuAD and ReCoRD

_ARTICLES = re.compile(r'\b(a|an|the)\b')
_PUNCTUATION = frozenset(string.punctuation)


def _normalize_answer(text: str) -> str:
  """Lowercases, drops punctuation and articles, collapses whitespace."""
  # The official SQuAD v1.1 (and ReCoRD) order: lower, punctuation, articles,
  # whitespace.
  text = text.lower()
  text = ''.join(c for c in text if c not in _PUNCTUATION)
  text = _ARTICLES.sub(' ', text)
  return ' '.join(text.split())


def _token_f1(prediction: str, gold: str) -> float:
  """SQuAD v1.1 token F1 of two normalised strings, in [0, 1]."""
  prediction_tokens = prediction.split()
  gold_tokens = gold.split()
  common = collections.Counter(prediction_tokens) & collections.Counter(
      gold_tokens)
  num_same = sum(common.values())
  # NOTE: as in the official v1.1 script, no shared token gives 0, also when
  # both strings normalise to empty (their exact match is still 1).
  if num_same == 0:
    return 0.0
  precision = num_same / len(prediction_tokens)
  recall = num_same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def _max_over_gold(name: str, targets: Sequence[Sequence[str]],
                   predictions: Sequence[str]) -> dict[str, float]:
  """Mean over examples of the best F1 / EM against any gold answer."""
  _check_inputs(name, targets, predictions)
  f1s, ems = [], []
  for i, (golds, prediction) in enumerate(zip(targets, predictions)):
    if isinstance(golds, (str, bytes)):
      golds = [golds]
    golds = [g.decode('utf-8') if isinstance(g, bytes) else g for g in golds]
    if not golds:
      raise ValueError(
          f'{name}: target {i} has no gold answers; expected at least one.')
    if isinstance(prediction, bytes):
      prediction = prediction.decode('utf-8')
    prediction = _normalize_answer(prediction)
    golds = [_normalize_answer(g) for g in golds]
    ems.append(max(float(prediction == g) for g in golds))
    f1s.append(max(_token_f1(prediction, g) for g in golds))
  return {
      'f1': 100.0 * float(np.mean(f1s)),
      'exact_match': 100.0 * float(np.mean(ems)),
  }


def squad(targets: Sequence[Sequence[str]],
          predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD v1.1 token F1 and exact match, best over gold answers (SQuAD, MRQA).

  Both strings are normalised first: lowercased, punctuation removed, the
  words a/an/the removed, whitespace collapsed. F1 and exact match are each
  maximised over the gold answers of an example, then averaged.

  Args:
    targets: `[N]` lists of gold answer strings (a bare string is one
      answer).
    predictions: `[N]` predicted strings.

  Returns:
    {'f1': 0-100, 'exact_match': 0-100}.

  Raises:
    ValueError: on empty inputs, inputs of different lengths, or an example
      with no gold answer.
  """
  return _max_over_gold('squad', targets, predictions)


def record_metrics(targets: Sequence[Sequence[str]],
                   predictions: Sequence[str]) -> dict[str, float]:
  """ReCoRD's F1 and exact match, best over the gold entity mentions.

  The official ReCoRD scorer is the SQuAD v1.1 one: arguments, result and
  errors are those of `squad`.
  """
  return _max_over_gold('record_metrics', targets, predictions)


# ------------------------------------------------ combining task scores


def superglue_average(scores: Mapping[str, Mapping[str, Any]]) -> float:
  """The paper's SuperGLUE score: mean over tasks of each task's mean metric.

  Every metric in a task's dict counts, with equal weight inside that task,
  and every task counts equally. So pass for each task exactly the metrics
  SuperGLUE reports and nothing else (no loss, no diagnostics):
    BoolQ, COPA, RTE, WiC, WSC: {'accuracy'}
    CB: {'accuracy', 'mean_3class_f1'}
    MultiRC: {'f1a', 'exact_match'}
    ReCoRD: {'f1', 'exact_match'}
  AX-b and AX-g are not part of the score.

  Args:
    scores: task name -> {metric name -> value on 0-100}. Values may be
      numbers or seqio `Scalar`s.

  Returns:
    The score on 0-100.

  Raises:
    ValueError: if `scores` is empty, a task has no metrics, or a value is
      not a finite number.
  """
  name = 'superglue_average'
  if not scores:
    raise ValueError(f'{name}: got no tasks; expected a dict of task name -> '
                     'metrics.')
  task_means = []
  for task, metrics in scores.items():
    if not metrics:
      raise ValueError(
          f'{name}: task {task!r} has no metrics; expected at least one, '
          "e.g. {'accuracy': ...}.")
    task_means.append(
        np.mean([_as_float(f'{name}: task {task!r}', k, v)
                 for k, v in metrics.items()]))
  return float(np.mean(task_means))


def mean_of_metrics(metrics: Mapping[str, Any]) -> float:
  """Checkpoint-selection score of one task: the mean of its metrics.

  A task with one metric (e.g. accuracy) scores that metric; CB scores the
  mean of accuracy and mean_3class_f1, MultiRC of f1a and exact_match.

  Args:
    metrics: metric name -> value (a number or a seqio `Scalar`).

  Returns:
    The mean value.

  Raises:
    ValueError: if `metrics` is empty or a value is not a finite number.
  """
  if not metrics:
    raise ValueError('mean_of_metrics: got no metrics; expected at least one.')
  return float(
      np.mean([_as_float('mean_of_metrics', k, v) for k, v in metrics.items()]))
