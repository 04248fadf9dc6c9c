"""HF transformers T5 `model.safetensors` <-> our parameter tree (no torch).

The name table maps every HF T5 1.1 parameter to its flaxformer name; HF
`nn.Linear` weights are [out, in] where ours are [in, out].
"""
import os
import re
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import safetensors.numpy

from prompt_tuning.checkpoints import t5x
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

PathLike = Union[str, os.PathLike]
PyTree = Any

_HF_EMBED_ALIASES = ('encoder.embed_tokens.weight',
                     'decoder.embed_tokens.weight')
_HF_ATTENTION = (('q', 'query'), ('k', 'key'), ('v', 'value'), ('o', 'out'))
_HF_MLP = ('wi_0', 'wi_1', 'wo')


def _hf_table(num_encoder_layers: int, num_decoder_layers: int,
              lm_head: bool) -> List[Tuple[str, str, bool]]:
  """(HF name, our name, transpose) for every parameter of a T5 1.1.

  HF `nn.Linear` weights are [out, in] and its relative attention tables are
  [buckets, heads]; ours are [in, out] and [heads, buckets], hence transpose.
  """
  table = [
      ('shared.weight', t5x.EMBEDDING_NAME, False),
      ('encoder.final_layer_norm.weight', 'encoder/encoder_norm/scale', False),
      ('decoder.final_layer_norm.weight', 'decoder/decoder_norm/scale', False),
  ]
  for stack in ('encoder', 'decoder'):
    table.append((f'{stack}.block.0.layer.0.SelfAttention.'
                  'relative_attention_bias.weight',
                  f'{stack}/relpos_bias/rel_embedding', True))
  # (stack, HF sublayer index, HF module, our module, our layer norm)
  sublayers = [('encoder', 0, 'SelfAttention', 'attention',
                'pre_attention_layer_norm'),
               ('encoder', 1, 'DenseReluDense', 'mlp', 'pre_mlp_layer_norm'),
               ('decoder', 0, 'SelfAttention', 'self_attention',
                'pre_self_attention_layer_norm'),
               ('decoder', 1, 'EncDecAttention', 'encoder_decoder_attention',
                'pre_cross_attention_layer_norm'),
               ('decoder', 2, 'DenseReluDense', 'mlp', 'pre_mlp_layer_norm')]
  counts = {'encoder': num_encoder_layers, 'decoder': num_decoder_layers}
  for stack, sub, hf_module, module, norm in sublayers:
    for i in range(counts[stack]):
      hf = f'{stack}.block.{i}.layer.{sub}'
      ours = f'{stack}/layers_{i}'
      table.append((f'{hf}.layer_norm.weight', f'{ours}/{norm}/scale', False))
      pairs = (_HF_ATTENTION if module != 'mlp' else [(m, m) for m in _HF_MLP])
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


def _check_names(path: str, have, expected, unknown_message: str,
                 missing_message: str) -> None:
  """Raises ValueError naming `path` if `have` (names) is not `expected`."""
  unknown = sorted(set(have) - set(expected))
  if unknown:
    raise ValueError(f'{path}: {unknown_message} {unknown}')
  missing = [name for name in expected if name not in have]
  if missing:
    raise ValueError(f'{path}: {missing_message} {missing}')


def load_hf_safetensors(path: PathLike,
                        *,
                        num_layers: Optional[int] = None) -> Dict[str, Any]:
  """Reads an HF transformers T5 `model.safetensors` into our parameter tree.

  No torch is needed. `lm_head.weight`, when present, becomes
  `decoder/logits_dense/kernel` (T5 1.1 has an untied output projection);
  without it the tree is the tied (T5 1.0) variant. The HF file names one
  table `shared.weight` and may repeat it as `{encoder,decoder}.embed_tokens`;
  either name is accepted, and copies must be equal.

  Args:
    path: the `.safetensors` file.
    num_layers: if given, the encoder and decoder must both have this many
      layers.

  Returns:
    Nested dict of numpy arrays with flaxformer T5 names.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: unknown or missing HF names, embed_tokens copies that differ
      from `shared.weight`, or a layer count other than `num_layers`.
  """
  path = os.fspath(path)
  if not files.exists(path):
    raise FileNotFoundError(f'safetensors file {path} does not exist')
  if files.is_gcs(path):
    tensors = safetensors.numpy.load(files.read_bytes(path))
  else:
    tensors = safetensors.numpy.load_file(path)
  shared = tensors.get('shared.weight')
  for alias in _HF_EMBED_ALIASES:
    copy_ = tensors.pop(alias, None)
    if copy_ is None:
      continue
    if shared is None:
      shared = tensors['shared.weight'] = copy_
    elif not np.array_equal(copy_, shared):
      raise ValueError(f'{path}: {alias} differs from shared.weight; expected '
                       'a copy of it')
  num_encoder = _count_layers(tensors, r'encoder\.block\.(\d+)\.', path,
                              'encoder')
  num_decoder = _count_layers(tensors, r'decoder\.block\.(\d+)\.', path,
                              'decoder')
  if num_layers is not None and (num_encoder, num_decoder) != (num_layers,) * 2:
    raise ValueError(f'{path}: {num_encoder} encoder and {num_decoder} decoder '
                     f'layers, expected num_layers={num_layers}')
  table = _hf_table(num_encoder, num_decoder, 'lm_head.weight' in tensors)
  _check_names(path, tensors, [hf for hf, _, _ in table],
               'unknown HF T5 parameter names', 'missing HF T5 parameters')
  flat = {ours: (tensors[hf].T.copy() if transpose else tensors[hf])
          for hf, ours, transpose in table}
  return trees.unflatten(flat)


def save_hf_safetensors(params: PyTree, path: PathLike) -> None:
  """Writes our T5 parameter tree as an HF transformers `model.safetensors`.

  The inverse of `load_hf_safetensors`; `shared.weight` is also written as
  `encoder.embed_tokens.weight` and `decoder.embed_tokens.weight`. The file is
  written atomically (temporary sibling, then rename).

  Raises:
    ValueError: a parameter has no HF name (e.g. a prompt) or is missing.
  """
  path = os.fspath(path)
  flat = {n: np.asarray(x) for n, x in trees.flatten_with_names(params)[0]}
  num_encoder = _count_layers(flat, r'encoder/layers_(\d+)/', path, 'encoder')
  num_decoder = _count_layers(flat, r'decoder/layers_(\d+)/', path, 'decoder')
  table = _hf_table(num_encoder, num_decoder,
                    'decoder/logits_dense/kernel' in flat)
  _check_names(path, flat, [ours for _, ours, _ in table],
               'parameters with no HF T5 name:', 'missing T5 parameters')
  tensors = {
      hf: np.ascontiguousarray(flat[ours].T if transpose else flat[ours])
      for hf, ours, transpose in table
  }
  for alias in _HF_EMBED_ALIASES:
    tensors[alias] = tensors['shared.weight']
  data = safetensors.numpy.save(tensors, metadata={'format': 'pt'})
  files.atomic_write_bytes(path, data)
