"""Trainable parameters of every method at every T5 size (the paper's
parameter-usage figure), from the abstract parameter tree: no weights.

Counts come from `jax.eval_shape` of each model's init (at one and two
layers per stack, extended to the depth: `count`), the trainable set from
the method's regexes, exactly as the trainer splits the tree. For
reparameterised methods (P-tuning's encoder, prefix tuning's MLP) the count
is what trains; what is served is smaller (a prompt, plain prefixes).
`python -m prompt_tuning.method_params` writes the table and figure.
"""
import dataclasses
import io
import json
import os
from typing import Dict, List, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.methods import presets as presets_lib
from prompt_tuning.model import t5
from prompt_tuning.utils import files
from prompt_tuning.utils import tables
from prompt_tuning.utils import trees


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


def preset_parameter_shapes(config: t5.T5Config, preset: presets_lib.Preset,
                            length: int) -> Dict[str, tuple]:
  """'/'-joined name -> shape of the model `preset` trains (its methods'
  parameters included), by `jax.eval_shape` (nothing is allocated)."""
  preset = preset.with_length(length)
  module = t5.Transformer(config, prompt_length=preset.prompt_length(length),
                          methods=preset.methods)

  def init():
    return module.init(jax.random.PRNGKey(0), jnp.ones((1, 2), jnp.int32),
                       jnp.ones((1, 1), jnp.int32))['params']

  abstract = flax.core.meta.unbox(jax.eval_shape(init))
  flat = trees.flatten(abstract)
  return {name: tuple(value.shape) for name, value in flat.items()}


def count_tree(config: t5.T5Config, preset: presets_lib.Preset, length: int
               ) -> np.ndarray:
  """[trainable, frozen model] parameters of the whole tree at `config`."""
  shapes = preset_parameter_shapes(config, preset, length)
  selected = presets_lib.method_param_names(sorted(shapes),
                                        preset.trainable_regexes)
  return np.array([
      sum(int(np.prod(shapes[n])) for n in selected),
      sum(int(np.prod(s)) for n, s in shapes.items()
          if not presets_lib.is_method_param(n))])


def count(config: t5.T5Config, preset: presets_lib.Preset, length: int,
          size: str = '') -> Count:
  """The preset's trainable parameters and the frozen model's, at `config`.

  Every encoder layer holds the same parameters, and so does every decoder
  layer (methods included), so the tree is counted at depths 1+1 and 2+2
  (where the stacks are equally deep, as in every T5 size) or 1+1, 2+1 and
  1+2, and extended to the config's depth: the same numbers as counting the
  whole tree (`count_tree`; tests/test_method_params.py checks every preset),
  without tracing XXL's 48 layers once per method.
  """
  def at(encoder: int, decoder: int) -> np.ndarray:
    return count_tree(dataclasses.replace(
        config, num_encoder_layers=encoder, num_decoder_layers=decoder),
                      preset, length)
  base = at(1, 1)
  if config.num_encoder_layers == config.num_decoder_layers:
    total = base + (config.num_encoder_layers - 1) * (at(2, 2) - base)
  else:
    total = (base + (config.num_encoder_layers - 1) * (at(2, 1) - base)
             + (config.num_decoder_layers - 1) * (at(1, 2) - base))
  return Count(method=preset.name, size=size, trainable=int(total[0]),
               frozen_model=int(total[1]))


def count_all(presets: Sequence[presets_lib.Preset],
              configs: Mapping[str, t5.T5Config], length: int) -> List[Count]:
  return [count(config, preset, length, size)
          for preset in presets for size, config in configs.items()]


def markdown(counts: Sequence[Count], presets: Sequence[presets_lib.Preset],
             sizes: Sequence[str], length: int) -> str:
  """Rows: methods; columns: sizes; cells 'count (percent of frozen)'."""
  by_key = {(c.method, c.size): c for c in counts}
  frozen = [by_key[(presets[0].name, s)].frozen_model for s in sizes]
  rows = [['*frozen model*'] + [f'{n:,}' for n in frozen]]
  for preset in presets:
    cells = []
    for size in sizes:
      c = by_key[(preset.name, size)]
      cells.append(f'{c.trainable:,} ({c.percent:.3g}%)')
    rows.append([preset.name] + cells)
  return (f'Trainable parameters per method (P = {length} for prompts and '
          'prefixes), and their share of the frozen model.\n\n' +
          tables.markdown_table(['method'] + list(sizes), rows,
                                align='l' + 'r' * len(sizes), escape=False))


def plot(counts: Sequence[Count], presets: Sequence[presets_lib.Preset],
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
  files.atomic_write_bytes(path, buffer.getvalue())


def write(counts: Sequence[Count], presets: Sequence[presets_lib.Preset],
          sizes: Sequence[str], length: int, output_dir: str) -> str:
  """Writes the .md, .png and .json files; returns the Markdown."""
  os.makedirs(output_dir, exist_ok=True)
  text = markdown(counts, presets, sizes, length)
  files.atomic_write_bytes(
      os.path.join(output_dir, 'method_params.md'), text.encode())
  plot(counts, presets, sizes, os.path.join(output_dir, 'method_params.png'))
  files.atomic_write_bytes(
      os.path.join(output_dir, 'method_params.json'),
      json.dumps([{**dataclasses.asdict(c), 'percent': c.percent}
                  for c in counts], indent=1).encode())
  return text
