"""The README's main job, end to end through the command line, and the
`eval` and `infer` commands on the prompt it trains; bad input (on the
quicker prefixed-model config). Resumption after SIGKILL, SIGTERM or a
damaged train state: tests/test_interrupts.py.
"""
import json
import os
import re
import sys

import pytest

import commands

from prompt_tuning.training import evaluation
from prompt_tuning.tasks import corpus_tasks

TASK = 'corpus_topic_n32'
CHANCE = 100.0 / len(corpus_tasks.CORPUS_LABELS['topic'])


def _run(args, timeout=600):
  result = commands.run(args, capture_output=True, text=True,
                          timeout=timeout, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _printed_accuracy(stdout, heading):
  """The accuracy printed under `heading` by `python -m prompt_tuning.train`."""
  match = re.search(re.escape(heading) + rf':\n\s*{TASK}: accuracy ([\d.]+)',
                    stdout)
  assert match, (heading, stdout[-2000:])
  return float(match.group(1))


@pytest.mark.slow
@pytest.mark.xdist_group('main_job')
def test_main_job_beats_zero_shot_untrained_prompt_and_chance(main_job):
  model_dir, stdout = main_job.model_dir, main_job.stdout
  zero_shot = _printed_accuracy(
      stdout, 'zero-shot (the frozen model without a prompt)')
  untrained = _printed_accuracy(stdout, 'validation at step 0')
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  tuned = best['metrics'][TASK]['accuracy']
  assert tuned == _printed_accuracy(stdout, 'best validation step '
                                    f'{best["step"]}')
  records = evaluation.read_metrics_jsonl(
      os.path.join(model_dir, 'eval', 'metrics.jsonl'))
  assert {r['step'] for r in records} == {0, 200, 400}
  assert records[0]['metrics']['accuracy'] == untrained
  # The frozen model was never shown the task in input -> label form.
  assert tuned >= max(zero_shot, untrained, CHANCE) + 30, (
      zero_shot, untrained, tuned)


@pytest.mark.slow
@pytest.mark.xdist_group('main_job')
def test_main_job_is_quiet_by_default(main_job):
  """What it prints is the progress and the results: no library start-up
  noise, and the operative config goes to the run directory, not the
  screen."""
  lines = (main_job.stdout + main_job.stderr).splitlines()
  assert len(lines) <= 50, '\n'.join(lines)
  assert not [line for line in lines if 'cuInit' in line or 'oneDNN' in line]
  config = (main_job.model_dir / 'config.gin').read_text()
  assert 'trainer.train' in config
  assert 'trainer.train' not in main_job.stdout + main_job.stderr


@pytest.mark.slow
@pytest.mark.xdist_group('main_job')
def test_eval_reproduces_the_logged_metric(main_job, tmp_path):
  model_dir = main_job.model_dir
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  result = _run([sys.executable, '-m', 'prompt_tuning.eval',
                 '--gin_file=corpus/prompt_eval.gin',
                 f"--gin.PROMPT_FILE='{model_dir / 'best_prompt.npy'}'",
                 f"--gin.EVAL_OUTPUT_DIR='{tmp_path}'"])
  expected = best['metrics'][TASK]['accuracy']
  assert f'{TASK}: accuracy {expected:.2f}' in result.stdout
  logged = evaluation.read_metrics_jsonl(str(tmp_path / 'metrics.jsonl'))
  assert logged[0]['metrics']['accuracy'] == expected


@pytest.mark.slow
@pytest.mark.xdist_group('main_job')
def test_infer_writes_one_prediction_per_input(main_job, tmp_path):
  model_dir = main_job.model_dir
  output = tmp_path / 'predictions.jsonl'
  _run([sys.executable, '-m', 'prompt_tuning.infer',
        '--gin_file=corpus/prompt_infer.gin',
        f"--gin.PROMPT_FILE='{model_dir / 'best_prompt.npy'}'",
        f"--gin.INFER_OUTPUT_FILE='{output}'"])
  lines = [json.loads(l) for l in output.read_text().splitlines()]
  assert len(lines) == corpus_tasks.EVAL_SIZE
  assert [l['index'] for l in lines] == list(range(len(lines)))
  assert all(set(l) == {'index', 'inputs', 'targets', 'prediction'}
             for l in lines)
  correct = sum(l['prediction'] == l['targets'] for l in lines)
  best = json.loads((model_dir / 'best_prompt.json').read_text())
  assert 100.0 * correct / len(lines) == pytest.approx(
      best['metrics'][TASK]['accuracy'])


@pytest.mark.parametrize('override, message', [
    ("--gin.INITIAL_CHECKPOINT_PATH='/nonexistent/checkpoint_1'",
     'INITIAL_CHECKPOINT_PATH /nonexistent/checkpoint_1 does not exist'),
    pytest.param("--gin.MIXTURE_OR_TASK_NAME='taskless_offline_topik'",
                 "Unknown task or mixture 'taskless_offline_topik'",
                 marks=pytest.mark.slow),
    pytest.param('--gin.trainer.train.no_such_setting=1', 'no_such_setting',
                 marks=pytest.mark.slow),
])
def test_bad_input_exits_non_zero_naming_the_cause(tmp_path, override,
                                                   message):
  result = commands.run(
      [sys.executable, '-m', 'prompt_tuning.train',
       '--gin_file=embedded/prompt_tune.gin',
       f"--gin.MODEL_DIR='{tmp_path}'", override],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert message in result.stderr
  assert not (tmp_path / 'numpy_checkpoints').exists()
