"""Sharded checks of prompt_tuning.training.partitioning on 8 forced CPU devices.

Run as a script by tests/test_partitioning.py in a fresh interpreter, because
`--xla_force_host_platform_device_count` must be set before jax is imported.
Prints one JSON object {check name: {"ok": bool, "detail": str}} on stdout.
"""
import json
import os
import sys
import traceback

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ['JAX_PLATFORMS'] = 'cpu'

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from prompt_tuning.training import partitioning

# Odd sizes (letters as in the model: V vocab, H embed, M mlp, N heads).
V, H, M, N, K, PROMPT, B, T = 16, 12, 8, 4, 6, 5, 8, 3


def _param(module, name, names, shape):
  init = nn.with_logical_partitioning(nn.initializers.normal(0.5), names)
  return module.param(name, init, shape)


class Toy(nn.Module):
  """Tiny model whose parameters carry the T5's logical axis names."""

  @nn.compact
  def __call__(self, tokens):
    """[B, T] int tokens -> ([B, T, V] logits, [B, T, M] hidden)."""
    embedding = _param(self, 'embedding', ('vocab', 'embed'), (V, H))
    wi = _param(self, 'wi', ('embed', 'mlp'), (H, M))
    wo = _param(self, 'wo', ('mlp', 'embed'), (M, H))
    scale = _param(self, 'scale', ('embed',), (H,))
    relpos = _param(self, 'relpos', ('heads', None), (N, K))
    prompt = _param(self, 'prompt', ('prompt', 'embed'), (PROMPT, H))
    x = embedding[tokens] + prompt.mean(0) + relpos.mean()  # [B, T, H]
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    hidden = nn.relu(x @ wi)  # [B, T, M]
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    y = (hidden @ wo) * scale  # [B, T, H]
    return y @ embedding.T, hidden  # [B, T, V], [B, T, M]


EXPECTED_1D = {
    'embedding': P('model', None),
    'wi': P(None, 'model'),
    'wo': P('model', None),
    'scale': P(None),
    'relpos': P('model', None),
    'prompt': P(None, None),
}
EXPECTED_2D_PARAMS = {
    'embedding': P('model', 'data'),
    'wi': P('data', 'model'),
    'wo': P('model', 'data'),
    'scale': P('data'),
    'relpos': P('model', None),
    'prompt': P(None, 'data'),
}


def _tokens():
  return jnp.asarray(np.arange(B * T).reshape(B, T) % V, dtype=jnp.int32)


def _init(rng):
  return Toy().init(rng, _tokens())


def _specs(shardings):
  return {k: s.spec for k, s in shardings['params'].items()}


def _loss(params, tokens, targets):
  logits, hidden = Toy().apply({'params': params}, tokens)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  loss = -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))
  return loss, hidden


def _step(params, batch):
  (loss, hidden), grads = jax.value_and_grad(
      _loss, has_aux=True)(params, batch['tokens'], batch['targets'])
  return loss, grads, hidden


def check_mesh_shape():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  assert dict(mesh.shape) == {'data': 4, 'model': 2}, mesh.shape
  assert mesh.devices.size == 8
  assert sorted(d.id for d in mesh.devices.flat) == list(range(8))
  return partitioning.describe(mesh, partitioning.standard_logical_axis_rules())


def _value_error(fn, fragments, case: str) -> str:
  """Calls `fn`, expecting a ValueError whose message holds `fragments`."""
  try:
    fn()
  except ValueError as e:
    assert all(f in str(e) for f in fragments), str(e)
    return str(e)
  raise AssertionError(f'no ValueError for {case}')


def check_divisibility_error():
  return _value_error(
      lambda: partitioning.create_mesh(
          partitioning.MeshConfig(num_partitions=3)),
      ('8 devices', '3'), '8 devices / 3 partitions')


def check_param_specs():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  abstract = jax.eval_shape(_init, jax.random.PRNGKey(0))
  got = _specs(partitioning.logical_to_mesh_shardings(
      abstract, mesh, partitioning.standard_logical_axis_rules()))
  assert got == EXPECTED_1D, got
  got = _specs(partitioning.logical_to_mesh_shardings(
      abstract, mesh,
      partitioning.standard_logical_axis_rules(parameter_partitioning_dims=2)))
  assert got == EXPECTED_2D_PARAMS, got
  return str(got)


def check_shard_init():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  for dims, expected in ((1, EXPECTED_1D), (2, EXPECTED_2D_PARAMS)):
    rules = partitioning.standard_logical_axis_rules(
        parameter_partitioning_dims=dims)
    variables, shardings = partitioning.shard_init(
        _init, mesh, rules, jax.random.PRNGKey(0))
    for name, spec in expected.items():
      array = variables['params'][name]
      assert isinstance(array, jax.Array), type(array)
      assert array.sharding == NamedSharding(mesh, spec), (name,
                                                           array.sharding)
      assert shardings['params'][name] == array.sharding
    reference = partitioning.unbox(_init(jax.random.PRNGKey(0)))
    for name in expected:
      np.testing.assert_allclose(
          np.asarray(variables['params'][name]),
          np.asarray(reference['params'][name]), rtol=1e-6)
  return 'ok'


def check_train_step_matches_single_device():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  rules = partitioning.standard_logical_axis_rules()
  tokens = np.asarray(_tokens())
  batch_np = {'tokens': tokens, 'targets': (tokens * 5 + 1) % V}

  # Single device reference.
  device0 = jax.devices()[0]
  params0 = jax.device_put(
      partitioning.unbox(_init(jax.random.PRNGKey(1)))['params'], device0)
  loss0, grads0, _ = jax.jit(_step)(params0, jax.device_put(batch_np, device0))

  variables, shardings = partitioning.shard_init(
      _init, mesh, rules, jax.random.PRNGKey(1))
  batch = partitioning.host_local_to_global(batch_np, mesh)
  with partitioning.mesh_context(mesh, rules):
    step = jax.jit(
        _step,
        in_shardings=(shardings['params'], partitioning.data_sharding(mesh)),
        out_shardings=(None, shardings['params'], None))
    loss, grads, hidden = step(variables['params'], batch)
  # The activation constraint really applied: [B, T, M] -> P('data', None,
  # 'model').
  assert hidden.sharding.spec == P('data', None, 'model'), hidden.sharding
  np.testing.assert_allclose(float(loss), float(loss0), rtol=1e-5)
  for name, g0 in grads0.items():
    assert grads[name].sharding == shardings['params'][name]
    np.testing.assert_allclose(np.asarray(grads[name]), np.asarray(g0),
                               rtol=1e-4, atol=1e-6)
  return f'loss {float(loss):.6f} vs {float(loss0):.6f}'


def check_constraint_is_noop_without_context():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  variables, _ = partitioning.shard_init(
      _init, mesh, partitioning.standard_logical_axis_rules(),
      jax.random.PRNGKey(1))
  _, hidden = jax.jit(lambda p, t: Toy().apply(p, t))(variables, _tokens())
  # Outside mesh_context no rules are set, so nothing asks for 'model'.
  assert hidden.sharding.spec != P('data', None, 'model'), hidden.sharding
  return str(hidden.sharding)


def check_host_local_to_global():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  local = {'tokens': np.arange(B * T, dtype=np.int32).reshape(B, T),
           'weights': np.ones((B,), np.float32)}
  batch = partitioning.host_local_to_global(local, mesh)
  for key, value in local.items():
    array = batch[key]
    assert array.shape == value.shape, (key, array.shape)
    assert array.sharding == NamedSharding(mesh, P('data')), array.sharding
    assert len(array.addressable_shards) == 8
    assert {s.data.shape[0] for s in array.addressable_shards} == {B // 4}
    np.testing.assert_array_equal(np.asarray(array), value)
  assert partitioning.global_batch_size_check(B, mesh) == B
  assert partitioning.process_data_shard(mesh) == (0, 1)
  return _value_error(lambda: partitioning.global_batch_size_check(6, mesh),
                      ('6', 'size 4'), 'global batch 6 on data axis 4')


def check_indivisible_parameter_error():
  mesh = partitioning.create_mesh(partitioning.MeshConfig(num_partitions=2))
  boxed = {'w': nn.LogicallyPartitioned(
      jax.ShapeDtypeStruct((7, 4), jnp.float32), ('vocab', 'embed'))}
  return _value_error(
      lambda: partitioning.logical_to_mesh_shardings(
          boxed, mesh, partitioning.standard_logical_axis_rules()),
      ("['w']", '7'), 'vocab 7 on model axis 2')


CHECKS = {name: fn for name, fn in globals().items()
          if name.startswith('check_')}


def main():
  results = {}
  for name, fn in CHECKS.items():
    try:
      results[name] = {'ok': True, 'detail': str(fn())}
    except Exception:  # pylint: disable=broad-except
      results[name] = {'ok': False, 'detail': traceback.format_exc()}
  json.dump(results, sys.stdout)


if __name__ == '__main__':
  main()
