"""Text preprocessors: T5's text-to-text casts of GLUE, SuperGLUE and QA.

Each function turns raw TFDS records into {'inputs', 'targets', ...} strings
exactly as T5 (`t5.data.preprocessors`) formats them, which is what the
paper's code fed the model:

    "<benchmark> key1: value1 key2: value2"  ->  "<label string>"

Every formatter takes `benchmark_name` (or `prefix`); None leaves the leading
task token out, giving the "taskless" inputs that prompt tuning trains on
(the same string as T5's with its first space-delimited token removed).

Also here: `add_sentinel_to_targets`, a token preprocessor for the paper's
"span corruption + sentinel" setting. The pretraining objectives (span
corruption, prefix LM) are in `lm_preprocessors`.
"""
from typing import Mapping, Optional, Sequence

import seqio
import tensorflow as tf

UNKNOWN_LABEL = '<unk>'  # Target of unlabeled (test) records, as in T5.


# ================================ helpers ====================================
def _join(parts: Sequence[tf.Tensor]) -> tf.Tensor:
  """Joins string scalars with single spaces."""
  return tf.strings.join(list(parts), separator=' ')


def _with_prefix(prefix: Optional[str], parts: Sequence) -> list:
  return ([prefix] if prefix else []) + list(parts)


def _label_string(label: tf.Tensor, label_names: Sequence[str]) -> tf.Tensor:
  """`label_names[label]`, or '<unk>' for an unlabeled record (label -1)."""
  label = tf.cast(label, tf.int32)
  name = tf.gather(tf.constant(list(label_names)), tf.maximum(label, 0))
  return tf.where(label < 0, tf.constant(UNKNOWN_LABEL), name)


def pad_punctuation(text: tf.Tensor) -> tf.Tensor:
  """Puts spaces around ASCII punctuation and collapses whitespace (T5's).

  Args:
    text: string tensor of any shape.

  Returns:
    Same shape; e.g. "Who's there?" -> "Who ' s there ? ".
  """
  text = tf.strings.regex_replace(text, r'([[:punct:]])', r' \1 ')
  return tf.strings.regex_replace(text, r'\s+', ' ')


def _join_collapsing_whitespace(parts: Sequence[tf.Tensor]) -> tf.Tensor:
  return tf.strings.regex_replace(_join(parts), r'\s+', ' ')


# ============================ GLUE / SuperGLUE ===============================
@seqio.map_over_dataset
def format_glue(x: Mapping[str, tf.Tensor], *, benchmark_name: Optional[str],
                label_names: Sequence[str],
                feature_names: Optional[Sequence[str]] = None):
  """T5's GLUE-style cast of a classification record.

  e.g. RTE {'premise': 'A.', 'hypothesis': 'B.', 'label': 1, 'idx': 3} ->
  {'inputs': 'rte hypothesis: B. premise: A.', 'targets': 'not_entailment',
   'idx': 3}.

  Args:
    x: a record with the text fields, an integer 'label' (-1 when unlabeled)
      and 'idx' (an int or a dict of ints).
    benchmark_name: leading task token; None leaves it out (taskless).
    label_names: the label string of each class id.
    feature_names: the text fields in input order; None means every field but
      'label' and 'idx', sorted by name (T5's default).

  Returns:
    {'inputs': str, 'targets': str, 'idx': x['idx']}.
  """
  keys = feature_names or sorted(set(x) - {'label', 'idx'})
  parts = []
  for key in keys:
    parts += [f'{key}:', x[key]]
  return {
      'inputs': _join(_with_prefix(benchmark_name, parts)),
      'targets': _label_string(x['label'], label_names),
      'idx': x['idx'],
  }


def format_multirc(dataset: tf.data.Dataset, *, benchmark_name: Optional[str],
                   label_names: Sequence[str] = ('False', 'True')
                   ) -> tf.data.Dataset:
  """MultiRC as T5 casts it: GLUE-style with the HTML markup removed.

  Inputs are "multirc question: Q answer: A paragraph: P" with '<br>' turned
  into a space and '<b>', '</b>' dropped. 'idx' keeps tfds' dict
  {'paragraph', 'question', 'answer'}: the MultiRC metric groups answers by
  question.

  Args:
    dataset: super_glue/multirc records.
    benchmark_name: leading task token or None.
    label_names: label string of class 0 and 1.

  Returns:
    The formatted dataset.
  """
  dataset = format_glue(dataset, benchmark_name=benchmark_name,
                        label_names=label_names,
                        feature_names=('question', 'answer', 'paragraph'))

  def strip_html(ex):
    inputs = tf.strings.regex_replace(ex['inputs'], '<br>', ' ')
    ex['inputs'] = tf.strings.regex_replace(inputs, '<(/)?b>', '')
    return ex

  return dataset.map(strip_html, num_parallel_calls=tf.data.AUTOTUNE)


@seqio.map_over_dataset
def format_stsb(x: Mapping[str, tf.Tensor], *,
                benchmark_name: Optional[str] = 'stsb'):
  """STS-B as T5 casts it: the score rounded to a multiple of 0.2, as text.

  NOTE: the rounding is `tf.round(score * 5) / 5`, which rounds halves to
  even (3.7 -> 18.5 -> 18 -> "3.6"), then "%.1f"; this is T5's target
  string, kept so that outputs match the paper's setting. 26 target strings
  "0.0" ... "5.0" result.

  Args:
    x: {'sentence1', 'sentence2', 'label': float32 in [0, 5], 'idx'}.
    benchmark_name: leading task token or None.

  Returns:
    {'inputs': 'stsb sentence1: ... sentence2: ...', 'targets': e.g. '3.8',
     'idx'}.
  """
  parts = ['sentence1:', x['sentence1'], 'sentence2:', x['sentence2']]
  score = tf.round(tf.cast(x['label'], tf.float32) * 5) / 5
  return {
      'inputs': _join(_with_prefix(benchmark_name, parts)),
      'targets': tf.strings.as_string(score, precision=1),
      'idx': x['idx'],
  }


# WSC texts whose span2_index does not point at the pronoun as a whole word;
# T5 fixes these two by hand. Each maps to its inputs with the pronoun as 'X'.
_WSC_FIXED_TEXTS = {
    ('The boy continued to whip the pony , and eventually the pony threw him '
     'over. John laughed out quite loud. "Good for him," he said. '):
        ('The boy continued to whip the pony , and eventually the pony threw '
         'him over. John laughed out quite loud. "Good for X ," he said.'),
    ('When they had eventually calmed down a bit , and had gotten home, Mr. '
     'Farley put the magic pebble in an iron safe . Some day they might want '
     'to use it , but really for now, what more could they wish for?'):
        ('When they had eventually calmed down a bit , and had gotten home, '
         'Mr. Farley put the magic pebble in an iron safe . Some day they '
         'might want to use X , but really for now, what more could they wish '
         'for?'),
}


def _wsc_text_with_blank(x: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """The WSC text with its pronoun (word span2_index) replaced by 'X'."""
  text = x['text']
  words = tf.strings.split(text, sep=' ')
  index = tf.cast(x['span2_index'], tf.int32)
  num_words = tf.size(words)
  fixed = tf.constant(UNKNOWN_LABEL)
  is_fixed = tf.constant(False)
  for original, with_blank in _WSC_FIXED_TEXTS.items():
    match = tf.equal(text, original)
    fixed = tf.where(match, tf.constant(with_blank), fixed)
    is_fixed = tf.logical_or(is_fixed, match)
  safe_index = tf.clip_by_value(index, 0, tf.maximum(num_words - 1, 0))
  valid = tf.logical_and(
      tf.logical_and(index > 0, index < num_words),
      tf.equal(tf.gather(words, safe_index), x['span2_text']))
  check = tf.debugging.Assert(
      tf.logical_or(is_fixed, valid),
      ['WSC record: span2_index', index, 'is not the pronoun span2_text',
       x['span2_text'], 'as a whole word (index > 0) of text', text],
      summarize=-1)
  with tf.control_dependencies([check]):
    blanked = _join([
        tf.strings.reduce_join(words[:safe_index], separator=' '), 'X',
        tf.strings.reduce_join(words[safe_index + 1:], separator=' ')])
  return tf.where(is_fixed, fixed, blanked)


def format_wsc_simple(dataset: tf.data.Dataset, *, prefix: Optional[str],
                      correct_referent_only: bool) -> tf.data.Dataset:
  """WSC cast as T5's "simple" generation task: the model names the referent.

  e.g. {'text': 'Mitchell asked Tom if he could lend some money.',
  'span1_text': 'Tom', 'span2_text': 'he', 'span2_index': 4} ->
  {'inputs': 'wsc: Mitchell asked Tom if *he* could lend some money.',
   'targets': 'Tom', 'label': ..., 'idx': ...}.

  The target is span1 whether or not it is the right referent, so training
  keeps only the records labelled True (`correct_referent_only`); evaluation
  keeps all and compares the model's referent with span1 (see
  `superglue.wsc_simple_postprocess`).

  NOTE: as in T5, every ' X ' in the blanked text becomes the marked pronoun.

  Args:
    dataset: super_glue/wsc.fixed records.
    prefix: leading token, 'wsc:' in T5; None leaves it out.
    correct_referent_only: drop records whose label is not True.

  Returns:
    The formatted dataset. A record whose span2_index does not point at
    span2_text raises InvalidArgumentError when read.
  """

  def fn(x):
    marked = tf.strings.regex_replace(
        _wsc_text_with_blank(x), ' X ', ' *' + x['span2_text'] + '* ')
    return {
        'inputs': _join(_with_prefix(prefix, [marked])),
        'targets': tf.reshape(x['span1_text'], []),
        'label': x.get('label', tf.constant(0, tf.int64)),
        'idx': x['idx'],
    }

  if correct_referent_only:
    dataset = dataset.filter(lambda x: tf.cast(x['label'], tf.bool))
  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def format_record(dataset: tf.data.Dataset, *, benchmark_name: Optional[str],
                  one_example_per_answer: bool) -> tf.data.Dataset:
  """ReCoRD cast as T5 casts it.

  Inputs: "record query: Q entities: E1, E2 passage: P", where the passage's
  "\\n@highlight\\n" separators become ". " (or a space after an existing
  sentence end). Each output keeps 'answers' (all gold entities) for
  evaluation and 'idx' {'passage', 'query'}.

  Args:
    dataset: super_glue/record records.
    benchmark_name: leading task token or None.
    one_example_per_answer: T5's training cast, one example per gold answer
      (target = that answer); if False, one example per query with the first
      answer as target, so that metrics count each query once. A query with
      no answer (test) gets target '<unk>'.

  Returns:
    The formatted dataset.
  """

  def inputs_of(x):
    passage = tf.strings.regex_replace(
        x['passage'], r'(\.|\?|\!|\"|\')\n@highlight\n', r'\1 ')
    passage = tf.strings.regex_replace(passage, r'\n@highlight\n', '. ')
    parts = ['query:', x['query'], 'entities:',
             tf.strings.reduce_join(x['entities'], separator=', '),
             'passage:', passage]
    return _join(_with_prefix(benchmark_name, parts))

  def one_per_query(x):
    return {
        'inputs': inputs_of(x),
        'targets': tf.concat([x['answers'], [UNKNOWN_LABEL]], axis=0)[0],
        'answers': x['answers'],
        'idx': x['idx'],
    }

  def one_per_answer(x):
    # [K] answers -> K examples (1 with target '<unk>' when K = 0).
    num = tf.maximum(tf.size(x['answers']), 1)
    targets = tf.cond(tf.size(x['answers']) > 0, lambda: x['answers'],
                      lambda: tf.constant([UNKNOWN_LABEL]))

    def tile(t):
      return tf.broadcast_to(t, tf.concat([[num], tf.shape(t)], axis=0))

    return {
        'inputs': tile(inputs_of(x)),
        'targets': targets,
        'answers': tile(x['answers']),
        'idx': {k: tile(v) for k, v in x['idx'].items()},
    }

  if not one_example_per_answer:
    return dataset.map(one_per_query, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.map(
      one_per_answer, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


# ================================ QA =========================================
@seqio.map_over_dataset
def format_squad(x: Mapping[str, tf.Tensor]):
  """SQuAD as T5 casts it ("question: Q context: C" -> first answer).

  Question, context and answers get spaces around punctuation and collapsed
  whitespace (`pad_punctuation`), as in T5.

  Args:
    x: a tfds squad record {'id', 'question', 'context', 'answers': {'text':
      [K], ...}}.

  Returns:
    {'inputs', 'targets': first answer, 'answers': [K] all answers, 'id',
     'question', 'context'}.
  """
  answers = pad_punctuation(x['answers']['text'])
  return _squad_cast(x['question'], x['context'], answers, answers, x['id'])


def _squad_cast(question: tf.Tensor, context: tf.Tensor, answers: tf.Tensor,
                target_candidates: tf.Tensor, example_id: tf.Tensor):
  """The SQuAD cast shared by SQuAD and MRQA: the first of
  `target_candidates` (or '') is the target; `answers` are kept for
  evaluation. `answers` and `target_candidates` are already padded."""
  question = pad_punctuation(question)
  context = pad_punctuation(context)
  return {
      'inputs': _join_collapsing_whitespace(
          ['question:', question, 'context:', context]),
      'targets': tf.concat([target_candidates, ['']], axis=0)[0],
      'answers': answers,
      'id': example_id,
      'question': question,
      'context': context,
  }


@seqio.map_over_dataset
def format_mrqa(x: Mapping[str, tf.Tensor]):
  """An MRQA 2019 record in the SQuAD cast of `format_squad`, as the paper's
  code casts it (google-research/prompt-tuning's `mrqa` preprocessor).

  The training target is the first gold answer (`answers[0]`, punctuation
  padded), not the first span detected in the context (`detected_answers`,
  which can differ in case or form from the gold text); 'answers' keeps every
  gold answer for evaluation.

  Args:
    x: a tfds mrqa record {'qid', 'question', 'context', 'answers': [K],
      ...}.

  Returns:
    {'inputs', 'targets': first gold answer, 'answers': [K], 'id',
     'question', 'context'}.
  """
  answers = pad_punctuation(x['answers'])
  return _squad_cast(x['question'], x['context'], answers, answers, x['qid'])


# =========================== token preprocessors =============================
def add_sentinel_to_targets(
    dataset: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature]) -> tf.data.Dataset:
  """Prepends the first sentinel `<extra_id_0>` to every tokenized target.

  The paper's "span corruption + sentinel" setting: a span-corruption
  checkpoint always starts its outputs with a sentinel, so downstream targets
  get one too. Only targets change (as in the paper's code; T5's
  `add_task_with_sentinels` also appends one to the inputs). The first
  sentinel is the last id of the vocabulary, `vocab_size - 1`.

  Use after `seqio.preprocessors.tokenize`.

  Args:
    dataset: tokenized examples with 'targets' `[T]` int.
    output_features: the task's features (the targets vocabulary).

  Returns:
    Examples with 'targets' `[T + 1]`.
  """
  sentinel = output_features['targets'].vocabulary.vocab_size - 1

  def fn(ex):
    ex = dict(ex)
    targets = ex['targets']
    ex['targets'] = tf.concat(
        [tf.constant([sentinel], dtype=targets.dtype), targets], axis=0)
    return ex

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
