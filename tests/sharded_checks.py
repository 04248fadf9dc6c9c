"""The tests that read a sharded-checks script's results (one per check).

A checks script runs in a subprocess on 8 fake CPU devices and prints
`{check name: {'ok': bool, 'detail': str}}`; a test module makes its tests
with `make_tests(CHECK_NAMES, GROUP)` next to a `sharded_results` fixture
that runs its script.
"""
import pytest


def make_tests(check_names, group):
  """Returns (test_sharded, test_sharded_check_list_is_complete), both in
  xdist group `group`, so that one worker runs the script, once."""

  @pytest.mark.slow
  @pytest.mark.xdist_group(group)
  @pytest.mark.parametrize('name', check_names)
  def test_sharded(sharded_results, name):
    assert name in sharded_results, sorted(sharded_results)
    assert sharded_results[name]['ok'], sharded_results[name]['detail']

  @pytest.mark.slow
  @pytest.mark.xdist_group(group)
  def test_sharded_check_list_is_complete(sharded_results):
    assert sorted(sharded_results) == sorted(check_names)

  return test_sharded, test_sharded_check_list_is_complete
