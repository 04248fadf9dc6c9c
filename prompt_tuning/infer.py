r"""Writes predictions ('predict') or log-likelihoods ('score') as JSON lines.

With a training run, its model and best prompt (or `--step`'s), on the run's
validation split or on your own inputs:

    python -m prompt_tuning.infer --model_dir=/tmp/run \
      [--input_file=reviews.txt] [--output_file=OUT.jsonl] [--step=N]

(`--gin.INFER_MODE="'score'"` scores; other `--gin.X=V` override any part of
the run.) Without --output_file, a split's lines go to
MODEL_DIR/infer_step_STEP.jsonl. With gin files alone (t5x style):

    python -m prompt_tuning.infer \
      --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_infer.gin \
      --gin.PROMPT_FILE="'/tmp/rte/best_prompt.npy'" \
      --gin.INITIAL_CHECKPOINT_PATH="'gs://.../checkpoint_1100000'" \
      --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
      --gin.INFER_OUTPUT_FILE="'/tmp/rte/predictions.jsonl'" \
      --gin.INFER_MODE="'predict'"

On your own inputs (.txt: one per line; .tsv: input<TAB>target, an optional
header line naming the columns; .jsonl: {"inputs": ..., "targets": ...} or the
task's raw fields), preprocessed as the task preprocesses its text:

    python -m prompt_tuning.infer --gin_file=corpus/prompt_infer.gin \
      --gin.PROMPT_FILE="'/tmp/run/best_prompt.npy'" \
      --input_file=reviews.txt [--output_file=reviews.predictions.jsonl]

Configures and calls `prompt_tuning.serving.inference.infer`.
"""
from absl import app
from absl import flags
import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config

FLAGS = flags.FLAGS
gin_utils.define_flags()
run_config.define_model_dir_flag()
flags.DEFINE_integer('step', None, 'With --model_dir: the prompt saved at '
                     'this step (default: the best step).')
flags.DEFINE_string(
    'input_file', None,
    'Infer on the inputs of this file instead of a task split: .txt (one '
    'input per line), .tsv (input<TAB>target; a first line naming the '
    'columns is a header) or .jsonl ({"inputs": ..., "targets": ...} or the '
    "task's raw fields).")
flags.DEFINE_enum(
    'input_format', None, ['txt', 'tsv', 'jsonl'],
    "The --input_file's format (default: from its extension).")
flags.DEFINE_boolean(
    'preprocess', True,
    "Apply the task's text preprocessing to --input_file's records; "
    '--nopreprocess (or --preprocess=false) feeds the text as is.')
flags.DEFINE_enum(
    'on_bad_line', 'fail', ['fail', 'skip'],
    'A malformed line of --input_file stops the run (fail, naming the line) '
    'or is reported and skipped (skip, with a count at the end).')
flags.DEFINE_string(
    'output_file', None,
    'Where the JSON lines go (default: INFER_OUTPUT_FILE, or for '
    '--input_file=X.txt, X.predictions.jsonl or X.scores.jsonl beside it).')


def _macro(name, default=None):
  """A gin macro's value, or `default` where it is unset or required."""
  try:
    value = gin.query_parameter(f'%{name}')
  except ValueError:
    return default
  return value if isinstance(value, str) else default


def main(argv):
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  from prompt_tuning.serving import inputs  # pylint: disable=g-import-not-at-top
  if not FLAGS.input_file:
    stray = [f'--{name}' for name in ('input_format', 'preprocess',
                                       'on_bad_line') if FLAGS[name].present]
    if stray:
      raise app.UsageError(f'{", ".join(stray)} given without --input_file; '
                           'expected them only with an input file.')
  run = {}
  if FLAGS.model_dir:
    import sys  # pylint: disable=g-import-not-at-top
    from prompt_tuning.checkpoints import run_dir  # pylint: disable=g-import-not-at-top
    from prompt_tuning.training import run_record  # pylint: disable=g-import-not-at-top
    run_config.prepare(argv)
    try:
      run = run_config.inference_setup(
          FLAGS.model_dir, FLAGS.gin_file, FLAGS.gin_bindings,
          FLAGS.gin_search_paths, FLAGS.step)
    except (ValueError, FileNotFoundError) as e:  # Records and mismatches.
      sys.exit(f'error: {run_config.error_line(e)}')
    run['mode'] = _macro('INFER_MODE', 'predict')
    if not FLAGS.input_file and not FLAGS.output_file:
      step = run_config.chosen_step(run_record.read(FLAGS.model_dir),
                                    FLAGS.step)
      run['output_file'] = run_dir.infer_output_path(FLAGS.model_dir, step)
  else:
    gin_utils.configure_from_flags(argv)
  kwargs = {}
  output_file = (FLAGS.output_file or run.get('output_file')
                 or _macro('INFER_OUTPUT_FILE'))
  if FLAGS.input_file:
    kwargs = dict(input_file=FLAGS.input_file,
                  input_format=FLAGS.input_format,
                  preprocess=FLAGS.preprocess,
                  on_bad_line=FLAGS.on_bad_line)
    output_file = output_file or inputs.default_output_file(
        FLAGS.input_file, _macro('INFER_MODE', 'predict'))
  if output_file:
    kwargs['output_file'] = output_file
  if run:
    count = inference.infer(**{**run, **kwargs})
  else:
    count = gin.get_configurable(inference.infer)(**kwargs)
  print(f'wrote {count} lines to {output_file}')


if __name__ == '__main__':
  gin_utils.run(main)
