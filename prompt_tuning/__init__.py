"""prompt_tuning."""
