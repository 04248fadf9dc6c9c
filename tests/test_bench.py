"""Tests of prompt_tuning.bench: it runs, reports every field, and its
structural checks hold. Never asserts on timings."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from prompt_tuning import bench

# Fields every JSON record must carry.
FIELDS = (
    'case', 'size', 'dtype', 'batch_size', 'input_length', 'target_length',
    'prompt_length', 'repeats', 'device', 'platform', 'jax_version',
    'trainable_regex', 'learning_rate', 'trainable_params', 'frozen_params',
    'opt_state_bytes', 'trace_lower_s', 'compile_s', 'first_step_s',
    'step_time_median_s', 'step_time_min_s', 'step_time_max_s',
    'step_time_iqr_s', 'step_times_s', 'tokens_per_step', 'tokens_per_s',
    'flops', 'forward_flops', 'flops_per_forward', 'dot_generals',
    'weight_gradient_dots', 'compiled_argument_bytes',
    'compiled_output_bytes', 'compiled_alias_bytes', 'compiled_temp_bytes',
    'compiled_peak_bytes', 'device_bytes_in_use_before',
    'device_bytes_in_use', 'device_peak_bytes_in_use')

B, T, U, P = 2, 11, 3, 5


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
  """One CLI run of the tiny size, 2 repeats: (stdout, --output records)."""
  output = tmp_path_factory.mktemp('bench') / 'bench.jsonl'
  # NOTE: XLA's optimisations off keeps the compiles short; the jaxpr checks
  # do not depend on them (and on this size neither do the FLOP counts).
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  result = subprocess.run(
      [sys.executable, '-m', 'prompt_tuning.bench', '--size=tiny',
       '--repeats=2', '--warmup_steps=1', f'--batch_size={B}',
       f'--input_length={T}', f'--target_length={U}', f'--prompt_length={P}',
       f'--output={output}'],
      capture_output=True, text=True, env=env, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in output.read_text().splitlines()]
  return result.stdout, records


def test_records_have_every_field(cli_run):
  stdout, records = cli_run
  assert [r['case'] for r in records] == list(bench.CASES)
  for record in records:
    assert not set(FIELDS) - set(record), set(FIELDS) - set(record)
    assert len(record['step_times_s']) == 2
    assert record['tokens_per_step'] == B * (T + U)
    # The same records are printed, one JSON line each.
    assert json.dumps(record) in stdout


def test_summary_table_printed(cli_run):
  stdout, _ = cli_run
  assert '| | prompt tuning | model tuning | prompt / model |' in stdout
  assert f'jax {jax.__version__}' in stdout
  for label in ('step time, median', 'compiled peak', 'step FLOPs',
                'weight-gradient matmuls'):
    assert f'| {label}' in stdout


def test_prompt_tuning_computes_no_weight_gradients(cli_run):
  _, (prompt, model) = cli_run
  config = bench.SIZES['tiny']
  assert prompt['trainable_params'] == P * config.emb_dim
  assert prompt['trainable_params'] + prompt['frozen_params'] == (
      model['trainable_params'])
  assert prompt['weight_gradient_dots'] == 0
  assert model['weight_gradient_dots'] > 0
  # Same forward pass; the prompt step drops the weight gradients.
  assert prompt['forward_flops'] == model['forward_flops']
  assert prompt['flops'] < model['flops']
  assert prompt['opt_state_bytes'] < model['opt_state_bytes']
  assert prompt['compiled_temp_bytes'] <= model['compiled_temp_bytes']


def test_count_weight_gradient_dots():
  params = {'kernel': jnp.ones((3, 4)), 'scale': jnp.ones(4)}
  x = jnp.ones((2, 5, 3))

  def loss(params, x):
    return jnp.sum(jnp.einsum('btd,df->btf', x, params['kernel'])
                   * params['scale'])

  weight_grad = jax.make_jaxpr(jax.grad(loss))(params, x)
  input_grad = jax.make_jaxpr(jax.grad(loss, argnums=1))(params, x)
  assert bench.count_weight_gradient_dots(weight_grad, params) == 1
  assert bench.count_weight_gradient_dots(input_grad, params) == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(size='huge'), "--size='huge'"),
    (dict(dtype='float16'), "--dtype='float16'"),
    (dict(size='tiny', repeats=0), '--repeats=0'),
    (dict(size='tiny', prompt_length=0), '--prompt_length=0'),
])
def test_bad_arguments_name_the_flag(kwargs, message):
  with pytest.raises(ValueError, match=message.replace('.', r'\.')):
    bench.run_benchmark(**kwargs)
