"""Keep the checkpoint with the best validation MCC, and stop early when it stops improving.

The tutorial defaults (recipe/training/arguments.py) ask the stock Trainer for `load_best_model_at_end=True`,
`metric_for_best_model="matthews_correlation"`, `greater_is_better=True`. The Trainer can only honour that
when it saves a checkpoint at every evaluation, so this module switches the *default* off, in one place,
where a run cannot use it:

- at parse time (`best_model_defaults`), when evaluation is off or saving does not follow evaluation
  (e.g. `--save_strategy no` for a quick run); TrainingArguments would otherwise refuse the flags. A user
  who passes `--load_best_model_at_end true` explicitly still gets the Trainer's own error.
- at run time (`configure_best_model`), when the data has no validation split to select on.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments

from recipe.training.argument_dataclasses import ConfigError, RecipeArguments

logger = logging.getLogger(__name__)


def saving_follows_evaluation(namespace: argparse.Namespace) -> bool:
    """True when every evaluation has a checkpoint to keep (what load_best_model_at_end needs)."""
    eval_strategy, save_strategy = str(namespace.eval_strategy), str(namespace.save_strategy)
    if eval_strategy == "no":
        return False
    if save_strategy == "best":
        return True
    if eval_strategy != save_strategy:
        return False
    if eval_strategy == "steps":
        eval_steps = namespace.eval_steps or namespace.logging_steps
        # Only whole-step intervals are judged here; anything subtler is left to the user's explicit flags.
        if not eval_steps or eval_steps < 1 or namespace.save_steps < 1:
            return False
        return float(namespace.save_steps) % float(eval_steps) == 0
    return True


def best_model_defaults(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, Any]:
    """Parser defaults that turn best-model selection off when the run's strategies cannot support it.

    Args:
        parser: the run's parser, with the tutorial and `--config` defaults already set.
        argv: the command line.

    Returns:
        `{"load_best_model_at_end": False}` when evaluation is off or checkpoints are not saved at each
        evaluation, else `{}` (the defaults stand).
    """
    namespace, _ = parser.parse_known_args(list(argv))
    if namespace.load_best_model_at_end and not saving_follows_evaluation(namespace):
        return {"load_best_model_at_end": False}
    return {}


def configure_best_model(
    training_args: TrainingArguments, recipe_args: RecipeArguments, has_validation: bool
) -> list[TrainerCallback]:
    """Reconcile best-model selection with the data, and build the early-stopping callback.

    Without a validation split there is nothing to select on, so the run keeps its last model.

    Returns:
        `[EarlyStoppingCallback]` when `--early_stopping_patience` is set, else `[]`.

    Raises:
        ConfigError: early stopping was asked for without per-epoch (or per-step) validation.
    """
    if training_args.load_best_model_at_end and not has_validation:
        logger.warning("No validation split: keeping the last model (no best-MCC checkpoint to select).")
        training_args.load_best_model_at_end = False
    if training_args.load_best_model_at_end:
        logger.info(
            "The run ends with the checkpoint of best validation %s.", training_args.metric_for_best_model
        )
    if recipe_args.early_stopping_patience is None:
        return []
    if not has_validation or training_args.eval_strategy == "no":
        raise ConfigError(
            "--early_stopping_patience needs validation during training: keep --validation_split > 0 and "
            "--eval_strategy epoch (or steps), or drop --early_stopping_patience."
        )
    if training_args.metric_for_best_model is None:
        raise ConfigError(
            "--early_stopping_patience needs --metric_for_best_model (e.g. matthews_correlation)."
        )
    return [EarlyStoppingCallback(early_stopping_patience=recipe_args.early_stopping_patience)]
