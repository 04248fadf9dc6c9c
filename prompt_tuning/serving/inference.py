"""Evaluate, infer and serve with a frozen model and prompts: what the
`eval`, `infer` and `serve` entry points configure through gin.

`evaluate` scores a model (with, e.g., a prompt from `PROMPT_FILE`) on a task's
split with the task's metrics; `infer` writes one JSON line per input, either
the decoded prediction ('predict') or the targets' log-likelihood ('score').
`serve` does the same for several tasks at once: a bank of prompts `[K, P, H]`
(one per task) and mixed batches whose examples carry their task's row of the
bank as `prompt_ids`, so one pass over the frozen model serves every task.

The three share `RunOptions`: the frozen model, where its parameters come from,
the mesh, and how a task's inputs are read, batched and decoded. Each entry
keeps its own keyword arguments (gin binds them, e.g.
`inference.evaluate.mesh_config`) and builds the options once.

Letters: K tasks (rows of the bank), P prompt length, H embedding size.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import jax
import numpy as np

from prompt_tuning.checkpoints import prompt_files as prompt_io
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.serving import inputs as inputs_lib
from prompt_tuning.training import evaluation
from prompt_tuning.training import partitioning
from prompt_tuning.training import predict
from prompt_tuning.training import run_record
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.utils import files


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """What evaluation, inference, serving and ensembles share.

  Attributes:
    model: the frozen model.
    initial_checkpoint_path: its t5x checkpoint (None: freshly initialised).
    feature_lengths: e.g. {'inputs': 512, 'targets': 8}.
    split: the split to read, e.g. 'validation'.
    batch_size: rows (examples) of every batch.
    decode_kwargs: `EncoderDecoderModel.predict_batch` settings.
    num_examples: read only the first this many examples of each task.
    assignment_map: t5x-style rules; `(regex, None)` marks parameters that
      are not in the checkpoint and are initialised (the prompt).
    mesh_config: the device mesh (data x model).
    seed: the initialisation seed.
  """
  model: models.EncoderDecoderModel
  initial_checkpoint_path: Optional[str]
  feature_lengths: Mapping[str, int]
  split: str = 'validation'
  batch_size: int = 32
  decode_kwargs: Optional[Mapping[str, Any]] = None
  num_examples: Optional[int] = None
  assignment_map: Sequence[Tuple[str, Optional[str]]] = (
      (prompts.PROMPT_REGEX, None),)
  mesh_config: partitioning.MeshConfig = partitioning.MeshConfig()
  seed: int = 0

  def setup_model(self) -> setup_lib.ModelSetup:
    """The mesh and the model's parameters laid out on it.

    Raises:
      RunMismatchError: the model's prompt file belongs to a run whose
        model (checkpoint, vocabulary, architecture, method) is not this one.
    """
    prompt_file = run_record.prompt_file_of(self.model)
    if prompt_file is not None:
      run_record.check_pairing(prompt_file, self.model,
                               self.initial_checkpoint_path)
    return setup_lib.setup_model(self.model, self.initial_checkpoint_path,
                                 self.assignment_map, self.seed,
                                 self.mesh_config)

  def task_examples(self, task):
    """`task_examples` of `task` with these options' split, lengths and
    number of examples."""
    return task_examples(task, self.split, self.feature_lengths,
                         self.num_examples)

  def predict_fn(self, setup: setup_lib.ModelSetup):
    """`predict.make_predict_fn` with these options, on `setup`'s mesh."""
    return predict.make_predict_fn(
        self.model, self.decode_kwargs, batch_size=self.batch_size,
        mesh=setup.mesh, rules=setup.rules)

  def score_fn(self, setup: setup_lib.ModelSetup):
    """`predict.make_score_fn` with these options, on `setup`'s mesh."""
    return predict.make_score_fn(self.model, batch_size=self.batch_size,
                                 mesh=setup.mesh, rules=setup.rules)


def evaluate(*,
             model: models.EncoderDecoderModel,
             initial_checkpoint_path: Optional[str],
             mixture_or_task_name: str,
             feature_lengths: Mapping[str, int],
             output_dir: str,
             split: str = 'validation',
             batch_size: int = 32,
             mode: str = 'decode',
             decode_kwargs: Optional[Mapping[str, Any]] = None,
             class_labels: Optional[Sequence[str]] = None,
             num_examples: Optional[int] = None,
             step: int = 0,
             assignment_map: Sequence[Tuple[str, Optional[str]]] = (
                 (prompts.PROMPT_REGEX, None),),
             mesh_config: partitioning.MeshConfig = partitioning.MeshConfig(),
             seed: int = 0) -> Dict[str, Dict[str, float]]:
  """Evaluates the model on every task of `mixture_or_task_name`.

  The prompt is whatever the model's `prompt_init` makes: with
  `prompts/from_file.gin`, the saved `PROMPT_FILE`. Metrics are written to
  `output_dir` (TensorBoard and metrics.jsonl) and returned.
  """
  options = RunOptions(
      model=model, initial_checkpoint_path=initial_checkpoint_path,
      feature_lengths=feature_lengths, split=split, batch_size=batch_size,
      decode_kwargs=decode_kwargs, num_examples=num_examples,
      assignment_map=assignment_map, mesh_config=mesh_config, seed=seed)
  return _evaluate(options, mixture_or_task_name, output_dir, mode=mode,
                   class_labels=class_labels, step=step)


def _evaluate(options: RunOptions, mixture_or_task_name: str,
              output_dir: str, *, mode: str,
              class_labels: Optional[Sequence[str]],
              step: int) -> Dict[str, Dict[str, float]]:
  """`evaluate` with its shared arguments in `options`."""
  setup = options.setup_model()
  results = evaluation.evaluate(
      options.model, setup.params, mixture_or_task_name, split=options.split,
      feature_lengths=options.feature_lengths, batch_size=options.batch_size,
      mode=mode, step=step, decode_kwargs=options.decode_kwargs,
      label_strings=class_labels, eval_dir=output_dir,
      num_examples=options.num_examples, mesh=setup.mesh, rules=setup.rules)
  for task, metrics in sorted(results.items()):
    logging.info('%s (%s): %s', task, options.split, metrics)
  return results


def task_examples(task, split: str, feature_lengths: Mapping[str, int],
                  num_examples: Optional[int] = None):
  """A task's split, unshuffled, as examples and as model features.

  Args:
    task: a seqio Task.
    split: e.g. 'validation'.
    feature_lengths: e.g. {'inputs': 512, 'targets': 8}.
    num_examples: only the first this many examples (None: all).

  Returns:
    `(examples, indexed)`: the preprocessed examples as numpy dicts (with
    `inputs_pretokenized` / `targets_pretokenized` where the task keeps them),
    in order; and a tf.data dataset of `(index, features)`, the features of
    `seqio.EncDecFeatureConverter(pack=False)` for the same examples.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dataset = task.get_dataset(sequence_length=dict(feature_lengths),
                             split=split, shuffle=False, num_epochs=1)
  if num_examples is not None:
    dataset = dataset.take(num_examples)
  examples = list(dataset.as_numpy_iterator())
  converted = seqio.EncDecFeatureConverter(pack=False)(
      dataset, dict(feature_lengths))
  indexed = tf.data.Dataset.zip((tf.data.Dataset.range(len(examples)),
                                 converted))
  return examples, indexed


def example_texts(example: Mapping[str, Any]) -> Tuple[str, str]:
  """(inputs, targets) text of a preprocessed example ('' where absent)."""
  return (example.get('inputs_pretokenized', b'').decode(),
          example.get('targets_pretokenized', b'').decode())


def load_prompt_bank(prompt_files: Sequence[str],
                     flag: str = 'prompt_files') -> np.ndarray:
  """Stacks `.npy` prompts `[P, H]` into a bank `[N, P, H]`, in order.

  Args:
    prompt_files: N paths, each holding one prompt `[P, H]`.
    flag: the name reported in errors (the flag or gin macro at fault).

  Returns:
    float32 `[N, P, H]`.

  Raises:
    ValueError: no files, a bare string, a file not `[P, H]`, or files of
      different shapes (naming the file and both shapes).
    FileNotFoundError: a file does not exist.
  """
  if isinstance(prompt_files, (str, bytes)):
    raise ValueError(f'{flag} is the string {prompt_files!r}; expected a list '
                     'of .npy prompt files.')
  files = [os.fspath(f) for f in prompt_files]
  if not files:
    raise ValueError(f'{flag} is empty; expected at least one .npy prompt '
                     'file.')
  bank = []
  for path in files:
    prompt = prompt_io.load_prompt(path)
    if prompt.ndim != 2:
      raise ValueError(f'prompt file {path} (in {flag}) holds shape '
                       f'{prompt.shape}; expected one prompt [P, H].')
    if bank and prompt.shape != bank[0].shape:
      raise ValueError(
          f'prompt file {path} (in {flag}) holds shape {prompt.shape} but '
          f'{files[0]} holds {bank[0].shape}; a bank needs prompts of one '
          'shape [P, H].')
    bank.append(prompt.astype(np.float32))
  return np.stack(bank)  # [N, P, H]


def _write_jsonl(records: Sequence[Mapping[str, Any]], output_file: str) -> None:
  """JSON lines, written to a temporary sibling and renamed (process 0)."""
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
  files.atomic_write_bytes(
      output_file,
      ''.join(json.dumps(record) + '\n' for record in records).encode())


def infer(*,
          model: models.EncoderDecoderModel,
          initial_checkpoint_path: Optional[str],
          mixture_or_task_name: str,
          feature_lengths: Mapping[str, int],
          output_file: str,
          split: str = 'validation',
          mode: str = 'predict',
          batch_size: int = 32,
          decode_kwargs: Optional[Mapping[str, Any]] = None,
          num_examples: Optional[int] = None,
          assignment_map: Sequence[Tuple[str, Optional[str]]] = (
              (prompts.PROMPT_REGEX, None),),
          mesh_config: partitioning.MeshConfig = partitioning.MeshConfig(),
          seed: int = 0,
          input_file: Optional[str] = None,
          input_format: Optional[str] = None,
          preprocess: bool = True,
          on_bad_line: str = 'fail',
          class_labels: Optional[Sequence[str]] = None) -> int:
  """Writes one JSON line per input of a task's split or of a file; returns
  the count.

  For a task's split: mode 'predict' writes {"index", "inputs", "targets",
  "prediction"} (decoded); mode 'score' {"index", "inputs", "targets",
  "score"} (the targets' summed log-likelihood).

  With `input_file` (see `inputs` for the formats and the preprocessing) the
  task supplies the preprocessing, vocabulary and labels, and each usable
  line gives {"line", "input" (the file's text or fields), "inputs" (the
  model's input text), "targets" (if given), "prediction"}; mode 'score'
  adds "scores" ({label: log-likelihood} over `class_labels`, by default the
  task's labels, with "prediction" the best label) and, for lines with a
  target, "score" (its log-likelihood).

  Args:
    input_file: a .txt, .tsv or .jsonl file of inputs (None: the task's
      `split`).
    input_format: 'txt', 'tsv' or 'jsonl' (None: from the extension).
    preprocess: run the task's text preprocessing on the file's records.
    on_bad_line: 'fail' or 'skip' (skipped lines are logged and counted).
    class_labels: the labels scored in mode 'score' (None: the task's).
    (the others as for `evaluate`.)

  Raises:
    ValueError: an unknown mode; an unusable input file
      (`inputs.InputFileError`, naming the file and line); score mode on a
      file with lines without targets for a task without class labels.
  """
  options = RunOptions(
      model=model, initial_checkpoint_path=initial_checkpoint_path,
      feature_lengths=feature_lengths, split=split, batch_size=batch_size,
      decode_kwargs=decode_kwargs, num_examples=num_examples,
      assignment_map=assignment_map, mesh_config=mesh_config, seed=seed)
  if input_file is not None:
    return _infer_file(options, mixture_or_task_name, output_file, mode=mode,
                       input_file=input_file, input_format=input_format,
                       preprocess=preprocess, on_bad_line=on_bad_line,
                       class_labels=class_labels)
  return _infer(options, mixture_or_task_name, output_file, mode=mode)


def _infer(options: RunOptions, mixture_or_task_name: str, output_file: str,
           *, mode: str) -> int:
  """`infer` with its shared arguments in `options`."""
  if mode not in ('predict', 'score'):
    raise ValueError(f"infer mode is {mode!r}; expected 'predict' or 'score'")
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  task = task_utils.get_mixture_or_task(mixture_or_task_name)
  setup = options.setup_model()
  examples, dataset = options.task_examples(task)
  texts = [example_texts(example) for example in examples]
  if mode == 'predict':
    outputs = options.predict_fn(setup)(dataset, setup.params,
                                        description='infer')
    vocabulary = task.output_features['targets'].vocabulary
    values = [vocabulary.decode(ids) for _, ids in outputs]
  else:
    outputs = options.score_fn(setup)(dataset, setup.params,
                                      description='score')
    values = [float(score) for _, score in outputs]
  key = 'prediction' if mode == 'predict' else 'score'
  records = []
  for (index, _), value in zip(outputs, values):
    inputs, targets = texts[index]
    records.append({'index': int(index), 'inputs': inputs, 'targets': targets,
                    key: value})
  _write_jsonl(records, output_file)
  logging.info('wrote %d %s lines to %s', len(values), mode, output_file)
  return len(values)


def _infer_file(options: RunOptions, task_name: str, output_file: str, *,
                mode: str, input_file: str, input_format: Optional[str],
                preprocess: bool, on_bad_line: str,
                class_labels: Optional[Sequence[str]]) -> int:
  """`infer` on the inputs of `input_file`; the file and its features are
  checked before the model is set up."""
  if mode not in ('predict', 'score'):
    raise ValueError(f"infer mode is {mode!r}; expected 'predict' or 'score'")
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  task = task_utils.get_mixture_or_task(task_name)
  if not hasattr(task, 'postprocess_fn'):
    raise ValueError(f'{task_name!r} is a mixture; inference on an input '
                     'file takes one task (its preprocessing and labels).')
  read = inputs_lib.read_input_file(
      input_file, input_format, raw_fields=inputs_lib.task_raw_fields(task),
      on_bad_line=on_bad_line)
  labels = (tuple(class_labels) if class_labels is not None else
            inputs_lib.task_class_labels(task))
  examples, dataset = inputs_lib.file_examples(
      task, read, options.feature_lengths, preprocess=preprocess,
      seed=options.seed)
  texts = [example_texts(example) for example in examples]
  has_targets = [bool(targets) for _, targets in texts]
  if mode == 'score' and labels is None and not all(has_targets):
    line = read.records[has_targets.index(False)].line
    raise ValueError(
        f'{input_file}:{line} has no target and task {task.name!r} defines no '
        'class labels; score mode needs a target on every line or '
        'class_labels to rank.')
  setup = options.setup_model()
  values: Dict[str, List[Any]] = {}
  if mode == 'predict':
    outputs = options.predict_fn(setup)(dataset, setup.params,
                                        description='infer')
    vocabulary = task.output_features['targets'].vocabulary
    values['prediction'] = [vocabulary.decode(ids) for _, ids in outputs]
  else:
    if labels is not None:
      _, aux = predict.rank_classification_predict_fn(
          options.model, labels, batch_size=options.batch_size,
          mesh=setup.mesh, rules=setup.rules)(
              dataset, setup.params, description='infer label scores',
              with_aux=True)
      values['scores'] = [dict(zip(labels, row)) for row in aux['scores']]
      values['prediction'] = [max(row, key=row.get)
                              for row in values['scores']]
    if any(has_targets):
      values['score'] = [score for _, score in options.score_fn(setup)(
          dataset, setup.params, description='infer target scores')]
  records = []
  for i, (record, (inputs, targets)) in enumerate(zip(read.records, texts)):
    out = {'line': record.line,
           'input': record.fields.get('inputs', dict(record.fields)),
           'inputs': inputs}
    if has_targets[i]:
      out['targets'] = targets
    for key in ('prediction', 'scores', 'score'):
      if key in values and (key != 'score' or has_targets[i]):
        out[key] = values[key][i]
    records.append(out)
  _write_jsonl(records, output_file)
  logging.info('wrote %d %s lines to %s', len(records), mode, output_file)
  if read.skipped:
    logging.warning('skipped %d malformed line(s) of %s: lines %s',
                    len(read.skipped), input_file,
                    ', '.join(str(b.line) for b in read.skipped))
  return len(records)

def mixed_task_dataset(datasets: Sequence[Any], counts: Sequence[int]):
  """Interleaves K tasks' examples round-robin; tags each with its task.

  Example j of task k carries `prompt_ids = k`: the row of a bank `[K, P, H]`
  that serves it. Tasks run out at their own ends; the rest keep alternating.

  Args:
    datasets: K tf.data datasets of `(index, features)` (`task_examples`),
      all with the same features and shapes.
    counts: the number of examples of each.

  Returns:
    `(order, dataset)`: `order[position] = (k, index)` for every position of
    the mixed stream; `dataset` yields `(position, features + prompt_ids)`.

  Raises:
    ValueError: the datasets' features differ (the first differing task is
      named by its position), or the lengths of the arguments differ.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if len(datasets) != len(counts):
    raise ValueError(f'mixed_task_dataset got {len(datasets)} datasets and '
                     f'{len(counts)} counts; expected one count per dataset.')
  spec = datasets[0].element_spec
  for k, dataset in enumerate(datasets[1:], start=1):
    if dataset.element_spec != spec:
      raise ValueError(
          f'task {k} has features {dataset.element_spec} but task 0 has '
          f'{spec}; a mixed batch needs the same features and lengths for '
          'every task.')
  order: List[Tuple[int, int]] = []
  for j in range(max(counts, default=0)):
    order.extend((k, j) for k, count in enumerate(counts) if j < count)

  def tag(k):
    return lambda index, features: {
        **features, 'prompt_ids': tf.constant(k, tf.int32)}

  tagged = [d.map(tag(k)) for k, d in enumerate(datasets)]
  choice = tf.data.Dataset.from_tensor_slices(
      np.array([k for k, _ in order], np.int64))
  mixed = tf.data.Dataset.choose_from_datasets(tagged, choice)
  mixed = tf.data.Dataset.zip((tf.data.Dataset.range(len(order)), mixed))
  return order, mixed.apply(tf.data.experimental.assert_cardinality(
      len(order)))


def serve_tasks(model: models.EncoderDecoderModel,
                params: Any,
                bank: Any,
                task_names: Sequence[str],
                *,
                feature_lengths: Mapping[str, int],
                split: str = 'validation',
                mode: str = 'predict',
                batch_size: int = 32,
                decode_kwargs: Optional[Mapping[str, Any]] = None,
                num_examples: Optional[int] = None,
                mesh=None,
                rules=None) -> List[Dict[str, Any]]:
  """Serves several tasks' inputs in mixed batches, one prompt per task.

  Task k's examples are served with row k of `bank`; every batch holds
  examples of several tasks, each selecting its prompt by `prompt_ids`, so
  one decoding (or scoring) pass over the frozen model serves all of them.
  An example's output is the one it gets when its task is served alone
  (rows of a batch do not interact).

  Args:
    model: the frozen model (its own prompt, if any, is replaced by the bank).
    params: its parameters.
    bank: `[K, P, H]`, row k the prompt of `task_names[k]`.
    task_names: K registered task names.
    feature_lengths: shared by all tasks, e.g. {'inputs': 512, 'targets': 8}.
    split: the split to serve.
    mode: 'predict' (greedy or `decode_kwargs` decoding) or 'score' (the
      targets' summed log-likelihood).
    batch_size: rows of every mixed batch.
    decode_kwargs: `EncoderDecoderModel.predict_batch` settings.
    num_examples: serve only the first this many examples of each task.
    mesh, rules: optional device mesh and logical axis rules.

  Returns:
    One record per served input, in the mixed order: {'task', 'index',
    'inputs', 'targets', and 'prediction' (text) with 'tokens' (ids, EOS then
    zeros) or 'score'}.

  Raises:
    ValueError: an unknown mode, a bank whose rows do not match the tasks, a
      task that is a mixture, or tasks with different features.
  """
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  if mode not in ('predict', 'score'):
    raise ValueError(f"serve mode is {mode!r}; expected 'predict' or 'score'")
  if np.ndim(bank) != 3 or np.shape(bank)[0] != len(task_names):
    raise ValueError(f'the prompt bank has shape {np.shape(bank)}; expected '
                     f'[{len(task_names)}, P, H], one prompt per task of '
                     f'{list(task_names)}.')
  tasks = []
  for name in task_names:
    task = task_utils.get_mixture_or_task(name)
    if not hasattr(task, 'postprocess_fn'):
      raise ValueError(f'{name!r} is a mixture; serving takes tasks, one '
                       'prompt each.')
    tasks.append(task)
  examples, datasets = zip(*[task_examples(t, split, feature_lengths,
                                           num_examples) for t in tasks])
  order, dataset = mixed_task_dataset(datasets, [len(e) for e in examples])
  if mode == 'predict':
    outputs = predict.make_predict_fn(
        model, decode_kwargs, batch_size=batch_size, mesh=mesh, rules=rules)(
            dataset, params, prompt=bank, description='serve')
  else:
    outputs = predict.make_score_fn(
        model, batch_size=batch_size, mesh=mesh, rules=rules)(
            dataset, params, prompt=bank, description='serve scores')
  records = []
  for position, value in outputs:
    k, index = order[position]
    inputs, targets = example_texts(examples[k][index])
    record = {'task': tasks[k].name, 'index': index, 'inputs': inputs,
              'targets': targets}
    if mode == 'predict':
      vocabulary = tasks[k].output_features['targets'].vocabulary
      record.update(prediction=vocabulary.decode(value), tokens=value)
    else:
      record['score'] = float(value)
    records.append(record)
  return records


def serve(*,
          model: models.EncoderDecoderModel,
          initial_checkpoint_path: Optional[str],
          prompt_files: Mapping[str, str],
          feature_lengths: Mapping[str, int],
          output_file: str,
          split: str = 'validation',
          mode: str = 'predict',
          batch_size: int = 32,
          decode_kwargs: Optional[Mapping[str, Any]] = None,
          num_examples: Optional[int] = None,
          assignment_map: Sequence[Tuple[str, Optional[str]]] = (
              (prompts.PROMPT_REGEX, None),),
          mesh_config: partitioning.MeshConfig = partitioning.MeshConfig(),
          seed: int = 0) -> int:
  """Multi-task serving: writes one JSON line per input of several tasks.

  `prompt_files` maps each task to its prompt; the prompts form a bank
  `[K, P, H]` and the tasks' inputs are served together in mixed batches
  (`serve_tasks`). Lines are in the mixed order, each naming its task:
  {"task", "index", "inputs", "targets", "prediction" | "score"}; a task's
  lines equal those `infer` writes for it alone with its prompt.

  Gin (see gin/runs/prompt_serve.gin):

    PROMPT_FILES = {'taskless_super_glue_rte_v102': '/tmp/rte/best_prompt.npy',
                    'taskless_super_glue_cb_v102': '/tmp/cb/best_prompt.npy'}

  Returns:
    The number of lines written.

  Raises:
    ValueError: an empty or non-mapping `prompt_files`, prompts of different
      shapes, or an unknown mode.
  """
  options = RunOptions(
      model=model, initial_checkpoint_path=initial_checkpoint_path,
      feature_lengths=feature_lengths, split=split, batch_size=batch_size,
      decode_kwargs=decode_kwargs, num_examples=num_examples,
      assignment_map=assignment_map, mesh_config=mesh_config, seed=seed)
  return _serve(options, prompt_files, output_file, mode=mode)


def _serve(options: RunOptions, prompt_files: Mapping[str, str],
           output_file: str, *, mode: str) -> int:
  """`serve` with its shared arguments in `options`."""
  if not isinstance(prompt_files, Mapping) or not prompt_files:
    raise ValueError(f'PROMPT_FILES is {prompt_files!r}; expected a non-empty '
                     'mapping {task name: .npy prompt file}.')
  names = list(prompt_files)
  bank = load_prompt_bank([prompt_files[n] for n in names],
                          flag='PROMPT_FILES')
  for name in names:
    run_record.check_pairing(prompt_files[name], options.model,
                             options.initial_checkpoint_path,
                             model_prompt=False)
  setup = options.setup_model()
  records = serve_tasks(options.model, setup.params, bank, names,
                        feature_lengths=options.feature_lengths,
                        split=options.split, mode=mode,
                        batch_size=options.batch_size,
                        decode_kwargs=options.decode_kwargs,
                        num_examples=options.num_examples,
                        mesh=setup.mesh, rules=setup.rules)
  for record in records:
    record.pop('tokens', None)
  _write_jsonl(records, output_file)
  logging.info('served %d inputs of %d tasks (%s) to %s', len(records),
               len(names), mode, output_file)
  return len(records)


def format_metrics(results: Mapping[str, Mapping[str, float]]) -> str:
  """One line per task: 'task: metric value, ...'; after several tasks (a
  mixture), a last line with their average: the mean over tasks of each
  task's mean metric, as SuperGLUE's score (and `corpus_suite`'s
  `suite_average`) counts and as the best step is chosen."""
  lines = [f'{task}: ' + ', '.join(f'{name} {value:.2f}'
                                   for name, value in sorted(metrics.items()))
           for task, metrics in sorted(results.items())]
  if len(results) > 1:
    lines.append(f'average over the {len(results)} tasks (each task\'s mean '
                 f'metric): {evaluation.selection_score(results):.2f}')
  return '\n'.join(lines)

