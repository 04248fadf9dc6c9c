r"""The embedded default model: a small T5 shipped with the package.

It is a T5 1.1-style model pretrained by this project's own trainer (model
tuning from scratch) on the offline task suite (`offline_all`: every task
marked by its text prefix), and stored as a t5x checkpoint under
`prompt_tuning/data/embedded_t5/`. The main job prompt-tunes it on one task
of the suite *without* the prefix (`taskless_offline_<task>`), offline.

Regenerate it (a few minutes on 2 CPU cores):

    python -m prompt_tuning.embedded --model_dir=/tmp/embedded_pretrain

which runs `python -m prompt_tuning.train` with `gin/embedded/pretrain.gin`
and copies the exported checkpoint into the package.
"""
import pathlib
import shutil
import subprocess
import sys

DATA_DIR = pathlib.Path(__file__).parent / 'data'
CHECKPOINT_DIR = DATA_DIR / 'embedded_t5'


def checkpoint_path() -> str:
  """The shipped t5x checkpoint directory of the embedded model.

  Gin: `INITIAL_CHECKPOINT_PATH = @embedded.checkpoint_path()`.

  Raises:
    FileNotFoundError: the package was installed without its data.
  """
  steps = sorted(CHECKPOINT_DIR.glob('checkpoint_*'),
                 key=lambda p: int(p.name.split('_')[1]))
  if not steps:
    raise FileNotFoundError(
        f'no embedded model checkpoint under {CHECKPOINT_DIR}; regenerate it '
        'with `python -m prompt_tuning.embedded`')
  return str(steps[-1])


def main(argv) -> int:
  """Pretrains the embedded model and installs its checkpoint."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model_dir', required=True,
                      help='Where the pretraining run writes.')
  parser.add_argument('--train_steps', type=int, default=None)
  args = parser.parse_args(argv)
  command = [sys.executable, '-m', 'prompt_tuning.train',
             '--gin_file=embedded/pretrain.gin',
             f"--gin.MODEL_DIR='{args.model_dir}'"]
  if args.train_steps:
    command.append(f'--gin.TRAIN_STEPS={args.train_steps}')
  subprocess.run(command, check=True)
  exported = sorted(pathlib.Path(args.model_dir).glob('checkpoint_*'),
                    key=lambda p: int(p.name.split('_')[1]))[-1]
  if CHECKPOINT_DIR.exists():
    shutil.rmtree(CHECKPOINT_DIR)
  CHECKPOINT_DIR.mkdir(parents=True)
  shutil.copytree(exported, CHECKPOINT_DIR / exported.name)
  print(f'installed {exported} as {CHECKPOINT_DIR / exported.name}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
