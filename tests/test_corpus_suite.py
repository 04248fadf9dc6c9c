"""Tests for the corpus suite (`tasks/corpus_suite.py`) and its seqio tasks."""
import collections
import re

import pytest
import seqio

import prompt_tuning.tasks  # pylint: disable=unused-import  (registers tasks)
from prompt_tuning.serving import inference
from prompt_tuning.tasks import corpus
from prompt_tuning.tasks import corpus_suite
from prompt_tuning.tasks import corpus_suite_tasks
from prompt_tuning.tasks import corpus_tasks

TASKS = corpus_suite.TASKS
N = 100  # Examples per split in these tests (a prefix of every split).
EOS = 1


@pytest.fixture(scope='module')
def examples():
  """{(task, corpus split): the first N examples}."""
  return {(task, split): corpus_suite.examples(task, split, N)
          for task in TASKS for split in corpus.DOWNSTREAM_SPLITS}


@pytest.fixture(scope='module')
def vocab():
  return corpus.vocabulary()


def test_every_input_is_owned_by_its_split_and_splits_are_disjoint(examples):
  inputs = collections.defaultdict(set)
  for (task, split), task_examples in examples.items():
    texts = [e['inputs'] for e in task_examples]
    assert len(set(texts)) == N, (task, split)
    assert {corpus_suite.owner(t) for t in texts} == {split}, (task, split)
    inputs[split] |= set(texts)
  splits = list(inputs)
  for i, a in enumerate(splits):
    for b in splits[i + 1:]:
      assert not inputs[a] & inputs[b], (a, b)


def test_no_input_is_a_pretraining_text_and_sources_are_held_out(examples):
  pretraining = corpus.generate_documents('pretrain', 1000)
  texts = [e['inputs'] for v in examples.values() for e in v]
  assert not set(texts) & ({d.body for d in pretraining} |
                           {d.text for d in pretraining})
  # The source documents are the downstream split's: each example's first
  # sentence opens one of them.
  openings = {split: {re.split(r'(?<=\.) ', d.body)[0]
                      for d in corpus.generate_documents(split, 2 * N)}
              for split in corpus.DOWNSTREAM_SPLITS}
  for (task, split), task_examples in examples.items():
    for e in task_examples:
      review = re.sub(r'^(question: .*? review: |review1?: )', '',
                      e['inputs'])
      assert re.split(r'(?<=\.) ', review)[0] in openings[split], (task, e)


def test_examples_are_nested_and_deterministic():
  for task in TASKS:
    few = corpus_suite.examples(task, 'downstream_validation', 20)
    assert corpus_suite.examples(task, 'downstream_validation', 50)[:20] == few
    other_seed = corpus_suite.examples(task, 'downstream_validation', 20,
                                       seed=corpus.DEFAULT_SEED + 1)
    assert other_seed != few


def test_targets_are_labels_the_vocabulary_holds_as_words(examples, vocab):
  tokenizer = vocab.tokenizer
  for (task, _), task_examples in examples.items():
    for e in task_examples:
      if task == 'qa':
        assert e['targets'] == corpus.target_form(e['answers'][0])
        # The answer is a span of the review, after the question.
        assert f' {e["answers"][0]}' in e['inputs'].split(' review: ')[1]
      else:
        assert e['targets'] in corpus_suite_tasks.TARGETS[task]
      # Each word is one piece, then the period.
      pieces = tokenizer.encode(e['targets'], out_type=str)
      assert pieces == [f'▁{w}' for w in e['targets'][:-1].split()] + ['.']


def test_chance_levels_are_majority_rates(examples):
  for task in TASKS:
    rate = corpus_suite.majority_rate(examples[task, 'downstream_validation'])
    if task == 'qa':
      assert rate < 20  # 37 possible answers.
    else:  # Balanced labels, up to a skipped document.
      assert 45 <= rate <= 55, (task, rate)
  assert corpus_suite.majority_rate(
      [{'targets': 'a.'}, {'targets': 'a.'}, {'targets': 'b.'}]) == (
          pytest.approx(200 / 3))


def test_keywords_alone_do_not_decide(examples):
  """The shortcuts each task's knobs are meant to defeat stay near chance."""
  val = examples['negation', 'downstream_validation']
  positive = set(corpus.ADJECTIVES['positive'])
  negative = set(corpus.ADJECTIVES['negative'])
  hits = 0
  for e in val:
    words = re.findall(r'\w+', e['inputs'])
    score = sum(w in positive for w in words) - sum(w in negative
                                                   for w in words)
    hits += (('positive.' if score > 0 else 'negative.') == e['targets'])
  assert 30 <= 100 * hits / len(val) <= 70
  # claim: whether the claimed entity occurs in the review.
  val = examples['claim', 'downstream_validation']
  hits = 0
  for e in val:
    review, claim = e['inputs'][len('review: '):].split(' claim: ')
    names = [w for w in re.findall(r'\w+', claim)
             if w[0].isupper() and w not in corpus.AUTHORS + ('The',)]
    present = all(n in review for n in names)
    hits += (('agreed.' if present else 'not.') == e['targets'])
  assert 100 * hits / len(val) <= 75
  # qa: every review mentions a distractor of the asked kind.
  for e in examples['qa', 'downstream_validation']:
    review = e['inputs'].split(' review: ')[1]
    kinds = (corpus.DAYS, corpus.COMPANIONS,
             [p for v in corpus.PLACES.values() for p in v])
    kind = next(k for k in kinds if e['answers'][0] in k)
    assert sum(f' {v}' in review for v in kind) >= 2, e


def test_knobs_change_difficulty_and_are_checked():
  easy = corpus_suite.Knobs(negation_rate=0.0, contrast_rate=0.0,
                            closing_rate=1.0)
  texts = [e['inputs'] for e in corpus_suite.examples(
      'negation', 'downstream_validation', 20, knobs=easy)]
  assert not any(' not ' in t and 'would not go back' not in t
                 for t in texts)
  assert not any('At first' in t for t in texts)
  plain = corpus_suite.Knobs(qa_distractors=0)
  for e in corpus_suite.examples('qa', 'downstream_validation', 20,
                                 knobs=plain):
    assert not re.search(r'had been to|week before|rather have gone',
                         e['inputs'])
  with pytest.raises(ValueError, match='negation_rate'):
    corpus_suite.Knobs(negation_rate=1.5)
  with pytest.raises(ValueError, match='negation_rate \\+ contrast_rate'):
    corpus_suite.Knobs(negation_rate=0.6, contrast_rate=0.6)
  with pytest.raises(ValueError, match='qa_distractors'):
    corpus_suite.Knobs(qa_distractors=5)
  with pytest.raises(ValueError, match='unknown task'):
    corpus_suite.examples('topic', 'downstream_train', 1)
  with pytest.raises(ValueError, match='not a downstream split'):
    corpus_suite.examples('qa', 'pretrain', 1)


# ------------------------------------------------------------------------------
# seqio registration.
# ------------------------------------------------------------------------------
def test_tasks_and_mixtures_are_registered():
  names = set(seqio.TaskRegistry.names())
  for task in TASKS:
    for size in corpus_tasks.TRAIN_SIZES + (None,):
      name = corpus_suite_tasks.task_name(task, size)
      assert {name, name + '_sentinel'} <= names
  mixture = seqio.get_mixture_or_task(corpus_suite_tasks.mixture_name())
  assert sorted(t.name for t in mixture.tasks) == sorted(
      corpus_suite_tasks.task_name(t) for t in TASKS)
  assert 'corpus_suite_n32_sentinel' in seqio.MixtureRegistry.names()
  # The unsized names have the suite's own default size, not the corpus
  # tasks' (calibrated: docs/tasks.md).
  for task in TASKS:
    for name, size in ((corpus_suite_tasks.task_name(task),
                        corpus_suite_tasks.DEFAULT_TRAIN_SIZE),
                       (corpus_suite_tasks.task_name(task, 128), 128)):
      assert seqio.get_mixture_or_task(name).num_input_examples(
          'train') == size
  assert corpus_suite_tasks.DEFAULT_TRAIN_SIZE == 2048


@pytest.mark.parametrize('task', TASKS)
def test_task_datasets_hold_the_examples_untruncated(task, vocab):
  name = corpus_suite_tasks.task_name(task, 32)
  lengths = corpus_suite_tasks.SEQUENCE_LENGTHS
  ds = seqio.get_mixture_or_task(name).get_dataset(
      dict(lengths), split='train', shuffle=False, num_epochs=1,
      use_cached=False, seed=0)
  got = list(ds.as_numpy_iterator())
  want = corpus_suite.examples(task, 'downstream_train', 32)
  assert len(got) == 32
  for ex, expected in zip(got, want):
    assert ex['inputs'][-1] == EOS and len(ex['inputs']) <= lengths['inputs']
    assert vocab.decode(ex['inputs'][:-1].tolist()) == expected['inputs']
    assert vocab.decode(ex['targets'][:-1].tolist()) == expected['targets']


def test_postprocessors_and_metrics():
  for task in TASKS:
    t = seqio.get_mixture_or_task(corpus_suite_tasks.task_name(task))
    if task == 'qa':
      example = {'answers': [b'noodle bar']}
      gold = t.postprocess_fn(b'noodle bar.', example=example, is_target=True)
      scores = t.metric_fns[0]([gold, gold],
                               [t.postprocess_fn(b'noodle bar.'),
                                t.postprocess_fn(b'bar.')])
      assert scores == {'f1': pytest.approx(100 * (1 + 2 / 3) / 2),
                        'exact_match': 50.0}
    else:
      targets = corpus_suite_tasks.TARGETS[task]
      ids = [t.postprocess_fn(s, is_target=True) for s in targets]
      assert ids == list(range(len(targets)))
      assert t.postprocess_fn(corpus_suite_tasks.SUITE_LABELS[task][0]) == -1
      assert t.metric_fns[0](ids, ids[::-1]) == {'accuracy': 0.0}


def test_suite_average_is_the_superglue_style_mean():
  scores = {corpus_suite_tasks.task_name(t, 32): {'accuracy': 60.0}
            for t in ('negation', 'claim', 'outing')}
  scores['corpus_suite_qa_n32'] = {'f1': 90.0, 'exact_match': 70.0,
                                   'loss': 1.0}
  scores['corpus_topic'] = {'accuracy': 0.0}  # Not part of the suite.
  assert corpus_suite_tasks.suite_average(scores) == pytest.approx(
      (60 * 3 + 80) / 4)
  del scores['corpus_suite_claim_n32']
  with pytest.raises(ValueError, match='corpus_suite_claim'):
    corpus_suite_tasks.suite_average(scores)


def test_a_mixtures_printed_metrics_end_with_the_suite_average():
  results = {corpus_suite_tasks.task_name(t): {'accuracy': a}
             for t, a in (('negation', 54.25), ('claim', 49.0),
                          ('outing', 49.25))}
  results['corpus_suite_qa'] = {'exact_match': 10.0, 'f1': 13.0}
  lines = inference.format_metrics(results).splitlines()
  assert lines[:4] == ['corpus_suite_claim: accuracy 49.00',
                       'corpus_suite_negation: accuracy 54.25',
                       'corpus_suite_outing: accuracy 49.25',
                       'corpus_suite_qa: exact_match 10.00, f1 13.00']
  average = corpus_suite_tasks.suite_average(results)
  assert lines[4] == ("average over the 4 tasks (each task's mean metric): "
                      f'{average:.2f}')
  assert f'{average:.2f}' == '41.00'
  one = {'corpus_suite_qa': results['corpus_suite_qa']}
  assert inference.format_metrics(one) == (
      'corpus_suite_qa: exact_match 10.00, f1 13.00')


def test_register_makes_a_variant_with_other_knobs():
  knobs = corpus_suite.Knobs(qa_distractors=0)
  mixtures = corpus_suite_tasks.register('test_suite_easy', knobs)
  assert mixtures[-1] == 'test_suite_easy'
  name = corpus_suite_tasks.task_name('qa', 32, prefix='test_suite_easy')
  ds = seqio.get_mixture_or_task(name).source.get_dataset('train')
  first = next(ds.as_numpy_iterator())
  want = corpus_suite.examples('qa', 'downstream_train', 1, knobs=knobs)
  assert first['inputs'].decode() == want[0]['inputs']
  assert first['answers'].tolist() == [want[0]['answers'][0].encode()]
  assert corpus_suite_tasks.suite_average(
      {corpus_suite_tasks.task_name(t, 32, prefix='test_suite_easy'):
       {'f1': 50.0, 'exact_match': 50.0, 'accuracy': 50.0}
       for t in TASKS}, prefix='test_suite_easy') == 50.0


@pytest.mark.parametrize('task', TASKS)
def test_design_tasks_put_the_instruction_before_the_same_examples(task,
                                                                   vocab):
  name = corpus_suite_tasks.design_task_name(task)
  assert name == f'corpus_suite_{task}_design'
  instruction = corpus_suite_tasks.INSTRUCTIONS[task]
  design = seqio.get_mixture_or_task(name)
  plain = seqio.get_mixture_or_task(corpus_suite_tasks.task_name(task))
  assert design.metric_fns == plain.metric_fns
  got = list(design.source.get_dataset('validation').take(3)
             .as_numpy_iterator())
  want = list(plain.source.get_dataset('validation').take(3)
              .as_numpy_iterator())
  for ex, expected in zip(got, want):
    assert ex['inputs'].decode() == (
        instruction + ' ' + expected['inputs'].decode())
    assert ex['targets'] == expected['targets']
  # A classification task's instruction names its label words, as the
  # corpus writes them.
  if task != 'qa':
    for label in corpus_suite_tasks.SUITE_LABELS[task]:
      assert re.search(r'\b%s\b' % label, instruction), (label, instruction)
