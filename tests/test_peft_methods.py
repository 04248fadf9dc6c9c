"""LoRA and IA3 (and P-tuning's prompt) to and from HF PEFT adapters.

The real-client tests load our exports with `peft.PeftModel.from_pretrained`
on HF's T5 holding our weights, and import adapters PEFT trained; they skip
without torch, transformers and peft (pip install -e ".[hf]").
"""
import json
import os
import pathlib
import re
import sys

import flax
import jax
import numpy as np
import pytest
import safetensors.numpy

from prompt_tuning import methods as methods_lib
from prompt_tuning.interop import hf
from prompt_tuning.interop import peft_methods
from prompt_tuning.interop import peft_runs
from prompt_tuning.model import t5
from prompt_tuning.utils import trees

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import hf_reference  # pylint: disable=g-import-not-at-top,wrong-import-position

needs_peft = pytest.mark.skipif(not hf_reference.HAVE_PEFT,
                                reason=hf_reference.NEEDS_PEFT)

CONFIG = t5.T5Config(**hf_reference.TINY_CONFIG)
ENCODER, DECODER = hf_reference.ENCODER_TOKENS, hf_reference.DECODER_INPUTS
TARGETS = hf_reference.DECODER_TARGETS
REAL = TARGETS > 0
EVERY_PROJECTION = r'.*(attention/(query|key|value|out)|mlp/(wi_0|wi_1|wo))'
pytestmark = pytest.mark.usefixtures('fast_compiles')
# Our logits against PEFT's: the bound.
TOLERANCE = 1e-4


def _method_params(methods, prompt_length=0, seed=3, scale=0.2):
  """Parameters of `methods` on the tiny T5, moved off their no-op start."""
  module = t5.Transformer(CONFIG, prompt_length=prompt_length,
                          methods=methods)
  variables = module.init(jax.random.PRNGKey(0), ENCODER[:1, :3],
                          DECODER[:1, :2])
  flat = trees.flatten(flax.core.meta.unbox(variables['params']))
  rng = np.random.RandomState(seed)
  frozen = trees.flatten(hf_reference.tiny_params(seed=1))
  params = {n: (frozen[n] if n in frozen else np.asarray(v) + scale * rng.randn(
      *v.shape).astype(np.float32)) for n, v in flat.items()}
  trained = {n: v for n, v in params.items() if n not in frozen}
  return module, trees.unflatten(params), trees.unflatten(trained)


def _by_hand(methods, seed=3):
  """Trained-looking LoRA or IA3 parameters of the tiny T5, without jax."""
  rng = np.random.RandomState(seed)
  params = {}
  for path, (in_dim, out_dim) in peft_methods.projection_shapes(
      CONFIG).items():
    sublayer, projection = path.rsplit('/', 1)
    if methods.lora and re.fullmatch(methods.lora.targets, path):
      rank = methods.lora.rank
      params[f'{path}/lora_a'] = rng.randn(in_dim, rank).astype(np.float32)
      params[f'{path}/lora_b'] = rng.randn(rank, out_dim).astype(np.float32)
    if methods.ia3 and projection in ('key', 'value'):
      params[f'{sublayer}/ia3_{projection}'] = rng.rand(out_dim).astype(
          np.float32)
    if methods.ia3 and methods.ia3.mlp and projection == 'wo':
      params[f'{sublayer}/ia3_hidden'] = rng.rand(in_dim).astype(np.float32)
  return trees.unflatten(params)


def _ours(module, params, prompt=None):
  return np.asarray(module.apply({'params': params}, ENCODER, DECODER,
                                 TARGETS, **({'prompt': prompt} if prompt
                                             is not None else {})))


def _hf_model(tmp_path):
  hf.save_hf_safetensors(hf_reference.tiny_params(seed=1),
                         tmp_path / 'model.safetensors')
  return hf_reference.hf_model(hf_reference.TINY_CONFIG,
                               tmp_path / 'model.safetensors')


def _peft_logits(model):
  return hf_reference.hf_logits(model, ENCODER, DECODER)


def _peft_load(tmp_path, adapter):
  import peft  # pylint: disable=g-import-not-at-top
  model = peft.PeftModel.from_pretrained(_hf_model(tmp_path), adapter)
  model.eval()
  return model


def _error(ours, theirs):
  return float(np.max(np.abs(ours[REAL] - theirs[REAL])))


# ----------------------------------------------------------------------------
# Without torch.
# ----------------------------------------------------------------------------


def test_module_names_map_both_ways():
  paths = peft_methods.projection_shapes(CONFIG)
  assert len(paths) == 2 * 7 + 3 * 11
  for path in paths:
    assert peft_methods.our_module_path(
        peft_methods.hf_module_name(path)) == path
  assert peft_methods.hf_module_name(
      'decoder/layers_2/encoder_decoder_attention/key') == (
          'decoder.block.2.layer.1.EncDecAttention.k')
  assert peft_methods.hf_module_name('decoder/layers_0/mlp/wo') == (
      'decoder.block.0.layer.2.DenseReluDense.wo')
  with pytest.raises(ValueError, match='lm_head.*no counterpart'):
    peft_methods.our_module_path('lm_head')
  with pytest.raises(ValueError, match='not an attention or MLP'):
    peft_methods.hf_module_name('encoder/layers_0/mlp/query')


@pytest.mark.parametrize('targets,expected', [
    (methods_lib.LoRA.targets, ['q', 'v']),
    (EVERY_PROJECTION, ['k', 'o', 'q', 'v', 'wi_0', 'wi_1', 'wo']),
    ('encoder/layers_1/attention/query',
     ['encoder.block.1.layer.0.SelfAttention.q']),
])
def test_lora_export_writes_peft_names(tmp_path, targets, expected):
  lora = methods_lib.LoRA(rank=2, alpha=3.0, targets=targets)
  trained = _by_hand(methods_lib.Methods(lora=lora))
  config = peft_methods.export_lora(trained, lora, CONFIG, tmp_path)
  assert config['target_modules'] == expected
  assert (config['r'], config['lora_alpha'], config['lora_dropout']) == (
      2, 3, 0.0)
  tensors = safetensors.numpy.load_file(tmp_path / 'adapter_model.safetensors')
  flat = trees.flatten(trained)
  a = flat['encoder/layers_1/attention/query/lora_a']
  key = 'base_model.model.encoder.block.1.layer.0.SelfAttention.q'
  np.testing.assert_array_equal(tensors[f'{key}.lora_A.weight'], a.T)
  # And back: the same parameters and a regex selecting the same modules.
  back = peft_runs.import_adapter(tmp_path, CONFIG)
  assert back.methods.lora.rank == 2 and back.methods.lora.alpha == 3.0
  assert back.params.keys() == flat.keys()
  for name, value in flat.items():
    np.testing.assert_array_equal(back.params[name], value)


def test_ia3_export_and_import_round_trip(tmp_path):
  ia3 = methods_lib.IA3(mlp=True)
  trained = _by_hand(methods_lib.Methods(ia3=ia3))
  config = peft_methods.export_ia3(trained, ia3, CONFIG, tmp_path)
  assert (config['target_modules'], config['feedforward_modules']) == (
      ['k', 'v', 'wo'], ['wo'])
  tensors = safetensors.numpy.load_file(tmp_path / 'adapter_model.safetensors')
  assert tensors['base_model.model.decoder.block.0.layer.2.DenseReluDense.wo.'
                 'ia3_l'].shape == (1, 11)
  assert tensors['base_model.model.decoder.block.0.layer.1.EncDecAttention.k.'
                 'ia3_l'].shape == (15, 1)
  back = peft_runs.import_adapter(tmp_path, CONFIG)
  assert back.methods.ia3 == ia3
  flat = trees.flatten(trained)
  assert back.params.keys() == flat.keys()
  for name, value in flat.items():
    np.testing.assert_array_equal(back.params[name], value)


def test_boxed_parameters_are_accepted(tmp_path):
  """Boxed as `Transformer.init` returns them (flax `LogicallyPartitioned`)."""
  lora = methods_lib.LoRA(rank=2)
  plain = _by_hand(methods_lib.Methods(lora=lora))
  boxed = jax.tree_util.tree_map(
      lambda x: flax.linen.LogicallyPartitioned(x, (None, None)), plain)
  peft_methods.export_lora(boxed, lora, CONFIG, tmp_path)
  back = peft_methods.import_lora(tmp_path, CONFIG)[1]
  for name, value in trees.flatten(plain).items():
    np.testing.assert_array_equal(back[name], value)


@pytest.mark.parametrize('methods,prompt_length,trained,message', [
    (methods_lib.Methods(prefix=methods_lib.Prefix(length=2)), 0, {},
     'PEFT cannot express deep prompts / prefixes'),
    (methods_lib.Methods(adapter=methods_lib.Adapter(dim=2)), 0, {},
     'PEFT cannot express Houlsby adapters'),
    (methods_lib.Methods(lora=methods_lib.LoRA(rank=2)), 2, {},
     'PEFT cannot express prompt \\+ lora in one model'),
    (None, 0, {'encoder/encoder_norm/scale': np.ones(13, np.float32)},
     'PEFT cannot express trained weights of the frozen model '
     '\\(encoder/encoder_norm/scale\\)'),
])
def test_methods_peft_cannot_express_fail_in_one_line(
    methods, prompt_length, trained, message, tmp_path):
  module = t5.Transformer(CONFIG, prompt_length=prompt_length,
                          methods=methods)
  with pytest.raises(ValueError, match=message) as error:
    peft_runs.export_trained(module, trees.unflatten(trained),
                             ['.*norm/scale', '.*lora.*', '.*prefix.*'],
                             tmp_path)
  assert '\n' not in str(error.value)
  assert 'method_export' in str(error.value) and 'LoRA and IA3' in str(
      error.value)
  assert not os.listdir(tmp_path)


def _write(adapter_dir, config, tensors):
  os.makedirs(adapter_dir, exist_ok=True)
  (pathlib.Path(adapter_dir) / 'adapter_config.json').write_text(
      json.dumps(config))
  safetensors.numpy.save_file(tensors,
                              str(adapter_dir / 'adapter_model.safetensors'))


_Q = 'base_model.model.encoder.block.0.layer.0.SelfAttention.q'
_LORA = {'peft_type': 'LORA', 'task_type': 'SEQ_2_SEQ_LM', 'r': 2,
         'lora_alpha': 4, 'target_modules': ['q']}


@pytest.mark.parametrize('config,tensors,message', [
    ({**_LORA, 'use_dora': True}, None, 'use_dora is True'),
    ({**_LORA, 'bias': 'all'}, None, "bias is 'all'"),
    ({**_LORA, 'r': 3}, None, 'says r 3'),
    (_LORA, {f'{_Q}.lora_A.weight': np.ones((2, 12), np.float32),
             f'{_Q}.lora_B.weight': np.ones((15, 2), np.float32)},
     r"q \[in, out\] is \[12, 15\] but our model's "
     r'encoder/layers_0/attention/query needs \[13, 15\]'),
    (_LORA, {'base_model.model.lm_head.lora_A.weight': np.ones((2, 13)),
             'base_model.model.lm_head.lora_B.weight': np.ones((37, 2))},
     'lm_head, which has no counterpart'),
    ({**_LORA, 'peft_type': 'LOHA'}, None, "peft_type 'LOHA'"),
    ({'peft_type': 'IA3', 'target_modules': ['q'],
      'feedforward_modules': []},
     {f'{_Q}.ia3_l': np.ones((15, 1), np.float32)},
     'output of encoder.block.0.layer.0.SelfAttention.q'),
])
def test_import_mismatches_name_both_sides(tmp_path, config, tensors,
                                          message):
  tensors = tensors or {f'{_Q}.lora_A.weight': np.ones((2, 13), np.float32),
                        f'{_Q}.lora_B.weight': np.ones((15, 2), np.float32)}
  _write(tmp_path, config, {k: np.asarray(v, np.float32)
                            for k, v in tensors.items()})
  with pytest.raises(ValueError, match=message):
    peft_runs.import_adapter(tmp_path, CONFIG)


def test_partial_ia3_is_filled_with_ones(tmp_path):
  vector = np.arange(1, 16, dtype=np.float32)
  _write(tmp_path, {'peft_type': 'IA3', 'target_modules': ['k'],
                    'feedforward_modules': []},
         {_Q[:-1] + 'k.ia3_l': vector[:, None]})
  imported = peft_runs.import_adapter(tmp_path, CONFIG)
  assert imported.methods.ia3 == methods_lib.IA3(mlp=False)
  np.testing.assert_array_equal(
      imported.params['encoder/layers_0/attention/ia3_key'], vector)
  np.testing.assert_array_equal(
      imported.params['decoder/layers_2/encoder_decoder_attention/ia3_value'],
      np.ones(15))
  # Every attention's key and value, no MLP vectors.
  assert len(imported.params) == 2 * (2 + 3 * 2)


# ----------------------------------------------------------------------------
# Against real PEFT.
# ----------------------------------------------------------------------------


@needs_peft
@pytest.mark.parametrize('name,methods', [
    ('lora_qv', methods_lib.Methods(lora=methods_lib.LoRA(rank=2, alpha=3.0))),
    ('lora_all', methods_lib.Methods(lora=methods_lib.LoRA(
        rank=3, alpha=8.0, targets=EVERY_PROJECTION))),
    ('lora_one', methods_lib.Methods(lora=methods_lib.LoRA(
        rank=2, targets='decoder/layers_1/(self_attention|mlp)/(value|wi_1)'
    ))),
    ('ia3', methods_lib.Methods(ia3=methods_lib.IA3())),
    ('ia3_no_mlp', methods_lib.Methods(ia3=methods_lib.IA3(mlp=False))),
    ('p_tuning_mlp', methods_lib.Methods(
        prompt_encoder=methods_lib.PromptEncoder('mlp'))),
    ('p_residual', methods_lib.Methods(
        prompt_encoder=methods_lib.PromptEncoder('residual'))),
    ('prompt', None),
])
def test_peft_loads_our_export_with_our_logits(tmp_path, name, methods):
  prompt_length = 3 if name.startswith(('p_', 'prompt')) else 0
  module, params, trained = _method_params(methods, prompt_length)
  peft_type = peft_runs.export_trained(
      module, trained, ['.*lora.*', '.*ia3.*', 'encoder/prompt/.*'],
      tmp_path / 'adapter', base_model_name_or_path=None)
  assert peft_type == {'lora': 'LORA', 'ia3': 'IA3'}.get(
      name.split('_')[0], 'PROMPT_TUNING')
  ours = _ours(module, params)
  theirs = _peft_logits(_peft_load(tmp_path, tmp_path / 'adapter'))
  error = _error(ours, theirs)
  print(f'{name}: max |ours - PEFT| = {error:.2e}')
  assert error <= TOLERANCE
  # The method changed the logits: the check is not of the frozen model.
  frozen = _ours(t5.Transformer(CONFIG), hf_reference.tiny_params(seed=1))
  assert _error(frozen, theirs) > 100 * TOLERANCE


def _train_with_peft(model, steps=3):
  """A few Adam steps on the tiny batch, as a PEFT user would train."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  optimizer = torch.optim.Adam(
      [p for p in model.parameters() if p.requires_grad], lr=0.05)
  model.train()
  for _ in range(steps):
    loss = model(input_ids=torch.tensor(ENCODER),
                 attention_mask=torch.tensor(ENCODER > 0),
                 labels=torch.tensor(np.where(REAL, TARGETS, -100))).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
  model.eval()


@needs_peft
@pytest.mark.parametrize('name', ['lora', 'ia3', 'prompt'])
def test_an_adapter_trained_with_peft_imports_with_its_logits(tmp_path, name):
  import peft  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  peft_config = {
      'lora': peft.LoraConfig(task_type='SEQ_2_SEQ_LM', r=2, lora_alpha=6,
                              target_modules=['q', 'v', 'wo'],
                              lora_dropout=0.0, init_lora_weights=False),
      'ia3': peft.IA3Config(task_type='SEQ_2_SEQ_LM'),
      'prompt': peft.PromptTuningConfig(task_type='SEQ_2_SEQ_LM',
                                        num_virtual_tokens=3,
                                        num_transformer_submodules=1),
  }[name]
  model = peft.get_peft_model(_hf_model(tmp_path), peft_config)
  _train_with_peft(model)
  model.save_pretrained(tmp_path / 'adapter')
  theirs = _peft_logits(model)
  imported = peft_runs.import_adapter(tmp_path / 'adapter', CONFIG)
  exported = peft_runs.write_imported(imported, str(tmp_path / 'ours'))
  frozen = hf_reference.tiny_params(seed=1)
  if imported.prompt is not None:
    module = t5.Transformer(CONFIG, prompt_length=len(imported.prompt))
    ours = _ours(module, frozen, prompt=imported.prompt)
  else:
    # As the train and eval flags run it: the method's parameters read from
    # the written file at initialisation.
    module = t5.Transformer(CONFIG, methods=exported.methods)
    variables = module.init(jax.random.PRNGKey(9), ENCODER[:1, :3],
                            DECODER[:1, :2])
    flat = trees.flatten(flax.core.meta.unbox(variables['params']))
    flat.update(trees.flatten(frozen))
    ours = _ours(module, trees.unflatten(flat))
  error = _error(ours, theirs)
  print(f'PEFT-trained {name}: max |ours - PEFT| = {error:.2e}')
  assert error <= TOLERANCE
  untrained = _ours(t5.Transformer(CONFIG), frozen)
  assert _error(untrained, theirs) > 100 * TOLERANCE
  serve_gin = (tmp_path / 'ours' / 'serve.gin').read_text()
  assert ('params_file' in serve_gin) == (imported.prompt is None)


# ----------------------------------------------------------------------------
# The command on a training run.
# ----------------------------------------------------------------------------


def _command(args):
  """peft_interop's main in-process on command-line words; its stdout."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning import peft_interop  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import gin_utils  # pylint: disable=g-import-not-at-top
  rest, flag_values = gin_utils.parse_args(peft_interop.define_flags, args)
  try:
    peft_interop.main(rest, flag_values)
  finally:
    gin.clear_config()


@pytest.mark.slow
def test_a_lora_run_exports_and_imports_through_the_command(tmp_path, capsys):
  """A two-step LoRA run of the embedded model: `export --model_dir` writes
  its last train state with the trained rank and alpha; `import` with the
  run's model writes it back bit for bit, with a serve.gin that configures
  the method."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import run_dir  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / 'run'
  sweep.train(['embedded/prompt_tune.gin', 'methods/lora.gin'], [
      f'MODEL_DIR = {str(model_dir)!r}', 'TRAIN_STEPS = 2', 'BATCH_SIZE = 4',
      'EVAL_PERIOD = 2', 'EVAL_MODE = None', 'methods.LoRA.rank = 8',
      'methods.LoRA.alpha = 16.0', 'trainer.train.checkpoint_period = 2',
      'trainer.train.eval_before_training = False'])
  _command(['export', f'--model_dir={model_dir}'])
  assert 'LORA adapter of step 2' in capsys.readouterr().out
  adapter = run_dir.peft_dir(str(model_dir))
  config = json.loads((pathlib.Path(adapter) / 'adapter_config.json'
                       ).read_text())
  assert (config['r'], config['lora_alpha'], config['target_modules']) == (
      8, 16, ['q', 'v'])
  trained = trees.flatten(ocp.StandardCheckpointer().restore(
      os.path.join(run_dir.train_state_dir(str(model_dir)), '2',
                   'default'))['trainable'])
  assert any(np.any(v) for n, v in trained.items() if n.endswith('lora_b'))
  _command(['import', f'--peft_dir={adapter}',
            f'--output_dir={tmp_path / "back"}', f'--model_dir={model_dir}'])
  back = safetensors.numpy.load_file(
      tmp_path / 'back' / 'method_params.safetensors')
  assert back.keys() == trained.keys()
  for name, value in trained.items():
    np.testing.assert_array_equal(back[name], value)
  serve_gin = (tmp_path / 'back' / 'serve.gin').read_text()
  assert 'methods.LoRA.rank = 8' in serve_gin
  assert 'methods.LoRA.alpha = 16.0' in serve_gin
  # The eval config with it serves the run's LoRA from the imported file.
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  sweep.configure(['embedded/prompt_eval.gin', str(tmp_path / 'back' /
                                                   'serve.gin')],
                  ["EVAL_OUTPUT_DIR = '/tmp/unused'"])
  try:
    bindings = gin.get_bindings(inference.evaluate, resolve_references=True)
  finally:
    gin.clear_config()
  served = bindings['model'].module.methods
  assert (served.lora.rank, served.lora.alpha) == (8, 16.0)
  assert served.params_file == str(tmp_path / 'back' /
                                   'method_params.safetensors')
  assert ('.*/lora_[ab]', None) in [tuple(r)
                                    for r in bindings['assignment_map']]
  # Training on from it: the trainer's initial parameters are the file's.
  from prompt_tuning.training import setup as setup_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  sweep.configure(['embedded/prompt_tune.gin', 'methods/lora.gin',
                   str(tmp_path / 'back' / 'serve.gin')],
                  [f"MODEL_DIR = '{tmp_path / 'more'}'"])
  try:
    bindings = gin.get_bindings(trainer.train, resolve_references=True)
  finally:
    gin.clear_config()
  start = trees.flatten(setup_lib.setup_model(
      bindings['model'], bindings['initial_checkpoint_path'],
      bindings['assignment_map']).params)
  for name, value in trained.items():
    np.testing.assert_array_equal(np.asarray(start[name]), value)
  with pytest.raises(ValueError, match='last train state, step 2, not step 1'):
    _command(['export', f'--model_dir={model_dir}', '--step=1',
              f'--output_dir={tmp_path / "x"}'])


def test_a_prompt_run_exports_its_best_prompt_through_the_command(tmp_path,
                                                                 capsys):
  from prompt_tuning.checkpoints import run_dir  # pylint: disable=g-import-not-at-top
  from prompt_tuning.interop import peft  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import prompts  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import run_record  # pylint: disable=g-import-not-at-top
  record = {'version': run_record.VERSION,
            'model': {'prompt_length': 2, 'methods': None}, 'vocabulary': {},
            'initial_checkpoint_path': 'ckpt', 'mixture_or_task_name': 't',
            'trainable_regexes': [prompts.PROMPT_REGEX], 'step': 4,
            'best': {'step': 2, 'metrics': {}}}
  (tmp_path / run_dir.RUN_RECORD_FILE).write_text(json.dumps(record))
  prompt = np.arange(6, dtype=np.float32).reshape(2, 3)
  np.save(run_dir.best_prompt_path(str(tmp_path)), prompt)
  _command(['export', f'--model_dir={tmp_path}'])
  assert 'prompt [2, 3]' in capsys.readouterr().out
  np.testing.assert_array_equal(
      peft.import_peft(run_dir.peft_dir(str(tmp_path))), prompt)
  _command(['import', f'--peft_dir={run_dir.peft_dir(str(tmp_path))}',
            f'--output_dir={tmp_path / "back"}'])
  np.testing.assert_array_equal(np.load(tmp_path / 'back' / 'prompt.npy'),
                                prompt)
  assert 'PROMPT_LENGTH = 2' in (tmp_path / 'back' / 'serve.gin').read_text()
