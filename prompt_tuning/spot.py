r"""SPoT (Vu et al. 2022): which source task's prompt should start a target's?

Transfer itself is a prompt initialiser: train the target with
`prompts/from_file.gin` and `PROMPT_FILE` set to a source task's trained
prompt (e.g. its `MODEL_DIR/best_prompt.npy`). This module chooses the
source. Each task gets a *task embedding*: its prompt trained briefly
(`--embedding_steps`) from the same initialisation; candidate sources are
ranked by the cosine similarity of their task embeddings to the target's,
as SPoT does:

    python -m prompt_tuning.spot --target=taskless_offline_topic \
      --sources=taskless_offline_sentiment,taskless_offline_object \
      --output_dir=/tmp/spot --embedding_steps=100 \
      [--source_prompt=taskless_offline_object=/tmp/object/best_prompt.npy]

The base config is `--gin_file` (default `embedded/prompt_tune.gin`) with
`--gin.NAME=VALUE` overrides; each task's run overrides
`MIXTURE_OR_TASK_NAME`, `MODEL_DIR` (`OUTPUT_DIR/<task>`) and `TRAIN_STEPS`,
and skips evaluation. A finished run is reused, not retrained.

NOTE: a task embedding only compares tasks when every task starts from the
same prompt, so the initialiser must not depend on the task: random uniform
or sampled vocabulary (with one `SEED`), not class labels.

Prints the ranking (and, with `--source_prompt`, the flags that start the
target from the best source's prompt); writes `OUTPUT_DIR/spot.json` and each
task embedding as `OUTPUT_DIR/<task>/task_embedding.npy`.

Metrics (SPoT, section 4): 'average_tokens', the cosine of the two prompts'
average token vectors; 'per_token', the average cosine over all pairs of
prompt tokens.
"""
import json
import os
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from sklearn.metrics import pairwise

from prompt_tuning import checkpoints
from prompt_tuning.experiments import sweep

DEFAULT_GIN_FILES = ('embedded/prompt_tune.gin',)
EMBEDDING_FILE = 'task_embedding.npy'
PROMPT_PARAM = ('encoder', 'prompt', 'prompt', 'prompt')


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
  for key in PROMPT_PARAM:
    if key not in tree:
      raise ValueError(
          f'the run for {task} trained no plain prompt '
          f"({'/'.join(PROMPT_PARAM)}); SPoT's task embeddings are prompts, "
          'so use a prompt-tuning config')
    tree = tree[key]
  embedding = np.asarray(tree)
  checkpoints.save_prompt(embedding, os.path.join(model_dir, EMBEDDING_FILE))
  return embedding


def format_ranking(target: str, ranking: Sequence[Tuple[str, float]],
                   metric: str,
                   source_prompts: Mapping[str, str]) -> str:
  """The ranking as a Markdown table, and how to transfer from the best."""
  lines = [f'SPoT ranking of source tasks for {target} ({metric} cosine '
           'similarity of task embeddings):', '',
           '| rank | source task | similarity |', '|---:|---|---:|']
  for index, (task, score) in enumerate(ranking, 1):
    lines.append(f'| {index} | {task} | {score:.4f} |')
  best = ranking[0][0]
  if best in source_prompts:
    lines += ['', f'Start {target} from {best}\'s prompt:',
              f"  --gin_file=prompts/from_file.gin "
              f"--gin.PROMPT_FILE=\"'{source_prompts[best]}'\""]
  return '\n'.join(lines) + '\n'


def _pairs(values: Sequence[str], flag: str) -> Dict[str, str]:
  out = {}
  for value in values:
    task, sep, path = value.partition('=')
    if not sep or not task or not path:
      raise ValueError(f'{flag} {value!r} is not TASK=PATH')
    out[task] = path
  return out


def main(argv: Sequence[str]) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--target', required=True, help='The target task.')
  parser.add_argument('--sources', required=True,
                      help='Comma-separated candidate source tasks.')
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--embedding_steps', type=int, default=100)
  parser.add_argument('--metric', default='average_tokens',
                      choices=sorted(METRICS))
  parser.add_argument(
      '--source_prompt', action='append', default=[],
      help='TASK=PATH: a source task\'s trained prompt (.npy), to print the '
           'transfer flags for the best source. Repeatable.')
  parser.add_argument(
      '--embedding_file', action='append', default=[],
      help='TASK=PATH: a task embedding [P, H] already computed; that task '
           'is not trained. Repeatable.')
  sweep.add_gin_flags(parser, DEFAULT_GIN_FILES)
  args, gin_files, bindings, search_paths = sweep.parse_args(parser, argv)
  sources = [s.strip() for s in args.sources.split(',') if s.strip()]
  try:
    source_prompts = _pairs(args.source_prompt, '--source_prompt')
    given = _pairs(args.embedding_file, '--embedding_file')
    if args.target in sources:
      raise ValueError(f'--sources includes the target {args.target}')
    if not sources:
      raise ValueError('--sources names no task')
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  embeddings = {}
  for task in [args.target] + sources:
    if task in given:
      embeddings[task] = checkpoints.load_prompt(given[task])
    else:
      embeddings[task] = task_embedding(task, args.output_dir,
                                        args.embedding_steps, gin_files,
                                        bindings, search_paths)
  ranking = rank_sources(embeddings[args.target],
                         {s: embeddings[s] for s in sources}, args.metric)
  text = format_ranking(args.target, ranking, args.metric, source_prompts)
  print(text)
  os.makedirs(args.output_dir, exist_ok=True)
  checkpoints.atomic_write_bytes(
      os.path.join(args.output_dir, 'spot.json'),
      json.dumps({'target': args.target, 'metric': args.metric,
                  'embedding_steps': args.embedding_steps,
                  'ranking': [{'task': t, 'similarity': s}
                              for t, s in ranking]}, indent=1).encode())
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
