"""A wheel carries everything a checkout has: gin configs, the embedded
model's checkpoint (dotfiles included) and the offline vocabulary."""
import glob
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_ships_every_data_file(tmp_path):
  subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
       '-q', '-w', str(tmp_path), str(ROOT)],
      check=True, capture_output=True, timeout=300)
  names = set(zipfile.ZipFile(glob.glob(str(tmp_path / '*.whl'))[0]).namelist())
  expected = set()
  for source, installed in (('prompt_tuning/data', 'prompt_tuning/data'),
                            ('tasks/data', 'prompt_tuning/tasks/data'),
                            ('gin', 'prompt_tuning/gin')):
    for path in (ROOT / source).rglob('*'):
      if path.is_file() and path.suffix != '.pyc' and path.name != '__init__.py':
        expected.add(f'{installed}/{path.relative_to(ROOT / source)}')
  assert any(name.endswith('/.zarray') for name in expected)
  assert expected <= names, sorted(expected - names)[:10]
  # No generic top-level names in site-packages.
  assert {n.split('/')[0] for n in names if '.dist-info' not in n} == {
      'prompt_tuning'}
