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
import os

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
