"""The model card: the output folder's `README.md`, with the Hub's metadata (model-index: MCC and accuracy
per split, built with huggingface_hub's ModelCardData) and a body of small named sections: base checkpoint,
data, results, what the model gets wrong, per-epoch table, hyperparameters, settings, the reproducing
command, how to use it, software versions and machine.

The card travels (the Hub): this machine's absolute paths are shown as `path/to/<name>`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import TrainerState, TrainingArguments

from recipe.reports.epochs import EPOCH_COLUMNS, best_epoch
from recipe.reports.plots import format_cell, markdown_table
from recipe.reports.run_args import RUN_ARGS_FILE
from recipe.runtime.versions import run_versions
from recipe.training import splits
from recipe.training.arguments import DataArguments, ModelArguments, RecipeArguments
from recipe.training.evaluation import SplitResult
from recipe.training.model import PACKAGE_SCHEME
from recipe.training.settings import effective_settings, reproduce_command

COLA_HUB_DATASET = "nyu-mll/glue"  # CoLA on the Hub: this dataset, config `cola`
CARD_METRICS = {"matthews_correlation": "Matthews correlation (MCC)", "accuracy": "Accuracy"}


@dataclass
class CardInputs:
    """What the card is written from: the run's arguments and what the run produced."""

    model_args: ModelArguments
    data_args: DataArguments
    training_args: TrainingArguments
    recipe_args: RecipeArguments
    results: dict[str, float]  # every metric of the run (the truncation counts are read from it)
    shown: Sequence[SplitResult]  # the evaluated splits the card reports, in order
    rows: Sequence[dict[str, Any]]  # the per-epoch table (recipe/reports/epochs.py)
    state: TrainerState
    error_analysis: str = ""  # the "What the model gets wrong" section (recipe/reports/analysis.py)


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


def split_description(split: splits.Split, data_args: DataArguments) -> str:
    """What the examples of an evaluated split are (the model-index dataset name)."""
    if split.name != splits.VALIDATION.name:
        return f"CoLA {split.name}"
    if data_args.validation_strategy == splits.DEV.name:
        return f"CoLA {splits.IN_DOMAIN_DEV.name} (the validation set)"
    return f"CoLA {splits.VALIDATION.name} (held out from in_domain_train)"


def card_eval_results(shown: Sequence[SplitResult], data_args: DataArguments) -> list[EvalResult]:
    """MCC and accuracy of each split shown, as the Hub's model-index reads them."""
    return [
        EvalResult(
            task_type="text-classification",
            task_name="Grammatical acceptability",
            dataset_type=COLA_HUB_DATASET,
            dataset_name=split_description(result.split, data_args),
            dataset_config="cola",
            dataset_split=result.split.name,
            metric_type=metric,
            metric_name=CARD_METRICS[metric],
            metric_value=float(value),  # a plain float: numpy scalars do not serialise to YAML
        )
        for result in shown
        for metric in CARD_METRICS
        if (value := result.metric(metric)) is not None
    ]


def card_data(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    recipe_args: RecipeArguments,
    shown: Sequence[SplitResult],
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
        eval_results=card_eval_results(shown, data_args) or None,
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


def settings_table(settings: dict[str, dict[str, Any]]) -> str:
    """The card's table of the settings not left at a library default, with their source."""
    rows = [
        [name, shareable_value(entry["value"]), entry["source"]]
        for name, entry in sorted(settings.items())
        if entry["source"] != "default"
    ]
    return markdown_table(["setting", "value", "source"], rows)


def title_section(card: CardInputs) -> str:
    """What the model is: the base checkpoint, the labels and the metric."""
    base = base_model_description(card.model_args.model_name_or_path)
    return (
        f"# CoLA acceptability classifier fine-tuned from {base}"
        "\n\nLabels: 0 = unacceptable, 1 = acceptable. Metric: Matthews correlation (MCC)."
    )


def training_data_text(data_args: DataArguments) -> str:
    """Which examples were trained on, which chose the checkpoint, which are test sets."""
    held_out = (
        f" less a seeded {data_args.validation_split:.0%} validation split"
        if data_args.validation_split and data_args.validation_strategy == "split"
        else ""
    )
    first = f" (first {data_args.max_train_samples} examples)" if data_args.max_train_samples else ""
    in_domain, out_of_domain = splits.IN_DOMAIN_DEV.name, splits.OUT_OF_DOMAIN_DEV.name
    roles = (
        f"; {in_domain} is the validation set (checkpoint selection), {out_of_domain} (when present) "
        "a test set, never trained or selected on."
        if data_args.validation_strategy == splits.DEV.name
        else f"; {in_domain} and {out_of_domain} (when present) are test sets, never trained or selected on."
    )
    return f"Training on in_domain_train{held_out}{first}{roles}"


def data_section(card: CardInputs) -> str:
    """Where the data came from, how it was used, and how many sentences were truncated."""
    data_args = card.data_args
    return (
        f"## Data\n\nFrom {data_description(data_args)}. {training_data_text(data_args)}\n\n"
        + truncation_line(card.results, data_args.max_seq_length)
    )


def kept_model_text(card: CardInputs) -> str:
    """Which model the folder holds: the best checkpoint (which, when, how good) or the last."""
    training_args, state = card.training_args, card.state
    if not (training_args.load_best_model_at_end and state.best_model_checkpoint):
        return "the model at the end of training"
    return (
        f"the checkpoint with the best validation {training_args.metric_for_best_model} "
        f"({Path(state.best_model_checkpoint).name}, "
        f"epoch {best_epoch(card.rows)}, {format_cell(state.best_metric)})"
    )


def results_section(card: CardInputs) -> str:
    """Size, MCC, accuracy and loss of each split shown, and which model the folder holds."""
    rows = [
        [
            result.split.name,
            result.metric("samples"),
            result.metric("matthews_correlation"),
            result.metric("accuracy"),
            result.metric("loss"),
        ]
        for result in card.shown
    ]
    table = markdown_table(["split", "examples", "MCC", "accuracy", "loss"], rows)
    return f"## Results\n\n{table}\n\nThis folder holds {kept_model_text(card)}."


def epochs_section(card: CardInputs) -> str:
    """The per-epoch table (epochs.md)."""
    if not card.rows:
        return "## Training, per epoch\n\n(no training in this run)"
    rows = [[row[key] for key in EPOCH_COLUMNS] for row in card.rows]
    return "## Training, per epoch\n\n" + markdown_table(EPOCH_COLUMNS, rows)


def hyperparameters_section(card: CardInputs) -> str:
    """The hyperparameters a reader compares runs by."""
    training_args, data_args = card.training_args, card.data_args
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
        "early_stopping_patience": card.recipe_args.early_stopping_patience,
    }
    rows = [[name, str(value)] for name, value in hyperparameters.items()]
    return "## Hyperparameters\n\n" + markdown_table(["name", "value"], rows)


def settings_section(card: CardInputs) -> str:
    """Every setting not left at a library default, with where it came from."""
    settings = effective_settings(card.model_args, card.data_args, card.training_args, card.recipe_args)
    return (
        f"## Settings and where they came from ({card.recipe_args.machine or 'machine not recorded'})\n\n"
        "Source: recipe (the recipe's tutorial defaults), machine (chosen for the hardware the run saw), "
        f"config, flag, derived (computed in the run). Every setting is in `{RUN_ARGS_FILE}`.\n\n"
        + settings_table(settings)
    )


def reproduce_section(card: CardInputs) -> str:
    """The command that runs the same job again, with this machine's paths as placeholders."""
    command = reproduce_command(card.model_args, card.data_args, card.training_args, card.recipe_args)
    command = shlex.join(shareable_path(word) for word in shlex.split(command))
    return f"## Reproduce\n\n```bash\n{command}\n```"


def use_section(card: CardInputs) -> str:
    """How to use the model: the pipeline in Python, and `predict` on the saved folder."""
    folder = Path(card.training_args.output_dir).absolute().name
    model_ref = card.training_args.hub_model_id or f"path/to/{folder}"
    return (
        "## Use\n\n"
        "```python\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{model_ref}")\n'
        'classifier(["The cat sat on the mat.", "The cat sat on of the mat."], '
        f"truncation=True, max_length={card.data_args.max_seq_length})\n"
        "```\n\n"
        "or, on the saved folder, the same pipeline from the command line:\n\n"
        "```bash\n"
        f"python run_cola.py predict --model_dir path/to/{folder} "
        '"The cat sat on the mat." "The cat sat on of the mat."\n'
        "```"
    )


def software_section(card: CardInputs) -> str:
    """The library versions, the recipe's commit and the machine."""
    versions = run_versions(card.recipe_args.machine)
    return "## Software and machine\n\n" + markdown_table(
        ["name", "version"], [[name, value] for name, value in versions.items()]
    )


def card_sections(card: CardInputs) -> list[str]:
    """The card's body, one Markdown section per item, in reading order."""
    return [
        title_section(card),
        data_section(card),
        results_section(card),
        card.error_analysis,
        epochs_section(card),
        hyperparameters_section(card),
        settings_section(card),
        reproduce_section(card),
        use_section(card),
        software_section(card),
    ]


def model_card(card: CardInputs) -> ModelCard:
    """The output folder's README.md: Hub metadata (model-index) and what was trained on what, how, how
    well, and how to do it again and use it."""
    data = card_data(card.model_args, card.data_args, card.training_args, card.recipe_args, card.shown)
    sections = (section.strip() for section in card_sections(card))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n")
