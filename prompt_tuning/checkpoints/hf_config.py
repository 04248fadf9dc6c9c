"""HF `config.json` <-> our model config (`t5.T5Config`) fields.

`config.json` fixes what the weights cannot show: relative attention's
maximum distance, the layer-norm epsilon, the activation and whether the head
is tied. Every architecture field is compared with the model config a run was
given, taken here as any object with `t5.T5Config`'s attributes (this layer
is below the model). Where a key is absent, transformers' default holds.
"""
import json
import os
import posixpath
from typing import Any, Dict, Mapping, Union

import numpy as np

from prompt_tuning.utils import files

PathLike = Union[str, os.PathLike]

CONFIG_FILE = 'config.json'
# (config.json key, T5Config field, transformers' default when the key is
# absent). num_decoder_layers defaults to num_layers.
_CONFIG_FIELDS = (
    ('vocab_size', 'vocab_size', 32128),
    ('d_model', 'emb_dim', 512),
    ('d_kv', 'head_dim', 64),
    ('d_ff', 'mlp_dim', 2048),
    ('num_heads', 'num_heads', 8),
    ('num_layers', 'num_encoder_layers', 6),
    ('num_decoder_layers', 'num_decoder_layers', None),
    ('relative_attention_num_buckets', 'relative_attention_num_buckets', 32),
    ('relative_attention_max_distance', 'relative_attention_max_distance',
     128),
    ('layer_norm_epsilon', 'layer_norm_epsilon', 1e-6),
)
# Our config's fields that config.json states, in its order.
ARCHITECTURE_FIELDS = tuple(field for _, field, _ in _CONFIG_FIELDS)
# T5 1.1's feed-forward: HF's 'gated-gelu' is gelu_new (tanh) * linear.
_GATED_GELU = ('gated-gelu', 'gated-gelu_new')
_GELU_LINEAR = ('gelu', 'linear')
_MODEL_TYPES = ('t5', 'mt5')


def read_config(path: PathLike) -> Dict[str, Any]:
  """The `config.json` of a model folder (or the file itself), as a dict.

  Raises:
    FileNotFoundError: there is none.
    ValueError: it is not a JSON object, or its `model_type` is not T5's.
  """
  path = os.fspath(path)
  file = posixpath.join(path, CONFIG_FILE) if files.isdir(path) else path
  if not files.exists(file):
    raise FileNotFoundError(f'{file} does not exist; an HF model folder '
                            f'holds its architecture in {CONFIG_FILE}')
  try:
    config = json.loads(files.read_bytes(file))
  except ValueError as e:
    raise ValueError(f'{file}: not valid JSON: {e}') from e
  if not isinstance(config, dict):
    raise ValueError(f'{file}: expected a JSON object, got '
                     f'{type(config).__name__}')
  model_type = config.get('model_type', 't5')
  if model_type not in _MODEL_TYPES:
    raise ValueError(f'{file}: model_type={model_type!r}; only T5 '
                     f'({", ".join(_MODEL_TYPES)}) models are read')
  return config


def model_fields(config: Mapping[str, Any],
                 source: str = CONFIG_FILE) -> Dict[str, Any]:
  """`t5.T5Config` keyword arguments for an HF `config.json` (as a dict):
  every architecture field, transformers' defaults where a key is absent.

  Raises:
    ValueError: `feed_forward_proj` is not T5 1.1's gated-gelu.
  """
  fields = {}
  for key, field, default in _CONFIG_FIELDS:
    if key == 'num_decoder_layers':
      default = fields['num_encoder_layers']
    value = config.get(key)
    fields[field] = default if value is None else value
  feed_forward = config.get('feed_forward_proj', 'relu')
  if feed_forward not in _GATED_GELU:
    raise ValueError(
        f"{source}: feed_forward_proj={feed_forward!r}; only T5 1.1's "
        "'gated-gelu' (wi_0, wi_1, wo) is supported")
  fields['mlp_activations'] = _GELU_LINEAR
  # HF's T5 ties the head unless told otherwise; T5 1.1 says false.
  fields['logits_via_embedding'] = config.get('tie_word_embeddings',
                                              True) is not False
  return fields


def hf_key(field: str) -> str:
  for key, ours, _ in _CONFIG_FIELDS:
    if ours == field:
      return key
  return {'mlp_activations': 'feed_forward_proj',
          'logits_via_embedding': 'tie_word_embeddings'}[field]


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, float) or isinstance(b, float):
    return np.isclose(float(a), float(b), rtol=1e-9, atol=0)
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return tuple(a) == tuple(b)
  return a == b


def check_config(config: Mapping[str, Any], model_config: Any,
                 source: str) -> None:
  """Raises ValueError naming the first field where an HF `config.json` and
  our model config (a `t5.T5Config`, or anything with its attributes)
  disagree, with both values.
  """
  fields = model_fields(config, source)
  for field, theirs in fields.items():
    if not hasattr(model_config, field):
      continue
    ours = getattr(model_config, field)
    if not _same(theirs, ours):
      key = hf_key(field)
      shown = config.get(key, f'{theirs!r} (transformers default)')
      raise ValueError(
          f'{source}: {CONFIG_FILE} has {key}={shown} but the model config '
          f'(gin t5.T5Config) has {field}={ours!r}')


def check_weights(shown: Mapping[str, Any], config: Mapping[str, Any],
                  source: str, weights: str) -> None:
  """Raises ValueError where `config.json` disagrees with what the weights
  file `weights` shows (`shown`: T5Config fields from its shapes)."""
  said = model_fields(config, source)
  for field, value in shown.items():
    if _same(said[field], value):
      continue
    key = hf_key(field)
    if field == 'logits_via_embedding':
      raise ValueError(
          f'{source}: {CONFIG_FILE} has tie_word_embeddings='
          f'{config.get(key, "true (default)")} but {weights} '
          f'{"lacks" if value else "holds"} lm_head.weight')
    raise ValueError(f'{source}: {CONFIG_FILE} has {key}={said[field]} but '
                     f'{weights} has {value}')


def config_json(shown: Mapping[str, Any],
                model_config: Any = None) -> Dict[str, Any]:
  """The `config.json` HF's `T5ForConditionalGeneration` needs.

  Sizes come from `shown` (T5Config fields read off the weights); the rest
  (relative attention's maximum distance, layer-norm epsilon, dropout) from
  `model_config` when given, else T5 1.1's values. The head is untied unless
  `shown['logits_via_embedding']`.

  Raises:
    ValueError: `model_config` disagrees with the weights' sizes.
  """
  tied = bool(shown['logits_via_embedding'])
  config = {'architectures': ['T5ForConditionalGeneration'],
            'model_type': 't5'}
  for key, field, default in _CONFIG_FIELDS:
    value = (shown[field] if field in shown
             else getattr(model_config, field, default))
    config[key] = float(value) if isinstance(default, float) else int(value)
  config.update({
      'dropout_rate': float(getattr(model_config, 'dropout_rate', 0.1)),
      'feed_forward_proj': 'gated-gelu',
      'dense_act_fn': 'gelu_new',
      'is_gated_act': True,
      # transformers 5 takes the 1/sqrt(d_model) rescale of the decoder
      # output from these two; T5 1.1 (untied) has no rescale.
      'tie_word_embeddings': tied,
      'scale_decoder_outputs': tied,
      'initializer_factor': 1.0,
      'is_encoder_decoder': True,
      'decoder_start_token_id': 0,
      'pad_token_id': 0,
      'eos_token_id': 1,
      'use_cache': True,
  })
  if model_config is not None:
    check_config(config, model_config, source=CONFIG_FILE)
  return config
