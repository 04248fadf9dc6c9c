"""HF transformers T5 model folders <-> our parameter tree.

A model folder as `save_pretrained` writes it or the hub serves it:

  config.json                     the architecture (checked, see below)
  model.safetensors               the weights; or, sharded,
  model.safetensors.index.json      its `weight_map` plus the shard files
  flax_model.msgpack              HF Flax's weights (transformers 4.x)
  pytorch_model.bin               torch pickles (needs torch); or, sharded,
  pytorch_model.bin.index.json      its `weight_map` plus the shard files

Weights are named as HF's PyTorch T5 names them
(`encoder.block.0.layer.0.SelfAttention.q.weight`): `nn.Linear` weights are
[out, in] and relative attention tables [buckets, heads], where ours are
[in, out] and [heads, buckets]. HF Flax names the same modules with '/' and
stores kernels [in, out] (`.../SelfAttention/q/kernel`), embeddings as
`embedding` and layer norms as `weight`.

`config.json` is read and checked by `hf_config`: against the weights'
shapes, and field by field against the model config a run was given. Only
torch's `.bin` files need torch; safetensors and msgpack need none.
"""
import io
import json
import os
import posixpath
import re
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Set, Tuple, Union)

from absl import logging
import jax
import numpy as np
import safetensors
import safetensors.flax
import safetensors.numpy

from prompt_tuning.checkpoints import hf_config
from prompt_tuning.checkpoints import t5x
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

PathLike = Union[str, os.PathLike]
PyTree = Any

CONFIG_FILE = hf_config.CONFIG_FILE
SAFETENSORS_FILE = 'model.safetensors'
SAFETENSORS_INDEX = 'model.safetensors.index.json'
FLAX_FILE = 'flax_model.msgpack'
TORCH_FILE = 'pytorch_model.bin'
TORCH_INDEX = 'pytorch_model.bin.index.json'
# Looked for in this order: the formats that need no torch first.
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, FLAX_FILE, TORCH_FILE,
                TORCH_INDEX)
INSTALL_HINT = 'pip install -e ".[hf]"'


_HF_EMBED_ALIASES = ('encoder.embed_tokens.weight',
                     'decoder.embed_tokens.weight')
# HF T5's block layout: (stack, our sublayer) -> (HF `layer.<index>`, HF
# module, our layer norm before it), and our attention projections' HF names.
HF_SUBLAYERS = {
    ('encoder', 'attention'): (0, 'SelfAttention', 'pre_attention_layer_norm'),
    ('encoder', 'mlp'): (1, 'DenseReluDense', 'pre_mlp_layer_norm'),
    ('decoder', 'self_attention'): (0, 'SelfAttention',
                                    'pre_self_attention_layer_norm'),
    ('decoder', 'encoder_decoder_attention'): (
        1, 'EncDecAttention', 'pre_cross_attention_layer_norm'),
    ('decoder', 'mlp'): (2, 'DenseReluDense', 'pre_mlp_layer_norm'),
}
HF_ATTENTION = {'query': 'q', 'key': 'k', 'value': 'v', 'out': 'o'}
_HF_MLP = ('wi_0', 'wi_1', 'wo')


# ---------------------------------------------------------------------------
# Names.
# ---------------------------------------------------------------------------


def _hf_table(num_encoder_layers: int, num_decoder_layers: int,
              lm_head: bool) -> List[Tuple[str, str, bool]]:
  """(HF name, our name, transpose) for every parameter of a T5 1.1."""
  table = [
      ('shared.weight', t5x.EMBEDDING_NAME, False),
      ('encoder.final_layer_norm.weight', 'encoder/encoder_norm/scale', False),
      ('decoder.final_layer_norm.weight', 'decoder/decoder_norm/scale', False),
  ]
  for stack in ('encoder', 'decoder'):
    table.append((f'{stack}.block.0.layer.0.SelfAttention.'
                  'relative_attention_bias.weight',
                  f'{stack}/relpos_bias/rel_embedding', True))
  counts = {'encoder': num_encoder_layers, 'decoder': num_decoder_layers}
  for (stack, module), (sub, hf_module, norm) in HF_SUBLAYERS.items():
    for i in range(counts[stack]):
      hf = f'{stack}.block.{i}.layer.{sub}'
      ours = f'{stack}/layers_{i}'
      table.append((f'{hf}.layer_norm.weight', f'{ours}/{norm}/scale', False))
      pairs = ([(m, m) for m in _HF_MLP] if module == 'mlp' else
               [(h, o) for o, h in HF_ATTENTION.items()])
      for hf_name, our_name in pairs:
        table.append((f'{hf}.{hf_module}.{hf_name}.weight',
                      f'{ours}/{module}/{our_name}/kernel', True))
  if lm_head:
    table.append(('lm_head.weight', 'decoder/logits_dense/kernel', True))
  return table


def _count_layers(names, pattern: str, source: str, what: str) -> int:
  matches = map(re.compile(pattern).match, names)
  indices = sorted({int(m.group(1)) for m in matches if m})
  if indices != list(range(len(indices))):
    raise ValueError(f'{source}: {what} layer indices {indices} are not '
                     f'0..{len(indices) - 1}')
  return len(indices)


def _check_names(source: str, have, expected, unknown_message: str,
                 missing_message: str) -> None:
  """Raises ValueError naming `source` if `have` (names) is not `expected`."""
  unknown = sorted(set(have) - set(expected))
  if unknown:
    raise ValueError(f'{source}: {unknown_message} {unknown}')
  missing = [name for name in expected if name not in have]
  if missing:
    raise ValueError(f'{source}: {missing_message} {missing}')


def tensors_to_params(tensors: Dict[str, np.ndarray], source: str, *,
                      num_layers: Optional[int] = None) -> Dict[str, Any]:
  """HF T5 tensors by PyTorch name -> {our '/'-joined name: array}.

  `lm_head.weight`, when present, becomes `decoder/logits_dense/kernel` (T5
  1.1's untied head); without it the tree is the tied variant. `shared.weight`
  may be repeated (or only given) as `{encoder,decoder}.embed_tokens.weight`;
  copies must be equal.

  Raises:
    ValueError: unknown or missing names, differing embed_tokens copies, or a
      layer count other than `num_layers`; each naming `source`.
  """
  tensors = dict(tensors)
  shared = tensors.get('shared.weight')
  for alias in _HF_EMBED_ALIASES:
    copy_ = tensors.pop(alias, None)
    if copy_ is None:
      continue
    if shared is None:
      shared = tensors['shared.weight'] = copy_
    elif not np.array_equal(copy_, shared):
      raise ValueError(f'{source}: {alias} differs from shared.weight; '
                       'expected a copy of it')
  num_encoder = _count_layers(tensors, r'encoder\.block\.(\d+)\.', source,
                              'encoder')
  num_decoder = _count_layers(tensors, r'decoder\.block\.(\d+)\.', source,
                              'decoder')
  if num_layers is not None and (num_encoder, num_decoder) != (num_layers,) * 2:
    raise ValueError(f'{source}: {num_encoder} encoder and {num_decoder} '
                     f'decoder layers, expected num_layers={num_layers}')
  table = _hf_table(num_encoder, num_decoder, 'lm_head.weight' in tensors)
  _check_names(source, tensors, [hf for hf, _, _ in table],
               'unknown HF T5 parameter names', 'missing HF T5 parameters')
  return {ours: (tensors[hf].T.copy() if transpose else tensors[hf])
          for hf, ours, transpose in table}


def params_to_tensors(params: PyTree, source: str) -> Dict[str, np.ndarray]:
  """Our T5 parameter tree (plain or flax-boxed) -> HF tensors by PyTorch
  name, `shared.weight` repeated as both `embed_tokens.weight`s.

  Raises:
    ValueError: a parameter has no HF name (e.g. a prompt) or is missing.
    TypeError: a leaf is not an array (`t5x.plain_params`).
  """
  plain = t5x.plain_params(params, what=source)
  flat = {n: np.asarray(x) for n, x in trees.flatten_with_names(plain)[0]}
  num_encoder = _count_layers(flat, r'encoder/layers_(\d+)/', source,
                              'encoder')
  num_decoder = _count_layers(flat, r'decoder/layers_(\d+)/', source,
                              'decoder')
  table = _hf_table(num_encoder, num_decoder,
                    'decoder/logits_dense/kernel' in flat)
  _check_names(source, flat, [ours for _, ours, _ in table],
               'parameters with no HF T5 name:', 'missing T5 parameters')
  tensors = {
      hf: np.ascontiguousarray(flat[ours].T if transpose else flat[ours])
      for hf, ours, transpose in table
  }
  for alias in _HF_EMBED_ALIASES:
    tensors[alias] = tensors['shared.weight']
  return tensors


def _shape_fields(flat: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """The architecture fields the weights themselves show."""
  embedding = flat[t5x.EMBEDDING_NAME]
  relpos = flat['encoder/relpos_bias/rel_embedding']
  query = flat['encoder/layers_0/attention/query/kernel']
  return {
      'vocab_size': embedding.shape[0],
      'emb_dim': embedding.shape[1],
      'num_heads': relpos.shape[0],
      'head_dim': query.shape[1] // relpos.shape[0],
      'mlp_dim': flat['encoder/layers_0/mlp/wi_0/kernel'].shape[1],
      'num_encoder_layers': _count_layers(flat, r'encoder/layers_(\d+)/', '',
                                          'encoder'),
      'num_decoder_layers': _count_layers(flat, r'decoder/layers_(\d+)/', '',
                                          'decoder'),
      'relative_attention_num_buckets': relpos.shape[1],
      'logits_via_embedding': 'decoder/logits_dense/kernel' not in flat,
  }


def config_for(params: PyTree, model_config: Any = None) -> Dict[str, Any]:
  """The `config.json` HF's `T5ForConditionalGeneration` needs for `params`
  (plain or flax-boxed): `hf_config.config_json` of the weights' sizes.

  Raises:
    ValueError: `model_config` disagrees with the weights' sizes.
  """
  flat = trees.flatten(t5x.plain_params(params, what='config.json'))
  return hf_config.config_json(_shape_fields(flat), model_config)


# ---------------------------------------------------------------------------
# Weight files.
# ---------------------------------------------------------------------------


def _join(folder: str, name: str) -> str:
  return posixpath.join(folder, name) if files.is_gcs(folder) else (
      os.path.join(folder, name))


def _require_file(file: str, what: str) -> None:
  if not files.exists(file):
    raise FileNotFoundError(f'{what} {file} does not exist')
  if files.isdir(file):
    raise IsADirectoryError(f'{what} {file} is a directory, expected a file')


def _read_safetensors(file: str,
                      names: Optional[Set[str]] = None
                      ) -> Dict[str, np.ndarray]:
  """The tensors of a safetensors file (only `names`, when given)."""
  _require_file(file, 'safetensors file')

  def read(framework):
    if files.is_gcs(file):
      module = safetensors.numpy if framework == 'numpy' else safetensors.flax
      arrays = module.load(files.read_bytes(file))
      return {n: a for n, a in arrays.items() if names is None or n in names}
    with safetensors.safe_open(file, framework=framework) as f:
      return {n: f.get_tensor(n) for n in f.keys()
              if names is None or n in names}

  try:
    return read('numpy')
  except Exception as e:  # pylint: disable=broad-except
    if 'bfloat16' not in str(e):
      raise ValueError(f'{file}: cannot read safetensors weights: {e}') from e
  # numpy has no bfloat16; the flax reader does (ml_dtypes), kept on the CPU.
  with jax.default_device(jax.devices('cpu')[0]):
    return {n: np.asarray(a) for n, a in read('flax').items()}


def _torch_to_numpy(tensor: Any) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  tensor = tensor.detach().cpu().contiguous()
  if tensor.dtype == torch.bfloat16:
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
  return tensor.numpy()


def _read_torch(file: str, names: Optional[Set[str]] = None
                ) -> Dict[str, np.ndarray]:
  _require_file(file, 'PyTorch weights file')
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'{file}: reading PyTorch .bin weights needs torch; install the hf '
        f'extra ({INSTALL_HINT}), or give a folder with model.safetensors or '
        f'{FLAX_FILE}') from e
  source = io.BytesIO(files.read_bytes(file)) if files.is_gcs(file) else file
  try:
    state = torch.load(source, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{file}: cannot read PyTorch weights: {e}') from e
  if not isinstance(state, Mapping):
    raise ValueError(f'{file}: expected a state dict, got '
                     f'{type(state).__name__}')
  return {n: _torch_to_numpy(t) for n, t in state.items()
          if names is None or n in names}


def _read_flax(file: str) -> Dict[str, np.ndarray]:
  """HF Flax's `flax_model.msgpack` -> tensors by HF PyTorch name."""
  _require_file(file, 'HF Flax weights file')
  tree = t5x.parse_msgpack_file(file, 'msgpack file')
  if not isinstance(tree, Mapping):
    raise ValueError(f'{file}: expected a tree of parameters, got '
                     f'{type(tree).__name__}')
  if set(tree) == {'params'}:
    tree = tree['params']
  tensors = {}
  for name, value in trees.flatten(tree).items():
    *module, leaf = name.split('/')
    value = np.asarray(value)
    if leaf == 'kernel':  # nn.Dense: [in, out], PyTorch's transpose.
      value = value.T
    elif leaf not in ('embedding', 'weight'):
      raise ValueError(f'{file}: unexpected HF Flax T5 parameter {name!r}')
    tensors['.'.join(module + ['weight'])] = value
  return tensors


def _read_index(index_file: str, read_shard: Callable[..., Dict[str, Any]],
                names: Optional[Set[str]] = None) -> Dict[str, np.ndarray]:
  """A sharded checkpoint: the index's `weight_map` names each tensor's
  shard file (beside the index)."""
  _require_file(index_file, 'shard index')
  try:
    weight_map = json.loads(files.read_bytes(index_file))['weight_map']
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{index_file}: not a shard index with a weight_map: '
                     f'{e!r}') from e
  folder = posixpath.dirname(index_file) if files.is_gcs(
      index_file) else os.path.dirname(index_file)
  tensors = {}
  wanted = {n: s for n, s in weight_map.items() if names is None or n in names}
  for shard in sorted(set(wanted.values())):
    in_shard = sorted(n for n, s in wanted.items() if s == shard)
    stored = read_shard(_join(folder, shard), set(in_shard))
    missing = [n for n in in_shard if n not in stored]
    if missing:
      raise ValueError(f'{index_file}: shard {shard} lacks {missing}')
    tensors.update((n, stored[n]) for n in in_shard)
  return tensors


def _read_weights(file: str, names: Optional[Set[str]] = None
                  ) -> Dict[str, np.ndarray]:
  """The tensors (only `names`, when given) of a weights file, by its name."""
  base = posixpath.basename(file)
  if base.endswith('.safetensors.index.json'):
    return _read_index(file, _read_safetensors, names)
  if base.endswith('.bin.index.json'):
    return _read_index(file, _read_torch, names)
  if base.endswith('.safetensors'):
    return _read_safetensors(file, names)
  if base.endswith(('.msgpack', '.bin')):
    read = _read_flax if base.endswith('.msgpack') else _read_torch
    return {n: a for n, a in read(file).items() if names is None or n in names}
  raise ValueError(f'{file}: not an HF weights file (expected '
                   f'{", ".join(WEIGHT_FILES)})')


def weights_file(folder: str) -> str:
  """The weights file of an HF model folder, in `WEIGHT_FILES`' order.

  Raises:
    FileNotFoundError: the folder holds none of them.
  """
  for name in WEIGHT_FILES:
    file = _join(folder, name)
    if files.exists(file):
      return file
  holds = sorted(files.listdir(folder))
  raise FileNotFoundError(
      f'HF model folder {folder} holds no weights file (looked for '
      f'{", ".join(WEIGHT_FILES)}); it holds {holds[:20]}')


def is_hf_model(path: PathLike) -> bool:
  """Whether `path` is an HF model folder (a `config.json` or an HF weights
  file in it) or an HF weights file, rather than a t5x checkpoint."""
  path = os.fspath(path)
  if not files.exists(path):
    return False
  if files.isdir(path):
    return any(files.exists(_join(path, name))
               for name in (CONFIG_FILE,) + WEIGHT_FILES)
  base = posixpath.basename(path)
  return base.endswith(('.safetensors', '.msgpack', '.bin',
                        '.safetensors.index.json', '.bin.index.json'))


def read_hf_model(path: PathLike, *, model_config: Any = None,
                  num_layers: Optional[int] = None
                  ) -> Tuple[Dict[str, np.ndarray], Optional[Dict[str, Any]]]:
  """Reads an HF T5 model folder or weights file.

  Args:
    path: a model folder (its `config.json` is required) or one weights file
      (a `config.json` beside it is read when there is one).
    model_config: our model config (`t5.T5Config`) that `config.json` must
      agree with, field by field.
    num_layers: if given, both stacks must have this many layers.

  Returns:
    ({our '/'-joined name: array}, the config.json dict or None).

  Raises:
    FileNotFoundError: nothing at `path`, no `config.json` in a folder, no
      weights file in it, or a shard named by an index is missing.
    ImportError: `.bin` weights and no torch (names the hf extra).
    ValueError: unreadable files, names or shapes not T5 1.1's, or a
      `config.json` that disagrees with the weights or `model_config`; each
      error names the path and, for a field, both values.
  """
  path = os.fspath(path)
  if not files.exists(path):
    raise FileNotFoundError(f'HF model {path} does not exist')
  if files.isdir(path):
    config = hf_config.read_config(path)
    weights = weights_file(path)
  else:
    weights = path
    beside = _join(posixpath.dirname(path) if files.is_gcs(path)
                   else os.path.dirname(path) or '.', CONFIG_FILE)
    config = hf_config.read_config(beside) if files.exists(beside) else None
  tensors = _read_weights(weights)
  flat = tensors_to_params(tensors, weights, num_layers=num_layers)
  if config is None:
    if model_config is not None:
      logging.warning('%s: no %s beside it; relative_attention_max_distance '
                      'and layer_norm_epsilon are taken on trust from the '
                      'model config.', weights, CONFIG_FILE)
  else:
    hf_config.check_weights(_shape_fields(flat), config, path,
                            posixpath.basename(weights))
    if model_config is not None:
      hf_config.check_config(config, model_config, path)
  return flat, config


def load_hf_model(path: PathLike, *, model_config: Any = None,
                  num_layers: Optional[int] = None) -> Dict[str, Any]:
  """`read_hf_model`'s parameters as our nested tree of numpy arrays."""
  flat, _ = read_hf_model(path, model_config=model_config,
                          num_layers=num_layers)
  return trees.unflatten(flat)


def load_hf_embedding(path: PathLike) -> np.ndarray:
  """The token embedding [V, H] of an HF model folder or weights file; of a
  safetensors checkpoint only that tensor (and its shard) is read."""
  path = os.fspath(path)
  if files.isdir(path):
    weights = weights_file(path)
  else:
    _require_file(path, 'HF weights file')
    weights = path
  names = ('shared.weight',) + _HF_EMBED_ALIASES
  tensors = _read_weights(weights, set(names))
  for name in names:
    if name in tensors:
      return tensors[name]
  raise ValueError(f'{weights}: no token embedding (looked for {names})')


def load_hf_checkpoint(path: PathLike,
                       *,
                       like: PyTree,
                       assignment_map: Sequence[Tuple[str, Optional[str]]] = (),
                       fallback_to_scratch: bool = False,
                       model_config: Any = None) -> PyTree:
  """An HF model folder read as `t5x.load_t5x(path, like=...)` reads a t5x
  checkpoint: `like`'s structure, shapes and dtypes, `assignment_map` rules.

  This is how `INITIAL_CHECKPOINT_PATH` may name a hub snapshot directly.
  """
  flat, _ = read_hf_model(path, model_config=model_config)
  return t5x.load_into(flat, like=like, assignment_map=assignment_map,
                       fallback_to_scratch=fallback_to_scratch,
                       source=os.fspath(path))


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------


def save_hf_weights(params: PyTree, file: PathLike) -> None:
  """Writes `params` (plain or flax-boxed) as one HF `.safetensors` file,
  atomically (temporary sibling, then rename)."""
  file = os.fspath(file)
  tensors = params_to_tensors(params, file)
  data = safetensors.numpy.save(tensors, metadata={'format': 'pt'})
  files.atomic_write_bytes(file, data)


def save_hf_folder(params: PyTree, folder: PathLike, *,
                   model_config: Any = None) -> None:
  """Writes an HF model folder: `model.safetensors` and `config.json`, which
  `T5ForConditionalGeneration.from_pretrained(folder)` opens as it is.

  Args:
    params: our T5 parameters, plain or in flax boxes.
    folder: created if absent; its two files are replaced.
    model_config: the model's `t5.T5Config`, for what the weights do not show
      (relative attention's maximum distance, layer-norm epsilon, dropout);
      T5 1.1's values without it.
  """
  folder = os.fspath(folder)
  config = config_for(params, model_config)
  if not files.is_gcs(folder):
    os.makedirs(folder, exist_ok=True)
  save_hf_weights(params, _join(folder, SAFETENSORS_FILE))
  files.atomic_write_bytes(_join(folder, CONFIG_FILE),
                           (json.dumps(config, indent=2) + '\n').encode())
