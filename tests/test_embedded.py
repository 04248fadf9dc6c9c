"""The shipped embedded models: where they are, their sizes, and that each
stage of the corpus models' pretraining did what it says."""
import pathlib

import gin
import numpy as np
import pytest
import seqio

from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import t5x
from prompt_tuning.cli import gin_utils
from prompt_tuning.experiments import pretraining
from prompt_tuning.model import models
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


def test_the_package_data_stays_small():
  total = sum(p.stat().st_size for p in embedded.DATA_DIR.rglob('*')
              if p.is_file())
  assert total < 20 * 2**20, total


@pytest.mark.parametrize('kwargs, message', [
    ({'size': 'huge'}, "size 'huge'"),
    ({'kind': 'lm_adapted'}, "kind 'lm_adapted'"),
])
def test_unknown_size_or_kind_names_the_choices(kwargs, message):
  with pytest.raises(ValueError, match=message) as error:
    embedded.corpus_checkpoint_path(**kwargs)
  assert 'expected one of' in str(error.value)


def _loss_per_token(path, task, lengths, num_examples=32):
  params = t5x.load_t5x(path)
  vocabulary = corpus.vocabulary()
  model = models.EncoderDecoderModel(
      t5.Transformer(t5.config_from_params(params, dropout_rate=0.0)),
      vocabulary, vocabulary)
  dataset = seqio.get_mixture_or_task(task).get_dataset(
      lengths, split='train', shuffle=False, seed=0)
  converted = seqio.EncDecFeatureConverter(pack=False)(dataset, lengths)
  batch = next(converted.batch(num_examples).as_numpy_iterator())
  loss, extras = model.loss_fn(params, batch, None)
  return float(loss) / float(extras['num_tokens'])


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
  lengths = dict(corpus_tasks.SEQUENCE_LENGTHS[task])
  size = embedded.DEFAULT_SIZE
  better_loss = _loss_per_token(embedded.corpus_checkpoint_path(size, better),
                                task, lengths)
  if worse is None:
    # A uniform guess over the vocabulary (what random weights are near).
    worse_loss = float(np.log(corpus.vocabulary().vocab_size))
  else:
    worse_loss = _loss_per_token(
        embedded.corpus_checkpoint_path(size, worse), task, lengths)
  assert better_loss < worse_loss - margin, (better_loss, worse_loss)
