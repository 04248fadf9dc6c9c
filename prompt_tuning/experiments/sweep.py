"""Runs the gin-configured trainer several times in one process: a sweep.

Each run is a list of gin files plus bindings, parsed afresh (the previous
run's config is cleared), exactly as `python -m prompt_tuning.train` would
parse them. Used by the method comparison (one run per `gin/methods/*.gin`)
and by SPoT's task embeddings (one run per task).

Command-line helpers give sweep commands t5x's gin flags (`--gin_file`,
`--gin.NAME=VALUE`, `--gin_bindings`, `--gin_search_paths`) without absl's
global flag registry, so several such commands can be imported together.
"""
import argparse
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin

from prompt_tuning.cli import gin_utils
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


def train_arguments() -> Dict[str, Any]:
  """`trainer.train`'s bound arguments, references evaluated (the model and
  optimizer built), from the parsed config."""
  return gin.get_bindings(trainer.train, resolve_references=True)


def train(gin_files: Sequence[str], bindings: Sequence[str],
          search_paths: Optional[Sequence[str]] = None
          ) -> Tuple[trainer.TrainResult, Dict[str, Any]]:
  """One configured training run: (its result, the arguments it got)."""
  configure(gin_files, bindings, search_paths)
  try:
    arguments = train_arguments()
    return trainer.train(**arguments), arguments
  finally:
    gin.clear_config()


def string_binding(name: str, value: str) -> str:
  """A gin binding of a string value, quoted as gin reads it."""
  return f'{name} = {value!r}'


def add_gin_flags(parser: argparse.ArgumentParser,
                  default_gin_files: Sequence[str]) -> None:
  """`--gin_file` (repeated), `--gin_bindings` (repeated), `--gin_search_paths`
  on an argparse parser; `--gin.NAME=VALUE` works through `parse_args`."""
  parser.add_argument(
      '--gin_file', action='append', default=None,
      help=('The base gin config, repeatable, parsed in order '
            f'(default: {", ".join(default_gin_files)}).'))
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help='A gin binding; --gin.NAME=VALUE is the same.')
  parser.add_argument('--gin_search_paths', default='.',
                      help='Comma-separated directories for gin files.')
  parser.set_defaults(default_gin_files=list(default_gin_files))


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]
               ) -> Tuple[argparse.Namespace, List[str], List[str],
                          List[str]]:
  """Parses `argv` (without the program name), rewriting `--gin.X=V`.

  Returns:
    (args, gin files, gin bindings, gin search paths).
  """
  args = parser.parse_args(gin_utils.rewrite_gin_args(list(argv)))
  gin_files = args.gin_file or args.default_gin_files
  search_paths = [p for p in args.gin_search_paths.split(',') if p]
  return args, gin_files, list(args.gin_bindings), search_paths
