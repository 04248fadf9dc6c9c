"""Tests of the PEFT cases of the benchmark (prompt_tuning.benchmarks.torch_cases): the
HF model holds our weights, PEFT runs our computation, the cases report what
they should. Skipped without torch, transformers and peft (the `bench`
extra); the train suite's PEFT case is tested in tests/test_bench.py.
Never asserts on timings."""
import numpy as np
import pytest

from prompt_tuning.benchmarks import torch_cases as bench_torch
from prompt_tuning.benchmarks import train_step as bench_train
from prompt_tuning.benchmarks import common as bench_utils

pytestmark = pytest.mark.skipif(
    not bench_torch.available(),
    reason='torch, transformers and peft are not installed (pip install -e '
    '".[bench]")')

B, T, U, P = 2, 11, 3, 5


@pytest.fixture(scope='module')
def tiny():
  """Our tiny model's weights, prompt and a batch; the PEFT model on them."""
  config = bench_utils.SIZES['tiny']
  model, setup = bench_train.random_setup(config, P)
  prompt, weights = bench_train.prompt_and_weights(setup.params)
  batch = bench_utils.random_batch(np.random.default_rng(0), B, T, U,
                                   config.vocab_size)
  peft_model = bench_torch.peft_prompt_model(
      bench_torch.hf_t5(weights, config, dropout_rate=0.0), prompt)
  return config, model, setup, prompt, batch, peft_model


def test_peft_computes_our_loss(tiny):
  _, model, setup, _, batch, peft_model = tiny
  ours = bench_train.mean_token_loss(model, setup.params, batch)
  np.testing.assert_allclose(bench_torch.initial_loss(peft_model, batch), ours,
                             rtol=1e-5)


def test_train_case_trains_only_the_prompt(tiny):
  import torch  # pylint: disable=g-import-not-at-top
  config, _, _, prompt, batch, peft_model = tiny
  case = bench_torch.train_case('peft', peft_model, 0.3, batch)
  assert case.info['trainable_params'] == P * config.emb_dim
  before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
  case.run(2)
  bench_torch.finish_train_case(case)
  changed = sorted(n for n, p in peft_model.named_parameters()
                   if not torch.equal(p.detach(), before[n]))
  assert changed == ['prompt_encoder.default.embedding.weight']
  assert not np.array_equal(changed and peft_model.prompt_encoder[
      'default'].embedding.weight.detach().numpy(), prompt)
  # HF's Adafactor factors every 2-D parameter: a row and a column.
  assert case.info['opt_state_bytes'] > 0
  assert case.info['opt_state_bytes'] < prompt.nbytes


def test_generate_decodes_exactly_the_length(tiny):
  _, _, _, _, batch, peft_model = tiny
  case = bench_torch.generate_case('generate', peft_model, batch, 6)
  tokens = case.call()
  # The decoder's start token, then 6 new tokens (EOS held back till then).
  assert tuple(tokens.shape) == (B, 7)
