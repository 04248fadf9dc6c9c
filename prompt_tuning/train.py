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
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.serving import inference
from prompt_tuning.training import trainer

gin_utils.define_flags()


def main(argv):
  gin_utils.configure_from_flags(argv)
  model_dir = gin.query_parameter('%MODEL_DIR')
  # The full config first (a failed run still has it), the operative one
  # (what was actually used) once training is done.
  gin_utils.summarize_gin_config(model_dir, operative=False)
  result = gin.get_configurable(trainer.train)()
  gin_utils.summarize_gin_config(model_dir)
  print(f'trained to step {result.step}; train loss/token '
        f'{result.metrics.get("loss_per_token", float("nan")):.4f}')
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
  gin_utils.run(main)
