"""Several runs: seeds, the hyperparameter search, and runs compared side by side."""
