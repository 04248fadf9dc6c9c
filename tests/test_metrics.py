"""Tests for prompt_tuning.tasks.metrics and prompt_tuning.tasks.postprocessors.

Expected values are worked out by hand in the comments; scores are on 0-100.
"""
import inspect
import warnings

import numpy as np
import pytest
import scipy.stats
from seqio import metrics as seqio_metrics

from prompt_tuning.tasks import metrics
from prompt_tuning.tasks import postprocessors


@pytest.fixture(autouse=True)
def _warnings_are_errors():
  """Degenerate inputs must be handled without scikit-learn/scipy warnings."""
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    yield


# ------------------------------------------------------------ signatures

_METRIC_FNS = [
    metrics.accuracy,
    metrics.exact_match,
    metrics.f1_and_accuracy,
    metrics.mean_multiclass_f1(3),
    metrics.matthews_corrcoef,
    metrics.pearson_and_spearman,
    metrics.multirc_metrics,
    metrics.record_metrics,
    metrics.squad,
]


@pytest.mark.parametrize('metric_fn', _METRIC_FNS,
                         ids=lambda f: f.__name__)
def test_metric_signature_is_seqio_prediction_metric(metric_fn):
  # The rule seqio.Task uses to tell prediction metrics from score metrics.
  pos_args = tuple(
      k for k, p in inspect.signature(metric_fn).parameters.items()
      if p.default == inspect.Parameter.empty and
      p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD)
  assert pos_args == ('targets', 'predictions')


# ------------------------------------------------------ classification


def test_accuracy_counts_invalid_prediction_as_wrong():
  # Right at 0 and 1, -1 at 2 is wrong (not dropped), 3 is wrong: 2/4.
  assert metrics.accuracy([0, 1, 1, 0], [0, 1, -1, 1]) == {'accuracy': 50.0}


def test_exact_match_strings():
  # 'a' == 'a'; 'b ' != 'b' (no normalisation); 'c' == 'c': 2/3.
  out = metrics.exact_match(['a', 'b', 'c'], ['a', 'b ', 'c'])
  assert out == {'exact_match': pytest.approx(200 / 3)}


def test_f1_and_accuracy_hand_example():
  # t: 1 1 0 0 1
  # p: 1 0 1 0 1  -> TP = 2 (0, 4), FP = 1 (2), FN = 1 (1), TN = 1 (3).
  # F1 = 2TP / (2TP + FP + FN) = 4 / 6; accuracy = (TP + TN) / 5 = 3 / 5.
  out = metrics.f1_and_accuracy([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
  assert out == {'f1': pytest.approx(400 / 6), 'accuracy': pytest.approx(60.0)}


def test_f1_and_accuracy_invalid_counts_against_both_classes():
  # t: 1  0  1
  # p: 1 -1 -1  -> -1 under target 0 is a false positive, -1 under target 1
  # a false negative: TP = 1, FP = 1, FN = 1, F1 = 2 / 4; accuracy 1 / 3.
  out = metrics.f1_and_accuracy([1, 0, 1], [1, -1, -1])
  assert out == {'f1': pytest.approx(50.0), 'accuracy': pytest.approx(100 / 3)}


def test_f1_and_accuracy_rejects_non_binary_target():
  with pytest.raises(ValueError, match=r'f1_and_accuracy: target 1 is -1'):
    metrics.f1_and_accuracy([1, -1], [1, 1])


def test_mean_multiclass_f1_class_never_predicted():
  # CB-like, 3 classes; class 2 is in the targets but never predicted.
  # t: 0 1 2 0 1 2
  # p: 0 1 0 0 1 1
  # class 0: TP 2, FP 1 (idx 2), FN 0 -> F1 = 4 / 5
  # class 1: TP 2, FP 1 (idx 5), FN 0 -> F1 = 4 / 5
  # class 2: TP 0                     -> F1 = 0
  # mean = 1.6 / 3; accuracy = 4 / 6.
  t, p = [0, 1, 2, 0, 1, 2], [0, 1, 0, 0, 1, 1]
  assert metrics.mean_multiclass_f1(3)(t, p) == {
      'mean_3class_f1': pytest.approx(160 / 3)}
  assert metrics.accuracy(t, p)['accuracy'] == pytest.approx(400 / 6)


def test_mean_multiclass_f1_class_absent_everywhere_still_counts():
  # t: 0 1 1, p: 0 1 0; class 2 appears nowhere.
  # class 0: TP 1, FP 1, FN 0 -> 2 / 3; class 1: TP 1, FP 0, FN 1 -> 2 / 3;
  # class 2 -> 0. Mean over 3 classes = (4 / 3) / 3 = 4 / 9 (not 2 / 3).
  out = metrics.mean_multiclass_f1(3)([0, 1, 1], [0, 1, 0])
  assert out == {'mean_3class_f1': pytest.approx(400 / 9)}


def test_mean_multiclass_f1_invalid_prediction():
  # t: 0 1 2, p: 0 1 -1 -> classes 0 and 1 have F1 1; class 2: TP 0, FN 1
  # -> 0. Mean 2 / 3.
  out = metrics.mean_multiclass_f1(3)([0, 1, 2], [0, 1, -1])
  assert out == {'mean_3class_f1': pytest.approx(200 / 3)}


def test_mean_multiclass_f1_name_and_errors():
  assert metrics.mean_multiclass_f1(5).__name__ == 'mean_5class_f1'
  with pytest.raises(ValueError, match='num_classes is 1'):
    metrics.mean_multiclass_f1(1)
  with pytest.raises(ValueError, match=r'mean_3class_f1: target 0 is 3'):
    metrics.mean_multiclass_f1(3)([3], [0])


def test_all_wrong_predictions():
  assert metrics.accuracy([0, 1], [1, 0]) == {'accuracy': 0.0}
  # TP = 0 -> F1 = 0.
  assert metrics.f1_and_accuracy([1, 0], [0, 1]) == {'f1': 0.0,
                                                     'accuracy': 0.0}
  # Confusion matrix [[0, 1], [1, 0]]: perfectly anti-correlated.
  assert metrics.matthews_corrcoef([0, 1], [1, 0]) == {
      'matthews_corrcoef': pytest.approx(-100.0)}
  # Each question's only answer is wrong.
  t = [{'group': 'a', 'value': 1}, {'group': 'b', 'value': 0}]
  p = [{'group': 'a', 'value': 0}, {'group': 'b', 'value': 1}]
  assert metrics.multirc_metrics(t, p) == {'f1a': 0.0, 'exact_match': 0.0}
  assert metrics.squad([['cat']], ['dog']) == {'f1': 0.0, 'exact_match': 0.0}


@pytest.mark.parametrize('targets, predictions, expected', [
    # Only class 1, all right: TP 3 -> F1 1.
    ([1, 1, 1], [1, 1, 1], {'f1': 100.0, 'accuracy': 100.0}),
    # Only class 0, all right: no positive anywhere, F1 0/0 defined as 0.
    ([0, 0], [0, 0], {'f1': 0.0, 'accuracy': 100.0}),
    # Only class 0 in targets, one positive prediction: TP 0 -> F1 0.
    ([0, 0], [0, 1], {'f1': 0.0, 'accuracy': 50.0}),
])
def test_f1_and_accuracy_single_class(targets, predictions, expected):
  assert metrics.f1_and_accuracy(targets, predictions) == expected


@pytest.mark.parametrize('targets, predictions', [
    ([0, 1, 1, 0], [1, 1, 1, 1]),  # Constant predictions.
    ([1, 1, 1], [1, 0, 1]),  # Constant targets.
    ([1, 1, 1], [1, 1, 1]),  # A single class in both.
    ([0, 1, 1], [-1, -1, -1]),  # Only invalid predictions.
])
def test_matthews_corrcoef_degenerate_is_zero(targets, predictions):
  # 0/0 in the coefficient: defined as 0, no warning (fixture turns them into
  # errors).
  assert metrics.matthews_corrcoef(targets, predictions) == {
      'matthews_corrcoef': 0.0}


def test_matthews_corrcoef_hand_example():
  # t: 1 1 0 0, p: 1 0 0 0 -> TP 1, FN 1, TN 2, FP 0.
  # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
  #     = (2 - 0) / sqrt(1 * 2 * 2 * 3) = 2 / sqrt(12).
  out = metrics.matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0])
  assert out == {'matthews_corrcoef': pytest.approx(100 * 2 / np.sqrt(12))}


# --------------------------------------------------------- regression


def test_pearson_and_spearman_hand_example():
  # t: 1 2 3, p: 1 3 2. Deviations from the means (2, 2): (-1, 0, 1) and
  # (-1, 1, 0). Pearson = 1 / sqrt(2 * 2) = 1 / 2. The values are their own
  # ranks, so Spearman is the same 1 / 2.
  out = metrics.pearson_and_spearman([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
  assert out == {'pearson_corrcoef': pytest.approx(50.0),
                 'spearman_corrcoef': pytest.approx(50.0)}


def test_pearson_and_spearman_match_scipy():
  t = [0.2, 1.0, 2.4, 3.0, 3.8, 5.0]
  p = [0.5, 1.5, 1.4, 3.6, 3.0, -1.0]  # -1.0: an unparseable output.
  out = metrics.pearson_and_spearman(t, p)
  assert out['pearson_corrcoef'] == pytest.approx(
      100 * scipy.stats.pearsonr(t, p)[0])
  assert out['spearman_corrcoef'] == pytest.approx(
      100 * scipy.stats.spearmanr(t, p)[0])


@pytest.mark.parametrize('targets, predictions', [
    ([1.0, 2.0, 3.0], [3.0, 3.0, 3.0]),  # Constant predictions.
    ([2.0, 2.0], [1.0, 4.0]),  # Constant targets.
    ([4.2], [3.1]),  # One example.
])
def test_pearson_and_spearman_constant_vector_is_zero(targets, predictions):
  assert metrics.pearson_and_spearman(targets, predictions) == {
      'pearson_corrcoef': 0.0, 'spearman_corrcoef': 0.0}


def test_pearson_and_spearman_rejects_nan():
  with pytest.raises(ValueError, match='prediction 1 is nan'):
    metrics.pearson_and_spearman([1.0, 2.0], [1.0, float('nan')])


# ------------------------------------------------------------ MultiRC


def _multirc_example():
  # Question (0, 0): 2 answers, both right.
  # Question (0, 1): 3 answers; answer 1 wrong, answer 2 invalid (-1).
  targets = [
      {'group': (0, 0), 'value': 1},
      {'group': (0, 0), 'value': 0},
      {'group': (0, 1), 'value': 1},
      {'group': (0, 1), 'value': 1},
      {'group': (0, 1), 'value': 0},
  ]
  predictions = [
      {'group': (0, 0), 'value': 1},
      {'group': (0, 0), 'value': 0},
      {'group': (0, 1), 'value': 1},
      {'group': (0, 1), 'value': 0},
      {'group': (0, 1), 'value': -1},
  ]
  return targets, predictions


def test_multirc_groups_by_question():
  # EM: question (0, 0) all right, (0, 1) not -> 1 / 2.
  # F1a over the 5 answers, -1 under target 0 counting as a false positive:
  # t: 1 0 1 1 0, p: 1 0 1 0 (1) -> TP 2, FP 1, FN 1 -> F1 = 4 / 6.
  targets, predictions = _multirc_example()
  out = metrics.multirc_metrics(targets, predictions)
  assert out == {'f1a': pytest.approx(400 / 6), 'exact_match': 50.0}


def test_multirc_order_of_examples_does_not_matter():
  targets, predictions = _multirc_example()
  order = [4, 0, 2, 1, 3]  # Interleaves the two questions.
  out = metrics.multirc_metrics([targets[i] for i in order],
                                [predictions[i] for i in order])
  assert out == metrics.multirc_metrics(targets, predictions)


def test_multirc_prediction_without_group_uses_target_group():
  targets, predictions = _multirc_example()
  predictions = [{'group': None, 'value': p['value']} for p in predictions]
  assert metrics.multirc_metrics(targets, predictions)['exact_match'] == 50.0


def test_multirc_rejects_mismatched_group():
  targets, predictions = _multirc_example()
  predictions[3] = {'group': (9, 9), 'value': 1}
  with pytest.raises(ValueError, match=r'prediction 3 has group \(9, 9\)'):
    metrics.multirc_metrics(targets, predictions)


# ----------------------------------------------------- SQuAD and ReCoRD


def test_record_max_over_gold_answers():
  targets = [['Barack Obama', 'Obama'], ['the United States'],
             ['York', 'New York']]
  predictions = ['obama.', 'United States of America', 'new york city']
  # 1: 'obama' equals gold 'obama': EM 1, F1 1.
  # 2: 'united states of america' vs 'united states': 2 shared tokens,
  #    P = 2/4, R = 2/2, F1 = 2/3; EM 0.
  # 3: vs 'york': P = 1/3, R = 1, F1 = 1/2; vs 'new york': P = 2/3, R = 1,
  #    F1 = 4/5 -> max 4/5; EM 0.
  # EM = 1/3; F1 = (1 + 2/3 + 4/5) / 3 = (37/15) / 3 = 37/45.
  out = metrics.record_metrics(targets, predictions)
  assert out == {'f1': pytest.approx(100 * 37 / 45),
                 'exact_match': pytest.approx(100 / 3)}


@pytest.mark.parametrize('prediction, gold, expected_em', [
    ('The Cat!', 'cat', 100.0),  # Case, article, punctuation.
    ('an  apple,   a pear', 'apple pear', 100.0),  # Articles, whitespace.
    ("o'neil", 'oneil', 100.0),  # Punctuation inside a word is removed.
    ('Theater', 'theater', 100.0),
    ('Theater', 'ater', 0.0),  # Articles go only as whole words.
    ('cats', 'cat', 0.0),
])
def test_squad_normalisation(prediction, gold, expected_em):
  out = metrics.squad([[gold]], [prediction])
  assert out['exact_match'] == expected_em
  assert metrics.record_metrics([[gold]], [prediction]) == out


def test_squad_bare_string_and_bytes_targets():
  # A bare string is one answer, not a list of characters.
  assert metrics.squad(['the cat'], ['cat']) == {'f1': 100.0,
                                                 'exact_match': 100.0}
  assert metrics.squad([[b'cat']], [b'Cat']) == {'f1': 100.0,
                                                 'exact_match': 100.0}


def test_squad_rejects_target_without_answers():
  with pytest.raises(ValueError, match='record_metrics: target 1 has no gold'):
    metrics.record_metrics([['a'], []], ['a', 'b'])


# ------------------------------------------------ combining task scores


def test_superglue_average_hand_example():
  scores = {
      'boolq': {'accuracy': 80.0},  # -> 80
      'cb': {'accuracy': 90.0, 'mean_3class_f1': 70.0},  # -> 80
      'multirc': {'f1a': 75.0, 'exact_match': 35.0},  # -> 55
      'record': {'f1': 85.0, 'exact_match': 84.0},  # -> 84.5
  }
  # (80 + 80 + 55 + 84.5) / 4 = 299.5 / 4. A flat mean of all 7 numbers
  # would be 519 / 7 = 74.14 instead.
  assert metrics.superglue_average(scores) == pytest.approx(74.875)


def test_superglue_average_accepts_seqio_scalars():
  scores = {'rte': {'accuracy': seqio_metrics.Scalar(60.0)},
            'wic': {'accuracy': np.float32(70.0)}}
  assert metrics.superglue_average(scores) == pytest.approx(65.0)


def test_superglue_average_errors():
  with pytest.raises(ValueError, match="task 'cb' has no metrics"):
    metrics.superglue_average({'boolq': {'accuracy': 80.0}, 'cb': {}})
  with pytest.raises(ValueError, match='got no tasks'):
    metrics.superglue_average({})
  with pytest.raises(ValueError, match=r"'wsc'.*'accuracy' is nan"):
    metrics.superglue_average({'wsc': {'accuracy': float('nan')}})


def test_mean_of_metrics():
  assert metrics.mean_of_metrics({'accuracy': 70.0}) == 70.0
  # CB: (90 + 70) / 2.
  assert metrics.mean_of_metrics({
      'accuracy': 90.0, 'mean_3class_f1': seqio_metrics.Scalar(70.0)}) == 80.0
  with pytest.raises(ValueError, match='mean_of_metrics: got no metrics'):
    metrics.mean_of_metrics({})


# ------------------------------------------------------ input checks


@pytest.mark.parametrize('metric_fn', _METRIC_FNS,
                         ids=lambda f: f.__name__)
def test_empty_inputs_raise_naming_the_metric(metric_fn):
  with pytest.raises(ValueError, match=f'{metric_fn.__name__}: got 0 targets'):
    metric_fn([], [])


def test_length_mismatch_raises():
  with pytest.raises(ValueError, match='accuracy: got 2 targets and 1 pred'):
    metrics.accuracy([0, 1], [0])


# ---------------------------------------------------- postprocessors


@pytest.mark.parametrize('decoded, expected', [
    ('entailment', 0),
    (' neutral\n', 2),  # Surrounding whitespace is stripped.
    (b'contradiction', 1),  # Bytes are decoded.
    (np.bytes_(b'neutral'), 2),
    ('Neutral', -1),  # Case matters.
    ('entailment.', -1),
    ('', -1),
    ('not a label at all', -1),
])
def test_string_label_to_class_id(decoded, expected):
  fn = postprocessors.string_label_to_class_id(
      ['entailment', 'contradiction', 'neutral'])
  assert fn(decoded) == expected
  assert fn(decoded, example={}, is_target=True) == expected


def test_string_label_to_class_id_rejects_bad_label_classes():
  with pytest.raises(ValueError, match='duplicate'):
    postprocessors.string_label_to_class_id(['yes', 'yes '])
  with pytest.raises(ValueError, match='empty'):
    postprocessors.string_label_to_class_id([])
  with pytest.raises(ValueError, match='expected a sequence'):
    postprocessors.string_label_to_class_id('yes')


@pytest.mark.parametrize('decoded, default, expected', [
    ('3.8', -1.0, 3.8),
    (' 0 ', -1.0, 0.0),
    (b'4.2', -1.0, 4.2),
    ('three', -1.0, -1.0),
    ('', -1.0, -1.0),
    ('nan', -1.0, -1.0),
    ('inf', 2.5, 2.5),
    ('3.8 or so', 0.0, 0.0),
])
def test_string_to_float(decoded, default, expected):
  assert postprocessors.string_to_float(default=default)(decoded) == expected


def _multirc_tfds_example(paragraph, question, answer):
  # As tfds.as_numpy gives super_glue/multirc after preprocessing.
  return {'idx': {'paragraph': np.int32(paragraph),
                  'question': np.int32(question),
                  'answer': np.int32(answer)},
          'targets_pretokenized': b'True'}


def test_multirc_postprocessor():
  fn = postprocessors.multirc()
  ex = _multirc_tfds_example(3, 7, 1)
  assert fn('True', example=ex, is_target=True) == {'group': (3, 7),
                                                    'value': 1}
  assert fn('False', example=ex) == {'group': (3, 7), 'value': 0}
  assert fn('maybe', example=ex) == {'group': (3, 7), 'value': -1}
  assert fn(b'True', example=None) == {'group': None, 'value': 1}
  # Groups are plain hashable ints, equal across numpy dtypes.
  assert hash(fn('True', example=ex)['group']) == hash((3, 7))
  flat = {'idx/paragraph': np.int64(3), 'idx/question': np.int64(7)}
  assert fn('True', example=flat)['group'] == (3, 7)


def test_multirc_postprocessor_errors():
  fn = postprocessors.multirc()
  with pytest.raises(ValueError, match='without its example'):
    fn('True', example=None, is_target=True)
  with pytest.raises(ValueError, match=r"keys \['label'\]"):
    fn('True', example={'label': 1}, is_target=True)
  with pytest.raises(ValueError, match='expected two labels'):
    postprocessors.multirc(('a', 'b', 'c'))


def test_multirc_postprocessor_feeds_metric():
  fn = postprocessors.multirc()
  examples = [_multirc_tfds_example(0, 0, 0), _multirc_tfds_example(0, 0, 1),
              _multirc_tfds_example(0, 1, 0), _multirc_tfds_example(1, 1, 0)]
  gold = ['True', 'False', 'True', 'False']
  decoded = ['True', 'False', 'yes', 'False']
  targets = [fn(g, example=ex, is_target=True) for g, ex in zip(gold, examples)]
  predictions = [fn(d, example=ex) for d, ex in zip(decoded, examples)]
  # Three questions: (0, 0) right, (0, 1) invalid -> wrong, (1, 1) right:
  # EM 2/3. Answers t: 1 0 1 0, p: 1 0 (0) 0 -> TP 1, FN 1, FP 0, F1 2/3.
  assert metrics.multirc_metrics(targets, predictions) == {
      'f1a': pytest.approx(200 / 3), 'exact_match': pytest.approx(200 / 3)}


@pytest.mark.parametrize('postprocess_fn',
                         [postprocessors.record, postprocessors.squad])
@pytest.mark.parametrize('answers', [
    np.array([b'Obama', b'Barack Obama'], dtype=object),
    np.array([b'Obama', b'Barack Obama']),  # Fixed-width bytes dtype.
    ['Obama', b'Barack Obama'],
    {'text': np.array([b'Obama', b'Barack Obama'], dtype=object),
     'answer_start': np.array([3, 10], dtype=np.int32)},  # tfds squad.
])
def test_answer_postprocessors(postprocess_fn, answers):
  ex = {'answers': answers, 'targets_pretokenized': b'Obama'}
  assert postprocess_fn('Obama', example=ex, is_target=True) == [
      'Obama', 'Barack Obama']
  assert postprocess_fn('barack', example=ex) == 'barack'
  assert postprocess_fn(b'Obama', example=ex) == 'Obama'


@pytest.mark.parametrize('postprocess_fn',
                         [postprocessors.record, postprocessors.squad])
def test_answer_postprocessors_need_answers_for_targets(postprocess_fn):
  with pytest.raises(ValueError, match="'answers' feature"):
    postprocess_fn('x', example={'inputs': 1}, is_target=True)
  with pytest.raises(ValueError, match="'answers' feature"):
    postprocess_fn('x', example=None, is_target=True)
