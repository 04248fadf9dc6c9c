"""Training: partitioning, the trainer and in-loop evaluation."""
