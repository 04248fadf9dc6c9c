r"""Serves several tasks at once, one prompt per task, in mixed batches.

    python -m prompt_tuning.serve --model_dir=/tmp/topic \
      --model_dir=/tmp/sentiment --output_file=/tmp/served.jsonl

serves each run's best prompt for its task, with the first run's frozen model
(runs of another model are refused); or, with gin files alone:

    python -m prompt_tuning.serve \
      --gin_file=models/t5_1_1_base.gin \
      --gin_file=runs/prompt_serve.gin \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.PROMPT_FILES="{'taskless_super_glue_rte_v102': '/tmp/rte/best_prompt.npy', 'taskless_super_glue_cb_v102': '/tmp/cb/best_prompt.npy'}" \
      --gin.SERVE_OUTPUT_FILE="'/tmp/served.jsonl'"

Configures and calls `prompt_tuning.serving.inference.serve`.
"""
from absl import flags
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config

gin_utils.define_flags()
run_config.define_model_dir_flag(multiple=True)
flags.DEFINE_string('output_file', None, 'With --model_dir: where the JSON '
                    'lines go.')


def main(argv):
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS
  if flag_values.model_dir:
    import sys  # pylint: disable=g-import-not-at-top
    if not flag_values.output_file:
      sys.exit('error: --model_dir needs --output_file (where the lines go)')
    arguments = run_config.arguments_of_runs(run_config.serve_arguments,
                                             argv, flag_values)
    count = inference.serve(**arguments, output_file=flag_values.output_file)
    print(f'wrote {count} lines to {flag_values.output_file}')
    return
  gin_utils.configure_from_flags(argv)
  count = gin.get_configurable(inference.serve)()
  print(f'wrote {count} lines to {gin.query_parameter("%SERVE_OUTPUT_FILE")}')


if __name__ == '__main__':
  gin_utils.run(main)
