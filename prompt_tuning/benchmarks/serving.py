"""Benchmark suites for inference and for serving many prompts at once.

Run through `python -m prompt_tuning.bench --suite=inference,serving`.

inference (`run_inference`), one model with a prompt, on a batch of B:
- greedy decoding of L tokens with the key/value cache, ours
  (`EncoderDecoderModel.predict_batch`, one jitted call) against HF
  `generate` on the PEFT model holding the same weights and prompt (with
  `--frameworks` including peft); tokens/s is B L over the time;
- rank classification of C label strings (`rank_classify`: the encoder runs
  once per example, the C labels are decoded together as one batch of B C
  rows) against greedy decoding of the labels' length.

serving (`run_serving`), teacher-forced scoring passes (`score_batch`, the
work of evaluation and rank classification) of the frozen model:
- an ensemble of N prompts in one pass (each of B examples repeated N times,
  `prompt_ids` into the bank `[N, P, H]`, as `ensemble.expand_batch` does)
  against one pass over an N-times batch with one prompt (the same rows, no
  prompt gather: the cost floor) and against N separate passes of B, one per
  prompt;
- a mixed-task batch of B examples, each with its task's prompt from a bank
  of K, against K per-task batches of B / K with their own prompts.

Both ways of each pair must give the same scores; the records say whether
they do.

NOTE: decoding runs exactly L steps on both sides: our model is given an
end-of-sequence id that no token has, HF `generate` gets `min_new_tokens=L`
(with random weights, an early EOS would otherwise end some rows early and
make the two sides do different work).

Letters: B batch, T input length, U target length, P prompt length, H embed,
N prompts of an ensemble, K tasks, C label strings, L decode length.
"""
import dataclasses
import types
from typing import Any, Dict, List, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import costs
from prompt_tuning.benchmarks import train_step as bench_train
from prompt_tuning.benchmarks import common as bench_utils
from prompt_tuning.serving import ensemble
from prompt_tuning.training import partitioning
from prompt_tuning.training import trainer

PyTree = Any

# An end-of-sequence id no token has: decoding runs its full length.
_NO_EOS = types.SimpleNamespace(eos_id=-1)


def _jax_case(name: str, fn, args: Sequence[Any], mesh, rules,
              info: Optional[Dict[str, Any]] = None) -> bench_utils.Timed:
  """A timed case calling `jit(fn)(*args)` under the mesh; counts traces."""
  traces = trainer.TraceCounter()
  jitted = bench_utils.jit_counted(fn, traces)

  def call():
    with partitioning.mesh_context(mesh, rules):
      return jitted(*args)

  case = bench_utils.Timed(name, call, info=dict(info or {}))
  case.traces = traces
  return case


def _record(case, common: Dict[str, Any], per_step: Dict[str, float],
            compiles_while_timing: int) -> Dict[str, Any]:
  record = {'case': case.name, **common, **case.info,
            **bench_utils.summarise(case.times, 1, per_step),
            'backend_compiles_while_timing': compiles_while_timing}
  traces = getattr(case, 'traces', None)
  if traces is not None:
    record['step_compilations'] = traces.count
    record['recompilations'] = traces.count - 1
  return record


def _setup(size: str, dtype: str, prompt_length: int, seed: int):
  config = bench_utils.size_config(size, dtype)
  model, setup = bench_train.random_setup(config, prompt_length, seed)
  return config, model, setup


def _common(suite: str, size: str, config, repeats: int, warmup_steps: int,
            env: Dict[str, Any], **sizes) -> Dict[str, Any]:
  return {'suite': suite, 'size': size, 'dtype': config.dtype.name,
          'emb_dim': config.emb_dim, 'num_heads': config.num_heads,
          'head_dim': config.head_dim, 'mlp_dim': config.mlp_dim,
          'num_encoder_layers': config.num_encoder_layers,
          'num_decoder_layers': config.num_decoder_layers,
          'vocab_size': config.vocab_size, 'repeats': repeats,
          'steps_per_repeat': 1, 'warmup_steps': warmup_steps, **sizes,
          **env}


# ----------------------------------------------------------------------------
# Inference.
# ----------------------------------------------------------------------------


def random_label_ids(rng: np.random.Generator, num_classes: int,
                    label_length: int, vocab_size: int) -> np.ndarray:
  """C random label strings of U tokens, the last one EOS: int32 `[C, U]`."""
  labels = rng.integers(2, vocab_size, (num_classes, label_length), np.int32)
  labels[:, -1] = 1
  return labels


def run_inference(size: str = 'anchor', batch_size: int = 8,
                  input_length: int = 128, prompt_length: int = 100,
                  decode_length: int = 16, num_classes: int = 4,
                  label_length: int = 4, repeats: int = 10,
                  warmup_steps: int = 2, dtype: str = 'float32',
                  frameworks: Sequence[str] = ('jax',), seed: int = 0
                  ) -> List[Dict[str, Any]]:
  """Decoding and rank classification, interleaved; one record per case.

  Cases: greedy_decode (ours, L tokens), peft_generate (HF, L tokens; with
  'peft' in `frameworks`), rank_classification (ours, C labels of U tokens),
  decode_label_length (ours, greedy, U tokens).

  Raises:
    ValueError: a bad size, dtype or length.
    ImportError: 'peft' asked for but not installed.
  """
  bench_utils.check_positive(
      batch_size=batch_size, input_length=input_length,
      prompt_length=prompt_length, decode_length=decode_length,
      num_classes=num_classes, label_length=label_length, repeats=repeats,
      warmup_steps=warmup_steps)
  env = bench_utils.environment()  # the date is the run's start
  config, model, setup = _setup(size, dtype, prompt_length, seed)
  fixed_length = dataclasses.replace(model, output_vocabulary=_NO_EOS)
  rng = np.random.default_rng(seed)
  batch = bench_utils.random_batch(rng, batch_size, input_length,
                                   decode_length, config.vocab_size)
  labels = random_label_ids(rng, num_classes, label_length, config.vocab_size)
  # Decoding reads only the inputs and the decode length off the batch.
  decode_batch = {'encoder_input_tokens': batch['encoder_input_tokens'],
                  'decoder_input_tokens': batch['decoder_input_tokens']}
  label_batch = {'encoder_input_tokens': batch['encoder_input_tokens'],
                 'decoder_input_tokens': np.zeros((batch_size, label_length),
                                                  np.int32)}
  mesh, rules, params = setup.mesh, setup.rules, setup.params
  place = lambda b: partitioning.host_local_to_global(b, mesh)  # pylint: disable=unnecessary-lambda-assignment
  cases = [
      _jax_case('greedy_decode',
                lambda p, b: fixed_length.predict_batch(p, b, method='greedy'),
                (params, place(decode_batch)), mesh, rules,
                {'framework': 'jax', 'decoded_tokens': batch_size
                 * decode_length}),
      _jax_case('rank_classification',
                lambda p, b, l: model.rank_classify(p, b, l),
                (params, place({'encoder_input_tokens':
                                batch['encoder_input_tokens']}),
                 jnp.asarray(labels)), mesh, rules,
                {'framework': 'jax', 'num_classes': num_classes}),
      _jax_case('decode_label_length',
                lambda p, b: fixed_length.predict_batch(p, b, method='greedy'),
                (params, place(label_batch)), mesh, rules,
                {'framework': 'jax', 'decoded_tokens': batch_size
                 * label_length}),
  ]
  if 'peft' in frameworks:
    from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
    prompt, frozen = bench_train.prompt_and_weights(params)
    hf_model = bench_torch.hf_t5(frozen, config,
                                 dropout_rate=0.0)
    peft_model = bench_torch.peft_prompt_model(hf_model, prompt)
    case = bench_torch.generate_case('peft_generate', peft_model, batch,
                                     decode_length)
    case.info.update({'framework': 'peft',
                      'decoded_tokens': batch_size * decode_length})
    cases.insert(1, case)
  for case in cases:
    bench_utils.warm_up(case, warmup_steps)
  if 'peft' in frameworks:
    ours = np.asarray(cases[0].call())
    theirs = cases[1].call()[:, 1:].cpu().numpy()  # without the start token
    cases[1].info['token_agreement_with_ours'] = float(
        np.mean(ours == theirs))
  compiles = bench_utils.interleave(cases, repeats)
  common = _common('inference', size, config, repeats, warmup_steps, env,
                   batch_size=batch_size, input_length=input_length,
                   prompt_length=prompt_length, decode_length=decode_length,
                   label_length=label_length)
  flops = costs.decode_flops(config, batch_size,
                                  prompt_length + input_length, decode_length)
  common.update({'decode_step_model_flops': flops['step'],
                 'decode_prefill_model_flops': flops['prefill']})
  records = []
  for case in cases:
    per_step = {'examples': batch_size}
    if 'decoded_tokens' in case.info:
      per_step['decoded_tokens'] = case.info['decoded_tokens']
    records.append(_record(case, common, per_step, compiles))
  return records


def inference_table(records: Sequence[Dict[str, Any]]) -> str:
  """Markdown: decoding ours vs PEFT, rank classification vs decoding."""
  by_case = {r['case']: r for r in records}
  first = records[0]
  num_classes = by_case['rank_classification']['num_classes']
  rows = []
  for name, what in (
      ('greedy_decode', f'ours, greedy, {first["decode_length"]} tokens'),
      ('peft_generate', f'PEFT generate, greedy, {first["decode_length"]} '
       'tokens'),
      ('rank_classification', f'ours, rank {num_classes} labels of '
       f'{first["label_length"]} tokens'),
      ('decode_label_length', f'ours, greedy, {first["label_length"]} '
       'tokens')):
    r = by_case.get(name)
    if r is None:
      continue
    rows.append([what, bench_utils.fmt(r['step_time_median_s'], 'ms'),
                 bench_utils.fmt(r['step_time_iqr_s'], 'ms'),
                 bench_utils.fmt(r.get('decoded_tokens_per_s'), 'num'),
                 bench_utils.fmt(r['examples_per_s'], 'num'),
                 bench_utils.fmt(r.get('step_compilations'), 'int')])
  lines = [bench_utils.config_line(first) +
           f'; prompt {first["prompt_length"]}', '',
           bench_utils.markdown_table(
               ['case (batch of %d)' % first['batch_size'],
                'time / batch, median', 'IQR', 'decoded tokens/s',
                'examples/s', 'compilations'], rows, 'r'), '']
  decode, peft = by_case['greedy_decode'], by_case.get('peft_generate')
  if peft is not None:
    lines.append(
        f'Greedy decoding with the cache: ours '
        f'{decode["decoded_tokens_per_s"] / peft["decoded_tokens_per_s"]:.2f}x'
        f' PEFT\'s tokens/s; the same tokens as PEFT at '
        f'{100 * peft["token_agreement_with_ours"]:.1f}% of positions.')
  long, short = by_case['greedy_decode'], by_case['decode_label_length']
  extra_steps = first['decode_length'] - first['label_length']
  if extra_steps > 0:
    step_s = (long['step_time_median_s'] - short['step_time_median_s']
              ) / extra_steps
    step_flops = first['decode_step_model_flops']
    both = step_flops + first['decode_prefill_model_flops']
    lines.append(
        f'One decoding step took {bench_utils.fmt(step_s, "ms")} (the '
        f'{first["decode_length"]}- and {first["label_length"]}-token '
        'decodes\' median difference per token): '
        f'{bench_utils.fmt(step_flops / step_s, "flops")}/s for the step\'s '
        f'own {bench_utils.fmt(step_flops, "flops")}; had each step also '
        f'projected the {first["prompt_length"]} + {first["input_length"]} '
        'encoder positions to cross-attention keys and values, it would have '
        f'run {bench_utils.fmt(both / step_s, "flops")}/s '
        '(`bench_costs.decode_flops`).')
  rank, short = by_case['rank_classification'], by_case['decode_label_length']
  lines.append(
      f'Rank classification of {rank["num_classes"]} labels takes '
      f'{rank["step_time_median_s"] / short["step_time_median_s"]:.2f}x the '
      f'time of greedy decoding of the labels\' length.')
  lines.append(f'XLA compilations while timing: '
               f'{first["backend_compiles_while_timing"]}.')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Serving many prompts.
# ----------------------------------------------------------------------------


def run_serving(size: str = 'anchor', batch_size: int = 8,
                input_length: int = 128, target_length: int = 8,
                prompt_length: int = 100, num_prompts: int = 5,
                num_tasks: int = 4, repeats: int = 10, warmup_steps: int = 2,
                dtype: str = 'float32', seed: int = 0
                ) -> List[Dict[str, Any]]:
  """Ensemble and mixed-task passes against their alternatives.

  Cases: ensemble_one_pass (B examples x N prompts in one pass),
  one_prompt_n_x_batch (N B rows, one prompt), separate_passes (N passes of
  B), mixed_task_batch (B examples, K prompts), per_task_batches (K passes of
  B / K).

  Raises:
    ValueError: a bad size, dtype or length, or B not a multiple of K.
  """
  bench_utils.check_positive(
      batch_size=batch_size, input_length=input_length,
      target_length=target_length, prompt_length=prompt_length,
      num_prompts=num_prompts, num_tasks=num_tasks, repeats=repeats,
      warmup_steps=warmup_steps)
  if batch_size % num_tasks:
    raise ValueError(f'--serving_batch_size={batch_size} does not split into '
                     f'--num_tasks={num_tasks} equal per-task batches; '
                     'expected a multiple')
  env = bench_utils.environment()  # the date is the run's start
  # The frozen model has no prompt of its own; prompts come as arguments.
  config, model, setup = _setup(size, dtype, 0, seed)
  mesh, rules, params = setup.mesh, setup.rules, setup.params
  rng = np.random.default_rng(seed)
  num_banked = max(num_prompts, num_tasks)
  # [N, P, H], the scale of `prompts.random_uniform`.
  bank = jnp.asarray(rng.uniform(-0.5, 0.5, (num_banked, prompt_length,
                                             config.emb_dim)), jnp.float32)
  batch = bench_utils.random_batch(rng, batch_size, input_length,
                                   target_length, config.vocab_size)
  place = lambda b: partitioning.host_local_to_global(b, mesh)  # pylint: disable=unnecessary-lambda-assignment
  # [B*N, ...], row b*N + i is example b (as the ensemble's rows).
  big = {k: np.repeat(v, num_prompts, axis=0) for k, v in batch.items()}
  per_task = batch_size // num_tasks
  task_ids = np.arange(batch_size, dtype=np.int32) % num_tasks  # [B]
  # Per-task batches: task k's examples are rows k, k + K, ...
  task_batches = [place({k: v[task_ids == t] for k, v in batch.items()})
                  for t in range(num_tasks)]
  ensemble_bank = bank[:num_prompts]
  task_bank = bank[:num_tasks]

  def ensembled(p, b, prompts):
    rows = ensemble.expand_batch(b, prompts.shape[0])  # [B*N, ...]
    return model.score_batch(p, rows, prompt=prompts)  # [B*N]

  def score(p, b, prompt):
    return model.score_batch(p, b, prompt=prompt)  # [rows]

  def mixed(p, b, ids, prompts):
    return model.score_batch(p, {**b, 'prompt_ids': ids}, prompt=prompts)

  placed = place(batch)
  separate_traces = trainer.TraceCounter()
  separate_fn = bench_utils.jit_counted(score, separate_traces)
  per_task_traces = trainer.TraceCounter()
  per_task_fn = bench_utils.jit_counted(score, per_task_traces)

  def separate():
    with partitioning.mesh_context(mesh, rules):
      return [separate_fn(params, placed, ensemble_bank[i])
              for i in range(num_prompts)]

  def per_task_passes():
    with partitioning.mesh_context(mesh, rules):
      return [per_task_fn(params, task_batches[t], task_bank[t])
              for t in range(num_tasks)]

  separate_case = bench_utils.Timed('separate_passes', separate,
                                    info={'passes': num_prompts,
                                          'rows_per_pass': batch_size})
  separate_case.traces = separate_traces
  per_task_case = bench_utils.Timed('per_task_batches', per_task_passes,
                                    info={'passes': num_tasks,
                                          'rows_per_pass': per_task})
  per_task_case.traces = per_task_traces
  cases = [
      _jax_case('ensemble_one_pass', ensembled,
                (params, placed, ensemble_bank), mesh, rules,
                {'passes': 1, 'rows_per_pass': batch_size * num_prompts}),
      _jax_case('one_prompt_n_x_batch', score,
                (params, place(big), ensemble_bank[0]), mesh, rules,
                {'passes': 1, 'rows_per_pass': batch_size * num_prompts}),
      separate_case,
      _jax_case('mixed_task_batch', mixed,
                (params, placed, place({'ids': task_ids})['ids'], task_bank),
                mesh, rules, {'passes': 1, 'rows_per_pass': batch_size}),
      per_task_case,
  ]
  for case in cases:
    bench_utils.warm_up(case, warmup_steps)
  # Both ways of each pair must give the same scores.
  together = np.asarray(cases[0].call()).reshape(batch_size, num_prompts)
  alone = np.stack([np.asarray(s) for s in separate()], axis=1)  # [B, N]
  mixed_scores = np.asarray(cases[3].call())  # [B]
  by_task = np.zeros(batch_size, np.float32)
  for t, scores in enumerate(per_task_passes()):
    by_task[task_ids == t] = np.asarray(scores)
  same = {'ensemble_one_pass': _close(together, alone),
          'mixed_task_batch': _close(mixed_scores, by_task)}
  compiles = bench_utils.interleave(cases, repeats)
  common = _common('serving', size, config, repeats, warmup_steps, env,
                   batch_size=batch_size, input_length=input_length,
                   target_length=target_length, prompt_length=prompt_length,
                   num_prompts=num_prompts, num_tasks=num_tasks)
  records = []
  for case in cases:
    examples = (batch_size * num_prompts if case.name in (
        'ensemble_one_pass', 'one_prompt_n_x_batch', 'separate_passes')
                else batch_size)
    record = _record(case, common, {'scored_rows': examples}, compiles)
    if case.name in same:
      record['same_scores_as_alternative'] = same[case.name]
    records.append(record)
  return records


def _close(a: np.ndarray, b: np.ndarray) -> bool:
  """Equal up to float32 rounding of differently batched matmuls."""
  return bool(np.allclose(a, b, rtol=1e-4, atol=1e-3 * max(
      1.0, float(np.max(np.abs(b))))))


def serving_table(records: Sequence[Dict[str, Any]]) -> str:
  """Markdown: the five serving cases and the two comparisons' ratios."""
  by_case = {r['case']: r for r in records}
  first = records[0]
  n, k, b = first['num_prompts'], first['num_tasks'], first['batch_size']
  labels = {
      'ensemble_one_pass': f'ensemble of {n} prompts, one pass of {b}x{n} '
                           'rows',
      'one_prompt_n_x_batch': f'one prompt, one pass of {b * n} rows',
      'separate_passes': f'{n} separate passes of {b} rows',
      'mixed_task_batch': f'mixed-task batch of {b} rows, {k} prompts',
      'per_task_batches': f'{k} per-task batches of {b // k} rows',
  }
  rows = [[labels[r['case']], bench_utils.fmt(r['step_time_median_s'], 'ms'),
           bench_utils.fmt(r['step_time_iqr_s'], 'ms'),
           bench_utils.fmt(r['scored_rows_per_s'], 'num'),
           bench_utils.fmt(r.get('step_compilations'), 'int')]
          for r in records]
  ens, big = by_case['ensemble_one_pass'], by_case['one_prompt_n_x_batch']
  sep = by_case['separate_passes']
  mixed, per_task = by_case['mixed_task_batch'], by_case['per_task_batches']
  t = lambda r: r['step_time_median_s']  # pylint: disable=unnecessary-lambda-assignment
  return '\n'.join([
      bench_utils.config_line(first) + f'; prompt {first["prompt_length"]}; '
      'teacher-forced scoring passes', '',
      bench_utils.markdown_table(
          ['case', 'time, median', 'IQR', 'scored rows/s', 'compilations'],
          rows, 'r'), '',
      f'- ensemble pass / one pass over a {n}x batch: '
      f'{t(ens) / t(big):.3f} (target at most 1.1)',
      f'- {n} separate passes / ensemble pass: {t(sep) / t(ens):.3f} '
      '(target at least 2.5)',
      f'- {k} per-task batches / one mixed-task batch: '
      f'{t(per_task) / t(mixed):.3f}',
      f'- same scores both ways: ensemble {ens["same_scores_as_alternative"]},'
      f' mixed-task {mixed["same_scores_as_alternative"]}; XLA compilations '
      f'while timing: {first["backend_compiles_while_timing"]}'])
