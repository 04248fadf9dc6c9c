"""Experiment drivers built on the trainer: sweeps, the paper's numbers."""
