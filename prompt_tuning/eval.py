r"""Evaluates a trained prompt on its run's task, or any model and prompt
configured by gin.

    python -m prompt_tuning.eval --model_dir=/tmp/run [--step=N] \
      [--gin_file=...] [--gin.X=V]

evaluates the run's best prompt (or that of step N) on the run's validation
task and split, with its model, vocabulary and in-loop evaluation settings
(`MODEL_DIR/run.json`), writes the metrics to MODEL_DIR/eval_step_STEP and
prints them; gin files and bindings override any part (e.g.
`--gin.MIXTURE_OR_TASK_NAME="'other_task'"`,
`--gin.inference.evaluate.split="'test'"`). Without `--model_dir`, the gin
files alone configure it (t5x style):

    python -m prompt_tuning.eval \
      --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_eval.gin \
      --gin.PROMPT_FILE="'/tmp/rte/best_prompt.npy'" \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.EVAL_OUTPUT_DIR="'/tmp/rte/eval_best'"

A prompt that belongs to a run (it sits in a directory with run.json) is
refused, naming both sides, with a model, checkpoint or vocabulary that is not
its run's. Calls `prompt_tuning.serving.inference.evaluate`.
"""
import sys

from absl import flags
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config
from prompt_tuning.training import run_record

FLAGS = flags.FLAGS
gin_utils.define_flags()
run_config.define_model_dir_flag()
flags.DEFINE_integer('step', None, 'With --model_dir: evaluate the prompt '
                     'saved at this step (default: the best step).')


def _evaluate_run(argv):
  """Evaluates the run of --model_dir; returns the metrics."""
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  run_config.prepare(argv)
  model_dir = FLAGS.model_dir
  record = run_record.read(model_dir)
  run_config.configure(
      model_dir, FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.gin_search_paths,
      run_config.run_bindings(record, model_dir, FLAGS.step))
  arguments = run_config.train_arguments()
  run_config.check_arguments(record, arguments, model_dir)
  if run_config.is_prompt_run(record):
    step = run_config.chosen_step(record, FLAGS.step)
  else:
    arguments = run_config.trained_method_arguments(arguments, record,
                                                    model_dir, FLAGS.step)
    step = int(record['step'])
  return inference.evaluate(
      **run_config.evaluate_arguments(arguments, model_dir, step))


def main(argv):
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  if FLAGS.step is not None and not FLAGS.model_dir:
    sys.exit('error: --step needs --model_dir (the run whose step it is)')
  try:
    if FLAGS.model_dir:
      results = _evaluate_run(argv)
    else:
      gin_utils.configure_from_flags(argv)
      results = gin.get_configurable(inference.evaluate)()
  except (ValueError, FileNotFoundError) as e:  # Run records and mismatches.
    sys.exit(f'error: {run_config.error_line(e)}')
  print(inference.format_metrics(results))


if __name__ == '__main__':
  gin_utils.run(main)
