"""Hyperparameter search: `python run_cola.py search --config X.yaml --n_trials N [training flags]`.

`Trainer.hyperparameter_search` with the Optuna backend draws, per trial, the learning rate (log scale),
epochs, warmup (a ratio: a float `warmup_steps` below 1), weight decay, batch size and seed from the
`--search_*` ranges, trains from the same pretrained weights with a fresh head (`model_init`), and
maximises validation MCC (`eval_matthews_correlation` after the last epoch). The test sets
(in_domain_dev, out_of_domain_dev) are never loaded.

Written to OUTPUT_DIR/search/:
    study.db        the Optuna study (SQLite): the same command again resumes it; a larger --n_trials adds trials
    trials.csv      one row per trial: number, state, eval_matthews_correlation, the drawn settings, times
    best.yaml       the best trial's settings as a config for `python run_cola.py --config`
    mcc_vs_lr.png   validation MCC against learning rate, one point per finished trial
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import datasets
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from recipe.experiments.search_space import (
    check_search_space,
    suggest_training_settings,
    suggest_trial_settings,
    trial_optimizer_options,
)
from recipe.experiments.search_study import (
    OBJECTIVE,
    STUDY_NAME,
    count_finished,
    open_study,
    plot_mcc_vs_learning_rate,
    study_storage_url,
    write_best_config,
    write_trials_csv,
)
from recipe.runtime.logs import setup_logging
from recipe.runtime.network import check_network
from recipe.training.arguments import ConfigError, DataArguments, ModelArguments, RecipeArguments, parse_args
from recipe.training.data import load_cola_splits, split_seed
from recipe.training.model import load_model, load_tokenizer
from recipe.training.settings import settings_differing_from_defaults
from recipe.training.splits import TRAIN, VALIDATION
from recipe.training.tokenization import tokenize_cola
from recipe.training.trainer import build_trainer

logger = logging.getLogger(__name__)

SEARCH_FOLDER = "search"
RECORDED_METRICS = ("eval_loss", "eval_accuracy", "epoch")
# RecipeArguments that only steer the search; they do not belong in the best trial's config.
SEARCH_ONLY_RECIPE_KEYS = {"n_trials", "overwrite_output"} | {
    f.name for f in fields(RecipeArguments) if f.name.startswith("search_")
}


def import_search_dependencies() -> ModuleType:
    """Optuna (returned) and matplotlib, the search's optional dependencies, checked before any trial runs.

    Raises:
        ConfigError: one is missing; the message says how to install them.
    """
    try:
        import matplotlib  # noqa: F401  (the plot is drawn after the trials; fail before them)
        import optuna
    except ImportError as err:
        raise ConfigError(
            f"`run_cola.py search` needs Optuna and matplotlib, optional dependencies ({err}): "
            "pip install -e '.[search]' (or pip install 'optuna>=3' matplotlib)."
        ) from err
    return optuna


def init_model_for_trial(model_args: ModelArguments, recipe_args: RecipeArguments, trial: Any = None):
    """`model_init`: the pretrained weights with a fresh head, initialised from the trial's seed.

    The Trainer seeds before `model_init` with the *previous* trial's seed and applies this trial's
    settings only afterwards, so the seeding happens here: a trial then trains exactly as
    `python run_cola.py --config best.yaml` does with the same seed (same head, same dropout draws).
    """
    if trial is None:
        return load_model(model_args)
    seed = suggest_training_settings(trial, recipe_args)["seed"]
    set_seed(seed)
    model = load_model(model_args)
    # run_cola.main's Trainer reseeds after loading the model; so does this, so dropout draws match too.
    set_seed(seed)
    return model


class RecordTrialMetrics(TrainerCallback):
    """Store each evaluation's validation loss and accuracy on the running Optuna trial (user attributes),
    so trials.csv shows more than the objective; the last epoch's values stay.

    The trial is the Trainer's `_trial`, which `Trainer._hp_search_setup` sets at the start of each trial
    (transformers 5); the hyperparameter search passes it to no callback.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_evaluate(self, args, state, control, metrics: dict[str, float] | None = None, **kwargs) -> None:
        trial = getattr(self.trainer, "_trial", None)
        if trial is None or not metrics or not hasattr(trial, "set_user_attr"):
            return
        for key in RECORDED_METRICS:
            if key in metrics:
                trial.set_user_attr(key, float(metrics[key]))


def validation_mcc(metrics: dict[str, float]) -> float:
    """The search objective (`compute_objective`): validation MCC, never a test split's."""
    if OBJECTIVE not in metrics:
        raise KeyError(f"{OBJECTIVE} missing from the evaluation metrics {sorted(metrics)}.")
    return float(metrics[OBJECTIVE])


def search_base_settings(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> dict[str, Any]:
    """The settings every trial starts from and best.yaml repeats: those differing from the recipe's
    defaults (the search's own keys, the output folder and run name left out)."""
    values = settings_differing_from_defaults(model_args, data_args, training_args, recipe_args)
    for key in SEARCH_ONLY_RECIPE_KEYS | {"output_dir", "run_name"}:
        values.pop(key, None)
    return values


def check_search_run(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Refuse, before any trial, a search without a validation split, in several processes, or with an upload."""
    if data_args.validation_split <= 0:
        raise ConfigError("search selects on the validation split: --validation_split must be above 0.")
    if training_args.world_size > 1:
        raise ConfigError("search runs in one process: start it with python, not accelerate launch/torchrun.")
    if training_args.push_to_hub:
        raise ConfigError(
            "search picks settings, not a model to share: drop --push_to_hub here, and pass it to the run of "
            "the best trial's config (python run_cola.py --config OUTPUT_DIR/search/best.yaml --push_to_hub)."
        )


def prepare_search_folder(training_args: TrainingArguments, recipe_args: RecipeArguments) -> Path:
    """OUTPUT_DIR/search, emptied first with --overwrite_output (else an earlier study there is resumed)."""
    out = Path(training_args.output_dir) / SEARCH_FOLDER
    if recipe_args.overwrite_output and out.exists():
        logger.warning("--overwrite_output: removing the previous search in %s", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_search_trainer(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    out: Path,
) -> Trainer:
    """The Trainer every trial runs: train and validation tokenized once, a fresh model per trial."""
    set_seed(training_args.seed)
    # One split for every trial (a trial's drawn seed sets its head and data order, not its validation set).
    raw = load_cola_splits(data_args, seed=training_args.seed)
    # Only the training and validation splits: the test sets take no part in choosing settings.
    raw = datasets.DatasetDict({split: raw[split] for split in (TRAIN.name, VALIDATION.name)})
    tokenizer = load_tokenizer(model_args)
    tokenized = tokenize_cola(raw, tokenizer, data_args)

    trial_args = replace(
        training_args,
        output_dir=str(out / "runs"),
        do_train=True,
        # The search picks settings, not weights: best.yaml retrains. No per-trial checkpoints.
        save_strategy="no",
        load_best_model_at_end=False,
        # The Trainer casts each drawn value to the type of the current one; an int 0 would truncate a ratio.
        warmup_steps=float(training_args.warmup_steps),
    )
    # The same Trainer set-up as run_cola.main (collator, evaluation order, optimizer options), so
    # best.yaml reproduces its trial.
    trainer = build_trainer(
        model_args,
        data_args,
        trial_args,
        tokenizer,
        tokenized,
        model_init=functools.partial(init_model_for_trial, model_args, recipe_args),
        trial_optimizer_options=functools.partial(trial_optimizer_options, recipe_args=recipe_args),
    )
    trainer.add_callback(RecordTrialMetrics(trainer))
    return trainer


def run_trials(
    optuna: ModuleType, trainer: Trainer, recipe_args: RecipeArguments, out: Path, sampler_seed: int
) -> None:
    """Run the trials the study in `out` still lacks to hold --n_trials finished ones (none when it has them)."""
    storage_url = study_storage_url(out)
    study = open_study(optuna, storage_url, sampler_seed=sampler_seed)
    remaining = recipe_args.n_trials - count_finished(optuna, study)
    if remaining <= 0:
        logger.info("The study already holds %d finished trials; writing its files.", recipe_args.n_trials)
        return
    logger.info("Search: %d more trials (of --n_trials %d) in %s", remaining, recipe_args.n_trials, out)
    trainer.hyperparameter_search(
        hp_space=functools.partial(suggest_trial_settings, recipe_args=recipe_args),
        compute_objective=validation_mcc,
        n_trials=remaining,
        direction="maximize",
        backend="optuna",
        # Passed on to optuna.create_study: the same study, resumed from the SQLite file.
        study_name=STUDY_NAME,
        storage=storage_url,
        load_if_exists=True,
        sampler=study.sampler,
        pruner=optuna.pruners.NopPruner(),  # every trial runs all its epochs: MCCs compare like with like
    )


def run_search(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
) -> dict[str, Any]:
    """Run (or resume) the search and write its files; returns the best trial and the file paths.

    Raises:
        ConfigError: Optuna missing, a bad search space, no validation split, or several processes.
    """
    optuna = import_search_dependencies()
    check_search_space(recipe_args)
    check_search_run(data_args, training_args)
    out = prepare_search_folder(training_args, recipe_args)
    base_settings = search_base_settings(model_args, data_args, training_args, recipe_args)
    trainer = build_search_trainer(model_args, data_args, training_args, recipe_args, out)
    run_trials(optuna, trainer, recipe_args, out, sampler_seed=training_args.seed)

    study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage_url(out))
    n_rows = write_trials_csv(study, out / "trials.csv")
    n_finished = count_finished(optuna, study)
    plot_mcc_vs_learning_rate(study, optuna, out / "mcc_vs_lr.png")
    summary: dict[str, Any] = {"trials": n_rows, "finished": n_finished, "folder": str(out)}
    if n_finished == 0:
        logger.error("No trial finished; see %s and the log above.", out / "trials.csv")
        return summary
    best = study.best_trial
    write_best_config(
        out / "best.yaml",
        base_settings,
        best.params,
        best.value,
        best.number,
        n_finished,
        model_args,
        data_args,
        output_dir=Path(training_args.output_dir) / "best",
        validation_split_seed=split_seed(data_args, training_args.seed),  # the trials' split
    )
    logger.info("Best trial %d: %s %.4f with %s", best.number, OBJECTIVE, best.value, best.params)
    summary.update(best_trial=best.number, best_value=best.value, best_params=dict(best.params))
    return summary


def search_cli(argv: list[str]) -> int:
    """`python run_cola.py search ...`: parse the usual flags plus `--n_trials`/`--search_*`, and search."""
    model_args, data_args, training_args, recipe_args = parse_args(argv)
    setup_logging(training_args, (model_args, data_args, training_args, recipe_args))
    check_network(model_args, data_args)
    summary = run_search(model_args, data_args, training_args, recipe_args)
    return 0 if summary["finished"] else 1
