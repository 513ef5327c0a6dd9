"""Training one run: model construction, optimizer, checkpoints, the step loop."""
