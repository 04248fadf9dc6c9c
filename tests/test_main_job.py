"""The README's main job, end to end through the command line, and the
`eval` and `infer` commands on the prompt it trains; resumption after SIGKILL.
"""
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from prompt_tuning import checkpoints
from prompt_tuning import embedded
from prompt_tuning import evaluation
from prompt_tuning import models
from prompt_tuning import t5
from prompt_tuning.tasks import offline

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'
CHANCE = 100.0 / len(offline.LABELS['topic'])


def _readme_main_job(model_dir):
  """The main-job command of the README's first block, with MODEL_DIR moved."""
  block = README.read_text().split('```bash\n', 1)[1].split('```', 1)[0]
  line = block.splitlines()[0]
  command = line.split('&&', 1)[1].strip()
  args = shlex.split(command)
  assert args[:3] == ['python', '-m', 'prompt_tuning.train'], line
  args = [sys.executable] + args[1:]
  return [re.sub(r"MODEL_DIR=.*", f"MODEL_DIR='{model_dir}'", a)
          for a in args]


def _run(args, timeout=600):
  result = subprocess.run(args, capture_output=True, text=True,
                          timeout=timeout, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope='module')
def main_job(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('main_job')
  result = _run(_readme_main_job(model_dir))
  return model_dir, result.stdout


def _frozen_prefixed_accuracy():
  """The frozen embedded model's own score with the text prefix, no prompt."""
  params = checkpoints.load_t5x(embedded.checkpoint_path())
  vocabulary = offline.vocabulary()
  model = models.EncoderDecoderModel(
      t5.Transformer(t5.config_from_params(params, dropout_rate=0.0)),
      vocabulary, vocabulary)
  results = evaluation.evaluate(
      model, params, 'offline_topic', split='validation',
      feature_lengths={'inputs': 16, 'targets': 4}, batch_size=32,
      mode='decode')
  return results['offline_topic']['accuracy']


def test_main_job_beats_untrained_and_nears_prefixed_score(main_job):
  model_dir, stdout = main_job
  records = evaluation.read_metrics_jsonl(
      os.path.join(model_dir, 'eval', 'metrics.jsonl'))
  by_step = {r['step']: r['metrics']['accuracy'] for r in records}
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  tuned = best['metrics']['taskless_offline_topic']['accuracy']
  prefixed = _frozen_prefixed_accuracy()
  assert tuned >= 0.9 * prefixed, (tuned, prefixed)
  # The untrained prompt (step 0) is near chance, far from the tuned one.
  assert by_step[0] <= CHANCE + 15, by_step
  assert 'best validation step' in stdout and 'accuracy' in stdout


def test_eval_reproduces_the_logged_metric(main_job, tmp_path):
  model_dir, _ = main_job
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  result = _run([sys.executable, '-m', 'prompt_tuning.eval',
                 '--gin_file=embedded/prompt_eval.gin',
                 f"--gin.PROMPT_FILE='{model_dir / 'best_prompt.npy'}'",
                 f"--gin.EVAL_OUTPUT_DIR='{tmp_path}'"])
  expected = best['metrics']['taskless_offline_topic']['accuracy']
  assert f'taskless_offline_topic: accuracy {expected:.2f}' in result.stdout
  logged = evaluation.read_metrics_jsonl(str(tmp_path / 'metrics.jsonl'))
  assert logged[0]['metrics']['accuracy'] == expected


def test_infer_writes_one_prediction_per_input(main_job, tmp_path):
  model_dir, _ = main_job
  output = tmp_path / 'predictions.jsonl'
  _run([sys.executable, '-m', 'prompt_tuning.infer',
        '--gin_file=embedded/prompt_infer.gin',
        f"--gin.PROMPT_FILE='{model_dir / 'best_prompt.npy'}'",
        f"--gin.INFER_OUTPUT_FILE='{output}'"])
  lines = [json.loads(l) for l in output.read_text().splitlines()]
  assert len(lines) == offline.SPLIT_SIZES['validation']
  assert [l['index'] for l in lines] == list(range(len(lines)))
  assert all(set(l) == {'index', 'inputs', 'targets', 'prediction'}
             for l in lines)
  correct = sum(l['prediction'] == l['targets'] for l in lines)
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  assert 100.0 * correct / len(lines) == pytest.approx(
      best['metrics']['taskless_offline_topic']['accuracy'])


def _short_run(model_dir):
  return [sys.executable, '-m', 'prompt_tuning.train',
          '--gin_file=embedded/prompt_tune.gin',
          f"--gin.MODEL_DIR='{model_dir}'", '--gin.TRAIN_STEPS=60',
          '--gin.EVAL_MODE=None', '--gin.trainer.train.checkpoint_period=20',
          '--gin.trainer.train.eval_before_training=False']


def test_sigkill_then_restart_ends_with_the_uninterrupted_prompt(tmp_path):
  prompt = 'numpy_checkpoints/checkpoint_60/encoder.prompt.prompt.prompt.npy'
  killed_dir = tmp_path / 'killed'
  process = subprocess.Popen(_short_run(killed_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (killed_dir / 'numpy_checkpoints' / 'checkpoint_20').exists():
    assert process.poll() is None, 'the run ended before its first checkpoint'
    assert time.time() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed_dir / prompt).exists(), 'killed too late to test resuming'
  _run(_short_run(killed_dir))
  _run(_short_run(tmp_path / 'straight'))
  np.testing.assert_array_equal(np.load(killed_dir / prompt),
                                np.load(tmp_path / 'straight' / prompt))


@pytest.mark.parametrize('override, message', [
    ("--gin.INITIAL_CHECKPOINT_PATH='/nonexistent/checkpoint_1'",
     'INITIAL_CHECKPOINT_PATH /nonexistent/checkpoint_1 does not exist'),
    ("--gin.MIXTURE_OR_TASK_NAME='taskless_offline_topik'",
     "Unknown task or mixture 'taskless_offline_topik'"),
    ('--gin.trainer.train.no_such_setting=1', 'no_such_setting'),
])
def test_bad_input_exits_non_zero_naming_the_cause(tmp_path, override,
                                                   message):
  result = subprocess.run(
      [sys.executable, '-m', 'prompt_tuning.train',
       '--gin_file=embedded/prompt_tune.gin',
       f"--gin.MODEL_DIR='{tmp_path}'", override],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert message in result.stderr
  assert not (tmp_path / 'numpy_checkpoints').exists()
