"""Training data: sources, mixing weights and the deterministic, resumable batch pipeline."""
