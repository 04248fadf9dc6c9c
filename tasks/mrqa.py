"""Extractive QA tasks: SQuAD v1.1 and the MRQA 2019 datasets, T5's cast.

Every task reads "question: Q context: C" (punctuation spaced out, as in T5;
there is no task token, so no taskless variant) and is trained on the first
gold answer (for MRQA `answers[0]`, as the paper's code casts it, not the
first span detected in the context); evaluation keeps all gold answers
('answers') for `metrics.squad` (F1 and exact match, the best over the gold
answers).

Registered on import:

  squad_v110                 tfds `squad/v1.1:3.0.0`: the paper's in-domain
                             training and checkpoint-selection data
  mrqa_{name}_v100           tfds `mrqa/{name}:1.0.0`, for the in-domain
                             MRQA sets (train and validation splits):
                             squad, news_qa, trivia_qa, search_qa, hotpot_qa,
                             natural_questions; and for the out-of-domain
                             ones, evaluation only: bio_asq, drop, duo_rc,
                             race, relation_extraction, textbook_qa (tfds
                             names MRQA's dev sets `test`; here they are the
                             seqio split 'validation')
  squad_v110_to_mrqa_{name}_v100  mixture, one per out-of-domain set: train
                             on SQuAD v1.1; evaluate on its validation and on
                             the MRQA set
  squad_v110_to_mrqa_v100    mixture with the six out-of-domain sets of the
                             paper's Table 1 (TextbookQA, BioASQ, RACE, RE,
                             DuoRC, DROP)
"""
import seqio

from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors
from prompt_tuning.tasks import preprocessors
from prompt_tuning.tasks import utils
from prompt_tuning.tasks import vocab

SQUAD_TFDS_NAME = 'squad/v1.1:3.0.0'
SQUAD_TASK = 'squad_v110'
MRQA_TFDS_VERSION = '1.0.0'
MRQA_VERSION_TAG = 'v100'
IN_DOMAIN = ('squad', 'news_qa', 'trivia_qa', 'search_qa', 'hotpot_qa',
             'natural_questions')
# The paper's Table 1 order.
OUT_OF_DOMAIN = ('textbook_qa', 'bio_asq', 'race', 'relation_extraction',
                 'duo_rc', 'drop')
_OUT_OF_DOMAIN_SPLITS = {'validation': 'test'}  # seqio split -> tfds split.

_SQUAD_FIELDS = ('id', 'question', 'context', 'answers/text')
_MRQA_FIELDS = ('qid', 'question', 'context', 'answers')


def mrqa_task_name(name: str) -> str:
  return f'mrqa_{name}_{MRQA_VERSION_TAG}'


def _register() -> None:
  common = dict(output_features=vocab.T5_OUTPUT_FEATURES,
                postprocess_fn=postprocessors.squad,
                metric_fns=(metrics.squad,))
  utils.add_tfds_task(
      SQUAD_TASK, tfds_name=SQUAD_TFDS_NAME, fields=_SQUAD_FIELDS,
      text_preprocessors=[preprocessors.format_squad], **common)
  for name in IN_DOMAIN + OUT_OF_DOMAIN:
    utils.add_tfds_task(
        mrqa_task_name(name),
        tfds_name=f'mrqa/{name}:{MRQA_TFDS_VERSION}',
        fields=_MRQA_FIELDS,
        splits=_OUT_OF_DOMAIN_SPLITS if name in OUT_OF_DOMAIN else None,
        text_preprocessors=[preprocessors.format_mrqa], **common)
  for name in OUT_OF_DOMAIN:
    seqio.MixtureRegistry.add(
        f'{SQUAD_TASK}_to_mrqa_{name}_{MRQA_VERSION_TAG}',
        [SQUAD_TASK, mrqa_task_name(name)], default_rate=1.0)
  seqio.MixtureRegistry.add(
      f'{SQUAD_TASK}_to_mrqa_{MRQA_VERSION_TAG}',
      [SQUAD_TASK] + [mrqa_task_name(n) for n in OUT_OF_DOMAIN],
      default_rate=1.0)


_register()
