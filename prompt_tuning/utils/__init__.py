"""Helpers that know nothing of the model: files (local or gs://) and trees."""
