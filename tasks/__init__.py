"""seqio tasks and mixtures of the paper, and the offline suite.

Importing this package registers every task (the one accepted import side
effect); nothing is downloaded or loaded until a task is used.
"""
# pylint: disable=unused-import
from prompt_tuning.tasks import corpus_suite_tasks
from prompt_tuning.tasks import corpus_tasks
from prompt_tuning.tasks import glue
from prompt_tuning.tasks import lm
from prompt_tuning.tasks import mrqa
from prompt_tuning.tasks import offline
from prompt_tuning.tasks import superglue
