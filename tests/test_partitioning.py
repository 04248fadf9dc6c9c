"""Tests for prompt_tuning.training.partitioning.

Rules and mesh layouts are checked in-process (fake device objects need no
hardware); sharded computation runs once, in a subprocess with 8 forced CPU
devices (tests/sharded_partitioning_checks.py), since the device count must be
set before jax is first imported.
"""
import dataclasses
import json
import os
import pathlib
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import pytest

import commands
import sharded_checks

from prompt_tuning.training import partitioning

_CHECKS_SCRIPT = pathlib.Path(__file__).with_name(
    'sharded_partitioning_checks.py')
_SHARDED_CHECKS = (
    'check_mesh_shape',
    'check_divisibility_error',
    'check_param_specs',
    'check_shard_init',
    'check_train_step_matches_single_device',
    'check_constraint_is_noop_without_context',
    'check_host_local_to_global',
    'check_indivisible_parameter_error',
)


@dataclasses.dataclass(frozen=True)
class FakeDevice:
  """Stands in for a jax device in layout tests."""
  id: int
  process_index: int = 0
  platform: str = 'gpu'
  device_kind: str = 'fake'
  slice_index: int = 0
  coords: tuple[int, int, int] = (0, 0, 0)  # TPU chip position in its slice
  core_on_chip: int = 0


def _gpus(num_processes, per_process):
  return [FakeDevice(i, process_index=i // per_process)
          for i in range(num_processes * per_process)]


# ---------------------------------------------------------------- rules


@pytest.mark.parametrize('param_dims,act_dims,names,expected', [
    # Default: only vocab/mlp/heads on 'model', batch on 'data'.
    (1, 1, ('vocab', 'embed'), P('model', None)),
    (1, 1, ('embed', 'mlp'), P(None, 'model')),
    (1, 1, ('mlp', 'embed'), P('model', None)),
    (1, 1, ('embed', 'heads'), P(None, 'model')),
    (1, 1, ('heads', None), P('model', None)),
    (1, 1, ('prompt', 'embed'), P(None, None)),
    (1, 1, ('embed',), P(None)),
    (1, 1, ('batch', 'length', 'embed'), P('data', None, None)),
    (1, 1, ('batch', 'length', 'heads', 'kv'), P('data', None, 'model', None)),
    (1, 1, ('batch', 'length', 'vocab'), P('data', None, 'model')),
    # 2-D parameters: embed falls back to 'data'; activations keep batch there.
    (2, 1, ('embed', 'mlp'), P('data', 'model')),
    (2, 1, ('vocab', 'embed'), P('model', 'data')),
    (2, 1, ('batch', 'length', 'embed'), P('data', None, None)),
    # 2-D activations: embed on 'model' unless another dim took it.
    (1, 2, ('batch', 'length', 'embed'), P('data', None, 'model')),
    (1, 2, ('embed', 'mlp'), P(None, 'model')),
    (1, 2, ('batch', 'length', 'mlp'), P('data', None, 'model')),
    # Both: 'model' first, then 'data'.
    (2, 2, ('embed',), P('model')),
    (2, 2, ('embed', 'mlp'), P('data', 'model')),
    (2, 2, ('batch', 'length', 'embed'), P('data', None, 'model')),
])
def test_standard_rules_map_names(param_dims, act_dims, names, expected):
  rules = partitioning.standard_logical_axis_rules(
      parameter_partitioning_dims=param_dims,
      activation_partitioning_dims=act_dims)
  assert nn.logical_to_mesh_axes(names, rules) == expected


def test_standard_rules_are_plain_pairs_covering_design_names():
  rules = partitioning.standard_logical_axis_rules()
  assert isinstance(rules, tuple)
  assert all(isinstance(r, tuple) and len(r) == 2 for r in rules)
  names = {name for name, _ in rules}
  assert names == {'batch', 'length', 'embed', 'mlp', 'heads', 'kv', 'vocab',
                   'prompt'}


@pytest.mark.parametrize('kwargs,fragment', [
    ({'parameter_partitioning_dims': 3}, 'parameter_partitioning_dims'),
    ({'activation_partitioning_dims': 0}, 'activation_partitioning_dims'),
    ({'num_partitions': 0}, 'num_partitions'),
])
def test_standard_rules_reject_bad_arguments(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    partitioning.standard_logical_axis_rules(**kwargs)


# ---------------------------------------------------------------- layout


def test_device_grid_single_process_reshapes_in_order():
  grid = partitioning.device_grid(
      partitioning.MeshConfig(num_partitions=2), _gpus(1, 8))
  assert grid.shape == (4, 2)
  assert [d.id for d in grid.flat] == list(range(8))


def test_device_grid_cpu_is_plain_reshape():
  devices = [FakeDevice(i, platform='cpu') for i in (3, 1, 2, 0)]
  grid = partitioning.device_grid(
      partitioning.MeshConfig(num_partitions=2), devices)
  assert [[d.id for d in row] for row in grid] == [[3, 1], [2, 0]]


def test_device_grid_multi_process_keeps_model_axis_inside_a_process():
  grid = partitioning.device_grid(
      partitioning.MeshConfig(num_partitions=2), _gpus(2, 4))
  assert grid.shape == (4, 2)
  for row in grid:  # Each model group lives on one host.
    assert len({d.process_index for d in row}) == 1
  assert [row[0].process_index for row in grid] == [0, 0, 1, 1]


def test_device_grid_multi_slice_tpu_splits_data_over_slices():
  devices = [FakeDevice(i, process_index=i // 4, platform='tpu',
                        device_kind='TPU v4', slice_index=i // 4,
                        coords=(i % 2, i // 2 % 2, 0)) for i in range(8)]
  # Deliberately shuffled: layout must not depend on the order given.
  devices = devices[4:] + devices[:4]
  config = partitioning.MeshConfig(model_parallel_submesh=(1, 1, 2, 1))
  grid = partitioning.device_grid(config, devices)
  assert grid.shape == (4, 2)
  assert [row[0].slice_index for row in grid] == [0, 0, 1, 1]
  for row in grid:
    assert len({d.slice_index for d in row}) == 1


def test_device_grid_model_axis_larger_than_a_process_spans_processes():
  grid = partitioning.device_grid(
      partitioning.MeshConfig(num_partitions=8), _gpus(2, 4))
  assert grid.shape == (1, 8)


@pytest.mark.parametrize('config,fragment', [
    (partitioning.MeshConfig(num_partitions=3), '8 devices .* size 3'),
    (partitioning.MeshConfig(num_partitions=0), 'num_partitions must be >= 1'),
    (partitioning.MeshConfig(num_partitions=4,
                             model_parallel_submesh=(1, 1, 2, 1)),
     'disagrees'),
    (partitioning.MeshConfig(model_parallel_submesh=(1, 0)), 'positive'),
    (partitioning.MeshConfig(data_axis='x', model_axis='x'), 'must differ'),
])
def test_device_grid_errors(config, fragment):
  with pytest.raises(ValueError, match=fragment):
    partitioning.device_grid(config, _gpus(1, 8))


@pytest.mark.parametrize('num_partitions,process,expected', [
    (2, 0, (0, 2)),
    (2, 1, (1, 2)),
    (1, 1, (1, 2)),
    # The model axis spans both processes: both load the whole batch.
    (8, 0, (0, 1)),
    (8, 1, (0, 1)),
])
def test_process_data_shard(num_partitions, process, expected):
  grid = partitioning.device_grid(
      partitioning.MeshConfig(num_partitions=num_partitions), _gpus(2, 4))
  mesh = types.SimpleNamespace(devices=grid, axis_names=('data', 'model'))
  assert partitioning.process_data_shard(mesh, process_index=process) == (
      expected)


# ------------------------------------------------- one-device mesh in-process


def _one_device_mesh():
  return partitioning.create_mesh(
      partitioning.MeshConfig(), devices=jax.devices()[:1])


def test_logical_to_mesh_shardings_unknown_name_names_the_parameter():
  tree = {'layer': {'kernel': nn.LogicallyPartitioned(
      jax.ShapeDtypeStruct((4, 6), jnp.float32), ('embed', 'joined_kv'))}}
  with pytest.raises(ValueError, match=r"\['layer'\]\['kernel'\].*joined_kv"):
    partitioning.logical_to_mesh_shardings(
        tree, _one_device_mesh(), partitioning.standard_logical_axis_rules())


def test_logical_to_mesh_shardings_replicates_plain_leaves():
  mesh = _one_device_mesh()
  tree = {'step': jax.ShapeDtypeStruct((), jnp.int32),
          'w': nn.LogicallyPartitioned(
              jax.ShapeDtypeStruct((4, 6), jnp.float32), ('embed', 'mlp'))}
  shardings = partitioning.logical_to_mesh_shardings(
      tree, mesh, partitioning.standard_logical_axis_rules())
  assert shardings['step'].spec == P()
  assert shardings['w'].spec == P(None, 'model')
  assert jax.tree.structure(shardings) == jax.tree.structure(
      partitioning.unbox(tree))


def test_describe_mentions_mesh_and_rules():
  text = partitioning.describe(_one_device_mesh(),
                               partitioning.standard_logical_axis_rules())
  assert 'data=1 x model=1' in text
  assert 'batch->data' in text and 'mlp->model' in text


# ---------------------------------------------- 8 forced CPU devices, 1 run


@pytest.fixture(scope='module')
def sharded_results():
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)
  proc = commands.run([sys.executable, str(_CHECKS_SCRIPT)],
                      capture_output=True, text=True, env=env, timeout=300,
                      check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout)


test_sharded, test_sharded_check_list_is_complete = (
    sharded_checks.make_tests(_SHARDED_CHECKS, 'partitioning'))
