r"""Runs a T5 checkpoint forward on one input/target pair and reports it.

    python -m prompt_tuning.forward \
      --checkpoint=../shared/reference/t5x_t5_1_1_tiny/checkpoint_3 \
      --vocabulary=../shared/reference/t5_vocab/sentencepiece.model \
      --inputs="sst2 sentence: a gorgeous film" --targets=positive

The model's sizes are read off the checkpoint's parameter tree; prints the
parameter count, the target's per-token log-likelihoods and the model's top
next-token choices at each target position.
"""
from absl import flags

from prompt_tuning.cli import gin_utils

_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  't5x checkpoint directory.', required=True)
_VOCABULARY = flags.DEFINE_string('vocabulary', None,
                                  'SentencePiece model file.', required=True)
_INPUTS = flags.DEFINE_string('inputs', 'sst2 sentence: a gorgeous film',
                              'Encoder input text.')
_TARGETS = flags.DEFINE_string('targets', 'positive', 'Target text to score.')
_MAX_DISTANCE = flags.DEFINE_integer(
    'relative_attention_max_distance', None,
    'Not stored in checkpoints: 128 for T5 1.1, or as the model was built.')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'Next-token choices to show.')


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import t5x  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import t5  # pylint: disable=g-import-not-at-top
  params = t5x.load_t5x(_CHECKPOINT.value)
  config = t5.config_from_params(
      params, dropout_rate=0.0,
      relative_attention_max_distance=_MAX_DISTANCE.value)
  vocabulary = seqio.SentencePieceVocabulary(_VOCABULARY.value, extra_ids=100)
  inputs = list(vocabulary.encode(_INPUTS.value)) + [vocabulary.eos_id]
  targets = list(vocabulary.encode(_TARGETS.value)) + [vocabulary.eos_id]
  decoder_inputs = [0] + targets[:-1]
  logits = t5.Transformer(config).apply(
      {'params': params}, np.array([inputs]), np.array([decoder_inputs]),
      np.array([targets]))
  log_probs = np.asarray(jax.nn.log_softmax(logits[0]))
  count = sum(x.size for x in jax.tree_util.tree_leaves(params))
  print(f'checkpoint: {_CHECKPOINT.value}')
  print(f'config: {config}')
  print(f'parameters: {count:,}')
  print(f'inputs:  {_INPUTS.value!r} -> {inputs}')
  print(f'targets: {_TARGETS.value!r} -> {targets}')
  for position, token in enumerate(targets):
    top = np.argsort(-log_probs[position])[:_TOP_K.value]
    choices = ', '.join(f'{vocabulary.decode([int(t)])!r}:{log_probs[position, t]:.2f}'
                        for t in top)
    print(f'  [{position}] {vocabulary.decode([token])!r} '
          f'log p = {log_probs[position, token]:.3f}   top: {choices}')
  print(f'target log-likelihood: {log_probs[np.arange(len(targets)), targets].sum():.3f}')


if __name__ == '__main__':
  gin_utils.run(main)
