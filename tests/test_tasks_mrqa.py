"""SQuAD v1.1 and MRQA tasks: sources, splits, T5's QA cast, mixtures."""
import pytest

pytest.importorskip('prompt_tuning.tasks.metrics')

import seqio  # pylint: disable=g-import-not-at-top
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import mrqa
from prompt_tuning.tasks import postprocessors
from prompt_tuning.tasks import preprocessors
import tasks_testing as tt

SQUAD_RECORD = {
    'id': 'q0', 'title': 'France',
    'context': 'Paris is the capital of France.\nIt is big.',
    'question': "What's the capital?",
    'answers': {'text': ['Paris', 'Paris.'], 'answer_start': [0, 0]},
}
SQUAD_INPUTS = ("question: What ' s the capital ? context: Paris is the "
                'capital of France . It is big . ')


def _mrqa_record(answers, detected):
  return {
      'subset': 'TextbookQA', 'qid': 'q1',
      'context': 'Water boils at 100 C (at sea level).',
      'context_tokens': {'tokens': ['Water'], 'offsets': [0]},
      'question': 'When does water boil?',
      'question_tokens': {'tokens': ['When'], 'offsets': [0]},
      'detected_answers': {
          'text': detected,
          'char_spans': [{'start': [15], 'end': [19]}] * len(detected),
          'token_spans': [{'start': [3], 'end': [4]}] * len(detected)},
      'answers': answers,
  }

MRQA_INPUTS = ('question: When does water boil ? context: Water boils at 100 '
               'C ( at sea level ) . ')


def test_pad_punctuation_is_t5s():
  text = preprocessors.pad_punctuation(tf.constant("Who's  there?\n(me)"))
  assert text.numpy().decode() == "Who ' s there ? ( me ) "


def test_every_name_is_registered_with_its_tfds_source():
  task = seqio.TaskRegistry.get('squad_v110')
  assert task.source.tfds_dataset.name == 'squad/v1.1:3.0.0'
  config_names = set(tfds.builder_cls('mrqa').builder_configs)
  assert set(mrqa.IN_DOMAIN + mrqa.OUT_OF_DOMAIN) == config_names
  for name in mrqa.IN_DOMAIN + mrqa.OUT_OF_DOMAIN:
    task = seqio.TaskRegistry.get(f'mrqa_{name}_v100')
    assert task.source.tfds_dataset.name == f'mrqa/{name}:1.0.0'
    assert ([tt.fn_name(f) for f in task.metric_fns] ==
            [tt.fn_name(metrics.squad)])
    assert task.postprocessor is postprocessors.squad
    if name in mrqa.OUT_OF_DOMAIN:
      assert tuple(task.source.splits) == ('validation',)


def test_squad_cast():
  (example,) = tt.run_task('squad_v110', [SQUAD_RECORD], 'validation')
  assert tt.text(example['inputs_pretokenized']) == SQUAD_INPUTS
  assert tt.text(example['targets_pretokenized']) == 'Paris'
  assert tt.text(example['answers']) == ['Paris', 'Paris . ']
  assert tt.text(example['id']) == 'q0'


def test_mrqa_cast_and_out_of_domain_split_is_tfds_test():
  loaded = []
  record = _mrqa_record(['100 C', 'at 100 C'], ['100 C'])
  (example,) = tt.run_task('mrqa_textbook_qa_v100', [record], 'validation',
                           loaded_splits=loaded)
  assert loaded == ['test']
  assert tt.text(example['inputs_pretokenized']) == MRQA_INPUTS
  assert tt.text(example['targets_pretokenized']) == '100 C'
  assert tt.text(example['answers']) == ['100 C', 'at 100 C']
  assert tt.text(example['id']) == 'q1'


@pytest.mark.parametrize('task', ['mrqa_squad_v100', 'mrqa_news_qa_v100'])
def test_mrqa_target_is_the_first_gold_answer_as_in_the_papers_code(task):
  """google-research/prompt-tuning's `mrqa` preprocessor trains on
  `answers[0]`, punctuation padded, whatever span was detected first."""
  record = _mrqa_record(['100 C.', 'at 100 C'], ['at 100 C', '100 C'])
  (example,) = tt.run_task(task, [record], 'train')
  assert tt.text(example['targets_pretokenized']) == '100 C . '
  assert tt.text(example['answers']) == ['100 C . ', 'at 100 C']
  # No detected span at all: the target is still the first gold answer.
  (example,) = tt.run_task(task, [_mrqa_record(['x.'], [])], 'train')
  assert tt.text(example['targets_pretokenized']) == 'x . '


def test_zero_shot_mixtures():
  everything = seqio.MixtureRegistry.get('squad_v110_to_mrqa_v100')
  assert {t.name for t in everything.tasks} == {
      'squad_v110', *(f'mrqa_{n}_v100' for n in mrqa.OUT_OF_DOMAIN)}
  assert mrqa.OUT_OF_DOMAIN == ('textbook_qa', 'bio_asq', 'race',
                                'relation_extraction', 'duo_rc', 'drop')
  for name in mrqa.OUT_OF_DOMAIN:
    mixture = seqio.MixtureRegistry.get(f'squad_v110_to_mrqa_{name}_v100')
    assert {t.name for t in mixture.tasks} == {'squad_v110',
                                               f'mrqa_{name}_v100'}
