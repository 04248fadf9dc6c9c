"""Sharded checks of prompt_tuning.training.trainer.train on 8 forced CPU devices.

Run as a script by tests/test_trainer_sharded.py in a fresh interpreter,
because `--xla_force_host_platform_device_count` must be set before jax is
imported. Trains a tiny T5 with `trainer.train` on a (data 4, model 2) mesh
and on a single device (same data, same seed, no dropout), for prompt tuning
and for model tuning, and compares the results. Prints one JSON object
{check name: {"ok": bool, "detail": str}} as the last line of stdout.
"""
import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import traceback

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ['JAX_PLATFORMS'] = 'cpu'
os.environ['CUDA_VISIBLE_DEVICES'] = ''

import flax  # pylint: disable=g-import-not-at-top
import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import seqio
import tensorflow as tf

from prompt_tuning.checkpoints import t5x
from prompt_tuning.methods import presets
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.training import partitioning
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.training import trainer

# Compiling is most of this script's time; XLA's optimisation passes are not
# what it tests (the SPMD partitioner still runs).
jax.config.update('jax_disable_most_optimizations', True)

TASK = 'sharded_trainer_checks_echo'
FEATURE_LENGTHS = {'inputs': 7, 'targets': 3}
BATCH_SIZE = 8  # 2 examples per data shard of the (4, 2) mesh.
TRAIN_STEPS = 2
# Odd where nothing is sharded (embed 13, head_dim 5), even where 'model' (2)
# splits: vocab 262 = 2 * 131 (the byte vocabulary has 259 ids), heads 2
# (joined q/k/v width 10), mlp 6. None of them divides by the data axis (4).
CONFIG = t5.T5Config(
    vocab_size=262, emb_dim=13, num_heads=2, head_dim=5, mlp_dim=6,
    num_encoder_layers=1, num_decoder_layers=1,
    relative_attention_num_buckets=8, relative_attention_max_distance=16,
    dropout_rate=0.0)
PROMPT_LENGTH = 3
# Where the standard rules put a few named parameters on the (4, 2) mesh.
EXPECTED_SPECS = {
    'token_embedder/embedding': P('model', None),  # [vocab, embed]
    'encoder/layers_0/mlp/wi_0/kernel': P(None, 'model'),  # [embed, mlp]
    'encoder/layers_0/mlp/wo/kernel': P('model', None),  # [mlp, embed]
    # q/k/v kernels [embed, heads * head_dim], out [heads * head_dim, embed].
    'encoder/layers_0/attention/query/kernel': P(None, 'model'),
    'decoder/layers_0/self_attention/out/kernel': P('model', None),
    'decoder/logits_dense/kernel': P(None, 'model'),  # [embed, vocab]
    'encoder/relpos_bias/rel_embedding': P('model', None),  # [heads, buckets]
    'encoder/encoder_norm/scale': P(None),  # [embed], replicated
    'encoder/prompt/prompt/prompt': P(None, None),  # [prompt, embed]
}
RTOL, ATOL = 1e-5, 1e-6


def _register_task():
  """A tiny seqio task: a word and a number in, the word's first letters out."""
  words = ['apple', 'music', 'zebra', 'quartz', 'lemon', 'violin', 'kettle',
           'oxygen']
  rng = random.Random(0)
  examples = [(f'{w} {rng.randrange(100)}', w[:2])
              for w in words for _ in range(6)]

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({
        'inputs': [i for i, _ in examples],
        'targets': [t for _, t in examples]})

  vocabulary = seqio.ByteVocabulary(extra_ids=0)
  features = {'inputs': seqio.Feature(vocabulary, add_eos=True),
              'targets': seqio.Feature(vocabulary, add_eos=True)}
  seqio.TaskRegistry.add(
      TASK, source=seqio.FunctionDataSource(dataset_fn, splits=('train',)),
      preprocessors=[seqio.preprocessors.tokenize,
                     seqio.preprocessors.append_eos_after_trim],
      output_features=features)
  return vocabulary


VOCABULARY = _register_task()
MODEL = models.EncoderDecoderModel(
    module=t5.Transformer(CONFIG, prompt_length=PROMPT_LENGTH),
    input_vocabulary=VOCABULARY, output_vocabulary=VOCABULARY)


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


def _write_initial_checkpoint(path):
  """The frozen model every run starts from, as a t5x checkpoint.

  Loading it (the prompt alone initialised) keeps each run's initialisation
  program small: compiling the whole model's init on 8 devices would take
  most of this script's time.
  """
  params = jax.jit(MODEL.init)(jax.random.PRNGKey(1))
  params = _flat(jax.device_get(partitioning.unbox(params)))
  del params['encoder/prompt/prompt/prompt']
  t5x.save_t5x(flax.traverse_util.unflatten_dict(params, sep='/'),
                       path)


@contextlib.contextmanager
def _mesh_devices(devices):
  """Makes the trainer lay its mesh over `devices` only.

  `trainer.train` takes a MeshConfig, which names no devices, and builds its
  mesh over all of them; the single-device reference needs one.
  """
  original = partitioning.create_mesh

  def create_mesh(config=partitioning.MeshConfig(), devices_=None):
    del devices_
    return original(config, devices)

  partitioning.create_mesh = create_mesh
  try:
    yield
  finally:
    partitioning.create_mesh = original


def _train(checkpoint, model_dir, mesh_config, trainable_regexes, optimizer):
  return trainer.train(
      model=MODEL, mixture_or_task_name=TASK,
      task_feature_lengths=FEATURE_LENGTHS, batch_size=BATCH_SIZE,
      train_steps=TRAIN_STEPS, model_dir=model_dir,
      initial_checkpoint_path=checkpoint, optimizer=optimizer,
      trainable_regexes=trainable_regexes, mesh_config=mesh_config, seed=0,
      use_dropout=False, log_period=1, checkpoint_period=TRAIN_STEPS,
      eval_mode=None)


def _compare_runs(checkpoint, trainable_regexes, optimizer):
  """Trains on the (4, 2) mesh and on one device; compares the results."""
  with tempfile.TemporaryDirectory() as tmp:
    sharded = _train(checkpoint, os.path.join(tmp, 'sharded'),
                     partitioning.MeshConfig(num_partitions=2),
                     trainable_regexes, optimizer)
    with _mesh_devices(jax.devices()[:1]):
      single = _train(checkpoint, os.path.join(tmp, 'single'),
                      partitioning.MeshConfig(), trainable_regexes, optimizer)
  initial = _flat(jax.device_get(_sharded_setup(checkpoint).params))
  got, want = _flat(sharded.trainable), _flat(single.trainable)
  assert sorted(got) == sorted(want), (sorted(got), sorted(want))
  used = 0.0  # The largest |difference| as a fraction of its tolerance.
  for name in sorted(want):
    # Training moved every trainable value, so equality is not vacuous.
    assert not np.allclose(want[name], initial[name], rtol=1e-3, atol=1e-4), (
        f'{name} did not change in {TRAIN_STEPS} steps')
    np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL,
                               err_msg=name)
    used = max(used, float(np.max(np.abs(got[name] - want[name]) /
                                  (ATOL + RTOL * np.abs(want[name])))))
  np.testing.assert_allclose(sharded.metrics['loss_per_token'],
                             single.metrics['loss_per_token'], rtol=RTOL)
  return (f'{len(want)} trainable arrays equal, at most {used:.0%} of the '
          'tolerance used; '
          f'loss/token {sharded.metrics["loss_per_token"]:.6f} vs '
          f'{single.metrics["loss_per_token"]:.6f}')


@functools.lru_cache(maxsize=None)
def _sharded_setup(checkpoint):
  """The (4, 2) mesh's setup of `checkpoint`, made once: the checks only
  read it."""
  return setup_lib.setup_model(
      MODEL, checkpoint, seed=0,
      mesh_config=partitioning.MeshConfig(num_partitions=2))


def check_param_shardings_follow_rules(checkpoint):
  setup = _sharded_setup(checkpoint)
  assert dict(setup.mesh.shape) == {'data': 4, 'model': 2}, setup.mesh.shape
  params, shardings = _flat(setup.params), _flat(setup.shardings)
  for name, spec in EXPECTED_SPECS.items():
    assert shardings[name].spec == spec, (name, shardings[name].spec, spec)
    assert params[name].sharding.spec == spec, (name, params[name].sharding)
    assert params[name].sharding.mesh == setup.mesh, name
  # A 'model'-sharded array is split in two along its sharded dimension.
  embedding = params['token_embedder/embedding']
  assert {s.data.shape for s in embedding.addressable_shards} == {(131, 13)}
  prompt = params['encoder/prompt/prompt/prompt']
  assert prompt.sharding.is_fully_replicated, prompt.sharding
  return str({n: str(s) for n, s in EXPECTED_SPECS.items()})


def check_prompt_tuning_matches_single_device(checkpoint):
  return _compare_runs(checkpoint, (prompts.PROMPT_REGEX,),
                       trainer.adafactor())


def check_model_tuning_matches_single_device(checkpoint):
  # NOTE: a small learning rate: the paper's 0.3 on every weight of a random
  # model makes a chaotic trajectory that magnifies round-off differences.
  return _compare_runs(checkpoint, (presets.MODEL_TUNING_REGEX,),
                       trainer.adafactor(learning_rate=1e-2))


# Each check takes the initial checkpoint's path.
CHECKS = {name: fn for name, fn in globals().items()
          if name.startswith('check_')}


def main():
  assert jax.device_count() == 8, jax.devices()
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    checkpoint = os.path.join(tmp, 'checkpoint_0')
    _write_initial_checkpoint(checkpoint)
    for name, fn in CHECKS.items():
      try:
        results[name] = {'ok': True, 'detail': str(fn(checkpoint))}
      except Exception:  # pylint: disable=broad-except
        results[name] = {'ok': False, 'detail': traceback.format_exc()}
  sys.stdout.write('\n' + json.dumps(results) + '\n')


if __name__ == '__main__':
  main()
