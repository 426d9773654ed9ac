"""Figures and tables shared by the reports (the run report, phenomena, seeds, compare): matplotlib's Agg
backend, `save_figure`, `markdown_table`, and the per-split charts of a run.

- `test_mcc_by_batch.png`: MCC per consecutive batch of 32 on out_of_domain_dev (the tutorial's bar chart);
  without that split the chart is drawn for the first test split shown (in_domain_dev) as
  `<split>_mcc_by_batch.png`;
- `confusion_matrix.png`: one panel per test split shown.

Figures are closed after saving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on machines without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from recipe.training import splits  # noqa: E402
from recipe.training.evaluation import SplitResult  # noqa: E402
from recipe.training.metrics import compute_mcc  # noqa: E402

logger = logging.getLogger(__name__)

MCC_BATCH_SIZE = 32  # the tutorial's per-batch chart uses its test batch size
TUTORIAL_CHART = "test_mcc_by_batch.png"  # the tutorial's name for the chart of its test set


def save_figure(figure: plt.Figure, path: Path) -> None:
    """Save and close (an open figure keeps its memory for the life of the process)."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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


def split_label(prefix: str) -> str:
    """A metric prefix as the reports name its split (`eval` is validation); an unknown prefix as given."""
    split = splits.by_prefix().get(prefix)
    return split.name if split is not None else prefix


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


def plot_confusion_matrices(results: Sequence[SplitResult], path: Path) -> None:
    """One confusion-matrix panel per split (rows: true label, columns: predicted)."""
    figure, axes_row = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.2), squeeze=False)
    for axes, result in zip(axes_row[0], results, strict=True):
        ConfusionMatrixDisplay.from_predictions(
            result.labels,
            result.predictions,
            labels=[0, 1],
            display_labels=["unacceptable", "acceptable"],
            ax=axes,
            colorbar=False,
        )
        axes.set_title(result.split.name)
    save_figure(figure, path)


def write_test_split_plots(test_results: Sequence[SplitResult], output_dir: Path) -> list[Path]:
    """The per-batch MCC chart and the confusion matrices of the test splits shown; returns the paths."""
    if not test_results:
        return []
    tutorial_test = splits.OUT_OF_DOMAIN_DEV.name
    charted = next((result for result in test_results if result.split.name == tutorial_test), None)
    if charted is not None:
        chart = output_dir / TUTORIAL_CHART
    else:
        charted = test_results[0]
        chart = output_dir / f"{charted.split.name}_mcc_by_batch.png"
        logger.warning(
            "No %s split: %s is not written; the per-batch MCC chart is drawn for %s instead (%s).",
            tutorial_test,
            TUTORIAL_CHART,
            charted.split.name,
            chart.name,
        )
    plot_mcc_by_batch(charted.predictions, charted.labels, charted.split.name, chart)
    plot_confusion_matrices(test_results, output_dir / "confusion_matrix.png")
    return [chart, output_dir / "confusion_matrix.png"]
