r"""Evaluates a model and prompt on a task, configured by gin.

    python -m prompt_tuning.eval \
      --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_eval.gin \
      --gin.PROMPT_FILE="'/tmp/rte/best_prompt.npy'" \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.EVAL_OUTPUT_DIR="'/tmp/rte/eval_best'"

Configures and calls `prompt_tuning.serving.inference.evaluate`; prints the metrics.
"""
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.serving import inference

gin_utils.define_flags()


def main(argv):
  gin_utils.configure_from_flags(argv)
  print(inference.format_metrics(gin.get_configurable(inference.evaluate)()))


if __name__ == '__main__':
  gin_utils.run(main)
