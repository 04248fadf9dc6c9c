"""`infer` on your own inputs: the three file formats, the task's text
preprocessing on and off, malformed lines (skipped or fatal, by line number),
score mode's per-label scores, and the JSON lines written; with in-memory
tasks on a byte vocabulary and a freshly initialised tiny T5. One slow test
runs the command on hand-written reviews with the main job's prompt.
"""
import json
import uuid

import numpy as np
import pytest
import seqio
import tensorflow as tf

import conftest  # pylint: disable=g-bad-import-order
from prompt_tuning.model import models
from prompt_tuning.model import t5
from prompt_tuning.serving import inference
from prompt_tuning.serving import inputs
from prompt_tuning.tasks import postprocessors
from prompt_tuning.training import predict

VOCAB = seqio.ByteVocabulary()
LENGTHS = {'inputs': 24, 'targets': 6}
LABELS = ('yes', 'no')
NLI_FIELDS = ('premise', 'hypothesis', 'label', 'idx')


class _FieldSource(seqio.FunctionDataSource):
  """A function source that names the raw fields its task reads."""

  def __init__(self, fn, fields):
    super().__init__(fn, splits=['validation'])
    self._fields = tuple(fields)

  @property
  def fields(self):
    return self._fields


@seqio.map_over_dataset
def _format_nli(x):
  """premise, hypothesis, label -> 'nli p: ... h: ...', 'yes'/'no'."""
  return {'inputs': tf.strings.join(['nli p: ', x['premise'], ' h: ',
                                     x['hypothesis']]),
          # Label -1 (none given): the last entry, no target.
          'targets': tf.gather(tf.constant(LABELS + ('',)),
                               tf.math.floormod(x['label'], 3)),
          'idx': x['idx']}


@seqio.map_over_dataset
def _prefix_topic(x):
  return {**x, 'inputs': tf.strings.join(['topic: ', x['inputs']])}


@pytest.fixture(scope='module')
def tasks():
  """{'plain': a task with no text preprocessing, 'prefixed': one that
  prefixes its inputs, 'nli': one made from raw fields}."""
  features = {'inputs': seqio.Feature(VOCAB, add_eos=True),
              'targets': seqio.Feature(VOCAB, add_eos=True)}
  common = dict(output_features=features, metric_fns=[],
                postprocess_fn=postprocessors.string_label_to_class_id(
                    LABELS))
  tail = [seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim]

  def text_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({'inputs': ['a'],
                                               'targets': ['yes']})

  def nli_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({
        'premise': ['p'], 'hypothesis': ['h'], 'label': [0], 'idx': [0]})

  suffix = uuid.uuid4().hex[:8]
  names = {kind: f'test_infer_inputs_{kind}_{suffix}'
           for kind in ('plain', 'prefixed', 'nli', 'unlabelled')}
  seqio.TaskRegistry.add(
      names['plain'], source=seqio.FunctionDataSource(
          text_fn, splits=['validation']), preprocessors=tail, **common)
  seqio.TaskRegistry.add(
      names['prefixed'], source=seqio.FunctionDataSource(
          text_fn, splits=['validation']),
      preprocessors=[_prefix_topic] + tail, **common)
  seqio.TaskRegistry.add(
      names['nli'], source=_FieldSource(nli_fn, NLI_FIELDS),
      preprocessors=[_format_nli] + tail, **common)
  seqio.TaskRegistry.add(
      names['unlabelled'], source=seqio.FunctionDataSource(
          text_fn, splits=['validation']), preprocessors=tail,
      output_features=features, metric_fns=[])
  yield names
  for name in names.values():
    seqio.TaskRegistry.remove(name)


@pytest.fixture(scope='module')
def model():
  config = t5.T5Config(**{**conftest.TINY_CONFIG_KWARGS, 'vocab_size': VOCAB.vocab_size,
                          'dropout_rate': 0.0})
  return models.EncoderDecoderModel(t5.Transformer(config), VOCAB, VOCAB)


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _infer(model, task, input_file, output_file, **kwargs):
  return inference.infer(model=model, initial_checkpoint_path=None,
                         mixture_or_task_name=task, feature_lengths=LENGTHS,
                         output_file=str(output_file), batch_size=4,
                         input_file=input_file, **kwargs)


# ---------------------------------------------------------------------------
# Reading the formats.
# ---------------------------------------------------------------------------


def test_text_file_is_one_input_per_line(tmp_path):
  path = _write(tmp_path, 'in.txt', 'first review\nsecond\ttab kept\n')
  read = inputs.read_input_file(path)
  assert read.input_format == 'txt'
  assert [(r.line, dict(r.fields)) for r in read.records] == [
      (1, {'inputs': 'first review'}), (2, {'inputs': 'second\ttab kept'})]


def test_tsv_reads_input_and_optional_target_after_a_header(tmp_path):
  path = _write(tmp_path, 'in.tsv', 'inputs\ttargets\na\tyes\nb\tno\n')
  read = inputs.read_input_file(path)
  assert [(r.line, dict(r.fields)) for r in read.records] == [
      (2, {'inputs': 'a', 'targets': 'yes'}),
      (3, {'inputs': 'b', 'targets': 'no'})]
  # Without a header: one or two cells a line.
  path = _write(tmp_path, 'bare.tsv', 'a\tyes\nb\n')
  assert [dict(r.fields) for r in inputs.read_input_file(path).records] == [
      {'inputs': 'a', 'targets': 'yes'}, {'inputs': 'b'}]


def test_jsonl_reads_inputs_or_the_tasks_raw_fields(tmp_path):
  path = _write(tmp_path, 'in.jsonl',
                '{"inputs": "a", "targets": "yes"}\n{"inputs": "b"}\n')
  assert [dict(r.fields) for r in inputs.read_input_file(path).records] == [
      {'inputs': 'a', 'targets': 'yes'}, {'inputs': 'b'}]
  path = _write(tmp_path, 'raw.jsonl',
                '{"premise": "p", "hypothesis": "h", "label": 1}\n')
  read = inputs.read_input_file(path, raw_fields=NLI_FIELDS)
  assert read.raw_fields
  assert dict(read.records[0].fields) == {'premise': 'p', 'hypothesis': 'h',
                                          'label': 1}


def test_format_comes_from_the_extension_or_the_flag(tmp_path):
  path = _write(tmp_path, 'in.data', '{"inputs": "a"}\n')
  with pytest.raises(inputs.InputFileError, match=r"extension 'data'.*"
                     '--input_format'):
    inputs.read_input_file(path)
  assert inputs.read_input_file(path, 'jsonl').records[0].fields == {
      'inputs': 'a'}
  assert inputs.read_input_file(path, 'txt').records[0].fields == {
      'inputs': '{"inputs": "a"}'}


@pytest.mark.parametrize('name, text, line, reason', [
    ('in.txt', 'a\n\nb\n', 2, 'blank line'),
    ('in.jsonl', '{"inputs": "a"}\n{"inputs": "b"\n', 2, 'not JSON'),
    ('in.jsonl', '{"inputs": "a"}\n["b"]\n', 2, 'expected an object'),
    ('in.jsonl', '{"inputs": "a", "id": 3}\n', 1, "fields ['id']"),
    ('in.jsonl', '{"text": "a"}\n', 1, 'no "inputs" field'),
    ('in.tsv', 'a\tyes\nb\tno\textra\n', 2, '3 tab-separated cells'),
])
def test_a_malformed_line_is_fatal_naming_file_and_line(tmp_path, name, text,
                                                        line, reason):
  path = _write(tmp_path, name, text)
  with pytest.raises(inputs.InputFileError) as error:
    inputs.read_input_file(path)
  message = str(error.value)
  assert message.startswith(f'{path}:{line}: ')
  assert reason in message
  assert '--on_bad_line=skip' in message


def test_skipped_lines_are_logged_and_counted(tmp_path, caplog):
  path = _write(tmp_path, 'in.jsonl',
                '{"inputs": "a"}\nnot json\n{"inputs": "c"}\n\n')
  with caplog.at_level('WARNING'):
    read = inputs.read_input_file(path, on_bad_line='skip')
  assert [r.line for r in read.records] == [1, 3]
  assert [b.line for b in read.skipped] == [2, 4]
  warned = [r.getMessage() for r in caplog.records]
  assert any(f'{path}:2: skipped' in m for m in warned)
  assert any(f'{path}:4: skipped' in m for m in warned)


def test_a_file_with_no_usable_line_is_an_error(tmp_path):
  path = _write(tmp_path, 'in.txt', '\n \n')
  with pytest.raises(inputs.InputFileError, match='no usable line'):
    inputs.read_input_file(path, on_bad_line='skip')


# ---------------------------------------------------------------------------
# The task's text preprocessing.
# ---------------------------------------------------------------------------


def _model_inputs(task_name, read, preprocess=True):
  task = seqio.get_mixture_or_task(task_name)
  examples, _ = inputs.file_examples(task, read, LENGTHS,
                                     preprocess=preprocess)
  return [e['inputs_pretokenized'].decode() for e in examples]


def test_preprocessing_runs_the_tasks_text_steps_unless_turned_off(
    tmp_path, tasks):
  read = inputs.read_input_file(_write(tmp_path, 'in.txt', 'a\nb\n'))
  assert _model_inputs(tasks['prefixed'], read) == ['topic: a', 'topic: b']
  assert _model_inputs(tasks['prefixed'], read, preprocess=False) == ['a', 'b']
  assert _model_inputs(tasks['plain'], read) == ['a', 'b']


def test_raw_fields_are_formatted_by_the_task(tmp_path, tasks):
  path = _write(tmp_path, 'in.tsv', 'premise\thypothesis\n'
                'it rains\tit is wet\nsun\tdark\n')
  read = inputs.read_input_file(path, raw_fields=NLI_FIELDS)
  assert _model_inputs(tasks['nli'], read) == [
      'nli p: it rains h: it is wet', 'nli p: sun h: dark']
  with pytest.raises(inputs.InputFileError, match='only the task'):
    _model_inputs(tasks['nli'], read, preprocess=False)


def test_inputs_for_a_task_made_from_raw_fields_name_those_fields(
    tmp_path, tasks):
  read = inputs.read_input_file(_write(tmp_path, 'in.txt', 'a\n'))
  with pytest.raises(inputs.InputFileError,
                     match=r"fields \['premise', 'hypothesis'.*"
                     '--preprocess=false'):
    _model_inputs(tasks['nli'], read)
  assert _model_inputs(tasks['nli'], read, preprocess=False) == ['a']


# ---------------------------------------------------------------------------
# infer on a file.
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures('fast_compiles')
def test_predict_writes_input_model_input_and_prediction(tmp_path, tasks,
                                                         model):
  path = _write(tmp_path, 'in.tsv', 'first\tyes\nsecond\n')
  output = tmp_path / 'out' / 'predictions.jsonl'
  assert _infer(model, tasks['prefixed'], path, output) == 2
  lines = _read_jsonl(output)
  assert [set(l) for l in lines] == [
      {'line', 'input', 'inputs', 'targets', 'prediction'},
      {'line', 'input', 'inputs', 'prediction'}]
  assert [(l['line'], l['input'], l['inputs']) for l in lines] == [
      (1, 'first', 'topic: first'), (2, 'second', 'topic: second')]
  assert lines[0]['targets'] == 'yes'
  assert all(isinstance(l['prediction'], str) for l in lines)
  assert not list(output.parent.glob('*.tmp*'))  # Written atomically.


@pytest.mark.slow
@pytest.mark.usefixtures('fast_compiles')
def test_score_mode_gives_every_labels_score_and_the_targets(tmp_path, tasks,
                                                             model):
  path = _write(tmp_path, 'in.jsonl',
                '{"inputs": "first", "targets": "no"}\n{"inputs": "second"}\n')
  output = tmp_path / 'scores.jsonl'
  _infer(model, tasks['plain'], path, output, mode='score')
  lines = _read_jsonl(output)
  assert [set(l) for l in lines] == [
      {'line', 'input', 'inputs', 'targets', 'prediction', 'scores', 'score'},
      {'line', 'input', 'inputs', 'prediction', 'scores'}]
  for line in lines:
    assert set(line['scores']) == set(LABELS)
    assert line['prediction'] == max(line['scores'], key=line['scores'].get)
  # A target that is a label scores what its label scores.
  assert lines[0]['score'] == pytest.approx(lines[0]['scores']['no'],
                                            rel=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures('fast_compiles')
def test_score_mode_without_labels_or_targets_fails_before_the_model(
    tmp_path, tasks, model):
  path = _write(tmp_path, 'in.tsv', 'a\tyes\nb\n')
  with pytest.raises(ValueError, match=r'in\.tsv:2 has no target.*class '
                     'labels'):
    _infer(model, tasks['unlabelled'], path, tmp_path / 'o.jsonl',
           mode='score')
  assert not (tmp_path / 'o.jsonl').exists()


@pytest.mark.slow
@pytest.mark.usefixtures('fast_compiles')
def test_skipped_lines_leave_the_others_with_their_line_numbers(
    tmp_path, tasks, model):
  path = _write(tmp_path, 'in.jsonl', '{"inputs": "a"}\n{oops}\n'
                '{"inputs": "c"}\n')
  output = tmp_path / 'out.jsonl'
  with pytest.raises(inputs.InputFileError, match=':2: '):
    _infer(model, tasks['plain'], path, output)
  assert not output.exists()
  assert _infer(model, tasks['plain'], path, output, on_bad_line='skip') == 2
  assert [l['line'] for l in _read_jsonl(output)] == [1, 3]


def test_default_output_file_sits_beside_the_input():
  assert inputs.default_output_file('/d/reviews.txt', 'predict') == (
      '/d/reviews.predictions.jsonl')
  assert inputs.default_output_file('/d/r.jsonl', 'score') == (
      '/d/r.scores.jsonl')


# ---------------------------------------------------------------------------
# Progress.
# ---------------------------------------------------------------------------


def test_progress_line_has_count_rate_and_eta():
  assert predict.progress_line('infer', 100, 400, 10.0) == (
      'infer: 100/400 examples, 10.0 examples/s, ETA 30s')
  assert predict.progress_line('infer', 100, 7300, 1.0).endswith('ETA 1m12s')
  assert predict.progress_line('infer', 5, None, 1.0).endswith('ETA ?')


def test_progress_is_logged_by_time_and_only_the_total_for_short_runs(caplog):
  dataset = tf.data.Dataset.from_tensor_slices(
      {'encoder_input_tokens': np.zeros((9, 2), np.int32)})
  compute = lambda batch, i: batch['encoder_input_tokens'][:, 0]
  for seconds, expected in ((1e-9, 5), (3600.0, 0)):
    caplog.clear()
    with caplog.at_level('INFO', logger='absl'):
      predict.run_batches(dataset, compute, 2, description='timed',
                          log_seconds=seconds)
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith('timed:')]
    assert len(lines) == expected + 1, lines
    assert all('ETA' in line for line in lines[:-1])
    assert lines[-1].startswith('timed: 9 examples in')
