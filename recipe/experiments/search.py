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
import yaml
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

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
STUDY_NAME = "cola-search"
OBJECTIVE = "eval_matthews_correlation"
RECORDED_METRICS = ("eval_loss", "eval_accuracy", "epoch")
INTEGER_PARAMS = ("num_train_epochs", "per_device_train_batch_size", "seed")
# TrainingArguments each trial sets (the Trainer's hyperparameter search assigns them by these names).
SEARCHED_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "warmup_steps",
    "weight_decay",
    "per_device_train_batch_size",
    "seed",
)
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


def open_study(optuna: ModuleType, storage_url: str, sampler_seed: int) -> Any:
    """Create the study, or load it from an earlier (maybe interrupted) search with the same output folder.

    A trial still marked RUNNING belongs to a search that was stopped (one search runs at a time per
    folder): it is marked FAIL so it neither counts as finished nor blocks the study.
    """
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage_url, direction="maximize", load_if_exists=True
    )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        logger.warning("Trial %d was interrupted in an earlier search; marking it FAIL.", trial.number)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    # A sampler seeded from the trial count: a resumed search draws new settings instead of replaying
    # the random start-up draws of the first run.
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed + len(study.trials))
    return study


def count_finished(optuna: ModuleType, study: Any) -> int:
    """Trials that ran to the end (COMPLETE)."""
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


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


def write_best_config(
    path: Path,
    base_settings: dict[str, Any],
    best_params: dict[str, Any],
    best_value: float,
    best_number: int,
    n_finished: int,
    model_args: ModelArguments,
    data_args: DataArguments,
    output_dir: Path,
    validation_split_seed: int,
) -> None:
    """Write the best trial as a config `python run_cola.py --config` loads (comment lines first).

    It pins `validation_split_seed` to the split the trials were scored on: the trial's own `seed` (when
    the seed was searched) then sets the head and the data order only, so the config repeats its trial.
    """
    settings: dict[str, Any] = {
        "model_name_or_path": model_args.model_name_or_path,
        "data_dir": data_args.data_dir,
        **base_settings,
        "output_dir": str(output_dir),
        "validation_split_seed": validation_split_seed,
        **{key: best_params[key] for key in SEARCHED_KEYS if key in best_params},
        **optimizer_options_from_params(best_params),
    }
    header = [
        f"# python run_cola.py --config {path}",
        f"#   override a key:  python run_cola.py --config {path} --seed 43",
        f"# The best of {n_finished} finished trials of `python run_cola.py search` (recipe/experiments/search.py):",
        f"# validation {OBJECTIVE} {best_value:.4f} (trial {best_number}).",
        "# Searched: "
        + ", ".join([*SEARCHED_KEYS, *optimizer_options_from_params(best_params)])
        + " (warmup_steps below 1 is a share of the steps).",
        "# validation_split_seed keeps the trials' validation split: --seed then changes the head and the",
        "# data order only. Over seeds: python run_cola.py seeds --seeds 42 43 44 --config THIS_FILE",
    ]
    body = yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)
    path.write_text("\n".join(header) + "\n" + body, encoding="utf-8")


def write_trials_csv(study: Any, path: Path) -> int:
    """One row per trial of the study; returns the row count."""
    table = study.trials_dataframe(
        attrs=(
            "number",
            "state",
            "value",
            "user_attrs",
            "params",
            "datetime_start",
            "datetime_complete",
            "duration",
        )
    )
    table = table.rename(columns={"value": OBJECTIVE})
    table.columns = [column.removeprefix("params_").removeprefix("user_attrs_") for column in table.columns]
    # A failed trial's empty cells make pandas store whole columns as floats; integers stay integers.
    for column in INTEGER_PARAMS:
        if column in table:
            table[column] = table[column].astype("Int64")
    table.to_csv(path, index=False)
    return len(table)


def plot_mcc_vs_learning_rate(study: Any, optuna: ModuleType, path: Path) -> None:
    """Scatter validation MCC against learning rate (log axis); the best trial is starred."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt

    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    fig, ax = plt.subplots(figsize=(6, 4))
    points = ax.scatter(
        [t.params["learning_rate"] for t in finished],
        [t.value for t in finished],
        c=[t.params["num_train_epochs"] for t in finished],
        cmap="viridis",
    )
    if finished:
        fig.colorbar(points, ax=ax, label="epochs")
        best = study.best_trial
        ax.scatter([best.params["learning_rate"]], [best.value], marker="*", s=250, c="red", label="best")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation MCC")
    ax.set_title(f"{len(finished)} finished trials")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    if data_args.validation_split <= 0:
        raise ConfigError("search selects on the validation split: --validation_split must be above 0.")
    if training_args.world_size > 1:
        raise ConfigError("search runs in one process: start it with python, not accelerate launch/torchrun.")
    if training_args.push_to_hub:
        raise ConfigError(
            "search picks settings, not a model to share: drop --push_to_hub here, and pass it to the run of "
            "the best trial's config (python run_cola.py --config OUTPUT_DIR/search/best.yaml --push_to_hub)."
        )

    out = Path(training_args.output_dir) / SEARCH_FOLDER
    if recipe_args.overwrite_output and out.exists():
        logger.warning("--overwrite_output: removing the previous search in %s", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    base_settings = search_base_settings(model_args, data_args, training_args, recipe_args)

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

    storage_url = f"sqlite:///{(out / 'study.db').resolve()}"
    study = open_study(optuna, storage_url, sampler_seed=training_args.seed)
    remaining = recipe_args.n_trials - count_finished(optuna, study)
    if remaining > 0:
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
    else:
        logger.info("The study already holds %d finished trials; writing its files.", recipe_args.n_trials)

    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url)
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
