r"""Serves several tasks at once, one prompt per task, in mixed batches.

    python -m prompt_tuning.serve \
      --gin_file=models/t5_1_1_base.gin \
      --gin_file=runs/prompt_serve.gin \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.PROMPT_FILES="{'taskless_super_glue_rte_v102': '/tmp/rte/best_prompt.npy', 'taskless_super_glue_cb_v102': '/tmp/cb/best_prompt.npy'}" \
      --gin.SERVE_OUTPUT_FILE="'/tmp/served.jsonl'"

Configures and calls `prompt_tuning.serving.inference.serve`.
"""
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.serving import inference

gin_utils.define_flags()


def main(argv):
  gin_utils.configure_from_flags(argv)
  count = gin.get_configurable(inference.serve)()
  print(f'wrote {count} lines to {gin.query_parameter("%SERVE_OUTPUT_FILE")}')


if __name__ == '__main__':
  gin_utils.run(main)
