"""Per-sentence predictions: `<split>_predictions.tsv`, a split's most confident errors, the one-class check.

`<split>_predictions.tsv` (one per evaluated split, in the dataset's order): a header row, then
`source<TAB>label<TAB>prediction<TAB>p_acceptable<TAB>sentence`, label and prediction 0 (unacceptable) or 1
(acceptable), label empty where unknown (`run_cola.py predict --format tsv`), source empty where the data
has none (the Hub copy). No quoting: sentences are written as they are, `"` included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recipe.training.data import NO_LABEL, DataError

PREDICTION_COLUMNS = ("source", "label", "prediction", "p_acceptable", "sentence")
N_CONFIDENT_ERRORS = 5  # per kind and split in the model card


# Hand-written rather than csv: with QUOTE_NONE, Python's csv refuses a field holding `"` unless an
# escape character is set, and an escape character would change the sentences.
def tsv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header and rows joined by tabs and newlines, with nothing quoted.

    Raises:
        ValueError: a field holds a tab or a line break (it would shift columns or split the row).
    """
    lines = ["\t".join(header)]
    for number, row in enumerate(rows, start=1):
        fields = [str(field) for field in row]
        for column, text in zip(header, fields, strict=True):
            if any(character in text for character in "\t\n\r"):
                raise ValueError(
                    f"row {number}, {column}: {text[:80]!r} holds a tab or line break, which a TSV row "
                    "cannot; remove it."
                )
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


@dataclass
class SplitPredictions:
    """One split's sentences in dataset order with their labels (NO_LABEL if unknown) and predictions."""

    sources: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    p_acceptable: np.ndarray
    sentences: list[str]

    def __len__(self) -> int:
        return len(self.sentences)


def predictions_tsv_text(predictions: SplitPredictions) -> str:
    """The `<split>_predictions.tsv` text (see the module doc)."""
    return tsv_text(
        PREDICTION_COLUMNS,
        (
            (source, "" if label == NO_LABEL else int(label), int(predicted), f"{p:.6f}", sentence)
            for source, label, predicted, p, sentence in zip(
                predictions.sources,
                predictions.labels,
                predictions.predictions,
                predictions.p_acceptable,
                predictions.sentences,
                strict=True,
            )
        ),
    )


def read_predictions_tsv(path: Path) -> SplitPredictions:
    """Read a `<split>_predictions.tsv` back.

    Raises:
        DataError: naming the file and line, for a wrong header, column count or value.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or tuple(lines[0].split("\t")) != PREDICTION_COLUMNS:
        raise DataError(
            f"{path}, line 1: expected the header {'<TAB>'.join(PREDICTION_COLUMNS)}; is it a predictions file "
            "written by run_cola.py?"
        )
    columns: list[list[str]] = [[] for _ in PREDICTION_COLUMNS]
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(PREDICTION_COLUMNS):
            raise DataError(
                f"{path}, line {number}: {len(fields)} columns, expected {len(PREDICTION_COLUMNS)}."
            )
        if fields[1] not in ("", "0", "1") or fields[2] not in ("0", "1"):
            raise DataError(
                f"{path}, line {number}: label and prediction must be 0 or 1 (label may be empty)."
            )
        for column, value in zip(columns, fields, strict=True):
            column.append(value)
    sources, labels, predicted, p_acceptable, sentences = columns
    return SplitPredictions(
        sources=sources,
        labels=np.array([int(label) if label else NO_LABEL for label in labels], dtype=np.int64),
        predictions=np.array(predicted, dtype=np.int64),
        p_acceptable=np.array(p_acceptable, dtype=np.float64),
        sentences=sentences,
    )


def confident_errors(predictions: SplitPredictions, k: int = N_CONFIDENT_ERRORS) -> dict[str, list[int]]:
    """The `k` most confident errors of each kind, as positions in the split.

    "false accept": unacceptable sentences with the highest p(acceptable); "false reject": acceptable
    sentences with the lowest.
    """
    labels, predicted, p = predictions.labels, predictions.predictions, predictions.p_acceptable
    accepts = np.flatnonzero((labels == 0) & (predicted == 1))
    rejects = np.flatnonzero((labels == 1) & (predicted == 0))
    # A stable sort keeps dataset order among equal probabilities.
    return {
        "false accept": accepts[np.argsort(-p[accepts], kind="stable")][:k].tolist(),
        "false reject": rejects[np.argsort(p[rejects], kind="stable")][:k].tolist(),
    }


def single_predicted_class(predictions: SplitPredictions) -> int | None:
    """The class predicted for every sentence of the split, or None when both classes occur."""
    classes = np.unique(predictions.predictions)
    return int(classes[0]) if classes.size == 1 else None
