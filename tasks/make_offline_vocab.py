r"""Trains the offline suite's SentencePiece model, `data/offline_spm.model`.

The model is a small BPE model trained on every text of the offline suite
(`offline.vocabulary_corpus()`: all splits, with and without task prefixes,
the targets, and the label words), with T5's special ids (pad 0, eos 1, unk 2,
no bos) and byte fallback, so any text encodes without `<unk>`.
Training is deterministic (one thread, no sampling or shuffling of the
input), so rerunning this script reproduces the shipped file byte for byte
with the same sentencepiece version.

Usage:

    python -m prompt_tuning.tasks.make_offline_vocab            # rewrite it
    python -m prompt_tuning.tasks.make_offline_vocab --output=/tmp/spm.model
"""
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from prompt_tuning.tasks import offline
from prompt_tuning.tasks import vocab

# 256 byte pieces + pad, eos, unk + 509 learned pieces; seqio adds 100 extra
# ids on top (868 in all).
VOCAB_SIZE = 768


def train_vocabulary(texts: Sequence[str],
                     vocab_size: int = VOCAB_SIZE) -> bytes:
  """Trains a BPE SentencePiece model on `texts`; returns its bytes.

  NOTE: BPE, not T5's unigram model. On this small corpus built from word
  lists, the unigram trainer keeps frequent template and label words split
  (`positive` -> `po si ti ve`, `sentiment` -> `s ent iment`: targets of up to
  5 pieces and inputs of up to 27), while BPE with 768 pieces makes every
  word of the suite one piece (targets 1 piece, inputs at most 14).

  See `vocab.train_bpe_model` for the deterministic settings.

  Args:
    texts: training sentences, used all and in the given order.
    vocab_size: number of pieces, including pad, eos and unk.

  Returns:
    The serialised model (what `SentencePieceProcessor(model_proto=...)` and
    `seqio.SentencePieceVocabulary` read).
  """
  return vocab.train_bpe_model(texts, vocab_size)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  output = flags.FLAGS.output
  corpus = offline.vocabulary_corpus()
  model = vocab.write_vocabulary(output, corpus, train_vocabulary)
  logging.info('wrote %s (%d bytes, %d pieces) from %d lines', output,
               len(model), VOCAB_SIZE, len(corpus))


if __name__ == '__main__':
  # Flags are defined here, not at import, so that importing this module next
  # to other entry points cannot define a flag twice.
  flags.DEFINE_string('output', str(offline.VOCABULARY_PATH),
                      'Where to write the SentencePiece model.')
  app.run(main)
