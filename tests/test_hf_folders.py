"""HF model folders in and out (prompt_tuning.checkpoints.hf_folders).

Torch-free tests build the folders themselves; the real-client tests (torch
and transformers, `pip install -e ".[hf]"`) read folders written by
transformers' own `save_pretrained` and check our logits against HF's, and
open our folders with `T5ForConditionalGeneration.from_pretrained`.

What each format is checked against:
  model.safetensors, sharded   written by transformers 5 `save_pretrained`
                               (`max_shard_size` for shards)
  pytorch_model.bin, sharded   transformers 5 writes only safetensors, so
                               these are written as transformers 4's
                               `save_pretrained(safe_serialization=False)`
                               did (`torch.save` of the state dict; shards by
                               huggingface_hub's splitter); transformers 5's
                               `from_pretrained` opens them and gives the
                               logits ours are compared with
  flax_model.msgpack           transformers 5 has no Flax; written here in
                               transformers 4's FlaxT5ForConditionalGeneration
                               layout (its module names; Dense kernels
                               [in, out], Embed `embedding`, FlaxT5LayerNorm
                               `weight`) with flax.serialization.to_bytes, as
                               its `save_pretrained` did
"""
import json
import os
import sys

import flax
from absl import flags
import jax
import numpy as np
import pytest
import safetensors.flax
import safetensors.numpy

from prompt_tuning import convert_hf
from prompt_tuning.checkpoints import hf_folders
from prompt_tuning.checkpoints import t5x
from prompt_tuning.interop import hf
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.training import setup as setup_lib
from prompt_tuning.utils import trees

sys.path.insert(0, os.path.dirname(__file__))
import hf_reference  # pylint: disable=g-import-not-at-top,wrong-import-position

needs_hf = pytest.mark.skipif(not hf_reference.HAVE_HF,
                              reason=hf_reference.NEEDS_HF)
TINY = {**hf_reference.TINY_CONFIG, 'dropout_rate': 0.0}
REAL = hf_reference.DECODER_TARGETS > 0  # padded decoder rows are not compared
LOGITS_TOLERANCE = 1e-4


def _assert_trees_equal(a, b):
  flat_a, flat_b = trees.flatten(a), trees.flatten(b)
  assert sorted(flat_a) == sorted(flat_b)
  for name, value in flat_a.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_b[name]),
                                  err_msg=name)


def _ours(params, **overrides):
  config = t5.T5Config(**{**TINY, **overrides})
  return np.asarray(t5.Transformer(config).apply(
      {'params': params}, hf_reference.ENCODER_TOKENS,
      hf_reference.DECODER_INPUTS, hf_reference.DECODER_TARGETS))


def _folder(tmp_path, seed=3, **overrides):
  params = hf_reference.tiny_params(seed=seed)
  folder = tmp_path / f'hf_{seed}'
  hf.save_hf_safetensors(params, folder,
                         config=t5.T5Config(**{**TINY, **overrides}))
  return params, folder


def _flax_layout(params):
  """Our tree in transformers 4's FlaxT5ForConditionalGeneration layout."""

  def dense(p):
    return {'kernel': p['kernel']}  # flax nn.Dense: [in, out], as ours.

  def attention(p, relpos=None):
    out = {'q': dense(p['query']), 'k': dense(p['key']),
           'v': dense(p['value']), 'o': dense(p['out'])}
    if relpos is not None:  # nn.Embed(buckets, heads)
      out['relative_attention_bias'] = {'embedding': relpos.T}
    return out

  def norm(p):
    return {'weight': p['scale']}

  def stack(ours, decoder):
    relpos = ours['relpos_bias']['rel_embedding']
    count = sum(k.startswith('layers_') for k in ours)
    blocks = {}
    for i in range(count):
      layer = ours[f'layers_{i}']
      first = relpos if i == 0 else None
      mlp = {'DenseReluDense': {m: dense(layer['mlp'][m])
                                for m in ('wi_0', 'wi_1', 'wo')},
             'layer_norm': norm(layer['pre_mlp_layer_norm'])}
      if decoder:
        sub = {'0': {'SelfAttention': attention(layer['self_attention'], first),
                     'layer_norm': norm(layer['pre_self_attention_layer_norm'])},
               '1': {'EncDecAttention': attention(
                   layer['encoder_decoder_attention']),
                     'layer_norm': norm(
                         layer['pre_cross_attention_layer_norm'])},
               '2': mlp}
      else:
        sub = {'0': {'SelfAttention': attention(layer['attention'], first),
                     'layer_norm': norm(layer['pre_attention_layer_norm'])},
               '1': mlp}
      blocks[str(i)] = {'layer': sub}
    final = ours['decoder_norm' if decoder else 'encoder_norm']
    return {'block': blocks, 'final_layer_norm': norm(final)}

  return {'shared': {'embedding': params['token_embedder']['embedding']},
          'encoder': stack(params['encoder'], decoder=False),
          'decoder': stack(params['decoder'], decoder=True),
          'lm_head': dense(params['decoder']['logits_dense'])}


def _write_flax_folder(params, folder):
  os.makedirs(folder)
  with open(os.path.join(folder, hf_folders.FLAX_FILE), 'wb') as f:
    f.write(flax.serialization.to_bytes(_flax_layout(params)))
  config = hf_folders.config_for(params, t5.T5Config(**TINY))
  with open(os.path.join(folder, hf_folders.CONFIG_FILE), 'w') as f:
    json.dump(config, f)


# ---------------------------------------------------------------------------
# Torch-free.
# ---------------------------------------------------------------------------


def test_folder_round_trip_writes_every_architecture_field(tmp_path):
  params, folder = _folder(tmp_path)
  assert sorted(os.listdir(folder)) == ['config.json', 'model.safetensors']
  config = json.loads((folder / 'config.json').read_text())
  assert config['architectures'] == ['T5ForConditionalGeneration']
  assert (config['feed_forward_proj'], config['tie_word_embeddings']) == (
      'gated-gelu', False)
  assert (config['d_model'], config['d_kv'], config['d_ff'],
          config['num_layers'], config['num_decoder_layers'],
          config['relative_attention_max_distance']) == (13, 5, 11, 2, 3, 16)
  assert hf.t5_config(folder, dropout_rate=0.0) == t5.T5Config(**TINY)
  _assert_trees_equal(hf.load_hf_safetensors(folder,
                                             config=t5.T5Config(**TINY)),
                      params)


@pytest.mark.parametrize('field,value,named', [
    ('relative_attention_max_distance', 128,
     'relative_attention_max_distance=16'),
    ('emb_dim', 14, 'd_model=13'),
    ('num_decoder_layers', 2, 'num_decoder_layers=3'),
    ('layer_norm_epsilon', 1e-5, 'layer_norm_epsilon=1e-06'),
    ('logits_via_embedding', True, 'tie_word_embeddings=False'),
    ('mlp_activations', ('relu',), 'feed_forward_proj=gated-gelu'),
])
def test_config_disagreeing_with_the_model_names_the_field(
    tmp_path, field, value, named):
  _, folder = _folder(tmp_path)
  with pytest.raises(ValueError) as e:
    hf.load_hf_safetensors(folder, config=t5.T5Config(**{**TINY,
                                                          field: value}))
  message = str(e.value)
  assert named in message and f'{field}={value!r}' in message, message
  assert str(folder) in message


def test_config_json_disagreeing_with_the_weights_fails(tmp_path):
  _, folder = _folder(tmp_path)
  config = json.loads((folder / 'config.json').read_text())
  (folder / 'config.json').write_text(json.dumps(dict(config, d_ff=12)))
  with pytest.raises(ValueError, match='d_ff=12 but model.safetensors has 11'):
    hf.load_hf_safetensors(folder)
  (folder / 'config.json').write_text(json.dumps(
      dict(config, feed_forward_proj='relu')))
  with pytest.raises(ValueError, match="feed_forward_proj='relu'"):
    hf.load_hf_safetensors(folder)


def test_sharded_safetensors_and_flax_msgpack_read_as_written(tmp_path):
  params, folder = _folder(tmp_path)
  tensors = safetensors.numpy.load_file(folder / 'model.safetensors')
  names = sorted(tensors)
  sharded = tmp_path / 'sharded'
  sharded.mkdir()
  (sharded / 'config.json').write_text((folder / 'config.json').read_text())
  weight_map = {}
  for i, part in enumerate((names[:20], names[20:50], names[50:])):
    shard = f'model-0000{i + 1}-of-00003.safetensors'
    safetensors.numpy.save_file({n: tensors[n] for n in part}, sharded / shard)
    weight_map.update((n, shard) for n in part)
  (sharded / 'model.safetensors.index.json').write_text(json.dumps(
      {'metadata': {}, 'weight_map': weight_map}))
  _assert_trees_equal(hf.load_hf_safetensors(sharded), params)

  flax_folder = tmp_path / 'flax'
  _write_flax_folder(params, flax_folder)
  _assert_trees_equal(hf.load_hf_safetensors(
      flax_folder, config=t5.T5Config(**TINY)), params)

  # bfloat16 weights (numpy has no such dtype): read with ml_dtypes' type.
  bf16 = tmp_path / 'bf16'
  bf16.mkdir()
  (bf16 / 'config.json').write_text((folder / 'config.json').read_text())
  safetensors.flax.save_file(
      {n: jax.numpy.asarray(t, jax.numpy.bfloat16) for n, t in tensors.items()},
      bf16 / 'model.safetensors')
  loaded = hf.load_hf_safetensors(bf16)
  _assert_trees_equal(loaded, jax.tree_util.tree_map(
      lambda x: x.astype(jax.numpy.bfloat16), params))


def test_unreadable_paths_are_named(tmp_path, monkeypatch):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=f'{empty}/config.json'):
    hf.load_hf_safetensors(empty)
  (empty / 'config.json').write_text('{"model_type": "t5"}')
  with pytest.raises(FileNotFoundError, match=f'{empty} holds no weights'):
    hf.load_hf_safetensors(empty)
  odd = empty / 'model.safetensors'
  odd.mkdir()
  with pytest.raises(IsADirectoryError, match=f'{odd} is a directory'):
    hf.load_hf_safetensors(empty)
  (tmp_path / 'bad.safetensors').write_bytes(b'not safetensors')
  with pytest.raises(ValueError, match='bad.safetensors: cannot read'):
    hf.load_hf_safetensors(tmp_path / 'bad.safetensors')
  monkeypatch.setitem(sys.modules, 'torch', None)  # as if not installed
  (tmp_path / 'pytorch_model.bin').write_bytes(b'')
  with pytest.raises(ImportError, match=r'pip install -e "\.\[hf\]"'):
    hf.load_hf_safetensors(tmp_path / 'pytorch_model.bin')


def test_savers_take_boxed_parameters(tmp_path):
  # As `Transformer.init` returns them: every leaf in a LogicallyPartitioned.
  boxed = jax.tree_util.tree_map(
      lambda x: flax.linen.LogicallyPartitioned(x, (None,) * x.ndim),
      hf_reference.tiny_params(seed=1))
  plain = flax.core.meta.unbox(boxed)
  hf.save_hf_safetensors(boxed, tmp_path / 'hf')
  _assert_trees_equal(hf.load_hf_safetensors(tmp_path / 'hf'), plain)
  t5x.save_t5x(boxed, tmp_path / 'checkpoint_0')
  _assert_trees_equal(t5x.load_t5x(tmp_path / 'checkpoint_0'), plain)
  abstract = jax.eval_shape(lambda: boxed)
  with pytest.raises(TypeError, match='flax.linen.meta.unbox'):
    hf.save_hf_safetensors(abstract, tmp_path / 'abstract')
  with pytest.raises(TypeError, match='flax.linen.meta.unbox'):
    t5x.save_t5x(abstract, tmp_path / 'checkpoint_1')


def test_initial_checkpoint_path_may_name_an_hf_folder(tmp_path, fast_compiles):
  del fast_compiles
  params, folder = _folder(tmp_path)
  # The paper's prompt initialisations read the embedding from
  # INITIAL_CHECKPOINT_PATH too.
  model = models.EncoderDecoderModel(module=t5.Transformer(
      t5.T5Config(**TINY), prompt_length=2,
      prompt_init=prompts.from_sampled_vocab(str(folder))))
  setup = setup_lib.setup_model(model, str(folder))
  loaded = trees.flatten(jax.device_get(setup.params))
  prompt = loaded.pop('encoder/prompt/prompt/prompt')
  embedding = params['token_embedder']['embedding']
  for row in prompt:
    assert np.any(np.all(embedding == row, axis=1)), row
  _assert_trees_equal(trees.unflatten(loaded), params)
  wrong = models.EncoderDecoderModel(module=t5.Transformer(t5.T5Config(
      **{**TINY, 'relative_attention_max_distance': 128}), prompt_length=2))
  with pytest.raises(ValueError, match='relative_attention_max_distance=16'):
    setup_lib.setup_model(wrong, str(folder))


def test_convert_hf_writes_a_t5x_checkpoint(tmp_path, capsys):
  params, folder = _folder(tmp_path)
  flag_values = flags.FlagValues()
  convert_hf.define_flags(flag_values)
  output = tmp_path / 'checkpoint_0'
  flag_values(['convert_hf', f'--hf_dir={folder}', f'--output_dir={output}'])
  assert convert_hf.main(['convert_hf'], flag_values) == 0
  _assert_trees_equal(t5x.load_t5x(output), params)
  printed = capsys.readouterr().out
  assert 'relative_attention_max_distance = 16' in printed
  assert 'num_decoder_layers = 3' in printed


# ---------------------------------------------------------------------------
# Against the real client.
# ---------------------------------------------------------------------------


def _hf_model_of(params, tmp_path):
  weights = tmp_path / 'weights.safetensors'
  hf.save_hf_safetensors(params, weights)
  return hf_reference.hf_model(hf_reference.TINY_CONFIG, weights)


def _hf_logits(model):
  return hf_reference.hf_logits(model, hf_reference.ENCODER_TOKENS,
                                hf_reference.DECODER_INPUTS)


def _write_torch_bin(model, folder, sharded):
  """As transformers 4's save_pretrained(safe_serialization=False)."""
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  os.makedirs(folder)
  model.config.save_pretrained(folder)
  state = {n: t.detach().clone() for n, t in model.state_dict().items()}
  if not sharded:
    torch.save(state, os.path.join(folder, 'pytorch_model.bin'))
    return
  split = huggingface_hub.split_torch_state_dict_into_shards(
      state, filename_pattern='pytorch_model{suffix}.bin',
      max_shard_size='2KB')
  assert split.is_sharded
  for file, names in split.filename_to_tensors.items():
    torch.save({n: state[n] for n in names}, os.path.join(folder, file))
  with open(os.path.join(folder, 'pytorch_model.bin.index.json'), 'w') as f:
    json.dump({'metadata': split.metadata,
               'weight_map': split.tensor_to_filename}, f)


@needs_hf
@pytest.mark.parametrize('layout', ['safetensors', 'sharded_safetensors',
                                    'bin', 'sharded_bin', 'flax_msgpack'])
def test_hf_folders_load_with_hf_logits(tmp_path, layout):
  import transformers  # pylint: disable=g-import-not-at-top
  params = hf_reference.tiny_params(seed=5)
  model = _hf_model_of(params, tmp_path)
  theirs = _hf_logits(model)
  folder = str(tmp_path / layout)
  if layout == 'safetensors':
    model.save_pretrained(folder)
  elif layout == 'sharded_safetensors':
    model.save_pretrained(folder, max_shard_size='2KB')
    assert 'model.safetensors.index.json' in os.listdir(folder)
  elif layout in ('bin', 'sharded_bin'):
    _write_torch_bin(model, folder, sharded=layout == 'sharded_bin')
    # The files are what transformers reads: its model from them agrees.
    reopened = transformers.T5ForConditionalGeneration.from_pretrained(folder)
    np.testing.assert_allclose(_hf_logits(reopened.eval())[REAL], theirs[REAL],
                               atol=1e-6, rtol=0)
  else:
    _write_flax_folder(params, folder)
  config = hf.t5_config(folder, dropout_rate=0.0)
  assert config == t5.T5Config(**TINY)
  loaded = hf.load_hf_safetensors(folder, config=config)
  _assert_trees_equal(loaded, params)
  ours = _ours(loaded)
  np.testing.assert_allclose(ours[REAL], theirs[REAL], atol=LOGITS_TOLERANCE,
                             rtol=0)


@needs_hf
def test_our_folder_opens_with_from_pretrained(tmp_path):
  import transformers  # pylint: disable=g-import-not-at-top
  params, folder = _folder(tmp_path, seed=7)
  model = transformers.T5ForConditionalGeneration.from_pretrained(
      str(folder)).eval()
  assert not model.config.scale_decoder_outputs
  np.testing.assert_array_equal(
      model.lm_head.weight.detach().numpy(),
      params['decoder']['logits_dense']['kernel'].T)
  theirs = _hf_logits(model)
  np.testing.assert_allclose(_ours(params)[REAL], theirs[REAL],
                             atol=LOGITS_TOLERANCE, rtol=0)
