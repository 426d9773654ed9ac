"""What the model gets wrong, after evaluation: per-sentence predictions, the grammar report card by
phenomenon (`--annotations`, recipe/reports/phenomena.py), and a warning when the model learned nothing.

`main()` calls `load_annotations_for_run` before training (a bad annotation file stops the run before it
costs anything) and `write_error_analysis` after evaluation, with the evaluated splits' results; it returns
the model card's "What the model gets wrong" section, which is also written as `error_analysis.md`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import datasets
import numpy as np
from transformers import TrainingArguments

from recipe.reports.annotations import AnnotationTable, read_annotations
from recipe.reports.phenomena import (
    PHENOMENA_FILES,
    annotated_splits,
    phenomena_markdown,
    write_phenomena_report,
)
from recipe.reports.plots import markdown_table
from recipe.reports.predictions import (
    PREDICTION_COLUMNS,
    SplitPredictions,
    confident_errors,
    predictions_tsv_text,
    single_predicted_class,
)
from recipe.runtime.io import write_text_atomic
from recipe.training import splits
from recipe.training.arguments import ConfigError, DataArguments
from recipe.training.evaluation import SplitResult

logger = logging.getLogger(__name__)

CLASS_NAMES = ("unacceptable", "acceptable")
ERROR_ANALYSIS_FILE = "error_analysis.md"  # the card's section, also on its own
LEARNED_NOTHING_HELP = (
    "What usually helps: a higher --learning_rate (2-5x), more --num_train_epochs, or another --seed "
    "(a small encoder can stay at the majority class for one seed and learn with the next)."
)


def predictions_file(split: str) -> str:
    """The name of a split's per-sentence predictions file."""
    return f"{split}_predictions.tsv"


def predictions_in_dataset_order(data_args: DataArguments, training_args: TrainingArguments) -> bool:
    """Whether `trainer.predict` returns rows in the dataset's order.

    The stock Trainer (transformers 5) length-groups evaluation batches at random when
    train_sampling_strategy is group_by_length and does not restore the order; --order_eval_by_length
    (recipe/training/eval_order.py) sorts deterministically and does, on one process. With several processes each
    rank evaluates its own shard with the stock sampler, and the gathered rows are not paired back.
    """
    if training_args.world_size > 1:
        return False
    strategy = getattr(training_args.train_sampling_strategy, "value", training_args.train_sampling_strategy)
    return data_args.order_eval_by_length or strategy != "group_by_length"


ORDER_HELP = (
    "predictions are paired with sentences only on one process with --order_eval_by_length on (the "
    "default); with several processes, or with --order_eval_by_length false and train_sampling_strategy "
    "group_by_length, the Trainer evaluates in an order it does not restore. Evaluate the saved model in "
    "one process (python run_cola.py --model_name_or_path OUT --do_train false ...) for per-sentence files."
)


def load_annotations_for_run(
    data_args: DataArguments, raw: datasets.DatasetDict, training_args: TrainingArguments
) -> dict[str, AnnotationTable] | None:
    """Read and check `--annotations` before training; None without the flag.

    Raises:
        ConfigError: --annotations, but the run evaluates no dev split the annotations describe.
        DataError: a missing or malformed annotation file (file and line named).
    """
    if data_args.annotations is None:
        return None
    scored = annotated_splits(raw) if training_args.do_eval else []
    if not scored:
        why = "--do_eval is off" if not training_args.do_eval else f"the data has only {', '.join(raw)}"
        described = ", ".join(split.name for split in splits.SPLITS if split.annotated)
        raise ConfigError(
            f"--annotations scores the evaluated dev splits ({described}), and this run evaluates none "
            f"({why}). Evaluate a CoLA release or GLUE folder with its dev set, or drop --annotations."
        )
    if not predictions_in_dataset_order(data_args, training_args):
        raise ConfigError(f"--annotations scores each sentence's prediction, but {ORDER_HELP}")
    return read_annotations(Path(data_args.annotations))


def split_predictions_of(dataset: datasets.Dataset, result: SplitResult) -> SplitPredictions:
    """A split's predictions with its sentences, labels and sources (dataset order, as predict returns)."""
    sources = dataset["source"] if "source" in dataset.column_names else None
    return SplitPredictions(
        sources=list(sources) if sources is not None else [""] * len(dataset),
        labels=np.asarray(dataset["label"], dtype=np.int64),
        predictions=result.predictions,
        p_acceptable=result.p_acceptable,
        sentences=list(dataset["sentence"]),
    )


def markdown_text(text: str) -> str:
    """A sentence as a Markdown table cell (a `|` would end the cell)."""
    return text.replace("|", "\\|")


def learned_nothing_warning(split: str, predictions: SplitPredictions) -> str | None:
    """The warning for a model that predicts one class for every sentence of `split`, else None."""
    only = single_predicted_class(predictions)
    if only is None:
        return None
    return (
        f"The kept model predicts {CLASS_NAMES[only]!r} for all {len(predictions)} {split} sentences "
        f"(MCC 0): it has learned nothing beyond a constant answer. {LEARNED_NOTHING_HELP}"
    )


def confident_errors_markdown(split: str, predictions: SplitPredictions) -> str:
    """A split's most confident false accepts and false rejects as a Markdown table."""
    rows = [
        [
            kind,
            f"{predictions.p_acceptable[i]:.3f}",
            predictions.sources[i],
            markdown_text(predictions.sentences[i]),
        ]
        for kind, positions in confident_errors(predictions).items()
        for i in positions
    ]
    if not rows:
        return f"### Most confident errors: {split}\n\nNo errors."
    return (
        f"### Most confident errors: {split}\n\n"
        "False accept: unacceptable, predicted acceptable (highest p(acceptable) first); false reject: "
        "acceptable, predicted unacceptable (lowest first).\n\n"
        + markdown_table(["kind", "p(acceptable)", "source", "sentence"], rows)
    )


def write_predictions_files(
    predictions: Mapping[str, SplitPredictions], evaluated: Mapping[str, SplitResult], output_dir: Path
) -> list[Path]:
    """Each evaluated split's `<split>_predictions.tsv`, after checking it is in the dataset's order."""
    written = []
    for split, split_predictions in predictions.items():
        if not np.array_equal(evaluated[split].labels, split_predictions.labels):
            raise RuntimeError(
                f"{split}: trainer.predict returned the labels in another order than the dataset's."
            )
        text = predictions_tsv_text(split_predictions)
        written.append(write_text_atomic(output_dir / predictions_file(split), text))
    return written


def learned_nothing_lines(predictions: Mapping[str, SplitPredictions]) -> list[str]:
    """The section's warning (also logged) when the model answers one class for every sentence checked:
    validation's, or the first evaluated split's without validation."""
    checked = splits.VALIDATION.name if splits.VALIDATION.name in predictions else next(iter(predictions))
    warning = learned_nothing_warning(checked, predictions[checked])
    if not warning:
        return []
    logger.warning(warning)
    return [f"**Warning: this run learned nothing.** {warning}", ""]


def confident_errors_lines(predictions: Mapping[str, SplitPredictions]) -> list[str]:
    """Where the per-sentence files are, and each reported split's most confident errors."""
    names = ", ".join(f"`{predictions_file(split)}`" for split in predictions)
    lines = [f"Per-sentence predictions ({', '.join(PREDICTION_COLUMNS)}): {names}.", ""]
    for split in splits.reported(predictions):  # a union's errors are listed in its parts when both are there
        lines += [confident_errors_markdown(split.name, predictions[split.name]), ""]
    return lines


def phenomena_lines(
    annotations: dict[str, AnnotationTable], predictions: Mapping[str, SplitPredictions], output_dir: Path
) -> list[str]:
    """Score the annotated splits by phenomenon, write PHENOMENA_FILES; the card's report-card lines."""
    scores, issues = write_phenomena_report(
        annotations,
        {
            split.name: (
                predictions[split.name].sentences,
                predictions[split.name].labels,
                predictions[split.name].predictions,
            )
            for split in annotated_splits(predictions)
        },
        output_dir,
    )
    return [
        phenomena_markdown(scores, issues, list(annotations), heading="##"),
        "![MCC per phenomenon](phenomena.png)",
        "",
    ]


def write_error_analysis(
    raw: datasets.DatasetDict,
    evaluated: Mapping[str, SplitResult],
    annotations: dict[str, AnnotationTable] | None,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> str:
    """Write into --output_dir each evaluated split's predictions TSV, the phenomena files (with
    annotations) and `error_analysis.md`; warn when the model predicts one class for every validation
    sentence.

    `evaluated`: split name -> its result (recipe/training/evaluation.py). Files of an earlier run that this
    run does not rewrite (phenomena.*, error_analysis.md) are removed first. Returns the model card's
    "What the model gets wrong" section ("" when nothing was evaluated).
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (*PHENOMENA_FILES, ERROR_ANALYSIS_FILE):
        (output_dir / name).unlink(missing_ok=True)
    if not evaluated:
        return ""
    predictions = {split: split_predictions_of(raw[split], result) for split, result in evaluated.items()}
    in_order = predictions_in_dataset_order(data_args, training_args)
    if in_order:
        write_predictions_files(predictions, evaluated, output_dir)
    lines = ["## What the model gets wrong", "", *learned_nothing_lines(predictions)]
    if not in_order:  # whether one class was predicted for all needs no order; the rest does
        logger.warning("Per-sentence predictions are not written: %s", ORDER_HELP)
        lines += [f"Per-sentence predictions are not written: {ORDER_HELP}", ""]
    else:
        lines += confident_errors_lines(predictions)
        if annotations is not None:
            lines += phenomena_lines(annotations, predictions, output_dir)
    section = "\n".join(lines)
    write_text_atomic(output_dir / ERROR_ANALYSIS_FILE, section)
    return section
