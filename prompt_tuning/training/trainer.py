"""Prompt-tuning trainer: frozen T5, trainable prompt (or any regex's params).

`train(...)` reads top to bottom: mesh, data, model and parameters, train step,
checkpoints, the loop. The step, the split of the parameter tree and the
checkpoint helpers are top-level functions that tests import. Nothing here
reads gin; `python -m prompt_tuning.train` configures `train` from gin files.

The trainable/frozen split is made once, by regexes over '/'-joined parameter
names (`PROMPT_REGEX` by default, `.*` for model tuning). The step takes the two
parts separately and differentiates the trainable part only, so frozen weights
get no gradients and no optimizer state, and are never written to disk.
"""
import dataclasses
import os
import re
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import numpy as np
import optax

from prompt_tuning.checkpoints import run_dir
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import models
from prompt_tuning.model import neighbours
from prompt_tuning.model import prompts
from prompt_tuning.training import partitioning
from prompt_tuning.training import run_record
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.training import train_state
from prompt_tuning.utils import trees

PyTree = Any

def adafactor(learning_rate: float = 0.3, decay_rate: float = 0.8,
              weight_decay_rate: float = 1e-5,
              multiply_by_parameter_scale: bool = False,
              clipping_threshold: Optional[float] = 1.0
              ) -> optax.GradientTransformation:
  """optax's Adafactor with the paper's prompt-tuning settings as defaults.

  NOTE: the paper (and its released configs): constant learning rate 0.3,
  second-moment decay 0.8, no parameter scaling, weight decay 1e-5.
  """
  return optax.adafactor(
      learning_rate=learning_rate, decay_rate=decay_rate,
      multiply_by_parameter_scale=multiply_by_parameter_scale,
      weight_decay_rate=weight_decay_rate,
      clipping_threshold=clipping_threshold)


# ----------------------------------------------------------------------------
# The trainable/frozen split.
# ----------------------------------------------------------------------------


def split_params(params: PyTree, trainable_regexes: Sequence[str]
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Splits a parameter tree into (trainable, frozen) nested dicts.

  A parameter is trainable if its '/'-joined name fully matches any regex.
  """
  patterns = [re.compile(r) for r in trainable_regexes]
  trainable, frozen = {}, {}
  for name, value in trees.flatten(params).items():
    (trainable if any(p.fullmatch(name) for p in patterns) else frozen)[
        name] = value
  return trees.unflatten(trainable), trees.unflatten(frozen)


def merge_params(trainable: PyTree, frozen: PyTree) -> Dict[str, Any]:
  """The inverse of `split_params`."""
  return trees.unflatten({**trees.flatten(frozen), **trees.flatten(trainable)})


FROZEN_DTYPES = ('float32', 'bfloat16')


def cast_frozen(frozen: PyTree, frozen_dtype: Optional[str]) -> PyTree:
  """The frozen parameters stored in `frozen_dtype` (None: unchanged).

  NOTE: the model casts every parameter to its activation dtype where it is
  used, so frozen weights kept in bfloat16 halve their memory and change the
  computation only by rounding the weights (with float32 activations, the
  matmuls still run in float32). The paper keeps them in float32, the default.
  Trainable parameters and the optimizer state stay float32.

  Raises:
    ValueError: `frozen_dtype` is not one of `FROZEN_DTYPES`.
  """
  if frozen_dtype is None:
    return frozen
  if frozen_dtype not in FROZEN_DTYPES:
    raise ValueError(f'FROZEN_DTYPE is {frozen_dtype!r}; expected one of '
                     f'{list(FROZEN_DTYPES)}')
  dtype = np.dtype(jax.numpy.dtype(frozen_dtype))
  return jax.tree_util.tree_map(
      lambda x: x if x.dtype == dtype else x.astype(dtype), frozen)


def count_params(tree: PyTree) -> Tuple[int, int]:
  """(number of values, bytes) over the leaves."""
  leaves = jax.tree_util.tree_leaves(tree)
  return (sum(int(np.prod(x.shape)) for x in leaves),
          sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
              for x in leaves))


# ----------------------------------------------------------------------------
# The train step.
# ----------------------------------------------------------------------------


def train_step(model: models.EncoderDecoderModel,
               optimizer: optax.GradientTransformation,
               trainable: PyTree, frozen: PyTree, opt_state: PyTree,
               batch: Mapping[str, jax.Array], dropout_rng: Optional[jax.Array]
               ) -> Tuple[PyTree, PyTree, Dict[str, jax.Array]]:
  """One optimizer step on the trainable parameters.

  Gradients are taken with respect to `trainable` only: `frozen` enters the
  loss as a constant, so no weight gradient is computed for it.
  """

  def loss_fn(trainable_params):
    return model.loss_fn(merge_params(trainable_params, frozen), batch,
                         dropout_rng)

  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
  updates, opt_state = optimizer.update(grads, opt_state, trainable)
  trainable = optax.apply_updates(trainable, updates)
  metrics['grad_norm'] = optax.tree.norm(grads)
  return trainable, opt_state, metrics


# jax's PRNG implementations the dropout keys may use (`dropout_rng_impl`).
DROPOUT_RNG_IMPLS = ('threefry2x32', 'rbg', 'unsafe_rbg')


def dropout_root_key(seed: int, impl: str = 'threefry2x32') -> jax.Array:
  """The run's dropout root key; step keys are `fold_in(root, step)`.

  'threefry2x32' (jax's default) gives the raw key the trainer always used;
  'rbg' and 'unsafe_rbg' give typed keys of that implementation (t5x's
  `use_hardware_rng` idea): cheaper masks, other bits.
  """
  if impl not in DROPOUT_RNG_IMPLS:
    raise ValueError(f'dropout_rng_impl is {impl!r}; expected one of '
                     f'{list(DROPOUT_RNG_IMPLS)}')
  if impl == 'threefry2x32':
    return jax.random.split(jax.random.PRNGKey(seed))[1]
  return jax.random.split(jax.random.key(seed, impl=impl))[1]


class TraceCounter:
  """Counts calls; given to a function jit traces, it counts compilations.

  jit traces a Python function once per new specialisation (shapes, dtypes,
  static arguments) and compiles what it traced, so the count of traces is
  the count of compilations of that function.
  """

  def __init__(self):
    self.count = 0

  def __call__(self) -> None:
    self.count += 1


def make_train_step(model: models.EncoderDecoderModel,
                    optimizer: optax.GradientTransformation, mesh: Any,
                    trainable_shardings: PyTree, frozen_shardings: PyTree,
                    dropout_root: Optional[jax.Array],
                    on_trace: Optional[Callable[[], None]] = None):
  """The jitted, sharded `train_step(trainable, frozen, opt_state, batch,
  step)`: batches split on the data axis, the optimizer state replicated,
  trainable parameters and optimizer state donated. Dropout keys are
  `fold_in(dropout_root, step)`; `dropout_root=None` turns dropout off.

  `on_trace`, if given, is called each time jit traces the step, i.e. each
  time it compiles it (a new shape or dtype): a run whose batches all have one
  shape traces once.
  """
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def step_fn(trainable, frozen, opt_state, batch, step):
    if on_trace is not None:
      on_trace()
    dropout_rng = (None if dropout_root is None
                   else jax.random.fold_in(dropout_root, step))
    return train_step(model, optimizer, trainable, frozen, opt_state, batch,
                      dropout_rng)

  return jax.jit(
      step_fn,
      in_shardings=(trainable_shardings, frozen_shardings, replicated,
                    partitioning.data_sharding(mesh), replicated),
      out_shardings=(trainable_shardings, replicated, replicated),
      donate_argnums=(0, 2))


# ----------------------------------------------------------------------------
# Data.
# ----------------------------------------------------------------------------


def train_dataset(mixture_or_task_name: str,
                  task_feature_lengths: Mapping[str, int],
                  global_batch_size: int, seed: int, shard_id: int = 0,
                  num_shards: int = 1, split: str = 'train'):
  """An endless, shuffled, batched tf.data pipeline of converted features.

  Every process reads the same global stream, batched by the global batch
  size, and keeps its own rows of each global batch: shard `i` of `n` gets
  rows `[i * B / n, (i + 1) * B / n)`, which `host_local_to_global` puts back
  in the same place. The global batch of every step is therefore the same
  whatever the number of processes: a run on N hosts trains on exactly the
  examples, in the order, of the same run on one host.

  NOTE: each process tokenizes the whole global batch and drops the other
  rows, i.e. n times the input work of seqio's per-host file sharding. For
  the paper's batch (32 short examples) that is small next to a T5 step.

  Args:
    mixture_or_task_name: registered seqio task or mixture.
    task_feature_lengths: e.g. {'inputs': 512, 'targets': 8}.
    global_batch_size: B, the examples of one step over all processes.
    seed: the shuffle seed (the same on every process).
    shard_id: this process's slice of the global batch, from
      `partitioning.process_data_shard`.
    num_shards: n, the number of distinct slices.
    split: the split to read.

  Returns:
    A `tf.data.Dataset` of dicts of `[B / n, length]` int32 features.

  Raises:
    ValueError: `global_batch_size` is not a multiple of `num_shards`, or
      `shard_id` is not in `[0, num_shards)`.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  if num_shards < 1 or global_batch_size % num_shards:
    raise ValueError(
        f'BATCH_SIZE {global_batch_size} does not split into {num_shards} '
        'equal per-process slices; expected a multiple of the number of '
        'data shards.')
  if not 0 <= shard_id < num_shards:
    raise ValueError(f'data shard {shard_id} is not in [0, {num_shards}).')
  task = task_utils.get_mixture_or_task(mixture_or_task_name)
  dataset = task.get_dataset(
      sequence_length=dict(task_feature_lengths), split=split, shuffle=True,
      seed=seed, num_epochs=None)
  dataset = seqio.EncDecFeatureConverter(pack=False)(
      dataset, dict(task_feature_lengths))
  dataset = dataset.batch(global_batch_size, drop_remainder=True)
  # With one shard the pipeline is unchanged, so its checkpoints still restore.
  if num_shards > 1:
    per_shard = global_batch_size // num_shards
    start = shard_id * per_shard
    dataset = dataset.map(lambda batch: tf.nest.map_structure(
        lambda x: x[start:start + per_shard], batch))
  return dataset.prefetch(2)


# ----------------------------------------------------------------------------
# Diagnostics.
# ----------------------------------------------------------------------------


def write_prompt_diagnostics(writer, step: int, trainable: PyTree,
                             frozen: PyTree, initial_prompt: np.ndarray,
                             vocabulary: Optional[Any],
                             class_labels: Optional[Sequence[str]],
                             with_neighbours: bool) -> None:
  """Prompt norm against the embeddings', drift from initialisation, and
  (with `with_neighbours`) the nearest vocabulary tokens as text."""
  current = {**trees.flatten(frozen), **trees.flatten(trainable)}
  embedding = current['token_embedder/embedding']
  writer.write_scalars(step, neighbours.prompt_diagnostics(
      current[prompts.PROMPT_PATH], initial_prompt, embedding))
  if with_neighbours and vocabulary is not None:
    writer.write_texts(step, {'prompt/nearest_neighbours':
                              neighbours.nearest_neighbour_text(
                                  current[prompts.PROMPT_PATH], embedding,
                                  vocabulary, k=5, class_labels=class_labels)})


# ----------------------------------------------------------------------------
# train()
# ----------------------------------------------------------------------------


def _evaluate_zero_shot(model: models.EncoderDecoderModel, params: PyTree,
                        eval_name: str, eval_kwargs: Mapping[str, Any]
                        ) -> Dict[str, Any]:
  """Evaluates `params` without the prompt, on a prompt-free `model`."""
  from prompt_tuning.training import evaluation  # pylint: disable=g-import-not-at-top
  if not model.module.prompt_length:
    raise ValueError('eval_zero_shot needs a model with a prompt; '
                     'prompt_length is 0')
  bare = dataclasses.replace(model, module=model.module.clone(prompt_length=0))
  without_prompt = trees.unflatten({name: value for name, value in trees.flatten(params).items()
                            if not re.fullmatch(prompts.PROMPT_REGEX, name)})
  evaluator = evaluation.Evaluator(bare, eval_name, **eval_kwargs)
  results = evaluator.evaluate(without_prompt, 0)
  for task, task_metrics in sorted(results.items()):
    logging.info('zero-shot (no prompt)  %s  %s', task, ', '.join(
        f'{k} {v:.2f}' for k, v in sorted(task_metrics.items())))
  return results


@dataclasses.dataclass
class TrainResult:
  """What a run ended with: its last step, trainable parameters, train
  metrics, every evaluation, and the best evaluated step."""
  step: int
  trainable: PyTree
  metrics: Dict[str, float]
  eval_history: list
  best_step: Optional[int] = None
  best_metrics: Optional[Dict[str, Any]] = None
  zero_shot_metrics: Optional[Dict[str, Any]] = None
  # Times jit traced (so compiled) the train step: 1 when every batch had
  # the same shapes; the recompilations after the first step are this - 1.
  step_compilations: int = 0
  # The run had already reached `train_steps` when this call started: nothing
  # was trained; `eval_history` and the best step are the recorded ones.
  finished_before: bool = False


def _recorded_evaluations(model_dir: str) -> list:
  """The evaluations MODEL_DIR/eval/metrics.jsonl holds, as
  `TrainResult.eval_history`: [{'step', 'metrics': {task: metrics}}] by step
  (the last record of a step and task wins: a resumed run may repeat one)."""
  path = run_dir.metrics_path(run_dir.eval_dir(model_dir))
  if not os.path.exists(path):
    return []
  from prompt_tuning.training import evaluation  # pylint: disable=g-import-not-at-top
  by_step = {}
  for record in evaluation.read_metrics_jsonl(path):
    by_step.setdefault(record['step'], {})[record['task']] = record['metrics']
  return [{'step': step, 'metrics': metrics}
          for step, metrics in sorted(by_step.items())]


def train(*,
          model: models.EncoderDecoderModel,
          mixture_or_task_name: str,
          task_feature_lengths: Mapping[str, int],
          batch_size: int,
          train_steps: int,
          model_dir: str,
          initial_checkpoint_path: Optional[str] = None,
          optimizer: Optional[optax.GradientTransformation] = None,
          trainable_regexes: Sequence[str] = (prompts.PROMPT_REGEX,),
          assignment_map: Sequence[Tuple[str, Optional[str]]] = (
              (prompts.PROMPT_REGEX, None),),
          mesh_config: partitioning.MeshConfig = partitioning.MeshConfig(),
          logical_axis_rules: Optional[partitioning.LogicalAxisRules] = None,
          seed: int = 0,
          use_dropout: bool = True,
          dropout_rng_impl: str = 'threefry2x32',
          log_period: int = 50,
          checkpoint_period: int = 1000,
          keep_checkpoints: int = 2,
          eval_period: int = 0,
          eval_mixture_or_task_name: Optional[str] = None,
          eval_split: str = 'validation',
          eval_mode: Optional[str] = 'decode',
          eval_batch_size: Optional[int] = None,
          eval_feature_lengths: Optional[Mapping[str, int]] = None,
          eval_num_examples: Optional[int] = None,
          decode_kwargs: Optional[Mapping[str, Any]] = None,
          class_labels: Optional[Sequence[str]] = None,
          eval_before_training: bool = False,
          selection_tasks: Optional[Sequence[str]] = None,
          vocabulary: Optional[Any] = None,
          export_t5x: bool = False,
          eval_zero_shot: bool = False,
          frozen_dtype: Optional[str] = None,
          run_command: Optional[Mapping[str, Any]] = None) -> TrainResult:
  """Trains the parameters matching `trainable_regexes`; returns the result.

  Args:
    model: the model (its module decides the prompt length and initialiser).
    mixture_or_task_name: registered seqio task or mixture.
    task_feature_lengths: e.g. {'inputs': 512, 'targets': 8}.
    batch_size: global batch size (paper: 32).
    train_steps: total steps (paper: 30,000); a resumed run stops there too.
    model_dir: where checkpoints, prompts, metrics and the config go.
    initial_checkpoint_path: t5x checkpoint with the frozen weights; None
      trains from scratch (pretraining).
    optimizer: default `adafactor()` (the paper's settings).
    trainable_regexes: which parameters train; `.*` is model tuning.
    assignment_map: t5x-style rules; `(regex, None)` marks parameters that
      are not in the initial checkpoint and are initialised (the prompt).
    mesh_config: device mesh (data x model).
    logical_axis_rules: default `partitioning.standard_logical_axis_rules()`.
    seed: data order, initialisation and dropout.
    use_dropout: dropout as configured in the model (paper: 0.1).
    dropout_rng_impl: the dropout keys' PRNG, of `DROPOUT_RNG_IMPLS`
      (`dropout_root_key`; docs/model.md says what each reproduces).
    log_period: steps between progress lines and train summaries.
    checkpoint_period: steps between train-state checkpoints and `.npy` saves.
    keep_checkpoints: train-state checkpoints kept (two or more: an
      unreadable latest one is moved aside and the one before it resumed).
    eval_period: steps between evaluations (0: only at the end).
    eval_mixture_or_task_name: what to validate on (default: the training
      task or mixture).
    eval_split: the validation split.
    eval_mode: 'decode' (generate, then the task's metrics), 'rank' (score
      each of `class_labels`, pick the best), or None (no evaluation).
    eval_batch_size: default `batch_size`.
    eval_feature_lengths: default `task_feature_lengths`.
    eval_num_examples: evaluate only the first this many examples per task.
    decode_kwargs: `EncoderDecoderModel.predict_batch` arguments for 'decode'.
    class_labels: the label strings for 'rank'.
    eval_before_training: also evaluate at step 0 (the untrained prompt).
    selection_tasks: the evaluated tasks whose metrics choose the best step
      (default: all). The paper selects on the in-domain validation set, so
      its transfer runs (Tables 1 and 2) name the training task here.
    vocabulary: for the prompt's nearest-neighbour tokens in TensorBoard
      (default: the model's output vocabulary).
    export_t5x: at the end, write all parameters as a t5x checkpoint
      `MODEL_DIR/checkpoint_STEP` (model tuning, pretraining).
    eval_zero_shot: before training, also evaluate the frozen model without
      its prompt (`TrainResult.zero_shot_metrics`; logged, not written to
      MODEL_DIR/eval, whose steps are the prompted model's). Needs
      `eval_mode` and a model with a prompt.
    frozen_dtype: None or 'float32' (the paper), or 'bfloat16': the frozen
      weights are kept in that dtype on the devices (`cast_frozen`), halving
      their memory. Trainable parameters stay float32.
    run_command: how the run was configured ({'gin_files',
      'gin_search_paths', 'gin_bindings'}), kept in the run record
      (`run_record`) so that follow-up commands can rebuild it.
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  optimizer = optimizer or adafactor()
  # First: a bad dropout_rng_impl fails before anything is written.
  dropout_root = dropout_root_key(seed, dropout_rng_impl)
  vocabulary = vocabulary or model.output_vocabulary
  os.makedirs(model_dir, exist_ok=True)
  is_chief = jax.process_index() == 0
  # The run record first: follow-up commands find a run by it.
  record = run_record.new_record(
      model=model, initial_checkpoint_path=initial_checkpoint_path,
      mixture_or_task_name=mixture_or_task_name,
      task_feature_lengths=task_feature_lengths, batch_size=batch_size,
      train_steps=train_steps, trainable_regexes=trainable_regexes,
      evaluation=dict(
          mixture_or_task_name=eval_mixture_or_task_name, split=eval_split,
          mode=eval_mode, batch_size=eval_batch_size,
          feature_lengths=eval_feature_lengths,
          num_examples=eval_num_examples, class_labels=class_labels),
      command=run_command)
  if is_chief:
    record = run_record.start(model_dir, record)
  # TensorBoard only: the progress line below carries the same numbers.
  writer = (metric_writers.AsyncWriter(metric_writers.SummaryWriter(
      run_dir.train_summary_dir(model_dir))) if is_chief
            else metric_writers.MultiWriter([]))

  # --------------------------------------- Mesh, model and parameters.
  setup = setup_lib.setup_model(model, initial_checkpoint_path,
                                assignment_map, seed, mesh_config,
                                logical_axis_rules)
  mesh, rules = setup.mesh, setup.rules
  # Raises, naming both numbers, unless the batch splits over the data axis.
  partitioning.global_batch_size_check(batch_size, mesh)
  logging.info('%s', partitioning.describe(mesh, rules))
  trainable, frozen = split_params(setup.params, trainable_regexes)
  frozen = cast_frozen(frozen, frozen_dtype)
  # On the host before the first step donates it: diagnostics measure drift.
  initial_prompt = trees.flatten(trainable).get(prompts.PROMPT_PATH)
  if initial_prompt is not None:
    initial_prompt = jax.device_get(initial_prompt)
  if not trees.flatten(trainable):
    raise ValueError(f'trainable_regexes {list(trainable_regexes)} match no '
                     'parameter; names look like '
                     f'{sorted(trees.flatten(setup.params))[:3]}')
  trainable_shardings, frozen_shardings = split_params(
      partitioning.unbox(setup.shardings), trainable_regexes)
  del setup
  n_train, b_train = count_params(trainable)
  n_frozen, b_frozen = count_params(frozen)
  logging.info('trainable: %s values (%s bytes) in %d arrays: %s',
               f'{n_train:,}', f'{b_train:,}', len(trees.flatten(trainable)),
               sorted(trees.flatten(trainable))[:8])
  logging.info('frozen: %s values (%s bytes)', f'{n_frozen:,}',
               f'{b_frozen:,}')

  # -------------------------------------------------------------- Data.
  shard_id, num_shards = partitioning.process_data_shard(mesh)
  # Every process reads the global stream and keeps its rows of each batch.
  dataset = train_dataset(mixture_or_task_name, task_feature_lengths,
                          batch_size, seed, shard_id, num_shards)
  data_iterator = iter(dataset)
  data_checkpoint = tf.train.Checkpoint(iterator=data_iterator)


  # The optimizer state exists for the trainable part only.
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_state = jax.jit(optimizer.init, out_shardings=replicated)(trainable)

  # ---------------------------------------------------------- Step.
  # Counts the step's compilations: every batch has the task's fixed feature
  # lengths, so there must be one, at the first step.
  compilations = TraceCounter()
  jitted_step = make_train_step(model, optimizer, mesh, trainable_shardings,
                                frozen_shardings,
                                dropout_root if use_dropout else None,
                                on_trace=compilations)

  # ------------------------------------------------------ Evaluation.
  eval_history = []
  evaluator = tracker = None
  if eval_mode is not None:
    from prompt_tuning.training import evaluation  # pylint: disable=g-import-not-at-top
    eval_name = eval_mixture_or_task_name or mixture_or_task_name
    eval_kwargs = dict(
        split=eval_split,
        feature_lengths=eval_feature_lengths or task_feature_lengths,
        batch_size=eval_batch_size or batch_size, mode=eval_mode,
        decode_kwargs=decode_kwargs, label_strings=class_labels,
        num_examples=eval_num_examples, mesh=mesh, rules=rules)
    evaluator = evaluation.Evaluator(model, eval_name, model_dir=model_dir,
                                     **eval_kwargs)
    tracker = evaluation.BestCheckpointTracker(model_dir)
    unknown = set(selection_tasks or ()) - set(evaluator.task_names)
    if unknown:
      raise ValueError(f'selection_tasks {sorted(unknown)} are not evaluated; '
                       f'the evaluated tasks are {evaluator.task_names}')

  def evaluate(step):
    params = merge_params(trainable, frozen)
    results = evaluator.evaluate(params, step)
    prompt = trees.flatten(trainable).get(prompts.PROMPT_PATH)
    selected = {task: task_metrics for task, task_metrics in results.items()
                if not selection_tasks or task in selection_tasks}
    tracker.update(step, selected,
                   None if prompt is None else jax.device_get(prompt))
    if is_chief:
      run_record.update(model_dir, record, best_step=tracker.best_step,
                        best_metrics=tracker.best_metrics)
    for task, task_metrics in sorted(results.items()):
      logging.info('eval step %d  %s  %s', step, task, ', '.join(
          f'{k} {v:.2f}' for k, v in sorted(task_metrics.items())))
    return results

  # ---------------------------------------------- Resume if possible.
  checkpointer = train_state.TrainStateCheckpointer(model_dir,
                                                    keep_checkpoints)
  step = 0
  state = checkpointer.restore_latest(
      {'step': 0, 'trainable': trainable, 'opt_state': opt_state},
      data_checkpoint)
  if state is not None:
    step = int(state['step'])
    trainable, opt_state = state['trainable'], state['opt_state']
    logging.info('resumed from the train state of step %d', step)
  del state
  finished_before = step >= train_steps

  def save(step):
    checkpointer.save(step, {'step': step, 'trainable': trainable,
                             'opt_state': opt_state}, data_checkpoint)
    if is_chief:
      train_state.save_numpy_params(jax.device_get(trainable), model_dir,
                                    step)
      run_record.update(model_dir, record, step=step)

  # From here the first SIGINT or SIGTERM stops training after the current
  # step or evaluation, with the state saved; `finally` closes the writer,
  # checkpointer and evaluator whatever ends the run.
  stop = train_state.StopSignals().__enter__()
  try:
    zero_shot_metrics = None
    if eval_zero_shot and step == 0 and stop.signum is None:
      if evaluator is None:
        raise ValueError('eval_zero_shot needs an evaluation; eval_mode is '
                         'None')
      zero_shot_metrics = _evaluate_zero_shot(
          model, merge_params(trainable, frozen), eval_name, eval_kwargs)

    if (evaluator is not None and eval_before_training and step == 0
        and stop.signum is None):
      eval_history.append({'step': 0, 'metrics': evaluate(0)})

    # -------------------------------------------------------- Loop.
    last = {}
    window_start, window_steps = time.time(), 0
    pending = []  # device metrics not yet fetched (no host sync per step)
    if not finished_before:
      logging.info('training from step %d to %d', step, train_steps)
    while step < train_steps and stop.signum is None:
      local = jax.tree_util.tree_map(lambda t: t._numpy(), next(data_iterator))  # pylint: disable=protected-access
      batch = partitioning.host_local_to_global(local, mesh)
      with partitioning.mesh_context(mesh, rules):
        trainable, opt_state, metrics = jitted_step(trainable, frozen,
                                                    opt_state, batch,
                                                    np.int32(step))
      step += 1
      window_steps += 1
      pending.append(metrics)
      boundary = (step % log_period == 0 or step == train_steps
                  or step % checkpoint_period == 0
                  or (eval_period and step % eval_period == 0))
      if not boundary:
        continue
      fetched = jax.device_get(pending)
      pending = []
      loss = np.array([m['loss'] for m in fetched])
      if not np.all(np.isfinite(loss)):
        bad = step - len(fetched) + int(np.argmin(np.isfinite(loss)))
        raise FloatingPointError(
            f'non-finite loss at step {bad + 1} (steps '
            f'{step - len(fetched) + 1}..{step}); the last good checkpoint '
            f'is kept in {model_dir}')
      tokens = sum(float(m['num_tokens']) for m in fetched)
      last = {'loss_per_token': float(loss.sum()) / max(tokens, 1.0),
              'accuracy': float(np.mean([m['accuracy'] for m in fetched])),
              'z_loss_per_token': sum(float(m['z_loss']) for m in fetched)
                                  / max(tokens, 1.0),
              'grad_norm': float(fetched[-1]['grad_norm'])}
      elapsed = time.time() - window_start
      rate = window_steps / max(elapsed, 1e-9)
      if step % log_period == 0 or step == train_steps:
        writer.write_scalars(step, {**last, 'steps_per_sec': rate})
        if initial_prompt is not None:
          write_prompt_diagnostics(
              writer, step, trainable, frozen, initial_prompt, vocabulary,
              class_labels, with_neighbours=step % checkpoint_period == 0
              or step == train_steps)
        eta = (train_steps - step) / max(rate, 1e-9)
        logging.info('step %d/%d  loss/token %.4f  token acc %.3f  '
                     '%.2f steps/s  ETA %s', step, train_steps,
                     last['loss_per_token'], last['accuracy'], rate,
                     time.strftime('%H:%M:%S', time.gmtime(eta)))
      if step % checkpoint_period == 0 or step == train_steps:
        save(step)
      if evaluator is not None and (
          step == train_steps or (eval_period and step % eval_period == 0)):
        eval_history.append({'step': step, 'metrics': evaluate(step)})
        writer.flush()
      window_start, window_steps = time.time(), 0

    if stop.signum is not None:
      if checkpointer.latest_step() != step:
        save(step)
      raise train_state.Interrupted(step, stop.signum)

    if compilations.count:
      logging.info('train step compiled %d time(s); %d recompilation(s) '
                   'after the first step', compilations.count,
                   max(compilations.count - 1, 0))
    if compilations.count > 1:
      logging.warning('the train step was recompiled %d time(s): batches of '
                      'more than one shape', compilations.count - 1)
    if export_t5x and is_chief:
      export_dir = run_dir.t5x_checkpoint_dir(model_dir, step)
      t5x.save_t5x(jax.device_get(merge_params(trainable, frozen)),
                   export_dir, step=step, overwrite=True)
      logging.info('wrote t5x checkpoint %s', export_dir)
  finally:
    stop.__exit__()
    checkpointer.close()
    if evaluator is not None:
      evaluator.close()
    writer.close()
  if finished_before:
    eval_history = _recorded_evaluations(model_dir)
  return TrainResult(step=step, trainable=jax.device_get(trainable),
                     metrics=last, eval_history=eval_history,
                     best_step=tracker.best_step if tracker else None,
                     best_metrics=tracker.best_metrics if tracker else None,
                     zero_shot_metrics=zero_shot_metrics,
                     step_compilations=compilations.count,
                     finished_before=finished_before)
