"""The per-epoch record of training: a callback that times each epoch, the per-epoch table read from
`trainer.state.log_history` (`epochs.csv`, `epochs.md`, printed at the end of the run) and
`learning_curve.png` (training and validation loss, and validation MCC, per epoch).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from recipe.reports.plots import markdown_table, plt, save_figure
from recipe.training import splits

EPOCH_COLUMNS = (
    "epoch",
    "training_loss",
    "validation_loss",
    "validation_mcc",
    "validation_accuracy",
    "epoch_time_s",
    "validation_time_s",
)
# The key EpochTimerCallback adds to log_history (named like the Trainer's own `eval_runtime`).
EPOCH_RUNTIME_KEY = "epoch_runtime"


class EpochTimerCallback(TrainerCallback):
    """Record each epoch's training time, and log the training loss at the end of every epoch
    (unless --logging_strategy no).

    The time goes into `state.log_history` as `{"epoch", "step", "epoch_runtime"}`, so trainer_state.json
    (and every checkpoint) keeps it and a resumed run still reports earlier epochs. Logging at each
    epoch end makes every logged training-loss interval fall inside one epoch, so the per-epoch training
    loss is an exact step-weighted mean. Validation time is the Trainer's own `eval_runtime`.
    """

    def __init__(self) -> None:
        self.epoch_started: float | None = None

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.epoch_started = time.perf_counter()

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.epoch_started is not None and state.epoch is not None:
            seconds = time.perf_counter() - self.epoch_started
            state.log_history.append(
                {"epoch": state.epoch, "step": state.global_step, EPOCH_RUNTIME_KEY: round(seconds, 4)}
            )
        if args.logging_strategy != "no":  # a user who turned logging off keeps it off
            control.should_log = True


def epoch_of(entry: dict[str, Any]) -> int:
    """The 1-based epoch a log entry belongs to (an entry logged at epoch 1.0 closes epoch 1)."""
    return max(1, math.ceil(float(entry["epoch"]) - 1e-6))


def training_history(log_history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries logged during training: up to the Trainer's end-of-training summary, so the
    evaluations of the kept model that follow (same epoch number) are not mistaken for the last epoch's."""
    history: list[dict[str, Any]] = []
    for entry in log_history:
        if "train_runtime" in entry:
            break
        if "epoch" in entry:
            history.append(entry)
    return history


def epoch_rows(log_history: Sequence[dict[str, Any]]) -> list[dict[str, float | int | None]]:
    """One row per epoch (EPOCH_COLUMNS) from `trainer.state.log_history`; None where nothing was logged.

    Training loss: the mean of the logged losses weighted by the steps each covers. Validation: the
    last evaluation in the epoch (with eval_strategy epoch there is exactly one).
    """
    rows: dict[int, dict[str, float | int | None]] = {}
    loss_sums: dict[int, list[float]] = {}
    previous_loss_step = 0
    validation = splits.VALIDATION.metric_prefix  # the Trainer's evaluations during training
    for entry in training_history(log_history):
        epoch = epoch_of(entry)
        row = rows.setdefault(epoch, dict.fromkeys(EPOCH_COLUMNS) | {"epoch": epoch})
        if "loss" in entry:
            steps = max(1, int(entry["step"]) - previous_loss_step)
            previous_loss_step = int(entry["step"])
            total = loss_sums.setdefault(epoch, [0.0, 0.0])
            total[0] += float(entry["loss"]) * steps
            total[1] += steps
            row["training_loss"] = total[0] / total[1]
        if f"{validation}_loss" in entry:
            row["validation_loss"] = entry[f"{validation}_loss"]
            row["validation_mcc"] = entry.get(f"{validation}_matthews_correlation")
            row["validation_accuracy"] = entry.get(f"{validation}_accuracy")
            row["validation_time_s"] = entry.get(f"{validation}_runtime")
        if EPOCH_RUNTIME_KEY in entry:
            row["epoch_time_s"] = entry[EPOCH_RUNTIME_KEY]
    return [rows[epoch] for epoch in sorted(rows)]


def write_epoch_table(rows: Sequence[dict[str, Any]], output_dir: Path) -> str:
    """Write epochs.csv and epochs.md; returns the Markdown table."""
    with (output_dir / "epochs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=EPOCH_COLUMNS)
        writer.writeheader()
        writer.writerows(
            {key: ("" if row[key] is None else row[key]) for key in EPOCH_COLUMNS} for row in rows
        )
    table = markdown_table(EPOCH_COLUMNS, [[row[key] for key in EPOCH_COLUMNS] for row in rows])
    (output_dir / "epochs.md").write_text(f"# Training, per epoch\n\n{table}\n", encoding="utf-8")
    return table


def best_epoch(rows: Sequence[dict[str, Any]]) -> int | None:
    """The epoch with the highest validation MCC (the first of ties), or None without validation."""
    scored = [row for row in rows if row["validation_mcc"] is not None]
    if not scored:
        return None
    return int(max(scored, key=lambda row: row["validation_mcc"])["epoch"])


def plot_learning_curve(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Training and validation loss per epoch (left) and validation MCC per epoch (right)."""
    epochs = [row["epoch"] for row in rows]

    def series(key: str) -> list[float]:
        return [np.nan if row[key] is None else row[key] for row in rows]

    figure, (loss_axes, mcc_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    loss_axes.plot(epochs, series("training_loss"), "o-", label="training loss")
    loss_axes.plot(epochs, series("validation_loss"), "s-", label="validation loss")
    loss_axes.set(title="Loss per epoch", xlabel="epoch", ylabel="loss", xticks=epochs)
    loss_axes.legend()
    mcc_axes.plot(epochs, series("validation_mcc"), "o-", color="tab:green", label="validation MCC")
    kept = best_epoch(rows)
    if kept is not None:
        mcc_axes.axvline(kept, color="grey", linestyle="--", label=f"best (epoch {kept})")
    mcc_axes.set(title="Validation MCC per epoch", xlabel="epoch", ylabel="MCC", xticks=epochs)
    mcc_axes.legend()
    for axes in (loss_axes, mcc_axes):
        axes.grid(alpha=0.3)
    save_figure(figure, path)
