"""Where the embedded models (small T5s shipped with the package) live.

Two families of t5x checkpoints sit under `prompt_tuning/data/` (package
data); `prompt_tuning.embedded` describes them and regenerates them:

* the corpus models, `corpus_t5/<size>/<kind>/checkpoint_<step>`, for each
  size in `SIZES` and kind of frozen model in `KINDS`;
* the prefixed model, `embedded_t5/checkpoint_<step>`.

Gin files name them as `@embedded.checkpoint_path()` and
`@embedded.corpus_checkpoint_path()` after
`from prompt_tuning.checkpoints import embedded`.
"""
import pathlib

from prompt_tuning.checkpoints import run_dir

# prompt_tuning/data/, beside this package.
DATA_DIR = pathlib.Path(__file__).parent.parent / 'data'
CHECKPOINT_DIR = DATA_DIR / 'embedded_t5'
CORPUS_DIR = DATA_DIR / 'corpus_t5'

# The ladder of frozen model sizes, smallest first (`gin/corpus/sizes/`).
SIZES = ('tiny', 'mini', 'small', 'base')
# How a size's checkpoints are stored when not float32 (`tiny` and `small`,
# the main job's, predate the ladder): bfloat16 halves the package's
# largest files; loading casts back to the model's dtype.
STORAGE_DTYPES = {'mini': 'bfloat16', 'base': 'bfloat16'}
KINDS = ('span_corruption', 'lm_adapted_short', 'lm_adapted_long')
DEFAULT_SIZE = 'small'
DEFAULT_KIND = 'lm_adapted_long'


def latest(directory: pathlib.Path, what: str) -> str:
  """The `checkpoint_<step>` directory of the highest step under `directory`.

  Args:
    directory: holds `checkpoint_<step>` directories.
    what: the model, named in the error.

  Raises:
    FileNotFoundError: there is none.
  """
  steps = sorted(directory.glob('checkpoint_*'), key=run_dir.checkpoint_step)
  if not steps:
    raise FileNotFoundError(
        f'no {what} checkpoint under {directory}; regenerate it with '
        '`python -m prompt_tuning.embedded`')
  return str(steps[-1])


def checkpoint_path() -> str:
  """The shipped t5x checkpoint of the prefixed model.

  Gin: `INITIAL_CHECKPOINT_PATH = @embedded.checkpoint_path()`.

  Raises:
    FileNotFoundError: the package was installed without its data.
  """
  return latest(CHECKPOINT_DIR, 'prefixed embedded model')


def corpus_checkpoint_path(size: str = DEFAULT_SIZE,
                           kind: str = DEFAULT_KIND) -> str:
  """The shipped t5x checkpoint of a corpus model.

  Gin: `INITIAL_CHECKPOINT_PATH = @embedded.corpus_checkpoint_path()`, with
  `embedded.corpus_checkpoint_path.size` / `.kind` to choose.

  Args:
    size: one of `SIZES`.
    kind: one of `KINDS`.

  Raises:
    ValueError: unknown size or kind.
    FileNotFoundError: the package was installed without its data.
  """
  if size not in SIZES:
    raise ValueError(f'corpus model size {size!r}; expected one of {SIZES}')
  if kind not in KINDS:
    raise ValueError(f'corpus model kind {kind!r}; expected one of {KINDS}')
  return latest(CORPUS_DIR / size / kind, f'corpus model {size}/{kind}')
