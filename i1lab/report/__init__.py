"""Reading the registry into ablation tables and terminal displays."""
