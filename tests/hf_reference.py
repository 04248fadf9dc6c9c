"""HF transformers' T5 as an independent reference implementation.

Used by tests/test_hf_parity.py (live, when torch and transformers are
installed: `pip install -e ".[hf]"`) and, as a script, to regenerate the golden
files in tests/data that let the parity tests run without torch:

    python tests/hf_reference.py [--reference_dir ../shared/reference]
"""
import argparse
import importlib.util
import os
import pathlib
import tempfile

import numpy as np

# Whether the real clients are installed (the `hf` extra), for skip marks.
HAVE_HF = all(importlib.util.find_spec(m) for m in ('torch', 'transformers'))
NEEDS_HF = 'needs torch and transformers (pip install -e ".[hf]")'
HAVE_PEFT = all(importlib.util.find_spec(m)
                for m in ('torch', 'transformers', 'peft'))
NEEDS_PEFT = 'needs torch, transformers and peft (pip install -e ".[hf]")'

DATA_DIR = pathlib.Path(__file__).parent / 'data'
TINY_WEIGHTS = DATA_DIR / 'hf_t5_tiny.safetensors'
TINY_GOLDEN = DATA_DIR / 'hf_t5_tiny_logits.npz'
REFERENCE_GOLDEN = DATA_DIR / 'hf_t5_reference_logits.npz'

# Odd sizes, an inner attention size (3 x 5) unlike d_model.
TINY_CONFIG = dict(vocab_size=37, emb_dim=13, num_heads=3, head_dim=5,
                   mlp_dim=11, num_encoder_layers=2, num_decoder_layers=3,
                   relative_attention_num_buckets=8,
                   relative_attention_max_distance=16, dropout_rate=0.0)
ENCODER_TOKENS = np.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 1, 0, 0],
                           [14, 15, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0]], np.int64)
DECODER_INPUTS = np.array([[0, 20, 21, 22, 23, 24],
                           [0, 25, 26, 0, 0, 0]], np.int64)
DECODER_TARGETS = np.array([[20, 21, 22, 23, 24, 1],
                            [25, 26, 1, 0, 0, 0]], np.int64)
# Reference checkpoint golden: these vocabulary columns are stored.
REFERENCE_COLUMNS = np.concatenate([np.arange(64), np.arange(64, 32128, 251)])


def hf_model(config: dict, state_dict_path, tied: bool = False):
  """An HF T5ForConditionalGeneration holding exactly the given weights."""
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  hf_config = transformers.T5Config(
      vocab_size=config['vocab_size'], d_model=config['emb_dim'],
      d_kv=config['head_dim'], d_ff=config['mlp_dim'],
      num_layers=config['num_encoder_layers'],
      num_decoder_layers=config['num_decoder_layers'],
      num_heads=config['num_heads'],
      relative_attention_num_buckets=config['relative_attention_num_buckets'],
      relative_attention_max_distance=config['relative_attention_max_distance'],
      dropout_rate=0.0, layer_norm_epsilon=1e-6,
      feed_forward_proj='gated-gelu', decoder_start_token_id=0,
      pad_token_id=0, eos_token_id=1)
  model = transformers.T5ForConditionalGeneration(hf_config)
  # NOTE: the constructor ties the head to the embedding and turns on the
  # 1/sqrt(d_model) rescale of decoder outputs (T5 1.0 behaviour) whatever the
  # config says; T5 1.1 has neither. Set both after construction, untie the
  # tensors, then check every one was loaded.
  model.config.tie_word_embeddings = tied
  model.config.scale_decoder_outputs = tied
  if not tied:
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
  model.encoder.embed_tokens = torch.nn.Embedding.from_pretrained(
      model.shared.weight.clone(), freeze=False)
  model.decoder.embed_tokens = torch.nn.Embedding.from_pretrained(
      model.shared.weight.clone(), freeze=False)
  state = safetensors.torch.load_file(str(state_dict_path))
  if tied:
    state.pop('lm_head.weight', None)
  missing, unexpected = model.load_state_dict(state, strict=False)
  missing = [k for k in missing if not (tied and k == 'lm_head.weight')]
  assert not missing and not unexpected, (missing, unexpected)
  loaded = dict(model.named_parameters(remove_duplicate=False))
  for name, value in state.items():
    assert torch.equal(loaded[name].detach(), value), f'{name} did not land'
  if tied:
    model.tie_weights()
  return model.eval()


def hf_logits(model, encoder_tokens, decoder_inputs):
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    out = model(input_ids=torch.tensor(encoder_tokens),
                attention_mask=torch.tensor(encoder_tokens > 0),
                decoder_input_ids=torch.tensor(decoder_inputs))
  return out.logits.numpy()


def tiny_params(seed: int = 0):
  """Random weights in our tree for TINY_CONFIG, from numpy (portable)."""
  rng = np.random.RandomState(seed)
  c = TINY_CONFIG
  inner = c['num_heads'] * c['head_dim']

  def dense(n_in, n_out):
    return (rng.randn(n_in, n_out) / np.sqrt(n_in)).astype(np.float32)

  def norm():
    return (1.0 + 0.1 * rng.randn(c['emb_dim'])).astype(np.float32)

  def attention():
    return {'query': {'kernel': dense(c['emb_dim'], inner) / np.sqrt(
        c['head_dim']).astype(np.float32)},
            'key': {'kernel': dense(c['emb_dim'], inner)},
            'value': {'kernel': dense(c['emb_dim'], inner)},
            'out': {'kernel': dense(inner, c['emb_dim'])}}

  def mlp():
    return {'wi_0': {'kernel': dense(c['emb_dim'], c['mlp_dim'])},
            'wi_1': {'kernel': dense(c['emb_dim'], c['mlp_dim'])},
            'wo': {'kernel': dense(c['mlp_dim'], c['emb_dim'])}}

  def relpos():
    return {'rel_embedding': rng.randn(
        c['num_heads'], c['relative_attention_num_buckets']).astype(np.float32)}

  encoder = {f'layers_{i}': {'pre_attention_layer_norm': {'scale': norm()},
                             'attention': attention(),
                             'pre_mlp_layer_norm': {'scale': norm()},
                             'mlp': mlp()}
             for i in range(c['num_encoder_layers'])}
  encoder.update(relpos_bias=relpos(), encoder_norm={'scale': norm()})
  decoder = {f'layers_{i}': {
      'pre_self_attention_layer_norm': {'scale': norm()},
      'self_attention': attention(),
      'pre_cross_attention_layer_norm': {'scale': norm()},
      'encoder_decoder_attention': attention(),
      'pre_mlp_layer_norm': {'scale': norm()}, 'mlp': mlp()}
             for i in range(c['num_decoder_layers'])}
  decoder.update(relpos_bias=relpos(), decoder_norm={'scale': norm()},
                 logits_dense={'kernel': dense(c['emb_dim'], c['vocab_size'])})
  embedding = rng.randn(c['vocab_size'], c['emb_dim']).astype(np.float32)
  return {'token_embedder': {'embedding': embedding}, 'encoder': encoder,
          'decoder': decoder}


def _reference_config():
  return dict(vocab_size=32128, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
              num_encoder_layers=2, num_decoder_layers=2,
              relative_attention_num_buckets=4,
              relative_attention_max_distance=8)


def main():
  import transformers  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import t5x  # pylint: disable=g-import-not-at-top
  from prompt_tuning.interop import hf  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--reference_dir', default=str(
      pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'reference'))
  args = parser.parse_args()
  DATA_DIR.mkdir(exist_ok=True)
  hf.save_hf_safetensors(tiny_params(), TINY_WEIGHTS)
  model = hf_model(TINY_CONFIG, TINY_WEIGHTS)
  np.savez(TINY_GOLDEN, logits=hf_logits(model, ENCODER_TOKENS, DECODER_INPUTS),
           transformers_version=transformers.__version__)
  reference = os.path.join(args.reference_dir, 't5x_t5_1_1_tiny', 'checkpoint_3')
  with tempfile.TemporaryDirectory() as tmp:
    weights = os.path.join(tmp, 'model.safetensors')
    hf.save_hf_safetensors(t5x.load_t5x(reference), weights)
    model = hf_model(_reference_config(), weights)
    logits = hf_logits(model, ENCODER_TOKENS, DECODER_INPUTS)
  np.savez(REFERENCE_GOLDEN, logits=logits[..., REFERENCE_COLUMNS],
           columns=REFERENCE_COLUMNS,
           transformers_version=transformers.__version__)
  print(f'wrote {TINY_WEIGHTS}, {TINY_GOLDEN}, {REFERENCE_GOLDEN}')


if __name__ == '__main__':
  main()
