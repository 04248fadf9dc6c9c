r"""What a learned prompt looks like from the vocabulary (paper section 7).

For each position of a prompt `[P, H]`, its k nearest vocabulary tokens by
cosine similarity in the frozen model's embedding table `[V, H]`, printed as a
markdown table and written as JSON, with the neighbours that are (sub-tokens
of) class labels marked. For a training run, its best prompt (or `--step`'s),
its frozen embedding, vocabulary and class labels:

    python -m prompt_tuning.interpret --model_dir=/tmp/x [--step=N] [--k=5]

or any prompt, embedding and vocabulary:

    python -m prompt_tuning.interpret \
      --prompt=/tmp/x/best_prompt.npy \
      --embedding=prompt_tuning/data/embedded_t5/checkpoint_3000 \
      --vocabulary=offline --k=5 --class_labels=negative,positive \
      --output=/tmp/x/neighbours.json

`--embedding` is a t5x checkpoint directory or an `.npy` table;
`--vocabulary` a SentencePiece model file or `offline` (the offline suite's).
A prompt that belongs to a run (it sits in a directory with run.json) with an
embedding or vocabulary that is not its run's is refused, naming both.

The library is `prompt_tuning.model.neighbours`.
"""
import json
import sys

from absl import app
from absl import flags

from prompt_tuning.cli import gin_utils
from prompt_tuning.training import run_record


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the CLI's flags in `flag_values`.

  Called only when the module runs as a program, so that importing it defines
  no flags.
  """
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('model_dir', None, 'A training run directory: its '
                      'prompt, embedding, vocabulary and class labels are the '
                      'defaults of the flags below.', **fv)
  flags.DEFINE_integer('step', None, 'With --model_dir: the prompt saved at '
                       'this step (default: the best step).', **fv)
  flags.DEFINE_string('prompt', None, 'Prompt .npy file [P, H] (or a t5x '
                      'checkpoint directory holding one).', **fv)
  flags.DEFINE_string('embedding', None, 't5x checkpoint directory or .npy '
                      'embedding table [V, H].', **fv)
  flags.DEFINE_string('vocabulary', None, "SentencePiece model file, or "
                      "'offline' for the offline suite's vocabulary.", **fv)
  flags.DEFINE_integer('extra_ids', 100, 'Extra ids appended to a '
                       'SentencePiece vocabulary (T5: 100).', **fv)
  flags.DEFINE_integer('k', 5, 'Neighbours per prompt position.', **fv)
  flags.DEFINE_list('class_labels', [], 'Comma-separated class labels to '
                    'mark.', **fv)
  flags.DEFINE_string('output', None, 'JSON file to write (optional).', **fv)


def _sources(f: flags.FlagValues):
  """(prompt, embedding, vocabulary, class labels): the flags, with the
  run's (`--model_dir`) where they are not given.

  Raises:
    ValueError: --prompt, --embedding or --vocabulary missing with no run,
      or --step without one.
  """
  prompt, embedding, vocabulary = f.prompt, f.embedding, f.vocabulary
  class_labels = list(f.class_labels)
  if f.model_dir:
    record = run_record.read(f.model_dir)
    prompt = prompt or run_record.best_prompt_file(f.model_dir, f.step)
    embedding = embedding or record['initial_checkpoint_path']
    vocabulary = vocabulary or (record['vocabulary'] or {}).get(
        'sentencepiece_model_file')
    if not f['class_labels'].present:
      class_labels = list((record.get('evaluation') or {}).get(
          'class_labels') or [])
  elif f.step is not None:
    raise ValueError('--step needs --model_dir (the run whose step it is)')
  missing = [name for name, value in (('prompt', prompt),
                                      ('embedding', embedding),
                                      ('vocabulary', vocabulary))
             if not value]
  if missing:
    raise ValueError(f'missing {", ".join("--" + m for m in missing)}: pass '
                     'them, or --model_dir of a training run')
  return prompt, embedding, vocabulary, class_labels


def _check_run(prompt_path: str, embedding_path: str, vocabulary) -> None:
  """A prompt of a run goes with that run's embedding and vocabulary.

  Raises:
    RunMismatchError: naming both sides.
  """
  model_dir = run_record.run_of_file(prompt_path)
  if model_dir is None:
    return
  record = run_record.read(model_dir)
  if not embedding_path.endswith('.npy'):  # A t5x checkpoint.
    run_record.check_checkpoint(record, embedding_path, model_dir)
  run_record.check_vocabulary(record, vocabulary, model_dir)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  """Prints the table of neighbours; writes the JSON file if `--output`."""
  from prompt_tuning.checkpoints import prompt_files  # pylint: disable=g-import-not-at-top
  from prompt_tuning.model import neighbours  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  f = flag_values
  try:
    prompt_path, embedding_path, vocabulary_spec, class_labels = _sources(f)
    prompt = neighbours.load_prompt_or_checkpoint(prompt_path)
    embedding = prompt_files.load_embedding(embedding_path)
    vocabulary = neighbours.load_vocabulary(vocabulary_spec, f.extra_ids)
    _check_run(prompt_path, embedding_path, vocabulary)
    rows = neighbours.describe(prompt, embedding, vocabulary, f.k,
                               class_labels)
  except (ValueError, FileNotFoundError) as e:  # Runs' mismatches included.
    sys.exit(f'error: {e}')
  print(neighbours.to_markdown(rows), end='')
  if f.output:
    document = neighbours.summary(
        rows, prompt=prompt_path, embedding=embedding_path,
        vocabulary=vocabulary_spec, k=f.k,
        class_labels=neighbours.label_piece_ids(vocabulary, class_labels))
    with open(f.output, 'w') as file:
      json.dump(document, file, indent=1, ensure_ascii=False)
      file.write('\n')
    print(f'wrote {f.output}')


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
