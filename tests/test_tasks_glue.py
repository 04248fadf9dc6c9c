"""GLUE tasks: registration, T5's text casts, STS-B rounding, QQP <-> MRPC."""
import pytest

pytest.importorskip('prompt_tuning.tasks.metrics')

import seqio  # pylint: disable=g-import-not-at-top
import tensorflow_datasets as tfds

from prompt_tuning.tasks import glue
from prompt_tuning.tasks import metrics
import tasks_testing as tt

CONFIGS = tuple(glue.GLUE_TASKS)

# A record per config in its tfds format and T5's inputs and target for it.
CASES = {
    'cola': ({'sentence': 'Him left.', 'label': 'unacceptable', 'idx': 0},
             'cola sentence: Him left.', 'unacceptable'),
    'sst2': ({'sentence': 'a great movie', 'label': 'positive', 'idx': 1},
             'sst2 sentence: a great movie', 'positive'),
    'mrpc': ({'sentence1': 'He ran.', 'sentence2': 'He jogged.',
              'label': 'equivalent', 'idx': 2},
             'mrpc sentence1: He ran. sentence2: He jogged.', 'equivalent'),
    'qqp': ({'question1': 'Why?', 'question2': 'How?',
             'label': 'not_duplicate', 'idx': 3},
            'qqp question1: Why? question2: How?', 'not_duplicate'),
    'stsb': ({'sentence1': 'A cat.', 'sentence2': 'A dog.', 'label': 3.8,
              'idx': 4}, 'stsb sentence1: A cat. sentence2: A dog.', '3.8'),
    'mnli': ({'premise': 'It is day.', 'hypothesis': 'It is night.',
              'label': 'contradiction', 'idx': 5},
             'mnli hypothesis: It is night. premise: It is day.',
             'contradiction'),
    'qnli': ({'question': 'Who won?', 'sentence': 'Ann won.',
              'label': 'entailment', 'idx': 6},
             'qnli question: Who won? sentence: Ann won.', 'entailment'),
    'rte': ({'sentence1': 'Ann won.', 'sentence2': 'Ann lost.',
             'label': 'not_entailment', 'idx': 7},
            'rte sentence1: Ann won. sentence2: Ann lost.', 'not_entailment'),
}

METRICS = {
    'cola': [metrics.matthews_corrcoef], 'sst2': [metrics.accuracy],
    'mrpc': [metrics.f1_and_accuracy], 'qqp': [metrics.f1_and_accuracy],
    'stsb': [metrics.pearson_and_spearman], 'mnli': [metrics.accuracy],
    'qnli': [metrics.accuracy], 'rte': [metrics.accuracy],
}

PAIR = ('How do I cook rice?', 'What is the way to cook rice?')
SHARED_FORMAT = (f'sentence1: {PAIR[0]} sentence2: {PAIR[1]}', 'equivalent')
QQP_RECORD = {'question1': PAIR[0], 'question2': PAIR[1],
              'label': 'duplicate', 'idx': 0}
MRPC_RECORD = {'sentence1': PAIR[0], 'sentence2': PAIR[1],
               'label': 'equivalent', 'idx': 0}


def _pretokenized(example):
  return (tt.text(example['inputs_pretokenized']),
          tt.text(example['targets_pretokenized']))


def test_every_name_is_registered():
  tasks, mixtures = seqio.TaskRegistry.names(), seqio.MixtureRegistry.names()
  for tag, version in glue.VERSIONS.items():
    for config in CONFIGS:
      for prefix in ('', 'taskless_'):
        task = seqio.TaskRegistry.get(f'{prefix}glue_{config}_{tag}')
        assert task.source.tfds_dataset.name == f'glue/{config}:{version}'
    for name in ('qqp_as_mrpc', 'mrpc_from_qqp', 'qqp_from_mrpc'):
      assert f'taskless_glue_{name}_{tag}' in tasks
    for name in ('qqp_to_mrpc', 'mrpc_to_qqp'):
      assert f'taskless_glue_{name}_{tag}' in mixtures
  assert set(glue.VERSIONS) == {'v200', 'v002'}


@pytest.mark.parametrize('config', CONFIGS)
def test_labels_metrics_and_postprocessor(config):
  task = seqio.TaskRegistry.get(f'taskless_glue_{config}_v200')
  assert ([tt.fn_name(f) for f in task.metric_fns] ==
          [tt.fn_name(f) for f in METRICS[config]])
  labels = glue.GLUE_TASKS[config].label_names
  builder_config = tfds.builder_cls('glue').builder_configs[config]
  if config == 'stsb':
    assert labels is None
    assert task.postprocess_fn('3.4', example={}, is_target=False) == 3.4
    return
  assert labels == tuple(builder_config.label_classes)
  for class_id, label in enumerate(labels):
    assert task.postprocess_fn(label, example={}, is_target=False) == class_id


@pytest.mark.parametrize('config', CONFIGS)
def test_t5_text_format_with_and_without_task_token(config):
  record, inputs, target = CASES[config]
  (full,) = tt.run_task(f'glue_{config}_v200', [record])
  (taskless,) = tt.run_task(f'taskless_glue_{config}_v200', [record])
  assert _pretokenized(full) == (inputs, target)
  assert _pretokenized(taskless) == (inputs[len(config) + 1:], target)
  assert int(full['idx']) == record['idx']
  assert list(full['targets']) == (
      tt.BYTE_VOCAB.encode(target) + [tt.BYTE_VOCAB.eos_id])


def test_stsb_rounds_to_nearest_fifth_half_to_even():
  # NOTE: T5's tf.round(score * 5) / 5 rounds float32 halves to even:
  # 0.3 -> 1.5 -> 2 -> 0.4, 2.5 -> 12.5 -> 12 -> 2.4, 3.7 -> 18.5 -> 3.6.
  scores = [0.0, 0.1, 0.3, 1.8, 3.14, 2.5, 3.7, 4.9, 5.0]
  expected = ['0.0', '0.0', '0.4', '1.8', '3.2', '2.4', '3.6', '4.8', '5.0']
  records = [dict(CASES['stsb'][0], label=s, idx=i)
             for i, s in enumerate(scores)]
  examples = tt.run_task('taskless_glue_stsb_v200', records)
  assert [_pretokenized(e)[1] for e in examples] == expected


@pytest.mark.parametrize('split, tfds_split', [
    ('validation', 'validation_matched'),
    ('validation_mismatched', 'validation_mismatched'),
    ('test', 'test_matched'),
])
def test_mnli_splits(split, tfds_split):
  loaded = []
  tt.run_task('taskless_glue_mnli_v200', [CASES['mnli'][0]], split,
              loaded_splits=loaded)
  assert loaded == [tfds_split]


def test_qqp_and_mrpc_share_one_format():
  outputs = {
      'taskless_glue_qqp_as_mrpc_v200': QQP_RECORD,
      'taskless_glue_qqp_from_mrpc_v200': QQP_RECORD,
      'taskless_glue_mrpc_v200': MRPC_RECORD,
      'taskless_glue_mrpc_from_qqp_v200': MRPC_RECORD,
  }
  for name, record in outputs.items():
    (example,) = tt.run_task(name, [record])
    assert _pretokenized(example) == SHARED_FORMAT, name
    assert list(example['inputs']) == (
        tt.BYTE_VOCAB.encode(SHARED_FORMAT[0]) + [tt.BYTE_VOCAB.eos_id])


@pytest.mark.parametrize('tag', sorted(glue.VERSIONS))
def test_transfer_mixtures_train_on_source_and_evaluate_on_both(tag):
  for source, target in (('qqp', 'mrpc'), ('mrpc', 'qqp')):
    mixture = seqio.MixtureRegistry.get(
        f'taskless_glue_{source}_to_{target}_{tag}')
    tasks = {t.name: t for t in mixture.tasks}
    train_name = (f'taskless_glue_qqp_as_mrpc_{tag}' if source == 'qqp' else
                  f'taskless_glue_mrpc_{tag}')
    eval_name = f'taskless_glue_{target}_from_{source}_{tag}'
    assert set(tasks) == {train_name, eval_name}
    # The target task is evaluation only: training reads the source alone.
    assert tuple(tasks[eval_name].source.splits) == ('validation',)
    assert tasks[eval_name].source.tfds_dataset.name.startswith(
        f'glue/{target}:')
    assert tasks[train_name].source.tfds_dataset.name.startswith(
        f'glue/{source}:')
    for task in tasks.values():
      assert ([tt.fn_name(f) for f in task.metric_fns] ==
              [tt.fn_name(metrics.f1_and_accuracy)])
      assert task.postprocess_fn('equivalent', example={}) == 1
      assert task.postprocess_fn('not_equivalent', example={}) == 0
