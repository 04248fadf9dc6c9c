"""Pretrains the embedded models and installs them into the package.

Each stage is one `python -m prompt_tuning.train` run (a subprocess, so every
stage starts from a clean gin config); the exported checkpoint is copied to
where `checkpoints.embedded` finds it.
"""
import pathlib
import shutil
import subprocess
import sys
from typing import Dict, Sequence

from prompt_tuning.checkpoints import embedded

# Training steps of each stage (batch 32; LM adaptation counts from the
# span-corruption checkpoint, as T5 1.1 LM-adapted's extra steps do).
STAGE_STEPS = {'span_corruption': 1500, 'lm_adapted_short': 300,
               'lm_adapted_long': 1000}


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
  span_checkpoint = embedded.latest(span_dir, 'span corruption')
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
    _install(path, embedded.CORPUS_DIR / size / kind)


def pretrain_prefixed_model(work_dir: str) -> None:
  """Pretrains the prefixed model on the offline suite and installs it."""
  _train(['embedded/pretrain.gin'], {'MODEL_DIR': f"'{work_dir}'"})
  _install(embedded.latest(pathlib.Path(work_dir), 'prefixed'),
           embedded.CHECKPOINT_DIR)
