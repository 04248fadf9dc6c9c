"""Tasks."""
from prompt_tuning.tasks import offline  # pylint: disable=unused-import
