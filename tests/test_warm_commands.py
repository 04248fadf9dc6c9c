"""The tests' warm command runner (`commands.py`, `warm_commands.py`,
`warm_python.py`): a shell script's `"$PYTHON" -m` line runs in a fork of
the warm server with the script's streams and exit status, and falls back
to the real Python where the server cannot stand in for it."""
import pytest

import commands

pytestmark = pytest.mark.slow

_PROBE = '''import os, sys
print('warm' if 'tensorflow' in sys.modules else 'cold', sys.stdin.read(),
      os.environ.get('PROBE'))
print('to stderr', file=sys.stderr)
sys.exit(3)
'''


def _script(tmp_path, env=None):
  (tmp_path / 'probe.py').write_text(_PROBE)
  return commands.run(
      ['bash', '-c', 'echo from-stdin | PROBE=set "$PYTHON" -m probe'],
      cwd=tmp_path, env=env, timeout=300)


def test_python_m_line_of_a_script_forks_the_warm_server(tmp_path):
  result = _script(tmp_path)
  assert result.returncode == 3, result.stderr
  assert result.stdout.split() == ['warm', 'from-stdin', 'set']
  assert result.stderr.strip().splitlines()[-1] == 'to stderr'


def test_server_refuses_another_tensorflow_setting(tmp_path, monkeypatch):
  # The script changes a setting TensorFlow reads when it starts, which a
  # fork of the server cannot: the real Python runs the line.
  (tmp_path / 'probe.py').write_text(_PROBE)
  monkeypatch.delenv('TF_PROBE_SETTING', raising=False)
  result = commands.run(
      ['bash', '-c', 'echo x | TF_PROBE_SETTING=1 "$PYTHON" -m probe'],
      cwd=tmp_path, timeout=300)
  assert result.returncode == 3, result.stderr
  assert result.stdout.split() == ['cold', 'x', 'None']
