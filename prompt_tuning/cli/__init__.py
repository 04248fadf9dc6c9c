"""What the command-line entry points share: flags and gin plumbing."""
