"""Speed and memory benchmark suites (`python -m prompt_tuning.bench`)."""
