r"""The embedded models: small T5s shipped with the package, pretrained here.

Two families live under `prompt_tuning/data/`, as t5x checkpoints:

* **The corpus models** (`corpus_t5/<size>/<kind>/checkpoint_<step>`): T5
  1.1-style models pretrained only with self-supervised objectives on the
  synthetic corpus (`prompt_tuning.tasks.corpus`), like T5 1.1 LM-adapted:
  span corruption from scratch, then LM adaptation (prefix LM) continuing
  from it. They never see a downstream task's input -> label pairs, so a
  prompt has to elicit the task. A ladder of four sizes
  (`checkpoints.embedded.SIZES`: `tiny`, `mini`, `small`, `base`; 0.12M to
  3.75M parameters, docs/checkpoints_and_interop.md has the table), each
  pretrained with the same recipe, and the paper's kinds of frozen
  model (`checkpoints.embedded.KINDS`):

  | kind               | training                                          |
  |--------------------|---------------------------------------------------|
  | `span_corruption`  | span corruption only (also the "+ sentinel" setting, chosen at tuning time) |
  | `lm_adapted_short` | + `pretraining.STAGE_STEPS['lm_adapted_short']` LM-adaptation steps |
  | `lm_adapted_long`  | + `pretraining.STAGE_STEPS['lm_adapted_long']` LM-adaptation steps  |

  The main job prompt-tunes `small`/`lm_adapted_long` (the default).

* **The prefixed model** (`embedded_t5/checkpoint_<step>`): pretrained by
  model tuning on the offline suite with every task marked by its text prefix
  (`gin/embedded/pretrain.gin`). A prompt only has to stand in for a prefix
  it knows, so it shows the mechanics quickly (the demo configs under
  `gin/embedded/` use it), not the method.

Regenerate (pretraining times per size in docs/checkpoints_and_interop.md):

    python -m prompt_tuning.embedded --model=small --work_dir=/tmp/pretrain
    python -m prompt_tuning.embedded --model=prefixed --work_dir=/tmp/prefixed
    python -m prompt_tuning.embedded --losses   # each size's objective losses

Each runs `python -m prompt_tuning.train` for every stage
(`gin/corpus/pretrain_span_corruption.gin`, then `gin/corpus/lm_adapt.gin`
twice: to the short length, then resumed to the long one) and copies the
exported checkpoints into the package.
"""
from typing import Sequence

from absl import app
from absl import flags

from prompt_tuning.checkpoints import embedded
from prompt_tuning.cli import gin_utils


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags in `flag_values`."""
  flags.DEFINE_enum('model', 'all', list(embedded.SIZES + ('all', 'prefixed')),
                    "A corpus model size, 'all' corpus sizes, or 'prefixed'.",
                    flag_values=flag_values)
  flags.DEFINE_string('work_dir', None, 'Where the pretraining runs write.',
                      flag_values=flag_values)
  flags.DEFINE_boolean(
      'losses', False, 'Instead of pretraining, print each shipped corpus '
      "size's parameters and each kind's loss per token on its objective.",
      flag_values=flag_values)


def main(argv: Sequence[str],
         flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Pretrains embedded models and installs their checkpoints."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected positional arguments: {argv[1:]}')
  from prompt_tuning.experiments import pretraining  # pylint: disable=g-import-not-at-top
  model, work_dir = flag_values.model, flag_values.work_dir
  if flag_values.losses:
    if model == 'prefixed':
      raise app.UsageError('--losses covers the corpus models, not prefixed')
    print(pretraining.losses_table(
        embedded.SIZES if model == 'all' else (model,)), end='')
    return 0
  if work_dir is None:
    raise app.UsageError('--work_dir is required to pretrain')
  if model == 'prefixed':
    pretraining.pretrain_prefixed_model(work_dir)
  else:
    for size in embedded.SIZES if model == 'all' else (model,):
      pretraining.pretrain_corpus_model(size, work_dir)
  return 0


if __name__ == '__main__':
  define_flags()
  gin_utils.run(main, tensorflow=False)
