r"""Trains the synthetic corpus's SentencePiece model, `data/corpus_spm.model`.

The model is a BPE model trained on pretraining documents only
(`corpus.pretraining_texts(VOCAB_DOCUMENTS)`, with their revealing
statements), never on downstream splits, with T5's special ids (pad 0, eos 1,
unk 2, no bos) and byte fallback, so any text encodes without `<unk>`.
`corpus.vocabulary()` adds T5's 100 sentinel extra ids on top. Training is
deterministic (one thread, all sentences in the given order, no shuffling), so
rerunning this script reproduces the shipped file byte for byte with the same
sentencepiece version.

Usage:

    python -m prompt_tuning.tasks.make_corpus_vocab            # rewrite it
    python -m prompt_tuning.tasks.make_corpus_vocab --output=/tmp/spm.model
"""
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import vocab

# 256 byte pieces + pad, eos, unk + 765 learned pieces; seqio adds 100 extra
# ids on top (1124 in all).
VOCAB_SIZE = 1024
VOCAB_DOCUMENTS = 5000


def train_vocabulary(texts: Sequence[str],
                     vocab_size: int = VOCAB_SIZE) -> bytes:
  """Trains a BPE SentencePiece model on `texts`; returns its bytes.

  NOTE: BPE with 1024 pieces, chosen by measuring pieces per whitespace word
  on 300 held-out downstream inputs (5000 training documents): BPE 512 /
  768 / 896 / 1024 / 1280 pieces give 2.24 / 1.47 / 1.29 / 1.16 / 1.16
  pieces per word, i.e. at 1024 every word is one piece and the remaining
  0.16 are the separate '.' and ',' pieces. The unigram trainer cannot go
  past 577 pieces on this small word set and gives 2.13 pieces per word
  there, with label targets of up to 5 pieces (BPE 1024: at most 2, the word
  and the period).

  See `vocab.train_bpe_model` for the deterministic settings.

  Args:
    texts: training documents, used all and in the given order.
    vocab_size: number of pieces, including pad, eos and unk.

  Returns:
    The serialised model (what `SentencePieceProcessor(model_proto=...)` and
    `seqio.SentencePieceVocabulary` read).
  """
  return vocab.train_bpe_model(texts, vocab_size)


def vocabulary_texts() -> list:
  """The exact training texts of the shipped model."""
  return corpus.pretraining_texts(VOCAB_DOCUMENTS, corpus.DEFAULT_SEED)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  output = flags.FLAGS.output
  texts = vocabulary_texts()
  model = vocab.write_vocabulary(output, texts, train_vocabulary)
  logging.info('wrote %s (%d bytes, %d pieces) from %d documents', output,
               len(model), VOCAB_SIZE, len(texts))


if __name__ == '__main__':
  # Flags are defined here, not at import, so that importing this module next
  # to other entry points cannot define a flag twice.
  flags.DEFINE_string('output', str(corpus.VOCABULARY_PATH),
                      'Where to write the SentencePiece model.')
  app.run(main)
