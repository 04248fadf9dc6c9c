r"""What a learned prompt looks like from the vocabulary (paper section 7).

For each position of a prompt `[P, H]`, its k nearest vocabulary tokens by
cosine similarity in the frozen model's embedding table `[V, H]`, printed as a
markdown table and written as JSON, with the neighbours that are (sub-tokens
of) class labels marked:

    python -m prompt_tuning.interpret \
      --prompt=/tmp/x/best_prompt.npy \
      --embedding=prompt_tuning/data/embedded_t5/checkpoint_3000 \
      --vocabulary=offline --k=5 --class_labels=negative,positive \
      --output=/tmp/x/neighbours.json

`--embedding` is a t5x checkpoint directory or an `.npy` table;
`--vocabulary` a SentencePiece model file or `offline` (the offline suite's).

The library is `prompt_tuning.model.neighbours`.
"""
import json
import sys

from absl import app
from absl import flags

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning.cli import gin_utils
from prompt_tuning.model import neighbours


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the CLI's flags in `flag_values`.

  Called only when the module runs as a program, so that importing it defines
  no flags.
  """
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string('prompt', None, 'Prompt .npy file [P, H] (or a t5x '
                      'checkpoint directory holding one).', required=True, **fv)
  flags.DEFINE_string('embedding', None, 't5x checkpoint directory or .npy '
                      'embedding table [V, H].', required=True, **fv)
  flags.DEFINE_string('vocabulary', None, "SentencePiece model file, or "
                      "'offline' for the offline suite's vocabulary.",
                      required=True, **fv)
  flags.DEFINE_integer('extra_ids', 100, 'Extra ids appended to a '
                       'SentencePiece vocabulary (T5: 100).', **fv)
  flags.DEFINE_integer('k', 5, 'Neighbours per prompt position.', **fv)
  flags.DEFINE_list('class_labels', [], 'Comma-separated class labels to '
                    'mark.', **fv)
  flags.DEFINE_string('output', None, 'JSON file to write (optional).', **fv)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  """Prints the table of neighbours; writes the JSON file if `--output`."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  f = flag_values
  try:
    prompt = neighbours.load_prompt_or_checkpoint(f.prompt)
    embedding = prompt_files.load_embedding(f.embedding)
    vocabulary = neighbours.load_vocabulary(f.vocabulary, f.extra_ids)
    rows = neighbours.describe(prompt, embedding, vocabulary, f.k,
                               f.class_labels)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'error: {e}')
  print(neighbours.to_markdown(rows), end='')
  if f.output:
    document = neighbours.summary(
        rows, prompt=f.prompt, embedding=f.embedding,
        vocabulary=f.vocabulary, k=f.k,
        class_labels=neighbours.label_token_ids(vocabulary, f.class_labels))
    with open(f.output, 'w') as file:
      json.dump(document, file, indent=1, ensure_ascii=False)
      file.write('\n')
    print(f'wrote {f.output}')


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
