"""Tests for prompt_tuning.checkpoints (t5x, prompt files) and interop.hf."""
import json
import os
import pathlib
import shutil
import stat

from flax import serialization
from flax import traverse_util
import jax
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.checkpoints import t5x
from prompt_tuning.interop import hf
from prompt_tuning.model import prompts
from prompt_tuning.utils import files

REFERENCE_CHECKPOINT = 't5x_t5_1_1_tiny/checkpoint_3'
REFERENCE_EMBEDDING = 't5x_t5_1_1_tiny/token_embedder_embedding.npy'
# The reference checkpoint's config (shared/reference/README.md).
REFERENCE_SIZES = dict(vocab=32128, embed=4, heads=2, head_dim=2, mlp=8,
                       encoder_layers=2, decoder_layers=2, buckets=4)
# Odd, pairwise different sizes so that a swapped or missing transpose fails.
TINY_SIZES = dict(vocab=11, embed=6, heads=2, head_dim=5, mlp=7,
                  encoder_layers=2, decoder_layers=1, buckets=3)


def t5_shapes(vocab, embed, heads, head_dim, mlp, encoder_layers,
              decoder_layers, buckets, untied=True):
  """{name: shape} of a flaxformer T5 1.1 with these sizes."""
  inner = heads * head_dim
  shapes = {
      'token_embedder/embedding': (vocab, embed),
      'encoder/relpos_bias/rel_embedding': (heads, buckets),
      'encoder/encoder_norm/scale': (embed,),
      'decoder/relpos_bias/rel_embedding': (heads, buckets),
      'decoder/decoder_norm/scale': (embed,),
  }

  def attention(prefix):
    shapes.update({f'{prefix}/query/kernel': (embed, inner),
                   f'{prefix}/key/kernel': (embed, inner),
                   f'{prefix}/value/kernel': (embed, inner),
                   f'{prefix}/out/kernel': (inner, embed)})

  def mlp_block(prefix):
    shapes.update({f'{prefix}/wi_0/kernel': (embed, mlp),
                   f'{prefix}/wi_1/kernel': (embed, mlp),
                   f'{prefix}/wo/kernel': (mlp, embed)})

  for i in range(encoder_layers):
    layer = f'encoder/layers_{i}'
    attention(f'{layer}/attention')
    mlp_block(f'{layer}/mlp')
    for norm in ('pre_attention_layer_norm', 'pre_mlp_layer_norm'):
      shapes[f'{layer}/{norm}/scale'] = (embed,)
  for i in range(decoder_layers):
    layer = f'decoder/layers_{i}'
    attention(f'{layer}/self_attention')
    attention(f'{layer}/encoder_decoder_attention')
    mlp_block(f'{layer}/mlp')
    for norm in ('pre_self_attention_layer_norm',
                 'pre_cross_attention_layer_norm', 'pre_mlp_layer_norm'):
      shapes[f'{layer}/{norm}/scale'] = (embed,)
  if untied:
    shapes['decoder/logits_dense/kernel'] = (embed, vocab)
  return shapes


def unflatten(flat):
  return traverse_util.unflatten_dict(flat, sep='/')


def flatten(tree):
  return traverse_util.flatten_dict(tree, sep='/')


def random_tree(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return unflatten({n: rng.standard_normal(s).astype(np.float32)
                    for n, s in shapes.items()})


def shape_tree(shapes, dtype=np.float32):
  return unflatten({n: jax.ShapeDtypeStruct(s, dtype)
                    for n, s in shapes.items()})


def assert_trees_equal(a, b):
  flat_a, flat_b = flatten(a), flatten(b)
  assert sorted(flat_a) == sorted(flat_b)
  for name, x in flat_a.items():
    y = flat_b[name]
    assert x.dtype == y.dtype, name
    assert np.array_equal(x, y), name


def writable_copy(src, dst):
  """Copies a (read-only) checkpoint directory to a writable `dst`."""
  shutil.copytree(src, dst, copy_function=shutil.copyfile)
  for root, dirs, _ in os.walk(dst):
    for d in dirs:
      os.chmod(os.path.join(root, d), stat.S_IRWXU)
  os.chmod(dst, stat.S_IRWXU)
  return dst


@pytest.fixture
def reference_checkpoint(reference_path):
  return reference_path(REFERENCE_CHECKPOINT)


@pytest.fixture
def tiny_checkpoint(tmp_path):
  params = random_tree(t5_shapes(**TINY_SIZES))
  path = tmp_path / 'checkpoint_7'
  t5x.save_t5x(params, path, step=7)
  return path, params


# ---------------------------------------------------------------------------
# Reading the reference checkpoint.
# ---------------------------------------------------------------------------


def test_reference_checkpoint_names_shapes_and_embedding(
    reference_checkpoint, reference_path):
  params = t5x.load_t5x(reference_checkpoint)
  expected = shape_tree(t5_shapes(**REFERENCE_SIZES))
  t5x.check_tree(params, expected, source=str(reference_checkpoint))
  assert sorted(flatten(params)) == sorted(flatten(expected))
  assert all(x.dtype == np.float32 for x in flatten(params).values())
  embedding = np.load(reference_path(REFERENCE_EMBEDDING))
  np.testing.assert_array_equal(params['token_embedder']['embedding'],
                                embedding)


def test_reference_single_array_and_msgpack_file_path(reference_checkpoint,
                                                      reference_path):
  embedding = np.load(reference_path(REFERENCE_EMBEDDING))
  np.testing.assert_array_equal(
      t5x.load_t5x_array(reference_checkpoint,
                                 'token_embedder/embedding'), embedding)
  np.testing.assert_array_equal(
      prompt_files.load_embedding(reference_checkpoint), embedding)
  np.testing.assert_array_equal(
      prompt_files.load_embedding(reference_path(REFERENCE_EMBEDDING)),
      embedding)
  # The msgpack file itself is accepted in place of its directory.
  from_file = t5x.load_t5x(reference_checkpoint / 'checkpoint')
  assert_trees_equal(from_file, t5x.load_t5x(reference_checkpoint))


def test_reference_round_trip_keeps_t5x_inline_rule(reference_checkpoint,
                                                    tmp_path):
  params = t5x.load_t5x(reference_checkpoint)
  t5x.save_t5x(params, tmp_path / 'ckpt', step=3)
  assert_trees_equal(t5x.load_t5x(tmp_path / 'ckpt'), params)

  def layout(path):
    raw = (pathlib.Path(path) / 'checkpoint').read_bytes()
    target = serialization.msgpack_restore(raw)['optimizer']['target']
    flat = traverse_util.flatten_dict(
        target, sep='/', is_leaf=lambda _, v: 'driver' in v)
    return {n: isinstance(v, dict) for n, v in flat.items()}

  # Same arrays inline / in zarr as in the checkpoint that t5x wrote.
  assert layout(tmp_path / 'ckpt') == layout(reference_checkpoint)


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------


def test_save_load_bit_identical_with_dtypes(tmp_path):
  params = random_tree(t5_shapes(**TINY_SIZES))
  params['encoder']['prompt'] = {'prompt': {'prompt': np.arange(
      15, dtype=np.float32).reshape(5, 3).astype(ml_dtypes.bfloat16)}}
  params['extra'] = {'bias': np.array([1.5, -2.25], np.float64),
                     'count': np.arange(6, dtype=np.int32).reshape(2, 3)}
  t5x.save_t5x(params, tmp_path / 'c', step=12)
  assert_trees_equal(t5x.load_t5x(tmp_path / 'c'), params)


def test_saved_msgpack_and_zarr_layout(tiny_checkpoint):
  path, params = tiny_checkpoint
  contents = serialization.msgpack_restore((path / 'checkpoint').read_bytes())
  assert contents['version'] == 3
  assert int(contents['optimizer']['state']['step']) == 7
  target = contents['optimizer']['target']
  assert target['encoder']['layers_0']['mlp']['wi_0']['kernel'] == {
      'driver': 'zarr',
      'kvstore': {'driver': 'gfile',
                  'path': 'target.encoder.layers_0.mlp.wi_0.kernel'},
      'metadata': {'chunks': [6, 7], 'compressor': {'id': 'gzip', 'level': 1},
                   'dtype': '<f4', 'shape': [6, 7]},
  }
  # 1-D scales and relpos tables are inline numpy arrays.
  scale = target['encoder']['encoder_norm']['scale']
  assert isinstance(scale, np.ndarray)
  np.testing.assert_array_equal(scale,
                                params['encoder']['encoder_norm']['scale'])
  relpos = target['decoder']['relpos_bias']['rel_embedding']
  assert isinstance(relpos, np.ndarray) and relpos.shape == (2, 3)
  zarr_dir = path / 'target.encoder.layers_0.mlp.wi_0.kernel'
  zarray = json.loads((zarr_dir / '.zarray').read_text())
  assert zarray['zarr_format'] == 2
  assert zarray['order'] == 'C'
  assert zarray['dtype'] == '<f4'
  assert zarray['shape'] == [6, 7]
  assert zarray['compressor'] == {'id': 'gzip', 'level': 1}
  # Only the checkpoint's own files, no temporary siblings.
  assert sorted(os.listdir(path.parent)) == ['checkpoint_7']


def test_chunk_shape_divides_and_respects_limit():
  chunk_shape = t5x._chunk_shape  # pylint: disable=protected-access
  chunk = chunk_shape([32128, 4096], 4)
  assert 32128 % chunk[0] == 0 and 4096 % chunk[1] == 0
  assert chunk[0] * chunk[1] * 4 <= 64 * 2**20
  assert chunk_shape([6, 7], 4) == [6, 7]


def test_save_existing_path_needs_overwrite(tiny_checkpoint):
  path, params = tiny_checkpoint
  with pytest.raises(FileExistsError, match=str(path)):
    t5x.save_t5x(params, path)
  changed = jax.tree_util.tree_map(lambda x: x + 1, params)
  t5x.save_t5x(changed, path, overwrite=True)
  assert_trees_equal(t5x.load_t5x(path), changed)
  assert sorted(os.listdir(path.parent)) == ['checkpoint_7']


@pytest.mark.parametrize('fail_at', ['msgpack', 'third_zarr_array'])
def test_failed_save_leaves_nothing(tmp_path, monkeypatch, fail_at):
  params = random_tree(t5_shapes(**TINY_SIZES))
  if fail_at == 'msgpack':
    target, name = t5x, '_write_msgpack'
  else:  # Fails while two arrays are already being created.
    target, name = t5x.ts, 'open'
  original = getattr(target, name)
  calls = []

  def fail_late(*args, **kwargs):
    calls.append(1)
    if fail_at == 'msgpack' or len(calls) == 3:
      raise RuntimeError('disk full')
    return original(*args, **kwargs)

  monkeypatch.setattr(target, name, fail_late)
  with pytest.raises(RuntimeError, match='disk full'):
    t5x.save_t5x(params, tmp_path / 'checkpoint_1')
  assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_old_checkpoint(tiny_checkpoint, monkeypatch):
  path, params = tiny_checkpoint

  def fail(*unused_args):
    raise RuntimeError('disk full')

  monkeypatch.setattr(t5x, '_write_msgpack', fail)
  with pytest.raises(RuntimeError):
    t5x.save_t5x(jax.tree_util.tree_map(lambda x: x * 0, params), path,
                         overwrite=True)
  assert_trees_equal(t5x.load_t5x(path), params)
  assert sorted(os.listdir(path.parent)) == ['checkpoint_7']


# ---------------------------------------------------------------------------
# Partial restore.
# ---------------------------------------------------------------------------


def test_like_with_prompt_kept_by_assignment_map(reference_checkpoint):
  shapes = t5_shapes(**REFERENCE_SIZES)
  like = shape_tree(shapes)
  prompt = np.full((5, 4), 0.5, np.float32)
  like['encoder']['prompt'] = {'prompt': {'prompt': prompt}}
  loaded = t5x.load_t5x(reference_checkpoint, like=like,
                                assignment_map=[(r'.*prompt.*', None)])
  np.testing.assert_array_equal(loaded['encoder']['prompt']['prompt']['prompt'],
                                prompt)
  full = t5x.load_t5x(reference_checkpoint)
  del loaded['encoder']['prompt']
  assert_trees_equal(loaded, full)


def test_assignment_map_renames_with_groups_first_rule_wins(tmp_path):
  rng = np.random.default_rng(1)
  stored = {'old': {f'layers_{i}': {'k': rng.standard_normal((3, 2)).astype(
      np.float32)} for i in range(2)}}
  t5x.save_t5x(stored, tmp_path / 'c')
  like = {'new': {f'block_{i}': {'k': jax.ShapeDtypeStruct((3, 2), np.float32)}
                  for i in range(2)}}
  rules = [(r'new/block_1/k', r'old/layers_0/k'),  # First match wins.
           (r'new/block_(\d+)/(\w+)', r'old/layers_\1/\2')]
  loaded = t5x.load_t5x(tmp_path / 'c', like=like, assignment_map=rules)
  np.testing.assert_array_equal(loaded['new']['block_0']['k'],
                                stored['old']['layers_0']['k'])
  np.testing.assert_array_equal(loaded['new']['block_1']['k'],
                                stored['old']['layers_0']['k'])


def test_fallback_to_scratch_and_missing_parameter(tiny_checkpoint):
  path, params = tiny_checkpoint
  like = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  init = np.ones((4, 6), np.float32)
  like['encoder']['adapter'] = {'kernel': init}
  with pytest.raises(ValueError) as e:
    t5x.load_t5x(path, like=like)
  assert str(path) in str(e.value) and 'encoder/adapter/kernel' in str(e.value)

  loaded = t5x.load_t5x(path, like=like, fallback_to_scratch=True)
  np.testing.assert_array_equal(loaded['encoder']['adapter']['kernel'], init)
  del loaded['encoder']['adapter']
  assert_trees_equal(loaded, params)

  like['encoder']['adapter']['kernel'] = jax.ShapeDtypeStruct((4, 6),
                                                              np.float32)
  with pytest.raises(ValueError, match='encoder/adapter/kernel.*ShapeDtype'):
    t5x.load_t5x(path, like=like, fallback_to_scratch=True)


def test_like_casts_and_keeps_structure(tiny_checkpoint):
  path, params = tiny_checkpoint
  like = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, ml_dtypes.bfloat16), params)
  loaded = t5x.load_t5x(path, like=like)
  assert (jax.tree_util.tree_structure(loaded) ==
          jax.tree_util.tree_structure(like))
  assert all(x.dtype == ml_dtypes.bfloat16 for x in flatten(loaded).values())


def test_like_shape_mismatch_names_path_and_both_shapes(tiny_checkpoint):
  path, params = tiny_checkpoint
  like = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  like['encoder']['layers_1']['mlp']['wo']['kernel'] = jax.ShapeDtypeStruct(
      (8, 6), np.float32)
  with pytest.raises(ValueError) as e:
    t5x.load_t5x(path, like=like)
  message = str(e.value)
  for part in (str(path), 'encoder/layers_1/mlp/wo/kernel', '(7, 6)', '(8, 6)'):
    assert part in message


@pytest.mark.parametrize('edit, words', [
    (lambda t: t['encoder'].pop('encoder_norm'),
     ['encoder/encoder_norm/scale', 'missing', '(6,)']),
    (lambda t: t['decoder'].update(extra={'w': np.zeros(2)}),
     ['decoder/extra/w', 'unexpected']),
    (lambda t: t['token_embedder'].update(embedding=np.zeros((12, 6))),
     ['token_embedder/embedding', '(12, 6)', '(11, 6)']),
])
def test_check_tree_names_first_mismatch(edit, words):
  expected = shape_tree(t5_shapes(**TINY_SIZES))
  params = random_tree(t5_shapes(**TINY_SIZES))
  t5x.check_tree(params, expected, source='gs://b/ckpt')
  edit(params)
  with pytest.raises(ValueError) as e:
    t5x.check_tree(params, expected, source='gs://b/ckpt')
  for word in ['gs://b/ckpt'] + words:
    assert word in str(e.value)


# ---------------------------------------------------------------------------
# Prompts.
# ---------------------------------------------------------------------------


def test_prompt_in_t5x_checkpoint(tiny_checkpoint, tmp_path):
  _, params = tiny_checkpoint
  prompt = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
  params['encoder']['prompt'] = {'prompt': {'prompt': prompt}}
  t5x.save_t5x(params, tmp_path / 'with_prompt')
  assert (tmp_path / 'with_prompt' /
          'target.encoder.prompt.prompt.prompt' / '.zarray').exists()
  np.testing.assert_array_equal(
      prompt_files.prompt_from_t5x(tmp_path / 'with_prompt',
                                   prompts.PROMPT_PATH), prompt)


def test_prompt_npy_round_trip_and_shape_check(tmp_path):
  prompt = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
  path = tmp_path / 'prompt_step100'  # No '.npy' suffix is added.
  prompt_files.save_prompt(prompt, path)
  assert os.listdir(tmp_path) == ['prompt_step100']
  np.testing.assert_array_equal(prompt_files.load_prompt(path, (5, 6)), prompt)
  with pytest.raises(ValueError) as e:
    prompt_files.load_prompt(path, expected_shape=(100, 6))
  for part in (str(path), '(5, 6)', '(100, 6)'):
    assert part in str(e.value)
  with pytest.raises(FileNotFoundError, match='missing.npy'):
    prompt_files.load_prompt(tmp_path / 'missing.npy')


def test_failed_prompt_save_leaves_nothing(tmp_path, monkeypatch):
  def fail(*unused_args):
    raise OSError('disk full')

  monkeypatch.setattr(files.os, 'replace', fail)
  with pytest.raises(OSError):
    prompt_files.save_prompt(np.zeros((2, 3)), tmp_path / 'p.npy')
  assert os.listdir(tmp_path) == []


def test_load_embedding_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.npy'):
    prompt_files.load_embedding(tmp_path / 'nope.npy')
  (tmp_path / 'vocab.txt').write_text('not an array')
  with pytest.raises(ValueError, match='vocab.txt'):
    prompt_files.load_embedding(tmp_path / 'vocab.txt')
  np.save(tmp_path / 'flat.npy', np.zeros(4))
  with pytest.raises(ValueError, match=r'flat.npy.*\(4,\)'):
    prompt_files.load_embedding(tmp_path / 'flat.npy')


# ---------------------------------------------------------------------------
# Errors when reading.
# ---------------------------------------------------------------------------


def test_missing_checkpoint_dir_and_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'checkpoint_9')):
    t5x.load_t5x(tmp_path / 'checkpoint_9')
  (tmp_path / 'checkpoint_9').mkdir()
  with pytest.raises(FileNotFoundError) as e:
    t5x.load_t5x(tmp_path)
  assert str(tmp_path) in str(e.value) and 'checkpoint_9' in str(e.value)


def test_truncated_msgpack(reference_checkpoint, tmp_path):
  path = writable_copy(reference_checkpoint, tmp_path / 'checkpoint_3')
  msgpack_file = path / 'checkpoint'
  raw = msgpack_file.read_bytes()
  msgpack_file.write_bytes(raw[:len(raw) // 2])
  with pytest.raises(ValueError, match=f'{msgpack_file}.*truncated'):
    t5x.load_t5x(path)
  msgpack_file.write_bytes(b'\x93garbage')
  with pytest.raises(ValueError, match=str(msgpack_file)):
    t5x.load_t5x(path)


def test_missing_zarr_directory_or_chunk(reference_checkpoint, tmp_path):
  path = writable_copy(reference_checkpoint, tmp_path / 'checkpoint_3')
  shutil.rmtree(path / 'target.encoder.layers_0.mlp.wi_0.kernel')
  with pytest.raises(FileNotFoundError) as e:
    t5x.load_t5x(path)
  assert str(path) in str(e.value)
  assert 'encoder/layers_0/mlp/wi_0/kernel' in str(e.value)
  # Other parameters can still be read one by one.
  assert t5x.load_t5x_array(path, 'token_embedder/embedding').shape == (
      32128, 4)
  # A missing chunk is an error, not silently zeros.
  os.remove(path / 'target.token_embedder.embedding' / '1.0')
  with pytest.raises(FileNotFoundError, match='token_embedder/embedding'):
    t5x.load_t5x_array(path, 'token_embedder/embedding')


def test_unknown_array_name(tiny_checkpoint):
  path, _ = tiny_checkpoint
  with pytest.raises(ValueError) as e:
    t5x.load_t5x_array(path, 'token_embedder/embeding')
  assert str(path) in str(e.value)
  assert "'token_embedder/embedding'" in str(e.value)  # Suggested.


# ---------------------------------------------------------------------------
# Tensorstore spec translation (no I/O).
# ---------------------------------------------------------------------------

_METADATA = {'chunks': [4, 8], 'compressor': {'id': 'gzip', 'level': 1},
             'dtype': '<f4', 'shape': [4, 8]}


@pytest.mark.parametrize('stored, checkpoint_dir, kvstore', [
    ({'driver': 'zarr', 'kvstore': {'driver': 'gfile', 'path': 'target.a.b'}},
     'gs://my-bucket/runs/x/checkpoint_3',
     {'driver': 'gcs', 'bucket': 'my-bucket',
      'path': 'runs/x/checkpoint_3/target.a.b'}),
    ({'driver': 'zarr', 'kvstore': {'driver': 'gcs', 'bucket':
                                    't5x-dummy-bucket', 'path': 'target.a.b'}},
     'gs://my-bucket/checkpoint_3/',
     {'driver': 'gcs', 'bucket': 'my-bucket',
      'path': 'checkpoint_3/target.a.b'}),
    ({'driver': 'zarr', 'kvstore': {'driver': 'file'}, 'path': 'target.a.b'},
     'gs://my-bucket/c',
     {'driver': 'gcs', 'bucket': 'my-bucket', 'path': 'c/target.a.b'}),
    ({'driver': 'zarr', 'kvstore': {'driver': 'gcs', 'bucket': 'b',
                                    'path': 'target.a.b'}},
     '/data/checkpoint_3',
     {'driver': 'file', 'path': '/data/checkpoint_3/target.a.b'}),
])
def test_resolve_tensorstore_spec(stored, checkpoint_dir, kvstore):
  stored = dict(stored, metadata=_METADATA)
  before = json.dumps(stored, sort_keys=True)
  resolved = t5x.resolve_tensorstore_spec(stored, checkpoint_dir)
  assert resolved == {'driver': 'zarr', 'kvstore': kvstore,
                      'metadata': _METADATA}
  assert json.dumps(stored, sort_keys=True) == before  # Not modified.


def test_resolve_tensorstore_spec_rejects_unknown_driver():
  with pytest.raises(ValueError, match='s3'):
    t5x.resolve_tensorstore_spec(
        {'driver': 'zarr', 'kvstore': {'driver': 's3', 'path': 'x'}}, '/c')


# ---------------------------------------------------------------------------
# HF safetensors.
# ---------------------------------------------------------------------------


def test_hf_safetensors_round_trip_and_transposes(tmp_path):
  params = random_tree(t5_shapes(**TINY_SIZES))
  path = tmp_path / 'model.safetensors'
  hf.save_hf_safetensors(params, path)
  tensors = safetensors.numpy.load_file(path)
  query = params['encoder']['layers_1']['attention']['query']['kernel']
  hf_query = tensors['encoder.block.1.layer.0.SelfAttention.q.weight']
  assert query.shape == (6, 10) and hf_query.shape == (10, 6)
  np.testing.assert_array_equal(hf_query, query.T)
  np.testing.assert_array_equal(
      tensors['decoder.block.0.layer.2.DenseReluDense.wo.weight'],
      params['decoder']['layers_0']['mlp']['wo']['kernel'].T)
  relpos = tensors['decoder.block.0.layer.0.SelfAttention.'
                   'relative_attention_bias.weight']
  assert relpos.shape == (3, 2)  # [buckets, heads]
  assert tensors['lm_head.weight'].shape == (11, 6)
  for name in ('shared.weight', 'encoder.embed_tokens.weight',
               'decoder.embed_tokens.weight'):
    np.testing.assert_array_equal(tensors[name],
                                  params['token_embedder']['embedding'])
  assert_trees_equal(hf.load_hf_safetensors(path), params)


def test_hf_safetensors_key_handling(tmp_path):
  params = random_tree(t5_shapes(**TINY_SIZES))
  path = tmp_path / 'model.safetensors'
  hf.save_hf_safetensors(params, path)
  tensors = safetensors.numpy.load_file(path)

  with pytest.raises(ValueError, match='num_layers=2'):
    hf.load_hf_safetensors(path, num_layers=2)  # Decoder has 1.

  # Only an embed_tokens copy, no shared.weight: accepted.
  only_alias = dict(tensors)
  del only_alias['shared.weight'], only_alias['decoder.embed_tokens.weight']
  safetensors.numpy.save_file(only_alias, tmp_path / 'alias.safetensors')
  assert_trees_equal(
      hf.load_hf_safetensors(tmp_path / 'alias.safetensors'), params)

  different = dict(tensors)
  different['decoder.embed_tokens.weight'] = tensors['shared.weight'] + 1
  safetensors.numpy.save_file(different, tmp_path / 'diff.safetensors')
  with pytest.raises(ValueError, match='decoder.embed_tokens.weight'):
    hf.load_hf_safetensors(tmp_path / 'diff.safetensors')

  unknown = dict(tensors, **{'encoder.block.0.layer.0.adapter.weight':
                             np.zeros(2, np.float32)})
  safetensors.numpy.save_file(unknown, tmp_path / 'unknown.safetensors')
  with pytest.raises(ValueError) as e:
    hf.load_hf_safetensors(tmp_path / 'unknown.safetensors')
  assert 'unknown.safetensors' in str(e.value)
  assert 'encoder.block.0.layer.0.adapter.weight' in str(e.value)

  params['encoder']['prompt'] = {'prompt': {'prompt': np.zeros((2, 6))}}
  with pytest.raises(ValueError, match='encoder/prompt/prompt/prompt'):
    hf.save_hf_safetensors(params, tmp_path / 'p.safetensors')
  assert not (tmp_path / 'p.safetensors').exists()


def test_hf_tied_variant_has_no_logits_dense(tmp_path):
  params = random_tree(t5_shapes(**TINY_SIZES, untied=False))
  hf.save_hf_safetensors(params, tmp_path / 'm.safetensors')
  assert 'lm_head.weight' not in safetensors.numpy.load_file(
      tmp_path / 'm.safetensors')
  loaded = hf.load_hf_safetensors(tmp_path / 'm.safetensors')
  assert 'logits_dense' not in loaded['decoder']
  assert_trees_equal(loaded, params)


def test_load_from_relative_path(reference_path, monkeypatch):
  checkpoint = reference_path(REFERENCE_CHECKPOINT)
  embedding = np.load(reference_path(REFERENCE_EMBEDDING))
  monkeypatch.chdir(checkpoint.parent.parent)
  params = t5x.load_t5x(REFERENCE_CHECKPOINT)
  assert params['token_embedder']['embedding'].shape == (32128, 4)
  np.testing.assert_array_equal(params['token_embedder']['embedding'],
                                embedding)
  # Every array, not only the embedding: the same as by the absolute path.
  assert_trees_equal(params, t5x.load_t5x(checkpoint.resolve()))
