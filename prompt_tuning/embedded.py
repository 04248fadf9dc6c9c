r"""The embedded models: small T5s shipped with the package, pretrained here.

Two families live under `prompt_tuning/data/`, as t5x checkpoints:

* **The corpus models** (`corpus_t5/<size>/<kind>/checkpoint_<step>`): T5
  1.1-style models pretrained only with self-supervised objectives on the
  synthetic corpus (`prompt_tuning.tasks.corpus`), like T5 1.1 LM-adapted:
  span corruption from scratch, then LM adaptation (prefix LM) continuing
  from it. They never see a downstream task's input -> label pairs, so a
  prompt has to elicit the task. Two sizes (`SIZES`: `tiny`, d_model 32,
  and `small`, d_model 128, both 2+2 layers) and the paper's kinds of frozen
  model (`KINDS`):

  | kind               | training                                          |
  |--------------------|---------------------------------------------------|
  | `span_corruption`  | span corruption only (also the "+ sentinel" setting, chosen at tuning time) |
  | `lm_adapted_short` | + `STAGE_STEPS['lm_adapted_short']` LM-adaptation steps |
  | `lm_adapted_long`  | + `STAGE_STEPS['lm_adapted_long']` LM-adaptation steps  |

  The main job prompt-tunes `small`/`lm_adapted_long` (the default).

* **The prefixed model** (`embedded_t5/checkpoint_<step>`): pretrained by
  model tuning on the offline suite with every task marked by its text prefix
  (`gin/embedded/pretrain.gin`). A prompt only has to stand in for a prefix
  it knows, so it shows the mechanics quickly (the demo configs under
  `gin/embedded/` use it), not the method.

Regenerate (measured on 2 shared CPU cores: about an hour for `small`, half
an hour for `tiny`):

    python -m prompt_tuning.embedded --model=small --work_dir=/tmp/pretrain
    python -m prompt_tuning.embedded --model=prefixed --work_dir=/tmp/prefixed

Each runs `python -m prompt_tuning.train` for every stage
(`gin/corpus/pretrain_span_corruption.gin`, then `gin/corpus/lm_adapt.gin`
twice: to the short length, then resumed to the long one) and copies the
exported checkpoints into the package.
"""
import pathlib
import shutil
import subprocess
import sys
from typing import Dict, Sequence

DATA_DIR = pathlib.Path(__file__).parent / 'data'
CHECKPOINT_DIR = DATA_DIR / 'embedded_t5'
CORPUS_DIR = DATA_DIR / 'corpus_t5'

SIZES = ('tiny', 'small')
KINDS = ('span_corruption', 'lm_adapted_short', 'lm_adapted_long')
DEFAULT_SIZE = 'small'
DEFAULT_KIND = 'lm_adapted_long'
# Training steps of each stage (batch 32; LM adaptation counts from the
# span-corruption checkpoint, as T5 1.1 LM-adapted's extra steps do).
STAGE_STEPS = {'span_corruption': 1500, 'lm_adapted_short': 300,
               'lm_adapted_long': 1000}


def _latest(directory: pathlib.Path, what: str) -> str:
  steps = sorted(directory.glob('checkpoint_*'),
                 key=lambda p: int(p.name.split('_')[1]))
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
  return _latest(CHECKPOINT_DIR, 'prefixed embedded model')


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
  return _latest(CORPUS_DIR / size / kind, f'corpus model {size}/{kind}')


def _train(gin_files: Sequence[str], overrides: Dict[str, str]) -> None:
  command = [sys.executable, '-m', 'prompt_tuning.train']
  command += [f'--gin_file={f}' for f in gin_files]
  command += [f'--gin.{k}={v}' for k, v in overrides.items()]
  print('+', ' '.join(command), flush=True)
  subprocess.run(command, check=True)


def _install(exported: str, destination: pathlib.Path) -> None:
  """Copies a checkpoint into the package, replacing what was there."""
  staging = destination.with_name(destination.name + '.tmp')
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  shutil.copytree(exported, staging / pathlib.Path(exported).name)
  shutil.rmtree(destination, ignore_errors=True)
  staging.rename(destination)
  print(f'installed {exported} as {destination}', flush=True)


def pretrain_corpus_model(size: str, work_dir: str,
                          steps: Dict[str, int] = STAGE_STEPS) -> None:
  """Pretrains one corpus model size (every kind) and installs it."""
  work = pathlib.Path(work_dir) / size
  # The stage configs include corpus/model.gin; the size goes after them.
  model_gins = [f'corpus/sizes/{size}.gin']
  span_dir = work / 'span_corruption'
  _train(['corpus/pretrain_span_corruption.gin'] + model_gins,
         {'MODEL_DIR': f"'{span_dir}'",
          'TRAIN_STEPS': str(steps['span_corruption'])})
  span_checkpoint = _latest(span_dir, 'span corruption')
  exported = {'span_corruption': span_checkpoint}
  lm_dir = work / 'lm_adapted'
  for kind in ('lm_adapted_short', 'lm_adapted_long'):
    # The long run resumes the short one's train state in the same directory.
    _train(['corpus/lm_adapt.gin'] + model_gins,
           {'MODEL_DIR': f"'{lm_dir}'",
            'INITIAL_CHECKPOINT_PATH': f"'{span_checkpoint}'",
            'TRAIN_STEPS': str(steps[kind])})
    exported[kind] = str(lm_dir / f'checkpoint_{steps[kind]}')
  for kind, path in exported.items():
    _install(path, CORPUS_DIR / size / kind)


def pretrain_prefixed_model(work_dir: str) -> None:
  """Pretrains the prefixed model on the offline suite and installs it."""
  _train(['embedded/pretrain.gin'], {'MODEL_DIR': f"'{work_dir}'"})
  _install(_latest(pathlib.Path(work_dir), 'prefixed'), CHECKPOINT_DIR)


def main(argv) -> int:
  """Pretrains embedded models and installs their checkpoints."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', default='all',
                      choices=SIZES + ('all', 'prefixed'),
                      help="A corpus model size, 'all' corpus sizes, or "
                           "'prefixed'.")
  parser.add_argument('--work_dir', required=True,
                      help='Where the pretraining runs write.')
  args = parser.parse_args(argv)
  if args.model == 'prefixed':
    pretrain_prefixed_model(args.work_dir)
  else:
    for size in SIZES if args.model == 'all' else (args.model,):
      pretrain_corpus_model(size, args.work_dir)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
