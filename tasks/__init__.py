"""Tasks."""
from prompt_tuning.tasks import glue
from prompt_tuning.tasks import lm
from prompt_tuning.tasks import mrqa
from prompt_tuning.tasks import superglue
