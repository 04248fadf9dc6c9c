"""Runs the gin-configured trainer several times in one process: a sweep.

Each run is a list of gin files plus bindings, parsed afresh (the previous
run's config is cleared), exactly as `python -m prompt_tuning.train` would
parse them. Used by the method comparison (one run per `gin/methods/*.gin`)
and by SPoT's task embeddings (one run per task).
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import gin

from prompt_tuning.cli import gin_utils
from prompt_tuning.cli import run_config
from prompt_tuning.training import trainer


def configure(gin_files: Sequence[str], bindings: Sequence[str],
              search_paths: Optional[Sequence[str]] = None) -> None:
  """Clears gin, then parses `gin_files` and `bindings` in order (unlocked).

  Raises:
    FileNotFoundError, ValueError: as `gin_utils.parse_gin_flags`, naming the
      file or binding at fault.
  """
  gin.clear_config()
  gin_utils.parse_gin_flags(gin_utils.gin_search_paths(search_paths),
                            gin_files, bindings, finalize_config=False)


def train(gin_files: Sequence[str], bindings: Sequence[str],
          search_paths: Optional[Sequence[str]] = None
          ) -> Tuple[trainer.TrainResult, Dict[str, Any]]:
  """One configured training run: (its result, the arguments it got)."""
  configure(gin_files, bindings, search_paths)
  try:
    arguments = run_config.train_arguments()
    command = dict(gin_files=gin_files, gin_search_paths=search_paths,
                   gin_bindings=bindings)
    return trainer.train(**arguments, run_command=command), arguments
  finally:
    gin.clear_config()


def string_binding(name: str, value: str) -> str:
  """A gin binding of a string value, quoted as gin reads it."""
  return f'{name} = {value!r}'

