"""The trainer's invariants, checkpoints, resumption and errors.

In-process runs use the shipped embedded model as the frozen checkpoint; the
command-line runs are in tests/test_main_job.py.
"""
import os

import flax
import jax
import numpy as np
import pytest

from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import t5x
from prompt_tuning.methods import presets
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.tasks import offline
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.training import trainer

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')

TASK = 'taskless_offline_topic'
LENGTHS = {'inputs': 16, 'targets': 4}


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


@pytest.fixture(scope='module')
def frozen_checkpoint():
  path = embedded.checkpoint_path()
  return path, t5x.load_t5x(path)


def _model(params, prompt_length=5):
  config = t5.config_from_params(params, dropout_rate=0.0)
  vocabulary = offline.vocabulary()
  return models.EncoderDecoderModel(
      t5.Transformer(config, prompt_length=prompt_length), vocabulary,
      vocabulary)


def _train(model_dir, checkpoint, model, **overrides):
  kwargs = dict(model=model, mixture_or_task_name=TASK,
                task_feature_lengths=LENGTHS, batch_size=8, train_steps=6,
                model_dir=str(model_dir), initial_checkpoint_path=checkpoint,
                log_period=3, checkpoint_period=3, eval_period=0,
                eval_mode='rank', eval_num_examples=16, eval_batch_size=8,
                class_labels=offline.LABELS['topic'])
  kwargs.update(overrides)
  return trainer.train(**kwargs)


@pytest.fixture(scope='module')
def prompt_run(tmp_path_factory, frozen_checkpoint):
  path, params = frozen_checkpoint
  model_dir = tmp_path_factory.mktemp('prompt_run')
  result = _train(model_dir, path, _model(params))
  return model_dir, result


def test_split_and_merge_round_trip(frozen_checkpoint):
  _, params = frozen_checkpoint
  trainable, frozen = trainer.split_params(params, [r'.*layer_norm.*'])
  assert all('layer_norm' in n for n in _flat(trainable))
  assert not any('layer_norm' in n for n in _flat(frozen))
  merged = trainer.merge_params(trainable, frozen)
  assert _flat(merged).keys() == _flat(params).keys()
  everything, nothing = trainer.split_params(params, [presets.MODEL_TUNING_REGEX])
  assert not nothing and len(_flat(everything)) == len(_flat(params))


@pytest.mark.slow
def test_train_step_changes_only_trainable_and_has_no_frozen_state(
    frozen_checkpoint):
  _, params = frozen_checkpoint
  model = _model(params, prompt_length=3)
  init = flax.core.meta.unbox(model.init(jax.random.PRNGKey(0)))
  full = {**_flat(params), **{k: v for k, v in _flat(init).items()
                               if 'prompt' in k}}
  trainable, frozen = trainer.split_params(flax.traverse_util.unflatten_dict(
      full, sep='/'), [prompts.PROMPT_REGEX])
  assert list(_flat(trainable)) == ['encoder/prompt/prompt/prompt']
  optimizer = trainer.adafactor()
  opt_state = optimizer.init(trainable)
  rng = np.random.RandomState(0)
  batch = {'encoder_input_tokens': rng.randint(3, 800, (4, 10)),
           'decoder_input_tokens': np.pad(rng.randint(3, 800, (4, 2)),
                                          ((0, 0), (1, 0))),
           'decoder_target_tokens': np.pad(rng.randint(3, 800, (4, 2)),
                                           ((0, 0), (0, 1)),
                                           constant_values=1),
           'decoder_loss_weights': np.ones((4, 3), np.float32)}
  new_trainable, new_state, metrics = jax.jit(
      lambda t, f, s, b: trainer.train_step(model, optimizer, t, f, s, b,
                                            None))(trainable, frozen,
                                                   opt_state, batch)
  assert np.isfinite(metrics['loss'])
  assert not np.allclose(new_trainable['encoder']['prompt']['prompt']['prompt'],
                         trainable['encoder']['prompt']['prompt']['prompt'])
  # Optimizer state: prompt-sized, nothing for the frozen model.
  state_values, _ = trainer.count_params(new_state)
  prompt_values = 3 * model.module.config.emb_dim
  assert state_values <= prompt_values + 16


def test_frozen_parameters_bit_identical_after_training(prompt_run,
                                                        frozen_checkpoint):
  _, params = frozen_checkpoint
  model_dir, result = prompt_run
  assert result.step == 6
  assert list(_flat(result.trainable)) == ['encoder/prompt/prompt/prompt']
  # The frozen model is never written: nothing but the prompt is on disk.
  state_dir = os.path.join(model_dir, 'train_state')
  saved = os.listdir(state_dir)
  assert '6' in saved
  for name in ('numpy_checkpoints/checkpoint_3', 'numpy_checkpoints/checkpoint_6'):
    assert os.listdir(os.path.join(model_dir, name)) == [
        'encoder.prompt.prompt.prompt.npy']
  # And the checkpoint we started from is untouched.
  again = t5x.load_t5x(embedded.checkpoint_path())
  for name, value in _flat(params).items():
    np.testing.assert_array_equal(_flat(again)[name], value)


def test_restored_train_state_holds_trainable_only(prompt_run):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  model_dir, result = prompt_run
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(model_dir, 'train_state', '6', 'default'))
  assert int(restored['step']) == 6
  assert list(_flat(restored['trainable'])) == ['encoder/prompt/prompt/prompt']
  np.testing.assert_array_equal(
      _flat(restored['trainable'])['encoder/prompt/prompt/prompt'],
      _flat(result.trainable)['encoder/prompt/prompt/prompt'])
  values, _ = trainer.count_params(restored['opt_state'])
  assert values < 5 * 128 + 16  # Adafactor's factored statistics


def test_numpy_prompt_and_best_prompt_files(prompt_run):
  model_dir, result = prompt_run
  last = np.load(os.path.join(model_dir, 'numpy_checkpoints', 'checkpoint_6',
                              'encoder.prompt.prompt.prompt.npy'))
  np.testing.assert_array_equal(
      last, _flat(result.trainable)['encoder/prompt/prompt/prompt'])
  assert np.load(os.path.join(model_dir, 'best_prompt.npy')).shape == (5, 128)
  import json  # pylint: disable=g-import-not-at-top
  best = json.load(open(os.path.join(model_dir, 'best_prompt.json')))
  assert best['step'] == 6 and TASK in best['metrics']
  lines = open(os.path.join(model_dir, 'eval', 'metrics.jsonl')).read().split()
  assert lines


def test_resuming_a_finished_run_does_nothing_more(prompt_run,
                                                   frozen_checkpoint):
  path, params = frozen_checkpoint
  model_dir, result = prompt_run
  again = _train(model_dir, path, _model(params), eval_mode=None)
  assert again.step == 6
  np.testing.assert_array_equal(
      _flat(again.trainable)['encoder/prompt/prompt/prompt'],
      _flat(result.trainable)['encoder/prompt/prompt/prompt'])
  assert again.finished_before and not result.finished_before
  # With its evaluation configured, it reports what the run recorded.
  reported = _train(model_dir, path, _model(params))
  assert reported.finished_before and reported.metrics == {}
  assert reported.eval_history == result.eval_history
  assert reported.best_step == result.best_step == 6
  assert reported.best_metrics == result.best_metrics


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted(tmp_path, frozen_checkpoint):
  path, params = frozen_checkpoint
  straight = _train(tmp_path / 'straight', path, _model(params),
                    eval_mode=None, train_steps=8, checkpoint_period=4)
  _train(tmp_path / 'split', path, _model(params), eval_mode=None,
         train_steps=4, checkpoint_period=4)
  resumed = _train(tmp_path / 'split', path, _model(params), eval_mode=None,
                   train_steps=8, checkpoint_period=4)
  np.testing.assert_array_equal(
      _flat(resumed.trainable)['encoder/prompt/prompt/prompt'],
      _flat(straight.trainable)['encoder/prompt/prompt/prompt'])


def test_missing_initial_checkpoint_is_named(tmp_path, frozen_checkpoint):
  _, params = frozen_checkpoint
  with pytest.raises(FileNotFoundError, match='INITIAL_CHECKPOINT_PATH .*nowhere'):
    _train(tmp_path, str(tmp_path / 'nowhere'), _model(params))


def test_unregistered_task_lists_close_names(tmp_path, frozen_checkpoint):
  path, params = frozen_checkpoint
  with pytest.raises(ValueError, match='taskless_offline_topic'):
    _train(tmp_path, path, _model(params),
           mixture_or_task_name='taskless_offline_topik')


def test_trainable_regex_matching_nothing(tmp_path, frozen_checkpoint):
  path, params = frozen_checkpoint
  with pytest.raises(ValueError, match='match no parameter'):
    _train(tmp_path, path, _model(params), trainable_regexes=['nothing/.*'])


def test_prompt_file_of_wrong_shape_is_named(tmp_path, frozen_checkpoint):
  path, params = frozen_checkpoint
  prompt_file = tmp_path / 'prompt.npy'
  np.save(prompt_file, np.zeros((7, 128), np.float32))
  config = t5.config_from_params(params, dropout_rate=0.0)
  model = models.EncoderDecoderModel(
      t5.Transformer(config, prompt_length=5,
                     prompt_init=prompts.from_file(str(prompt_file))),
      offline.vocabulary(), offline.vocabulary())
  with pytest.raises(ValueError) as error:
    _train(tmp_path / 'run', path, model)
  assert 'prompt.npy' in str(error.value)
  assert '(7, 128)' in str(error.value) and '(5, 128)' in str(error.value)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, frozen_checkpoint):
  path, params = frozen_checkpoint
  model_dir = tmp_path / 'run'
  _train(model_dir, path, _model(params), eval_mode=None, train_steps=3,
         checkpoint_period=3)
  good = np.load(model_dir / 'numpy_checkpoints' / 'checkpoint_3' /
                 'encoder.prompt.prompt.prompt.npy')
  with pytest.raises(FloatingPointError, match='non-finite loss'):
    _train(model_dir, path, _model(params), eval_mode=None, train_steps=9,
           checkpoint_period=3,
           optimizer=trainer.adafactor(learning_rate=float('inf')))
  assert sorted(os.listdir(model_dir / 'train_state')) == ['3', 'data']
  assert sorted(os.listdir(model_dir / 'numpy_checkpoints')) == [
      'checkpoint_3']
  np.testing.assert_array_equal(
      np.load(model_dir / 'numpy_checkpoints' / 'checkpoint_3' /
              'encoder.prompt.prompt.prompt.npy'), good)


def test_assignment_map_first_matching_rule_wins(tmp_path, frozen_checkpoint):
  """A parameter renamed by an earlier rule is loaded, not initialised."""
  path, params = frozen_checkpoint
  model = _model(params, prompt_length=0)
  abstract = flax.core.meta.unbox(jax.eval_shape(model.init,
                                                 jax.random.PRNGKey(0)))
  setup = setup_lib.setup_model(
      model, path, assignment_map=[
          (r'encoder/encoder_norm/scale', r'decoder/decoder_norm/scale'),
          (r'encoder/.*_norm/scale', None)], seed=0)
  loaded = _flat(setup.params)
  np.testing.assert_array_equal(loaded['encoder/encoder_norm/scale'],
                                params['decoder']['decoder_norm']['scale'])
  # The second rule applies to the other encoder norms: freshly initialised
  # (T5 initialises norm scales to one).
  np.testing.assert_array_equal(
      loaded['encoder/layers_0/pre_mlp_layer_norm/scale'],
      np.ones_like(params['encoder']['layers_0']['pre_mlp_layer_norm']['scale']))
  assert set(loaded) == set(_flat(abstract))


def test_prompt_diagnostics_reach_tensorboard(prompt_run):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model_dir, _ = prompt_run
  tags = set()
  for event_file in tf.io.gfile.glob(os.path.join(model_dir, 'train',
                                                  'events.*')):
    for event in tf.compat.v1.train.summary_iterator(event_file):
      tags.update(v.tag for v in event.summary.value)
  assert {'prompt/norm', 'prompt/drift_l2', 'prompt/norm_ratio',
          'prompt/nearest_neighbours'} <= tags, tags
  assert 'loss_per_token' in tags


@pytest.mark.slow
def test_best_step_is_selected_on_the_named_tasks_only(tmp_path,
                                                       frozen_checkpoint):
  import json  # pylint: disable=g-import-not-at-top
  path, params = frozen_checkpoint
  tasks = ['taskless_offline_topic', 'taskless_offline_sentiment']
  result = _train(tmp_path / 'run', path, _model(params), train_steps=2,
                  eval_mode='decode', eval_mixture_or_task_name=tasks,
                  eval_num_examples=8,
                  selection_tasks=['taskless_offline_sentiment'])
  best = json.loads((tmp_path / 'run' / 'best_prompt.json').read_text())
  assert set(best['metrics']) == {'taskless_offline_sentiment'}
  assert best['score'] == best['metrics']['taskless_offline_sentiment'][
      'accuracy']
  assert set(result.eval_history[-1]['metrics']) == set(tasks)
  with pytest.raises(ValueError, match='not evaluated'):
    _train(tmp_path / 'other', path, _model(params), train_steps=2,
           eval_mode='decode', eval_num_examples=8,
           selection_tasks=['taskless_offline_weekend'])


@pytest.mark.slow
def test_zero_shot_evaluation_is_the_frozen_model_without_prompt(
    tmp_path, frozen_checkpoint):
  from prompt_tuning.training import evaluation  # pylint: disable=g-import-not-at-top
  path, params = frozen_checkpoint
  result = _train(tmp_path, path, _model(params), train_steps=1,
                  eval_zero_shot=True)
  expected = evaluation.evaluate(
      _model(params, prompt_length=0), params, TASK,
      feature_lengths=LENGTHS, batch_size=8, mode='rank',
      label_strings=offline.LABELS['topic'], num_examples=16)
  assert result.zero_shot_metrics == expected
  # Only the prompted model's evaluations are written to MODEL_DIR/eval.
  assert 0 not in {r['step'] for r in evaluation.read_metrics_jsonl(
      os.path.join(tmp_path, 'eval', 'metrics.jsonl'))}


@pytest.mark.slow
def test_zero_shot_evaluation_needs_a_prompt_and_an_evaluation(
    tmp_path, frozen_checkpoint):
  path, params = frozen_checkpoint
  with pytest.raises(ValueError, match='eval_mode is None'):
    _train(tmp_path / 'a', path, _model(params), train_steps=1,
           eval_mode=None, eval_zero_shot=True)
  with pytest.raises(ValueError, match='prompt_length is 0'):
    _train(tmp_path / 'b', path, _model(params, prompt_length=0),
           train_steps=1, eval_zero_shot=True,
           trainable_regexes=[presets.MODEL_TUNING_REGEX])
