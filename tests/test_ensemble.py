"""Prompt ensembles (one pass over a bank, majority vote, Table 3 report) and
multi-task serving (mixed batches), with prompts tuned here on the embedded
model.

The module fixture tunes four short prompts (three seeds on the topic task,
one on sentiment) with the trainer's own step; they are deliberately not
perfect, so their predictions differ and the vote matters.
"""
import json
import sys

import gin
import jax
import numpy as np
import pytest

import commands

from prompt_tuning.benchmarks import ensembles as ensemble_benchmarks
from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.checkpoints import t5x
from prompt_tuning.cli import gin_utils
from prompt_tuning.experiments import report_tables
from prompt_tuning.experiments import runs
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.serving import ensemble
from prompt_tuning.serving import inference
from prompt_tuning.tasks import offline
from prompt_tuning.tasks import utils as task_utils
from prompt_tuning.training import evaluation
from prompt_tuning.training import predict
from prompt_tuning.training import trainer

TOPIC = 'taskless_offline_topic'
SENTIMENT = 'taskless_offline_sentiment'
LENGTHS = {'inputs': 16, 'targets': 4}
PROMPT_LENGTH = 5
NUM_EXAMPLES = 120
BATCH = 40
# NOTE: 5 Adafactor steps at learning rate 0.03 leave each prompt at roughly
# 85-99% accuracy with different mistakes. Far weaker prompts (~70%) share
# systematic errors, and a majority vote of those can fall below their mean.
TRAIN_STEPS = 5
LEARNING_RATE = 0.03


def _frozen_model(params):
  vocabulary = offline.vocabulary()
  config = t5.config_from_params(params, dropout_rate=0.0)
  return models.EncoderDecoderModel(t5.Transformer(config), vocabulary,
                                    vocabulary)


@pytest.fixture(scope='module')
def frozen():
  """(checkpoint path, parameters, the frozen model without a prompt)."""
  path = embedded.checkpoint_path()
  params = t5x.load_t5x(path)
  return path, params, _frozen_model(params)


@pytest.fixture(scope='module')
def tuned(tmp_path_factory, frozen):
  """{(task, seed): .npy path} of prompts tuned by `trainer.train_step`."""
  _, params, frozen_model = frozen
  model = models.EncoderDecoderModel(
      t5.Transformer(frozen_model.module.config, prompt_length=PROMPT_LENGTH),
      frozen_model.input_vocabulary, frozen_model.output_vocabulary)
  optimizer = trainer.adafactor(learning_rate=LEARNING_RATE)
  step = jax.jit(lambda trainable, state, batch: trainer.train_step(
      model, optimizer, trainable, params, state, batch, None)[:2])
  directory = tmp_path_factory.mktemp('prompts')
  files = {}
  # One data pipeline per task (building one is the slow part); each seed
  # gets its own initial prompt and the next batches of the stream.
  streams = {task: iter(trainer.train_dataset(task, LENGTHS, 8, 0)
                        .as_numpy_iterator())
             for task in (TOPIC, SENTIMENT)}
  for task, seed in [(TOPIC, 0), (TOPIC, 1), (TOPIC, 2), (SENTIMENT, 0)]:
    init = prompts.random_uniform()(jax.random.PRNGKey(seed),
                                    (PROMPT_LENGTH, 128))
    trainable = {'encoder': {'prompt': {'prompt': {'prompt': init}}}}
    state = optimizer.init(trainable)
    batches = streams[task]
    for _ in range(TRAIN_STEPS):
      trainable, state = step(trainable, state, next(batches))
    path = directory / f'{task}_seed{seed}.npy'
    prompt_files.save_prompt(trainable['encoder']['prompt']['prompt']['prompt'],
                            path)
    files[task, seed] = str(path)
  return files


def _topic_files(tuned):
  return [tuned[TOPIC, seed] for seed in range(3)]


@pytest.fixture(scope='module')
def ensembled(tmp_path_factory, frozen, tuned):
  """The topic ensemble of three prompts, evaluated and reported once."""
  path, _, model = frozen
  output_dir = tmp_path_factory.mktemp('ensemble')
  results = ensemble.evaluate_ensemble(
      model=model, initial_checkpoint_path=path,
      prompt_files=_topic_files(tuned), mixture_or_task_name=TOPIC,
      feature_lengths=LENGTHS, output_dir=str(output_dir),
      batch_size=BATCH, num_examples=NUM_EXAMPLES)
  assert [r.task for r in results] == [TOPIC]
  return results[0], output_dir


# ---------------------------------------------------------------------------
# Ensembles.
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_ensemble_scores_at_least_the_mean_of_its_members(ensembled):
  result, _ = ensembled
  assert result.num_prompts == 3 and result.num_examples == NUM_EXAMPLES
  # The members disagree somewhere, so the vote decides something.
  assert result.agreement() < 1.0
  accuracies = [m['accuracy'] for m in result.prompt_metrics]
  assert result.ensemble_metrics['accuracy'] >= np.mean(accuracies), (
      accuracies, result.ensemble_metrics)


@pytest.mark.slow
def test_one_ensembled_pass_equals_separate_evaluations(ensembled, frozen,
                                                        tuned):
  result, _ = ensembled
  _, params, model = frozen
  bank = inference.load_prompt_bank(_topic_files(tuned))
  task = task_utils.get_mixture_or_task(TOPIC)
  _, dataset = inference.task_examples(task, 'validation', LENGTHS,
                                       NUM_EXAMPLES)
  predict_fn = predict.make_predict_fn(model, batch_size=BATCH)
  with evaluation.Evaluator(model, TOPIC, feature_lengths=LENGTHS,
                            batch_size=BATCH,
                            num_examples=NUM_EXAMPLES) as evaluator:
    for i in range(3):
      alone = predict_fn(dataset, params, prompt=bank[i])
      assert [index for index, _ in alone] == list(range(NUM_EXAMPLES))
      np.testing.assert_array_equal(
          np.array([ids for _, ids in alone]), result.ids[:, i])
      metrics = evaluator.evaluate(params, 0, prompt=bank[i])[TOPIC]
      assert metrics == result.prompt_metrics[i]


@pytest.mark.slow
def test_rank_mode_ensemble_equals_rank_classification_alone(frozen, tuned):
  _, params, model = frozen
  bank = inference.load_prompt_bank(_topic_files(tuned))
  task = task_utils.get_mixture_or_task(TOPIC)
  labels = offline.LABELS['topic']
  result = ensemble.ensemble_task(
      model, params, bank, task, feature_lengths=LENGTHS, batch_size=BATCH,
      mode='rank', label_strings=labels, num_examples=BATCH)
  _, dataset = inference.task_examples(task, 'validation', LENGTHS, BATCH)
  rank_fn = predict.rank_classification_predict_fn(model, labels,
                                                      batch_size=BATCH)
  for i in range(3):
    alone = rank_fn(dataset, params, prompt=bank[i])
    assert [ids for _, ids in alone] == result.ids[:, i].tolist()
  assert all(set(p) <= set(range(len(labels))) for p in result.predictions)


@pytest.mark.slow
def test_report_has_table3_rows_and_files(ensembled, tuned):
  result, output_dir = ensembled
  report = (output_dir / ensemble.REPORT_MD).read_text()
  assert report == ensemble.format_report([result])
  rows = [line.split('|')[1].strip() for line in report.splitlines()
          if line.startswith('| ') and 'accuracy' not in line]
  assert [r.split(' (')[0] for r in rows] == [
      'prompt 1', 'prompt 2', 'prompt 3', 'average', 'best',
      '**ensemble**']
  summary = json.loads((output_dir / ensemble.REPORT_JSON).read_text())[TOPIC]
  assert [p['name'] for p in summary['prompts']] == _topic_files(tuned)
  accuracies = [p['metrics']['accuracy'] for p in summary['prompts']]
  assert summary['average']['accuracy'] == pytest.approx(np.mean(accuracies))
  assert summary['best']['metrics']['accuracy'] == max(accuracies)
  assert summary['ensemble'] == result.ensemble_metrics
  lines = [json.loads(line) for line in
           (output_dir / f'{TOPIC}.predictions.jsonl').read_text().splitlines()]
  assert len(lines) == NUM_EXAMPLES
  labels = offline.LABELS['topic']
  for line in lines:
    assert ensemble.majority_vote(line['predictions'])[0] == line['ensemble']
    assert line['predictions'][line['winner'] - 1] == line['ensemble']
  correct = sum(labels[l['ensemble']] == l['targets'] for l in lines
                if l['ensemble'] >= 0)
  assert 100 * correct / NUM_EXAMPLES == pytest.approx(
      summary['ensemble']['accuracy'])


@pytest.mark.slow
def test_report_command_reads_the_ensemble_json(ensembled, tuned):
  result, output_dir = ensembled
  read = runs.read_ensemble_report(str(output_dir / ensemble.REPORT_JSON))
  assert [name for name, _ in read.prompts] == _topic_files(tuned)
  assert [m[TOPIC] for _, m in read.prompts] == result.prompt_metrics
  assert read.average == {TOPIC: result.average_metrics()}
  assert read.best == {
      TOPIC: result.prompt_metrics[result.best_prompt()]}
  assert read.ensemble == {TOPIC: result.ensemble_metrics}
  assert f'| {TOPIC} | accuracy | 3 |' in report_tables.ensemble_table(read)


@pytest.mark.parametrize('predictions, winner, first', [
    (['a'], 'a', 0),
    (['a', 'b', 'b'], 'b', 1),
    (['b', 'a', 'a', 'b', 'c'], 'b', 0),   # tie 2-2: the earliest prompt's
    (['c', 'a', 'b'], 'c', 0),             # all differ: prompt 1's
    ([1, 2, 2, 1, 1], 1, 0),
    ([{'g': 1}, {'g': 2}, {'g': 2}], {'g': 2}, 1),  # unhashable values
    ([['x'], ['y'], ['y']], ['y'], 1),
])
def test_majority_vote(predictions, winner, first):
  assert ensemble.majority_vote(predictions) == (winner, first)


def test_expand_batch_repeats_examples_with_every_prompt():
  batch = {'encoder_input_tokens': np.array([[5, 6], [7, 0]]),
           'decoder_input_tokens': np.array([[0, 3], [0, 4]])}
  rows = jax.tree.map(np.asarray, ensemble.expand_batch(batch, 3))
  np.testing.assert_array_equal(rows['prompt_ids'], [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(rows['encoder_input_tokens'],
                                [[5, 6]] * 3 + [[7, 0]] * 3)
  with pytest.raises(ValueError, match='prompt_ids'):
    ensemble.expand_batch(rows, 2)


def test_prompt_bank_errors_name_the_file(tmp_path):
  good, wide = tmp_path / 'good.npy', tmp_path / 'wide.npy'
  np.save(good, np.zeros((5, 8), np.float32))
  np.save(wide, np.zeros((5, 9), np.float32))
  assert inference.load_prompt_bank([good, good]).shape == (2, 5, 8)
  with pytest.raises(ValueError, match=f'{wide} .* holds shape'):
    inference.load_prompt_bank([good, wide])
  with pytest.raises(ValueError, match='is empty'):
    inference.load_prompt_bank([])
  with pytest.raises(ValueError, match='expected a list'):
    inference.load_prompt_bank(str(good))
  with pytest.raises(FileNotFoundError, match='missing.npy'):
    inference.load_prompt_bank([tmp_path / 'missing.npy'])


@pytest.mark.slow
def test_benchmark_times_both_ways_on_the_same_batches(frozen, tuned):
  _, params, model = frozen
  bank = inference.load_prompt_bank(_topic_files(tuned))
  rng = np.random.RandomState(0)
  batch = {'encoder_input_tokens': rng.randint(3, 800, (4, 16)),
           'decoder_input_tokens': np.zeros((4, 4), np.int32)}
  result = ensemble_benchmarks.time_passes(model, params, bank, [batch], repeats=2)
  assert result['num_prompts'] == 3 and result['batch_size'] == 4
  assert len(result['ensembled_all']) == len(result['separate_all']) == 2
  assert result['speedup'] == pytest.approx(
      result['separate_seconds'] / result['ensembled_seconds'])
  assert result['same_outputs']
  assert 'speedup' in ensemble_benchmarks.format_benchmark(result)


@pytest.mark.slow
def test_ensemble_command_line_prints_the_report(tmp_path, tuned,
                                                 ensembled):
  result, _ = ensembled
  files = _topic_files(tuned)
  completed = commands.run(
      [sys.executable, '-m', 'prompt_tuning.ensemble',
       '--gin_file=embedded/prompt_ensemble.gin',
       f'--gin.PROMPT_FILES={files!r}',
       f"--gin.ENSEMBLE_OUTPUT_DIR='{tmp_path}'",
       f'--gin.BATCH_SIZE={BATCH}',
       f'--gin.ensemble.evaluate_ensemble.num_examples={NUM_EXAMPLES}'],
      capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert '| **ensemble** (majority vote) |' in completed.stdout
  summary = json.loads((tmp_path / ensemble.REPORT_JSON).read_text())[TOPIC]
  assert summary['ensemble'] == result.ensemble_metrics
  assert [p['metrics'] for p in summary['prompts']] == result.prompt_metrics


# ---------------------------------------------------------------------------
# Multi-task serving.
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_task_batch_returns_exactly_what_each_task_alone_returns(
    frozen, tuned):
  _, params, model = frozen
  names = [TOPIC, SENTIMENT]
  bank = inference.load_prompt_bank([tuned[TOPIC, 0], tuned[SENTIMENT, 0]])
  served = inference.serve_tasks(model, params, bank, names,
                                 feature_lengths=LENGTHS, batch_size=8,
                                 num_examples=13)
  # Round-robin: every batch of 8 rows holds both tasks.
  assert [r['task'] for r in served] == names * 13
  predict_fn = predict.make_predict_fn(model, batch_size=8)
  for k, name in enumerate(names):
    task = task_utils.get_mixture_or_task(name)
    _, dataset = inference.task_examples(task, 'validation', LENGTHS, 13)
    alone = predict_fn(dataset, params, prompt=bank[k])
    mine = [r for r in served if r['task'] == name]
    assert [r['index'] for r in mine] == [i for i, _ in alone]
    assert [r['tokens'] for r in mine] == [ids for _, ids in alone]
    labels = set(offline.LABELS[name.split('_')[-1]])
    assert sum(r['prediction'] in labels for r in mine) >= 10


@pytest.mark.slow
def test_serve_writes_what_infer_writes_for_each_task(tmp_path, frozen,
                                                      tuned):
  path, params, frozen_model = frozen
  files = {TOPIC: tuned[TOPIC, 1], SENTIMENT: tuned[SENTIMENT, 0]}
  served_file = tmp_path / 'served.jsonl'
  count = inference.serve(model=frozen_model, initial_checkpoint_path=path,
                          prompt_files=files, feature_lengths=LENGTHS,
                          output_file=str(served_file), batch_size=8,
                          num_examples=11)
  served = [json.loads(l) for l in served_file.read_text().splitlines()]
  assert count == len(served) == 22
  # The second task (row 1 of the bank) through `infer` with its prompt
  # file, as the infer command runs it.
  vocabulary = offline.vocabulary()
  model = models.EncoderDecoderModel(
      t5.Transformer(t5.config_from_params(params, dropout_rate=0.0),
                     prompt_length=PROMPT_LENGTH,
                     prompt_init=prompts.from_file(files[SENTIMENT])),
      vocabulary, vocabulary)
  alone_file = tmp_path / 'alone.jsonl'
  inference.infer(model=model, initial_checkpoint_path=path,
                  mixture_or_task_name=SENTIMENT, feature_lengths=LENGTHS,
                  output_file=str(alone_file), batch_size=8, num_examples=11)
  alone = [json.loads(l) for l in alone_file.read_text().splitlines()]
  mine = [{k: v for k, v in r.items() if k != 'task'} for r in served
          if r['task'] == SENTIMENT]
  assert mine == alone


@pytest.mark.parametrize('gin_file, function, bindings', [
    ('embedded/prompt_serve.gin', inference.serve,
     ["PROMPT_FILES = {'taskless_offline_topic': '/tmp/a.npy'}",
      "SERVE_OUTPUT_FILE = '/tmp/served.jsonl'"]),
    ('embedded/prompt_ensemble.gin', ensemble_benchmarks.benchmark,
     ["PROMPT_FILES = ['/tmp/a.npy', '/tmp/b.npy']",
      "ENSEMBLE_OUTPUT_DIR = '/tmp/ensemble'"]),
])
def test_gin_configs_bind_every_required_argument(gin_file, function,
                                                   bindings):
  gin.clear_config()
  try:
    gin_utils.parse_gin_flags(gin_utils.gin_search_paths(), [gin_file],
                              bindings)
    name = f'{function.__module__.split(".")[-1]}.{function.__name__}'
    model = gin.query_parameter(f'{name}.model').scoped_configurable_fn()
    assert model.module.prompt_length == 0  # the prompts come from files
    assert gin.query_parameter('%TASK_FEATURE_LENGTHS') == LENGTHS
  finally:
    gin.clear_config()


@pytest.mark.slow
def test_serve_rejects_a_bank_that_does_not_match_the_tasks(frozen, tuned):
  _, params, model = frozen
  bank = inference.load_prompt_bank(_topic_files(tuned))
  with pytest.raises(ValueError, match=r'expected \[2, P, H\]'):
    inference.serve_tasks(model, params, bank, [TOPIC, SENTIMENT],
                          feature_lengths=LENGTHS)
  with pytest.raises(ValueError, match='is a mixture'):
    inference.serve_tasks(model, params, bank[:1], ['offline_all'],
                          feature_lengths=LENGTHS)
