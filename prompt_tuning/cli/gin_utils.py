"""Gin and flag plumbing shared by the entry points (train, eval, infer).

Follows t5x's idiom. An entry module defines the flags, wraps its main with
`run`, and inside main starts the distributed system, then parses gin:

  FLAGS = flags.FLAGS
  gin_utils.define_flags()

  def main(argv):
    gin_utils.initialize_distributed(FLAGS.coordinator_address,
                                     FLAGS.process_count, FLAGS.process_index,
                                     FLAGS.multiprocess_gpu)
    gin_utils.parse_gin_flags(
        gin_utils.gin_search_paths(FLAGS.gin_search_paths), FLAGS.gin_file,
        FLAGS.gin_bindings)
    train_using_gin()

  if __name__ == '__main__':
    gin_utils.run(main)

so that `--gin.NAME=VALUE` works as an override beside `--gin_file` and
`--gin_bindings`, and the gin files shipped with the package (`gin/` in a
checkout, installed as `prompt_tuning.gin`) are always on the search path:
`--gin_file=runs/prompt_tuning.gin` resolves with no `--gin_search_paths`.
"""
import importlib.util
import logging as std_logging
import os
import pathlib
import sys
import tokenize
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from absl import app
from absl import flags
from absl import logging
import gin

from prompt_tuning.cli import checks
from prompt_tuning.cli import console
from prompt_tuning.utils import host_memory

if not hasattr(gin, 'parse_config_files_and_bindings'):
  # The repository's `gin/` folder (the package's config files) shadows
  # gin-config when the repository root is on sys.path, as it is for
  # `python -m ...` run from there, if that folder has an __init__.py.
  raise ImportError(
      f'The module `gin` was imported from {getattr(gin, "__file__", None)!r}, '
      'which is not gin-config: that folder shadows it on sys.path. Run from '
      'another directory, or remove the __init__.py from that folder.')

_GIN_PACKAGE = 'prompt_tuning.gin'
# What gin raises for a bad binding or file besides OSError: unknown
# configurable or parameter (ValueError), bad syntax (SyntaxError or
# tokenize.TokenError), an `import` of a missing module (ImportError).
_GIN_PARSE_ERRORS = (ValueError, SyntaxError, tokenize.TokenError, ImportError,
                     TypeError)
# Environment variables that mark one process of a multi-process launch which
# `jax.distributed.initialize()` can configure by itself.
_SLURM_VARS = ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
               'SLURM_PROCID', 'SLURM_LOCALID')
_OMPI_VARS = ('OMPI_MCA_orte_hnp_uri', 'OMPI_COMM_WORLD_SIZE')
_TPU_HOSTS_VARS = ('TPU_PROCESS_ADDRESSES', 'TPU_WORKER_HOSTNAMES')
# absl's help flags, which print the help and exit before main.
_HELP_FLAGS = ('help', '?', 'helpshort', 'helpfull', 'helpxml')


# ---------------------------------------------------------------------------
# Flags.
# ---------------------------------------------------------------------------


def define_gin_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines t5x's gin flags, for an entry module that parses gin itself.

  Flags: `--gin_file` (repeated), `--gin_bindings` (repeated),
  `--gin_search_paths` (comma-separated, default '.'). `--gin.NAME=VALUE` is
  not a flag: `run` (or `parse_args`) rewrites it into `--gin_bindings`
  before parsing.

  Args:
    flag_values: the registry to define them in (absl's global one by default).
  """
  flags.DEFINE_multi_string(
      'gin_file', default=None,
      help=('Gin config file, absolute or relative to a --gin_search_paths '
            'entry or the package gin directory. Repeat it to parse several '
            'files in order, later ones overriding earlier ones.'),
      flag_values=flag_values)
  flags.DEFINE_multi_string(
      'gin_bindings', default=[],
      help=('One gin binding, e.g. "MODEL_DIR = \'/tmp/run\'". Applied after '
            'the gin files, in order. --gin.NAME=VALUE is a shorter spelling.'),
      flag_values=flag_values)
  flags.DEFINE_list(
      'gin_search_paths', default=['.'],
      help=('Comma-separated directories in which to look up relative '
            '--gin_file paths (and gin `include`s), first match wins; the '
            'package gin directory is always searched after them.'),
      flag_values=flag_values)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines t5x's gin and multi-process flags; call once from an entry module.

  Flags: the gin flags (`define_gin_flags`), `--tfds_data_dir`,
  `--multiprocess_gpu`, `--coordinator_address`, `--process_count`,
  `--process_index`.

  Args:
    flag_values: the registry to define them in (absl's global one by default).
  """
  define_gin_flags(flag_values)
  flags.DEFINE_string(
      'tfds_data_dir', None,
      help=('If set, TensorFlow Datasets reads and prepares data in this '
            'directory for every task, overriding the tasks\' own setting.'),
      flag_values=flag_values)
  flags.DEFINE_boolean(
      'multiprocess_gpu', False,
      help=('Initialise the JAX distributed system from --coordinator_address, '
            '--process_count and --process_index (multi-host GPU); unset '
            'values are detected from the cluster environment.'),
      flag_values=flag_values)
  flags.DEFINE_string(
      'coordinator_address', None,
      help='IP:port of process 0, on which it serves the JAX coordinator.',
      flag_values=flag_values)
  flags.DEFINE_integer(
      'process_count', None, help='Number of processes in the job.',
      flag_values=flag_values)
  flags.DEFINE_integer(
      'process_index', None,
      help='Index of this process, in [0, --process_count).',
      flag_values=flag_values)


def rewrite_gin_args(argv: Sequence[str]) -> List[str]:
  """Rewrites each `--gin.NAME=VALUE` into `--gin_bindings=NAME = VALUE`.

  Only the first '=' separates name and value, so a value may hold '=' and
  quotes: `--gin.f.s="'a=b'"` becomes `--gin_bindings=f.s = 'a=b'`.
  Arguments after a bare `--` are positional and left alone.

  Args:
    argv: command-line arguments, program name first.

  Returns:
    The arguments with gin overrides rewritten, in the same order.

  Raises:
    ValueError: for `--gin.NAME` with no '=' (e.g. `--gin.NAME VALUE`, which
      absl cannot parse) or with an empty NAME; the message quotes the arg.
  """
  out = []
  for i, arg in enumerate(argv):
    if arg == '--':
      return out + list(argv[i:])
    if not arg.startswith('--gin.'):
      out.append(arg)
      continue
    name, sep, value = arg[len('--gin.'):].partition('=')
    if not sep:
      raise ValueError(
          f"Gin override {arg!r} has no '=': write --gin.NAME=VALUE as one "
          'argument (not --gin.NAME VALUE).')
    if not name.strip():
      raise ValueError(f'Gin override {arg!r} names no parameter: expected '
                       '--gin.NAME=VALUE.')
    rewritten = f'--gin_bindings={name} = {value}'
    logging.debug('Rewrote %s as %s', arg, rewritten)
    out.append(rewritten)
  return out


def parse_args(define: Callable[[flags.FlagValues], None],
               args: Sequence[str], program: str = 'prompt_tuning'
               ) -> Tuple[List[str], flags.FlagValues]:
  """Parses command-line words as `run` parses the real command line, into a
  fresh flag registry (so one process can parse several command lines).

  Args:
    define: defines the flags in the registry it is given, e.g. an entry
      module's `define_flags`.
    args: the words after the program name; `--gin.NAME=VALUE` allowed.
    program: the program name, first of the remaining arguments.

  Returns:
    (the remaining arguments, program name first, as `main` gets them; the
    parsed flags).

  Raises:
    ValueError: a malformed `--gin.NAME=VALUE`.
    flags.Error: an unknown flag, a bad value or a missing required flag.
  """
  flag_values = flags.FlagValues()
  define(flag_values)
  rest = flag_values([program] + rewrite_gin_args(list(args)))
  return rest, flag_values


# ---------------------------------------------------------------------------
# Gin.
# ---------------------------------------------------------------------------


def package_gin_dir() -> str:
  """Returns the directory of the gin files shipped with the package.

  That is `prompt_tuning.gin` (the repository's `gin/`, see setup.py), found
  without importing it. Where that name is not importable (`gin/` kept as a
  plain data folder in an editable install) the checkout's `gin/` beside the
  package is used.

  Raises:
    FileNotFoundError: if neither exists.
  """
  spec = importlib.util.find_spec(_GIN_PACKAGE)
  locations = list(spec.submodule_search_locations or []) if spec else []
  package = pathlib.Path(__file__).resolve().parents[1]  # prompt_tuning/
  candidates = locations + [str(package / 'gin'), str(package.parent / 'gin')]
  for candidate in candidates:
    if os.path.isdir(candidate):
      return os.path.abspath(candidate)
  raise FileNotFoundError(
      f'The package gin directory ({_GIN_PACKAGE}) was not found; looked in '
      f'{candidates}. Reinstall the package (pip install -e .).')


def gin_search_paths(user_paths: Optional[Sequence[str]] = None) -> List[str]:
  """Returns the gin search paths: the user's, then the package gin directory.

  User paths come first so that their files win where relative names clash
  (as in t5x); duplicates are dropped, keeping the first.

  Args:
    user_paths: e.g. the value of `--gin_search_paths`.

  Returns:
    The paths, the package gin directory (absolute, existing) always present.
  """
  paths = []
  for path in list(user_paths or []) + [package_gin_dir()]:
    if path and path not in paths:
      paths.append(path)
  return paths


def _shown_binding(binding: str) -> str:
  """How a binding was most likely written on the command line."""
  name, sep, value = binding.partition('=')
  if sep and '\n' not in binding and name.strip():
    return f'--gin.{name.strip()}={value.strip()}'
  return f'--gin_bindings={binding!r}'


class _QuietGinSearch(std_logging.Filter):
  """Drops gin's 'Path not found' errors.

  gin's package-resource reader logs one at ERROR level for every search
  location that does not hold a relative file name, before the one that
  does; they report the search, not a failure (a file found nowhere still
  raises, and `parse_gin_flags` names it).
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.module == 'resource_reader'
                and str(record.msg).startswith('Path not found'))


_QUIET_GIN_SEARCH = _QuietGinSearch()


def parse_gin_flags(gin_search_paths: Sequence[str],  # pylint: disable=redefined-outer-name
                    gin_files: Optional[Sequence[str]],
                    gin_bindings: Optional[Sequence[str]],
                    skip_unknown: Union[bool, Sequence[str]] = False,
                    finalize_config: bool = True) -> None:
  """Registers search paths, then parses gin files, then bindings, in order.

  Later files and bindings override earlier ones. A binding of a macro
  that no gin file parsed so far defines and no binding uses is refused (gin
  itself would ignore it). The resulting config is logged at
  `--verbosity=1`.

  NOTE: gin keeps one process-wide list of search paths, which
  `gin.clear_config` does not reset; each call appends to it, and the first
  path holding a relative name wins.

  Args:
    gin_search_paths: directories in which relative gin file names (and
      `include`s) are looked up after the working directory; usually
      `gin_search_paths(FLAGS.gin_search_paths)`.
    gin_files: gin files, e.g. `FLAGS.gin_file` (may be None).
    gin_bindings: bindings such as 'f.x = 1', e.g. `FLAGS.gin_bindings`.
    skip_unknown: ignore bindings of unknown configurables (True), or of those
      named in the list, instead of raising.
    finalize_config: lock the config once parsed.

  Raises:
    FileNotFoundError: a gin file, or a file it includes, cannot be opened;
      the message names the `--gin_file` and the search paths tried.
    ValueError: a file or binding names an unknown configurable or parameter,
      has bad syntax or imports a missing module; the message names the
      `--gin_file` or the `--gin.NAME=VALUE` at fault and quotes gin's reason;
      an unknown macro (not checked with `skip_unknown`), with the closest
      known names.
  """
  std_logging.getLogger().addFilter(_QUIET_GIN_SEARCH)  # idempotent
  for path in gin_search_paths:
    gin.add_config_file_search_path(path)
  for gin_file in gin_files or []:
    try:
      gin.parse_config_file(gin_file, skip_unknown=skip_unknown)
    except OSError as e:
      if os.path.isabs(gin_file):
        tried = [gin_file]
      else:
        tried = [os.getcwd()] + [os.path.abspath(p) for p in gin_search_paths]
      raise FileNotFoundError(
          f'Could not open a gin file while parsing --gin_file={gin_file}: '
          f'{e}\nSearch paths tried, in order: {tried}') from e
    except _GIN_PARSE_ERRORS as e:
      raise ValueError(f'Invalid gin config in --gin_file={gin_file}: '
                       f'{type(e).__name__}: {e}') from e
  # One binding at a time, so that an error names the override at fault.
  known_before = checks.defined_macros()
  bound_macros = {}  # name -> the binding that first set it
  for binding in gin_bindings or []:
    defined = checks.defined_macros()
    try:
      gin.parse_config(binding, skip_unknown=skip_unknown)
    except _GIN_PARSE_ERRORS as e:
      # gin's first line is the reason; the rest repeats the binding.
      reason = str(e).strip().splitlines()[0] if str(e).strip() else ''
      raise ValueError(f'Invalid gin binding in {_shown_binding(binding)}: '
                       f'{type(e).__name__}: {reason}') from e
    for name in checks.defined_macros() - defined:
      bound_macros.setdefault(name, binding)
  if not skip_unknown:
    # gin accepts a macro nothing uses: a misspelt one would be ignored.
    for name, close in checks.unknown_macros(bound_macros, known_before):
      raise ValueError(checks.unknown_macro_message(
          name, close, _shown_binding(bound_macros[name])))
  if finalize_config:
    try:
      gin.finalize()
    except ValueError as e:
      # gin: "NAME/macro.value set to `%gin.REQUIRED` but not subsequently
      # overridden." A required macro left unset is the usual case.
      name, sep, _ = str(e).partition('/macro.value set to `%gin.REQUIRED`')
      if not sep or not name.isidentifier():
        raise
      raise ValueError(f'{name} is required (%gin.REQUIRED, not set): set it '
                       f'with --gin.{name}=VALUE '
                       '(strings quoted, e.g. --gin.MODEL_DIR="\'/tmp/run\'")'
                       ) from e
  logging.vlog(console.DETAIL_VERBOSITY, 'Gin configuration:\n%s',
               gin.config_str())


def summarize_gin_config(model_dir: str,
                         summary_writer: Optional[Any] = None,
                         step: int = 0,
                         operative: bool = True) -> Optional[str]:
  """Writes the gin config to `model_dir/config.gin` and TensorBoard (and
  the log, at `--verbosity=1`).

  Only process 0 writes; the file is written to a temporary sibling and
  renamed, so it is never seen half-written. Local paths and gs:// work.

  Args:
    model_dir: the run directory; created if missing.
    summary_writer: a clu `MetricWriter`; if given, the config is written as
      the text summary 'config' (markdown) at `step`.
    step: the step of the text summary.
    operative: write `gin.operative_config_str()` (the values the called
      configurables used) rather than `gin.config_str()` (everything bound).

  Returns:
    The path written on process 0, None on the other processes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return None
  config_str = gin.operative_config_str() if operative else gin.config_str()
  logging.vlog(console.DETAIL_VERBOSITY, '%s gin config:\n%s',
               'Operative' if operative else 'Full', config_str)
  from prompt_tuning.checkpoints import run_dir  # pylint: disable=g-import-not-at-top
  from prompt_tuning.utils import files  # pylint: disable=g-import-not-at-top
  path = run_dir.config_path(model_dir)
  if files.is_gcs(model_dir):
    files.gfile().makedirs(model_dir)
  else:
    os.makedirs(model_dir, exist_ok=True)
  files.atomic_write_bytes(path, config_str.encode())
  if summary_writer is not None:
    summary_writer.write_texts(step, {'config': gin.markdown(config_str)})
    summary_writer.flush()
  return path


# ---------------------------------------------------------------------------
# Processes.
# ---------------------------------------------------------------------------


def _int_env(name: str) -> int:
  try:
    return int(os.environ.get(name, '1'))
  except ValueError:
    return 1


def _detected_cluster() -> Optional[str]:
  """Names the multi-process launcher found in the environment, if any."""
  if all(v in os.environ for v in _SLURM_VARS) and _int_env('SLURM_NTASKS') > 1:
    return 'slurm'
  if all(v in os.environ for v in _OMPI_VARS) and _int_env(
      'OMPI_COMM_WORLD_SIZE') > 1:
    return 'ompi'
  for var in _TPU_HOSTS_VARS:
    hosts = [h for h in os.environ.get(var, '').split(',') if h.strip()]
    if len(hosts) > 1:
      return 'tpu'
  return None


def initialize_distributed(coordinator_address: Optional[str] = None,
                           process_count: Optional[int] = None,
                           process_index: Optional[int] = None,
                           multiprocess_gpu: bool = False) -> bool:
  """Starts the JAX distributed system when this is one of several processes.

  Must run before anything touches a JAX backend (`jax.devices()`, any
  computation). Cases:
  - `process_count` is 1: single process, nothing to do.
  - `multiprocess_gpu`, or any of the three values given (t5x's flags):
    `jax.distributed.initialize(coordinator_address, process_count,
    process_index)`; values left None are filled in by JAX from the cluster
    environment, where it knows one.
  - otherwise, under a multi-task SLURM step, Open MPI, or a TPU slice whose
    hosts are listed in TPU_PROCESS_ADDRESSES / TPU_WORKER_HOSTNAMES:
    `jax.distributed.initialize()`, which detects everything itself.
  - otherwise: single process, nothing to do. (On a Cloud TPU VM slice without
    those variables the TPU runtime connects the hosts by itself.)

  NOTE: with several CPU processes, cross-process computations need CPU
  collectives; JAX 0.10 uses gloo by default. If the configured
  implementation is None (older JAX), gloo is selected here.

  Args:
    coordinator_address: 'IP:port' of process 0 (--coordinator_address).
    process_count: number of processes (--process_count).
    process_index: index of this process (--process_index).
    multiprocess_gpu: t5x's --multiprocess_gpu.

  Returns:
    Whether `jax.distributed.initialize` was called.

  Raises:
    ValueError: --process_count < 1, or --process_index outside
      [0, --process_count).
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.distributed.is_initialized():
    logging.info('JAX distributed system already initialised.')
    return False
  if process_count is not None and process_count < 1:
    raise ValueError(f'--process_count={process_count}: expected >= 1.')
  if process_count is not None and process_index is not None and not (
      0 <= process_index < process_count):
    raise ValueError(f'--process_index={process_index}: expected an index in '
                     f'[0, --process_count={process_count}).')
  if process_count == 1:
    logging.debug('--process_count=1: single process, no distributed system.')
    return False
  explicit = multiprocess_gpu or any(
      v is not None for v in (coordinator_address, process_count,
                              process_index))
  cluster = None if explicit else _detected_cluster()
  if not explicit and cluster is None:
    logging.debug('Single process: no distributed system needed.')
    return False
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    logging.info(
        'Initialising the JAX distributed system: coordinator_address=%s, '
        'process_count=%s, process_index=%s', coordinator_address,
        process_count, process_index)
    jax.distributed.initialize(coordinator_address, process_count,
                               process_index)
  else:
    logging.info('Initialising the JAX distributed system from the %s '
                 'environment.', cluster)
    jax.distributed.initialize()
  logging.info('JAX process %d of %d.', jax.process_index(),
               jax.process_count())
  return True


# ---------------------------------------------------------------------------
# Entry.
# ---------------------------------------------------------------------------


def _asks_for_help(argv: Sequence[str]) -> bool:
  """Whether an argument before a bare `--` is one of absl's help flags."""
  for arg in argv[1:]:
    if arg == '--':
      return False
    if arg.lstrip('-') in _HELP_FLAGS and arg.startswith('-'):
      return True
  return False


def _sets_jax_flags(argv: Sequence[str]) -> bool:
  """Whether an argument before a bare `--` sets one of JAX's flags."""
  for arg in argv[1:]:
    if arg == '--':
      return False
    if arg.startswith(('--jax_', '--nojax_')):
      return True
  return False


def _parse_flags(argv: Sequence[str]) -> List[str]:
  """absl flags parser that first rewrites `--gin.NAME=VALUE` arguments.

  Asked for help (`--help`, `--helpfull`, ...), it prints it and exits with
  status 0, not absl's 1: the help was given, nothing failed. A bad argument
  exits with status 1 after one line, `error: ...`.
  """
  try:
    argv = rewrite_gin_args(argv)
  except ValueError as e:
    console.report_error(e)
    sys.exit(1)
  if _sets_jax_flags(argv):
    # JAX defines its --jax_* flags only when asked; its import is slow, so
    # only a command line that sets one pays for it before parsing.
    import jax  # pylint: disable=g-import-not-at-top
    try:
      jax.config.parse_flags_with_absl()
    except flags.IllegalFlagValueError:
      # Parsing only the --jax_* arguments, it also validates the command's
      # flags, at their defaults: a required one fails. The whole command
      # line is parsed and validated next, and the --jax_* values then
      # applied.
      pass
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    console.report_error(
        ValueError(f'{e} (--helpshort or --helpfull lists the flags)'))
    sys.exit(1)
  except SystemExit as e:
    if e.code == 1 and _asks_for_help(argv):
      sys.exit(0)
    raise


def run(main: Callable[[Sequence[str]], Any], *,
        tensorflow: bool = True,
        check: Optional[Callable[[], None]] = None) -> None:
  """Runs `main` like `absl.app.run`, accepting `--gin.NAME=VALUE` overrides.

  glibc's allocator is first set to reuse freed memory on a machine with no
  accelerator (`utils.host_memory.reuse_freed_memory`). The command line is
  parsed next, with nothing heavy imported (`--help` and bad arguments
  answer at once); then the output is set up from
  `--verbosity` (`console.configure_logging`) and GPUs are hidden from
  TensorFlow. A known error raised by `main` (`console.KNOWN_ERRORS`: a bad
  argument, config or file) ends the program with `error: <message>` as the
  last line and status 1, its traceback shown only at `--verbosity=1`;
  an int `main` returns is the exit status.

  Args:
    main: the entry's main, called with the remaining positional arguments.
    tensorflow: whether the command may use TensorFlow (tf.data through
      seqio or TFDS); False spares a command that never does its import.
    check: checks the parsed flags, raising a known error, before anything
      heavy is imported.
  """

  def checked_main(argv: Sequence[str]) -> Any:
    console.configure_logging()
    try:
      if check is not None:
        check()
      if tensorflow:
        console.hide_gpus_from_tensorflow()
      return main(argv)
    except console.KNOWN_ERRORS as e:
      console.report_error(e)
      sys.exit(1)

  host_memory.reuse_freed_memory()  # Before any library starts a thread.
  app.run(checked_main, flags_parser=_parse_flags)


def configure_from_flags(argv: Sequence[str]) -> None:
  """What every entry point's `main` does first, from the flags defined by
  `define_flags`: the distributed system, the TFDS data dir, then the gin
  files and bindings.

  Raises:
    app.UsageError: positional arguments were given.
  """
  flag_values = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  initialize_distributed(flag_values.coordinator_address,
                         flag_values.process_count, flag_values.process_index,
                         flag_values.multiprocess_gpu)
  if flag_values.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(flag_values.tfds_data_dir)
  parse_gin_flags(gin_search_paths(flag_values.gin_search_paths),
                  flag_values.gin_file, flag_values.gin_bindings)
