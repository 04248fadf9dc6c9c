"""The shipped embedded models: where they are, their sizes, and that each
stage of the corpus models' pretraining did what it says."""
import pathlib
import sys

import gin
import jax
import numpy as np
import pytest

import commands

from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import t5x
from prompt_tuning.cli import gin_utils
from prompt_tuning.experiments import pretraining
from prompt_tuning.model import costs
from prompt_tuning.model import t5
from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import corpus_tasks


def _size_config(size):
  """The T5Config that `corpus/model.gin` + `corpus/sizes/<size>.gin` bind."""
  gin.clear_config()
  try:
    gin_utils.parse_gin_flags(gin_utils.gin_search_paths(),
                              ['corpus/model.gin', f'corpus/sizes/{size}.gin'],
                              [], finalize_config=False)
    return gin.get_configurable(t5.T5Config)()
  finally:
    gin.clear_config()


@pytest.mark.parametrize('size', embedded.SIZES)
@pytest.mark.parametrize('kind', embedded.KINDS)
def test_every_corpus_checkpoint_matches_its_size_config(size, kind):
  path = embedded.corpus_checkpoint_path(size, kind)
  step = int(pathlib.Path(path).name.split('_')[1])
  assert step == pretraining.STAGE_STEPS[kind]
  params = t5x.load_t5x(path)
  config = t5.config_from_params(params)
  expected = _size_config(size)
  for field in ('vocab_size', 'emb_dim', 'num_heads', 'head_dim', 'mlp_dim',
                'num_encoder_layers', 'num_decoder_layers'):
    assert getattr(config, field) == getattr(expected, field), field
  assert config.vocab_size == corpus.vocabulary().vocab_size


def test_the_ladder_grows_in_width_depth_and_parameters():
  configs = [_size_config(size) for size in embedded.SIZES]
  counts = [costs.count_parameters(c) for c in configs]
  assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
  assert counts[-1] >= 30 * counts[0], counts
  for smaller, larger in zip(configs, configs[1:]):
    assert larger.emb_dim > smaller.emb_dim
    assert larger.num_encoder_layers >= smaller.num_encoder_layers
  assert configs[-1].num_encoder_layers > configs[0].num_encoder_layers


@pytest.mark.parametrize('size', embedded.SIZES)
def test_each_size_is_stored_in_its_dtype_and_loads_as_float32(size):
  path = embedded.corpus_checkpoint_path(size, embedded.DEFAULT_KIND)
  stored = t5x.load_t5x(path)
  dtypes = {leaf.dtype.name for leaf in jax.tree.leaves(stored)}
  assert dtypes == {embedded.STORAGE_DTYPES.get(size, 'float32')}
  like = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), stored)
  loaded = t5x.load_t5x(path, like=like)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(stored)):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_the_package_data_stays_small():
  total = sum(p.stat().st_size for p in embedded.DATA_DIR.rglob('*')
              if p.is_file())
  # The ladder's four corpus sizes (three kinds each) and the prefixed model
  # within a 40 MiB budget for shipped checkpoints.
  assert total < 40 * 2**20, total


@pytest.mark.parametrize('kwargs, message', [
    ({'size': 'huge'}, "size 'huge'"),
    ({'kind': 'lm_adapted'}, "kind 'lm_adapted'"),
])
def test_unknown_size_or_kind_names_the_choices(kwargs, message):
  with pytest.raises(ValueError, match=message) as error:
    embedded.corpus_checkpoint_path(**kwargs)
  assert 'expected one of' in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize('task, better, worse, margin', [
    # Span corruption taught the span-corruption objective ...
    (corpus_tasks.SPAN_CORRUPTION_TASK, 'span_corruption', None, 1.0),
    # ... and LM adaptation the prefix-LM one, a little more with more steps
    # (measured on these examples: 0.75 after 300 steps, 0.72 after 1000).
    (corpus_tasks.PREFIX_LM_TASK, 'lm_adapted_short', 'span_corruption', 0.1),
    (corpus_tasks.PREFIX_LM_TASK, 'lm_adapted_long', 'lm_adapted_short',
     0.01),
])
def test_each_pretraining_stage_lowers_its_objectives_loss(task, better,
                                                           worse, margin):
  size = embedded.DEFAULT_SIZE
  better_loss = pretraining.objective_loss(
      embedded.corpus_checkpoint_path(size, better), task, num_examples=32)
  if worse is None:
    # A uniform guess over the vocabulary (what random weights are near).
    worse_loss = float(np.log(corpus.vocabulary().vocab_size))
  else:
    worse_loss = pretraining.objective_loss(
        embedded.corpus_checkpoint_path(size, worse), task, num_examples=32)
  assert better_loss < worse_loss - margin, (better_loss, worse_loss)


def test_losses_and_pretraining_flags_are_checked():
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.embedded', '--model=tiny'],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode != 0
  assert '--work_dir is required to pretrain' in result.stderr
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.embedded', '--losses',
       '--model=prefixed'], capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode != 0
  assert '--losses covers the corpus models, not prefixed' in result.stderr
