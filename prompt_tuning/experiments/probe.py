"""Linear probes of a frozen encoder (`python -m prompt_tuning.probe`).

What can a classifier read off a frozen model's encoder states, with no
training of the model? The probe encodes every example of a task once,
pools each example's states into one vector (the mean over its input
positions, next to the state at its last position, the EOS), and fits a
logistic regression from those vectors to the target strings on the
training split; its accuracy on the validation split is the score. The same
architecture with random weights is the control: what the probe reads from
the input tokens alone, through an untrained network.

A prompt reads the frozen model through its cross-attention, not through a
pooled vector, so the probe is a diagnostic of the model, not a bound on
prompt tuning: it tells a task the frozen encoder represents in a readable
form from one it does not.
"""
import dataclasses
import functools
import os
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import seqio
from sklearn import linear_model
from sklearn import pipeline
from sklearn import preprocessing

from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import t5
from prompt_tuning.training import run_record
from prompt_tuning.training import train_state
from prompt_tuning.utils import files
from prompt_tuning.utils import tables

BATCH_SIZE = 64
# What seqio keeps of an input (it trims longer ones, as training's feature
# lengths would); arrays are then cut to the longest input that occurs.
DEFAULT_INPUT_LENGTH = 1024


@dataclasses.dataclass(frozen=True)
class Examples:
  """One split of a task: `tokens` [N, T] int32 (0 pads), `labels` [N]."""
  tokens: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class ProbeScore:
  """A probe's accuracies (fractions) on the training and validation split."""
  train_accuracy: float
  validation_accuracy: float


@dataclasses.dataclass(frozen=True)
class ProbeRow:
  """One model and task: the probe on it (`score`) and on the same
  architecture with random weights (`control`)."""
  model: str
  task: str
  train_examples: int
  validation_examples: int
  classes: int
  majority: float
  score: ProbeScore
  control: Optional[ProbeScore]
  seconds: float


@dataclasses.dataclass(frozen=True)
class Model:
  """A model to probe: float32 weights, their config, and the run they come
  from (`run_dir` and its `record`), if any."""
  name: str
  params: Any
  config: t5.T5Config
  run_dir: Optional[str] = None
  record: Optional[Mapping[str, Any]] = None


def load_model(checkpoint: str, name: Optional[str] = None,
               relative_attention_max_distance: Optional[int] = None
               ) -> Model:
  """A model's weights and the config read off them.

  `checkpoint` is a t5x checkpoint, or a numpy checkpoint of a run that
  trained every weight (a model-tuning run's
  `MODEL_DIR/numpy_checkpoints/checkpoint_STEP`). A run's own record
  (`run.json`) then gives what the weights do not: the relative-attention
  distance, and the vocabulary that `check_vocabulary` holds tasks to.

  Raises:
    ValueError: a numpy checkpoint without the whole model (a prompt-tuning
      run's holds only its prompt), or a `relative_attention_max_distance`
      that is not its run's.
  """
  names = (files.listdir(checkpoint) if files.isdir(checkpoint) else [])
  weights = [n for n in names if n.endswith('.npy')]
  params = (train_state.load_numpy_params(checkpoint) if weights else
            t5x.load_t5x(checkpoint))
  missing = [part for part in ('token_embedder', 'encoder', 'decoder')
             if part not in params]
  if missing:
    raise ValueError(
        f'{checkpoint} has no {", ".join(missing)} weights (only '
        f'{sorted(params)}): the probe needs the whole model, a t5x '
        "checkpoint or a model-tuning run's numpy checkpoint")
  model_dir = (run_record.run_of_file(os.path.join(checkpoint, weights[0]))
               if weights else None)
  record = run_record.read(model_dir) if model_dir else None
  distance = relative_attention_max_distance
  if record:
    recorded = record['model']['config']['relative_attention_max_distance']
    if distance is not None and distance != recorded:
      raise ValueError(
          f'relative_attention_max_distance {distance} is not that of the run '
          f'in {model_dir}, {recorded}')
    distance = recorded
  params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32),
                                  params)
  config = t5.config_from_params(
      params, dropout_rate=0.0, relative_attention_max_distance=distance)
  return Model(name or checkpoint, params, config, model_dir, record)


def check_vocabulary(model: Model, task_name: str) -> None:
  """The task's tokens fit the model's embedding table, and its vocabulary
  is the run's where the model comes from a run.

  Raises:
    ValueError: naming the task's vocabulary and the model's.
  """
  vocabulary = seqio.get_mixture_or_task(
      task_name).output_features['inputs'].vocabulary
  rows = model.params['token_embedder']['embedding'].shape[0]
  if vocabulary.vocab_size > rows:
    raise ValueError(
        f'task {task_name} uses a vocabulary of {vocabulary.vocab_size:,} '
        f'tokens but the model {model.name} embeds {rows:,}: they were not '
        'made for each other')
  if model.record:
    run_record.check_vocabulary(model.record, vocabulary, model.run_dir)


@functools.lru_cache(maxsize=None)
def load_examples(task_name: str, split: str,
                  input_length: int = DEFAULT_INPUT_LENGTH,
                  limit: Optional[int] = None) -> Examples:
  """The first `limit` examples (all when None) of a task's split, unshuffled.

  Labels are the targets' text (`targets_pretokenized`), as scored. Cached:
  probing several models on one task reads its splits once.

  Raises:
    ValueError: the split has no examples.
  """
  task = seqio.get_mixture_or_task(task_name)
  dataset = task.get_dataset(
      sequence_length={'inputs': input_length, 'targets': 64}, split=split,
      shuffle=False)
  rows, labels = [], []
  # Read to the end, then cut: a cached dataset read only in part is
  # discarded (with a warning) by TensorFlow; the splits here are small.
  for example in dataset.as_numpy_iterator():
    rows.append(example['inputs'])
    target = example.get('targets_pretokenized')
    labels.append(target.decode() if target is not None else
                  task.output_features['targets'].vocabulary.decode(
                      example['targets'].tolist()))
  rows, labels = rows[:limit], labels[:limit]
  if not rows:
    raise ValueError(f'task {task_name} has no {split} examples')
  tokens = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
  return Examples(tokens, np.array(labels))


def pad_to(tokens: np.ndarray, length: int) -> np.ndarray:
  """`tokens` [N, T] with zero columns added up to `length`."""
  return np.pad(tokens, ((0, 0), (0, length - tokens.shape[1])))


def make_encoder(config: t5.T5Config) -> Callable[[Any, np.ndarray],
                                                  np.ndarray]:
  """A jitted function (params, tokens [B, T]) -> pooled features [B, 2H].

  The features are the mean of the encoder's output over the input's
  non-padding positions, then the output at the last of them.
  """
  model = t5.Transformer(config)

  def features(params, tokens):
    encoded = model.apply({'params': params}, tokens, method=model.encode)
    valid = (tokens > 0)[..., None].astype(encoded.dtype)
    mean = (encoded * valid).sum(1) / jnp.maximum(valid.sum(1), 1)
    last = jnp.maximum(valid[..., 0].sum(1).astype(jnp.int32) - 1, 0)
    return jnp.concatenate(
        [mean, encoded[jnp.arange(tokens.shape[0]), last]], -1)

  return jax.jit(features)


def encoder_features(encoder: Callable[[Any, np.ndarray], np.ndarray],
                     params: Any, tokens: np.ndarray,
                     batch_size: int = BATCH_SIZE) -> np.ndarray:
  """Pooled features [N, 2H] of `tokens` [N, T], in batches of one shape
  (the last batch is padded with empty rows, so nothing recompiles)."""
  out = []
  for start in range(0, len(tokens), batch_size):
    batch = tokens[start:start + batch_size]
    rows = len(batch)
    if rows < batch_size:
      batch = np.concatenate(
          [batch, np.zeros((batch_size - rows, batch.shape[1]), batch.dtype)])
    out.append(np.asarray(encoder(params, batch), np.float64)[:rows])
  return np.concatenate(out)


def fit_probe(train_features: np.ndarray, train_labels: np.ndarray,
              validation_features: np.ndarray,
              validation_labels: np.ndarray) -> ProbeScore:
  """Logistic regression on standardised features (scikit-learn's, L2,
  C=1); its accuracy on both splits."""
  probe = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(C=1.0, max_iter=5000))
  probe.fit(train_features, train_labels)
  return ProbeScore(
      float(probe.score(train_features, train_labels)),
      float(probe.score(validation_features, validation_labels)))


def random_params(config: t5.T5Config, seed: int) -> Any:
  """Freshly initialised weights of the architecture (the control)."""
  tokens = np.ones((1, 2), np.int32)
  return flax.core.meta.unbox(t5.Transformer(config).init(
      jax.random.PRNGKey(seed), tokens, tokens)['params'])


def majority_fraction(labels: np.ndarray) -> float:
  """The share of the most frequent label: the score of always guessing it."""
  _, counts = np.unique(labels, return_counts=True)
  return float(counts.max() / len(labels))


def probe_task(model: Model, task_name: str, *,
               train_limit: Optional[int] = None,
               validation_limit: Optional[int] = None,
               input_length: int = DEFAULT_INPUT_LENGTH,
               control_seed: Optional[int] = 0) -> ProbeRow:
  """Probes one model on one task, and the control unless `control_seed`
  is None.

  Raises:
    ValueError: a task whose vocabulary the model does not embed, or an
      empty split.
  """
  check_vocabulary(model, task_name)
  start = time.time()
  train = load_examples(task_name, 'train', input_length, train_limit)
  validation = load_examples(task_name, 'validation', input_length,
                             validation_limit)
  length = max(train.tokens.shape[1], validation.tokens.shape[1])
  train_tokens = pad_to(train.tokens, length)
  validation_tokens = pad_to(validation.tokens, length)
  encoder = make_encoder(model.config)

  def probe_with(weights):
    return fit_probe(encoder_features(encoder, weights, train_tokens),
                     train.labels,
                     encoder_features(encoder, weights, validation_tokens),
                     validation.labels)

  control = (None if control_seed is None else
             probe_with(random_params(model.config, control_seed)))
  return ProbeRow(
      model=model.name, task=task_name, train_examples=len(train.labels),
      validation_examples=len(validation.labels),
      classes=len(np.unique(train.labels)),
      majority=majority_fraction(validation.labels),
      score=probe_with(model.params),
      control=control, seconds=time.time() - start)


HEADER = ('model', 'task', 'train / validation examples', 'classes',
          'majority', 'probe', 'probe on random weights',
          'probe, training accuracy')


def format_rows(rows: Sequence[ProbeRow]) -> str:
  """A Markdown table of probe rows; accuracies in percent."""

  def pct(value: float) -> str:
    return f'{100 * value:.2f}'

  cells: List[Tuple[str, ...]] = []
  for row in rows:
    cells.append((
        row.model, row.task,
        f'{row.train_examples:,} / {row.validation_examples:,}',
        str(row.classes), pct(row.majority),
        pct(row.score.validation_accuracy),
        pct(row.control.validation_accuracy) if row.control else 'n/a',
        pct(row.score.train_accuracy)))
  return tables.markdown_table(HEADER, cells, align='llrrrrrr')


def row_record(row: ProbeRow) -> dict:
  """A probe row as JSON-ready data."""
  return dataclasses.asdict(row)
