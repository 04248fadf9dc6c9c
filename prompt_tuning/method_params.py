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
import dataclasses
import io
import json
import os
import sys
from typing import Dict, List, Mapping, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning import checkpoints
from prompt_tuning.methods import export as method_export
from prompt_tuning import methods
from prompt_tuning.model import t5


@dataclasses.dataclass(frozen=True)
class Count:
  """One method at one size."""
  method: str
  size: str
  trainable: int
  frozen_model: int

  @property
  def percent(self) -> float:
    """Trainable parameters as a percentage of the frozen model's."""
    return 100.0 * self.trainable / self.frozen_model


def parameter_shapes(config: t5.T5Config, preset: methods.Preset,
                     length: int) -> Dict[str, tuple]:
  """'/'-joined name -> shape of the model `preset` trains, by
  `jax.eval_shape` (nothing is allocated)."""
  preset = preset.with_length(length)
  module = t5.Transformer(config, prompt_length=preset.prompt_length(length),
                          methods=preset.methods)

  def init():
    return module.init(jax.random.PRNGKey(0), jnp.ones((1, 2), jnp.int32),
                       jnp.ones((1, 1), jnp.int32))['params']

  abstract = flax.core.meta.unbox(jax.eval_shape(init))
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract),
                                         sep='/')
  return {name: tuple(value.shape) for name, value in flat.items()}


def count(config: t5.T5Config, preset: methods.Preset, length: int,
          size: str = '') -> Count:
  """The preset's trainable parameters and the frozen model's, at `config`."""
  shapes = parameter_shapes(config, preset, length)
  selected = methods.method_param_names(sorted(shapes),
                                        preset.trainable_regexes)
  return Count(
      method=preset.name, size=size,
      trainable=sum(int(np.prod(shapes[n])) for n in selected),
      frozen_model=sum(int(np.prod(s)) for n, s in shapes.items()
                       if not method_export.is_method_param(n)))


def count_all(presets: Sequence[methods.Preset],
              configs: Mapping[str, t5.T5Config], length: int) -> List[Count]:
  return [count(config, preset, length, size)
          for preset in presets for size, config in configs.items()]


def _human(n: int) -> str:
  for unit, scale in (('B', 1e9), ('M', 1e6), ('K', 1e3)):
    if n >= scale:
      return f'{n / scale:.3g}{unit}'
  return str(n)


def markdown(counts: Sequence[Count], presets: Sequence[methods.Preset],
             sizes: Sequence[str], length: int) -> str:
  """Rows: methods; columns: sizes; cells 'count (percent of frozen)'."""
  by_key = {(c.method, c.size): c for c in counts}
  lines = [f'Trainable parameters per method (P = {length} for prompts and '
           'prefixes), and their share of the frozen model.', '',
           '| method | ' + ' | '.join(sizes) + ' |',
           '|---|' + '---:|' * len(sizes)]
  frozen = [by_key[(presets[0].name, s)].frozen_model for s in sizes]
  lines.append('| *frozen model* | ' + ' | '.join(f'{n:,}' for n in frozen)
               + ' |')
  for preset in presets:
    cells = []
    for size in sizes:
      c = by_key[(preset.name, size)]
      cells.append(f'{c.trainable:,} ({c.percent:.3g}%)')
    lines.append(f'| {preset.name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(counts: Sequence[Count], presets: Sequence[methods.Preset],
         sizes: Sequence[str], path: str) -> None:
  """Log-log: frozen model parameters against trainable share, per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(9, 5))
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.add_subplot(1, 1, 1)
  by_key = {(c.method, c.size): c for c in counts}
  colours = matplotlib.colormaps['tab20'].colors
  for index, preset in enumerate(presets):
    points = [by_key[(preset.name, s)] for s in sizes]
    axes.plot([p.frozen_model for p in points], [p.percent for p in points],
              marker='osD^v<>ph*XP'[index % 11], markersize=4,
              color=colours[(2 * index) % 20 + (2 * index) // 20],
              label=preset.name)
  axes.set_xscale('log')
  axes.set_yscale('log')
  axes.set_xlabel('frozen model parameters')
  axes.set_ylabel('trainable parameters (% of the frozen model)')
  axes.grid(True, which='major', alpha=0.3)
  axes.set_title('Trainable parameters by method and T5 size')
  axes.legend(fontsize=8, loc='center left', bbox_to_anchor=(1.01, 0.5))
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=120)
  checkpoints.atomic_write_bytes(path, buffer.getvalue())


def write(counts: Sequence[Count], presets: Sequence[methods.Preset],
          sizes: Sequence[str], length: int, output_dir: str) -> str:
  """Writes the .md, .png and .json files; returns the Markdown."""
  os.makedirs(output_dir, exist_ok=True)
  text = markdown(counts, presets, sizes, length)
  checkpoints.atomic_write_bytes(
      os.path.join(output_dir, 'method_params.md'), text.encode())
  plot(counts, presets, sizes, os.path.join(output_dir, 'method_params.png'))
  checkpoints.atomic_write_bytes(
      os.path.join(output_dir, 'method_params.json'),
      json.dumps([{**dataclasses.asdict(c), 'percent': c.percent}
                  for c in counts], indent=1).encode())
  return text


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


def main(argv: Sequence[str]) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--prompt_length', type=int, default=100,
                      help='P for prompts and prefixes (the paper: 100).')
  parser.add_argument('--methods', default='',
                      help='Comma-separated method names (default: all).')
  parser.add_argument('--sizes', default='',
                      help='Comma-separated T5 sizes (default: all).')
  args = parser.parse_args(argv)
  try:
    names = _names(args.methods, list(methods.PRESETS), 'method')
    sizes = _names(args.sizes, list(t5.CONFIGS), 'size')
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  presets = [methods.PRESETS[n] for n in names]
  configs = {s: t5.CONFIGS[s] for s in sizes}
  counts = count_all(presets, configs, args.prompt_length)
  print(write(counts, presets, sizes, args.prompt_length, args.output_dir))
  print(f'wrote method_params.md, .png and .json to {args.output_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
