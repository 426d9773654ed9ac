"""What a run leaves for people to read: the per-epoch table, plots, a model card and a summary line.

After training, `write_run_report` writes to `output_dir`:

- `epochs.csv` / `epochs.md`: per epoch, training loss, validation loss, MCC and accuracy, epoch time and
  validation time (the tutorial's summary table), built from `trainer.state.log_history`;
- `learning_curve.png`: training and validation loss, and validation MCC, per epoch;
- `test_mcc_by_batch.png`: MCC per consecutive batch of 32 on out_of_domain_dev (the tutorial's bar chart);
  without that split the chart is drawn for in_domain_dev as `in_domain_dev_mcc_by_batch.png`;
- `confusion_matrix.png`: one panel per test split;
- `README.md`: a model card with the Hub's metadata (model-index: MCC and accuracy per split, built with
  huggingface_hub's ModelCardData) and a body of sections: base checkpoint, data, results, per-epoch table,
  hyperparameters, the reproducing command, how to use it, software versions and machine;
- `run_args.json`: the model/data/recipe arguments (predict reads max_seq_length from it) and `versions`.

Figures use matplotlib's Agg backend (no display) and are closed after saving.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on machines without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from huggingface_hub import EvalResult, ModelCard, ModelCardData  # noqa: E402
from huggingface_hub.errors import HFValidationError  # noqa: E402
from huggingface_hub.utils import validate_repo_id  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments  # noqa: E402
from transformers.trainer_utils import PredictionOutput  # noqa: E402

from recipe.reports.predictions import card_section  # noqa: E402
from recipe.runtime.versions import run_versions  # noqa: E402
from recipe.training.arguments import DataArguments, ModelArguments, RecipeArguments  # noqa: E402
from recipe.training.metrics import compute_mcc  # noqa: E402
from recipe.training.model import PACKAGE_SCHEME  # noqa: E402
from recipe.training.settings import arguments_as_dicts, effective_settings, reproduce_command

logger = logging.getLogger(__name__)

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
MCC_BATCH_SIZE = 32  # the tutorial's per-batch chart uses its test batch size
RUN_ARGS_FILE = "run_args.json"
SPLIT_TITLES = {"eval": "validation"}
COLA_HUB_DATASET = "nyu-mll/glue"  # CoLA on the Hub: this dataset, config `cola`


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
        if "eval_loss" in entry:
            row["validation_loss"] = entry["eval_loss"]
            row["validation_mcc"] = entry.get("eval_matthews_correlation")
            row["validation_accuracy"] = entry.get("eval_accuracy")
            row["validation_time_s"] = entry.get("eval_runtime")
        if EPOCH_RUNTIME_KEY in entry:
            row["epoch_time_s"] = entry[EPOCH_RUNTIME_KEY]
    return [rows[epoch] for epoch in sorted(rows)]


def format_cell(value: Any) -> str:
    """A table cell: floats to 4 decimals, missing values as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (written by hand: the standard library has none)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(format_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


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


def save_figure(figure: plt.Figure, path: Path) -> None:
    """Save and close (an open figure keeps its memory for the life of the process)."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def mcc_by_batch(
    predictions: np.ndarray, labels: np.ndarray, batch_size: int = MCC_BATCH_SIZE
) -> list[float]:
    """MCC of each consecutive batch of `batch_size` examples (the last may be shorter)."""
    return [
        compute_mcc(predictions[start : start + batch_size], labels[start : start + batch_size])
        for start in range(0, len(labels), batch_size)
    ]


def plot_mcc_by_batch(predictions: np.ndarray, labels: np.ndarray, split: str, path: Path) -> None:
    """The tutorial's bar chart: MCC per batch of 32, with the whole split's MCC as a line."""
    scores = mcc_by_batch(predictions, labels)
    overall = compute_mcc(predictions, labels)
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.bar(range(len(scores)), scores, color="tab:blue")
    axes.axhline(overall, color="tab:red", linestyle="--", label=f"whole split: {overall:.3f}")
    axes.set(
        title=f"MCC per batch of {MCC_BATCH_SIZE} on {split}",
        xlabel="batch",
        ylabel="MCC",
        ylim=(min(-0.1, min(scores) - 0.05), 1.05),
    )
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    save_figure(figure, path)


def plot_confusion_matrices(predictions: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """One confusion-matrix panel per test split (rows: true label, columns: predicted)."""
    figure, axes_row = plt.subplots(1, len(predictions), figsize=(4.6 * len(predictions), 4.2), squeeze=False)
    for axes, (split, (predicted, labels)) in zip(axes_row[0], predictions.items(), strict=True):
        ConfusionMatrixDisplay.from_predictions(
            labels,
            predicted,
            labels=[0, 1],
            display_labels=["unacceptable", "acceptable"],
            ax=axes,
            colorbar=False,
        )
        axes.set_title(split)
    save_figure(figure, path)


def predicted_labels(output: PredictionOutput) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels of one split, from the `trainer.predict` output `main()` already has."""
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return np.argmax(logits, axis=-1), np.asarray(output.label_ids)


def settings_table(settings: dict[str, dict[str, Any]]) -> str:
    """The card's table of the settings not left at a library default, with their source."""
    rows = [
        [name, shareable_value(entry["value"]), entry["source"]]
        for name, entry in sorted(settings.items())
        if entry["source"] != "default"
    ]
    return markdown_table(["setting", "value", "source"], rows)


def split_results(results: dict[str, float], prefix: str) -> dict[str, float]:
    """MCC, accuracy, loss and size of one split from the run's results (keys `{prefix}_...`)."""
    keys = ("matthews_correlation", "accuracy", "loss", "samples")
    return {key: results[f"{prefix}_{key}"] for key in keys if f"{prefix}_{key}" in results}


def is_hub_model_id(name: str) -> bool:
    """Whether `name` is a Hub model id: not a local path, not a `package:` checkpoint, and a valid id."""
    if name.startswith(PACKAGE_SCHEME) or Path(name).exists() or Path(name).is_absolute():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def shareable_value(value: Any) -> str:
    """A setting's value as the card shows it: absolute paths (and file:// URLs) as `path/to/<name>`."""
    text = str(value)
    if text.startswith("file://"):
        return "file://" + shareable_path(text[len("file://") :])
    return shareable_path(text) if isinstance(value, str) and text.startswith("/") else text


def shareable_path(path: str) -> str:
    """A path as a card may show it: relative paths as given, an absolute one as `path/to/<its name>`."""
    return f"path/to/{Path(path).name}" if Path(path).is_absolute() else path


def base_model_description(name: str) -> str:
    """The checkpoint fine-tuned, named without this machine's paths."""
    if name.startswith(PACKAGE_SCHEME):
        package = name[len(PACKAGE_SCHEME) :].partition("/")[0]
        return f"`{name}` (the checkpoint shipped in the Python package `{package}`)"
    if is_hub_model_id(name):
        return f"[`{name}`](https://huggingface.co/{name})"
    return f"a local checkpoint folder `{Path(name).name}`"


def data_description(data_args: DataArguments) -> str:
    """Where the training data came from, by kind and folder name (no machine path)."""
    if data_args.dataset_name:
        config = f", config `{data_args.dataset_config_name}`" if data_args.dataset_config_name else ""
        if Path(data_args.dataset_name).exists() or Path(data_args.dataset_name).is_absolute():
            return f"the local dataset folder `{Path(data_args.dataset_name).name}`{config}"
        return f"the Hub dataset `{data_args.dataset_name}`{config}"
    if data_args.download:
        url = data_args.download_url
        source = f"`{Path(url).name}` (a local file)" if url.startswith("file://") else url
        return f"the CoLA release zip {source}, sha256-verified"
    return f"the CoLA data folder `{Path(data_args.data_dir).name}`"


def split_description(prefix: str, data_args: DataArguments) -> str:
    """What the examples of an evaluated split are (the model-index dataset name)."""
    if prefix != "eval":
        return f"CoLA {prefix}"
    if data_args.validation_strategy == "dev":
        return "CoLA in_domain_dev (the validation set)"
    return "CoLA validation (held out from in_domain_train)"


def card_eval_results(
    results: dict[str, float], prefixes: Sequence[str], data_args: DataArguments
) -> list[EvalResult]:
    """MCC and accuracy of each evaluated split, as the Hub's model-index reads them."""
    metric_names = {"matthews_correlation": "Matthews correlation (MCC)", "accuracy": "Accuracy"}
    eval_results = []
    for prefix in prefixes:
        for metric, value in split_results(results, prefix).items():
            if metric not in metric_names:
                continue
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Grammatical acceptability",
                    dataset_type=COLA_HUB_DATASET,
                    dataset_name=split_description(prefix, data_args),
                    dataset_config="cola",
                    dataset_split=SPLIT_TITLES.get(prefix, prefix),
                    metric_type=metric,
                    metric_name=metric_names[metric],
                    metric_value=float(value),  # a plain float: numpy scalars do not serialise to YAML
                )
            )
    return eval_results


def card_data(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    results: dict[str, float],
    prefixes: Sequence[str],
) -> ModelCardData:
    """The card's metadata (YAML front matter) as the Hub reads it."""
    base = model_args.model_name_or_path
    return ModelCardData(
        language="en",
        library_name="transformers",
        pipeline_tag="text-classification",
        license=recipe_args.model_license,  # None: no license line (only the user can choose one)
        base_model=base if is_hub_model_id(base) else None,  # a folder or package: named in the body
        datasets=[COLA_HUB_DATASET],
        metrics=["matthews_correlation"],
        tags=["cola", "grammatical-acceptability", "text-classification"],
        model_name=training_args.hub_model_id or Path(training_args.output_dir).absolute().name,
        eval_results=card_eval_results(results, prefixes, data_args) or None,
    )


def card_sections(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    results: dict[str, float],
    prefixes: Sequence[str],
    rows: Sequence[dict[str, Any]],
    state: TrainerState,
) -> list[str]:
    """The card's body, one Markdown section per item (a report adds its own section by appending)."""
    result_rows = []
    for prefix in prefixes:
        metrics = split_results(results, prefix)
        result_rows.append(
            [
                SPLIT_TITLES.get(prefix, prefix),
                metrics.get("samples"),
                metrics.get("matthews_correlation"),
                metrics.get("accuracy"),
                metrics.get("loss"),
            ]
        )
    hyperparameters = {
        "learning_rate": training_args.learning_rate,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "warmup_steps": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "adam_epsilon": training_args.adam_epsilon,
        "lr_scheduler_type": getattr(
            training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type
        ),
        "max_grad_norm": training_args.max_grad_norm,
        "seed": training_args.seed,
        "max_seq_length": data_args.max_seq_length,
        "pad_to_max_length": data_args.pad_to_max_length,
        "validation_split": data_args.validation_split,
        "load_best_model_at_end": training_args.load_best_model_at_end,
        "metric_for_best_model": training_args.metric_for_best_model,
        "early_stopping_patience": recipe_args.early_stopping_patience,
    }
    kept = (
        f"the checkpoint with the best validation {training_args.metric_for_best_model} "
        f"({state.best_model_checkpoint and Path(state.best_model_checkpoint).name}, "
        f"epoch {best_epoch(rows)}, {format_cell(state.best_metric)})"
        if training_args.load_best_model_at_end and state.best_model_checkpoint
        else "the model at the end of training"
    )
    command = reproduce_command(model_args, data_args, training_args, recipe_args)
    # The card travels (the Hub): this machine's absolute paths become `path/to/<name>` placeholders.
    command = shlex.join(shareable_path(word) for word in shlex.split(command))
    model_ref = training_args.hub_model_id or f"path/to/{Path(training_args.output_dir).absolute().name}"
    local_ref = f"path/to/{Path(training_args.output_dir).absolute().name}"
    training = (
        "Training on in_domain_train"
        + (
            f" less a seeded {data_args.validation_split:.0%} validation split"
            if data_args.validation_split and data_args.validation_strategy == "split"
            else ""
        )
        + (f" (first {data_args.max_train_samples} examples)" if data_args.max_train_samples else "")
        + (
            "; in_domain_dev is the validation set (checkpoint selection), out_of_domain_dev (when present) "
            "a test set, never trained or selected on."
            if data_args.validation_strategy == "dev"
            else "; in_domain_dev and out_of_domain_dev (when present) are test sets, never trained or "
            "selected on."
        )
    )
    versions = run_versions(recipe_args.machine)
    return [
        f"# CoLA acceptability classifier fine-tuned from {base_model_description(model_args.model_name_or_path)}"
        "\n\nLabels: 0 = unacceptable, 1 = acceptable. Metric: Matthews correlation (MCC).",
        f"## Data\n\nFrom {data_description(data_args)}. {training}\n\n"
        + truncation_line(results, data_args.max_seq_length),
        "## Results\n\n"
        + markdown_table(["split", "examples", "MCC", "accuracy", "loss"], result_rows)
        + f"\n\nThis folder holds {kept}.",
        # Predictions, confident errors, report card: written by recipe/reports/analysis.py after evaluation.
        card_section(training_args.output_dir),
        "## Training, per epoch\n\n"
        + (
            markdown_table(EPOCH_COLUMNS, [[row[key] for key in EPOCH_COLUMNS] for row in rows])
            if rows
            else "(no training in this run)"
        ),
        "## Hyperparameters\n\n"
        + markdown_table(["name", "value"], [[name, str(value)] for name, value in hyperparameters.items()]),
        f"## Settings and where they came from ({recipe_args.machine or 'machine not recorded'})\n\n"
        "Source: recipe (the recipe's tutorial defaults), machine (chosen for the hardware the run saw), "
        f"config, flag, derived (computed in the run). Every setting is in `{RUN_ARGS_FILE}`.\n\n"
        + settings_table(effective_settings(model_args, data_args, training_args, recipe_args)),
        f"## Reproduce\n\n```bash\n{command}\n```",
        "## Use\n\n"
        "```python\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{model_ref}")\n'
        'classifier(["The cat sat on the mat.", "The cat sat on of the mat."], '
        f"truncation=True, max_length={data_args.max_seq_length})\n"
        "```\n\n"
        "or, on the saved folder, the same pipeline from the command line:\n\n"
        "```bash\n"
        f"python run_cola.py predict --model_dir {local_ref} "
        '"The cat sat on the mat." "The cat sat on of the mat."\n'
        "```",
        "## Software and machine\n\n"
        + markdown_table(["name", "version"], [[name, value] for name, value in versions.items()]),
    ]


def model_card(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    results: dict[str, float],
    prefixes: Sequence[str],
    rows: Sequence[dict[str, Any]],
    state: TrainerState,
) -> ModelCard:
    """The output folder's README.md: Hub metadata (model-index) and what was trained on what, how, how
    well, and how to do it again and use it."""
    data = card_data(model_args, data_args, training_args, recipe_args, results, prefixes)
    sections = card_sections(
        model_args, data_args, training_args, recipe_args, results, prefixes, rows, state
    )
    return ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n"
        + "\n\n".join(section.strip() for section in sections if section.strip())
        + "\n"
    )


def truncation_line(results: dict[str, float], max_seq_length: int) -> str:
    """The model card's line on sentences cut at --max_seq_length, per split (`*_truncated_sentences`)."""
    suffix = "_truncated_sentences"
    counts = [
        f"{key.removesuffix(suffix)} {int(value)}" for key, value in results.items() if key.endswith(suffix)
    ]
    if not counts:
        return ""
    return f"Sentences longer than max_seq_length ({max_seq_length} tokens), truncated: {', '.join(counts)}."


def summary_line(
    results: dict[str, float], prefixes: Sequence[str], output_dir: Path, written: list[Path]
) -> str:
    """One line: MCC per split and where the files went."""
    scores = ", ".join(
        f"{SPLIT_TITLES.get(prefix, prefix)} {results[f'{prefix}_matthews_correlation']:.4f}"
        for prefix in prefixes
        if f"{prefix}_matthews_correlation" in results
    )
    names = ", ".join(path.name for path in written)
    return f"MCC: {scores or 'not evaluated'} | written to {output_dir}: {names}"


def write_run_report(
    trainer: Trainer,
    results: dict[str, float],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    split_predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    test_splits: Sequence[str] = ("in_domain_dev", "out_of_domain_dev"),
) -> list[Path]:
    """Write the report files into `output_dir`, print the epoch table and the summary line.

    `split_predictions` maps a split to its (predicted, true) labels, from the evaluation `main()` ran
    (`predicted_labels`); the plots use those of `test_splits`. Only the main process writes. Returns
    the paths written (empty on other processes).
    """
    predictions = {split: split_predictions[split] for split in test_splits if split in split_predictions}
    if not trainer.is_world_process_zero():
        return []

    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    model_dict, data_dict, recipe_dict = arguments_as_dicts(model_args, data_args, recipe_args)
    run_args = {
        "model_args": model_dict,
        "data_args": data_dict,
        "recipe_args": recipe_dict,
        "machine": recipe_args.machine,
        # Every effective setting (TrainingArguments too) with its source: default, recipe, machine, ...
        "settings": effective_settings(model_args, data_args, training_args, recipe_args),
        # The exact command, this machine's paths included (the card shows them as path/to/<name>).
        "reproduce_command": reproduce_command(model_args, data_args, training_args, recipe_args),
    }
    run_args["versions"] = run_versions(recipe_args.machine)  # recipe/runtime/versions.py
    (output_dir / RUN_ARGS_FILE).write_text(json.dumps(run_args, indent=2) + "\n", encoding="utf-8")
    written.append(output_dir / RUN_ARGS_FILE)

    rows = epoch_rows(trainer.state.log_history)
    table = ""
    if rows:
        table = write_epoch_table(rows, output_dir)
        plot_learning_curve(rows, output_dir / "learning_curve.png")
        written += [output_dir / "epochs.csv", output_dir / "epochs.md", output_dir / "learning_curve.png"]
    else:
        logger.info("No training epochs were logged: epochs.csv and learning_curve.png are not written.")

    if "out_of_domain_dev" in predictions:
        plot_mcc_by_batch(
            *predictions["out_of_domain_dev"], "out_of_domain_dev", output_dir / "test_mcc_by_batch.png"
        )
        written.append(output_dir / "test_mcc_by_batch.png")
    elif "in_domain_dev" in predictions:
        logger.warning(
            "No out_of_domain_dev split: test_mcc_by_batch.png is not written; the per-batch MCC chart is "
            "drawn for in_domain_dev instead (in_domain_dev_mcc_by_batch.png)."
        )
        plot_mcc_by_batch(
            *predictions["in_domain_dev"], "in_domain_dev", output_dir / "in_domain_dev_mcc_by_batch.png"
        )
        written.append(output_dir / "in_domain_dev_mcc_by_batch.png")
    if predictions:
        plot_confusion_matrices(predictions, output_dir / "confusion_matrix.png")
        written.append(output_dir / "confusion_matrix.png")

    prefixes = [prefix for prefix in ("eval", *test_splits) if f"{prefix}_matthews_correlation" in results]
    card = model_card(
        model_args, data_args, training_args, recipe_args, results, prefixes, rows, trainer.state
    )
    card.save(output_dir / "README.md")
    written.append(output_dir / "README.md")

    # Printed, not logged: the default log level (warning) would hide what every run should show.
    if table:
        print(f"\nTraining, per epoch ({output_dir / 'epochs.md'}):\n{table}\n")
    print(summary_line(results, prefixes, output_dir, written))
    return written
