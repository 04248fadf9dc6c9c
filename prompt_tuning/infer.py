r"""Writes predictions ('predict') or log-likelihoods ('score') as JSON lines.

    python -m prompt_tuning.infer \
      --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_infer.gin \
      --gin.PROMPT_FILE="'/tmp/rte/best_prompt.npy'" \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.INFER_OUTPUT_FILE="'/tmp/rte/predictions.jsonl'" \
      --gin.INFER_MODE="'predict'"

Configures and calls `prompt_tuning.serving.inference.infer`.
"""
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.serving import inference

gin_utils.define_flags()


def main(argv):
  gin_utils.configure_from_flags(argv)
  count = gin.get_configurable(inference.infer)()
  print(f'wrote {count} lines to {gin.query_parameter("%INFER_OUTPUT_FILE")}')


if __name__ == '__main__':
  gin_utils.run(main)
