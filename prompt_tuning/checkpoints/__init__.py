"""Formats on disk: t5x checkpoints (`t5x`), prompt and embedding files
(`prompt_files`), a run's model directory (`run_dir`) and the shipped
embedded models (`embedded`)."""
