"""SuperGLUE tasks: registration, T5's text casts, wiring, field checks."""
import pytest

pytest.importorskip('prompt_tuning.tasks.metrics')

import seqio  # pylint: disable=g-import-not-at-top
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import superglue
import tasks_testing as tt

CONFIGS = ('boolq', 'cb', 'copa', 'multirc', 'rte', 'wic', 'axb', 'axg')

# One record per config in its tfds format, the split to read it from, and
# T5's inputs (with the task token) and target for it.
CASES = {
    'boolq': ({'question': 'is the sky blue', 'passage': 'The sky is blue.',
               'label': 'True', 'idx': 0}, 'validation',
              'boolq passage: The sky is blue. question: is the sky blue',
              'True'),
    'cb': ({'premise': 'It rained.', 'hypothesis': 'It was dry.',
            'label': 'neutral', 'idx': 1}, 'validation',
           'cb hypothesis: It was dry. premise: It rained.', 'neutral'),
    'copa': ({'premise': 'The glass fell.', 'choice1': 'It broke.',
              'choice2': 'It flew.', 'question': 'effect', 'label': 'choice1',
              'idx': 2}, 'validation',
             'copa choice1: It broke. choice2: It flew. premise: The glass '
             'fell. question: effect', 'choice1'),
    'multirc': ({'paragraph': '<b>Sent 1: </b>Hi.<br><b>Sent 2: </b>Bye.',
                 'question': 'What?', 'answer': 'Hi', 'label': 'False',
                 'idx': {'paragraph': 3, 'question': 4, 'answer': 5}},
                'validation',
                'multirc question: What? answer: Hi paragraph: Sent 1: Hi. '
                'Sent 2: Bye.', 'False'),
    'rte': ({'premise': 'A man sleeps.', 'hypothesis': 'A man is awake.',
             'label': 'not_entailment', 'idx': 6}, 'validation',
            'rte hypothesis: A man is awake. premise: A man sleeps.',
            'not_entailment'),
    'wic': ({'word': 'bank', 'sentence1': 'A river bank.',
             'sentence2': 'A bank loan.', 'start1': 8, 'start2': 2,
             'end1': 12, 'end2': 6, 'label': 'False', 'idx': 7}, 'validation',
            'wic sentence1: A river bank. sentence2: A bank loan. word: bank',
            'False'),
    'axb': ({'sentence1': 'Cats purr.', 'sentence2': 'Cats make sounds.',
             'label': 'entailment', 'idx': 8}, 'test',
            'rte hypothesis: Cats make sounds. premise: Cats purr.',
            'entailment'),
    'axg': ({'premise': 'The nurse left.', 'hypothesis': 'She left.',
             'label': 'not_entailment', 'idx': 9}, 'test',
            'rte hypothesis: She left. premise: The nurse left.',
            'not_entailment'),
}

METRICS = {
    'boolq': [metrics.accuracy],
    'cb': [metrics.accuracy, metrics.mean_multiclass_f1(num_classes=3)],
    'copa': [metrics.accuracy], 'multirc': [metrics.multirc_metrics],
    'rte': [metrics.accuracy], 'wic': [metrics.accuracy],
    'axb': [metrics.matthews_corrcoef], 'axg': [metrics.accuracy],
}

_WSC_TEXT = 'Mitchell asked Tom if he could lend some money.'
# One of the two texts T5 fixes by hand (span2_index is off).
_WSC_ODD_TEXT = ('The boy continued to whip the pony , and eventually the pony '
                 'threw him over. John laughed out quite loud. "Good for '
                 'him," he said. ')
WSC_RECORDS = [
    {'text': _WSC_TEXT, 'span1_index': 2, 'span1_text': 'Tom',
     'span2_index': 4, 'span2_text': 'he', 'label': 'True', 'idx': 0},
    {'text': _WSC_TEXT, 'span1_index': 0, 'span1_text': 'Mitchell',
     'span2_index': 4, 'span2_text': 'he', 'label': 'False', 'idx': 1},
    {'text': _WSC_ODD_TEXT, 'span1_index': 0, 'span1_text': 'The boy',
     'span2_index': 13, 'span2_text': 'him', 'label': 'True', 'idx': 2},
]
WSC_INPUTS = [
    'Mitchell asked Tom if *he* could lend some money.',
    'Mitchell asked Tom if *he* could lend some money.',
    'The boy continued to whip the pony , and eventually the pony threw him '
    'over. John laughed out quite loud. "Good for *him* ," he said.',
]

RECORD_RECORDS = [
    {'passage': 'Alice beat Bob at chess.\n@highlight\nAlice wins\n'
                '@highlight\nBob loses',
     'query': 'The @placeholder won.', 'entities': ['Alice', 'Bob', 'Ali'],
     'answers': ['Alice', 'Ali'], 'idx': {'passage': 0, 'query': 7}},
]
RECORD_INPUTS = ('record query: The @placeholder won. entities: Alice, Bob, '
                 'Ali passage: Alice beat Bob at chess. Alice wins. Bob loses')


def _name(prefix, config):
  return f'{prefix}super_glue_{config}_v102'


def _pretokenized(examples):
  return [(tt.text(e['inputs_pretokenized']),
           tt.text(e['targets_pretokenized'])) for e in examples]


def test_every_name_is_registered():
  tasks, mixtures = seqio.TaskRegistry.names(), seqio.MixtureRegistry.names()
  for prefix in ('', 'taskless_'):
    for config in CONFIGS:
      assert _name(prefix, config) in tasks
    for suffix in ('_train', '_eval'):
      assert _name(prefix, 'record') + suffix in tasks
    for suffix in ('_simple_train', '_simple_eval'):
      assert _name(prefix, 'wsc') + suffix in tasks
    for mixture in ('record', 'wsc', 'v102'):
      name = (f'{prefix}super_glue_v102' if mixture == 'v102' else
              _name(prefix, mixture))
      assert name in mixtures


@pytest.mark.parametrize('config', CONFIGS)
def test_label_names_are_the_tfds_class_names(config):
  builder_config = tfds.builder_cls('super_glue').builder_configs[config]
  assert (superglue.CLASSIFICATION_TASKS[config].label_names ==
          tuple(builder_config.label_classes))


@pytest.mark.parametrize('config', CONFIGS)
def test_source_metrics_and_postprocessor(config):
  task = seqio.TaskRegistry.get(_name('taskless_', config))
  assert task.source.tfds_dataset.name == f'super_glue/{config}:1.0.2'
  if config in ('axb', 'axg'):
    assert tuple(task.source.splits) == ('test',)
  assert ([tt.fn_name(f) for f in task.metric_fns] ==
          [tt.fn_name(f) for f in METRICS[config]])
  labels = superglue.CLASSIFICATION_TASKS[config].label_names
  example = {'idx': {'paragraph': 1, 'question': 2, 'answer': 3}}
  for class_id, label in enumerate(labels):
    value = task.postprocess_fn(label, example=example, is_target=False)
    if config == 'multirc':
      value = value['value']
    assert value == class_id


@pytest.mark.parametrize('config', CONFIGS)
def test_t5_text_format_with_and_without_task_token(config):
  record, split, inputs, target = CASES[config]
  (full,) = tt.run_task(_name('', config), [record], split)
  (taskless,) = tt.run_task(_name('taskless_', config), [record], split)
  assert _pretokenized([full]) == [(inputs, target)]
  token = inputs.split(' ')[0]
  assert _pretokenized([taskless]) == [(inputs[len(token) + 1:], target)]
  # Tokens are the text's, then EOS.
  assert list(full['inputs']) == (
      tt.BYTE_VOCAB.encode(inputs) + [tt.BYTE_VOCAB.eos_id])
  if config == 'multirc':
    assert {k: int(v) for k, v in full['idx'].items()} == record['idx']


def test_unlabeled_record_gets_unk_target():
  record = dict(CASES['rte'][0], label=-1)
  (example,) = tt.run_task(_name('', 'rte'), [record], 'test')
  assert tt.text(example['targets_pretokenized']) == '<unk>'


@pytest.mark.parametrize('prefix', ['', 'taskless_'])
def test_wsc_simple(prefix):
  token = 'wsc: ' if not prefix else ''
  train = tt.run_task(_name(prefix, 'wsc') + '_simple_train', WSC_RECORDS,
                      'train')
  evals = tt.run_task(_name(prefix, 'wsc') + '_simple_eval', WSC_RECORDS,
                      'validation')
  # Training keeps only the correct referents; evaluation keeps all.
  assert _pretokenized(train) == [(token + WSC_INPUTS[0], 'Tom'),
                                  (token + WSC_INPUTS[2], 'The boy')]
  assert _pretokenized(evals) == [
      (token + i, r['span1_text']) for i, r in zip(WSC_INPUTS, WSC_RECORDS)]
  assert [int(e['label']) for e in evals] == [1, 0, 1]


def test_wsc_record_with_misplaced_pronoun_fails_clearly():
  record = dict(WSC_RECORDS[0], span2_index=3)  # 'if', not 'he'.
  with pytest.raises(tf.errors.InvalidArgumentError, match='WSC record'):
    tt.run_task('super_glue_wsc_v102_simple_eval', [record], 'validation')


def test_wsc_postprocess_is_t5_referent_match():
  post = superglue.wsc_simple_postprocess
  example = {'label': 1, 'targets_pretokenized': b'the fuzzy bunny'}
  assert post(b'Fuzzy Bunny', example=example) == 1
  assert post('bunny', example=example) == 1  # Subset of the referent.
  assert post('the dog', example=example) == 0
  assert post('', example=example) == -1
  assert post("bunny's hat", example=example) == 0  # Possessive mismatch.
  assert post('Tom', example=example, is_target=True) == 1
  task = seqio.TaskRegistry.get('taskless_super_glue_wsc_v102_simple_eval')
  assert task.postprocessor is post
  assert [tt.fn_name(f) for f in task.metric_fns] == ['accuracy']


@pytest.mark.parametrize('prefix', ['', 'taskless_'])
def test_record_train_one_example_per_answer_eval_one_per_query(prefix):
  inputs = RECORD_INPUTS if not prefix else RECORD_INPUTS[len('record '):]
  train = tt.run_task(_name(prefix, 'record') + '_train', RECORD_RECORDS,
                      'train')
  evals = tt.run_task(_name(prefix, 'record') + '_eval', RECORD_RECORDS,
                      'validation')
  assert _pretokenized(train) == [(inputs, 'Alice'), (inputs, 'Ali')]
  assert _pretokenized(evals) == [(inputs, 'Alice')]
  for example in train + evals:
    assert tt.text(example['answers']) == ['Alice', 'Ali']
    assert {k: int(v) for k, v in example['idx'].items()} == {
        'passage': 0, 'query': 7}
  eval_task = seqio.TaskRegistry.get(_name(prefix, 'record') + '_eval')
  assert [tt.fn_name(f) for f in eval_task.metric_fns] == ['record_metrics']
  assert tt.fn_name(eval_task.postprocessor) == 'record'
  assert not seqio.TaskRegistry.get(
      _name(prefix, 'record') + '_train').metric_fns


def test_record_query_without_answers_gets_unk():
  record = dict(RECORD_RECORDS[0], answers=[])
  (train,) = tt.run_task('super_glue_record_v102_train', [record], 'train')
  (test,) = tt.run_task('super_glue_record_v102_eval', [record], 'test')
  assert tt.text(train['targets_pretokenized']) == '<unk>'
  assert tt.text(test['targets_pretokenized']) == '<unk>'


@pytest.mark.parametrize('prefix', ['', 'taskless_'])
def test_superglue_mixture_is_the_eight_tasks_at_t5_rates(prefix):
  mixture = seqio.MixtureRegistry.get(f'{prefix}super_glue_v102')
  rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
  expected = {}
  for config, rate in superglue.MIXING_RATES.items():
    parts = {'record': ['_train', '_eval'],
             'wsc': ['_simple_train', '_simple_eval']}.get(config, [''])
    for part in parts:
      expected[_name(prefix, config) + part] = rate
  assert rates == expected
  assert not any('ax' in name for name in rates)
  for config, parts in (('record', ('_train', '_eval')),
                        ('wsc', ('_simple_train', '_simple_eval'))):
    sub = seqio.MixtureRegistry.get(_name(prefix, config))
    splits = {t.name: tuple(t.source.splits) for t in sub.tasks}
    assert splits == {_name(prefix, config) + parts[0]: ('train',),
                      _name(prefix, config) + parts[1]: ('validation', 'test')}


def test_record_missing_a_field_names_task_split_and_field():
  record = {'hypothesis': 'H', 'label': 0, 'idx': 1}  # No 'premise'.
  with pytest.raises(ValueError) as error:
    tt.run_task('taskless_super_glue_rte_v102', [record], 'validation',
                encode=False)
  message = str(error.value)
  for part in ('taskless_super_glue_rte_v102', "'validation'", 'premise'):
    assert part in message


def test_unknown_split_lists_the_task_splits():
  with pytest.raises(ValueError, match=r"no split 'validation'.*\['test'\]"):
    tt.run_task('super_glue_axb_v102', [CASES['axb'][0]], 'validation')
