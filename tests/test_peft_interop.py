"""Prompts to and from HF PEFT's prompt-tuning adapter format."""
import json
import os
import pathlib
import sys

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

import commands

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.interop import hf
from prompt_tuning.interop import peft as peft_adapters

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import hf_reference  # pylint: disable=g-import-not-at-top,wrong-import-position

needs_peft = pytest.mark.skipif(not hf_reference.HAVE_PEFT,
                                reason=hf_reference.NEEDS_PEFT)


def _prompt(shape=(5, 13), dtype=np.float32, seed=0):
  return np.random.RandomState(seed).randn(*shape).astype(dtype)


def _write(peft_dir, config, embeddings):
  os.makedirs(peft_dir, exist_ok=True)
  with open(os.path.join(peft_dir, peft_adapters.CONFIG_FILE), 'w') as f:
    json.dump(config, f)
  with open(os.path.join(peft_dir, peft_adapters.WEIGHTS_FILE), 'wb') as f:
    f.write(safetensors.numpy.save(embeddings))


@pytest.mark.parametrize('dtype', [np.float32, np.float16])
def test_round_trip_is_bit_identical(tmp_path, dtype):
  prompt = _prompt(dtype=dtype)
  prompt[0, 0] = -0.0  # the sign of zero survives too
  peft_adapters.export_peft(prompt, tmp_path / 'adapter',
                           base_model_name_or_path='google/t5-v1_1-base')
  back = peft_adapters.import_peft(tmp_path / 'adapter')
  assert back.dtype == prompt.dtype
  np.testing.assert_array_equal(back, prompt)
  assert back.tobytes() == prompt.tobytes()


def test_bfloat16_is_written_as_exact_float32(tmp_path):
  prompt = _prompt().astype(ml_dtypes.bfloat16)
  peft_adapters.export_peft(prompt, tmp_path, base_model_name_or_path=None)
  back = peft_adapters.import_peft(tmp_path)
  assert back.dtype == np.float32
  np.testing.assert_array_equal(back, prompt.astype(np.float32))


def test_exported_files(tmp_path):
  peft_adapters.export_peft(
      _prompt((7, 13)), tmp_path, base_model_name_or_path='google/t5-v1_1-base',
      config_overrides={'num_layers': 12, 'revision': 'main'})
  assert sorted(os.listdir(tmp_path)) == [peft_adapters.CONFIG_FILE,
                                          peft_adapters.WEIGHTS_FILE]
  config = json.loads((tmp_path / peft_adapters.CONFIG_FILE).read_text())
  assert {k: config[k] for k in (
      'peft_type', 'task_type', 'num_virtual_tokens', 'token_dim',
      'num_transformer_submodules', 'base_model_name_or_path', 'num_layers',
      'revision', 'inference_mode', 'prompt_tuning_init')} == {
          'peft_type': 'PROMPT_TUNING', 'task_type': 'SEQ_2_SEQ_LM',
          'num_virtual_tokens': 7, 'token_dim': 13,
          'num_transformer_submodules': 1,
          'base_model_name_or_path': 'google/t5-v1_1-base', 'num_layers': 12,
          'revision': 'main', 'inference_mode': True,
          'prompt_tuning_init': 'RANDOM'}
  tensors = safetensors.numpy.load(
      (tmp_path / peft_adapters.WEIGHTS_FILE).read_bytes())
  assert list(tensors) == ['prompt_embeddings']
  assert tensors['prompt_embeddings'].shape == (7, 13)


@pytest.mark.parametrize('prompt,overrides,message', [
    (np.ones((2, 3, 4), np.float32), None, 'one prompt \\[P, H\\]'),
    (np.ones((2, 4), np.int32), None, 'floating-point'),
    (np.ones((2, 4), np.float32), {'num_virtual_tokens': 3},
     'num_virtual_tokens'),
    (np.ones((2, 4), np.float32), {'num_transformer_submodules': 2},
     'num_transformer_submodules'),
])
def test_export_errors(tmp_path, prompt, overrides, message):
  with pytest.raises(ValueError, match=message):
    peft_adapters.export_peft(prompt, tmp_path, base_model_name_or_path=None,
                             config_overrides=overrides)
  assert not os.listdir(tmp_path)


def test_a_freshly_initialised_boxed_prompt_exports_as_its_value(tmp_path):
  """`init` boxes parameters (flax `LogicallyPartitioned`), the prompt's as
  every other."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import prompts  # pylint: disable=g-import-not-at-top
  module = prompts.EncoderPrompt(4, 13, prompts.random_uniform())
  # (The module's field `init` hides the method of that name.)
  boxed = flax.linen.Module.init(module, jax.random.PRNGKey(0))['params']
  prompt = boxed['prompt']['prompt']
  assert isinstance(prompt, flax.linen.LogicallyPartitioned)
  peft_adapters.export_peft(prompt, tmp_path, base_model_name_or_path=None)
  back = peft_adapters.import_peft(tmp_path)
  assert back.shape == (4, 13)
  np.testing.assert_array_equal(back, flax.linen.meta.unbox(prompt))


def test_an_unknown_box_names_flax_unbox(tmp_path):

  class Box:
    value = np.ones((2, 3), np.float32)

  with pytest.raises(TypeError, match='flax.linen.meta.unbox'):
    peft_adapters.export_peft(Box(), tmp_path, base_model_name_or_path=None)


def test_two_submodules_keep_the_encoder_block(tmp_path):
  both = _prompt((8, 13))
  _write(tmp_path, {'peft_type': 'PROMPT_TUNING', 'task_type': 'SEQ_2_SEQ_LM',
                    'num_virtual_tokens': 4, 'token_dim': 13,
                    'num_transformer_submodules': None},
         {'prompt_embeddings': both})
  np.testing.assert_array_equal(peft_adapters.import_peft(tmp_path), both[:4])


_GOOD = {'peft_type': 'PROMPT_TUNING', 'task_type': 'SEQ_2_SEQ_LM',
         'num_virtual_tokens': 5, 'token_dim': 13,
         'num_transformer_submodules': 1}


@pytest.mark.parametrize('config,embeddings,message', [
    ({**_GOOD, 'peft_type': 'LORA'}, None, "peft_type 'LORA'"),
    ({k: v for k, v in _GOOD.items() if k != 'token_dim'}, None,
     "no \\['token_dim'\\]"),
    ({**_GOOD, 'num_virtual_tokens': '5'}, None, 'positive integer'),
    ({**_GOOD, 'num_transformer_submodules': 3}, None, 'expected 1, 2'),
    (_GOOD, {'embedding.weight': _prompt()}, "no 'prompt_embeddings'"),
    (_GOOD, {'prompt_embeddings': _prompt((6, 13))},
     r'shape \(6, 13\).*\[5, 13\]'),
    ({**_GOOD, 'num_transformer_submodules': 2}, None,
     r'\[5 \* 2, 13\] = \[10, 13\]'),
    ({**_GOOD, 'token_dim': 12}, None, r'\[5, 12\]'),
])
def test_import_errors_name_the_file(tmp_path, config, embeddings, message):
  _write(tmp_path, config, embeddings or {'prompt_embeddings': _prompt()})
  with pytest.raises(ValueError, match=message) as error:
    peft_adapters.import_peft(tmp_path)
  assert str(tmp_path) in str(error.value)


def test_import_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    peft_adapters.import_peft(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='adapter_config.json'):
    peft_adapters.import_peft(tmp_path)
  (tmp_path / peft_adapters.CONFIG_FILE).write_text(json.dumps(_GOOD))
  (tmp_path / 'adapter_model.bin').write_bytes(b'')
  with pytest.raises(FileNotFoundError, match='safe_serialization'):
    peft_adapters.import_peft(tmp_path)
  (tmp_path / peft_adapters.CONFIG_FILE).write_text('{not json')
  with pytest.raises(ValueError, match='not valid JSON'):
    peft_adapters.import_peft(tmp_path)


def _cli(*args):
  return commands.run(
      [sys.executable, '-m', 'prompt_tuning.peft_interop', *args],
      capture_output=True, text=True, check=False, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


@pytest.mark.slow
def test_cli_export_then_import(tmp_path):
  prompt = _prompt()
  prompt_files.save_prompt(prompt, tmp_path / 'prompt.npy')
  result = _cli('export', f'--prompt={tmp_path / "prompt.npy"}',
                f'--output_dir={tmp_path / "adapter"}',
                '--base_model_name_or_path=google/t5-v1_1-base',
                '--config_overrides={"num_layers": 12}')
  assert result.returncode == 0, result.stderr[-3000:]
  config = json.loads(
      (tmp_path / 'adapter' / peft_adapters.CONFIG_FILE).read_text())
  assert config['num_layers'] == 12
  result = _cli('import', f'--peft_dir={tmp_path / "adapter"}',
                f'--output={tmp_path / "back.npy"}')
  assert result.returncode == 0, result.stderr[-3000:]
  back = np.load(tmp_path / 'back.npy')
  assert back.dtype == prompt.dtype and np.array_equal(back, prompt)
  result = _cli('import', f'--peft_dir={tmp_path / "nowhere"}',
                f'--output={tmp_path / "x.npy"}')
  assert result.returncode != 0 and 'nowhere' in result.stderr
  result = _cli('convert')
  assert result.returncode != 0 and 'export or import' in result.stderr


@needs_peft
def test_peft_runs_an_export_as_our_model_does(tmp_path):
  """PEFT loads the export into an HF T5 holding our weights, and its logits
  equal our model's with the same prompt prepended to the encoder input."""
  import peft  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import t5  # pylint: disable=g-import-not-at-top
  params = hf_reference.tiny_params(seed=1)
  hf.save_hf_safetensors(params, tmp_path / 'model.safetensors')
  model = hf_reference.hf_model(hf_reference.TINY_CONFIG,
                                tmp_path / 'model.safetensors')
  prompt = _prompt((4, hf_reference.TINY_CONFIG['emb_dim']), seed=2)
  peft_adapters.export_peft(prompt, tmp_path / 'adapter',
                           base_model_name_or_path=None)
  peft_model = peft.PeftModel.from_pretrained(model, tmp_path / 'adapter')
  peft_model.eval()
  loaded = peft_model.prompt_encoder['default'].embedding.weight
  assert np.array_equal(loaded.detach().numpy(), prompt)
  encoder, decoder = hf_reference.ENCODER_TOKENS, hf_reference.DECODER_INPUTS
  with torch.no_grad():
    theirs = peft_model(input_ids=torch.tensor(encoder),
                        attention_mask=torch.tensor(encoder > 0),
                        decoder_input_ids=torch.tensor(decoder)).logits.numpy()
  config = t5.T5Config(**hf_reference.TINY_CONFIG)
  ours = np.asarray(t5.Transformer(config).apply(
      {'params': params}, encoder, decoder, hf_reference.DECODER_TARGETS,
      prompt=prompt))
  real = hf_reference.DECODER_TARGETS > 0
  np.testing.assert_allclose(ours[real], theirs[real], rtol=1e-5, atol=1e-5)


@needs_peft
@pytest.mark.parametrize('submodules', [None, 1])
def test_import_an_adapter_saved_by_peft(tmp_path, submodules):
  import peft  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=37, d_model=12, d_kv=4, d_ff=16, num_layers=1,
      num_decoder_layers=1, num_heads=3, feed_forward_proj='gated-gelu',
      decoder_start_token_id=0))
  peft_model = peft.get_peft_model(model, peft.PromptTuningConfig(
      task_type='SEQ_2_SEQ_LM', num_virtual_tokens=5,
      num_transformer_submodules=submodules))
  peft_model.save_pretrained(tmp_path)
  weights = peft_model.prompt_encoder['default'].embedding.weight
  weights = weights.detach().numpy()
  # PEFT's default for seq2seq is two blocks of num_virtual_tokens rows.
  assert weights.shape == ((10 if submodules is None else 5), 12)
  prompt = peft_adapters.import_peft(tmp_path)
  assert prompt.dtype == np.float32
  np.testing.assert_array_equal(prompt, weights[:5])
