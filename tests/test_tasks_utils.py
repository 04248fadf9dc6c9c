"""Task lookup errors, field checks, the lazy T5 vocabulary, the recipe."""
import functools
import importlib.util

import pytest

pytest.importorskip('prompt_tuning.tasks.metrics')

import seqio  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from prompt_tuning.tasks import utils
from prompt_tuning.tasks import vocab


def test_get_mixture_or_task_finds_tasks_and_mixtures():
  assert utils.get_mixture_or_task('taskless_super_glue_rte_v102').name == (
      'taskless_super_glue_rte_v102')
  assert utils.get_mixture_or_task('super_glue_v102').name == 'super_glue_v102'


def test_unknown_name_lists_close_names():
  with pytest.raises(ValueError) as error:
    utils.get_mixture_or_task('taskless_superglue_rte_v102')
  message = str(error.value)
  assert "'taskless_superglue_rte_v102'" in message
  assert 'taskless_super_glue_rte_v102' in message
  assert 'import prompt_tuning.tasks' in message


def test_check_fields_names_task_split_and_missing_nested_field():
  dataset = tf.data.Dataset.from_tensors(
      {'question': 'q', 'idx': {'paragraph': 1}})
  assert utils.check_fields(dataset, task_name='t', split='train',
                            fields=('question', 'idx/paragraph')) is dataset
  with pytest.raises(ValueError) as error:
    utils.check_fields(dataset, task_name='my_task', split='validation',
                       fields=('question', 'idx/question', 'label'))
  message = str(error.value)
  for part in ("'my_task'", "'validation'", "['idx/question', 'label']",
               "['idx/paragraph', 'question']"):
    assert part in message


def test_importing_the_tasks_does_not_load_the_vocabulary():
  assert vocab.T5_VOCABULARY._model is None  # pylint: disable=protected-access
  assert vocab.T5_OUTPUT_FEATURES['targets'].vocabulary is vocab.T5_VOCABULARY


@pytest.mark.parametrize('value, expected', [
    (None, vocab.DEFAULT_T5_VOCAB_PATH),
    ('/data/t5/sentencepiece.model', '/data/t5/sentencepiece.model'),
])
def test_vocabulary_path_from_environment(monkeypatch, value, expected):
  if value is None:
    monkeypatch.delenv(vocab.T5_VOCAB_ENV, raising=False)
  else:
    monkeypatch.setenv(vocab.T5_VOCAB_ENV, value)
  # A fresh copy of the module, so the imported one stays as it is.
  spec = importlib.util.spec_from_file_location('vocab_copy', vocab.__file__)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.T5_VOCAB_PATH == expected
  # pylint: disable=protected-access
  assert module.T5_VOCABULARY._sentencepiece_model_file == expected
  assert module.T5_VOCABULARY._model is None
  # pylint: enable=protected-access
  assert module.DEFAULT_T5_VOCAB_PATH == (
      'gs://t5-data/vocabs/cc_all.32000/sentencepiece.model')


def _registered_tfds_tasks():
  return {name: seqio.TaskRegistry.get(name)
          for name in seqio.TaskRegistry.names()
          if isinstance(seqio.TaskRegistry.get(name).source,
                        utils.FieldCheckedTfdsSource)}


def test_every_task_follows_t5s_recipe():
  tasks = _registered_tfds_tasks()
  assert len(tasks) > 80
  for name, task in tasks.items():
    steps = list(task.preprocessors)
    tokenize = steps.index(seqio.preprocessors.tokenize)
    assert isinstance(steps[tokenize + 1], seqio.CacheDatasetPlaceholder), name
    assert steps[-1] is seqio.preprocessors.append_eos_after_trim, name
    assert set(task.output_features) == {'inputs', 'targets'}
    for feature in task.output_features.values():
      assert feature.add_eos
    # Taskless variants format without the task token; the others with it.
    tokens = [step.keywords[key] for step in steps[:tokenize]
              if isinstance(step, functools.partial)
              for key in ('benchmark_name', 'prefix') if key in step.keywords]
    if name.startswith('taskless_'):
      assert tokens == [None], name
    elif tokens:
      assert None not in tokens, name


def test_every_mixture_has_a_training_and_an_evaluation_task():
  tasks = _registered_tfds_tasks()
  mixtures = [seqio.MixtureRegistry.get(n)
              for n in seqio.MixtureRegistry.names()]
  mixtures = [m for m in mixtures if all(t.name in tasks for t in m.tasks)]
  assert len(mixtures) >= 20
  for mixture in mixtures:
    split_maps = [tasks[t.name].source.split_map for t in mixture.tasks]
    assert any(m is None or 'train' in m for m in split_maps), mixture.name
    assert any(m is None or 'validation' in m for m in split_maps), (
        mixture.name)
    assert all(t.metric_fns or (m and set(m) == {'train'})
               for t, m in zip(mixture.tasks, split_maps)), mixture.name
