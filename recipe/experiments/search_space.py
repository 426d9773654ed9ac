"""The search space of `python run_cola.py search`: the `--search_*` ranges checked, and one trial's settings
drawn from them (Optuna's `hp_space`)."""

from __future__ import annotations

from typing import Any

from recipe.training.arguments import ConfigError, RecipeArguments

# TrainingArguments each trial sets (the Trainer's hyperparameter search assigns them by these names).
SEARCHED_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "warmup_steps",
    "weight_decay",
    "per_device_train_batch_size",
    "seed",
)


def check_search_space(recipe_args: RecipeArguments) -> None:
    """Refuse a search space the sampler cannot draw from, naming the flag."""
    ranges = {
        "search_learning_rate": recipe_args.search_learning_rate,
        "search_warmup_ratio": recipe_args.search_warmup_ratio,
        "search_weight_decay": recipe_args.search_weight_decay,
    }
    for name, bounds in ranges.items():
        if len(bounds) != 2 or bounds[0] > bounds[1] or bounds[0] < 0:
            raise ConfigError(f"--{name} takes two numbers LOW HIGH with 0 <= LOW <= HIGH; got {bounds}.")
    optional_ranges = {
        "search_classifier_lr_ratio": (recipe_args.search_classifier_lr_ratio, float("inf")),
        "search_layerwise_lr_decay": (recipe_args.search_layerwise_lr_decay, 1.0),
    }
    for name, (bounds, ceiling) in optional_ranges.items():
        if bounds and (len(bounds) != 2 or not 0 < bounds[0] <= bounds[1] <= ceiling):
            raise ConfigError(
                f"--{name} takes two numbers LOW HIGH with 0 < LOW <= HIGH"
                + (f" <= {ceiling:g}" if ceiling != float("inf") else "")
                + f" (or nothing, to leave it unsearched); got {bounds}."
            )
    if recipe_args.search_learning_rate[0] <= 0:
        raise ConfigError("--search_learning_rate is drawn on a log scale: LOW must be above 0.")
    if recipe_args.search_warmup_ratio[1] >= 1:
        raise ConfigError(
            "--search_warmup_ratio is a share of the training steps: HIGH must be below 1 "
            "(a warmup_steps of 1 or more counts steps, not a share)."
        )
    choices = {
        "search_num_train_epochs": recipe_args.search_num_train_epochs,
        "search_batch_size": recipe_args.search_batch_size,
        "search_seed": recipe_args.search_seed,
    }
    for name, values in choices.items():
        if not values:
            raise ConfigError(f"--{name} needs at least one value.")
    if min(recipe_args.search_num_train_epochs) < 1 or min(recipe_args.search_batch_size) < 1:
        raise ConfigError("--search_num_train_epochs and --search_batch_size take positive integers.")
    if recipe_args.n_trials < 1:
        raise ConfigError(f"--n_trials must be at least 1; got {recipe_args.n_trials}.")


def suggest_training_settings(trial: Any, recipe_args: RecipeArguments) -> dict[str, Any]:
    """Draw one trial's TrainingArguments from the `--search_*` space (Optuna's `hp_space`).

    Optuna returns the same value when a trial is asked for the same name twice, so `init_model_for_trial`
    can call this before the Trainer does.
    """
    lr_low, lr_high = recipe_args.search_learning_rate
    warmup_low, warmup_high = recipe_args.search_warmup_ratio
    decay_low, decay_high = recipe_args.search_weight_decay
    return {
        "learning_rate": trial.suggest_float("learning_rate", lr_low, lr_high, log=True),
        "num_train_epochs": trial.suggest_categorical(
            "num_train_epochs", recipe_args.search_num_train_epochs
        ),
        # A float below 1 is a ratio of the training steps in transformers 5 (there is no warmup_ratio).
        "warmup_steps": trial.suggest_float("warmup_steps", warmup_low, warmup_high),
        "weight_decay": trial.suggest_float("weight_decay", decay_low, decay_high),
        "per_device_train_batch_size": trial.suggest_categorical(
            "per_device_train_batch_size", recipe_args.search_batch_size
        ),
        "seed": trial.suggest_categorical("seed", recipe_args.search_seed),
    }


def suggest_optimizer_settings(trial: Any, recipe_args: RecipeArguments) -> dict[str, float]:
    """Draw the parameter-group options (recipe/training/optim.py) when their `--search_*` ranges are given.

    They are ModelArguments, not TrainingArguments, so the Trainer cannot set them; the recipe's Trainer
    applies them when it builds each trial's optimizer (`trial_optimizer_options`). Returns {} when neither is searched.
    """
    settings: dict[str, float] = {}
    if recipe_args.search_classifier_lr_ratio:
        low, high = recipe_args.search_classifier_lr_ratio
        settings["classifier_lr_ratio"] = trial.suggest_float("classifier_lr_ratio", low, high, log=True)
    if recipe_args.search_layerwise_lr_decay:
        low, high = recipe_args.search_layerwise_lr_decay
        settings["layerwise_lr_decay"] = trial.suggest_float("layerwise_lr_decay", low, high)
    return settings


def suggest_trial_settings(trial: Any, recipe_args: RecipeArguments) -> dict[str, Any]:
    """Optuna's `hp_space`: draw every searched setting; return the TrainingArguments ones, which the
    Trainer assigns (it warns about and skips any other key)."""
    suggest_optimizer_settings(trial, recipe_args)
    return suggest_training_settings(trial, recipe_args)


def optimizer_options_from_params(params: dict[str, Any]) -> dict[str, float]:
    """The ModelArguments a trial's drawn settings stand for (the head rate is stored as a ratio)."""
    options: dict[str, float] = {}
    if "classifier_lr_ratio" in params:
        options["classifier_learning_rate"] = params["classifier_lr_ratio"] * params["learning_rate"]
    if "layerwise_lr_decay" in params:
        options["layerwise_lr_decay"] = params["layerwise_lr_decay"]
    return options


def trial_optimizer_options(trial: Any, recipe_args: RecipeArguments) -> dict[str, float]:
    """The head learning rate and layer-wise decay drawn for `trial` (the Trainer's `trial_optimizer_options`)."""
    if not hasattr(trial, "suggest_float"):
        return {}
    suggest_optimizer_settings(trial, recipe_args)
    return optimizer_options_from_params(trial.params)
