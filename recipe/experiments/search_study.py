"""The search's Optuna study and the files it leaves in OUTPUT_DIR/search/: study.db, trials.csv,
best.yaml and mcc_vs_lr.png."""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from recipe.experiments.search_space import SEARCHED_KEYS, optimizer_options_from_params
from recipe.training.arguments import DataArguments, ModelArguments

logger = logging.getLogger(__name__)

STUDY_NAME = "cola-search"
OBJECTIVE = "eval_matthews_correlation"  # validation MCC after the last epoch
# trials.csv columns kept as integers (a failed trial's empty cell would turn them into floats).
INTEGER_PARAMS = ("num_train_epochs", "per_device_train_batch_size", "seed")


def study_storage_url(folder: Path) -> str:
    """The study's SQLite file in the search folder, as Optuna's storage URL."""
    return f"sqlite:///{(folder / 'study.db').resolve()}"


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
