"""Evaluating checkpoints: sampling, judging, recording scores."""
