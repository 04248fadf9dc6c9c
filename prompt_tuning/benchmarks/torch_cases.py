"""HF transformers + PEFT cases for the benchmark, on our weights.

Install with `pip install -e ".[bench]"` (torch 2.13.0's CPU build,
transformers, peft); nothing else in the project needs them.

The HF model is built from *our* parameter tree (`checkpoints.
save_hf_safetensors` names every tensor), so both frameworks run the same T5
1.1 with the same weights, prompt and batch; `initial_losses` checks it. PEFT
prompt tuning trains the prompt with HF's Adafactor set as the paper's (and
as `trainer.adafactor`): learning rate 0.3, no relative step, no parameter
scaling, second-moment decay exponent 0.8, update clipping 1.0, weight decay
1e-5.

NOTE: HF's `T5Config(tie_word_embeddings=False)` is not honoured by the
model constructor in transformers 5: it ties the output layer to the
embedding and rescales the decoder output by 1/sqrt(d_model) (T5 1.0). T5 1.1
has neither, so both are switched off after construction and the tied
tensors are given their own storage before our weights are loaded.

Letters: B batch, T input length, U target length, P prompt length, H embed.
"""
import os
import tempfile
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from prompt_tuning.benchmarks import common as bench_utils
from prompt_tuning.interop import hf
from prompt_tuning.model import t5

PyTree = Any

INSTALL_HINT = ('the PEFT cases need torch, transformers and peft: '
                'pip install -e ".[bench]"')


def available() -> bool:
  """Whether torch, transformers and peft can be imported."""
  try:
    import peft  # pylint: disable=g-import-not-at-top,unused-import
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    import transformers  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def _modules():
  try:
    import peft  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'{INSTALL_HINT} ({e})') from e
  return torch, transformers, peft


def versions() -> Dict[str, Any]:
  """Versions, threads and OpenMP wait policy of the PyTorch stack."""
  torch, transformers, peft = _modules()
  return {'torch_version': torch.__version__,
          'transformers_version': transformers.__version__,
          'peft_version': peft.__version__,
          'torch_threads': torch.get_num_threads(),
          'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
          'torch_device': _device().type}


def set_threads(threads: int) -> None:
  """torch's intra-op threads for the PEFT cases."""
  torch, _, _ = _modules()
  torch.set_num_threads(threads)


def _device():
  torch, _, _ = _modules()
  return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def _synchronize(_=None) -> None:
  torch, _, _ = _modules()
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def hf_t5(params: PyTree, config: t5.T5Config,
          dropout_rate: Optional[float] = None):
  """An HF `T5ForConditionalGeneration` holding exactly our T5 1.1 weights.

  Args:
    params: our parameter tree without a prompt (as `t5.Transformer` with
      `prompt_length=0` has it).
    config: its sizes.
    dropout_rate: default `config.dropout_rate`.

  Raises:
    ValueError: a T5 1.0 config (tied logits), or weights that did not load.
  """
  torch, transformers, _ = _modules()
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  if config.logits_via_embedding:
    raise ValueError('hf_t5 builds T5 1.1 (untied logits); the config has '
                     'logits_via_embedding=True')
  gated = len(config.mlp_activations) > 1
  hf_config = transformers.T5Config(
      vocab_size=config.vocab_size, d_model=config.emb_dim,
      d_kv=config.head_dim, d_ff=config.mlp_dim,
      num_layers=config.num_encoder_layers,
      num_decoder_layers=config.num_decoder_layers,
      num_heads=config.num_heads,
      relative_attention_num_buckets=config.relative_attention_num_buckets,
      relative_attention_max_distance=config.relative_attention_max_distance,
      dropout_rate=(config.dropout_rate if dropout_rate is None
                    else dropout_rate),
      layer_norm_epsilon=config.layer_norm_epsilon,
      feed_forward_proj='gated-gelu' if gated else 'relu',
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  model = transformers.T5ForConditionalGeneration(hf_config)
  # See the module's NOTE.
  model.config.tie_word_embeddings = False
  model.config.scale_decoder_outputs = False
  model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
  for stack in (model.encoder, model.decoder):
    stack.embed_tokens = torch.nn.Embedding.from_pretrained(
        model.shared.weight.clone(), freeze=False)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'model.safetensors')
    hf.save_hf_safetensors(params, path)
    state = safetensors.torch.load_file(path)
  missing, unexpected = model.load_state_dict(state, strict=False)
  if missing or unexpected:
    raise ValueError(f'HF T5 weights did not load: missing {missing}, '
                     f'unexpected {unexpected}')
  return model.to(_device())


def adafactor(parameters, learning_rate: float):
  """HF's Adafactor with `trainer.adafactor`'s settings (see the module)."""
  _, transformers, _ = _modules()
  return transformers.optimization.Adafactor(
      parameters, lr=learning_rate, scale_parameter=False,
      relative_step=False, warmup_init=False, decay_rate=-0.8,
      clip_threshold=1.0, weight_decay=1e-5)


def peft_prompt_model(hf_model, prompt: np.ndarray):
  """PEFT prompt tuning on `hf_model`, its prompt set to ours `[P, H]`.

  One submodule: PEFT prepends the prompt to the encoder input only, as we do
  (see `peft_interop`).
  """
  torch, _, peft = _modules()
  length, width = prompt.shape
  model = peft.get_peft_model(hf_model, peft.PromptTuningConfig(
      task_type='SEQ_2_SEQ_LM', num_virtual_tokens=length, token_dim=width,
      num_transformer_submodules=1))
  embedding = model.prompt_encoder['default'].embedding.weight
  with torch.no_grad():
    embedding.copy_(torch.from_numpy(np.array(prompt, np.float32)))
  return model


def torch_batch(batch: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """Our batch as HF keyword arguments (int64 tensors on the device)."""
  torch, _, _ = _modules()
  device = _device()

  def tensor(x):
    return torch.from_numpy(np.asarray(x, np.int64)).to(device)

  inputs = batch['encoder_input_tokens']
  return {'input_ids': tensor(inputs),
          'attention_mask': tensor(np.asarray(inputs) > 0),
          'decoder_input_ids': tensor(batch['decoder_input_tokens']),
          'labels': tensor(np.where(batch['decoder_loss_weights'] > 0,
                                    batch['decoder_target_tokens'], -100))}


def _state_bytes(optimizer) -> int:
  total = 0
  for state in optimizer.state.values():
    for value in state.values():
      if hasattr(value, 'element_size'):
        total += value.numel() * value.element_size()
  return total


def _param_counts(model) -> Tuple[int, int, int, int]:
  """(trainable values, trainable bytes, frozen values, frozen bytes)."""
  counts = [0, 0, 0, 0]
  for p in model.parameters():
    offset = 0 if p.requires_grad else 2
    counts[offset] += p.numel()
    counts[offset + 1] += p.numel() * p.element_size()
  return tuple(counts)


def train_case(name: str, model, learning_rate: float,
               batch: Mapping[str, np.ndarray]) -> bench_utils.Timed:
  """A timed train step: forward with labels, backward, Adafactor, zero grad.

  Gradients are dropped after each step (`set_to_none`), as a training loop
  does; the optimizer state is counted after the first (warm-up) step.
  """
  model.train()
  trainable = [p for p in model.parameters() if p.requires_grad]
  optimizer = adafactor(trainable, learning_rate)
  inputs = torch_batch(batch)

  def step():
    loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  n_train, b_train, n_frozen, b_frozen = _param_counts(model)
  case = bench_utils.Timed(name, step, wait=_synchronize, info={
      'learning_rate': learning_rate, 'trainable_params': n_train,
      'trainable_bytes': b_train, 'frozen_params': n_frozen,
      'frozen_bytes': b_frozen, **versions()})
  case.optimizer = optimizer
  return case


def finish_train_case(case: bench_utils.Timed) -> None:
  """Adds what is known only after steps ran: optimizer state and peak
  device memory (CUDA only)."""
  torch, _, _ = _modules()
  case.info['opt_state_bytes'] = _state_bytes(case.optimizer)
  case.info['device_peak_bytes_in_use'] = (
      torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None)


def initial_loss(model, batch: Mapping[str, np.ndarray]) -> float:
  """Mean token cross-entropy, dropout off (to compare with ours)."""
  torch, _, _ = _modules()
  was_training = model.training
  model.eval()
  with torch.no_grad():
    loss = float(model(**torch_batch(batch)).loss)
  model.train(was_training)
  return loss


def generate_case(name: str, model, batch: Mapping[str, np.ndarray],
                  decode_length: int) -> bench_utils.Timed:
  """Timed greedy `generate` with the key/value cache, exactly
  `decode_length` new tokens per example (EOS suppressed until then)."""
  torch, _, _ = _modules()
  model.eval()
  inputs = torch_batch(batch)
  kwargs = {'input_ids': inputs['input_ids'],
            'attention_mask': inputs['attention_mask'],
            'max_new_tokens': decode_length, 'min_new_tokens': decode_length,
            'do_sample': False, 'num_beams': 1, 'use_cache': True}

  def call():
    with torch.no_grad():
      return model.generate(**kwargs)

  case = bench_utils.Timed(name, call, wait=_synchronize, info=versions())
  return case
