"""Tests of the launch scripts (their dry runs) and of the dry run's library
(cli.config_check, training.memory).

The scripts run as they would for a user (bash, DRY_RUN=1). To keep this
fast, the paper and platform scripts append their configs to one shared sweep
file (DRY_RUN_SWEEP) and one `python -m prompt_tuning.dry_run` process checks
them all; one more checks a paper script's own dry run end to end. Real-mode
launches run against stand-ins for python, gcloud, sbatch and srun, which
only show the arguments that would reach `prompt_tuning.train`.
"""
import ast
import os
import pathlib
import re
import shlex
import subprocess
import sys

import jax
import optax
import pytest

import commands

from prompt_tuning.cli import config_check
from prompt_tuning.training import memory
from prompt_tuning.model import models
from prompt_tuning.training import partitioning
from prompt_tuning.model import t5

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
SIZES = ('small', 'base', 'large', 'xl', 'xxl')

# Each paper script (with a stage) and the sizes it covers by default.
PAPER_SCRIPTS = {
    'figure1.sh': SIZES,
    'figure3.sh': SIZES,
    'table1.sh': ('xxl',),
    'table2.sh': ('xxl',),
    'table3.sh': ('xxl',),
    'neighbours.sh': ('xxl',),
}
# One task of each kind (a classification task, a free-text mixture), seed 0.
SUBSET = {'TASKS': 'rte record', 'SEEDS': '0'}
SMALL_CONFIG = [
    '--gin_file=models/t5_1_1_small_prompt.gin',
    '--gin_file=prompts/from_class_labels.gin',
    '--gin_file=runs/prompt_finetune.gin',
    '--gin_file=models/pretrained/t5_1_1_lm100k_small.gin',
    "--gin.MODEL_DIR='/tmp/launch_test'",
    "--gin.MIXTURE_OR_TASK_NAME='taskless_super_glue_rte_v102'",
    "--gin.CLASS_LABELS=['entailment', 'not_entailment']",
]


def _env(**extra):
  env = dict(os.environ)
  for name in ('DRY_RUN_SWEEP', 'OUTPUT_DIR', 'CHECKPOINT_DIR', 'PLATFORM',
               'SIZES', 'SEEDS', 'TASKS', 'NUM_DEVICES', 'NUM_PARTITIONS',
               'DEVICE_MEMORY_GIB', 'EXTRA_ARGS', 'STAGE', 'ENTRY'):
    env.pop(name, None)
  env.update({'PYTHON': sys.executable, 'DRY_RUN': '1'})
  env.update(extra)
  return env


def _bash(script, *args, **env):
  return commands.run(['bash', str(LAUNCH / script), *args],
                      capture_output=True, text=True, env=_env(**env),
                      cwd=REPO, timeout=300, check=False)


# ----------------------------------------------------------------------------
# Every script's dry run, checked in one Python process.
# ----------------------------------------------------------------------------


def _flag(line, name):
  """The value of --NAME=... in a recorded (shell-quoted) config line; for
  --gin.NAME, the Python value of the gin literal."""
  value = next(a.split('=', 1)[1] for a in shlex.split(line)
               if a.startswith(f'--{name}='))
  return ast.literal_eval(value) if name.startswith('gin.') else value


def _check_paper_script(key, result, lines, table):
  script = key.split(':')[0]
  assert result.returncode == 0, (key, result.stderr)
  printed = [l for l in result.stdout.splitlines() if l.startswith('[dry run] ')]
  if ':' in key:  # An analysis stage: commands printed, no training config.
    module = {'table3.sh': 'prompt_tuning.ensemble',
              'neighbours.sh': 'prompt_tuning.interpret'}[script]
    expected = {'table3.sh': 2, 'neighbours.sh': 6}[script]  # tasks (x inits)
    assert not lines, key
    assert len(printed) == expected, (key, printed)
    assert all(module in l and 'best_prompt.npy' in l for l in printed), key
    return
  sizes = {re.search(r'models/t5_1_1_(\w+?)(?:_prompt)?\.gin', l).group(1)
           for l in lines}
  assert sizes == set(PAPER_SCRIPTS[script]), key
  # One printed command per recorded config, each a run with a target mesh.
  assert len(printed) == len(lines), key
  for line in lines:
    assert _flag(line, 'num_devices') and _flag(line, 'gin.MODEL_DIR'), line
  for size in PAPER_SCRIPTS[script]:
    assert re.search(rf'^\| \w+/{size}/', table, re.M), (key, size)


def _check_figure3(runs):
  dirs = lambda key: [_flag(l, 'gin.MODEL_DIR') for l in runs[key][1]]
  figure3 = dirs('figure3.sh')
  # 5 lengths + 2 more inits + 2 more objectives, per size and task.
  assert len(figure3) == len(set(figure3)) == 9 * len(SIZES) * 2
  # The default setting's runs are the same directories in every script.
  prompt_dirs = {d for d in dirs('figure1.sh') if '/prompt_lm100k_' in d}
  assert len(prompt_dirs) == len(SIZES) * 2
  assert prompt_dirs | set(dirs('table3.sh')) | set(dirs('neighbours.sh')) <= (
      set(figure3))
  for line in runs['figure3.sh'][1]:
    task = _flag(line, 'gin.MIXTURE_OR_TASK_NAME')
    assert task.endswith('_sentinel') == ('span_corruption_sentinel' in line)
    # Class labels are cut to the prompt length, as the paper's code does.
    if _flag(line, 'gin.PROMPT_LENGTH') == 1:
      assert _flag(line, 'gin.CLASS_LABELS') in (['entailment'],
                                                 ['commonsense'])


PLATFORM_COMMANDS = {
    'local': r'^\[dry run\] \S*python\S* -m prompt_tuning\.train --gin_file=',
    'slurm': (r'^\[dry run\] sbatch --job-name=prompt_tuning --nodes=1 '
              r'--ntasks-per-node=8 --gpus-per-node=8 .*--wrap=srun\\ .*'
              r'-m\\ prompt_tuning\.train\\ --multiprocess_gpu\\ '),
    'tpu_vm': (r'^\[dry run\] gcloud compute tpus tpu-vm ssh .*--worker=0 '
               r'--command=.*-m\\ prompt_tuning\.train\\ '),
    'tpu_pod': (r'^\[dry run\] gcloud compute tpus tpu-vm ssh .*--worker=all '
                r'--command=.*-m\\ prompt_tuning\.train\\ '),
}


@pytest.mark.slow
def test_every_launch_script_dry_run(tmp_path):
  """Each paper and platform script, run with DRY_RUN=1 into one shared sweep
  file, then `python -m prompt_tuning.dry_run` on all of it (one test, so
  that pytest-xdist does not repeat the expensive part)."""
  path = tmp_path / 'configs.txt'
  path.touch()
  runs = {}

  def record(key, script, *args, **env):
    before = len(path.read_text().splitlines())
    result = _bash(script, *args, DRY_RUN_SWEEP=str(path), **env)
    runs[key] = (result, path.read_text().splitlines()[before:])

  for script in PAPER_SCRIPTS:
    record(script, script, **SUBSET)
  record('table3.sh:ensemble', 'table3.sh', '--stage=ensemble', **SUBSET)
  record('neighbours.sh:neighbours', 'neighbours.sh', '--stage=neighbours',
         **SUBSET)
  for platform in PLATFORM_COMMANDS:
    record(platform, f'{platform}.sh', *SMALL_CONFIG, '--num_devices=8')
  # One config that must fail, to check failures are reported.
  with path.open('a') as f:
    f.write(shlex.join(['--name=bad'] + SMALL_CONFIG +
                       ['--gin.BATCH_SIZE=12', '--num_devices=8']) + '\n')
  checked = commands.run(
      [sys.executable, '-m', 'prompt_tuning.dry_run', f'--sweep={path}'],
      capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600,
      check=False)
  total = len(path.read_text().splitlines())

  assert checked.returncode == 1, checked.stderr[-3000:]
  assert checked.stderr.strip().splitlines()[-1].startswith(
      'FAILED bad: ValueError: Global batch size 12'), checked.stderr[-3000:]
  assert f'{total - 1} of {total} configs passed' in checked.stdout
  for key, (result, lines) in runs.items():
    if key in PLATFORM_COMMANDS:
      assert result.returncode == 0, (key, result.stderr)
      assert re.search(PLATFORM_COMMANDS[key], result.stdout, re.M), (
          key, result.stdout)
      assert len(lines) == 1 and _flag(lines[0], 'num_devices') == '8', key
    else:
      _check_paper_script(key, result, lines, checked.stdout)
  _check_figure3(runs)


@pytest.mark.slow
def test_xxl_paper_script_dry_run_prints_memory_per_device():
  result = _bash('table3.sh', TASKS='rte', SEEDS='0')
  assert result.returncode == 0, result.stderr[-3000:]
  row = next(l for l in result.stdout.splitlines()
             if l.startswith('| superglue/xxl/'))
  cells = [c.strip() for c in row.strip('|').split('|')]
  assert cells[2] == 'data:4,model:8'
  assert cells[4] == '11,135,741,952' and cells[5] == '409,600'
  assert re.fullmatch(r'\d+\.\d\d GiB', cells[10])  # total per device
  assert '1 of 1 configs passed' in result.stdout


def test_platform_launcher_alone_calls_the_dry_run(tmp_path):
  fake = tmp_path / 'python'
  fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "ARG $a"; done\n')
  fake.chmod(0o755)
  result = _bash('tpu_pod.sh', *SMALL_CONFIG, '--num_devices=32',
                 PYTHON=str(fake), TPU_NAME='pod', TPU_ZONE='zone')
  assert result.returncode == 0, result.stderr
  args = [l[4:] for l in result.stdout.splitlines() if l.startswith('ARG ')]
  assert args == ['-m', 'prompt_tuning.dry_run', '--num_devices=32'] + (
      SMALL_CONFIG)
  assert "ssh pod --zone=zone --worker=all" in result.stdout


def _fake_tools(directory):
  """Stand-ins for python, gcloud, sbatch and srun that run no job: python
  prints its arguments one a line; the others run the command they carry."""
  tools = {
      'python': 'for a in "$@"; do echo "ARG $a"; done',
      'gcloud': ('for a in "$@"; do case "$a" in --command=*) '
                 'exec bash -c "${a#--command=}";; esac; done; exit 3'),
      'sbatch': ('for a in "$@"; do case "$a" in --wrap=*) '
                 'exec bash -c "${a#--wrap=}";; esac; done; exit 3'),
      'srun': 'while [ "${1#-}" != "$1" ]; do shift; done; exec "$@"',
  }
  for name, body in tools.items():
    path = directory / name
    path.write_text(f'#!/bin/bash\n{body}\n')
    path.chmod(0o755)


@pytest.mark.parametrize('platform,extra,env', [
    ('local', [], {}),
    ('slurm', ['--multiprocess_gpu'], {}),  # sbatch
    ('slurm', ['--multiprocess_gpu'], {'SLURM_JOB_ID': '7'}),  # srun
    ('tpu_vm', [], {}),
    ('tpu_pod', [], {}),
])
def test_platform_launchers_pass_arguments_intact(tmp_path, platform, extra,
                                                  env):
  _fake_tools(tmp_path)
  python = str(tmp_path / 'python')
  result = _bash(f'{platform}.sh', *SMALL_CONFIG, '--num_devices=16',
                 '--name=a/b', DRY_RUN='0', PYTHON=python, **env,
                 REMOTE_PYTHON=python, REMOTE_REPO_DIR=str(tmp_path),
                 TPU_NAME='tpu', TPU_ZONE='zone',
                 SLURM_LOG_DIR=str(tmp_path / 'logs'),
                 PATH=f'{tmp_path}:{os.environ["PATH"]}')
  assert result.returncode == 0, result.stderr
  args = [l[4:] for l in result.stdout.splitlines() if l.startswith('ARG ')]
  assert args == ['-m', 'prompt_tuning.train'] + extra + SMALL_CONFIG


def test_paper_script_runs_each_config_on_its_platform(tmp_path):
  _fake_tools(tmp_path)
  result = _bash('table2.sh', DRY_RUN='0', PYTHON=str(tmp_path / 'python'),
                 OUTPUT_DIR='gs://bucket/runs', SEEDS='1', METHODS='prompt',
                 DIRECTIONS='qqp_to_mrpc', CHECKPOINT_DIR='/ckpt',
                 DATA_DIR='/tfds', EXTRA_ARGS="--gin.TRAIN_STEPS=10 "
                 "--gin.EVAL_PERIOD=5")
  assert result.returncode == 0, result.stderr
  args = [l[4:] for l in result.stdout.splitlines() if l.startswith('ARG ')]
  assert args == [
      '-m', 'prompt_tuning.train',
      '--gin_file=models/t5_1_1_xxl_prompt.gin',
      '--gin_file=prompts/from_class_labels.gin',
      "--gin.CLASS_LABELS=['not_equivalent', 'equivalent']",
      '--gin_file=runs/prompt_finetune.gin',
      '--gin_file=models/pretrained/t5_1_1_lm100k_xxl.gin',
      "--gin.INITIAL_CHECKPOINT_PATH='/ckpt/t5_1_1_lm100k_xxl/"
      "checkpoint_1100000'",
      "--gin.MODEL_DIR='gs://bucket/runs/paraphrase/xxl/"
      "prompt_lm100k_class_labels_len100/qqp_to_mrpc/seed1'",
      "--gin.MIXTURE_OR_TASK_NAME='taskless_glue_qqp_to_mrpc_v002'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 8}",
      '--gin.PROMPT_LENGTH=100', '--gin.SEED=1', '--gin.NUM_PARTITIONS=8',
      "--gin.ACTIVATION_DTYPE='bfloat16'", '--tfds_data_dir=/tfds',
      '--gin.TRAIN_STEPS=10', '--gin.EVAL_PERIOD=5',
      # The best step is chosen on the in-domain validation set.
      "--gin.SELECTION_TASKS=['taskless_glue_qqp_as_mrpc_v002']"]


def test_paper_script_rejects_unknown_flags_and_sizes():
  result = _bash('figure1.sh', '--size=xxl')
  assert result.returncode == 1 and 'unknown flag --size' in result.stderr
  result = _bash('figure1.sh', '--sizes=huge')
  assert result.returncode == 1 and "unknown size 'huge'" in result.stderr
  result = _bash('figure1.sh', DRY_RUN='0')
  assert result.returncode == 1 and 'OUTPUT_DIR' in result.stderr


def test_paper_script_help_lists_settings():
  result = _bash('figure1.sh', '--help')
  assert result.returncode == 0
  assert 'Figure 1' in result.stdout and 'CHECKPOINT_DIR' in result.stdout


# ----------------------------------------------------------------------------
# The launch scripts' tables against the library and the released checkpoints.
# ----------------------------------------------------------------------------


def _common(function, *args):
  command = f'source {shlex.quote(str(LAUNCH / "common.sh"))}; {function} ' + (
      ' '.join(shlex.quote(a) for a in args))
  return subprocess.run(['bash', '-c', command], capture_output=True,
                        text=True, check=True).stdout.strip()


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('objective,name,step', [
    ('lm100k', 't5_1_1_lm100k_{}', 1100000),
    ('span_corruption', 't5_1_1_{}', 1000000),
])
def test_checkpoint_paths_match_gin_files_and_t5x_list(size, objective, name,
                                                       step):
  expected = f'{name.format(size)}/checkpoint_{step}'
  assert _common('checkpoint_name', objective, size) == expected
  gin_file = REPO / 'gin' / _common('checkpoint_gin', objective, size)
  assert (f"INITIAL_CHECKPOINT_PATH = 'gs://t5-data/pretrained_models/t5x/"
          f"{expected}'") in gin_file.read_text()


def test_class_labels_match_the_tasks():
  from prompt_tuning.tasks import superglue  # pylint: disable=g-import-not-at-top
  for name, task in superglue.CLASSIFICATION_TASKS.items():
    if name in ('axb', 'axg'):
      continue
    assert tuple(_common('class_labels', name).split()) == task.label_names


# ----------------------------------------------------------------------------
# training.memory: the memory estimate against hand arithmetic.
# ----------------------------------------------------------------------------

# V=8, H=4, N=2 heads of D=2 (I=4), F=6, one layer each side.
HAND_CONFIG = dict(vocab_size=8, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=6,
                   num_encoder_layers=1, num_decoder_layers=1,
                   relative_attention_num_buckets=4,
                   relative_attention_max_distance=8, dropout_rate=0.0)


def test_activation_bytes_matches_hand_count():
  config = t5.T5Config(**HAND_CONFIG, dtype='bfloat16')
  # B=2, T=4, U=2, a=2, f=4, m=1:
  #   embeddings  2*6*4*2                                        =   96
  #   encoder     2*4*(4*4*2 + (16+24)*2) + 2*2*4*4*(4+2)        = 1280
  #   decoder     2*2*(6*4*2 + (24+24)*2) + 2*4*2*4*2
  #               + 2*2*2*(2+4)*(4+2)                            =  992
  #   logits      2*2*2*8*4                                      =  256
  assert memory.activation_bytes(
      config, batch=2, input_length=4, target_length=2,
      prompt_length=0) == 96 + 1280 + 992 + 256
  # With dropout, also the dropped attention probabilities and their mask,
  # and the dropped MLP hidden units:
  #   encoder  2*2*4*4*(2+1) + 2*4*6*2    = 288
  #   decoder  2*2*2*(2+4)*(2+1) + 2*2*6*2 = 192
  dropout = t5.T5Config(**{**HAND_CONFIG, 'dropout_rate': 0.1},
                        dtype='bfloat16')
  assert memory.activation_bytes(
      dropout, batch=2, input_length=4, target_length=2,
      prompt_length=0) == 96 + 1280 + 992 + 256 + 288 + 192
  # [B, *, H] activations split 2 ways (activation_partitioning_dims=2):
  #   embeddings 96/2; encoder 2*4*(4*4*2/2 + 80) + 384; decoder
  #   2*2*(6*4*2/2 + 96) + 128 + 288
  assert memory.activation_bytes(
      config, batch=2, input_length=4, target_length=2, prompt_length=0,
      embed_shards=2) == 48 + 1152 + 896 + 256


def test_estimate_splits_activations_as_the_rules_say():
  config = t5.T5Config(**HAND_CONFIG)
  model = models.EncoderDecoderModel(t5.Transformer(config, prompt_length=2))
  mesh = jax.sharding.AbstractMesh((1, 2), ('data', 'model'))
  sizes = []
  for dims in (1, 2):
    rules = partitioning.standard_logical_axis_rules(
        2, activation_partitioning_dims=dims)
    estimate = memory.estimate_memory(
        model, memory.abstract_params(model), mesh, rules,
        [r'encoder/prompt/.*'], optax.sgd(0.1), batch_size=2,
        feature_lengths={'inputs': 4, 'targets': 2})
    sizes.append(estimate.activation_bytes)
  assert sizes == [
      memory.activation_bytes(config, batch=2, input_length=4,
                               target_length=2, prompt_length=2,
                               model_shards=2, embed_shards=shards)
      for shards in (1, 2)]
  assert sizes[1] < sizes[0]


def test_estimate_memory_matches_hand_count():
  config = t5.T5Config(**HAND_CONFIG, dtype='float32')
  model = models.EncoderDecoderModel(t5.Transformer(config, prompt_length=3))
  mesh = jax.sharding.AbstractMesh((2, 2), ('data', 'model'))
  estimate = memory.estimate_memory(
      model, memory.abstract_params(model), mesh,
      partitioning.standard_logical_axis_rules(2), [r'encoder/prompt/.*'],
      optax.sgd(0.1, momentum=0.9), batch_size=6,
      feature_lengths={'inputs': 5, 'targets': 3})
  # Parameters (global -> one device, vocab/heads/mlp halved on 'model'):
  #   embedding [8,4] -> [4,4] = 16; logits_dense [4,8] -> 16
  #   per attention: q, k, v [4,4] -> [4,2], out [4,4] -> [2,4]: 32
  #   per MLP: wi_0, wi_1 [4,6] -> [4,3], wo [6,4] -> [3,4]: 36
  #   relpos [2,4] -> [1,4]: 4 per stack; norms [4]: 3 + 4 in all
  #   encoder 4 + 4+32 + 4+36 + 4 = 84; decoder 4 + 12+64+36 + 4 = 120
  frozen_floats = 16 + 16 + 84 + 120
  assert estimate.frozen_bytes == 4 * frozen_floats
  assert estimate.trainable_params == 12  # the prompt [3, 4], replicated
  assert estimate.trainable_bytes == estimate.gradient_bytes == 48
  assert estimate.optimizer_bytes == 48  # the momentum of the prompt
  # Global: embedding 32, logits 32, attentions 3*64, MLPs 2*72, relpos 16,
  # norms 7*4, prompt 12.
  assert estimate.total_params == 32 + 32 + 192 + 144 + 16 + 28 + 12
  # B=3 per data shard, T=5+3, U=3, a=f=4, m=2:
  #   embeddings 3*11*4*4 = 528
  #   encoder    3*8*(4*4*4 + (16+24)*4/2) + 3*2*8*8*8/2 = 4992
  #   decoder    3*3*(6*4*4 + (24+24)*4/2) + 3*8*2*4*4/2 + 3*2*3*11*8/2 = 2904
  #   logits     2*3*3*8*4/2 = 288
  assert estimate.activation_bytes == 528 + 4992 + 2904 + 288
  assert estimate.batch_per_shard == 3
  assert estimate.total_bytes == (4 * frozen_floats + 3 * 48 + 8712)


def test_model_tuning_estimate_has_no_frozen_part():
  config = t5.T5Config(**HAND_CONFIG)
  model = models.EncoderDecoderModel(t5.Transformer(config))
  mesh = jax.sharding.AbstractMesh((1, 2), ('data', 'model'))
  estimate = memory.estimate_memory(
      model, memory.abstract_params(model), mesh,
      partitioning.standard_logical_axis_rules(2), ['.*'], optax.sgd(0.1),
      batch_size=2, feature_lengths={'inputs': 4, 'targets': 2})
  assert estimate.frozen_bytes == 0 and estimate.optimizer_bytes == 0
  assert estimate.trainable_params == estimate.total_params == 444
  assert estimate.gradient_bytes == estimate.trainable_bytes == 4 * 236


def test_estimate_rejects_a_batch_that_does_not_split():
  model = models.EncoderDecoderModel(
      t5.Transformer(t5.T5Config(**HAND_CONFIG), prompt_length=2))
  mesh = jax.sharding.AbstractMesh((4, 1), ('data', 'model'))
  with pytest.raises(ValueError, match='batch size 6 .* data axis size 4'):
    memory.estimate_memory(
        model, memory.abstract_params(model), mesh,
        partitioning.standard_logical_axis_rules(), [r'encoder/prompt/.*'],
        optax.sgd(0.1), batch_size=6,
        feature_lengths={'inputs': 4, 'targets': 2})


def test_cached_shapes_equal_a_fresh_eval_shape(tiny_config):
  cache = {}
  module = t5.Transformer(tiny_config, prompt_length=7)
  memory.abstract_params(models.EncoderDecoderModel(module), cache)
  for length in (0, 2, 150):
    model = models.EncoderDecoderModel(module.clone(prompt_length=length))
    cached = memory.abstract_params(model, cache)
    fresh = memory.abstract_params(model)
    assert jax.tree.structure(cached) == jax.tree.structure(fresh)
    for a, b in zip(jax.tree.leaves(cached), jax.tree.leaves(fresh)):
      assert (a.shape, a.dtype) == (b.shape, b.dtype)
  # Only the first model and one one-layer model per length were traced at
  # full depth or at all.
  assert sum(1 for k in cache if k[0] == 'full') == 4


@pytest.mark.parametrize('spec', ['data16', 'data:0,model:2', 'data:2,data:2',
                                  'data:x'])
def test_parse_mesh_rejects(spec):
  with pytest.raises(ValueError, match='--mesh'):
    config_check.parse_mesh(spec)


def test_sweep_lines_round_trip_bash_quoting(tmp_path):
  path = tmp_path / 'sweep.txt'
  path.write_text('# a comment\n\n' + _common('quote_args', '--name=a b',
                                               *SMALL_CONFIG) + '\n')
  (config,) = config_check.read_sweep(str(path))
  assert config.name == 'a b'
  assert config.gin_files == tuple(a.split('=', 1)[1] for a in SMALL_CONFIG[:4])
  assert config.gin_bindings[-1] == (
      "CLASS_LABELS = ['entailment', 'not_entailment']")


# ----------------------------------------------------------------------------
# cli.config_check: configs that must fail, in this process.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('extra,devices,message', [
    (["--gin.MIXTURE_OR_TASK_NAME='taskless_super_glue_rtx_v102'"], 8,
     r'Unknown task .*taskless_super_glue_rte_v102'),
    (['--gin.PROMPT_LENGTH=1'], 8,
     r'2 CLASS_LABELS .* do not fit PROMPT_LENGTH=1'),
    (['--gin.CLASS_LABELS=None'], 8, r'needs CLASS_LABELS .* got None'),
    (['--gin.CLASS_LABELS=[]'], 8, r'needs CLASS_LABELS .* got \[\]'),
    (["--gin.TASK_FEATURE_LENGTHS={'inputs': 512}"], 8, r"KeyError: 'targets'"),
    (['--gin.BATCH_SIZE=12'], 8, r'batch size 12 .* data axis size 8'),
    (['--gin.NUM_PARTITIONS=3'], 8, r'--num_devices=8 is not divisible'),
    (['--gin.PROMPT_REGEX=["decoder/prompt/.*"]'], 8, r'match no parameter'),
    (["--gin.MODEL_DIR=%gin.REQUIRED"], 8, r'MODEL_DIR.*REQUIRED'),
    (['--gin_file=runs/no_such_run.gin'], 8, r'no_such_run\.gin'),
])
def test_bad_configs_fail_with_a_reason(extra, devices, message):
  config = config_check.config_from_args(SMALL_CONFIG + extra +
                                    [f'--num_devices={devices}'])
  estimates, failures = config_check.run_configs([config])
  assert not estimates
  ((_, error),) = failures
  assert re.search(message, error), error


def test_good_config_passes_in_process():
  config = config_check.config_from_args(
      SMALL_CONFIG + ['--mesh=data:4,model:2', '--name=small'])
  (estimate,), failures = config_check.run_configs([config])
  assert not failures
  assert estimate.name == 'small' and estimate.mesh == (('data', 4),
                                                        ('model', 2))
  assert estimate.total_params == 77_012_352  # the paper's Table 4
  assert estimate.trainable_params == 51_200
  assert '| small | 1 | data:4,model:2 | 8 | 77,012,352 | 51,200 |' in (
      memory.format_table([estimate]))
