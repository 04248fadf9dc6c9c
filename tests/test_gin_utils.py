"""Tests for prompt_tuning.cli.gin_utils: flags, gin, entry runs, processes."""
import logging
import os
import socket
import subprocess
import sys
import textwrap

from absl import flags
import gin
import pytest

from prompt_tuning.cli import gin_utils

_SUBPROCESS_TIMEOUT_S = 120


@gin.configurable
def gin_utils_test_fn(count=1, label='none'):
  return count, label


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


# ---------------------------------------------------------------------------
# Flags.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('argv, expected', [
    (['prog'], ['prog']),
    (['prog', '--gin.f.x=1'], ['prog', '--gin_bindings=f.x = 1']),
    (['prog', '--gin.MODEL_DIR="/tmp/a"'],
     ['prog', '--gin_bindings=MODEL_DIR = "/tmp/a"']),
    # Only the first '=' splits; quotes and spaces in the value are kept.
    (['prog', "--gin.f.s='a=b c'"], ['prog', "--gin_bindings=f.s = 'a=b c'"]),
    (['prog', '--gin.f.x='], ['prog', '--gin_bindings=f.x = ']),
    (['prog', '--gin.scope/f.x=@g()'],
     ['prog', '--gin_bindings=scope/f.x = @g()']),
    (['prog', '--gin_file=a.gin', '--gin.f.x=2', '--other=3'],
     ['prog', '--gin_file=a.gin', '--gin_bindings=f.x = 2', '--other=3']),
    # Existing --gin_bindings and lookalikes are left alone.
    (['prog', '--gin_bindings=f.x = 1', '--ginx.y=2'],
     ['prog', '--gin_bindings=f.x = 1', '--ginx.y=2']),
    # After '--' everything is positional.
    (['prog', '--gin.a=1', '--', '--gin.b=2'],
     ['prog', '--gin_bindings=a = 1', '--', '--gin.b=2']),
])
def test_rewrite_gin_args(argv, expected):
  assert gin_utils.rewrite_gin_args(argv) == expected


@pytest.mark.parametrize('arg', ['--gin.f.x', '--gin.=3'])
def test_rewrite_gin_args_rejects_malformed(arg):
  with pytest.raises(ValueError, match=f'Gin override {arg!r}'):
    gin_utils.rewrite_gin_args(['prog', arg, '3'])


def test_flags_parser_exits_on_space_separated_override(capsys):
  with pytest.raises(SystemExit) as e:
    # pylint: disable-next=protected-access
    gin_utils._parse_flags(['prog', '--gin.f.x', '3'])
  assert e.value.code == 1
  assert "'--gin.f.x'" in capsys.readouterr().err


def test_define_flags():
  fv = flags.FlagValues()
  gin_utils.define_flags(fv)
  fv(['prog'])
  assert fv.gin_file is None
  assert fv.gin_bindings == []
  assert fv.gin_search_paths == ['.']
  assert fv.tfds_data_dir is None
  assert fv.multiprocess_gpu is False
  assert (fv.coordinator_address, fv.process_count, fv.process_index) == (
      None, None, None)
  fv = flags.FlagValues()
  gin_utils.define_flags(fv)
  fv(gin_utils.rewrite_gin_args([
      'prog', '--gin_file=a.gin', '--gin_file=b.gin', '--gin.f.x=1',
      '--gin_search_paths=/x,/y', '--tfds_data_dir=/d', '--multiprocess_gpu',
      '--coordinator_address=127.0.0.1:1234', '--process_count=2',
      '--process_index=1']))
  assert fv.gin_file == ['a.gin', 'b.gin']
  assert fv.gin_bindings == ['f.x = 1']
  assert fv.gin_search_paths == ['/x', '/y']
  assert fv.tfds_data_dir == '/d'
  assert fv.multiprocess_gpu is True
  assert (fv.coordinator_address, fv.process_count, fv.process_index) == (
      '127.0.0.1:1234', 2, 1)


# ---------------------------------------------------------------------------
# Gin.
# ---------------------------------------------------------------------------


def test_gin_search_paths_include_package_dir(tmp_path):
  (tmp_path / 'mine.gin').write_text('gin_utils_test_fn.count = 2\n')
  paths = gin_utils.gin_search_paths([str(tmp_path), str(tmp_path)])
  package_dir = gin_utils.package_gin_dir()
  assert paths == [str(tmp_path), package_dir]
  assert os.path.isabs(package_dir) and os.path.isdir(package_dir)
  assert gin_utils.gin_search_paths(None) == [package_dir]


def test_parse_gin_file_then_bindings(tmp_path):
  (tmp_path / 'base.gin').write_text(
      'gin_utils_test_fn.count = 2\ngin_utils_test_fn.label = "file"\n')
  (tmp_path / 'top.gin').write_text(
      "include 'base.gin'\ngin_utils_test_fn.count = 3\n")
  gin_utils.parse_gin_flags(
      gin_utils.gin_search_paths([str(tmp_path)]), ['top.gin'],
      ['gin_utils_test_fn.label = "flag=1"'])
  assert gin_utils_test_fn() == (3, 'flag=1')
  assert gin.config_is_locked()


def test_search_through_paths_logs_no_errors(tmp_path, caplog):
  # Names of their own: gin's search path list is process-wide.
  (tmp_path / 'quiet_base.gin').write_text('gin_utils_test_fn.count = 4\n')
  (tmp_path / 'quiet_top.gin').write_text("include 'quiet_base.gin'\n")
  with caplog.at_level(logging.INFO):
    gin_utils.parse_gin_flags(
        gin_utils.gin_search_paths([str(tmp_path)]), ['quiet_top.gin'], [])
  assert gin_utils_test_fn()[0] == 4
  assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_parse_gin_flags_can_skip_unknown_and_stay_unlocked():
  gin_utils.parse_gin_flags([], [], ['nowhere_fn.x = 1',
                                     'gin_utils_test_fn.count = 4'],
                            skip_unknown=True, finalize_config=False)
  assert gin_utils_test_fn() == (4, 'none')
  assert not gin.config_is_locked()


@pytest.mark.parametrize('binding, shown, cause', [
    ('nowhere_fn.x = 1', '--gin.nowhere_fn.x=1', 'nowhere_fn'),
    ('gin_utils_test_fn.colour = 1', '--gin.gin_utils_test_fn.colour=1',
     'colour'),
    ('gin_utils_test_fn.count = [1,', '--gin.gin_utils_test_fn.count=[1,',
     'TokenError'),
])
def test_bad_binding_names_it(binding, shown, cause):
  with pytest.raises(ValueError) as e:
    gin_utils.parse_gin_flags([], [], ['gin_utils_test_fn.count = 2', binding])
  assert shown in str(e.value) and cause in str(e.value)


def test_bad_gin_file_names_it(tmp_path):
  (tmp_path / 'bad.gin').write_text('gin_utils_test_fn.colour = 1\n')
  with pytest.raises(ValueError, match=r'--gin_file=bad.gin(.|\n)*colour'):
    gin_utils.parse_gin_flags([str(tmp_path)], ['bad.gin'], [])


def test_missing_gin_file_names_it_and_the_search_paths(tmp_path):
  paths = gin_utils.gin_search_paths([str(tmp_path)])
  with pytest.raises(FileNotFoundError) as e:
    gin_utils.parse_gin_flags(paths, ['no_such_dir/no_such.gin'], [])
  message = str(e.value)
  assert '--gin_file=no_such_dir/no_such.gin' in message
  assert str(tmp_path) in message and gin_utils.package_gin_dir() in message


def test_missing_include_names_both_files(tmp_path):
  (tmp_path / 'top_missing.gin').write_text("include 'gone.gin'\n")
  with pytest.raises(FileNotFoundError,
                     match=r'--gin_file=top_missing.gin(.|\n)*gone'):
    gin_utils.parse_gin_flags([str(tmp_path)], ['top_missing.gin'], [])


def test_summarize_gin_config_writes_operative_config(tmp_path):
  gin_utils.parse_gin_flags([], [], ['gin_utils_test_fn.count = 5'])
  gin_utils_test_fn()

  class _Writer:

    def __init__(self):
      self.texts = []

    def write_texts(self, step, texts):
      self.texts.append((step, texts))

    def flush(self):
      pass

  writer = _Writer()
  model_dir = tmp_path / 'run'
  path = gin_utils.summarize_gin_config(str(model_dir), writer, step=7)
  assert path == str(model_dir / 'config.gin')
  assert 'gin_utils_test_fn.count = 5' in (model_dir / 'config.gin').read_text()
  assert os.listdir(model_dir) == ['config.gin']  # No temporary left behind.
  [(step, texts)] = writer.texts
  assert step == 7 and 'gin_utils_test_fn.count = 5' in texts['config']


# ---------------------------------------------------------------------------
# Distributed initialisation decisions (jax.distributed.initialize recorded).
# ---------------------------------------------------------------------------


@pytest.fixture
def init_calls(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(jax.distributed, 'is_initialized', lambda: False)
  monkeypatch.setattr(jax.distributed, 'initialize',
                      lambda *args, **kwargs: calls.append((args, kwargs)))
  for var in ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
              'SLURM_PROCID', 'SLURM_LOCALID', 'OMPI_MCA_orte_hnp_uri',
              'OMPI_COMM_WORLD_SIZE', 'TPU_PROCESS_ADDRESSES',
              'TPU_WORKER_HOSTNAMES'):
    monkeypatch.delenv(var, raising=False)
  return calls


def test_initialize_distributed_single_process_is_a_no_op(init_calls,
                                                          monkeypatch):
  assert not gin_utils.initialize_distributed()
  assert not gin_utils.initialize_distributed('127.0.0.1:1', 1, 0)
  # An interactive SLURM allocation with one task, or a one-host TPU.
  monkeypatch.setenv('SLURM_JOB_ID', '7')
  monkeypatch.setenv('SLURM_NTASKS', '1')
  monkeypatch.setenv('TPU_WORKER_HOSTNAMES', 'localhost')
  assert not gin_utils.initialize_distributed()
  assert not init_calls


def test_initialize_distributed_from_flags(init_calls):
  assert gin_utils.initialize_distributed('127.0.0.1:1234', 2, 1)
  assert gin_utils.initialize_distributed(None, None, None,
                                          multiprocess_gpu=True)
  assert [args for args, _ in init_calls] == [('127.0.0.1:1234', 2, 1),
                                              (None, None, None)]


@pytest.mark.parametrize('env', [
    {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'n[1-2]', 'SLURM_NTASKS': '2',
     'SLURM_PROCID': '0', 'SLURM_LOCALID': '0'},
    {'OMPI_MCA_orte_hnp_uri': '1.2.3.4:5', 'OMPI_COMM_WORLD_SIZE': '4'},
    {'TPU_WORKER_HOSTNAMES': 'host-0,host-1'},
])
def test_initialize_distributed_detects_cluster(init_calls, monkeypatch, env):
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert gin_utils.initialize_distributed()
  assert init_calls == [((), {})]


@pytest.mark.parametrize('count, index, flag', [
    (0, None, '--process_count=0'), (2, 2, '--process_index=2'),
    (2, -1, '--process_index=-1')])
def test_initialize_distributed_rejects_bad_flags(init_calls, count, index,
                                                  flag):
  with pytest.raises(ValueError, match=flag):
    gin_utils.initialize_distributed('127.0.0.1:1', count, index)


# ---------------------------------------------------------------------------
# Entry scripts in subprocesses.
# ---------------------------------------------------------------------------

_ENTRY = textwrap.dedent("""\
    from absl import flags
    import gin
    from prompt_tuning.cli import gin_utils

    FLAGS = flags.FLAGS
    gin_utils.define_flags()


    @gin.configurable
    def greeting(name='nobody', times=1):
      return f'{name}x{times}'


    def main(argv):
      del argv
      gin_utils.initialize_distributed(
          FLAGS.coordinator_address, FLAGS.process_count, FLAGS.process_index,
          FLAGS.multiprocess_gpu)
      gin_utils.parse_gin_flags(
          gin_utils.gin_search_paths(FLAGS.gin_search_paths), FLAGS.gin_file,
          FLAGS.gin_bindings)
      print('GREETING', greeting(), flush=True)
      if FLAGS.process_count:
        import jax
        import numpy as np
        from jax.experimental import multihost_utils
        local = np.full((jax.local_device_count(),), jax.process_index() + 1.0)
        gathered = multihost_utils.process_allgather(local)
        print('PROCESSES', jax.process_count(), 'DEVICES', jax.device_count(),
              'TOTAL', float(gathered.sum()), flush=True)


    if __name__ == '__main__':
      gin_utils.run(main)
    """)


def _start(tmp_path, *args, hide_gpus=True):
  """Starts the entry script; `hide_gpus=False` runs TensorFlow's GPU hiding."""
  script = tmp_path / 'entry.py'
  script.write_text(_ENTRY)
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  if hide_gpus:  # Also spares the TensorFlow import in `run`.
    env['CUDA_VISIBLE_DEVICES'] = ''
  else:
    env.pop('CUDA_VISIBLE_DEVICES', None)
  # cwd=tmp_path: a checkout's gin/ folder must not shadow gin-config.
  return subprocess.Popen(
      [sys.executable, str(script), *args], cwd=tmp_path, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
  try:
    out, err = proc.communicate(timeout=_SUBPROCESS_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f'subprocess timed out; stderr tail:\n{err[-3000:]}')
  return proc.returncode, out, err


@pytest.mark.slow
def test_run_applies_gin_overrides_and_fails_on_bad_ones(tmp_path):
  gin_dir = tmp_path / 'configs'
  gin_dir.mkdir()
  (gin_dir / 'hello.gin').write_text("greeting.name = 'file'\n")
  good = _start(tmp_path, '--gin_search_paths=configs', '--gin_file=hello.gin',
                '--gin.greeting.times=3', "--gin.greeting.name='a=b'",
                hide_gpus=False)
  bad = _start(tmp_path, '--gin.greeting.colour=3')
  code, out, err = _finish(good)
  assert code == 0, err[-3000:]
  assert 'GREETING a=bx3' in out
  code, out, err = _finish(bad)
  assert code != 0
  assert 'GREETING' not in out
  assert '--gin.greeting.colour=3' in err and 'colour' in err


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost_sum_across_processes(tmp_path):
  address = f'127.0.0.1:{_free_port()}'
  procs = [
      _start(tmp_path, f'--coordinator_address={address}', '--process_count=2',
             f'--process_index={i}', '--gin.greeting.times=2')
      for i in range(2)]
  results = [_finish(p) for p in procs]
  for code, _, err in results:
    assert code == 0, err[-3000:]
  lines = [[l for l in out.splitlines() if l.startswith('PROCESSES')]
           for _, out, _ in results]
  # One CPU device per process; process i contributes i + 1: 1 + 2 = 3.
  assert lines == [['PROCESSES 2 DEVICES 2 TOTAL 3.0']] * 2
