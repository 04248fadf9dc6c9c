"""Pretrains the embedded models and installs them into the package.

Each stage is one `python -m prompt_tuning.train` run (a subprocess, so every
stage starts from a clean gin config); the exported checkpoint is copied to
where `checkpoints.embedded` finds it.
"""
import functools
import pathlib
import shutil
import subprocess
import sys
from typing import Any, Callable, Dict, Optional, Sequence

from prompt_tuning.checkpoints import embedded
from prompt_tuning.checkpoints import run_dir

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


def _install(exported: str, destination: pathlib.Path,
             storage_dtype: Optional[str] = None) -> None:
  """Copies a checkpoint into the package, replacing what was there; with
  `storage_dtype`, its arrays are stored in that dtype instead."""
  staging = destination.with_name(destination.name + '.tmp')
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  copy = staging / pathlib.Path(exported).name
  if storage_dtype is None:
    shutil.copytree(exported, copy)
  else:
    import jax  # pylint: disable=g-import-not-at-top
    from prompt_tuning.checkpoints import t5x  # pylint: disable=g-import-not-at-top
    params = t5x.load_t5x(exported)
    dtype = jax.numpy.dtype(storage_dtype)
    t5x.save_t5x(jax.tree.map(lambda a: a.astype(dtype), params),
                 str(copy), step=run_dir.checkpoint_step(copy))
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
    exported[kind] = str(lm_dir / run_dir.checkpoint_dir_name(steps[kind]))
  for kind, path in exported.items():
    _install(path, embedded.CORPUS_DIR / size / kind,
             embedded.STORAGE_DTYPES.get(size))


def pretrain_prefixed_model(work_dir: str) -> None:
  """Pretrains the prefixed model on the offline suite and installs it."""
  _train(['embedded/pretrain.gin'], {'MODEL_DIR': f"'{work_dir}'"})
  _install(embedded.latest(pathlib.Path(work_dir), 'prefixed'),
           embedded.CHECKPOINT_DIR)


def _objective_task(kind: str) -> str:
  """The pretraining task a kind of corpus model was last trained on."""
  from prompt_tuning.tasks import corpus_tasks  # pylint: disable=g-import-not-at-top
  return (corpus_tasks.SPAN_CORRUPTION_TASK if kind == 'span_corruption'
          else corpus_tasks.PREFIX_LM_TASK)


@functools.lru_cache(maxsize=None)
def _objective_batch(task: str, num_examples: int) -> Dict[str, Any]:
  """The first `num_examples` examples of a pretraining task, one batch."""
  # pylint: disable=g-import-not-at-top
  import seqio
  from prompt_tuning.tasks import corpus_tasks
  # pylint: enable=g-import-not-at-top
  lengths = dict(corpus_tasks.SEQUENCE_LENGTHS[task])
  dataset = seqio.get_mixture_or_task(task).get_dataset(
      lengths, split='train', shuffle=False, seed=0)
  converted = seqio.EncDecFeatureConverter(pack=False)(dataset, lengths)
  return next(converted.batch(num_examples).as_numpy_iterator())


@functools.lru_cache(maxsize=None)
def _jitted_loss(config: Any) -> Callable[..., Any]:
  """One compiled loss per model configuration: a size's kinds share it."""
  # pylint: disable=g-import-not-at-top
  import jax
  from prompt_tuning.model import models
  from prompt_tuning.model import t5
  from prompt_tuning.tasks import corpus
  # pylint: enable=g-import-not-at-top
  vocabulary = corpus.vocabulary()
  model = models.EncoderDecoderModel(t5.Transformer(config), vocabulary,
                                     vocabulary)
  return jax.jit(model.loss_fn)


def objective_loss(checkpoint: str, task: str, num_examples: int = 128
                   ) -> float:
  """Mean loss per target token of a corpus model on the first
  `num_examples` examples of a pretraining task (its texts are the ones
  pretraining saw: the corpus has no held-out pretraining split)."""
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np
  from prompt_tuning.checkpoints import t5x
  from prompt_tuning.model import t5
  # pylint: enable=g-import-not-at-top
  # Stored bfloat16 (`embedded.STORAGE_DTYPES`) runs in float32, as tuning does.
  params = jax.tree.map(lambda a: np.asarray(a, np.float32),
                        t5x.load_t5x(checkpoint))
  config = t5.config_from_params(params, dropout_rate=0.0)
  batch = _objective_batch(task, num_examples)
  loss, extras = _jitted_loss(config)(params, batch, None)
  return float(loss) / float(extras['num_tokens'])


def losses_table(sizes: Sequence[str] = embedded.SIZES) -> str:
  """Markdown: each size's parameters and each kind's loss per token on the
  objective it was last trained on (`objective_loss`)."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import t5x
  from prompt_tuning.model import costs
  from prompt_tuning.model import t5
  from prompt_tuning.utils import tables
  # pylint: enable=g-import-not-at-top
  rows = []
  for size in sizes:
    paths = {kind: embedded.corpus_checkpoint_path(size, kind)
             for kind in embedded.KINDS}
    config = t5.config_from_params(t5x.load_t5x(paths['span_corruption']))
    rows.append([size, f'{costs.count_parameters(config):,}',
                 embedded.STORAGE_DTYPES.get(size, 'float32')]
                + [f'{objective_loss(paths[k], _objective_task(k)):.3f}'
                   for k in embedded.KINDS])
  header = ['size', 'parameters', 'stored as'] + [
      f'{kind} ({_objective_task(kind)} loss/token)'
      for kind in embedded.KINDS]
  return tables.markdown_table(header, rows, align='lrl' + 'r' * 3)
