r"""Converts an HF transformers T5 1.1 model folder into a t5x checkpoint.

    python -m prompt_tuning.convert_hf --hf_dir=/tmp/t5-base-lm-adapt \
      --output_dir=/tmp/t5_base_lm_adapt/checkpoint_0

`--hf_dir` is a folder as `save_pretrained` or a hub download leaves it:
`config.json` with `model.safetensors` (single or sharded),
`flax_model.msgpack`, or `pytorch_model.bin` (single or sharded; needs torch,
`pip install -e ".[hf]"`). The weights are checked against `config.json`,
written as a t5x checkpoint, and the `t5.T5Config` gin bindings of the model
are printed, to use with `models/t5_1_1_prompt.gin` in place of a
`models/sizes/*.gin` file.

Training needs no conversion: `INITIAL_CHECKPOINT_PATH` may name the HF
folder itself.
"""
from typing import Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags in `flag_values`."""
  flags.DEFINE_string('hf_dir', None, 'HF model folder (or one weights file '
                      'with its config.json beside it).',
                      flag_values=flag_values)
  flags.DEFINE_string('output_dir', None, 't5x checkpoint directory to write, '
                      'e.g. .../checkpoint_0.', flag_values=flag_values)
  flags.DEFINE_integer('step', 0, 'Step recorded in the checkpoint.',
                       flag_values=flag_values)
  flags.DEFINE_bool('overwrite', False, 'Replace an existing --output_dir.',
                    flag_values=flag_values)
  flags.mark_flags_as_required(['hf_dir', 'output_dir'],
                               flag_values=flag_values)


def main(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS
         ) -> int:
  """Reads the HF folder, writes the t5x checkpoint, prints the gin."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  from prompt_tuning.checkpoints import hf_config  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import hf_folders  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import t5x  # pylint: disable=g-import-not-at-top
  from prompt_tuning.utils import trees  # pylint: disable=g-import-not-at-top
  try:
    flat, config = hf_folders.read_hf_model(flag_values.hf_dir)
  except ImportError as e:  # .bin weights without torch: one line, no trace.
    raise ValueError(str(e)) from e
  t5x.save_t5x(trees.unflatten(flat), flag_values.output_dir,
               step=flag_values.step, overwrite=flag_values.overwrite)
  print(f'wrote t5x checkpoint {flag_values.output_dir} ({len(flat)} '
        f'parameters) from {flag_values.hf_dir}')
  if config is not None:
    fields = hf_config.model_fields(config, flag_values.hf_dir)
    print('gin bindings of this model:\n\nt5.T5Config:')
    for name in hf_config.ARCHITECTURE_FIELDS:
      print(f'  {name} = {fields[name]!r}')
    if fields['logits_via_embedding']:
      print('  logits_via_embedding = True')
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
