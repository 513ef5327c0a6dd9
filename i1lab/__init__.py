"""i1lab: controlled ablation studies of text-to-image diffusion models."""
