"""The run record (MODEL_DIR/run.json), the follow-up commands that read it,
and the mismatches they refuse.

Runs are trained in-process on the embedded model for two steps, configured
by gin exactly as `python -m prompt_tuning.train` is (`sweep.train`); the
command-line checks are a few subprocesses.
"""
import json
import os
import sys

import gin
import numpy as np
import pytest

import commands

from prompt_tuning.checkpoints import run_dir
from prompt_tuning.checkpoints import t5x
from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config
from prompt_tuning.training import run_record

# One worker runs the module, so its module fixtures run once.
pytestmark = [pytest.mark.usefixtures('fast_compiles'),
              pytest.mark.xdist_group('run_record')]

TASK = 'taskless_offline_topic'
# Two steps, a checkpoint and a 4-example evaluation at each.
SHORT = ['TRAIN_STEPS = 2', 'EVAL_PERIOD = 1', 'BATCH_SIZE = 4',
         'trainer.train.checkpoint_period = 1', 'trainer.train.log_period = 1',
         'trainer.train.eval_num_examples = 4',
         'trainer.train.eval_before_training = False']


def _gin_run(model_dir, gin_files, bindings=()):
  from prompt_tuning.experiments import sweep  # pylint: disable=g-import-not-at-top
  result, _ = sweep.train(
      gin_files, [f'MODEL_DIR = {str(model_dir)!r}'] + SHORT + list(bindings))
  return result


@pytest.fixture(scope='module')
def prompt_run(tmp_path_factory):
  """A prompt-tuning run of the embedded model, configured by gin."""
  model_dir = tmp_path_factory.mktemp('prompt_run')
  result = _gin_run(model_dir, ['embedded/prompt_tune.gin'])
  return model_dir, result


@pytest.fixture(scope='module')
def lora_run(tmp_path_factory):
  """A LoRA run trained with rank 8 and alpha 16 (scale 2), evaluated at
  each step."""
  model_dir = tmp_path_factory.mktemp('lora_run')
  result = _gin_run(model_dir, ['embedded/prompt_tune.gin', 'methods/lora.gin'],
                    ['methods.LoRA.rank = 8', 'methods.LoRA.alpha = 16.0'])
  return model_dir, result


# ----------------------------------------------------------------------------
# The record.
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_record_describes_the_run(prompt_run):
  model_dir, result = prompt_run
  record = run_record.read(str(model_dir))
  assert record['model']['config']['emb_dim'] == 128
  assert record['model']['config']['vocab_size'] == 868
  assert record['model']['prompt_length'] == 20
  assert record['model']['methods'] is None
  assert record['vocabulary']['vocab_size'] == 868
  assert record['vocabulary']['sentencepiece_model_file'].endswith(
      'offline_spm.model')
  assert len(record['vocabulary']['sha256']) == 64
  assert record['initial_checkpoint_path'].endswith('checkpoint_3000')
  assert record['mixture_or_task_name'] == TASK
  assert record['task_feature_lengths'] == {'inputs': 16, 'targets': 4}
  assert record['batch_size'] == 4 and record['train_steps'] == 2
  assert record['trainable_regexes'] == ['encoder/prompt/.*']
  assert record['step'] == result.step == 2
  assert record['best']['step'] == result.best_step
  assert record['best']['metrics'] == result.best_metrics
  assert record['command']['gin_files'] == ['embedded/prompt_tune.gin']
  assert 'TRAIN_STEPS = 2' in record['command']['gin_bindings']
  assert os.getcwd() in record['command']['gin_search_paths']
  assert (model_dir / run_dir.RUN_RECORD_FILE).exists()


@pytest.mark.slow
def test_lora_record_holds_the_method_hyperparameters(lora_run):
  model_dir, _ = lora_run
  methods = run_record.read(str(model_dir))['model']['methods']
  assert methods['lora']['rank'] == 8
  assert methods['lora']['alpha'] == 16.0
  assert methods['lora']['targets'] == r'.*attention/(query|value)'
  assert methods['prefix'] is None


def test_missing_and_corrupt_records_name_the_path(tmp_path):
  with pytest.raises(run_record.RunRecordError, match='holds no run record'):
    run_record.read(str(tmp_path))
  with pytest.raises(run_record.RunRecordError, match='is not a directory'):
    run_record.read(str(tmp_path / 'absent'))
  path = tmp_path / run_dir.RUN_RECORD_FILE
  path.write_text('{"version": 1, "mod')
  with pytest.raises(run_record.RunRecordError,
                     match=f'run record {path} is corrupt'):
    run_record.read(str(tmp_path))


def test_update_writes_steps_and_best_atomically(tmp_path):
  record = {'version': run_record.VERSION, 'step': 0, 'best': None}
  run_record.update(str(tmp_path), record, step=3)
  run_record.update(str(tmp_path), record, best_step=3,
                    best_metrics={'t': {'accuracy': 50.0}})
  written = json.loads((tmp_path / run_dir.RUN_RECORD_FILE).read_text())
  assert written['step'] == 3
  assert written['best'] == {'step': 3, 'metrics': {'t': {'accuracy': 50.0}}}
  assert os.listdir(tmp_path) == [run_dir.RUN_RECORD_FILE]  # no temporaries


def test_run_of_file_finds_best_prompts_and_numpy_checkpoints(tmp_path):
  (tmp_path / run_dir.RUN_RECORD_FILE).write_text('{}')
  step_dir = run_dir.numpy_checkpoint_dir(str(tmp_path), 3)
  assert run_record.run_of_file(str(tmp_path / 'best_prompt.npy')) == str(
      tmp_path)
  assert run_record.run_of_file(os.path.join(step_dir, 'p.npy')) == str(
      tmp_path)
  assert run_record.run_of_file(str(tmp_path / 'x' / 'p.npy')) is None


def _prompt_run_dir(tmp_path, best_step=2):
  """A run directory with a record, a best prompt and the best step's numpy
  checkpoint (the same prompt)."""
  record = {'version': run_record.VERSION, 'model': {}, 'vocabulary': {},
            'initial_checkpoint_path': 'ckpt', 'mixture_or_task_name': 't',
            'step': 4, 'best': {'step': best_step, 'metrics': {}}}
  (tmp_path / run_dir.RUN_RECORD_FILE).write_text(json.dumps(record))
  prompt = np.arange(6, dtype=np.float32).reshape(2, 3)
  np.save(run_dir.best_prompt_path(str(tmp_path)), prompt)
  step_dir = run_dir.numpy_checkpoint_dir(str(tmp_path), best_step)
  os.makedirs(step_dir)
  np.save(os.path.join(step_dir, 'encoder.prompt.prompt.prompt.npy'), prompt)
  return prompt


def _truncate(path):
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def test_truncated_best_prompt_falls_back_to_the_best_steps_checkpoint(
    tmp_path, caplog):
  prompt = _prompt_run_dir(tmp_path)
  best = run_dir.best_prompt_path(str(tmp_path))
  assert run_record.best_prompt_file(str(tmp_path)) == best
  _truncate(best)
  with caplog.at_level('WARNING', logger='absl'):
    used = run_record.best_prompt_file(str(tmp_path))
  assert used == run_dir.numpy_checkpoint_dir(str(tmp_path), 2) + (
      '/encoder.prompt.prompt.prompt.npy')
  np.testing.assert_array_equal(np.load(used), prompt)
  warning = [r.getMessage() for r in caplog.records if best in r.getMessage()]
  assert len(warning) == 1 and 'not a readable .npy file' in warning[0]
  os.remove(best)  # Missing: the same fallback.
  assert run_record.best_prompt_file(str(tmp_path)) == used


def test_a_named_step_with_a_truncated_prompt_is_an_error(tmp_path):
  _prompt_run_dir(tmp_path)
  step_file = os.path.join(run_dir.numpy_checkpoint_dir(str(tmp_path), 2),
                           'encoder.prompt.prompt.prompt.npy')
  _truncate(step_file)
  with pytest.raises(ValueError, match=step_file):
    run_record.best_prompt_file(str(tmp_path), step=2)
  # With the best step's checkpoint damaged too, the best prompt is an error.
  _truncate(run_dir.best_prompt_path(str(tmp_path)))
  with pytest.raises(ValueError, match='best_prompt.npy'):
    run_record.best_prompt_file(str(tmp_path))


# ----------------------------------------------------------------------------
# Mismatches.
# ----------------------------------------------------------------------------


def _configured(files, bindings):
  """The model and initial checkpoint an eval config builds."""
  from prompt_tuning.serving import inference  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_utils.parse_gin_flags(gin_utils.gin_search_paths(), files, bindings,
                              finalize_config=False)
    arguments = gin.get_bindings(inference.evaluate, resolve_references=True)
  finally:
    gin.clear_config()
  return arguments['model'], arguments['initial_checkpoint_path']


@pytest.mark.slow
def test_prompt_of_a_run_with_another_model_is_refused(prompt_run):
  """The README's old failure: the prompt with the other embedded model (the
  corpus model) printed a score; now it names both checkpoints."""
  model_dir, _ = prompt_run
  prompt = str(model_dir / 'best_prompt.npy')
  bindings = [f'PROMPT_FILE = {prompt!r}', "EVAL_OUTPUT_DIR = '/tmp/unused'"]
  model, checkpoint = _configured(['corpus/prompt_eval.gin'], bindings)
  with pytest.raises(run_record.RunMismatchError) as error:
    run_record.check_pairing(prompt, model, checkpoint)
  message = str(error.value)
  assert 'corpus_t5' in message and 'embedded_t5' in message
  assert '\n' not in message
  # The right model passes.
  model, checkpoint = _configured(['embedded/prompt_eval.gin'], bindings)
  assert run_record.check_pairing(prompt, model, checkpoint) == str(model_dir)


@pytest.mark.slow
def test_vocabulary_architecture_and_length_mismatches_name_both(prompt_run):
  model_dir, _ = prompt_run
  record = run_record.read(str(model_dir))
  prompt = str(model_dir / 'best_prompt.npy')
  bindings = [f'PROMPT_FILE = {prompt!r}', "EVAL_OUTPUT_DIR = '/tmp/unused'"]
  model, _ = _configured(['corpus/prompt_eval.gin'], bindings)
  with pytest.raises(run_record.RunMismatchError,
                     match=r'corpus_spm.model .*size 1124.*offline_spm.model'
                     r' .*size 868'):
    run_record.check_vocabulary(record, model.input_vocabulary,
                                str(model_dir))
  model, _ = _configured(['embedded/prompt_eval.gin'],
                         bindings + ['PROMPT_LENGTH = 10',
                                     't5.T5Config.num_heads = 2'])
  with pytest.raises(run_record.RunMismatchError,
                     match=r'T5Config.num_heads 2 \(the run: 4\), '
                     r'prompt_length 10 \(the run: 20\)'):
    run_record.check_model(record, model, str(model_dir))


@pytest.mark.slow
def test_architecture_override_of_a_run_is_refused(prompt_run):
  model_dir, _ = prompt_run
  with pytest.raises(run_record.RunMismatchError,
                     match=r'T5Config.mlp_dim 64 \(the run: 256\)'):
    run_config.inference_setup(str(model_dir),
                               gin_bindings=['t5.T5Config.mlp_dim = 64'])
  gin.clear_config()


@pytest.mark.slow
def test_inference_setup_is_the_run(prompt_run):
  model_dir, result = prompt_run
  try:
    setup = run_config.inference_setup(str(model_dir))
    assert setup['mixture_or_task_name'] == TASK
    assert setup['feature_lengths'] == {'inputs': 16, 'targets': 4}
    assert setup['initial_checkpoint_path'].endswith('checkpoint_3000')
    assert (run_record.prompt_file_of(setup['model'])
            == str(model_dir / 'best_prompt.npy'))
    setup = run_config.inference_setup(
        str(model_dir), gin_bindings=["MIXTURE_OR_TASK_NAME = 'other'"],
        step=1)
    assert setup['mixture_or_task_name'] == 'other'
    assert run_record.prompt_file_of(setup['model']).endswith(
        'numpy_checkpoints/checkpoint_1/encoder.prompt.prompt.prompt.npy')
  finally:
    gin.clear_config()
  del result


# ----------------------------------------------------------------------------
# The LoRA export.
# ----------------------------------------------------------------------------


def _export(args):
  """Runs method_export's main on command-line words; (status, stderr)."""
  from prompt_tuning import method_export  # pylint: disable=g-import-not-at-top
  rest, flag_values = gin_utils.parse_args(method_export.define_flags, args)
  try:
    return method_export.main(rest, flag_values)
  finally:
    gin.clear_config()


@pytest.mark.slow
def test_lora_export_from_the_run_merges_exactly_the_trained_update(
    lora_run, tmp_path, capsys):
  """Exported without repeating the rank, the merged kernels are the frozen
  ones plus (alpha / rank) A B with the trained alpha and rank (16 / 8)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from prompt_tuning.utils import trees  # pylint: disable=g-import-not-at-top
  model_dir, _ = lora_run
  record = run_record.read(str(model_dir))
  out = tmp_path / 'export'
  assert _export([f'--model_dir={model_dir}', f'--output_dir={out}']) == 0, (
      capsys.readouterr().err)
  restored = trees.flatten(ocp.StandardCheckpointer().restore(
      os.path.join(run_dir.train_state_dir(str(model_dir)), '2',
                   'default'))['trainable'])
  frozen = trees.flatten(t5x.load_t5x(record['initial_checkpoint_path']))
  merged = trees.flatten(t5x.load_t5x(str(out / 'checkpoint')))
  names = sorted(n[:-len('lora_a')] for n in restored if n.endswith('lora_a'))
  assert names and any(np.any(restored[n + 'lora_b']) for n in names)
  for base in names:
    expected = frozen[base + 'kernel'] + (16.0 / 8) * (
        np.asarray(restored[base + 'lora_a'])
        @ np.asarray(restored[base + 'lora_b']))
    np.testing.assert_allclose(merged[base + 'kernel'], expected, rtol=1e-6,
                               atol=1e-7)


@pytest.mark.slow
def test_lora_export_with_other_hyperparameters_is_refused(lora_run, tmp_path,
                                                           capsys):
  model_dir, _ = lora_run
  status = _export([f'--model_dir={model_dir}',
                    f'--output_dir={tmp_path / "a"}',
                    '--gin.methods.LoRA.rank=4'])
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert status == 1
  assert 'methods.lora.rank 4 (the run: 8)' in err, err
  # The README's old export line: the gin files without the trained rank.
  status = _export(['--gin_file=embedded/prompt_tune.gin',
                    '--gin_file=methods/lora.gin',
                    f"--gin.MODEL_DIR='{model_dir}'",
                    f'--output_dir={tmp_path / "b"}'])
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert status == 1
  assert 'methods.lora.rank 4 (the run: 8)' in err
  assert 'methods.lora.alpha 8.0 (the run: 16.0)' in err
  assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


# ----------------------------------------------------------------------------
# Commands.
# ----------------------------------------------------------------------------


def _command(module, *args, cwd=None):
  return commands.run([sys.executable, '-m', f'prompt_tuning.{module}',
                         *args], capture_output=True, text=True, timeout=600,
                        check=False, cwd=cwd)


@pytest.mark.slow
def test_eval_of_a_run_and_of_a_mismatched_model(prompt_run, tmp_path):
  """`eval --model_dir` prints the run's validation metric; the run's prompt
  with the other embedded model exits non-zero, the error last, naming both
  checkpoints."""
  model_dir, result = prompt_run
  done = _command('eval', f'--model_dir={model_dir}', '--step=2')
  assert done.returncode == 0, done.stderr[-3000:]
  accuracy = result.eval_history[-1]['metrics'][TASK]['accuracy']
  assert done.stdout.strip().splitlines()[-1] == (
      f'{TASK}: accuracy {accuracy:.2f}')
  assert (model_dir / 'eval_step_2').is_dir()
  failed = _command('eval', '--gin_file=corpus/prompt_eval.gin',
                    f"--gin.PROMPT_FILE='{model_dir / 'best_prompt.npy'}'",
                    f"--gin.EVAL_OUTPUT_DIR='{tmp_path / 'eval'}'")
  assert failed.returncode != 0
  last = failed.stderr.strip().splitlines()[-1]
  assert last.startswith('error: initial checkpoint '), last
  assert 'corpus_t5' in last and 'embedded_t5' in last


@pytest.mark.slow
def test_interpret_of_a_run_and_of_another_vocabulary(prompt_run):
  model_dir, _ = prompt_run
  done = _command('interpret', f'--model_dir={model_dir}', '--k=2')
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.count('\n| ') >= 20
  failed = _command('interpret', f'--prompt={model_dir / "best_prompt.npy"}',
                    f'--embedding={run_record.read(str(model_dir))["initial_checkpoint_path"]}',
                    '--vocabulary=tasks/data/corpus_spm.model',
                    cwd=os.path.dirname(os.path.dirname(__file__)))
  assert failed.returncode != 0
  last = failed.stderr.strip().splitlines()[-1]
  assert 'corpus_spm.model' in last and 'offline_spm.model' in last, last


@pytest.mark.slow
def test_eval_of_a_method_run_serves_its_last_train_state(lora_run):
  """`eval --model_dir` of a LoRA run evaluates what the run learned (its
  export, merged LoRA) and prints the trainer's own last evaluation; another
  step than the last is refused in one line."""
  model_dir, result = lora_run
  done = _command('eval', f'--model_dir={model_dir}')
  assert done.returncode == 0, done.stderr[-3000:]
  accuracy = result.eval_history[-1]['metrics'][TASK]['accuracy']
  assert done.stdout.strip().splitlines()[-1] == (
      f'{TASK}: accuracy {accuracy:.2f}')
  assert (model_dir / 'export' / 'checkpoint').is_dir()
  refused = _command('eval', f'--model_dir={model_dir}', '--step=1')
  assert refused.returncode != 0
  last = refused.stderr.strip().splitlines()[-1]
  assert 'evaluated at its last train state, step 2, not step 1' in last, last


@pytest.mark.slow
def test_ensemble_and_serve_take_runs(prompt_run, tmp_path):
  """`ensemble` and `serve` with `--model_dir` run on the runs' best prompts
  with nothing else given; `serve` without `--output_file` is one line."""
  model_dir, _ = prompt_run
  done = _command('ensemble', f'--model_dir={model_dir}',
                  f'--model_dir={model_dir}')
  assert done.returncode == 0, done.stderr[-3000:]
  assert TASK in done.stdout
  output = tmp_path / 'served.jsonl'
  done = _command('serve', f'--model_dir={model_dir}',
                  f'--output_file={output}')
  assert done.returncode == 0, done.stderr[-3000:]
  lines = [json.loads(l) for l in output.read_text().splitlines()]
  assert lines and {l['task'] for l in lines} == {TASK}
  refused = _command('serve', f'--model_dir={model_dir}')
  assert refused.returncode != 0
  assert refused.stderr.strip().splitlines()[-1] == (
      'error: --model_dir needs --output_file (where the lines go)')
