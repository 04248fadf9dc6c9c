r"""A learned prompt to and from HF PEFT's prompt-tuning adapter format.

    python -m prompt_tuning.peft_interop export --model_dir=/tmp/x \
      [--step=N] [--output_dir=/tmp/x/peft] \
      [--base_model_name_or_path=google/t5-v1_1-base]

exports a training run's best prompt (or `--step`'s; default output
MODEL_DIR/peft); any prompt file:

    python -m prompt_tuning.peft_interop export \
      --prompt=/tmp/x/best_prompt.npy --output_dir=/tmp/x/peft \
      --base_model_name_or_path=google/t5-v1_1-base
    python -m prompt_tuning.peft_interop import --peft_dir=/tmp/x/peft \
      --output=/tmp/x/prompt.npy

Load an export in PyTorch with
`peft.PeftModel.from_pretrained(T5ForConditionalGeneration..., '/tmp/x/peft')`.
The format, and how our encoder prompt maps onto PEFT's submodules, is
described in `prompt_tuning.interop.peft`.
"""
import json
import sys

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils


_USAGE = ('usage: python -m prompt_tuning.peft_interop export '
          '(--model_dir=RUN [--step=N] | --prompt=P.npy --output_dir=DIR) '
          '[--base_model_name_or_path=NAME] '
          '[--config_overrides=JSON]\n'
          '       python -m prompt_tuning.peft_interop import --peft_dir=DIR '
          '--output=P.npy')


def _define_flags():
  """Defines the CLI's flags (only when run as a program)."""
  flags.DEFINE_string('model_dir', None, 'export: a training run; its best '
                      'prompt (or --step\'s) is exported.')
  flags.DEFINE_integer('step', None, 'export: with --model_dir, the prompt '
                       'saved at this step.')
  flags.DEFINE_string('prompt', None, 'export: prompt .npy file [P, H].')
  flags.DEFINE_string('output_dir', None, 'export: adapter directory to write '
                      '(with --model_dir, default MODEL_DIR/peft).')
  flags.DEFINE_string('base_model_name_or_path', None,
                      'export: the HF base model, e.g. google/t5-v1_1-base.')
  flags.DEFINE_string('config_overrides', None,
                      'export: JSON object of other adapter_config.json '
                      'fields, e.g. \'{"num_layers": 12}\'.')
  flags.DEFINE_string('peft_dir', None, 'import: adapter directory to read.')
  flags.DEFINE_string('output', None, 'import: prompt .npy file to write.')


def _require(name: str, command: str) -> str:
  value = getattr(flags.FLAGS, name)
  if not value:
    raise app.UsageError(f'{command} needs --{name}\n{_USAGE}')
  return value


def main(argv):
  if len(argv) != 2 or argv[1] not in ('export', 'import'):
    raise app.UsageError(f'expected one command, export or import; got '
                         f'{argv[1:]}\n{_USAGE}')
  command = argv[1]
  from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
  from prompt_tuning.interop import peft  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import run_dir  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import run_record  # pylint: disable=g-import-not-at-top
  try:
    if command == 'export':
      overrides = None
      if flags.FLAGS.config_overrides:
        try:
          overrides = json.loads(flags.FLAGS.config_overrides)
        except json.JSONDecodeError as e:
          raise ValueError(f'--config_overrides is not JSON: {e}') from e
        if not isinstance(overrides, dict):
          raise ValueError('--config_overrides must be a JSON object; got '
                           f'{flags.FLAGS.config_overrides}')
      model_dir = flags.FLAGS.model_dir
      if model_dir:
        if flags.FLAGS.prompt:
          raise app.UsageError('export takes --model_dir or --prompt, not '
                               f'both\n{_USAGE}')
        prompt_path = run_record.best_prompt_file(model_dir, flags.FLAGS.step)
        out_dir = flags.FLAGS.output_dir or run_dir.peft_dir(model_dir)
      else:
        prompt_path = _require('prompt', command)
        out_dir = _require('output_dir', command)
      prompt = prompt_files.load_prompt(prompt_path)
      peft.export_peft(
          prompt, out_dir,
          base_model_name_or_path=flags.FLAGS.base_model_name_or_path,
          config_overrides=overrides)
      print(f'wrote {out_dir}/{{{peft.CONFIG_FILE},{peft.WEIGHTS_FILE}}} '
            f'(prompt {list(prompt.shape)} {prompt.dtype})')
    else:
      peft_dir = _require('peft_dir', command)
      output = _require('output', command)
      prompt = peft.import_peft(peft_dir)
      prompt_files.save_prompt(prompt, output)
      print(f'wrote {output} (prompt {list(prompt.shape)} {prompt.dtype})')
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  _define_flags()
  gin_utils.run(main, tensorflow=False)
