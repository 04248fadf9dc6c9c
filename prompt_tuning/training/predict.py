"""Model functions in the form seqio's evaluator calls them, and the batching
that runs them.

Letters: B batch, T encoder input length, U decoder length, L decode length,
C number of label strings, N examples.

`make_predict_fn` (decoding), `rank_classification_predict_fn` (scores every
label string, predicts the best one's tokens) and `make_score_fn`
(log-likelihood of the targets) each return `fn(dataset, params, ...)`; bind
`params` (e.g. with a lambda) before handing it to seqio. Each jits its model
function once (`jit_on_mesh`), so it compiles once per feature shape and serves
every evaluation of a training run.

Batches always have exactly `batch_size` rows: the last one is padded by
repeating its examples and the padding is dropped from the outputs
(`run_batches`).

Multi-host: every process reads the whole dataset, places each global batch on
the mesh's data axis, and gets the outputs back replicated, so all processes
hold the same outputs.
"""
import time
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

from absl import logging
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import seqio
import tensorflow as tf

from prompt_tuning.training import partitioning

Array = jax.Array
PyTree = Any

# Features a model function receives; the converter's other features (if any)
# never reach the jitted functions, so they cannot cause recompilations.
MODEL_FEATURES = ('encoder_input_tokens', 'decoder_input_tokens',
                  'decoder_target_tokens', 'decoder_loss_weights',
                  'prompt_ids')
# Keyword arguments of `EncoderDecoderModel.predict_batch` that
# `decode_kwargs` may set.
DECODE_KWARGS = ('method', 'num_decodes', 'temperature', 'topk', 'topp',
                 'alpha', 'max_decode_length')
MODES = ('decode', 'rank')
# Seconds between progress lines of a long evaluation or inference.
PROGRESS_SECONDS = 30.0


# ---------------------------------------------------------------------------
# Batching and running jitted model functions.
# ---------------------------------------------------------------------------


def _cardinality(dataset: tf.data.Dataset) -> Optional[int]:
  n = int(dataset.cardinality())
  return n if n >= 0 else None


def _batches(dataset: tf.data.Dataset, batch_size: int
            ) -> Iterator[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
  """Yields `(indices [n], features {name: [batch_size, ...]})`, n <= B.

  `dataset` yields `(index, features)` pairs (seqio's enumerated eval
  datasets) or bare feature dicts (then indices count from 0). A last batch of
  n < B examples is padded to B rows by repeating its own examples.
  """
  enumerated = isinstance(dataset.element_spec, tuple)
  offset = 0
  for element in dataset.batch(batch_size).as_numpy_iterator():
    if enumerated:
      indices, features = element
    else:
      features = element
      n = len(next(iter(features.values())))
      indices = np.arange(offset, offset + n)
    offset += len(indices)
    batch = {k: np.asarray(features[k]) for k in MODEL_FEATURES
             if k in features}
    n = len(indices)
    if n < batch_size:
      # [n, ...] -> [B, ...]
      rows = np.arange(batch_size) % n
      batch = {k: v[rows] for k, v in batch.items()}
    yield np.asarray(indices), batch


def _duration(seconds: float) -> str:
  """'42s', '3m05s' or '2h07m'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


def progress_line(description: str, done: int, total: Optional[int],
                  elapsed: float) -> str:
  """'description: done/total examples, R examples/s, ETA 3m05s' (the total
  and ETA as '?' when the dataset's size is unknown)."""
  rate = done / elapsed if elapsed > 0 else float('inf')
  if total is None:
    eta = '?'
  elif done >= total:
    eta = '0s'
  else:
    eta = _duration((total - done) / rate) if rate > 0 else '?'
  return (f'{description}: {done}/{total if total is not None else "?"} '
          f'examples, {rate:.1f} examples/s, ETA {eta}')


def _place(batch: Dict[str, np.ndarray], mesh) -> Dict[str, Any]:
  """The global batch as jax arrays split on the mesh's data axis."""
  if mesh is None:
    return batch
  sharding = partitioning.data_sharding(mesh)
  # Every process holds the whole global batch and supplies the slices of
  # its own devices.
  return {
      k: jax.make_array_from_callback(v.shape, sharding,
                                      lambda index, v=v: v[index])
      for k, v in batch.items()
  }


def jit_on_mesh(fn: Callable[..., Any], mesh, rules) -> Callable[..., Any]:
  """jax.jit of `fn`; with a mesh: traced under its rules, replicated out."""
  if mesh is None:
    return jax.jit(fn)
  rules = rules if rules is not None else (
      partitioning.standard_logical_axis_rules())
  jitted = jax.jit(fn, out_shardings=NamedSharding(mesh, P()))

  def call(*args):
    with partitioning.mesh_context(mesh, rules):
      return jitted(*args)

  return call


def check_batch_size(batch_size: int, mesh, what: str = 'eval') -> None:
  """Raises ValueError unless `batch_size` is a positive integer that splits
  over the mesh's data axis; the message names it `what batch_size`."""
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f'{what} batch_size is {batch_size!r}; expected a '
                     'positive integer (examples per batch).')
  if mesh is not None and batch_size % mesh.shape['data']:
    raise ValueError(
        f'{what} batch_size {batch_size} is not a multiple of the mesh data '
        f'axis size {mesh.shape["data"]}; expected a multiple, since every '
        'batch is split over the data axis.')


def run_batches(dataset: tf.data.Dataset,
                compute: Callable[[Dict[str, Any], int], PyTree],
                batch_size: int,
                *,
                mesh=None,
                description: str = 'eval',
                log_every: int = 0,
                log_seconds: float = PROGRESS_SECONDS
               ) -> Tuple[np.ndarray, PyTree]:
  """Runs `compute` over fixed-size batches of `dataset`; gathers the outputs.

  Batch i+1 is dispatched before batch i's outputs are copied to the host, so
  input preparation overlaps the device work.

  Progress (process 0, absl INFO): a line `description: done/total examples,
  rate examples/s, ETA ...` every `log_every` batches and whenever
  `log_seconds` have passed since the last one, so a run shorter than
  `log_seconds` logs only its closing line (`description: N examples in T s`).

  Args:
    dataset: yields `(index, features)` or feature dicts; see `_batches`.
    compute: `(batch {name: [B, ...]}, batch number) -> tree of [B, ...]`,
      typically a jitted model function.
    batch_size: B; the last batch is padded to B rows.
    mesh: optional mesh; batches are then split on its data axis.
    description: names the run in progress logs.
    log_every: log progress every this many batches; 0: only by time.
    log_seconds: log progress when this many seconds have passed since the
      start or the last progress line; 0 or less: only by batch count.

  Returns:
    `(indices [N], outputs)`, outputs the tree of `compute`'s leaves as numpy
    arrays `[N, ...]`, padding dropped, in dataset order.
  """
  total = _cardinality(dataset)
  start = time.perf_counter()
  pieces: List[Tuple[np.ndarray, PyTree]] = []
  pending = None
  done = 0
  last_log = start

  def fetch(item):
    indices, outputs = item
    n = len(indices)
    return indices, jax.tree.map(lambda x: np.asarray(x)[:n], outputs)

  for number, (indices, batch) in enumerate(_batches(dataset, batch_size)):
    outputs = compute(_place(batch, mesh), number)
    if pending is not None:
      pieces.append(fetch(pending))
    pending = (indices, outputs)
    done += len(indices)
    now = time.perf_counter()
    if jax.process_index() == 0 and (
        (log_every and (number + 1) % log_every == 0) or
        (log_seconds > 0 and now - last_log >= log_seconds)):
      last_log = now
      logging.info('%s', progress_line(description, done, total, now - start))
  if pending is not None:
    pieces.append(fetch(pending))
  if jax.process_index() == 0:
    logging.info('%s: %d examples in %.1f s', description, done,
                 time.perf_counter() - start)
  if not pieces:
    return np.zeros((0,), np.int64), None
  indices = np.concatenate([p[0] for p in pieces])
  outputs = jax.tree.map(lambda *xs: np.concatenate(xs),
                         *[p[1] for p in pieces])
  return indices, outputs


# ---------------------------------------------------------------------------
# Model functions in seqio's form.
# ---------------------------------------------------------------------------


def check_decode_kwargs(decode_kwargs: Optional[Mapping[str, Any]]
                       ) -> Dict[str, Any]:
  """A copy of `decode_kwargs`; raises ValueError on an unknown name."""
  decode_kwargs = dict(decode_kwargs or {})
  unknown = sorted(set(decode_kwargs) - set(DECODE_KWARGS))
  if unknown:
    raise ValueError(f'decode_kwargs has unknown argument(s) {unknown}; '
                     f'expected names among {list(DECODE_KWARGS)}.')
  return decode_kwargs


def make_predict_fn(model: Any,
                    decode_kwargs: Optional[Mapping[str, Any]] = None,
                    *,
                    batch_size: int = 32,
                    mesh=None,
                    rules=None,
                    log_every: int = 0) -> Callable[..., Any]:
  """Makes a decoding predict function in seqio's form.

  The model's `predict_batch` is jitted once here; the returned function
  takes the parameters as an argument, so it compiles once per feature shape
  and serves every evaluation of a training run.

    predict_fn = make_predict_fn(model, {'method': 'beam', 'num_decodes': 4})
    seqio_evaluator.evaluate(compute_metrics=True,
                             predict_fn=lambda ds: predict_fn(ds, params))

  Args:
    model: an `EncoderDecoderModel` (anything with its `predict_batch`).
    decode_kwargs: keyword arguments of `predict_batch` among
      `DECODE_KWARGS`, fixed (static) for this function.
    batch_size: B, the rows of every batch.
    mesh: optional device mesh; batches are split on its data axis.
    rules: logical axis rules for tracing under `mesh` (default: standard).
    log_every: progress log period in batches (0: every
      `predict.PROGRESS_SECONDS` only; see `predict.run_batches`).

  Returns:
    `predict_fn(dataset, params, *, prompt=None, rng=None,
    description='predict', with_aux=False) -> [(index, token ids [L])]`, one
    pair per example of `dataset` in its order, ids as python ints (EOS then
    zeros). `rng` (default PRNGKey(0)) is folded with the batch number for
    sampling. With `with_aux` it returns seqio's predict-with-aux form,
    `(that list, {'scores': [score of the returned decode]})`, from a second
    compilation made on first use.

  Raises:
    ValueError: on an unknown decode argument or a bad batch size.
  """
  decode_kwargs = check_decode_kwargs(decode_kwargs)
  check_batch_size(batch_size, mesh)

  def predict(params, batch, rng, prompt):
    # [B, T] -> [B, L]
    return model.predict_batch(params, batch, rng, prompt=prompt,
                               **decode_kwargs)

  def predict_with_scores(params, batch, rng, prompt):
    # [B, T] -> ([B, L], [B])
    return model.predict_batch(params, batch, rng, prompt=prompt,
                               return_scores=True, **decode_kwargs)

  jitted = {False: jit_on_mesh(predict, mesh, rules),
            True: jit_on_mesh(predict_with_scores, mesh, rules)}

  def predict_fn(dataset: tf.data.Dataset, params: PyTree, *,
                 prompt: Optional[Array] = None, rng: Optional[Array] = None,
                 description: str = 'predict', with_aux: bool = False):
    rng = jax.random.PRNGKey(0) if rng is None else rng
    fn = jitted[bool(with_aux)]
    compute = lambda batch, i: fn(params, batch, jax.random.fold_in(rng, i),
                                  prompt)
    indices, outputs = run_batches(dataset, compute, batch_size, mesh=mesh,
                                   description=description,
                                   log_every=log_every)
    if outputs is None:
      pairs, scores = [], []
    else:
      tokens, scores = outputs if with_aux else (outputs, None)
      pairs = [(int(i), row.tolist()) for i, row in zip(indices, tokens)]
    if with_aux:
      return pairs, {'scores': [float(x) for x in scores]}
    return pairs

  return predict_fn


def make_score_fn(model: Any,
                  *,
                  batch_size: int = 32,
                  mesh=None,
                  rules=None,
                  log_every: int = 0) -> Callable[..., Any]:
  """Makes a scoring function in seqio's form (for score metrics).

  Args:
    model: an `EncoderDecoderModel` (anything with its `score_batch`).
    batch_size, mesh, rules, log_every: as for `make_predict_fn`.

  Returns:
    `score_fn(dataset, params, *, prompt=None, description='score') ->
    [(index, log-likelihood)]`, the targets' summed log-likelihood weighted by
    `decoder_loss_weights`, one pair per example in dataset order.

  Raises:
    ValueError: on a bad batch size.
  """
  check_batch_size(batch_size, mesh)

  def score(params, batch, prompt):
    # [B, T], [B, U] -> [B]
    return model.score_batch(params, batch, prompt=prompt)

  jitted = jit_on_mesh(score, mesh, rules)

  def score_fn(dataset: tf.data.Dataset, params: PyTree, *,
               prompt: Optional[Array] = None,
               description: str = 'score') -> List[Tuple[int, float]]:
    compute = lambda batch, i: jitted(params, batch, prompt)
    indices, scores = run_batches(dataset, compute, batch_size, mesh=mesh,
                                  description=description,
                                  log_every=log_every)
    if scores is None:
      return []
    return [(int(i), float(s)) for i, s in zip(indices, scores)]

  return score_fn


def label_token_ids(vocabulary: seqio.Vocabulary,
                    label_strings: Sequence[str]) -> np.ndarray:
  """Tokenises label strings, each followed by EOS, padded with 0.

  Args:
    vocabulary: the model's output vocabulary.
    label_strings: `[C]` distinct label strings.

  Returns:
    int32 `[C, U]`, U the longest label's length plus one (EOS).

  Raises:
    ValueError: if `label_strings` is a bare string, empty, or has duplicates.
  """
  if isinstance(label_strings, (str, bytes)):
    raise ValueError(f'label_strings is the string {label_strings!r}; '
                     'expected a sequence of label strings.')
  labels = list(label_strings)
  if not labels:
    raise ValueError('label_strings is empty; expected at least one label.')
  if len(set(labels)) != len(labels):
    raise ValueError(f'label_strings {labels!r} has duplicates; expected '
                     'distinct labels.')
  eos = [] if vocabulary.eos_id is None else [vocabulary.eos_id]
  rows = [list(vocabulary.encode(s)) + eos for s in labels]
  ids = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
  for c, row in enumerate(rows):
    ids[c, :len(row)] = row
  return ids


def rank_classification_predict_fn(model: Any,
                                   label_strings: Sequence[str],
                                   *,
                                   batch_size: int = 32,
                                   mesh=None,
                                   rules=None,
                                   log_every: int = 0
                                  ) -> Callable[..., Any]:
  """Makes a predict function that picks the most likely label string.

  Every label string (tokenised with `model.output_vocabulary`, plus EOS) is
  scored against each example by `model.rank_classify`; the prediction is the
  argmax label's token ids, so the task's own postprocessor and metrics apply
  unchanged. Ties go to the label listed first.

  Args:
    model: an `EncoderDecoderModel` (anything with `rank_classify` and
      `output_vocabulary`).
    label_strings: `[C]` distinct label strings, e.g. ('negative',
      'positive').
    batch_size, mesh, rules, log_every: as for `make_predict_fn`.

  Returns:
    `predict_fn(dataset, params, *, prompt=None, description='rank',
    with_aux=False) -> [(index, label token ids [U])]` (padded with 0 to the
    longest label). With `with_aux` it returns seqio's predict-with-aux form,
    `(that list, {'scores': [[C log-likelihoods]]})`.

  Raises:
    ValueError: on bad label strings or batch size.
  """
  check_batch_size(batch_size, mesh)
  labels = label_token_ids(model.output_vocabulary, label_strings)

  def rank(params, batch, label_ids, prompt):
    # [B, T], [C, U] -> [B, C]
    return model.rank_classify(params, batch, label_ids, prompt=prompt)

  jitted = jit_on_mesh(rank, mesh, rules)

  def predict_fn(dataset: tf.data.Dataset, params: PyTree, *,
                 prompt: Optional[Array] = None, description: str = 'rank',
                 with_aux: bool = False):
    compute = lambda batch, i: jitted(params, batch, labels, prompt)
    indices, scores = run_batches(dataset, compute, batch_size, mesh=mesh,
                                  description=description,
                                  log_every=log_every)
    if scores is None:
      pairs, score_rows = [], []
    else:
      # [N, C] -> [N]; np.argmax keeps the first of equal scores.
      best = np.argmax(scores, axis=-1)
      pairs = [(int(i), labels[c].tolist()) for i, c in zip(indices, best)]
      score_rows = scores.astype(np.float64).tolist()
    if with_aux:
      return pairs, {'scores': score_rows}
    return pairs

  return predict_fn
