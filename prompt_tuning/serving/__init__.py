"""Evaluation, inference and serving with a frozen model and prompts."""
