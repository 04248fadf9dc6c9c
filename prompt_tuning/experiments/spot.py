"""SPoT (Vu et al. 2022): ranks source tasks for a target by the similarity
of their task embeddings (the library of `python -m prompt_tuning.spot`).

A task embedding is the task's prompt trained briefly from one shared
initialisation (`task_embedding`); sources are ranked by the cosine
similarity of their embeddings to the target's (`rank_sources`).

Metrics (SPoT, section 4): 'average_tokens', the cosine of the two prompts'
average token vectors; 'per_token', the average cosine over all pairs of
prompt tokens.
"""
import os
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from sklearn.metrics import pairwise

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.experiments import sweep
from prompt_tuning.model import prompts
from prompt_tuning.utils import tables

EMBEDDING_FILE = 'task_embedding.npy'


def _check(embedding: np.ndarray, name: str) -> np.ndarray:
  embedding = np.asarray(embedding, np.float64)
  if embedding.ndim != 2:
    raise ValueError(f'task embedding {name} has shape {embedding.shape}; '
                     'expected a prompt [P, H]')
  return embedding


def average_tokens_cosine(a: np.ndarray, b: np.ndarray) -> float:
  """Cosine similarity of the mean token vectors of `a` [P, H], `b` [Q, H]."""
  return float(pairwise.cosine_similarity(a.mean(0, keepdims=True),
                                          b.mean(0, keepdims=True))[0, 0])


def per_token_cosine(a: np.ndarray, b: np.ndarray) -> float:
  """Average cosine similarity over every token pair of `a` [P, H] and
  `b` [Q, H]."""
  return float(pairwise.cosine_similarity(a, b).mean())


METRICS: Mapping[str, Callable[[np.ndarray, np.ndarray], float]] = {
    'average_tokens': average_tokens_cosine,
    'per_token': per_token_cosine,
}


def rank_sources(target: np.ndarray, sources: Mapping[str, np.ndarray],
                 metric: str = 'average_tokens') -> List[Tuple[str, float]]:
  """Sources by decreasing similarity of their task embeddings to the
  target's: [(task, similarity)].

  Raises:
    ValueError: an unknown metric, no sources, or embeddings that are not
      [P, H] with the target's H.
  """
  if metric not in METRICS:
    raise ValueError(f'unknown SPoT metric {metric!r}; known: '
                     f'{sorted(METRICS)}')
  if not sources:
    raise ValueError('no source tasks to rank')
  target = _check(target, 'of the target')
  scores = []
  for task, embedding in sources.items():
    embedding = _check(embedding, task)
    if embedding.shape[1] != target.shape[1]:
      raise ValueError(f'task embedding of {task} has width '
                       f'{embedding.shape[1]}, the target\'s '
                       f'{target.shape[1]}; they must come from one model')
    scores.append((task, METRICS[metric](target, embedding)))
  return sorted(scores, key=lambda item: -item[1])


def task_embedding(task: str, output_dir: str, steps: int,
                   gin_files: Sequence[str], bindings: Sequence[str],
                   search_paths: Optional[Sequence[str]] = None
                   ) -> np.ndarray:
  """Trains `task`'s prompt for `steps` steps (or reuses a finished run in
  `output_dir/task`) and saves it as its task embedding `[P, H]`."""
  model_dir = os.path.join(output_dir, task)
  result, _ = sweep.train(
      gin_files,
      list(bindings) + [
          sweep.string_binding('MIXTURE_OR_TASK_NAME', task),
          sweep.string_binding('MODEL_DIR', model_dir),
          f'TRAIN_STEPS = {steps}', 'EVAL_MODE = None',
          'trainer.train.eval_before_training = False'],
      search_paths)
  tree = result.trainable
  for key in prompts.PROMPT_PATH.split('/'):
    if key not in tree:
      raise ValueError(
          f'the run for {task} trained no plain prompt '
          f"({prompts.PROMPT_PATH}); SPoT's task embeddings are prompts, "
          'so use a prompt-tuning config')
    tree = tree[key]
  embedding = np.asarray(tree)
  prompt_files.save_prompt(embedding, os.path.join(model_dir, EMBEDDING_FILE))
  return embedding


def format_ranking(target: str, ranking: Sequence[Tuple[str, float]],
                   metric: str,
                   source_prompts: Mapping[str, str]) -> str:
  """The ranking as a Markdown table, and how to transfer from the best."""
  text = (f'SPoT ranking of source tasks for {target} ({metric} cosine '
          'similarity of task embeddings):\n\n' + tables.markdown_table(
              ['rank', 'source task', 'similarity'],
              [[index, task, f'{score:.4f}']
               for index, (task, score) in enumerate(ranking, 1)],
              align='rlr', escape=False))
  best = ranking[0][0]
  if best in source_prompts:
    text += (f'\nStart {target} from {best}\'s prompt:\n'
             '  --gin_file=prompts/from_file.gin '
             f"--gin.PROMPT_FILE=\"'{source_prompts[best]}'\"\n")
  return text
