r"""A training run's method to and from HF PEFT adapters.

    python -m prompt_tuning.peft_interop export --model_dir=/tmp/x \
      [--step=N] [--output_dir=/tmp/x/peft] \
      [--base_model_name_or_path=google/t5-v1_1-base]

exports a training run as the PEFT adapter of its method (default output
MODEL_DIR/peft): a prompt run's best prompt (or `--step`'s), P-tuning's and
residual prompts' encoder as the plain prompt it reduces to
(`PROMPT_TUNING`), LoRA as a `LoraConfig` adapter and IA3 as an `IA3Config`
one (both from the run's last train state, with the rank, alpha and target
modules it was trained with). Methods PEFT cannot express (deep prompts,
adapters) fail in one line. Any prompt file:

    python -m prompt_tuning.peft_interop export \
      --prompt=/tmp/x/best_prompt.npy --output_dir=/tmp/x/peft \
      --base_model_name_or_path=google/t5-v1_1-base

An adapter PEFT saved (prompt tuning, LoRA or IA3), for evaluation or more
training here:

    python -m prompt_tuning.peft_interop import --peft_dir=/tmp/x/peft \
      --output_dir=/tmp/x/imported [--model_dir=/tmp/x]

writes `prompt.npy` or `method_params.safetensors` and `serve.gin` (include
it after an eval config, or after a training run's method gin file); with
`--model_dir` every tensor is checked against that run's model first.
`import --peft_dir=... --output=P.npy` writes a prompt adapter's `.npy` only.

Load an export in PyTorch with
`peft.PeftModel.from_pretrained(T5ForConditionalGeneration..., '/tmp/x/peft')`.
The formats are described in `prompt_tuning.interop.peft` (prompts) and
`prompt_tuning.interop.peft_methods` (LoRA, IA3).
"""
import json
from typing import Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils


_USAGE = ('usage: python -m prompt_tuning.peft_interop export '
          '(--model_dir=RUN [--step=N] | --prompt=P.npy --output_dir=DIR) '
          '[--base_model_name_or_path=NAME] '
          '[--config_overrides=JSON]\n'
          '       python -m prompt_tuning.peft_interop import --peft_dir=DIR '
          '(--output_dir=OUT [--model_dir=RUN] | --output=P.npy)')


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the CLI's flags in `flag_values`."""
  define = dict(flag_values=flag_values)
  flags.DEFINE_string('model_dir', None, 'export: a training run, exported '
                      'as the adapter of its method. import: a run whose '
                      'model the adapter must fit.', **define)
  flags.DEFINE_integer('step', None, 'export: with --model_dir of a prompt '
                       'run, the prompt saved at this step.', **define)
  flags.DEFINE_string('prompt', None, 'export: prompt .npy file [P, H].',
                      **define)
  flags.DEFINE_string('output_dir', None, 'export: adapter directory to write '
                      '(with --model_dir, default MODEL_DIR/peft). import: '
                      'directory for our files and serve.gin.', **define)
  flags.DEFINE_string('base_model_name_or_path', None,
                      'export: the HF base model, e.g. google/t5-v1_1-base.',
                      **define)
  flags.DEFINE_string('config_overrides', None,
                      'export: JSON object of other adapter_config.json '
                      'fields, e.g. \'{"revision": "main"}\'.', **define)
  flags.DEFINE_string('peft_dir', None, 'import: adapter directory to read.',
                      **define)
  flags.DEFINE_string('output', None, 'import: prompt .npy file to write '
                      '(prompt adapters).', **define)


def _require(flag_values: flags.FlagValues, name: str, command: str) -> str:
  value = getattr(flag_values, name)
  if not value:
    raise app.UsageError(f'{command} needs --{name}\n{_USAGE}')
  return value


def _overrides(flag_values: flags.FlagValues):
  if not flag_values.config_overrides:
    return None
  try:
    overrides = json.loads(flag_values.config_overrides)
  except json.JSONDecodeError as e:
    raise ValueError(f'--config_overrides is not JSON: {e}') from e
  if not isinstance(overrides, dict):
    raise ValueError('--config_overrides must be a JSON object; got '
                     f'{flag_values.config_overrides}')
  return overrides


def _export_method_run(flag_values: flags.FlagValues, model_dir: str,
                       out_dir: str, common) -> str:
  """A method run (not a prompt alone): its last train state as the
  adapter of its method; the line to print."""
  from prompt_tuning.cli import console  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import run_config  # pylint: disable=g-import-not-at-top
  from prompt_tuning.interop import peft_runs  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import prompts  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import train_state  # pylint: disable=g-import-not-at-top
  console.hide_gpus_from_tensorflow()  # The run's gin files load its tasks.
  run_config.configure(model_dir)
  arguments = run_config.train_arguments()
  step, trained = train_state.last_trainable_params(model_dir)
  if flag_values.step is not None and flag_values.step != step:
    raise ValueError(f'the run in {model_dir} trained a method, not a prompt '
                     f'alone: it is exported at its last train state, step '
                     f'{step}, not step {flag_values.step}')
  peft_type = peft_runs.export_trained(
      arguments['model'].module, trained,
      arguments.get('trainable_regexes', (prompts.PROMPT_REGEX,)), out_dir,
      **common)
  return f'wrote a PEFT {peft_type} adapter of step {step} to {out_dir}'


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) != 2 or argv[1] not in ('export', 'import'):
    raise app.UsageError(f'expected one command, export or import; got '
                         f'{argv[1:]}\n{_USAGE}')
  command = argv[1]
  from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import run_dir  # pylint: disable=g-import-not-at-top
  from prompt_tuning.cli import run_config  # pylint: disable=g-import-not-at-top
  from prompt_tuning.interop import peft  # pylint: disable=g-import-not-at-top
  from prompt_tuning.interop import peft_runs  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import run_record  # pylint: disable=g-import-not-at-top
  from prompt_tuning.utils import files  # pylint: disable=g-import-not-at-top
  model_dir = flag_values.model_dir
  if command == 'export':
    common = dict(base_model_name_or_path=flag_values.base_model_name_or_path,
                  config_overrides=_overrides(flag_values))
    if model_dir and flag_values.prompt:
      raise app.UsageError(f'export takes --model_dir or --prompt, not both'
                           f'\n{_USAGE}')
    if model_dir:
      out_dir = flag_values.output_dir or run_dir.peft_dir(model_dir)
      if (files.exists(run_dir.run_record_path(model_dir))
          and not run_config.is_prompt_run(run_record.read(model_dir))):
        print(_export_method_run(flag_values, model_dir, out_dir, common))
        return
      prompt_path = run_record.best_prompt_file(model_dir, flag_values.step)
    else:
      prompt_path = _require(flag_values, 'prompt', command)
      out_dir = _require(flag_values, 'output_dir', command)
    prompt = prompt_files.load_prompt(prompt_path)
    peft.export_peft(prompt, out_dir, **common)
    print(f'wrote {out_dir}/{{{peft.CONFIG_FILE},{peft.WEIGHTS_FILE}}} '
          f'(prompt {list(prompt.shape)} {prompt.dtype})')
    return
  peft_dir = _require(flag_values, 'peft_dir', command)
  if flag_values.output:
    prompt = peft.import_peft(peft_dir)
    prompt_files.save_prompt(prompt, flag_values.output)
    print(f'wrote {flag_values.output} (prompt {list(prompt.shape)} '
          f'{prompt.dtype})')
    return
  out_dir = _require(flag_values, 'output_dir', command)
  model_config = (run_record.read(model_dir)['model']['config'] if model_dir
                  else None)
  imported = peft_runs.import_adapter(peft_dir, model_config)
  written = peft_runs.write_imported(imported, out_dir)
  print(f'wrote the {imported.peft_type} adapter to {out_dir} '
        f'({written.num_bytes:,} bytes); include {out_dir}/serve.gin after '
        'an eval config, or after the method\'s gin file to train on')


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
