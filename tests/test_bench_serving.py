"""Tests of the inference and serving suites (prompt_tuning.benchmarks.serving):
every case runs, compiles once, and the alternatives compute the same
scores. Never asserts on timings."""
import numpy as np
import pytest

from prompt_tuning.benchmarks import serving as bench_serving

B, T, U, P = 4, 9, 3, 5
_COMMON = dict(size='tiny', input_length=T, prompt_length=P, repeats=2,
               warmup_steps=1)


@pytest.fixture(scope='module')
def serving(fast_compiles):
  return bench_serving.run_serving(batch_size=B, target_length=U,
                                   num_prompts=3, num_tasks=2, **_COMMON)


@pytest.fixture(scope='module')
def inference(fast_compiles):
  return bench_serving.run_inference(batch_size=2, decode_length=4,
                                     num_classes=3, label_length=2,
                                     **_COMMON)


@pytest.mark.slow
def test_serving_cases(serving):
  by_case = {r['case']: r for r in serving}
  assert list(by_case) == ['ensemble_one_pass', 'one_prompt_n_x_batch',
                           'separate_passes', 'mixed_task_batch',
                           'per_task_batches']
  for record in serving:
    assert record['suite'] == 'serving'
    assert len(record['step_times_s']) == 2
    # Each jitted function compiled once, nothing compiled while timing.
    assert record['step_compilations'] == 1
    assert record['recompilations'] == 0
    assert record['backend_compiles_while_timing'] == 0
  assert by_case['ensemble_one_pass']['rows_per_pass'] == B * 3
  assert by_case['separate_passes']['passes'] == 3
  assert by_case['per_task_batches']['rows_per_pass'] == B // 2
  assert by_case['ensemble_one_pass']['scored_rows_per_step'] == B * 3


@pytest.mark.slow
def test_ensemble_and_mixed_batches_score_as_their_alternatives(serving):
  by_case = {r['case']: r for r in serving}
  assert by_case['ensemble_one_pass']['same_scores_as_alternative'] is True
  assert by_case['mixed_task_batch']['same_scores_as_alternative'] is True


@pytest.mark.slow
def test_serving_table(serving):
  table = bench_serving.serving_table(serving)
  assert 'ensemble pass / one pass over a 3x batch' in table
  assert '3 separate passes / ensemble pass' in table
  assert '2 per-task batches / one mixed-task batch' in table


@pytest.mark.slow
def test_inference_cases(inference):
  by_case = {r['case']: r for r in inference}
  assert {'greedy_decode', 'rank_classification',
          'decode_label_length'} <= set(by_case)
  assert by_case['greedy_decode']['decoded_tokens_per_step'] == 2 * 4
  assert by_case['decode_label_length']['decoded_tokens_per_step'] == 2 * 2
  assert by_case['rank_classification']['num_classes'] == 3
  for name in ('greedy_decode', 'rank_classification', 'decode_label_length'):
    assert by_case[name]['recompilations'] == 0
    assert by_case[name]['backend_compiles_while_timing'] == 0
  assert inference[0]['decode_prefill_model_flops'] > inference[0][
      'decode_step_model_flops'] > 0
  table = bench_serving.inference_table(inference)
  assert 'Rank classification of 3 labels takes' in table
  assert 'cross-attention keys and values' in table


def test_random_label_ids_end_with_eos():
  labels = bench_serving.random_label_ids(np.random.default_rng(0), 4, 3, 50)
  assert labels.shape == (4, 3)
  assert np.all(labels[:, -1] == 1) and np.all(labels[:, :-1] >= 2)


def test_per_task_batches_must_split_evenly():
  with pytest.raises(ValueError, match='--serving_batch_size=5'):
    bench_serving.run_serving(batch_size=5, num_tasks=2, **_COMMON)
