"""The parameter-efficient methods on one frozen T5: no-op starts, the
trainable split, training leaves the frozen model alone, export equivalence,
serving exports, and errors.

Most tests use the tiny odd-sized T5 of conftest.py; the ones that train or
serve through the trainer and inference use the shipped embedded model.
"""
import json
import os
import re

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.checkpoints import t5x
from prompt_tuning.cli import gin_utils
from prompt_tuning import methods
from prompt_tuning.methods import export as method_export
from prompt_tuning.methods import adapters
from prompt_tuning.methods import ia3
from prompt_tuning.methods import lora as lora_lib
from prompt_tuning.methods import params as params_lib
from prompt_tuning.methods import prefixes
from prompt_tuning.methods import presets
from prompt_tuning.model import models
from prompt_tuning.model import t5
from prompt_tuning.training import trainer
import conftest  # pylint: disable=g-bad-import-order

P = 3  # prompt / prefix length of the tiny tests
TASK = 'taskless_offline_topic'  # for the embedded model
LENGTHS = {'inputs': 16, 'targets': 4}
ALL = list(presets.PRESETS)
# Methods whose parameters start as an exact no-op.
NO_OP = ['lora', 'adapter_houlsby', 'adapter_pfeiffer', 'ia3', 'norm_scale',
         'model_tuning']


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


def _unflat(flat):
  return flax.traverse_util.unflatten_dict(dict(flat), sep='/')


# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')


@pytest.fixture(scope='module')
def config():
  return t5.T5Config(**{**conftest.TINY_CONFIG_KWARGS, 'dropout_rate': 0.0})


@pytest.fixture(scope='module')
def batch():
  rng = np.random.RandomState(0)
  encoder = rng.randint(2, 37, (2, 7))
  encoder[1, 5:] = 0  # padding
  targets = rng.randint(2, 37, (2, 4))
  targets[1, 3:] = 0
  decoder = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  return {'encoder_input_tokens': encoder, 'decoder_input_tokens': decoder,
          'decoder_target_tokens': targets,
          'decoder_loss_weights': (targets > 0).astype(np.float32)}


@pytest.fixture(scope='module')
def frozen_params(config, batch):
  variables = t5.Transformer(config).init(
      jax.random.PRNGKey(0), batch['encoder_input_tokens'],
      batch['decoder_input_tokens'])
  return flax.core.meta.unbox(variables['params'])


def _module(config, preset):
  preset = preset.with_length(P)
  return t5.Transformer(config, prompt_length=preset.prompt_length(P),
                        methods=preset.methods)


@pytest.fixture(scope='module')
def preset_params(config, batch, frozen_params):
  """name -> (module, initial parameters) of each preset, made once."""
  made = {}

  def get(name):
    if name not in made:
      module = _module(config, presets.PRESETS[name])
      made[name] = (module, _init(module, batch, frozen_params))
    return made[name]

  return get


def _init(module, batch, frozen_params, seed=1):
  """The method model's parameters: frozen ones from `frozen_params`."""
  variables = module.init(jax.random.PRNGKey(seed),
                          batch['encoder_input_tokens'],
                          batch['decoder_input_tokens'])
  flat = _flat(flax.core.meta.unbox(variables['params']))
  frozen = _flat(frozen_params)
  return _unflat({n: frozen.get(n, v) for n, v in flat.items()})


def _trained(params, regexes, seed=2, scale=0.3):
  """`params` with every trainable leaf moved, as training would."""
  trainable, frozen = trainer.split_params(params, regexes)
  leaves, treedef = jax.tree_util.tree_flatten(trainable)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  moved = [x + scale * jax.random.normal(k, x.shape)
           for x, k in zip(leaves, keys)]
  return trainer.merge_params(jax.tree_util.tree_unflatten(treedef, moved),
                              frozen)


def _logits(module, params, batch):
  return np.asarray(module.apply(
      {'params': params}, batch['encoder_input_tokens'],
      batch['decoder_input_tokens'], batch['decoder_target_tokens']))


# ----------------------------------------------------------------------------
# The model with methods.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('name', NO_OP)
def test_no_op_initialisation_gives_the_frozen_logits_exactly(
    name, config, batch, frozen_params, preset_params):
  module, params = preset_params(name)
  np.testing.assert_array_equal(_logits(module, params, batch),
                                _logits(t5.Transformer(config), frozen_params,
                                        batch))


@pytest.mark.parametrize('absent', [None, methods.Methods()])
def test_absent_prompts_and_prefixes_are_the_frozen_model(
    absent, config, batch, frozen_params):
  module = t5.Transformer(config, prompt_length=0, methods=absent)
  params = _init(module, batch, frozen_params)
  assert _flat(params).keys() == _flat(frozen_params).keys()
  np.testing.assert_array_equal(_logits(module, params, batch),
                                _logits(t5.Transformer(config), frozen_params,
                                        batch))


@pytest.mark.parametrize('name', ALL)
def test_trainable_regexes_select_exactly_the_method_parameters(
    name, frozen_params, preset_params):
  preset = presets.PRESETS[name]
  _, params = preset_params(name)
  names = set(_flat(params))
  selected = set(presets.method_param_names(sorted(names),
                                            preset.trainable_regexes))
  added = names - set(_flat(frozen_params))
  if name == 'model_tuning':
    assert selected == names
  elif name == 'norm_scale':
    norms = {n for n in names if n.endswith('norm/scale')}
    assert selected == norms and len(norms) == 2 * 2 + 3 * 2 + 2
  else:
    assert added and selected == added
  trainable, frozen = trainer.split_params(params, preset.trainable_regexes)
  assert set(_flat(trainable)) == selected
  assert set(_flat(frozen)) == names - selected


def test_method_parameter_names(preset_params):
  names = set()
  for name in ALL:
    names |= set(_flat(preset_params(name)[1]))
  for expected in [
      'encoder/prompt/prompt/prompt', 'encoder/prompt/inputs',
      'encoder/prompt/lstm_forward/input_kernel', 'encoder/prompt/mlp_1/kernel',
      'encoder/prompt/layer_norm/scale', 'encoder/prefix/key',
      'decoder/prefix/wo/kernel',
      'encoder/layers_0/attention/query/lora_a',
      'decoder/layers_1/encoder_decoder_attention/value/lora_b',
      'decoder/layers_0/self_attention_adapter/up/kernel',
      'encoder/layers_1/mlp_adapter/down/bias',
      'encoder/layers_0/attention/ia3_key', 'decoder/layers_0/mlp/ia3_hidden']:
    assert expected in names


@pytest.mark.slow
def test_cached_decoding_matches_teacher_forcing(config, batch,
                                                 frozen_params):
  """Step-by-step decoding with the key/value cache gives the teacher-forced
  logits with every method that changes the decoder plugged in at once:
  reparameterised prefixes in its self- and cross-attention, LoRA on every
  projection, Houlsby adapters and IA3."""
  everything = methods.Methods(
      prefix=methods.Prefix(P, decoder=True, reparam_dim=7),
      lora=methods.LoRA(rank=2, targets='.*'), adapter=methods.Adapter(5),
      ia3=methods.IA3())
  module = t5.Transformer(config, methods=everything)
  params = _trained(_init(module, batch, frozen_params),
                    [prefixes.PREFIX_REGEX, lora_lib.LORA_REGEX,
                     adapters.ADAPTER_REGEX, ia3.IA3_REGEX])
  expected = _logits(module, params, batch)
  encoder_tokens = batch['encoder_input_tokens']
  decoder_tokens = batch['decoder_input_tokens']
  length = decoder_tokens.shape[1]
  encoded = module.apply({'params': params}, encoder_tokens,
                         method=module.encode)
  cache = module.init(jax.random.PRNGKey(0), encoded, encoder_tokens,
                      jnp.zeros_like(decoder_tokens), decode=True,
                      max_decode_length=length, method=module.decode)['cache']
  cache = jax.tree_util.tree_map(jnp.zeros_like, cache)
  for position in range(length):
    logits, variables = module.apply(
        {'params': params, 'cache': cache}, encoded, encoder_tokens,
        decoder_tokens[:, position:position + 1], decode=True,
        max_decode_length=length, method=module.decode, mutable=['cache'])
    cache = variables['cache']
    valid = batch['decoder_target_tokens'][:, position] > 0
    np.testing.assert_allclose(np.asarray(logits[:, 0])[valid],
                               expected[:, position][valid], atol=1e-4,
                               rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('relpos', ['prepended'])
def test_prefixes_ignore_padding(relpos, config, frozen_params):
  """Prefix positions are always visible and input padding never is: more
  padding leaves the logits alone."""
  module = t5.Transformer(config, methods=methods.Methods(
      prefix=methods.Prefix(P, decoder=True, relpos=relpos)))
  tokens = np.array([[5, 6, 7, 8, 1]])
  padded = np.pad(tokens, ((0, 0), (0, 3)))
  targets = np.array([[9, 10, 1]])
  decoder = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  params = _trained(_init(module, {'encoder_input_tokens': tokens,
                                   'decoder_input_tokens': decoder},
                          frozen_params), [prefixes.PREFIX_REGEX])
  apply = jax.jit(module.apply)
  short = apply({'params': params}, tokens, decoder, targets)
  long = apply({'params': params}, padded, decoder, targets)
  np.testing.assert_allclose(short, long, atol=1e-5, rtol=1e-5)


def test_prefix_relative_position_choices():
  """'prepended': the bias of a sequence P longer, the queries' rows;
  'none': zero bias on the prefix columns."""

  def relpos(query_length, key_length, bidirectional):
    del bidirectional
    # A bias that records the key-query distance.
    return (jnp.arange(key_length)[None, :]
            - jnp.arange(query_length)[:, None])[None, None].astype(float)

  plain = prefixes.relpos_bias(relpos, 4, 4, True, None)
  assert plain.shape == (1, 1, 4, 4)
  prepended = prefixes.relpos_bias(relpos, 4, 4, True, methods.Prefix(2))
  none = prefixes.relpos_bias(relpos, 4, 4, True,
                              methods.Prefix(2, relpos='none'))
  assert prepended.shape == none.shape == (1, 1, 4, 6)
  # Query 0 sees prefix keys at distances -2 and -1, then its own row.
  np.testing.assert_array_equal(prepended[0, 0, 0], [-2, -1, 0, 1, 2, 3])
  np.testing.assert_array_equal(prepended[..., 2:], plain)
  np.testing.assert_array_equal(none[..., :2], 0)
  np.testing.assert_array_equal(none[..., 2:], plain)


# ----------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------


def _state_names(tree, names):
  """The parameter names that the leaves of an optimizer state are kept for.

  Leaf paths are '/'-joined dict keys (other path entries skipped), possibly
  under the state's own keys (e.g. 'v_row/'); each must end with a name of
  `names`, else it is returned as is.
  """
  found = set()
  for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = '/'.join(str(k.key) for k in path
                   if isinstance(k, jax.tree_util.DictKey))
    if key and key not in ('count',):
      found.add(next((n for n in names if key == n or key.endswith('/' + n)),
                     key))
  return found


@pytest.mark.parametrize('name', ALL)
def test_optimizer_state_holds_the_method_parameters_only(name,
                                                          preset_params):
  preset = presets.PRESETS[name]
  _, params = preset_params(name)
  trainable, _ = trainer.split_params(params, preset.trainable_regexes)
  opt_state = trainer.adafactor(preset.learning_rate).init(trainable)
  names = set(_flat(trainable))
  assert _state_names(opt_state, names) == names


# The trainer itself is method-agnostic (the split and the optimizer state
# are checked for every method above); these take gradients through the
# prompt encoder, the prefix MLP (encoder and decoder), LoRA and adapters.
@pytest.mark.parametrize('name', ['p_tuning', 'prefix_tuning', 'lora',
                                  'adapter_houlsby'])
def test_train_steps_change_only_the_method_and_its_optimizer_state(
    name, batch, preset_params):
  preset = presets.PRESETS[name]
  module, params = preset_params(name)
  model = models.EncoderDecoderModel(module)
  trainable, frozen = trainer.split_params(params, preset.trainable_regexes)
  before = {n: np.array(v) for n, v in _flat(params).items()}
  optimizer = trainer.adafactor(learning_rate=preset.learning_rate)
  opt_state = optimizer.init(trainable)
  step = jax.jit(lambda t, f, s, b: trainer.train_step(
      model, optimizer, t, f, s, b, None))
  for _ in range(2):
    trainable, opt_state, metrics = step(trainable, frozen, opt_state, batch)
    assert np.isfinite(metrics['loss'])
  trainable_names = set(_flat(trainable))
  for name_, value in _flat(frozen).items():
    np.testing.assert_array_equal(value, before[name_])
  # Every method parameter gets a gradient (LoRA's A only once B moved).
  moved = [n for n, v in _flat(trainable).items()
           if not np.array_equal(v, before[n])]
  assert moved and len(moved) >= len(trainable_names) // 2
  # The optimizer state is keyed by trainable parameters only.
  assert _state_names(opt_state, trainable_names) == trainable_names


@pytest.fixture(scope='module')
def embedded_model():
  from prompt_tuning.checkpoints import embedded  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import offline  # pylint: disable=g-import-not-at-top
  path = embedded.checkpoint_path()
  params = t5x.load_t5x(path)
  cfg = t5.config_from_params(params, dropout_rate=0.0)
  vocabulary = offline.vocabulary()
  return path, params, cfg, vocabulary


def _embedded(embedded_model, preset, length=4):
  _, _, cfg, vocabulary = embedded_model
  preset = preset.with_length(length)
  return models.EncoderDecoderModel(
      t5.Transformer(cfg, prompt_length=preset.prompt_length(length),
                     methods=preset.methods), vocabulary, vocabulary)


# ----------------------------------------------------------------------------
# Export.
# ----------------------------------------------------------------------------


def _serving_params(module, exported, params, batch):
  """What `setup_model` would load for the serving model: the export's
  checkpoint (or the original frozen weights) plus what its files supply."""
  init = _flat(flax.core.meta.unbox(module.init(
      jax.random.PRNGKey(7), batch['encoder_input_tokens'],
      batch['decoder_input_tokens'])['params']))
  frozen = _flat(params)
  if exported.checkpoint:
    frozen = _flat(t5x.load_t5x(exported.checkpoint))
  supplied = [r for r, _ in exported.assignment_map()]
  return _unflat({n: (v if any(re.fullmatch(r, n) for r in supplied)
                      else frozen[n]) for n, v in init.items()})


@pytest.mark.parametrize('name, files', [
    ('prompt_tuning', {'prompt.npy'}),
    ('p_tuning', {'prompt.npy'}),
    ('p_tuning_mlp', {'prompt.npy'}),
    ('residual_prompt', {'prompt.npy'}),
    ('p_tuning_v2', {'method_params.safetensors'}),
    ('prefix_tuning', {'method_params.safetensors'}),
    ('lora', {'checkpoint'}),
    ('adapter_houlsby', {'method_params.safetensors'}),
    ('adapter_pfeiffer', {'method_params.safetensors'}),
    ('ia3', {'method_params.safetensors'}),
    ('norm_scale', {'checkpoint'}),
    ('model_tuning', {'checkpoint'}),
])
def test_export_gives_the_training_time_logits(name, files, tmp_path, batch,
                                               preset_params):
  preset = presets.PRESETS[name]
  module, params = preset_params(name)
  params = _trained(params, preset.trainable_regexes)
  exported = method_export.export(models.EncoderDecoderModel(module), params,
                                  preset.trainable_regexes, str(tmp_path))
  assert set(os.listdir(tmp_path)) == files | {'serve.gin'}
  assert exported.num_bytes > 0
  serving = method_export.serving_model(models.EncoderDecoderModel(module),
                                        exported).module
  # Reduced forms: prompts are plain, prefixes plain, LoRA gone.
  if exported.methods is not None:
    assert exported.methods.prompt_encoder is None
    assert exported.methods.lora is None
    assert (exported.methods.prefix is None
            or exported.methods.prefix.reparam_dim is None)
  if 'prompt.npy' in files:
    assert serving.methods is None and serving.prompt_length == P
  served = _serving_params(serving, exported, params, batch)
  np.testing.assert_allclose(_logits(serving, served, batch),
                             _logits(module, params, batch), atol=2e-5,
                             rtol=2e-5)


@pytest.mark.parametrize('name', ['p_tuning', 'prefix_tuning', 'lora',
                                  'adapter_houlsby'])
def test_serve_gin_configures_the_serving_model(name, tmp_path,
                                                preset_params):
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  preset = presets.PRESETS[name]
  module, params = preset_params(name)
  model = models.EncoderDecoderModel(module)
  exported = method_export.export(model, params, preset.trainable_regexes,
                                  str(tmp_path))
  expected = method_export.serving_model(model, exported).module
  sweep.configure(['embedded/prompt_eval.gin', str(tmp_path / 'serve.gin')],
                  ["EVAL_OUTPUT_DIR = '/tmp/unused'"])
  try:
    bindings = gin.get_bindings(inference.evaluate, resolve_references=True)
  finally:
    gin.clear_config()
  served = bindings['model'].module
  assert served.methods == expected.methods
  assert served.prompt_length == expected.prompt_length
  assert tuple(map(tuple, bindings['assignment_map'])) == (
      exported.assignment_map())
  if exported.checkpoint:
    assert bindings['initial_checkpoint_path'] == os.path.abspath(
        exported.checkpoint)
  if exported.prompt_file:
    np.testing.assert_array_equal(
        served.prompt_init(None, (P, 13)),
        np.load(exported.prompt_file))


def test_reductions_match_the_training_time_form(config, batch,
                                                 frozen_params,
                                                 preset_params):
  """The pieces one by one: folded prefixes and merged LoRA kernels."""
  preset = presets.PRESETS['prefix_tuning']
  module, params = preset_params('prefix_tuning')
  params = _trained(params, preset.trainable_regexes)
  folded = prefixes.fold_prefixes(module, params, 'decoder')
  assert set(folded) == set(prefixes.DECODER_PREFIXES)
  assert folded['cross_key'].shape == (2, P, 15)
  plain = t5.Transformer(config, methods=methods.Methods(
      prefix=methods.Prefix(P, decoder=True)))
  _, served = method_export.reduce(module, params)
  np.testing.assert_allclose(_logits(plain, served, batch),
                             _logits(module, params, batch), atol=2e-5)
  lora = methods.LoRA(rank=2, alpha=3.0, targets='.*')
  module = t5.Transformer(config, methods=methods.Methods(lora=lora))
  params = _trained(_init(module, batch, frozen_params),
                    [lora_lib.LORA_REGEX])
  merged = lora_lib.merge_lora(params, lora)
  flat = _flat(params)
  name = 'decoder/layers_0/mlp/wo'
  np.testing.assert_allclose(
      _flat(merged)[name + '/kernel'],
      flat[name + '/kernel'] + 1.5 * flat[name + '/lora_a'] @ flat[
          name + '/lora_b'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(_logits(t5.Transformer(config), merged, batch),
                             _logits(module, params, batch), atol=2e-5)


def _infer_matches_training_time_scores(tmp_path, model, params, exported):
  """The infer command's config (`embedded/prompt_infer.gin`) with the
  export's `serve.gin` gives the training-time model's scores."""
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  from prompt_tuning.tasks import utils as task_utils  # pylint: disable=g-import-not-at-top
  output = tmp_path / 'scores.jsonl'
  sweep.configure(
      ['embedded/prompt_infer.gin',
       os.path.join(exported.directory, 'serve.gin')],
      [f"INFER_OUTPUT_FILE = '{output}'", "INFER_MODE = 'score'",
       'BATCH_SIZE = 4', 'inference.infer.num_examples = 4'])
  try:
    count = gin.get_configurable(inference.infer)()
  finally:
    gin.clear_config()
  assert count == 4
  served = [json.loads(line)['score']
            for line in output.read_text().splitlines()]
  _, dataset = inference.task_examples(task_utils.get_mixture_or_task(TASK),
                                       'validation', LENGTHS, 4)
  batch = next(dataset.batch(4).as_numpy_iterator())[1]
  np.testing.assert_allclose(served, model.score_batch(params, batch),
                             atol=1e-3, rtol=1e-4)


@pytest.mark.slow
def test_trainer_keeps_the_checkpoint_and_its_export_serves(tmp_path,
                                                            embedded_model):
  """Prefix tuning through the trainer: the frozen checkpoint is untouched,
  the train state holds the prefix encoder and its optimizer state only, and
  the exported (folded) prefixes serve through `inference.infer` with the
  training-time scores."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path, params, _, _ = embedded_model
  preset = presets.PRESETS['prefix_tuning']
  model = _embedded(embedded_model, preset)
  result = trainer.train(
      model=model, mixture_or_task_name=TASK, task_feature_lengths=LENGTHS,
      batch_size=4, train_steps=2, model_dir=str(tmp_path / 'run'),
      initial_checkpoint_path=path,
      optimizer=trainer.adafactor(preset.learning_rate),
      trainable_regexes=preset.trainable_regexes,
      assignment_map=presets.assignment_map(preset.trainable_regexes),
      log_period=2, checkpoint_period=2, eval_mode=None)
  trained = set(_flat(result.trainable))
  abstract = flax.core.meta.unbox(jax.eval_shape(model.init,
                                                 jax.random.PRNGKey(0)))
  assert trained == set(presets.method_param_names(
      sorted(_flat(abstract)), preset.trainable_regexes))
  assert all(n.split('/')[1] == 'prefix' for n in trained)
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(tmp_path, 'run', 'train_state', '2', 'default'))
  assert set(_flat(restored['trainable'])) == trained
  assert _state_names(restored['opt_state'], trained) == trained
  again = t5x.load_t5x(path)
  for param, value in _flat(params).items():
    np.testing.assert_array_equal(_flat(again)[param], value)
  full = trainer.merge_params(result.trainable, params)
  exported = method_export.export(model, full, preset.trainable_regexes,
                                  str(tmp_path / 'export'))
  assert exported.methods.prefix.reparam_dim is None
  _infer_matches_training_time_scores(tmp_path, model, full, exported)


@pytest.mark.slow
def test_merged_lora_export_evaluates(tmp_path, embedded_model):
  """The eval command's config (`embedded/prompt_eval.gin`) with the export's
  `serve.gin` evaluates the merged LoRA kernels of the exported checkpoint
  with the plain model (whose logits equal the training-time model's, see
  `test_export_gives_the_training_time_logits`)."""
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  _, params, _, _ = embedded_model
  preset = presets.PRESETS['lora']
  model = _embedded(embedded_model, preset)
  init = flax.core.meta.unbox(model.init(jax.random.PRNGKey(0)))
  frozen = _flat(params)
  full = _unflat({n: frozen.get(n, v) for n, v in _flat(init).items()})
  full = _trained(full, preset.trainable_regexes, scale=0.05)
  exported = method_export.export(model, full, preset.trainable_regexes,
                                  str(tmp_path / 'export'))
  assert os.listdir(exported.checkpoint)
  sweep.configure(
      ['embedded/prompt_eval.gin', os.path.join(exported.directory,
                                                'serve.gin')],
      [f"EVAL_OUTPUT_DIR = '{tmp_path / 'eval'}'", "EVAL_MODE = 'rank'",
       f'CLASS_LABELS = {list(offline_labels())}', 'BATCH_SIZE = 4',
       'inference.evaluate.num_examples = 4'])
  try:
    bindings = gin.get_bindings(inference.evaluate, resolve_references=True)
    assert bindings['initial_checkpoint_path'] == exported.checkpoint
    assert bindings['model'].module.methods is None
    results = gin.get_configurable(inference.evaluate)()
  finally:
    gin.clear_config()
  assert 0 <= results[TASK]['accuracy'] <= 100


def offline_labels():
  from prompt_tuning.tasks import offline  # pylint: disable=g-import-not-at-top
  return offline.LABELS['topic']


# ----------------------------------------------------------------------------
# Gin.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('name', ALL)
def test_gin_file_matches_the_preset(name):
  preset = presets.PRESETS[name]
  gin.clear_config()
  try:
    gin_utils.parse_gin_flags(
        gin_utils.gin_search_paths(),
        ['embedded/prompt_tune.gin', f'methods/{name}.gin'],
        ["MODEL_DIR = '/tmp/unused'"])
    arguments = gin.get_bindings(trainer.train, resolve_references=True)
    length = gin.query_parameter('%PROMPT_LENGTH')
    assert gin.query_parameter('%METHOD') == name
    module = arguments['model'].module
    expected = preset.with_length(length)
    assert module.methods == expected.methods
    assert module.prompt_length == expected.prompt_length(length)
    assert tuple(arguments['trainable_regexes']) == preset.trainable_regexes
    assert tuple(map(tuple, arguments['assignment_map'])) == (
        presets.assignment_map(preset.trainable_regexes))
    assert gin.query_parameter('%LEARNING_RATE') == preset.learning_rate
  finally:
    gin.clear_config()


def test_gin_overrides_reach_the_method_configs():
  gin.clear_config()
  try:
    gin_utils.parse_gin_flags(
        gin_utils.gin_search_paths(),
        ['embedded/prompt_tune.gin', 'methods/lora.gin'],
        ["MODEL_DIR = '/tmp/unused'", 'methods.LoRA.rank = 8',
         "methods.LoRA.targets = '.*mlp/wo'"])
    module = gin.get_bindings(trainer.train,
                              resolve_references=True)['model'].module
    assert module.methods.lora == methods.LoRA(rank=8, targets='.*mlp/wo')
  finally:
    gin.clear_config()


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


def test_unknown_method_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown method 'lorra'") as error:
    presets.preset('lorra')
  for name in ALL:
    assert name in str(error.value)


def test_lora_rank_larger_than_the_projection_is_an_error(config, batch):
  module = t5.Transformer(config, methods=methods.Methods(
      lora=methods.LoRA(rank=14)))
  with pytest.raises(ValueError, match=(
      r'LoRA.rank 14 is larger than the projection '
      r'encoder/layers_0/attention/query of shape \[13, 15\]; expected a rank '
      r'of at most 13')):
    module.init(jax.random.PRNGKey(0), batch['encoder_input_tokens'],
                batch['decoder_input_tokens'])


def test_prefix_file_of_another_shape_is_an_error(tmp_path, config, batch):
  path = str(tmp_path / 'prefix.safetensors')
  params_lib.save_method_params(
      {'encoder/prefix/key': np.zeros((2, 5, 15), np.float32),
       'encoder/prefix/value': np.zeros((2, P, 15), np.float32)}, path)
  module = t5.Transformer(config, methods=methods.Methods(
      prefix=methods.Prefix(P), params_file=path))
  with pytest.raises(ValueError, match=re.escape(
      f"method parameter file {path} holds 'encoder/prefix/key' with shape "
      f'(2, 5, 15), but this model expects (2, {P}, 15)')):
    module.init(jax.random.PRNGKey(0), batch['encoder_input_tokens'],
                batch['decoder_input_tokens'])
  encoder_only = str(tmp_path / 'encoder_prefix.safetensors')
  params_lib.save_method_params(
      {'encoder/prefix/key': np.zeros((2, P, 15), np.float32),
       'encoder/prefix/value': np.zeros((2, P, 15), np.float32)}, encoder_only)
  decoder = t5.Transformer(config, methods=methods.Methods(
      prefix=methods.Prefix(P, decoder=True), params_file=encoder_only))
  with pytest.raises(ValueError, match="has no parameter 'decoder/prefix/"):
    decoder.init(jax.random.PRNGKey(0), batch['encoder_input_tokens'],
                 batch['decoder_input_tokens'])
  with pytest.raises(FileNotFoundError, match='missing.safetensors'):
    params_lib.read_method_param(str(tmp_path / 'missing.safetensors'),
                                 'encoder/prefix/key', (2, P, 15))


@pytest.mark.parametrize('make, message', [
    (lambda: methods.Prefix(0), 'Prefix.length must be positive, got 0'),
    (lambda: methods.Prefix(relpos='absolute'),
     r"Prefix.relpos is 'absolute'; expected one of \['prepended', 'none'\]"),
    (lambda: methods.LoRA(rank=0), 'LoRA.rank must be positive, got 0'),
    (lambda: methods.LoRA(targets='(query'), r"LoRA.targets '\(query' is not"),
    (lambda: methods.Adapter(placement='middle'),
     r"Adapter.placement is 'middle'; expected one of \['houlsby', "
     r"'pfeiffer'\]"),
    (lambda: methods.PromptEncoder('gru'), "PromptEncoder.kind is 'gru'"),
    (lambda: methods.PromptEncoder('lstm', hidden_dim=7),
     'hidden_dim 7 must be even'),
])
def test_bad_method_configs_name_the_value(make, message):
  with pytest.raises(ValueError, match=message):
    make()
