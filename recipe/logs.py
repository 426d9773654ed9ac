"""One logging set-up for every entry point (training, seeds, search): levels and token redaction."""

from __future__ import annotations

import logging
import sys
from typing import Any

import datasets
import transformers
from transformers import TrainingArguments

from recipe.redaction import install_log_redaction, secret_values

# The loggers whose level follows the Trainer's process log level (quiet on non-main ranks).
RECIPE_LOGGERS = ("run_cola", "recipe", "optuna")


def setup_logging(training_args: TrainingArguments, arguments: tuple[Any, ...] = ()) -> None:
    """Log to stderr at the level the Trainer uses on this process, with every token in `arguments`
    (--hub_token, ...) and in the environment ($HF_TOKEN, ...) masked in every log line."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stderr)],
    )
    level = training_args.get_process_log_level()
    for name in RECIPE_LOGGERS:
        logging.getLogger(name).setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    install_log_redaction(secret_values(arguments))
