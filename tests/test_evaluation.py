"""Tests for prompt_tuning.training.evaluation with fake models whose outputs are known.

The fake model has `EncoderDecoderModel`'s methods but computes simple
functions of the batch, and counts how often each method is traced. Tasks are
registered per test under unique names from in-memory `FunctionDataSource`s
with a `ByteVocabulary` (token = byte + 3, EOS = 1).
"""
import collections
import dataclasses
import functools
import json
import os
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
import tensorflow as tf

from prompt_tuning.training import evaluation
from prompt_tuning.training import partitioning
from prompt_tuning.training import predict
from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')

VOCAB = seqio.ByteVocabulary()
LENGTHS = {'inputs': 8, 'targets': 12}
LABELS = ('negative', 'positive', 'other')


def _byte(ch):
  return ord(ch) + 3


@dataclasses.dataclass(frozen=True)
class FakeModel:
  """`EncoderDecoderModel`'s methods on simple rules.

  predict_batch: the target for inputs starting with 'e', else 'zz' + EOS;
    with `echo`, the encoder input times params['scale'] instead. Its score
    is the first input token.
  score_batch: the number of target tokens (sum of loss weights) times
    params['scale'].
  rank_classify: minus the distance between each label's and each input's
    first token (so the closest first letter wins).
  """
  traces: collections.Counter = dataclasses.field(
      default_factory=collections.Counter, compare=False)
  echo: bool = False
  input_vocabulary: seqio.Vocabulary = dataclasses.field(
      default_factory=lambda: VOCAB)
  output_vocabulary: seqio.Vocabulary = dataclasses.field(
      default_factory=lambda: VOCAB)

  def predict_batch(self, params, batch, rng=None, *, method='greedy',
                    num_decodes=1, temperature=1.0, topk=0, topp=0.0,
                    alpha=0.6, max_decode_length=None, prompt=None,
                    return_scores=False):
    del rng, method, num_decodes, temperature, topk, topp, alpha, prompt
    self.traces['predict_with_scores' if return_scores else 'predict'] += 1
    inputs = batch['encoder_input_tokens']
    if self.echo:
      tokens = (inputs * params['scale']).astype(jnp.int32)
    else:
      targets = batch['decoder_target_tokens']
      length = max_decode_length or targets.shape[1]
      garbage = jnp.zeros((inputs.shape[0], length), jnp.int32)
      garbage = garbage.at[:, :2].set(_byte('z')).at[:, 2].set(VOCAB.eos_id)
      keep = (inputs[:, 0] == _byte('e'))[:, None]
      tokens = jnp.where(keep, targets[:, :length], garbage)
    # Scores: the first input token.
    if return_scores:
      return tokens, inputs[:, 0].astype(jnp.float32)
    return tokens

  def score_batch(self, params, batch, prompt=None):
    del prompt
    self.traces['score'] += 1
    weights = batch['decoder_loss_weights'].astype(jnp.float32)
    return weights.sum(-1) * params['scale']

  def rank_classify(self, params, batch, label_token_ids, prompt=None):
    del params, prompt
    self.traces['rank'] += 1
    first = batch['encoder_input_tokens'][:, :1]     # [B, 1]
    return -jnp.abs(first - label_token_ids[None, :, 0]).astype(jnp.float32)


PARAMS = {'scale': jnp.ones((), jnp.int32)}


# ------------------------------------------------------------------------------
# Tasks.
# ------------------------------------------------------------------------------


@pytest.fixture
def register_task():
  """Registers in-memory tasks under unique names; removes them afterwards."""
  names = []

  def register(examples, metric_fns, postprocess_fn=None):
    name = f'test_evaluation_{uuid.uuid4().hex[:8]}'

    def dataset_fn(split, shuffle_files, seed=None):
      del split, shuffle_files, seed
      return tf.data.Dataset.from_tensor_slices({
          'inputs': [x for x, _ in examples],
          'targets': [y for _, y in examples],
      })

    features = {
        'inputs': seqio.Feature(VOCAB, add_eos=True),
        'targets': seqio.Feature(VOCAB, add_eos=True),
    }
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(dataset_fn, splits=['validation']),
        preprocessors=[seqio.preprocessors.tokenize,
                       seqio.preprocessors.append_eos],
        output_features=features,
        postprocess_fn=postprocess_fn,
        metric_fns=metric_fns)
    names.append(name)
    return name

  yield register
  for name in names:
    seqio.TaskRegistry.remove(name)


def _even_odd_examples(n):
  """Inputs 'e...' (model right) for even i, 'o...' (model wrong) for odd."""
  return [(f'{"eo"[i % 2]}{i}', LABELS[i % 2]) for i in range(n)]


def _classification_task(register_task, examples):
  return register_task(
      examples, [metrics.accuracy],
      postprocessors.string_label_to_class_id(LABELS))


# ------------------------------------------------------------------------------
# Model functions.
# ------------------------------------------------------------------------------


def _enumerated(n, width=5):
  # Row i is [i + 2, i + 3, ...], so each output row names its example.
  tokens = np.arange(n)[:, None] + 2 + np.arange(width)[None, :]
  features = {
      'encoder_input_tokens': tokens.astype(np.int32),
      'decoder_target_tokens': tokens.astype(np.int32),
      'decoder_loss_weights': np.ones_like(tokens, np.int32),
      'targets_pretokenized': np.array([b'x'] * n),  # never reaches the model
  }
  return tf.data.Dataset.from_tensor_slices(features).enumerate(), tokens


@pytest.mark.parametrize('n,batch_size', [(7, 3), (6, 3), (2, 4), (1, 1),
                                          (0, 2)])
def test_predict_fn_predicts_every_example_once_in_order(n, batch_size):
  model = FakeModel(echo=True)
  predict_fn = predict.make_predict_fn(model, batch_size=batch_size)
  dataset, tokens = _enumerated(n)
  outputs = predict_fn(dataset, PARAMS)
  assert [i for i, _ in outputs] == list(range(n))
  for i, row in outputs:
    assert isinstance(row, list) and all(isinstance(t, int) for t in row)
    assert row == tokens[i].tolist()
  # The same function with new parameter values: still one compilation.
  outputs = predict_fn(dataset, {'scale': jnp.full((), 2, jnp.int32)})
  assert [row for _, row in outputs] == (2 * tokens).tolist()
  assert model.traces['predict'] == (1 if n else 0)


def test_predict_fn_accepts_a_dataset_without_indices():
  predict_fn = predict.make_predict_fn(FakeModel(echo=True), batch_size=4)
  dataset, tokens = _enumerated(5)
  bare = dataset.map(lambda index, features: features)
  outputs = predict_fn(bare, PARAMS)
  assert [i for i, _ in outputs] == list(range(5))
  assert [row for _, row in outputs] == tokens.tolist()


def test_predict_fn_on_a_mesh_matches_without():
  mesh = partitioning.create_mesh()
  batch_size = mesh.shape['data']
  dataset, tokens = _enumerated(3)
  predict_fn = predict.make_predict_fn(FakeModel(echo=True),
                                          batch_size=batch_size, mesh=mesh)
  assert [row for _, row in predict_fn(dataset, PARAMS)] == tokens.tolist()


def test_score_fn_scores_every_example():
  model = FakeModel()
  score_fn = predict.make_score_fn(model, batch_size=2)
  dataset, _ = _enumerated(5, width=4)
  scores = score_fn(dataset, {'scale': jnp.full((), 0.5)})
  assert scores == [(i, 2.0) for i in range(5)]
  assert model.traces['score'] == 1


def test_label_token_ids_appends_eos_and_pads():
  ids = predict.label_token_ids(VOCAB, ['ab', 'c'])
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(
      ids, [[_byte('a'), _byte('b'), 1], [_byte('c'), 1, 0]])


@pytest.mark.parametrize('labels', [(), 'positive', ('a', 'a')])
def test_label_token_ids_rejects_bad_labels(labels):
  with pytest.raises(ValueError, match='label_strings'):
    predict.label_token_ids(VOCAB, labels)


def test_rank_classification_picks_the_highest_scoring_label():
  model = FakeModel()
  predict_fn = predict.rank_classification_predict_fn(model, LABELS,
                                                         batch_size=2)
  inputs = ['p', 'n', 'o', 'q', 'a']   # 'q' is closest to 'p'; 'a' to 'n'.
  tokens = np.array([[_byte(s), 1] for s in inputs], np.int32)
  dataset = tf.data.Dataset.from_tensor_slices(
      {'encoder_input_tokens': tokens}).enumerate()
  outputs = predict_fn(dataset, PARAMS)
  decoded = [VOCAB.decode(row) for _, row in outputs]
  assert decoded == ['positive', 'negative', 'other', 'positive', 'negative']
  pairs, aux = predict_fn(dataset, PARAMS, with_aux=True)
  assert pairs == outputs
  np.testing.assert_allclose(
      aux['scores'][0],
      [-abs(_byte('p') - _byte(label[0])) for label in LABELS])
  assert model.traces['rank'] == 1


def test_rank_classification_ties_go_to_the_first_label():
  # 'negative' and 'neutral' share the first token, so they tie.
  predict_fn = predict.rank_classification_predict_fn(
      FakeModel(), ('positive', 'neutral', 'negative'), batch_size=1)
  dataset = tf.data.Dataset.from_tensor_slices(
      {'encoder_input_tokens': np.array([[_byte('n')]], np.int32)}).enumerate()
  assert VOCAB.decode(predict_fn(dataset, PARAMS)[0][1]) == 'neutral'


@pytest.mark.parametrize('kwargs,match', [
    (dict(decode_kwargs={'beam_size': 4}), 'beam_size'),
    (dict(batch_size=0), 'batch_size'),
])
def test_make_predict_fn_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    predict.make_predict_fn(FakeModel(), **kwargs)


# ------------------------------------------------------------------------------
# The evaluator on seqio tasks.
# ------------------------------------------------------------------------------


def test_decode_evaluation_accuracy_and_files(register_task, tmp_path):
  task = _classification_task(register_task, _even_odd_examples(10))
  model = FakeModel()
  evaluator = evaluation.Evaluator(
      model, task, feature_lengths=LENGTHS, batch_size=4, mode='decode',
      decode_kwargs={'method': 'greedy'}, model_dir=str(tmp_path))
  assert evaluator.task_names == (task,)
  for step in (10, 20):
    results = evaluator.evaluate(PARAMS, step)
    assert results == {task: {'accuracy': pytest.approx(50.0)}}
  evaluator.close()
  # 10 examples in batches of 4: three batches, one compilation in all.
  assert model.traces['predict'] == 1

  eval_dir = tmp_path / 'eval'
  records = evaluation.read_metrics_jsonl(str(eval_dir / 'metrics.jsonl'))
  assert records == [
      {'step': 10, 'task': task, 'metrics': {'accuracy': 50.0}},
      {'step': 20, 'task': task, 'metrics': {'accuracy': 50.0}},
  ]
  assert any(name.startswith('events') for name in os.listdir(eval_dir / task))


def test_decode_evaluation_of_a_partial_last_batch(register_task):
  # 7 examples, batch 3: the last batch holds 1 example and 2 of padding.
  task = _classification_task(register_task, _even_odd_examples(7))
  results = evaluation.evaluate(FakeModel(), PARAMS, task,
                                feature_lengths=LENGTHS, batch_size=3)
  assert results[task]['accuracy'] == pytest.approx(100.0 * 4 / 7)


def test_rank_evaluation_maps_through_the_postprocessor(register_task,
                                                        tmp_path):
  # The model picks the label sharing the input's first letter; examples 3
  # and 5 have another target, so 6 of 8 are right.
  examples = [('p0', 'positive'), ('n1', 'negative'), ('o2', 'other'),
              ('p3', 'negative'), ('n4', 'negative'), ('o5', 'positive'),
              ('p6', 'positive'), ('o7', 'other')]
  task = _classification_task(register_task, examples)
  model = FakeModel()
  results = evaluation.evaluate(
      model, PARAMS, task, feature_lengths=LENGTHS, batch_size=3,
      mode='rank', step=5, label_strings={task: LABELS},
      eval_dir=str(tmp_path / 'rank_eval'))
  assert results == {task: {'accuracy': pytest.approx(75.0)}}
  assert model.traces == {'rank': 1}
  records = evaluation.read_metrics_jsonl(
      str(tmp_path / 'rank_eval' / 'metrics.jsonl'))
  assert records == [{'step': 5, 'task': task,
                      'metrics': {'accuracy': 75.0}}]


def test_score_metrics_use_the_score_fn(register_task):
  def mean_score(targets, scores):
    del targets
    return {'mean_score': float(np.mean(scores))}

  # Target lengths 2, 3, 4 bytes plus EOS.
  task = register_task([('a', 'xy'), ('b', 'xyz'), ('c', 'wxyz')],
                       [mean_score])
  results = evaluation.evaluate(FakeModel(), {'scale': jnp.ones(())}, task,
                                feature_lengths=LENGTHS, batch_size=2)
  assert results[task]['mean_score'] == pytest.approx(4.0)


def test_evaluation_of_several_tasks(register_task):
  first = _classification_task(register_task, _even_odd_examples(4))
  second = _classification_task(register_task,
                                [('e0', 'positive'), ('e1', 'other')])
  model = FakeModel()
  with evaluation.Evaluator(model, [first, second], feature_lengths=LENGTHS,
                            batch_size=2) as evaluator:
    results = evaluator.evaluate(PARAMS, 1)
  assert results == {first: {'accuracy': pytest.approx(50.0)},
                     second: {'accuracy': pytest.approx(100.0)}}
  # Both tasks have the same feature lengths: one compilation.
  assert model.traces['predict'] == 1
  assert evaluation.selection_score(results) == pytest.approx(75.0)


@pytest.mark.parametrize('kwargs,match', [
    (dict(mode='beam'), 'mode'),
    (dict(mode='rank'), 'label_strings'),
    (dict(mode='rank', label_strings={'another_task': LABELS}),
     'no labels for task'),
    (dict(split='test'), 'split'),
])
def test_evaluator_rejects_bad_arguments(register_task, kwargs, match):
  task = _classification_task(register_task, _even_odd_examples(2))
  with pytest.raises(ValueError, match=match):
    evaluation.Evaluator(FakeModel(), task, feature_lengths=LENGTHS,
                         batch_size=2, **kwargs)


# ------------------------------------------------------------------------------
# Best-step tracking.
# ------------------------------------------------------------------------------


def _metrics(accuracy, f1=None):
  task = {'accuracy': accuracy}
  if f1 is not None:
    task['f1'] = f1
  return {'task_a': task}


def _read_best(model_dir):
  with open(os.path.join(model_dir, 'best_prompt.json')) as f:
    record = json.load(f)
  return record, np.load(os.path.join(model_dir, 'best_prompt.npy'))


def test_best_tracker_keeps_the_best_and_the_earlier_of_ties(tmp_path):
  model_dir = str(tmp_path)
  tracker = evaluation.BestCheckpointTracker(model_dir)
  prompts = {step: np.full((2, 3), step, np.float32)
             for step in (100, 200, 300, 400)}
  # Scores: 50, mean(60, 80) = 70, 70 (tie: keeps 200), 60.
  updates = [(100, _metrics(50.0)), (200, _metrics(60.0, 80.0)),
             (300, _metrics(70.0, 70.0)), (400, _metrics(60.0, 60.0))]
  is_best = [tracker.update(step, m, prompts[step]) for step, m in updates]
  assert is_best == [True, True, False, False]
  assert (tracker.best_step, tracker.best_score) == (200, 70.0)
  record, prompt = _read_best(model_dir)
  assert record == {'step': 200, 'score': 70.0,
                    'metrics': {'task_a': {'accuracy': 60.0, 'f1': 80.0}}}
  np.testing.assert_array_equal(prompt, prompts[200])
  assert not [f for f in os.listdir(model_dir) if '.tmp' in f]

  # A restart resumes from the json: a later tie does not replace step 200,
  # an earlier step with the same score does, and a higher score does.
  resumed = evaluation.BestCheckpointTracker(model_dir)
  assert (resumed.best_step, resumed.best_score) == (200, 70.0)
  assert not resumed.update(500, _metrics(70.0), np.zeros((2, 3)))
  np.testing.assert_array_equal(_read_best(model_dir)[1], prompts[200])
  assert resumed.update(150, _metrics(70.0), np.ones((2, 3)))
  assert resumed.update(600, _metrics(90.0), np.full((2, 3), 6.0))
  record, prompt = _read_best(model_dir)
  assert (record['step'], record['score']) == (600, 90.0)
  np.testing.assert_array_equal(prompt, np.full((2, 3), 6.0))

  fresh = evaluation.BestCheckpointTracker(model_dir, restore=False)
  assert fresh.best_step is None


def test_best_tracker_scores_a_mixture_as_the_mean_over_tasks(tmp_path):
  tracker = evaluation.BestCheckpointTracker(str(tmp_path))
  all_metrics = {'a': {'accuracy': 80.0},
                 'b': {'f1': 40.0, 'exact_match': 20.0}}
  assert tracker.update(1, all_metrics, np.zeros((1, 2)))
  assert tracker.best_score == pytest.approx((80.0 + 30.0) / 2)


def test_best_tracker_rejects_a_malformed_json(tmp_path):
  (tmp_path / 'best_prompt.json').write_text('{"score": 1.0}')
  with pytest.raises(ValueError, match='best_prompt.json'):
    evaluation.BestCheckpointTracker(str(tmp_path))


def test_selection_score_rejects_empty_metrics():
  with pytest.raises(ValueError):
    evaluation.selection_score({})
  with pytest.raises(ValueError):
    evaluation.selection_score({'task': {}})


def test_progress_is_logged_every_n_batches(caplog):
  predict_fn = predict.make_predict_fn(FakeModel(echo=True), batch_size=2,
                                          log_every=2)
  dataset, _ = _enumerated(9)
  with caplog.at_level('INFO', logger='absl'):
    predict_fn(dataset, PARAMS, description='progress check')
  lines = [r.getMessage() for r in caplog.records
           if 'progress check' in r.getMessage()]
  # Batches of 2 over 9 examples: logs after batches 2 and 4, then a total.
  assert [line.split(':')[1].split(',')[0].strip() for line in lines[:2]] == [
      '4/9 examples', '8/9 examples']
  assert 'progress check: 9 examples in' in lines[-1]


@pytest.mark.parametrize('mode', ['decode', 'rank'])
def test_aux_metrics_get_the_scores(register_task, mode):
  def mean_aux_score(targets, predictions, aux_values):
    del targets, predictions
    return {'mean_aux_score': float(np.mean(aux_values['scores']))}

  examples = [('e0', 'positive'), ('n1', 'negative'), ('p2', 'positive')]
  task = register_task(examples, [mean_aux_score])
  model = FakeModel()
  results = evaluation.evaluate(model, PARAMS, task, feature_lengths=LENGTHS,
                                batch_size=2, mode=mode, label_strings=LABELS)
  first = np.array([_byte(x[0]) for x, _ in examples], np.float32)
  if mode == 'decode':
    expected = first.mean()  # the fake decode's score
  else:  # mean over examples and labels of -|first letters' distance|
    labels = np.array([_byte(label[0]) for label in LABELS], np.float32)
    expected = -np.abs(first[:, None] - labels[None, :]).mean()
  assert results[task]['mean_aux_score'] == pytest.approx(float(expected))


def test_train_evaluator_tracks_the_best_prompt(register_task, tmp_path):
  task = _classification_task(register_task, _even_odd_examples(4))
  evaluator = evaluation.Evaluator(FakeModel(), task, feature_lengths=LENGTHS,
                                   batch_size=2, model_dir=str(tmp_path))
  tracker = evaluation.BestCheckpointTracker(str(tmp_path))
  callback = evaluation.make_train_evaluator(evaluator, tracker)
  prompt = np.arange(6, dtype=np.float32).reshape(2, 3)
  trainable = {'encoder': {'prompt': {'prompt': {'prompt': prompt}}}}
  results = callback(7, PARAMS, trainable)
  evaluator.close()
  assert results == {task: {'accuracy': pytest.approx(50.0)}}
  record, saved = _read_best(str(tmp_path))
  assert (record['step'], record['score']) == (7, 50.0)
  np.testing.assert_array_equal(saved, prompt)


# ------------------------------------------------------------------------------
# With the real model (a tiny T5 with random weights).
# ------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_model_and_params():
  from prompt_tuning.model import models  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import t5  # pylint: disable=g-import-not-at-top
  config = t5.T5Config(vocab_size=VOCAB.vocab_size, emb_dim=13, num_heads=3,
                       head_dim=5, mlp_dim=11, num_encoder_layers=1,
                       num_decoder_layers=1, relative_attention_num_buckets=8,
                       relative_attention_max_distance=16, dropout_rate=0.0)
  model = models.EncoderDecoderModel(
      module=t5.Transformer(config, prompt_length=2), input_vocabulary=VOCAB,
      output_vocabulary=VOCAB)
  params = partitioning.unbox(jax.jit(model.init)(jax.random.PRNGKey(0)))
  return model, params


def _input_batch(n, length=6, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, VOCAB.vocab_size, size=(n, length)).astype(np.int32)
  tokens[:, -1] = 0  # padding
  return tokens


def test_real_model_rank_matches_the_best_score(tiny_model_and_params):
  model, params = tiny_model_and_params
  labels = ('ab', 'cd', 'ef', 'gh')  # equal lengths: no label wins by length
  inputs = _input_batch(7)
  predict_fn = predict.rank_classification_predict_fn(model, labels,
                                                         batch_size=2)
  dataset = tf.data.Dataset.from_tensor_slices(
      {'encoder_input_tokens': inputs}).enumerate()
  predicted = [VOCAB.decode(row) for _, row in predict_fn(dataset, params)]

  # The same choice from score_batch with each label as the target.
  label_ids = predict.label_token_ids(VOCAB, labels)
  score = jax.jit(model.score_batch)
  scores = []
  for row in label_ids:
    targets = np.tile(row, (len(inputs), 1))
    batch = {'encoder_input_tokens': inputs, 'decoder_target_tokens': targets,
             'decoder_input_tokens': np.pad(targets[:, :-1], ((0, 0), (1, 0))),
             'decoder_loss_weights': (targets > 0).astype(np.int32)}
    scores.append(np.asarray(score(params, batch)))
  expected = [labels[c] for c in np.argmax(np.stack(scores, -1), -1)]
  assert len(set(expected)) > 1  # the inputs do not all pick one label
  assert predicted == expected


def test_real_model_decodes_the_same_in_padded_batches(tiny_model_and_params):
  model, params = tiny_model_and_params
  inputs = _input_batch(5, seed=1)
  targets = np.zeros((5, 4), np.int32)
  features = {'encoder_input_tokens': inputs, 'decoder_input_tokens': targets,
              'decoder_target_tokens': targets,
              'decoder_loss_weights': targets}
  dataset = tf.data.Dataset.from_tensor_slices(features).enumerate()
  predict_fn = predict.make_predict_fn(model, {'method': 'greedy'},
                                          batch_size=2)
  outputs, aux = predict_fn(dataset, params, with_aux=True)
  # One batch of all 5, no padding.
  whole, scores = jax.jit(functools.partial(model.predict_batch,
                                            return_scores=True))(params,
                                                                 features)
  assert [row for _, row in outputs] == np.asarray(whole).tolist()
  np.testing.assert_allclose(aux['scores'], scores, rtol=1e-5)
