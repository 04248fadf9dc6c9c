"""Linear probes of a frozen encoder: pooling, the fit, and the command."""
import dataclasses
import json

import numpy as np
import pytest
import seqio

from prompt_tuning import probe
from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import run_dir
from prompt_tuning.cli import gin_utils
from prompt_tuning.experiments import probe as probe_lib
from prompt_tuning.training import run_record
from prompt_tuning.training import train_state

# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')


def _main(args):
  """Runs the command's main on its own flag registry, as `python -m` would."""
  argv, flag_values = gin_utils.parse_args(probe.define_flags, args)
  return probe.main(argv, flag_values)


def test_the_commands_copies_of_sizes_and_kinds_are_the_packages():
  assert probe.CORPUS_SIZES == embedded.SIZES
  assert probe.CORPUS_KINDS == embedded.KINDS


def test_features_ignore_padding(tiny_config, tiny_params):
  encoder = probe_lib.make_encoder(tiny_config)
  tokens = np.array([[5, 6, 7, 1, 0], [9, 1, 0, 0, 0]], np.int32)
  features = probe_lib.encoder_features(encoder, tiny_params, tokens,
                                        batch_size=2)
  padded = probe_lib.encoder_features(
      encoder, tiny_params, probe_lib.pad_to(tokens, 9), batch_size=2)
  assert features.shape == (2, 2 * tiny_config.emb_dim)
  np.testing.assert_allclose(features, padded, rtol=1e-5, atol=1e-6)
  # A batch of 3 runs as 2 + 2 with an empty row: the same features.
  three = probe_lib.encoder_features(
      encoder, tiny_params, np.concatenate([tokens, tokens[:1]]),
      batch_size=2)
  np.testing.assert_allclose(three[:2], features, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(three[2], features[0], rtol=1e-5, atol=1e-6)
  # The second half is the state at the last input position, not the mean.
  assert not np.allclose(features[:, :13], features[:, 13:])


def test_a_probe_reads_a_token_the_inputs_hold(tiny_config):
  # Label: whether token 3 occurs; random weights of a 64-wide T5 keep that
  # readable, and shuffled labels leave nothing to read.
  config = dataclasses.replace(tiny_config, emb_dim=64, mlp_dim=128)
  params = probe_lib.random_params(config, seed=0)
  rng = np.random.RandomState(0)
  tokens = rng.randint(4, 37, size=(300, 4)).astype(np.int32)
  has = rng.rand(300) < 0.5
  tokens[has, rng.randint(0, 4, size=has.sum())] = 3
  labels = np.where(has, 'yes', 'no')
  features = probe_lib.encoder_features(probe_lib.make_encoder(config),
                                        params, tokens)
  score = probe_lib.fit_probe(features[:200], labels[:200], features[200:],
                              labels[200:])
  assert score.validation_accuracy > 0.9
  shuffled = probe_lib.fit_probe(features[:200], rng.permutation(labels[:200]),
                                 features[200:], labels[200:])
  assert shuffled.validation_accuracy < 0.7


def test_majority_fraction():
  assert probe_lib.majority_fraction(np.array(['a', 'b', 'a', 'a'])) == 0.75


@pytest.mark.parametrize('args, message', [
    (['--tasks=corpus_suite_claim'], 'either --sizes'),
    (['--tasks=corpus_suite_claim', '--sizes=tiny', '--checkpoint=/x'],
     'either --sizes'),
    (['--tasks=corpus_suite_claim', '--sizes=tiny,huge'], "['huge']"),
    (['--tasks=,', '--sizes=tiny'], 'no task'),
    (['--tasks=corpus_suite_claim', '--sizes=tiny', '--knobs=hardness=1'],
     "--knobs: 'hardness=1'; expected NAME=VALUE"),
    (['--tasks=corpus_suite_claim', '--sizes=tiny',
      '--knobs=negation_rate=2'], '--knobs: corpus_suite.Knobs: '
                                  'negation_rate=2.0'),
    (['--tasks=corpus_topic', '--sizes=tiny', '--knobs=qa_distractors=0'],
     "--tasks with --knobs: 'corpus_topic' is not a task"),
    # A variant is not renamed again (the knobs register it first).
    (['--tasks=corpus_suite_knobs_f80fe069_qa', '--sizes=tiny',
      '--knobs=qa_distractors=0'],
     "--tasks with --knobs: 'corpus_suite_knobs_f80fe069_qa' is not a task"),
])
def test_bad_flags_exit_2_naming_the_fault(args, message, capsys):
  assert _main(args) == 2
  assert message in capsys.readouterr().err


def test_a_model_of_another_vocabulary_is_an_error_naming_both(capsys):
  # The prefixed model embeds 868 tokens; the corpus tasks use 1,124.
  assert _main(['--tasks=corpus_suite_claim',
                f'--checkpoint={embedded.checkpoint_path()}']) == 2
  err = capsys.readouterr().err
  assert 'corpus_suite_claim' in err and '1,124' in err and '868' in err


def test_the_command_probes_a_corpus_model_and_a_runs_weights(tmp_path,
                                                              capsys):
  output = tmp_path / 'probe.json'
  args = ['--tasks=corpus_suite_negation', '--train_examples=48',
          '--eval_examples=24']
  assert _main(['--sizes=tiny', f'--output={output}'] + args) == 0
  out = capsys.readouterr().out
  assert '| tiny (lm_adapted_long) | corpus_suite_negation | 48 / 24 | 2 |' in out
  (row,) = json.loads(output.read_text())
  assert (row['train_examples'], row['validation_examples']) == (48, 24)
  for score in (row['score'], row['control']):
    assert 0 <= score['validation_accuracy'] <= 1
    # 48 examples and a 64-wide feature: the probe fits its training set.
    assert score['train_accuracy'] > 0.9
  assert row['score'] != row['control']
  # The same weights as a model-tuning run keeps them: the same probe.
  params = probe_lib.load_model(
      embedded.corpus_checkpoint_path('tiny', 'lm_adapted_long')).params
  model_dir = str(tmp_path / 'run')
  train_state.save_numpy_params(params, model_dir, 300)
  numpy_output = tmp_path / 'numpy.json'
  assert _main([f'--checkpoint={run_dir.numpy_checkpoint_dir(model_dir, 300)}',
                '--nocontrol', f'--output={numpy_output}'] + args) == 0
  (again,) = json.loads(numpy_output.read_text())
  assert again['score'] == row['score'] and again['control'] is None


def test_knobs_probe_the_suite_variant_they_name(tmp_path, capsys):
  from prompt_tuning.tasks import corpus_suite  # pylint: disable=g-import-not-at-top
  output = tmp_path / 'probe.json'
  assert _main(['--sizes=tiny', '--tasks=corpus_suite_outing_n32',
                '--knobs=outing_sentences=1,outing_hard_rate=0',
                '--eval_examples=8', '--nocontrol', f'--output={output}']) == 0
  (row,) = json.loads(output.read_text())
  # The miniature's --knobs name the same variant.
  from prompt_tuning.experiments import miniature  # pylint: disable=g-import-not-at-top
  plan = dataclasses.replace(miniature.SUITE_FULL, knobs=(
      ('outing_hard_rate', 0.0), ('outing_sentences', 1)))
  assert row['task'] == plan.suite_prefix + '_outing_n32'
  assert row['train_examples'] == 32
  # The probed task's inputs are the knobs' examples, not the defaults'.
  want = corpus_suite.examples(
      'outing', 'downstream_train', 1,
      knobs=corpus_suite.Knobs(outing_sentences=1, outing_hard_rate=0))
  first = next(seqio.get_mixture_or_task(row['task']).source.get_dataset(
      'train').as_numpy_iterator())
  assert first['inputs'].decode() == want[0]['inputs']
  default = corpus_suite.examples('outing', 'downstream_train', 1)
  assert want[0]['inputs'] != default[0]['inputs']
  assert row['task'] in capsys.readouterr().out


def test_a_prompt_tuning_runs_weights_are_not_a_model(tmp_path, capsys):
  model_dir = str(tmp_path / 'run')
  train_state.save_numpy_params(
      {'encoder': {'prompt': {'prompt': np.zeros((2, 3), np.float32)}}},
      model_dir, 5)
  checkpoint = run_dir.numpy_checkpoint_dir(model_dir, 5)
  assert _main(['--tasks=corpus_suite_claim', f'--checkpoint={checkpoint}']) == 2
  err = capsys.readouterr().err
  assert checkpoint in err and 'token_embedder' in err and 'whole model' in err
  with pytest.raises(FileNotFoundError, match='no .npy'):
    train_state.load_numpy_params(str(tmp_path))


def _run_of(params, model_dir, vocabulary, distance=64):
  """A run directory holding `params` as its numpy checkpoint and a record
  of `distance` and `vocabulary`; returns the checkpoint's path."""
  train_state.save_numpy_params(params, model_dir, 300)
  run_record.write(model_dir, {
      'version': run_record.VERSION,
      'model': {'config': {'relative_attention_max_distance': distance}},
      'vocabulary': run_record.describe_vocabulary(vocabulary),
      'initial_checkpoint_path': None,
      'mixture_or_task_name': 'corpus_suite_negation', 'step': 300})
  return run_dir.numpy_checkpoint_dir(model_dir, 300)


def _vocabulary(task):
  return seqio.get_mixture_or_task(task).output_features['inputs'].vocabulary


def test_a_runs_weights_take_the_runs_settings_and_vocabulary(tmp_path,
                                                               capsys):
  params = probe_lib.load_model(
      embedded.corpus_checkpoint_path('tiny', 'lm_adapted_long')).params
  checkpoint = _run_of(params, str(tmp_path / 'run'),
                       _vocabulary('corpus_suite_negation'))
  model = probe_lib.load_model(checkpoint)
  assert model.config.relative_attention_max_distance == 64
  assert model.run_dir == str(tmp_path / 'run')
  probe_lib.check_vocabulary(model, 'corpus_suite_negation')
  # A distance that is not the run's: an error naming both.
  assert _main(['--tasks=corpus_suite_negation', f'--checkpoint={checkpoint}',
                '--relative_attention_max_distance=128']) == 2
  err = capsys.readouterr().err
  assert 'relative_attention_max_distance 128' in err and ', 64' in err
  # A run whose record names another vocabulary of the same size or less.
  other = _run_of(params, str(tmp_path / 'other'),
                  _vocabulary('offline_sentiment'))
  assert _main(['--tasks=corpus_suite_negation', f'--checkpoint={other}']) == 2
  err = capsys.readouterr().err
  assert 'corpus_spm.model' in err and 'offline' in err and 'other' in err
