"""Shared fixtures: the reference folder, a tiny T5 with odd sizes."""
import os
import pathlib

import pytest

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_DIR = pathlib.Path(
    os.environ.get('PROMPT_TUNING_REFERENCE_DIR',
                   _REPO_ROOT.parent / 'shared' / 'reference'))


def _reference_path(relative: str) -> pathlib.Path:
  """Path inside the reference folder; skips (or fails under CI) if absent."""
  path = REFERENCE_DIR / relative
  if not path.exists():
    reason = (f'reference artifact {path} is absent (set '
              'PROMPT_TUNING_REFERENCE_DIR to the shared/reference folder)')
    if os.environ.get('CI', '').lower() == 'true':
      pytest.fail(reason)
    pytest.skip(reason)
  return path


@pytest.fixture
def reference_path():
  """Returns a function mapping a path relative to shared/reference to a Path."""
  return _reference_path
