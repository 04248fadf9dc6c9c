"""The T5 SentencePiece vocabulary and the output features of every task.

The vocabulary is T5's public one (32,000 pieces plus 100 sentinel ids
`<extra_id_0>` ... `<extra_id_99>`, 32,100 ids in all, padded to 32,128 in the
checkpoints), the one every T5 1.1 checkpoint and the paper's code use.

Its path is `T5_VOCAB_PATH`: the environment variable `PROMPT_TUNING_T5_VOCAB`
when set at import time, otherwise `DEFAULT_T5_VOCAB_PATH` on Google Cloud
Storage. Point the variable at a local copy to run without GCS access:

    export PROMPT_TUNING_T5_VOCAB=/data/t5/sentencepiece.model

`seqio.SentencePieceVocabulary` reads the file on first use (tokenizing or
asking for `vocab_size`), never at construction, so importing this module (and
registering the tasks) neither opens the file nor touches the network.
"""
import io
import os
import tempfile
from typing import Callable, Sequence

import seqio

DEFAULT_T5_VOCAB_PATH = 'gs://t5-data/vocabs/cc_all.32000/sentencepiece.model'
T5_VOCAB_ENV = 'PROMPT_TUNING_T5_VOCAB'
T5_VOCAB_PATH = os.environ.get(T5_VOCAB_ENV) or DEFAULT_T5_VOCAB_PATH
# Sentinel ids appended after the 32,000 SentencePiece pieces.
T5_EXTRA_IDS = 100


def t5_vocabulary(path: str = T5_VOCAB_PATH) -> seqio.SentencePieceVocabulary:
  """T5's SentencePiece vocabulary with its 100 sentinel ids (loaded lazily)."""
  return seqio.SentencePieceVocabulary(path, extra_ids=T5_EXTRA_IDS)


def output_features(
    vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  """T5's task output features: `inputs` and `targets`, each ending in EOS.

  `inputs` is not required, as in T5, so that decoder-only style tasks may
  leave it out.

  Args:
    vocabulary: the vocabulary of both features.

  Returns:
    {'inputs': Feature, 'targets': Feature}.
  """
  return {
      'inputs': seqio.Feature(
          vocabulary=vocabulary, add_eos=True, required=False),
      'targets': seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }


T5_VOCABULARY = t5_vocabulary()
T5_OUTPUT_FEATURES = output_features(T5_VOCABULARY)


def train_bpe_model(texts: Sequence[str], vocab_size: int) -> bytes:
  """Trains a BPE SentencePiece model deterministically; returns its bytes.

  Used for the vocabularies this project makes itself (the offline suite's
  and the synthetic corpus'): T5's special ids (pad 0, eos 1, unk 2, no bos),
  one thread, every text in the given order, no shuffling, so the same texts
  give the same bytes.

  NOTE: normalisation is 'identity' (no NFKC, no case folding) and byte
  fallback is on, so decoding the ids of any text gives the text back
  exactly, as long as it has no leading, trailing or repeated spaces.

  Args:
    texts: training texts, used all and in the given order.
    vocab_size: number of pieces, including pad, eos and unk.

  Returns:
    The serialised model (what `SentencePieceProcessor(model_proto=...)` and
    `seqio.SentencePieceVocabulary` read).
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
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


def write_vocabulary(output: str, texts: Sequence[str],
                     train: Callable[[Sequence[str]], bytes]) -> bytes:
  """Trains a vocabulary on `texts` and writes the model file to `output`.

  The file is written to a temporary name beside `output` and renamed into
  place, so an interrupted run never leaves a truncated model behind.

  Returns:
    The serialized SentencePiece model that was written.
  """
  model = train(texts)
  directory = os.path.dirname(os.path.abspath(output))
  with tempfile.NamedTemporaryFile(dir=directory, delete=False) as f:
    f.write(model)
  os.replace(f.name, output)
  return model
