r"""Trains a prompt on a frozen T5 (or any parameters), configured by gin.

    python -m prompt_tuning.train \
      --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=prompts/from_class_labels.gin \
      --gin_file=runs/prompt_finetune.gin \
      --gin.MODEL_DIR="'/tmp/rte'" \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.CLASS_LABELS="['entailment', 'not_entailment']"

t5x's flags: repeated --gin_file, --gin.NAME=VALUE, --gin_search_paths (the
package's gin/ is always searched), --tfds_data_dir, and the multi-process
flags. Configures and calls `prompt_tuning.training.trainer.train`.
"""
import gc
import sys

from absl import flags
import gin

from prompt_tuning.cli import checks
from prompt_tuning.cli import gin_utils

gin_utils.define_flags()


def check_flags():
  """A training config is required."""
  if not flags.FLAGS.gin_file:
    raise ValueError('no --gin_file: pass a training config, e.g. '
                     '--gin_file=corpus/prompt_tune.gin (the main job)')


def main(argv):
  # The library loads once the arguments are checked (its import registers
  # the gin configurables the files bind).
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import train_state  # pylint: disable=g-import-not-at-top
  from prompt_tuning.training import trainer  # pylint: disable=g-import-not-at-top
  gin_utils.configure_from_flags(argv)
  model_dir = checks.model_dir_from_gin()
  checks.prepare_model_dir(model_dir)
  # The full config first (a failed run still has it), the operative one
  # (what was actually used) once training is done.
  gin_utils.summarize_gin_config(model_dir, operative=False)
  flag_values = flags.FLAGS
  # Kept in MODEL_DIR/run.json, from which follow-up commands rebuild the run.
  try:
    result = gin.get_configurable(trainer.train)(run_command=dict(
        gin_files=flag_values.gin_file,
        gin_search_paths=flag_values.gin_search_paths,
        gin_bindings=flag_values.gin_bindings))
  except train_state.Interrupted as e:
    interrupted = e
  else:
    interrupted = None
  if interrupted is not None:
    message, exit_code = interrupted.message, interrupted.exit_code
    # Frees the run (its traceback holds it): the input pipeline logs as it
    # goes, and the line saying what happened must come last.
    del interrupted
    gc.collect()
    print(message, file=sys.stderr, flush=True)
    return exit_code
  gin_utils.summarize_gin_config(model_dir)
  if result.finished_before:
    print(f'{model_dir} was already trained to step {result.step}; its '
          'recorded results:')
  else:
    print(f'trained to step {result.step}; train loss/token '
          f'{result.metrics["loss_per_token"]:.4f}')
  if result.zero_shot_metrics is not None:
    print('zero-shot (the frozen model without a prompt):')
    print(inference.format_metrics(result.zero_shot_metrics))
  for record in result.eval_history:
    print(f'validation at step {record["step"]}:')
    print(inference.format_metrics(record['metrics']))
  if result.best_step is not None:
    print(f'best validation step {result.best_step}:')
    print(inference.format_metrics(result.best_metrics))


if __name__ == '__main__':
  gin_utils.run(main, check=check_flags)
