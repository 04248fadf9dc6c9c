"""Tests of the scaling suite (prompt_tuning.benchmarks.scaling): sweeps, fits and
curves. Never asserts on timings."""
import numpy as np
import pytest

from prompt_tuning.benchmarks import scaling as bench_scaling


def test_fit_curve_of_a_line():
  x = np.array([1, 2, 4, 8])
  fit = bench_scaling.fit_curve(x, 2.0 + 3.0 * x)
  assert fit['slope'] == pytest.approx(3.0)
  assert fit['intercept'] == pytest.approx(2.0)
  assert fit['r2'] == pytest.approx(1.0)


def test_fit_curve_exponent_of_a_power_law():
  x = np.array([1.0, 4.0, 16.0, 64.0])
  assert bench_scaling.fit_curve(x, 5 * np.sqrt(x))['exponent'] == (
      pytest.approx(0.5))
  assert np.isnan(bench_scaling.fit_curve([0, 1], [1, 2])['exponent'])


def test_fit_curve_needs_two_values():
  with pytest.raises(ValueError, match='at least 2 distinct values'):
    bench_scaling.fit_curve([3, 3], [1.0, 2.0])


@pytest.mark.slow
def test_a_sweep_gives_records_a_curve_and_a_png(tmp_path, fast_compiles):
  records, curves = bench_scaling.run_scaling(
      axes=['batch_size'], values={'batch_size': [1, 2]}, size='tiny',
      prompt_length=3, input_length=7, target_length=3, repeats=2,
      warmup_steps=1)
  assert [(r['axis'], r['value'], r['framework']) for r in records] == [
      ('batch_size', 1, 'jax'), ('batch_size', 2, 'jax')]
  for record in records:
    assert record['suite'] == 'scaling'
    assert record['recompilations'] == 0
    assert record['backend_compiles_while_timing'] == 0
    assert record['batch_size'] == record['value']
    assert record['prompt_length'] == 3 and record['input_length'] == 7
  (curve,) = curves
  assert curve['values'] == [1, 2]
  assert {'slope', 'intercept', 'r2', 'exponent'} <= set(curve)
  table = bench_scaling.scaling_table(records, curves)
  assert 'batch_size swept' in table and 'ms per example' in table
  (path,) = bench_scaling.plot_curves(records, curves, str(tmp_path))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('kwargs, message', [
    (dict(axes=['depth']), r"unknown \['depth'\]"),
    (dict(axes=['batch_size'], values={'batch_size': [4]}),
     'the batch_size sweep is'),
    (dict(axes=['batch_size'], values={'batch_size': [0, 2]}),
     'the batch_size sweep is'),
])
def test_bad_sweeps(kwargs, message):
  with pytest.raises(ValueError, match=message):
    bench_scaling.run_scaling(size='tiny', **kwargs)
