"""What the model gets wrong, after evaluation: per-sentence predictions, the grammar report card by
phenomenon (`--annotations`, recipe/reports/phenomena.py), and a warning when the model learned nothing.

`main()` calls `load_annotations_for_run` before training (a bad annotation file stops the run before it
costs anything) and `write_error_analysis` after evaluation. The model card includes the section it writes
(`recipe.reports.predictions.card_section`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import datasets
import numpy as np
from transformers import TrainingArguments
from transformers.trainer_utils import PredictionOutput

from recipe.reports.phenomena import (
    PHENOMENA_FILES,
    AnnotationTable,
    phenomena_markdown,
    read_annotations,
    scored_splits,
    write_phenomena_report,
)
from recipe.reports.predictions import (
    CARD_SECTION_FILE,
    PREDICTION_COLUMNS,
    SplitPredictions,
    confident_errors,
    predictions_from_logits,
    predictions_tsv_text,
    single_predicted_class,
)
from recipe.reports.reporting import markdown_table
from recipe.runtime.io import write_text_atomic
from recipe.training.arguments import ConfigError, DataArguments

logger = logging.getLogger(__name__)

CLASS_NAMES = ("unacceptable", "acceptable")
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
    splits = scored_splits(raw) if training_args.do_eval else []
    if not splits:
        why = "--do_eval is off" if not training_args.do_eval else f"the data has only {', '.join(raw)}"
        raise ConfigError(
            f"--annotations scores the evaluated dev splits (in_domain_dev, out_of_domain_dev, dev), and this "
            f"run evaluates none ({why}). Evaluate a CoLA release or GLUE folder with its dev set, or drop "
            "--annotations."
        )
    if not predictions_in_dataset_order(data_args, training_args):
        raise ConfigError(f"--annotations scores each sentence's prediction, but {ORDER_HELP}")
    return read_annotations(Path(data_args.annotations))


def split_predictions_of(dataset: datasets.Dataset, output: PredictionOutput) -> SplitPredictions:
    """A split's predictions with its sentences, labels and sources (dataset order, as predict returns)."""
    labels = dataset["label"]
    sources = dataset["source"] if "source" in dataset.column_names else None
    return predictions_from_logits(output.predictions, dataset["sentence"], labels, sources)


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


def write_error_analysis(
    raw: datasets.DatasetDict,
    outputs: Mapping[str, PredictionOutput],
    annotations: dict[str, AnnotationTable] | None,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> list[Path]:
    """Write into --output_dir each evaluated split's predictions TSV, the phenomena files (with
    annotations) and the model card's section; warn when the model predicts one class for every
    validation sentence.

    `outputs`: split -> the `trainer.predict` output of that split. Files of an earlier run that this run
    does not rewrite (phenomena.*, the card section) are removed, so the card never shows stale results.
    Returns the paths written.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (*PHENOMENA_FILES, CARD_SECTION_FILE):
        (output_dir / name).unlink(missing_ok=True)
    if not outputs:
        return []
    written = []
    predictions = {split: split_predictions_of(raw[split], output) for split, output in outputs.items()}
    in_order = predictions_in_dataset_order(data_args, training_args)
    for split, split_predictions in predictions.items() if in_order else ():
        label_ids = outputs[split].label_ids
        if label_ids is not None and not np.array_equal(label_ids, split_predictions.labels):
            raise RuntimeError(
                f"{split}: trainer.predict returned the labels in another order than the dataset's."
            )
        written.append(
            write_text_atomic(output_dir / predictions_file(split), predictions_tsv_text(split_predictions))
        )

    sections = ["## What the model gets wrong", ""]
    checked = "validation" if "validation" in predictions else next(iter(predictions))
    warning = learned_nothing_warning(checked, predictions[checked])
    if warning:
        logger.warning(warning)
        sections += [f"**Warning: this run learned nothing.** {warning}", ""]
    if not in_order:  # whether one class was predicted for all needs no order; the rest does
        logger.warning("Per-sentence predictions are not written: %s", ORDER_HELP)
        sections += [f"Per-sentence predictions are not written: {ORDER_HELP}", ""]
        return [*written, write_text_atomic(output_dir / CARD_SECTION_FILE, "\n".join(sections))]
    names = ", ".join(f"`{predictions_file(split)}`" for split in predictions)
    sections += [f"Per-sentence predictions ({', '.join(PREDICTION_COLUMNS)}): {names}.", ""]
    # dev is in_domain_dev + out_of_domain_dev: its errors are already listed when both are there.
    both_parts = "in_domain_dev" in predictions and "out_of_domain_dev" in predictions
    for split, split_predictions in predictions.items():
        if split != "validation" and not (split == "dev" and both_parts):
            sections += [confident_errors_markdown(split, split_predictions), ""]

    if annotations is not None:
        scored = scored_splits(predictions)
        scores, issues = write_phenomena_report(
            annotations,
            {
                split: (
                    predictions[split].sentences,
                    predictions[split].labels,
                    predictions[split].predictions,
                )
                for split in scored
            },
            output_dir,
        )
        written += [output_dir / name for name in PHENOMENA_FILES]
        sections += [
            phenomena_markdown(scores, issues, list(annotations), heading="##"),
            "![MCC per phenomenon](phenomena.png)",
            "",
        ]
    written.append(write_text_atomic(output_dir / CARD_SECTION_FILE, "\n".join(sections)))
    return written
