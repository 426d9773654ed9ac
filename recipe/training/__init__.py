"""The training path of one run: arguments, data, model, the Trainer, checkpoints, metrics."""
