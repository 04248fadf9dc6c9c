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
import io
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import sentencepiece as spm

from prompt_tuning.tasks import offline

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

  NOTE: normalisation is 'identity' (no NFKC, no case folding) and byte
  fallback is on, so decoding the ids of any text gives the text back exactly,
  as long as it has no leading, trailing or repeated spaces.

  Args:
    texts: training sentences, used all and in the given order.
    vocab_size: number of pieces, including pad, eos and unk.

  Returns:
    The serialised model (what `SentencePieceProcessor(model_proto=...)` and
    `seqio.SentencePieceVocabulary` read).
  """
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts),
      model_writer=model,
      model_type='bpe',
      vocab_size=vocab_size,
      character_coverage=1.0,
      normalization_rule_name='identity',
      byte_fallback=True,
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      input_sentence_size=0,  # all sentences
      shuffle_input_sentence=False,
      num_threads=1,
      minloglevel=2)
  return model.getvalue()


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  output = flags.FLAGS.output
  corpus = offline.vocabulary_corpus()
  model = train_vocabulary(corpus)
  with open(output, 'wb') as f:
    f.write(model)
  logging.info('wrote %s (%d bytes, %d pieces) from %d lines', output,
               len(model), VOCAB_SIZE, len(corpus))


if __name__ == '__main__':
  # Flags are defined here, not at import, so that importing this module next
  # to other entry points cannot define a flag twice.
  flags.DEFINE_string('output', str(offline.VOCABULARY_PATH),
                      'Where to write the SentencePiece model.')
  app.run(main)
