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
from typing import Dict, Sequence

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils
from prompt_tuning.utils import files

DEFAULT_GIN_FILES = ('embedded/prompt_tune.gin',)
# A copy of experiments.spot.METRICS' names (a test pins it), so that --help
# and bad flags answer before JAX loads.
METRICS = ('average_tokens', 'per_token')


def _pairs(values: Sequence[str], flag: str) -> Dict[str, str]:
  out = {}
  for value in values:
    task, sep, path = value.partition('=')
    if not sep or not task or not path:
      raise ValueError(f'{flag} {value!r} is not TASK=PATH')
    out[task] = path
  return out


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags, the gin flags among them, in `flag_values`.
  """
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('target', None, 'The target task.', **fv)
  flags.DEFINE_string('sources', None,
                      'Comma-separated candidate source tasks.', **fv)
  flags.DEFINE_string('output_dir', None, 'Where the task embeddings and '
                      'spot.json go.', **fv)
  flags.DEFINE_integer('embedding_steps', 100,
                       'Training steps of each task embedding.', **fv)
  flags.DEFINE_enum('metric', 'average_tokens', sorted(METRICS),
                    'How task embeddings are compared.', **fv)
  flags.DEFINE_multi_string(
      'source_prompt', [],
      "TASK=PATH: a source task's trained prompt (.npy), to print the "
      'transfer flags for the best source. Repeatable.', **fv)
  flags.DEFINE_multi_string(
      'embedding_file', [],
      'TASK=PATH: a task embedding [P, H] already computed; that task is '
      'not trained. Repeatable.', **fv)
  gin_utils.define_gin_flags(flag_values)
  for name in ('target', 'sources', 'output_dir'):
    flags.mark_flag_as_required(name, flag_values=flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Ranks the sources; the base config is `--gin_file`, by default
  `DEFAULT_GIN_FILES`.

  Returns:
    The exit status: 2 for bad --sources, --source_prompt or
    --embedding_file values.
  """
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  target, output_dir = flag_values.target, flag_values.output_dir
  metric, steps = flag_values.metric, flag_values.embedding_steps
  gin_files = list(flag_values.gin_file or DEFAULT_GIN_FILES)
  bindings = list(flag_values.gin_bindings)
  search_paths = list(flag_values.gin_search_paths)
  sources = [s.strip() for s in flag_values.sources.split(',') if s.strip()]
  try:
    source_prompts = _pairs(flag_values.source_prompt, '--source_prompt')
    given = _pairs(flag_values.embedding_file, '--embedding_file')
    if target in sources:
      raise ValueError(f'--sources includes the target {target}')
    if not sources:
      raise ValueError('--sources names no task')
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
  from prompt_tuning.experiments import spot as spot_lib  # pylint: disable=g-import-not-at-top
  embeddings = {}
  for task in [target] + sources:
    if task in given:
      embeddings[task] = prompt_files.load_prompt(given[task])
    else:
      embeddings[task] = spot_lib.task_embedding(
          task, output_dir, steps, gin_files, bindings, search_paths)
  ranking = spot_lib.rank_sources(embeddings[target],
                                  {s: embeddings[s] for s in sources}, metric)
  text = spot_lib.format_ranking(target, ranking, metric, source_prompts)
  print(text)
  os.makedirs(output_dir, exist_ok=True)
  files.atomic_write_bytes(
      os.path.join(output_dir, 'spot.json'),
      json.dumps({'target': target, 'metric': metric,
                  'embedding_steps': steps,
                  'ranking': [{'task': t, 'similarity': s}
                              for t, s in ranking]}, indent=1).encode())
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main)
