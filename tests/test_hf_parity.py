"""Our T5 1.1 logits equal HF transformers' T5 for the same weights and tokens.

Golden logits (tests/data, made by tests/hf_reference.py) let this run without
torch; with torch and transformers installed the comparison also runs live,
including the tied-embedding variant.
"""
import sys

import numpy as np
import pytest

from prompt_tuning.checkpoints import t5x
from prompt_tuning.interop import hf
from prompt_tuning.model import t5

sys.path.insert(0, str(__import__('pathlib').Path(__file__).parent))
import hf_reference  # pylint: disable=g-import-not-at-top,wrong-import-position

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
REAL = hf_reference.DECODER_TARGETS > 0  # padded decoder rows are not compared


def _ours(config_kwargs, params, **overrides):
  config = t5.T5Config(**{**config_kwargs, 'dropout_rate': 0.0, **overrides})
  return np.asarray(t5.Transformer(config).apply(
      {'params': params}, hf_reference.ENCODER_TOKENS,
      hf_reference.DECODER_INPUTS, hf_reference.DECODER_TARGETS))


def test_hf_golden_tiny_model():
  params = hf.load_hf_safetensors(hf_reference.TINY_WEIGHTS)
  golden = np.load(hf_reference.TINY_GOLDEN)['logits']
  ours = _ours(hf_reference.TINY_CONFIG, params)
  np.testing.assert_allclose(ours[REAL], golden[REAL], **TOLERANCE)


def test_hf_golden_reference_checkpoint(reference_path):
  params = t5x.load_t5x(reference_path('t5x_t5_1_1_tiny/checkpoint_3'))
  golden = np.load(hf_reference.REFERENCE_GOLDEN)
  ours = _ours(hf_reference._reference_config(), params)[..., golden['columns']]
  np.testing.assert_allclose(ours[REAL], golden['logits'][REAL], **TOLERANCE)


@pytest.mark.skipif(not hf_reference.HAVE_HF, reason=hf_reference.NEEDS_HF)
@pytest.mark.parametrize('tied', [False, True])
def test_live_against_hf(tmp_path, tied):
  params = hf_reference.tiny_params(seed=3)
  if tied:
    del params['decoder']['logits_dense']
  weights = tmp_path / 'model.safetensors'
  hf.save_hf_safetensors(params, weights)
  model = hf_reference.hf_model(hf_reference.TINY_CONFIG, weights, tied=tied)
  theirs = hf_reference.hf_logits(model, hf_reference.ENCODER_TOKENS,
                                  hf_reference.DECODER_INPUTS)
  ours = _ours(hf_reference.TINY_CONFIG, params, logits_via_embedding=tied)
  np.testing.assert_allclose(ours[REAL], theirs[REAL], **TOLERANCE)
