"""The benchmark suites by name, run in one process with shared settings.

`python -m prompt_tuning.bench --suite=...` runs them; see that command for
what each suite measures.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from prompt_tuning.benchmarks import train_step as bench_train

SUITES = ('train', 'inference', 'serving', 'scaling')


def available_frameworks(frameworks: Sequence[str]
                         ) -> Tuple[List[str], Optional[str]]:
  """The frameworks to run; 'peft' dropped, with a note, if not installed."""
  frameworks = list(frameworks)
  if 'peft' in frameworks:
    from prompt_tuning.benchmarks import torch_cases as bench_torch  # pylint: disable=g-import-not-at-top
    if not bench_torch.available():
      return ([f for f in frameworks if f != 'peft'],
              f'PEFT cases skipped: {bench_torch.INSTALL_HINT}.')
  return frameworks, None


def run_suites(suites: Sequence[str], *, frameworks: Sequence[str],
               size: str, repeats: int, warmup_steps: int, dtype: str,
               seed: int, batch_size: int, input_length: int,
               target_length: int, prompt_length: int, steps_per_repeat: int,
               frozen_dtype: str, remat: bool, model_tuning_prompt: bool,
               decode_length: int, num_classes: int, label_length: int,
               serving_batch_size: int, num_prompts: int, num_tasks: int,
               scaling_axes: Sequence[str],
               scaling_values: Mapping[str, Sequence[int]],
               plot_dir: Optional[str] = None, background_load: int = 0
               ) -> Tuple[List[Dict[str, Any]], List[str]]:
  """Runs `suites` in `SUITES` order.

  Args:
    suites: names in `SUITES`.
    frameworks: as `available_frameworks` gives them.
    size, repeats, warmup_steps, dtype, seed: shared by every suite.
    batch_size, input_length, target_length, prompt_length: the case of the
      train, inference and scaling suites (serving: `serving_batch_size`).
    steps_per_repeat, frozen_dtype, remat, model_tuning_prompt: train (the
      scaling suite uses frozen_dtype and remat too).
    decode_length, num_classes, label_length: inference.
    serving_batch_size, num_prompts, num_tasks: serving.
    scaling_axes: which sweeps the scaling suite runs.
    scaling_values: the values of each sweep, e.g. {'prompt_length': [...],
      'batch_size': [...], 'input_length': [...]}.
    plot_dir: where the scaling suite writes its PNG curves (None: none).
    background_load: train: threads of a matmul loop run beside the timing
      (`bench_train.run_benchmark`), 0 for none.

  Returns:
    (one record per case, the Markdown sections of the summary).

  Raises:
    ValueError: an unknown suite name (listing the known ones), or a bad
      setting, naming its flag.
  """
  unknown = sorted(set(suites) - set(SUITES))
  if unknown:
    raise ValueError(f'--suite={",".join(suites)}: unknown {unknown}; '
                     f'expected some of {list(SUITES)}')
  frameworks, note = available_frameworks(frameworks)
  records, sections = [], []
  if note:
    sections.append(note)
  shared = dict(size=size, repeats=repeats, warmup_steps=warmup_steps,
                dtype=dtype, seed=seed)
  if 'train' in suites:
    suite = bench_train.run_benchmark(
        batch_size=batch_size, input_length=input_length,
        target_length=target_length, prompt_length=prompt_length,
        steps_per_repeat=steps_per_repeat, frozen_dtype=frozen_dtype,
        remat=remat, model_tuning_prompt=model_tuning_prompt,
        frameworks=frameworks, background_load=background_load, **shared)
    records += suite
    sections.append('### Train step\n\n' + bench_train.summary_table(suite))
  if 'inference' in suites:
    from prompt_tuning.benchmarks import serving as bench_serving  # pylint: disable=g-import-not-at-top
    suite = bench_serving.run_inference(
        batch_size=batch_size, input_length=input_length,
        prompt_length=prompt_length, decode_length=decode_length,
        num_classes=num_classes, label_length=label_length,
        frameworks=frameworks, **shared)
    records += suite
    sections.append('### Inference\n\n' + bench_serving.inference_table(
        suite))
  if 'serving' in suites:
    from prompt_tuning.benchmarks import serving as bench_serving  # pylint: disable=g-import-not-at-top
    suite = bench_serving.run_serving(
        batch_size=serving_batch_size, input_length=input_length,
        target_length=target_length, prompt_length=prompt_length,
        num_prompts=num_prompts, num_tasks=num_tasks, **shared)
    records += suite
    sections.append('### Serving many prompts\n\n'
                    + bench_serving.serving_table(suite))
  if 'scaling' in suites:
    from prompt_tuning.benchmarks import scaling as bench_scaling  # pylint: disable=g-import-not-at-top
    suite, curves = bench_scaling.run_scaling(
        axes=scaling_axes, batch_size=batch_size, input_length=input_length,
        target_length=target_length, prompt_length=prompt_length,
        values=dict(scaling_values), frameworks=frameworks,
        frozen_dtype=frozen_dtype, remat=remat, **shared)
    records += suite
    sections.append('### Scaling\n\n' + bench_scaling.scaling_table(
        suite, curves))
    if plot_dir:
      paths = bench_scaling.plot_curves(suite, curves, plot_dir)
      sections.append('Curves: ' + ', '.join(paths))
  return records, sections
