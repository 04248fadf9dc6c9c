r"""Trainable parameters of every method at every T5 size (the paper's
parameter-usage figure), from the abstract parameter tree: no weights.

    python -m prompt_tuning.method_params --output_dir=/tmp/method_params \
      [--prompt_length=100] [--methods=prompt_tuning,lora,...] \
      [--sizes=small,base,large,xl,xxl]

Prints a Markdown table (each method's trainable parameter count and its
percentage of the frozen model's) and writes it as `method_params.md`, with
`method_params.png` (log axes: frozen model size against trainable share) and
`method_params.json`, to `--output_dir`.

Counts come from `jax.eval_shape` of each model's init, the trainable set
from the method's regexes, exactly as the trainer splits the tree. For
reparameterised methods (P-tuning's encoder, prefix tuning's MLP) the count
is what trains; what is served is smaller (a prompt, plain prefixes).
"""
import sys
from typing import List, Optional, Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils


def _names(value: Optional[str], known: Sequence[str], what: str
           ) -> List[str]:
  if not value:
    return list(known)
  names = [v.strip() for v in value.split(',') if v.strip()]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f'unknown {what} {unknown}; known {what}s: '
                     f'{", ".join(known)}')
  return names


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags in `flag_values`."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('output_dir', None, 'Where method_params.md, .png and '
                      '.json go.', **fv)
  flags.DEFINE_integer('prompt_length', 100,
                       'P for prompts and prefixes (the paper: 100).', **fv)
  flags.DEFINE_string('methods', '',
                      'Comma-separated method names (default: all).', **fv)
  flags.DEFINE_string('sizes', '',
                      'Comma-separated T5 sizes (default: all).', **fv)
  flags.mark_flag_as_required('output_dir', flag_values=flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Counts, prints and writes the table.

  Returns:
    The exit status: 2 for an unknown method or size.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  from prompt_tuning.experiments import parameter_counts  # pylint: disable=g-import-not-at-top
  from prompt_tuning.methods import presets as presets_lib  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import t5  # pylint: disable=g-import-not-at-top
  try:
    names = _names(flag_values.methods, list(presets_lib.PRESETS), 'method')
    sizes = _names(flag_values.sizes, list(t5.CONFIGS), 'size')
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  presets = [presets_lib.PRESETS[n] for n in names]
  configs = {s: t5.CONFIGS[s] for s in sizes}
  length, output_dir = flag_values.prompt_length, flag_values.output_dir
  counts = parameter_counts.count_all(presets, configs, length)
  print(parameter_counts.write(counts, presets, sizes, length, output_dir))
  print(f'wrote method_params.md, .png and .json to {output_dir}')
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
