"""Tests of the benchmark's train suite and CLI (prompt_tuning.bench,
bench_train, model.costs, bench_utils) and of the speed options it measures
(FROZEN_DTYPE, remat, compilation counting). Never asserts on timings."""
import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import commands

from prompt_tuning.model import costs
from prompt_tuning.benchmarks import torch_cases as bench_torch
from prompt_tuning.benchmarks import train_step as bench_train
from prompt_tuning.benchmarks import common as bench_utils
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.training import partitioning
from prompt_tuning.model import t5
from prompt_tuning.training import trainer

# Fields every JSON record of the train suite must carry.
FIELDS = (
    'suite', 'case', 'framework', 'size', 'dtype', 'remat', 'batch_size',
    'input_length', 'target_length', 'prompt_length', 'repeats', 'device',
    'platform', 'num_devices', 'jax_version', 'cpu', 'cpu_count', 'date',
    'trainable_regex', 'learning_rate', 'frozen_dtype', 'trainable_params',
    'frozen_params', 'frozen_bytes', 'opt_state_bytes',
    'expected_opt_state_bytes', 'trace_lower_s', 'compile_s', 'first_step_s',
    'step_time_median_s', 'step_time_min_s', 'step_time_max_s',
    'step_time_iqr_s', 'step_times_s', 'tokens_per_step', 'tokens_per_s',
    'flops', 'forward_flops', 'flops_per_forward', 'dot_generals',
    'weight_gradient_dots', 'compiled_argument_bytes',
    'compiled_output_bytes', 'compiled_alias_bytes', 'compiled_temp_bytes',
    'compiled_peak_bytes', 'device_bytes_in_use_before',
    'device_bytes_in_use', 'device_peak_bytes_in_use',
    'model_flops_per_step', 'model_flops_per_token', 'model_flops_per_s',
    'peak_flops', 'mfu', 'step_compilations', 'recompilations',
    'backend_compiles_while_timing', 'dropout_rate', 'matmul_peak_flops_per_s',
    'matmul_peak_shape', 'matmul_flops_per_s', 'fraction_of_matmul_peak',
    'load_average_before', 'load_average_after', 'background_load_threads')

B, T, U, P = 2, 11, 3, 5
# NOTE: XLA's optimisations off keeps the compiles short; the checks here do
# not depend on them.
_FAST_ENV = dict(os.environ, JAX_PLATFORMS='cpu',
                 JAX_DISABLE_MOST_OPTIMIZATIONS='1')


# XLA's optimisations off: see conftest.fast_compiles.
# One worker runs the module, so its module fixtures run once.
pytestmark = [pytest.mark.usefixtures('fast_compiles'),
              pytest.mark.xdist_group('bench')]


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
  """One CLI run of the tiny size, 2 repeats, PEFT included when installed:
  (stdout, --output records of our cases, --markdown_output text)."""
  out = tmp_path_factory.mktemp('bench')
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.bench', '--size=tiny',
       '--repeats=2', '--warmup_steps=1', f'--batch_size={B}',
       f'--input_length={T}', f'--target_length={U}', f'--prompt_length={P}',
       f'--output={out / "bench.jsonl"}',
       f'--markdown_output={out / "bench.md"}'],
      capture_output=True, text=True, env=_FAST_ENV, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line)
             for line in (out / 'bench.jsonl').read_text().splitlines()]
  ours = [r for r in records if r['framework'] == 'jax']
  theirs = [r for r in records if r['framework'] != 'jax']
  return result.stdout, ours, (out / 'bench.md').read_text(), theirs


@pytest.mark.slow
def test_peft_side_by_side_or_a_note(cli_run):
  """With torch, transformers and peft installed, PEFT prompt tuning runs on
  the same weights, prompt and batch (same initial loss); without them the
  summary says they were skipped."""
  _, ours, markdown, theirs = cli_run
  if not bench_torch.available():
    assert not theirs
    assert 'PEFT cases skipped' in markdown and '.[bench]' in markdown
    return
  peft, peft_no_dropout = theirs
  assert peft['case'] == bench_train.PEFT_CASE
  assert peft_no_dropout['case'] == bench_train.PEFT_NO_DROPOUT_CASE
  assert (peft['dropout_rate'], peft_no_dropout['dropout_rate']) == (0.1, 0.0)
  assert 'num_transformer_submodules=1' in peft['peft_settings']
  assert peft['fraction_of_matmul_peak'] > 0
  assert peft['trainable_params'] == ours[0]['trainable_params']
  assert peft['tokens_per_step'] == ours[0]['tokens_per_step']
  assert len(peft['step_times_s']) == 2
  np.testing.assert_allclose(peft['initial_loss'], peft['initial_loss_ours'],
                             rtol=1e-5)
  assert "Our prompt-tuning throughput is" in markdown
  assert '| tokens/s (enc+dec) |' in markdown and 'ours / PEFT' in markdown
  assert f'| {bench_train.PEFT_NO_DROPOUT_CASE} | peft | 0 |' in markdown


@pytest.mark.slow
def test_records_have_every_field(cli_run):
  stdout, records, _, _ = cli_run
  assert [r['case'] for r in records] == list(bench_train.CASES)
  dropout = {r['case']: r['dropout_rate'] for r in records}
  assert dropout == {'prompt_tuning': 0.1, 'model_tuning': 0.1,
                     'prompt_tuning_no_dropout': 0.0}
  for record in records:
    assert not set(FIELDS) - set(record), set(FIELDS) - set(record)
    # The same run's matmul ceiling, the step's share of it, the load.
    assert record['matmul_peak_flops_per_s'] == max(
        record['matmul_flops_per_s'].values())
    np.testing.assert_allclose(
        record['fraction_of_matmul_peak'],
        record['model_flops_per_s'] / record['matmul_peak_flops_per_s'])
    assert len(record['load_average_before']) == 3
    assert record['background_load_threads'] == 0
    assert record['suite'] == 'train' and record['framework'] == 'jax'
    assert len(record['step_times_s']) == 2
    assert record['tokens_per_step'] == B * (T + U)
    # The same records are printed, one JSON line each.
    assert json.dumps(record) in stdout


@pytest.mark.slow
def test_summary_printed_and_written(cli_run):
  stdout, _, markdown, _ = cli_run
  assert markdown in stdout
  assert markdown.startswith('Command: `python -m prompt_tuning.bench ')
  assert '--size=tiny' in markdown.splitlines()[0]
  assert '| | prompt tuning | model tuning | prompt / model |' in (
      markdown.replace('|  |', '| |'))
  assert f'jax {jax.__version__}' in markdown
  assert "Against the same run's plain matmul peak" in markdown
  assert '| prompt_tuning_no_dropout | jax | 0 |' in markdown
  assert 'Load average (1, 5, 15 min) before timing [' in markdown
  for label in ('step time, median', 'compiled peak', 'step FLOPs (XLA)',
                'model FLOPs / step (formula)', 'MFU', 'optimizer state',
                'weight-gradient matmuls', 'step compilations'):
    assert f'| {label}' in markdown


@pytest.mark.slow
def test_no_recompilation_after_the_first_step(cli_run):
  _, records, markdown, _ = cli_run
  for record in records:
    assert record['step_compilations'] == 1
    assert record['recompilations'] == 0
    assert record['backend_compiles_while_timing'] == 0
  assert 'XLA compilations while timing: 0' in markdown


@pytest.mark.slow
def test_prompt_tuning_computes_no_weight_gradients(cli_run):
  _, (prompt, model, _), _, _ = cli_run
  config = bench_utils.SIZES['tiny']
  assert prompt['trainable_params'] == P * config.emb_dim
  assert prompt['trainable_params'] + prompt['frozen_params'] == (
      model['trainable_params'])
  assert prompt['weight_gradient_dots'] == 0
  assert model['weight_gradient_dots'] > 0
  # Same forward pass; the prompt step drops the weight gradients.
  assert prompt['forward_flops'] == model['forward_flops']
  assert prompt['flops'] < model['flops']
  assert prompt['model_flops_per_step'] < model['model_flops_per_step']
  assert prompt['compiled_temp_bytes'] <= model['compiled_temp_bytes']


@pytest.mark.slow
def test_optimizer_state_is_the_trainable_parts(cli_run):
  """Adafactor's state follows the trainable shapes: for the prompt (too
  small to factor) the prompt's size plus a few scalars, not the model's."""
  _, (prompt, model, _), _, _ = cli_run
  for record in (prompt, model):
    assert record['opt_state_bytes'] == record['expected_opt_state_bytes']
  # [P, H] kept whole, 1-element v_row and v_col, one int32 count.
  assert prompt['opt_state_bytes'] == 4 * (P * bench_utils.SIZES[
      'tiny'].emb_dim + 2) + 4
  assert prompt['opt_state_bytes'] < model['opt_state_bytes'] / 10


@pytest.mark.slow
def test_formula_flops_near_xla_count(cli_run):
  """The model-FLOPs formula counts matmuls only (exactly: see
  test_formula_flops_are_the_jaxpr_matmuls); XLA's count adds the elementwise
  work (softmax, norms, GELU, the loss over the vocabulary and, for model
  tuning, Adafactor's update of every weight, and dropout's masks). At this
  tiny width (emb_dim 24) that is a large share: with jax 0.10 the ratio is
  0.888 for prompt tuning (0.947 without dropout) and 0.752 for model
  tuning; it nears 1 as the model widens."""
  _, records, _, _ = cli_run
  bands = {'prompt_tuning': (0.85, 0.92), 'model_tuning': (0.72, 0.78),
           'prompt_tuning_no_dropout': (0.91, 0.98)}
  for record in records:
    low, high = bands[record['case']]
    assert low < record['model_flops_per_step'] / record['flops'] < high, (
        record['case'], record['model_flops_per_step'], record['flops'])


def _dot_flops(jaxpr):
  """2 x (output size) x (contracted size), summed over every dot_general."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (contracting, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += 2 * np.prod(eqn.outvars[0].aval.shape, dtype=np.int64) * (
          np.prod([lhs[d] for d in contracting], dtype=np.int64))
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(sub, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr)):
          total += _dot_flops(sub)
  return int(total)


def test_formula_flops_are_the_jaxpr_matmuls():
  """The formula equals the matmul FLOPs JAX traces: exactly for the forward
  pass and a model-tuning step. For prompt tuning, 2 W + 3 A overcounts what
  JAX differentiates: nothing below the first decoder layer's cross-attention
  depends on the prompt, so that layer's self-attention backward (input
  gradients of q, k, v, out and both attention matmuls) and the cross-attention
  query side (query projection, q.k^T with respect to q) are never computed."""
  import flax  # pylint: disable=g-import-not-at-top
  config = bench_utils.SIZES['tiny']
  model = models.EncoderDecoderModel(t5.Transformer(config, prompt_length=P))
  params = flax.core.meta.unbox(model.init(jax.random.PRNGKey(0), T, U))
  batch = bench_utils.random_batch(np.random.default_rng(0), B, T, U,
                                   config.vocab_size)

  def loss(params):
    return model.loss_fn(params, batch, None)[0]

  def prompt_loss(prompt):
    encoder = dict(params['encoder'], prompt=prompt)
    return loss(dict(params, encoder=encoder))

  forward = costs.forward_flops(config, B, T, U, P)['total']
  assert _dot_flops(jax.make_jaxpr(loss)(params)) == forward
  assert _dot_flops(jax.make_jaxpr(jax.grad(loss))(params)) == (
      costs.step_flops(config, B, T, U, P, 'model_tuning'))
  b, u, s = B, U, P + T
  h, i = config.emb_dim, config.num_heads * config.head_dim
  not_reaching_the_prompt = (b * u * 2 * 5 * h * i  # q, k, v, out; cross q
                             + 2 * b * 2 * 2 * u * u * i  # self-attention
                             + b * 2 * u * s * i)  # cross-attention, d/dq
  assert _dot_flops(jax.make_jaxpr(jax.grad(prompt_loss))(
      params['encoder']['prompt'])) == costs.step_flops(
          config, B, T, U, P, 'prompt_tuning') - not_reaching_the_prompt


def test_count_weight_gradient_dots():
  params = {'kernel': jnp.ones((3, 4)), 'scale': jnp.ones(4)}
  x = jnp.ones((2, 5, 3))

  def loss(params, x):
    return jnp.sum(jnp.einsum('btd,df->btf', x, params['kernel'])
                   * params['scale'])

  weight_grad = jax.make_jaxpr(jax.grad(loss))(params, x)
  input_grad = jax.make_jaxpr(jax.grad(loss, argnums=1))(params, x)
  assert bench_utils.count_weight_gradient_dots(weight_grad, params) == 1
  assert bench_utils.count_weight_gradient_dots(input_grad, params) == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(size='huge'), "--size='huge'"),
    (dict(dtype='float16'), "--dtype='float16'"),
    (dict(size='tiny', repeats=0), '--repeats=0'),
    (dict(size='tiny', prompt_length=0), '--prompt_length=0'),
    (dict(size='tiny', frozen_dtype='int8'), "--frozen_dtype='int8'"),
    (dict(size='tiny', frameworks=('peft',)), '--frameworks=peft'),
])
def test_bad_arguments_name_the_flag(kwargs, message):
  with pytest.raises(ValueError, match=message.replace('.', r'\.')):
    bench_train.run_benchmark(**kwargs)


def test_cli_rejects_an_unknown_suite():
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.bench', '--suite=train,fast'],
      capture_output=True, text=True, env=_FAST_ENV, timeout=120, check=False)
  assert result.returncode != 0
  assert "unknown ['fast']" in result.stderr


# ----------------------------------------------------------------------------
# FROZEN_DTYPE, remat and compilation counting in the trainer.
# ----------------------------------------------------------------------------


def _tiny_model(remat=False, prompt_length=P):
  config = dataclasses.replace(bench_utils.SIZES['tiny'], remat=remat)
  return models.EncoderDecoderModel(
      t5.Transformer(config, prompt_length=prompt_length))


@pytest.fixture(scope='module')
def tiny_params():
  """The tiny prompted model's parameters (the same with or without remat)."""
  model = _tiny_model()
  return partitioning.unbox(jax.jit(model.init)(jax.random.PRNGKey(0)))


def test_frozen_dtype_halves_frozen_bytes(tiny_params):
  params = tiny_params
  trainable, frozen = trainer.split_params(params, [prompts.PROMPT_REGEX])
  half = trainer.cast_frozen(frozen, 'bfloat16')
  assert trainer.count_params(half)[1] * 2 == trainer.count_params(frozen)[1]
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(half))
  for before, after in zip(jax.tree_util.tree_leaves(frozen),
                           jax.tree_util.tree_leaves(half)):
    np.testing.assert_array_equal(np.asarray(before.astype(jnp.bfloat16)),
                                  np.asarray(after))
  # The default keeps the paper's float32, untouched.
  assert trainer.cast_frozen(frozen, None) is frozen
  for kept, leaf in zip(
      jax.tree_util.tree_leaves(trainer.cast_frozen(frozen, 'float32')),
      jax.tree_util.tree_leaves(frozen)):
    assert kept is leaf
  del trainable


def test_frozen_dtype_rejects_other_dtypes():
  with pytest.raises(ValueError, match="FROZEN_DTYPE is 'float16'"):
    trainer.cast_frozen({'w': jnp.ones(2)}, 'float16')


def test_bfloat16_frozen_weights_only_round_the_weights(fast_compiles,
                                                       tiny_params):
  """bfloat16 frozen weights compute what float32 weights holding the same
  rounded values compute: the model casts at use, so only the weights'
  rounding differs from float32."""
  model = _tiny_model()
  batch = bench_utils.random_batch(np.random.default_rng(0), B, T, U,
                                   bench_utils.SIZES['tiny'].vocab_size)
  trainable, frozen = trainer.split_params(tiny_params, [prompts.PROMPT_REGEX])
  half = trainer.cast_frozen(frozen, 'bfloat16')
  rounded = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), half)

  @jax.jit
  def loss_and_grad(frozen):
    return jax.value_and_grad(lambda t: model.loss_fn(
        trainer.merge_params(t, frozen), batch, None)[0])(trainable)

  (loss_a, grad_a), (loss_b, grad_b) = loss_and_grad(half), loss_and_grad(
      rounded)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      grad_a, grad_b)


@pytest.mark.slow
def test_remat_gives_the_same_loss_and_gradients(fast_compiles, tiny_params):
  plain, remat = _tiny_model(), _tiny_model(remat=True)
  params = tiny_params
  assert (jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
      partitioning.unbox(jax.eval_shape(remat.init, jax.random.PRNGKey(0)))))
  batch = bench_utils.random_batch(np.random.default_rng(1), B, T, U,
                                   bench_utils.SIZES['tiny'].vocab_size)
  # The prompt's gradient flows back through every rematerialised layer.
  trainable, frozen = trainer.split_params(params, [prompts.PROMPT_REGEX])
  dropout = jax.random.PRNGKey(3)

  def loss_and_grads(model):
    return jax.jit(jax.value_and_grad(lambda t: model.loss_fn(
        trainer.merge_params(t, frozen), batch, dropout)[0]))(trainable)

  (loss, grads), (remat_loss, remat_grads) = (loss_and_grads(plain),
                                              loss_and_grads(remat))
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      remat_grads, grads)


def test_trace_counter_counts_compilations():
  counter = trainer.TraceCounter()
  double = bench_utils.jit_counted(lambda x: 2 * x, counter)
  for _ in range(3):
    double(np.ones(3, np.float32))
  assert counter.count == 1
  # Another shape is another compilation, and is counted.
  double(np.ones(4, np.float32))
  assert counter.count == 2


@pytest.mark.slow
def test_a_training_run_compiles_its_step_once(tmp_path, fast_compiles):
  """`trainer.train` (frozen weights in bfloat16 here) counts the step's
  compilations: one, at the first step."""
  from prompt_tuning.checkpoints import t5x  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import embedded  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import offline  # pylint: disable=g-import-not-at-top
  path = embedded.checkpoint_path()
  config = t5.config_from_params(t5x.load_t5x(path), dropout_rate=0.0)
  vocabulary = offline.vocabulary()
  model = models.EncoderDecoderModel(
      t5.Transformer(config, prompt_length=3), vocabulary, vocabulary)
  result = trainer.train(
      model=model, mixture_or_task_name='taskless_offline_topic',
      task_feature_lengths={'inputs': 16, 'targets': 4}, batch_size=4,
      train_steps=3, model_dir=str(tmp_path), initial_checkpoint_path=path,
      log_period=2, checkpoint_period=3, eval_mode=None,
      frozen_dtype='bfloat16')
  assert result.step == 3
  assert result.step_compilations == 1
  assert np.isfinite(result.metrics['loss_per_token'])


def test_count_backend_compiles():
  with bench_utils.count_backend_compiles() as compiles:
    jax.jit(lambda x: x * 3 + 1)(jnp.arange(7.0)).block_until_ready()
  assert len(compiles) >= 1
  seen = len(compiles)
  jax.jit(lambda x: x * 5)(jnp.arange(3.0)).block_until_ready()
  assert len(compiles) == seen  # the listener is gone


# ----------------------------------------------------------------------------
# Costs.
# ----------------------------------------------------------------------------


def test_step_flops_formula():
  config = bench_utils.SIZES['anchor']
  fwd = costs.forward_flops(config, 8, 128, 8, 100)
  assert fwd['total'] == fwd['weight'] + fwd['attention']
  prompt = costs.step_flops(config, 8, 128, 8, 100, 'prompt_tuning')
  model = costs.step_flops(config, 8, 128, 8, 100, 'model_tuning')
  assert prompt == 2 * fwd['weight'] + 3 * fwd['attention']
  assert model == 3 * fwd['weight'] + 3 * fwd['attention']
  # About 4N against 6N per token: weight matmuls dominate at this size.
  assert 0.66 < prompt / model < 0.70
  # Linear in the batch.
  assert costs.step_flops(config, 16, 128, 8, 100,
                                'prompt_tuning') == 2 * prompt
  with pytest.raises(ValueError, match="unknown method 'lora'"):
    costs.step_flops(config, 8, 128, 8, 100, 'lora')


def test_decode_flops():
  config = bench_utils.SIZES['anchor']
  flops = costs.decode_flops(config, 8, 228, 16)
  # B S Ld 2 (2 H I): the encoder positions' keys and values, every layer,
  # once per batch; a step's cost grows only through attention over them.
  assert flops['prefill'] == 8 * 228 * 4 * 2 * 2 * 256 * 256
  longer = costs.decode_flops(config, 8, 2 * 228, 16)
  assert longer['prefill'] == 2 * flops['prefill']
  assert longer['step'] - flops['step'] == 8 * 4 * 2 * 2 * 228 * 256
  assert flops['step'] < 0.2 * flops['prefill']


@pytest.mark.parametrize('kind, dtype, peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989.4e12),
    ('NVIDIA H100 PCIe', 'bfloat16', 756e12),
    ('NVIDIA H200', 'bfloat16', 989.4e12),
    ('NVIDIA A100-SXM4-40GB', 'float32', 156e12),
    ('TPU v4', 'bfloat16', 275e12),
    ('TPU v5 lite', 'bfloat16', 197e12),
    ('cpu', 'float32', None),
])
def test_peak_flops(kind, dtype, peak):
  assert costs.peak_flops(kind, dtype) == peak


def test_mfu():
  assert costs.mfu(989.4e12, 2.0, 'NVIDIA H100 80GB HBM3',
                         'bfloat16') == pytest.approx(0.5)
  assert costs.mfu(989.4e12, 1.0, 'NVIDIA H100 80GB HBM3', 'bfloat16',
                         num_devices=4) == pytest.approx(0.25)
  assert costs.mfu(1e9, 1.0, 'cpu', 'float32') is None


@pytest.mark.parametrize('shape, values', [
    ((100, 256), 100 * 256 + 2),      # the paper's prompt: not factored
    ((256, 1024), 256 + 1024 + 1),    # factored: a row and a column
    ((1024, 256), 1024 + 256 + 1),
    ((32128, 256), 32128 + 256 + 1),
    ((4, 32), 4 * 32 + 2),
    ((7,), 7 + 2),
])
def test_adafactor_state_values(shape, values):
  assert costs.adafactor_state_values(shape) == values


def test_adafactor_state_bytes_match_optax():
  tree = {'prompt': jnp.zeros((100, 256)), 'kernel': jnp.zeros((256, 1024)),
          'scale': jnp.zeros(256), 'relpos': jnp.zeros((4, 32))}
  state = jax.eval_shape(trainer.adafactor().init, tree)
  measured = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(state))
  assert costs.adafactor_state_bytes(tree) == measured
  assert isinstance(trainer.adafactor(), optax.GradientTransformation)


# ----------------------------------------------------------------------------
# Timing helpers.
# ----------------------------------------------------------------------------


def test_interleave_alternates_the_order():
  order = []
  cases = [bench_utils.Timed(name, lambda n=name: order.append(n),
                             wait=lambda _: None) for name in 'abc']
  compiles = bench_utils.interleave(cases, repeats=4)
  assert ''.join(order) == 'abccbaabccba'
  assert all(len(c.times) == 4 for c in cases)
  assert compiles == 0


def test_summarise():
  summary = bench_utils.summarise([2.0, 4.0, 6.0, 8.0], steps_per_repeat=2,
                                  per_step={'tokens': 10})
  assert summary['step_time_median_s'] == 2.5
  assert summary['step_time_min_s'] == 1.0
  assert summary['step_time_max_s'] == 4.0
  assert summary['tokens_per_step'] == 10
  assert summary['tokens_per_s'] == 4.0


def test_matmul_peak_is_the_best_shape():
  cases = bench_utils.matmul_cases([(4, 3, 2), (2, 3, 4)], 'float32')
  for case, seconds in zip(cases, ([2.0, 1.0, 3.0], [1.0, 1.0])):
    case.times.extend(seconds)
  peak = bench_utils.matmul_peak(cases)
  # 48 FLOPs each: 24 FLOP/s at the first shape's median of 2 s, 48 at 1 s.
  assert peak['matmul_flops_per_s'] == {'4x3x2': 24.0, '2x3x4': 48.0}
  assert peak['matmul_peak_flops_per_s'] == 48.0
  assert peak['matmul_peak_shape'] == '2x3x4'
  assert cases[0].run() >= 0  # the case multiplies its own matrices


def test_background_load_runs_a_child_only_meanwhile():
  with bench_utils.background_load(0) as info:
    assert info == {'background_load_threads': 0}
  with bench_utils.background_load(1) as info:
    pid = int(info['background_load'].rsplit('pid ', 1)[1])
    os.kill(pid, 0)  # alive
    assert info['background_load_threads'] == 1
  with pytest.raises(ProcessLookupError):
    os.kill(pid, 0)
