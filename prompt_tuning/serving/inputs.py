"""Your own inputs for `infer`: read a file, turn it into a task's features.

Three formats, chosen by the file's extension or named explicitly
(`FORMATS`):

  .txt    plain text, one input per line (the whole line is the input).
  .tsv    `input<TAB>target` or just `input`, one example per line. The first
          line is a header when every cell of it is a column name the task
          knows ('inputs', 'targets', or a raw field of the task, e.g.
          'premise'); the rows then hold those columns in that order.
  .jsonl  one JSON object per line: {"inputs": ..., "targets": ...} (targets
          optional), or the task's raw fields ({"premise": ..., ...}).

Line numbers count from 1 and include the header. A line that cannot be read
(a blank line, bad JSON, a wrong number of cells, an unknown or missing
field) is a `BadLine`; `read_input_file` either stops at the first one
(`on_bad_line='fail'`, raising `InputFileError` with the file and line) or
skips it and reports it (`'skip'`), never drops it silently.

Preprocessing (`file_examples`). A task turns a source record into its
`inputs`/`targets` strings with the preprocessors before its tokenizer, its
text preprocessors (e.g. a GLUE task formats 'premise' and 'hypothesis' into
"rte premise: ... hypothesis: ..."). With `preprocess=True` those run on the
file's records, which must then carry the fields they read: for tasks whose
source is raw fields, those fields; for tasks whose source already gives
`inputs`/`targets` (the corpus and offline tasks), the text as is. With
`preprocess=False` the file's `inputs` are taken as the model's input text.
Tokenization and everything after it (token preprocessors, EOS) always run,
with the task's vocabulary, so the model sees what it saw in training.
"""
import dataclasses
import functools
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

FORMATS = ('txt', 'tsv', 'jsonl')
ON_BAD_LINE = ('fail', 'skip')
# Raw fields filled in when a record leaves them out: no label (as in a test
# split) and the line number as the example id.
_LABEL_FIELD = 'label'
_ID_FIELD = 'idx'


class InputFileError(ValueError):
  """An input file that cannot be used: names the file and, where it is one
  line's fault, the line."""


@dataclasses.dataclass(frozen=True)
class InputRecord:
  """One usable line of an input file.

  Attributes:
    line: its line number (from 1).
    fields: {'inputs': str, 'targets': str (if given)} or the task's raw
      fields as given.
  """
  line: int
  fields: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class BadLine:
  """A line that could not be read: its number and why."""
  line: int
  reason: str


@dataclasses.dataclass(frozen=True)
class InputFile:
  """What `read_input_file` read: the usable records and the skipped lines."""
  path: str
  input_format: str
  records: Tuple[InputRecord, ...]
  skipped: Tuple[BadLine, ...]

  @property
  def raw_fields(self) -> bool:
    """Whether the records carry raw fields rather than `inputs`."""
    return bool(self.records) and 'inputs' not in self.records[0].fields


def input_format_of(path: str, input_format: Optional[str] = None) -> str:
  """`input_format`, or the one `path`'s extension names.

  Raises:
    InputFileError: an unknown format, or no format and an extension that
      is none of '.txt', '.tsv', '.jsonl'.
  """
  if input_format:
    if input_format not in FORMATS:
      raise InputFileError(f'input format {input_format!r}; expected one of '
                           f'{list(FORMATS)}.')
    return input_format
  extension = os.path.splitext(path)[1].lstrip('.').lower()
  if extension == 'json':
    extension = 'jsonl'
  if extension not in FORMATS:
    raise InputFileError(
        f'input file {path} has extension {extension!r}; expected .txt, .tsv '
        'or .jsonl, or name the format with --input_format.')
  return extension


def default_output_file(input_file: str, mode: str) -> str:
  """Where `infer` writes when no output file is named: beside the input,
  `reviews.txt` -> `reviews.predictions.jsonl` (`.scores.jsonl` in score
  mode)."""
  stem = os.path.splitext(input_file)[0]
  return f'{stem}.{"predictions" if mode == "predict" else "scores"}.jsonl'


# ---------------------------------------------------------------------------
# Reading.
# ---------------------------------------------------------------------------


def _check_names(fields: Mapping[str, Any], raw_fields: Sequence[str]) -> None:
  """Raises ValueError unless `fields` is {inputs[, targets]} or raw fields."""
  names = set(fields)
  if 'inputs' in names:
    unknown = sorted(names - {'inputs', 'targets'})
    if unknown:
      raise ValueError(f'fields {unknown} beside "inputs"; expected only '
                       '"inputs" and "targets".')
    return
  if not raw_fields:
    raise ValueError(f'no "inputs" field (found {sorted(names)}).')
  unknown = sorted(names - set(raw_fields))
  if unknown:
    raise ValueError(f'unknown field(s) {unknown}; expected "inputs" '
                     f'[, "targets"] or the task\'s fields {list(raw_fields)}.')
  required = [f for f in raw_fields
              if f not in names and f.split('/')[0] not in (_LABEL_FIELD,
                                                            _ID_FIELD)]
  if required:
    raise ValueError(f'missing field(s) {required} of the task\'s fields '
                     f'{list(raw_fields)}.')


def _parse_json(text: str, raw_fields: Sequence[str]) -> Dict[str, Any]:
  try:
    record = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'not JSON ({e.msg} at column {e.colno}).') from None
  if not isinstance(record, dict):
    raise ValueError(f'a JSON {type(record).__name__}; expected an object.')
  _check_names(record, raw_fields)
  for name in ('inputs', 'targets'):
    if name in record and not isinstance(record[name], str):
      raise ValueError(f'"{name}" is {record[name]!r}; expected a string.')
  if 'inputs' in record and not record['inputs'].strip():
    raise ValueError('"inputs" is empty.')
  return record


def _tsv_header(cells: Sequence[str], raw_fields: Sequence[str]
               ) -> Optional[List[str]]:
  """The column names if `cells` is a header line, else None."""
  known = {'inputs', 'targets', *raw_fields}
  if cells and all(c in known for c in cells) and len(set(cells)) == len(
      cells):
    _check_names(dict.fromkeys(cells), raw_fields)
    return list(cells)
  return None


def _parse_tsv(cells: Sequence[str], header: Optional[Sequence[str]]
              ) -> Dict[str, Any]:
  if header is None:
    if len(cells) > 2:
      raise ValueError(f'{len(cells)} tab-separated cells; expected input or '
                       'input<TAB>target (or a header line naming the '
                       'columns).')
    header = ('inputs', 'targets')[:len(cells)]
  elif len(cells) != len(header):
    raise ValueError(f'{len(cells)} tab-separated cells; expected '
                     f'{len(header)}, the header\'s {list(header)}.')
  record = {}
  for name, cell in zip(header, cells):
    if name.split('/')[0] in (_LABEL_FIELD, _ID_FIELD):
      try:
        record[name] = int(cell)
      except ValueError:
        raise ValueError(f'{name} is {cell!r}; expected an integer.') from None
    else:
      record[name] = cell
  if 'inputs' in record and not record['inputs'].strip():
    raise ValueError('the input is empty.')
  return record


def read_input_file(path: str,
                    input_format: Optional[str] = None,
                    *,
                    raw_fields: Sequence[str] = (),
                    on_bad_line: str = 'fail') -> InputFile:
  """Reads an input file of any of `FORMATS`.

  Args:
    path: the file (local or any tf.io.gfile path).
    input_format: one of `FORMATS`; None: from the extension.
    raw_fields: the task's source fields, accepted instead of `inputs`
      (JSON lines, or a TSV header); '/' names a nested field.
    on_bad_line: 'fail' (raise at the first bad line) or 'skip' (log each
      and go on; `InputFile.skipped` lists them).

  Returns:
    The records in file order and the skipped lines.

  Raises:
    InputFileError: a missing file, an unknown format or `on_bad_line`, a
      bad line under 'fail' ('FILE:LINE: why'), records that mix `inputs`
      and raw fields, or no usable line at all.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if on_bad_line not in ON_BAD_LINE:
    raise InputFileError(f'on_bad_line is {on_bad_line!r}; expected one of '
                         f'{list(ON_BAD_LINE)}.')
  input_format = input_format_of(path, input_format)
  if not tf.io.gfile.exists(path):
    raise InputFileError(f'input file {path} does not exist.')
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  try:
    text = data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise InputFileError(f'input file {path} is not UTF-8 text ({e}).'
                        ) from None
  records: List[InputRecord] = []
  skipped: List[BadLine] = []
  header = None
  # Only '\n' ends a line: a review may hold other Unicode line breaks.
  lines = text.split('\n')
  if lines and lines[-1] == '':
    lines.pop()
  for number, line in enumerate(lines, start=1):
    line = line.rstrip('\r')
    try:
      if not line.strip():
        raise ValueError('a blank line; expected one input per line.')
      if input_format == 'txt':
        fields = {'inputs': line}
      elif input_format == 'jsonl':
        fields = _parse_json(line, raw_fields)
      else:
        cells = line.split('\t')
        if number == 1:
          header = _tsv_header(cells, raw_fields)
          if header is not None:
            continue
        fields = _parse_tsv(cells, header)
      if records and (('inputs' in fields) !=
                      ('inputs' in records[0].fields)):
        raise ValueError('it mixes "inputs" and raw fields with line '
                         f'{records[0].line}; expected one kind per file.')
    except ValueError as e:
      reason = str(e).split('\n')[0]
      if on_bad_line == 'fail':
        raise InputFileError(
            f'{path}:{number}: {reason} (pass --on_bad_line=skip to skip '
            'such lines)') from None
      logging.warning('%s:%d: skipped: %s', path, number, reason)
      skipped.append(BadLine(number, reason))
      continue
    records.append(InputRecord(number, fields))
  if not records:
    raise InputFileError(
        f'input file {path} holds no usable line ({len(lines)} lines, '
        f'{len(skipped)} skipped); expected at least one input.')
  return InputFile(path, input_format, tuple(records), tuple(skipped))


# ---------------------------------------------------------------------------
# From records to features.
# ---------------------------------------------------------------------------


def _unwrap(fn: Any) -> Any:
  while isinstance(fn, functools.partial):
    fn = fn.func
  return fn


def split_preprocessors(task) -> Tuple[List[Any], List[Any]]:
  """A task's preprocessors as (text ones, the tokenizer and the rest).

  The text preprocessors are those before seqio's tokenizer; the rest leave
  out the cache placeholder (a marker, not a step).

  Raises:
    ValueError: a task with no seqio tokenize step.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  tokenizers = (seqio.preprocessors.tokenize,
                seqio.preprocessors.tokenize_and_append_eos)
  steps = list(task.preprocessors)
  for i, step in enumerate(steps):
    if _unwrap(step) in tokenizers:
      rest = [s for s in steps[i:]
              if not isinstance(s, seqio.CacheDatasetPlaceholder)]
      return steps[:i], rest
  raise ValueError(f'task {task.name!r} has no seqio tokenize step; expected '
                   'one to turn input text into tokens.')


def task_raw_fields(task) -> Tuple[str, ...]:
  """The source fields a task's text preprocessors read (() when its source
  gives `inputs`/`targets` directly, as for the corpus and offline tasks)."""
  return tuple(getattr(task.source, 'fields', ()) or ())


def task_class_labels(task) -> Optional[Tuple[str, ...]]:
  """The task's target strings in class-id order, where its postprocessor
  defines them (`postprocessors.string_label_to_class_id`), else None."""
  # seqio keeps the function private; `Task.postprocess_fn` is a method
  # that applies it.
  labels = getattr(getattr(task, '_postprocess_fn', None), 'label_classes',
                   None)
  return None if labels is None else tuple(labels)


def _apply(task, steps: Sequence[Any], dataset, sequence_length):
  import seqio  # pylint: disable=g-import-not-at-top
  for step in steps:
    dataset = seqio.utils.add_kwargs_to_transform(
        step, sequence_length=sequence_length,
        output_features=task.output_features)(dataset)
  return dataset


def _columns(input_file: InputFile, raw_fields: Sequence[str]
            ) -> Dict[str, List[Any]]:
  """The records as columns; absent targets are '', absent labels -1 and
  absent ids the line number."""
  records = input_file.records
  if not input_file.raw_fields:
    return {'inputs': [r.fields['inputs'] for r in records],
            'targets': [r.fields.get('targets', '') for r in records]}
  columns = {}
  for name in raw_fields:
    top = name.split('/')[0]
    default = {_LABEL_FIELD: lambda r: -1,
               _ID_FIELD: lambda r: r.line}.get(top)
    values = []
    for record in records:
      if name in record.fields:
        values.append(record.fields[name])
      else:
        values.append(default(record))
    kinds = {type(v) for v in values}
    if len(kinds) > 1:
      raise InputFileError(
          f'input file {input_file.path}: field {name!r} has values of types '
          f'{sorted(k.__name__ for k in kinds)}; expected one type.')
    columns[name] = values
  return columns


def file_examples(task,
                  input_file: InputFile,
                  feature_lengths: Mapping[str, int],
                  *,
                  preprocess: bool = True,
                  seed: int = 0):
  """The records of an input file as the task's examples and features.

  Args:
    task: a seqio Task (its preprocessors, vocabulary and output features).
    input_file: what `read_input_file` read.
    feature_lengths: e.g. {'inputs': 128, 'targets': 8}.
    preprocess: run the task's text preprocessors on the records (see the
      module docstring); False: the records' `inputs` are the model's input.
    seed: seed of any random preprocessing.

  Returns:
    `(examples, indexed)` as `inference.task_examples` returns them: the
    examples (numpy dicts with `inputs_pretokenized` and, where the task
    keeps them, `targets_pretokenized`), one per record in order; and a
    tf.data dataset of `(index, features)`.

  Raises:
    InputFileError: raw fields with `preprocess=False`; `inputs` for a task
      whose text preprocessors read raw fields; preprocessing that dropped
      or added examples; mixed value types in a field.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from prompt_tuning.utils import trees  # pylint: disable=g-import-not-at-top
  text_steps, token_steps = split_preprocessors(task)
  raw_fields = task_raw_fields(task)
  path = input_file.path
  if input_file.raw_fields and not preprocess:
    raise InputFileError(
        f'input file {path} gives the raw fields '
        f'{sorted(input_file.records[0].fields)}, which only the task\'s '
        'preprocessing turns into inputs; expected "inputs" with '
        '--preprocess=false.')
  if preprocess and raw_fields and not input_file.raw_fields:
    raise InputFileError(
        f'task {task.name!r} makes its inputs from the fields '
        f'{list(raw_fields)}, but input file {path} gives "inputs"; give '
        'those fields (JSON lines, or a TSV header line), or pass '
        '--preprocess=false to use the text as the model\'s input as is.')
  sequence_length = dict(feature_lengths)
  columns = _columns(input_file, raw_fields)
  dataset = tf.data.Dataset.from_tensor_slices(trees.unflatten(columns))
  if preprocess:
    with seqio.utils.map_seed_manager(seed):
      dataset = _apply(task, text_steps, dataset, sequence_length)
  # Cached, so the features below come from the examples returned.
  dataset = _apply(task, token_steps, dataset, sequence_length).cache()
  examples = list(dataset.as_numpy_iterator())
  if len(examples) != len(input_file.records):
    raise InputFileError(
        f'task {task.name!r}\'s preprocessing made {len(examples)} examples '
        f'of the {len(input_file.records)} records of {path}; expected one '
        'each (pass --preprocess=false to use the text as is).')
  converted = seqio.EncDecFeatureConverter(pack=False)(dataset,
                                                       sequence_length)
  indexed = tf.data.Dataset.zip((tf.data.Dataset.range(len(examples)),
                                 converted))
  return examples, indexed
