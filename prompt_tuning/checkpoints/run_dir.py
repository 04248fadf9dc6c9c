"""The layout of a run's MODEL_DIR: the one place its names are spelled.

    MODEL_DIR/
      config.gin                   the operative gin config
      run.json                     the run record (training/run_record.py):
                                   model, vocabulary, method, task, steps
      train_state/STEP/            orbax train state (trainable parameters,
                                   optimizer state, step, input position)
      train_state/STEP.corrupt/    a train state that could not be read, moved
                                   aside (its input position inside)
      numpy_checkpoints/checkpoint_STEP/<name>.npy
                                   the trainable parameters of a step
      checkpoint_STEP/             t5x export of the whole model (model tuning)
      best_prompt.npy              the prompt of the best validation step
      best_prompt.json             {"step", "score", "metrics"} of that step
      train/                       TensorBoard summaries of training
      eval/metrics.jsonl           one {"step", "task", "metrics"} line per
                                   evaluation (beside TensorBoard summaries)
      export/                      a method's export (`method_export`)
      eval_step_STEP/              `eval --model_dir` of a step's prompt
      infer_step_STEP.jsonl        `infer --model_dir` of a step's prompt
      peft/                        the PEFT export (`peft_interop export`)

Functions take the directory as given (local or gs://) and join names to it;
only `train_state_dir` makes it absolute, as orbax needs.
"""
import os

CONFIG_FILE = 'config.gin'
RUN_RECORD_FILE = 'run.json'
TRAIN_STATE_DIR = 'train_state'
CORRUPT_SUFFIX = '.corrupt'
NUMPY_CHECKPOINTS_DIR = 'numpy_checkpoints'
BEST_PROMPT_FILE = 'best_prompt.npy'
BEST_PROMPT_JSON = 'best_prompt.json'
TRAIN_SUMMARY_DIR = 'train'
EVAL_DIR = 'eval'
METRICS_FILE = 'metrics.jsonl'
EXPORT_DIR = 'export'
PEFT_DIR = 'peft'


def config_path(model_dir: str) -> str:
  """MODEL_DIR/config.gin, the operative gin config."""
  return os.path.join(model_dir, CONFIG_FILE)


def run_record_path(model_dir: str) -> str:
  """MODEL_DIR/run.json, the run record."""
  return os.path.join(model_dir, RUN_RECORD_FILE)


def train_state_dir(model_dir: str) -> str:
  """MODEL_DIR/train_state, absolute: orbax takes absolute paths only."""
  return os.path.join(os.path.abspath(model_dir), TRAIN_STATE_DIR)


def corrupt_train_state_dir(model_dir: str, step: int) -> str:
  """MODEL_DIR/train_state/STEP.corrupt: where an unreadable train state of
  `step` is moved aside (orbax ignores names that are not steps)."""
  return os.path.join(train_state_dir(model_dir), f'{step}{CORRUPT_SUFFIX}')


def checkpoint_dir_name(step: int) -> str:
  """'checkpoint_STEP', t5x's name for a step's checkpoint directory."""
  return f'checkpoint_{step}'


def checkpoint_step(path: str) -> int:
  """The STEP of a '.../checkpoint_STEP' directory (`checkpoint_dir_name`)."""
  return int(os.path.basename(os.fspath(path)).split('_')[1])


def numpy_checkpoint_dir(model_dir: str, step: int) -> str:
  """MODEL_DIR/numpy_checkpoints/checkpoint_STEP: a step's `.npy` files."""
  return os.path.join(model_dir, NUMPY_CHECKPOINTS_DIR,
                      checkpoint_dir_name(step))


def t5x_checkpoint_dir(model_dir: str, step: int) -> str:
  """MODEL_DIR/checkpoint_STEP: the t5x export of the whole model."""
  return os.path.join(model_dir, checkpoint_dir_name(step))


def best_prompt_path(model_dir: str) -> str:
  """MODEL_DIR/best_prompt.npy: the prompt of the best validation step."""
  return os.path.join(model_dir, BEST_PROMPT_FILE)


def best_prompt_json_path(model_dir: str) -> str:
  """MODEL_DIR/best_prompt.json: that step, its score and metrics."""
  return os.path.join(model_dir, BEST_PROMPT_JSON)


def train_summary_dir(model_dir: str) -> str:
  """MODEL_DIR/train: TensorBoard summaries of training."""
  return os.path.join(model_dir, TRAIN_SUMMARY_DIR)


def eval_dir(model_dir: str) -> str:
  """MODEL_DIR/eval: evaluation summaries and metrics."""
  return os.path.join(model_dir, EVAL_DIR)


def metrics_path(eval_directory: str) -> str:
  """EVAL_DIR/metrics.jsonl, for a run's `eval_dir` or any evaluation's
  output directory."""
  return os.path.join(eval_directory, METRICS_FILE)


def export_dir(model_dir: str) -> str:
  """MODEL_DIR/export: where `method_export` writes by default."""
  return os.path.join(model_dir, EXPORT_DIR)


def step_eval_dir(model_dir: str, step: int) -> str:
  """MODEL_DIR/eval_step_STEP: where `eval --model_dir` writes the metrics
  of the prompt of `step`."""
  return os.path.join(model_dir, f'eval_step_{step}')


def peft_dir(model_dir: str) -> str:
  """MODEL_DIR/peft: where the PEFT export of the run's prompt goes by
  default."""
  return os.path.join(model_dir, PEFT_DIR)


def infer_output_path(model_dir: str, step: int) -> str:
  """MODEL_DIR/infer_step_STEP.jsonl: where `infer --model_dir` writes the
  lines of the run's split for the prompt of `step`."""
  return os.path.join(model_dir, f'infer_step_{step}.jsonl')
