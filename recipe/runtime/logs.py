"""One logging set-up for every entry point (training, seeds, search): levels and token redaction."""

from __future__ import annotations

import logging
import sys
from typing import Any

import datasets
import huggingface_hub.utils.logging
import transformers
from transformers import TrainingArguments

from recipe.runtime.redaction import install_log_redaction, secret_values

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
    # huggingface_hub adds a bare handler of its own and also propagates to the root's: each line came
    # twice. Its lines now go through the root handler alone, formatted like every other line.
    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        hub_logger.removeHandler(handler)
    hub_logger.propagate = True
    huggingface_hub.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    install_log_redaction(secret_values(arguments))
