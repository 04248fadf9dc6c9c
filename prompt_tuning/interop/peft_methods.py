"""HF PEFT's LoRA and IA3 adapters to and from our LoRA and IA3 (no torch).

A PEFT adapter directory holds `adapter_config.json` and
`adapter_model.safetensors`, its tensors named by the HF T5 module they
modify, e.g. `base_model.model.encoder.block.0.layer.0.SelfAttention.q`:

  ours                                   HF T5
  {encoder,decoder}/layers_i/            {encoder,decoder}.block.i.layer.j.
    attention (encoder)                    0.SelfAttention
    self_attention (decoder)               0.SelfAttention
    encoder_decoder_attention              1.EncDecAttention
    mlp                                    1 (encoder) / 2 (decoder)
                                             .DenseReluDense
  query, key, value, out                 q, k, v, o
  wi_0, wi_1, wo                         wi_0, wi_1, wo

LoRA (`LoraConfig`, `peft_type` LORA): our `lora_a [in, r]` and
`lora_b [r, out]` are PEFT's `lora_A.weight [r, in]` and
`lora_B.weight [out, r]` transposed; both scale the update by
`lora_alpha / r` (ours `alpha / rank`), so `r` and `lora_alpha` carry over
as they are. Our LoRA has no dropout of its own (`lora_dropout` 0.0).
`target_modules` lists the HF short names (`["q", "v"]` for the default)
when every module of those names is targeted, else the full module names.

IA3 (`IA3Config`, `peft_type` IA3): ours rescales the outputs of every
attention's key and value projections (`ia3_key`, `ia3_value` `[N*D]`) and,
with `IA3.mlp`, the MLP's hidden activation, the input of `wo`
(`ia3_hidden [F]`): PEFT's `target_modules` `["k", "v", "wo"]` with
`feedforward_modules` `["wo"]` (HF T5's default), tensors `ia3_l` of shape
`[N*D, 1]` (outputs) and `[1, F]` (feed-forward inputs).

`peft_runs` exports a training run as the adapter of its method and writes
an imported adapter as our train and eval flags take it.
"""
import json
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import safetensors.numpy

from prompt_tuning import methods as methods_lib
from prompt_tuning.checkpoints import hf_folders
from prompt_tuning.interop import peft as peft_prompts
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

CONFIG_FILE = peft_prompts.CONFIG_FILE
WEIGHTS_FILE = peft_prompts.WEIGHTS_FILE
TASK_TYPE = peft_prompts.TASK_TYPE
LORA = 'LORA'
IA3 = 'IA3'
KEY_PREFIX = 'base_model.model.'

# (stack, our sublayer) <-> HF `layer.<j>.<module>`.
_SUBLAYERS = {key: f'{index}.{module}' for key, (index, module, _) in
              hf_folders.HF_SUBLAYERS.items()}
_HF_SUBLAYERS = {(stack, hf): ours for (stack, ours), hf in _SUBLAYERS.items()}
_ATTENTION = hf_folders.HF_ATTENTION
_MLP = {'wi': 'wi', 'wi_0': 'wi_0', 'wi_1': 'wi_1', 'wo': 'wo'}
_OUR_PATH = re.compile(r'(encoder|decoder)/layers_(\d+)/(\w+)/(\w+)')
_HF_MODULE = re.compile(
    r'(encoder|decoder)\.block\.(\d+)\.layer\.(\d\.\w+)\.(\w+)')


# ----------------------------------------------------------------------------
# Module names.
# ----------------------------------------------------------------------------


def hf_module_name(path: str) -> str:
  """Our projection's module path -> HF T5's module name.

  Raises:
    ValueError: not an attention or MLP projection of a layer.
  """
  match = _OUR_PATH.fullmatch(path)
  projections = (_MLP if match and match.group(3) == 'mlp' else _ATTENTION)
  if (not match or (match.group(1), match.group(3)) not in _SUBLAYERS
      or match.group(4) not in projections):
    raise ValueError(f'{path} is not an attention or MLP projection; PEFT '
                     'adapters here modify q, k, v, o, wi_0, wi_1 and wo')
  stack, layer, sublayer, projection = match.groups()
  return (f'{stack}.block.{layer}.layer.{_SUBLAYERS[stack, sublayer]}.'
          f'{projections[projection]}')


def our_module_path(hf_name: str) -> str:
  """HF T5's module name -> our projection's module path.

  Raises:
    ValueError: a module with no counterpart here (`lm_head`, `shared`, a
      layer norm, ...).
  """
  match = _HF_MODULE.fullmatch(hf_name)
  sublayer = match and _HF_SUBLAYERS.get((match.group(1), match.group(3)))
  if sublayer:
    projections = {hf: ours for ours, hf in
                   (_MLP if sublayer == 'mlp' else _ATTENTION).items()}
    if match.group(4) in projections:
      return (f'{match.group(1)}/layers_{match.group(2)}/{sublayer}/'
              f'{projections[match.group(4)]}')
  raise ValueError(f'the adapter modifies {hf_name}, which has no '
                   'counterpart here: our LoRA and IA3 modify the attention '
                   'projections q, k, v, o and the MLP projections wi_0, '
                   'wi_1, wo of each T5 layer')


def config_field(config: Any, field: str) -> Any:
  """A field of a `t5.T5Config` or of its run-record dict."""
  return (config[field] if isinstance(config, Mapping)
          else getattr(config, field))


def projection_shapes(model_config: Any) -> Dict[str, Tuple[int, int]]:
  """Every projection of a T5 (`t5.T5Config` or its record dict): module
  path -> kernel shape `[in, out]`."""
  embed = config_field(model_config, 'emb_dim')
  inner = (config_field(model_config, 'num_heads')
           * config_field(model_config, 'head_dim'))
  mlp = config_field(model_config, 'mlp_dim')
  activations = config_field(model_config, 'mlp_activations')
  wi = ([f'wi_{i}' for i in range(len(activations))]
        if len(activations) > 1 else ['wi'])
  sublayers = {'encoder': ('attention', 'mlp'),
               'decoder': ('self_attention', 'encoder_decoder_attention',
                           'mlp')}
  shapes = {}
  for stack, names in sublayers.items():
    for layer in range(config_field(model_config, f'num_{stack}_layers')):
      for sublayer in names:
        base = f'{stack}/layers_{layer}/{sublayer}'
        if sublayer == 'mlp':
          shapes.update({f'{base}/{w}': (embed, mlp) for w in wi})
          shapes[f'{base}/wo'] = (mlp, embed)
        else:
          shapes.update({f'{base}/{p}': (embed, inner)
                         for p in ('query', 'key', 'value')})
          shapes[f'{base}/out'] = (inner, embed)
  return shapes


def _short(hf_name: str) -> str:
  return hf_name.rsplit('.', 1)[-1]


# ----------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------


def _write(out_dir: str, config: Dict[str, Any],
           tensors: Dict[str, np.ndarray]) -> None:
  """The adapter directory, weights before config, each file atomically."""
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  arrays = {k: np.ascontiguousarray(np.asarray(v, np.float32))
            for k, v in sorted(tensors.items())}
  files.atomic_write_bytes(os.path.join(out_dir, WEIGHTS_FILE),
                           safetensors.numpy.save(arrays,
                                                  metadata={'format': 'pt'}))
  files.atomic_write_bytes(
      os.path.join(out_dir, CONFIG_FILE),
      (json.dumps(config, indent=2, sort_keys=True) + '\n').encode())


def _config(peft_type: str, fields: Dict[str, Any],
            base_model_name_or_path: Optional[str],
            config_overrides: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  overrides = dict(config_overrides or {})
  fixed = sorted(set(overrides) & (set(fields) | {'peft_type'}))
  if fixed:
    raise ValueError(f'config_overrides sets {fixed}, which the trained '
                     f'{peft_type} determines ({fields})')
  config = {'auto_mapping': None,
            'base_model_name_or_path': base_model_name_or_path,
            'inference_mode': True, 'modules_to_save': None,
            'peft_type': peft_type, 'revision': None, 'task_type': TASK_TYPE,
            **fields}
  config.update(overrides)
  return config


def flat_arrays(params: Any, caller: str) -> Dict[str, np.ndarray]:
  """`params` (plain or flax-boxed) as numpy arrays by '/'-joined name."""
  return {n: np.asarray(v) for n, v in
          trees.flatten(peft_prompts.unboxed(params, caller)).items()}


def _target_modules(targeted: Sequence[str],
                    model_config: Any) -> List[str]:
  """HF short names when they select exactly `targeted` (our paths), else
  the full HF module names."""
  hf = sorted(hf_module_name(p) for p in targeted)
  shorts = {_short(n) for n in hf}
  every = sorted(hf_module_name(p) for p in projection_shapes(model_config)
                 if _short(hf_module_name(p)) in shorts)
  return sorted(shorts) if every == hf else hf


def export_lora(params: Any, lora: methods_lib.LoRA, model_config: Any,
                out_dir: str, *, base_model_name_or_path: Optional[str] = None,
                config_overrides: Optional[Mapping[str, Any]] = None
                ) -> Dict[str, Any]:
  """Writes trained LoRA parameters as a PEFT LoRA adapter directory.

  Args:
    params: a tree holding every `.../lora_a` and `.../lora_b` (the trained
      parameters, or all of them), plain or flax-boxed.
    lora: the LoRA config trained with (rank, alpha, targets).
    model_config: the T5's `T5Config` (or its record dict).
    out_dir: the adapter directory, created if needed.
    base_model_name_or_path: the HF base model, e.g. `google/t5-v1_1-base`.
    config_overrides: other `LoraConfig` fields to set.

  Returns:
    The `adapter_config.json` contents.

  Raises:
    ValueError: no LoRA parameters, a rank other than `lora.rank`, or
      parameters other than those `lora.targets` selects.
  """
  flat = flat_arrays(params, 'export_lora')
  shapes = projection_shapes(model_config)
  expected = sorted(p for p in shapes if re.fullmatch(lora.targets, p))
  found = sorted(n[:-len('/lora_a')] for n in flat if n.endswith('/lora_a'))
  if not found:
    raise ValueError('export_lora found no .../lora_a parameters in the tree '
                     'given')
  if found != expected:
    raise ValueError(
        f'LoRA.targets {lora.targets!r} selects {len(expected)} projections '
        f'but the parameters hold {len(found)}: missing '
        f'{sorted(set(expected) - set(found))[:4]}, unexpected '
        f'{sorted(set(found) - set(expected))[:4]}')
  tensors = {}
  for path in found:
    a, b = flat[f'{path}/lora_a'], flat[f'{path}/lora_b']
    if a.shape[-1] != lora.rank or b.shape[0] != lora.rank:
      raise ValueError(f'LoRA.rank is {lora.rank} but {path}/lora_a is '
                       f'{list(a.shape)} and lora_b {list(b.shape)}')
    name = KEY_PREFIX + hf_module_name(path)
    tensors[f'{name}.lora_A.weight'] = a.T
    tensors[f'{name}.lora_B.weight'] = b.T
  alpha = lora.alpha
  alpha = int(alpha) if float(alpha).is_integer() else float(alpha)
  config = _config(LORA, {
      'r': lora.rank, 'lora_alpha': alpha, 'lora_dropout': 0.0,
      'target_modules': _target_modules(found, model_config),
      'bias': 'none', 'fan_in_fan_out': False, 'use_rslora': False,
      'use_dora': False, 'rank_pattern': {}, 'alpha_pattern': {},
      'layers_to_transform': None, 'layers_pattern': None},
                   base_model_name_or_path, config_overrides)
  config.setdefault('init_lora_weights', True)
  _write(out_dir, config, tensors)
  logging.info('wrote a PEFT LoRA adapter (r %d, alpha %s, %d modules) to %s',
               lora.rank, alpha, len(found), out_dir)
  return config


def export_ia3(params: Any, ia3: methods_lib.IA3, model_config: Any,
               out_dir: str, *, base_model_name_or_path: Optional[str] = None,
               config_overrides: Optional[Mapping[str, Any]] = None
               ) -> Dict[str, Any]:
  """Writes trained IA3 vectors as a PEFT IA3 adapter directory
  (`target_modules` k, v and, with `ia3.mlp`, wo as a feed-forward module).

  Arguments and return as `export_lora`.

  Raises:
    ValueError: a vector missing from, or unexpected in, the parameters.
  """
  flat = flat_arrays(params, 'export_ia3')
  points = [('key', 'k', False), ('value', 'v', False)]
  if ia3.mlp:
    points.append(('hidden', 'wo', True))
  tensors, missing = {}, []
  for path in projection_shapes(model_config):
    sublayer_path, projection = path.rsplit('/', 1)
    for point, hf_short, feedforward in points:
      if _short(hf_module_name(path)) != hf_short:
        continue
      name = f'{sublayer_path}/ia3_{point}'
      if name not in flat:
        missing.append(name)
        continue
      vector = flat.pop(name)
      tensors[f'{KEY_PREFIX}{hf_module_name(path)}.ia3_l'] = (
          vector[None, :] if feedforward else vector[:, None])
  unexpected = sorted(n for n in flat if re.fullmatch(r'.*/ia3_\w+', n))
  if missing or unexpected:
    raise ValueError(f'IA3(mlp={ia3.mlp}) expects a vector for every '
                     f'attention and MLP of the model: missing {missing[:4]}, '
                     f'unexpected {unexpected[:4]}')
  targets = [hf for _, hf, _ in points]
  config = _config(IA3, {
      'target_modules': targets,
      'feedforward_modules': ['wo'] if ia3.mlp else [],
      'fan_in_fan_out': False}, base_model_name_or_path, config_overrides)
  config.setdefault('init_ia3_weights', True)
  _write(out_dir, config, tensors)
  logging.info('wrote a PEFT IA3 adapter (%s, %d vectors) to %s', targets,
               len(tensors), out_dir)
  return config


# ----------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------


def _read_tensors(peft_dir: str) -> Dict[str, np.ndarray]:
  path = os.path.join(os.fspath(peft_dir), WEIGHTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist; re-save the adapter with '
                            'save_pretrained(..., safe_serialization=True)')
  try:
    return safetensors.numpy.load_file(path)
  except Exception as e:  # safetensors raises its own error types.
    raise ValueError(f'{path} is not a readable safetensors file: {e}') from e


def _by_module(tensors: Mapping[str, np.ndarray], suffix: str, where: str
               ) -> Dict[str, Dict[str, np.ndarray]]:
  """{HF module name: {what: tensor}} for keys
  `base_model.model.<module>.<what>` with `<what>` matching `suffix`."""
  pattern = re.compile(re.escape(KEY_PREFIX) + r'(.+)\.(' + suffix + r')')
  modules = {}
  for key, value in tensors.items():
    match = pattern.fullmatch(key)
    if not match:
      raise ValueError(f'{where}: tensor {key} is not one of this adapter '
                       f'type\'s (expected {KEY_PREFIX}<module>.{suffix})')
    modules.setdefault(match.group(1), {})[match.group(2)] = value
  if not modules:
    raise ValueError(f'{where} holds no tensors')
  return modules


def _unsupported(config: Mapping[str, Any], where: str,
                 plain: Mapping[str, Any]) -> None:
  """Fields whose non-default values our method cannot run."""
  for field, expected in plain.items():
    value = config.get(field)
    if value is None or value == expected or (not value and not expected):
      continue  # Unset, or its default ({} and [] for "none").
    raise ValueError(f'{where}: {field} is {value!r}; our '
                     f'{config["peft_type"]} has no counterpart (it needs '
                     f'{field} {expected!r})')


def _check_dims(where: str, hf_name: str, path: str, what: str,
                shape: Tuple[int, ...], ours: Tuple[int, ...]) -> None:
  if tuple(shape) != tuple(ours):
    raise ValueError(f'{where}: the adapter\'s {hf_name} {what} is '
                     f'{list(shape)} but our model\'s {path} needs '
                     f'{list(ours)}; the adapter was made for another base '
                     'model size')


def targets_regex(paths: Sequence[str],
                  model_config: Optional[Any] = None) -> str:
  """A `LoRA.targets` regex selecting exactly `paths` (our module paths);
  with `model_config`, `layers_\\d+` stands for every layer of a stack."""
  groups: Dict[Tuple[str, str, str], List[str]] = {}
  for path in sorted(paths):
    stack, layer, sublayer, projection = _OUR_PATH.fullmatch(path).groups()
    groups.setdefault((stack, sublayer, projection), []).append(layer)
  by_layers: Dict[Tuple[str, str, str], List[str]] = {}
  for (stack, sublayer, projection), layers in groups.items():
    every = (model_config is not None and sorted(map(int, layers)) == list(
        range(config_field(model_config, f'num_{stack}_layers'))))
    pattern = r'\d+' if every else (
        '(' + '|'.join(sorted(layers, key=int)) + ')')
    by_layers.setdefault((stack, pattern, sublayer), []).append(projection)
  parts = [f'{stack}/layers_{pattern}/{sublayer}/({"|".join(sorted(p))})'
           for (stack, pattern, sublayer), p in sorted(by_layers.items())]
  return '|'.join(parts)


def _adapter(peft_dir: str, peft_type: str
             ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], str]:
  """(config, tensors, weights path) of an adapter of `peft_type`."""
  config = peft_prompts.read_adapter_config(peft_dir)
  where = os.path.join(os.fspath(peft_dir), WEIGHTS_FILE)
  if config['peft_type'] != peft_type:
    raise ValueError(f'{where}: peft_type {config["peft_type"]!r}, expected '
                     f'{peft_type!r}')
  if config.get('task_type') not in (None, TASK_TYPE):
    logging.warning('%s: task_type %r; this adapter was made for another kind '
                    'of model than an encoder-decoder', where,
                    config['task_type'])
  return config, _read_tensors(peft_dir), where


def import_lora(peft_dir: str, model_config: Optional[Any] = None
                ) -> Tuple[methods_lib.LoRA, Dict[str, np.ndarray]]:
  """A PEFT LoRA adapter as our `LoRA` and its parameters by '/' name.

  Args:
    peft_dir: written by PEFT's `save_pretrained` or `export_lora`.
    model_config: our `T5Config` (or its record dict); when given, every
      tensor is checked against the model's dimensions and layers, and
      `layers_\\d+` in `LoRA.targets` stands for every layer.

  Raises:
    FileNotFoundError: the directory, config or weights file is missing.
    ValueError: options our LoRA cannot run (DoRA, biases, per-module ranks,
      ...), modules with no counterpart, or shapes that do not fit the rank
      or the model (naming both sides).
  """
  config, tensors, where = _adapter(peft_dir, LORA)
  _unsupported(config, where, {
      'bias': 'none', 'use_dora': False, 'fan_in_fan_out': False,
      'rank_pattern': {}, 'alpha_pattern': {}, 'modules_to_save': None,
      'lora_bias': False, 'target_parameters': None,
      'layer_replication': None, 'trainable_token_indices': None})
  rank, alpha = config.get('r'), config.get('lora_alpha')
  if not isinstance(rank, int) or rank < 1 or not isinstance(
      alpha, (int, float)) or alpha <= 0:
    raise ValueError(f'{where}: r {rank!r} and lora_alpha {alpha!r}; '
                     'expected a positive integer and a positive number')
  if config.get('use_rslora'):
    # PEFT scales by alpha / sqrt(r), ours by alpha / r.
    alpha = alpha * math.sqrt(rank)
  if config.get('lora_dropout'):
    logging.warning('%s: lora_dropout %s; our LoRA has no dropout of its own '
                    '(evaluation is unchanged, continued training differs)',
                    where, config['lora_dropout'])
  shapes = projection_shapes(model_config) if model_config is not None else {}
  params = {}
  for hf_name, pair in sorted(_by_module(
      tensors, r'lora_[AB]\.weight', where).items()):
    path = our_module_path(hf_name)
    if set(pair) != {'lora_A.weight', 'lora_B.weight'}:
      raise ValueError(f'{where}: {hf_name} has {sorted(pair)}, expected '
                       'lora_A.weight and lora_B.weight')
    a, b = pair['lora_A.weight'], pair['lora_B.weight']
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
      raise ValueError(f'{where}: {hf_name} has lora_A {list(a.shape)} and '
                       f'lora_B {list(b.shape)}, but adapter_config.json says '
                       f'r {rank} (expected [r, in] and [out, r])')
    if model_config is not None:
      if path not in shapes:
        layers = [config_field(model_config, f'num_{stack}_layers')
                  for stack in ('encoder', 'decoder')]
        raise ValueError(f'{where}: the adapter modifies {hf_name}, but our '
                         f'model has no {path} (its layers: {layers[0]} '
                         f'encoder, {layers[1]} decoder)')
      _check_dims(where, hf_name, path, '[in, out]',
                  (a.shape[1], b.shape[0]), shapes[path])
    params[f'{path}/lora_a'] = np.ascontiguousarray(a.T)
    params[f'{path}/lora_b'] = np.ascontiguousarray(b.T)
  paths = sorted(n[:-len('/lora_a')] for n in params if n.endswith('lora_a'))
  regex = targets_regex(paths, model_config)
  if model_config is not None:
    selected = sorted(p for p in shapes if re.fullmatch(regex, p))
    assert selected == paths, (regex, selected, paths)
  return methods_lib.LoRA(rank=rank, alpha=float(alpha), targets=regex), params


def _is_feedforward(config: Mapping[str, Any], hf_name: str) -> bool:
  """PEFT's rule: a regex fully matches the module name, or a name in the
  list is the module name or its last dotted part(s)."""
  modules = config.get('feedforward_modules') or []
  if isinstance(modules, str):
    return re.fullmatch(modules, hf_name) is not None
  return any(hf_name == m or hf_name.endswith('.' + m) for m in modules)


def import_ia3(peft_dir: str, model_config: Optional[Any] = None
               ) -> Tuple[methods_lib.IA3, Dict[str, np.ndarray]]:
  """A PEFT IA3 adapter as our `IA3` and its vectors by '/' name. With
  `model_config`, shapes are checked and the vectors of attentions (and
  MLPs) the adapter leaves alone are ones, which is no scaling.

  Raises:
    FileNotFoundError: as `import_lora`.
    ValueError: a scaled module our IA3 does not scale (naming it and what
      ours scales), or shapes that do not fit the model.
  """
  config, tensors, where = _adapter(peft_dir, IA3)
  _unsupported(config, where, {'fan_in_fan_out': False,
                               'modules_to_save': None})
  points = {('k', False): 'key', ('v', False): 'value', ('wo', True): 'hidden'}
  params = {}
  for hf_name, tensor in sorted(_by_module(tensors, 'ia3_l', where).items()):
    path = our_module_path(hf_name)
    vector = tensor['ia3_l']
    feedforward = _is_feedforward(config, hf_name)
    point = points.get((_short(hf_name), feedforward))
    if point is None:
      raise ValueError(
          f'{where}: IA3 scales the {"input" if feedforward else "output"} of '
          f'{hf_name}, which has no counterpart here: our IA3 scales the '
          'outputs of k and v and the input of wo (target_modules '
          '["k", "v", "wo"], feedforward_modules ["wo"])')
    axis = 0 if feedforward else 1
    if vector.ndim != 2 or vector.shape[axis] != 1:
      raise ValueError(f'{where}: {hf_name}.ia3_l is {list(vector.shape)}, '
                       f'expected [{"1, in" if feedforward else "out, 1"}]')
    if model_config is not None:
      shape = projection_shapes(model_config).get(path)
      if shape is None:
        raise ValueError(f'{where}: the adapter scales {hf_name}, but our '
                         f'model has no {path}')
      _check_dims(where, hf_name, path, 'ia3_l', vector.shape,
                  (1, shape[0]) if feedforward else (shape[1], 1))
    params[f'{path.rsplit("/", 1)[0]}/ia3_{point}'] = vector.reshape(-1)
  ia3 = methods_lib.IA3(mlp=any(n.endswith('/ia3_hidden') for n in params))
  if model_config is not None:
    # Our IA3 scales every attention (and MLP); the ones PEFT left alone get
    # ones, which is exactly no scaling.
    filled = []
    for path, (in_dim, out_dim) in projection_shapes(model_config).items():
      sublayer, projection = path.rsplit('/', 1)
      name = {'key': 'ia3_key', 'value': 'ia3_value',
              'wo': 'ia3_hidden' if ia3.mlp else None}.get(projection)
      if name and f'{sublayer}/{name}' not in params:
        size = in_dim if name == 'ia3_hidden' else out_dim
        params[f'{sublayer}/{name}'] = np.ones((size,), np.float32)
        filled.append(f'{sublayer}/{name}')
    if filled:
      logging.warning('%s: the adapter leaves %d of the vectors our IA3 '
                      'trains alone (%s ...); they are ones (no scaling)',
                      where, len(filled), filled[0])
  return ia3, params


