"""What a finished run reports: the model card, plots, per-sentence predictions, phenomena."""
