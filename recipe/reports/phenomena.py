"""The grammar report card: MCC per linguistic phenomenon of each evaluated annotated split, from CoLA's
grammatical annotations (read and matched by recipe/reports/annotations.py).

Written to the output folder: `phenomena.csv` (every split x feature: n, MCC, accuracy, 95% bootstrap
interval of the MCC), `phenomena.md` (major features), `phenomena.png` (major features, one bar per split
with its interval) and `phenomena_issues.tsv` (the annotation rows not scored as given).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recipe.reports.annotations import AnnotationIssue, AnnotationTable, SplitAnnotations, match_annotations
from recipe.reports.plots import markdown_table, plt, save_figure
from recipe.reports.predictions import tsv_text
from recipe.runtime.io import write_text_atomic
from recipe.training import splits
from recipe.training.splits import Split

logger = logging.getLogger(__name__)

N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: the same predictions always give the same intervals
CSV_COLUMNS = ("split", "kind", "feature", "n", "mcc", "accuracy", "mcc_low", "mcc_high")
ISSUE_COLUMNS = ("kind", "file", "line", "issue", "annotation_label", "dataset_label", "sentence")
PHENOMENA_FILES = ("phenomena.csv", "phenomena.md", "phenomena.png", "phenomena_issues.tsv")
LISTED_ISSUES = 20  # per kind in phenomena.md and the log; phenomena_issues.tsv has them all


# Hand-written, vectorised: sklearn's matthews_corrcoef scores one pair of arrays per call, and the
# bootstrap needs a thousand resamples for each of ~80 features per split.
def mcc_rows(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """MCC of each row of two same-shaped 0/1 arrays (last axis = examples); 0 where it is undefined,
    as sklearn's matthews_corrcoef returns for a constant prediction or label."""
    predicted = np.asarray(predictions).astype(bool)
    actual = np.asarray(labels).astype(bool)
    tp = (predicted & actual).sum(axis=-1, dtype=np.float64)
    tn = (~predicted & ~actual).sum(axis=-1, dtype=np.float64)
    fp = (predicted & ~actual).sum(axis=-1, dtype=np.float64)
    fn = (~predicted & actual).sum(axis=-1, dtype=np.float64)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, (tp * tn - fp * fn) / safe, 0.0)


def bootstrap_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(n_resamples, n) indices drawn with replacement from range(n), from a fixed seed."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def mcc_interval(
    predictions: np.ndarray, labels: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the MCC over the examples."""
    indices = bootstrap_indices(len(labels), n_resamples, seed)
    values = mcc_rows(np.asarray(predictions)[indices], np.asarray(labels)[indices])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class PhenomenonScore:
    """One split x feature of the report card (mcc etc. None when no sentence carries the feature)."""

    split: str
    kind: str
    feature: str
    n: int
    mcc: float | None
    accuracy: float | None
    mcc_low: float | None
    mcc_high: float | None


def score_phenomena(
    matched: dict[str, SplitAnnotations],
    tables: dict[str, AnnotationTable],
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
) -> list[PhenomenonScore]:
    """n, MCC, accuracy and the 95% bootstrap interval of the MCC for every split x kind x feature.

    `predictions`: split -> (predicted labels, dataset labels) in dataset order.
    """
    scores = []
    for split, split_annotations in matched.items():
        predicted, labels = (np.asarray(array) for array in predictions[split])
        for kind, table in tables.items():
            matrix = split_annotations.matrices[kind]
            for column, feature in enumerate(table.features):
                carriers = np.flatnonzero(matrix[:, column] == 1)
                if carriers.size == 0:
                    scores.append(PhenomenonScore(split, kind, feature, 0, None, None, None, None))
                    continue
                chosen_predicted, chosen_labels = predicted[carriers], labels[carriers]
                low, high = mcc_interval(chosen_predicted, chosen_labels)
                scores.append(
                    PhenomenonScore(
                        split,
                        kind,
                        feature,
                        int(carriers.size),
                        float(mcc_rows(chosen_predicted, chosen_labels)),
                        float((chosen_predicted == chosen_labels).mean()),
                        low,
                        high,
                    )
                )
    return scores


def describe_issues(issues: Sequence[AnnotationIssue], kind: str) -> list[str]:
    """Lines for the log and phenomena.md: counts per issue, then the first LISTED_ISSUES rows."""
    mine = [issue for issue in issues if issue.kind == kind]
    if not mine:
        return [f"{kind}: every annotation row matched an evaluated sentence with the same label."]
    counts = Counter(issue.issue.split(" of ")[0] for issue in mine)  # "duplicate of line 7" -> "duplicate"
    lines = [
        f"{kind}: "
        + ", ".join(f"{count} {name}" for name, count in counts.items())
        + " (not scored as given):"
    ]
    for issue in mine[:LISTED_ISSUES]:
        label = (
            f" (annotation {issue.row.acceptability}, dataset {issue.dataset_label}; the dataset's label is scored)"
            if issue.dataset_label is not None
            else ""
        )
        lines.append(
            f"- {issue.issue}: {Path(issue.row.file).name} line {issue.row.line}: {issue.row.sentence}{label}"
        )
    if len(mine) > LISTED_ISSUES:
        lines.append(f"- ... {len(mine) - LISTED_ISSUES} more in phenomena_issues.tsv")
    return lines


def write_issues_tsv(issues: Iterable[AnnotationIssue], path: Path) -> None:
    """Every annotation row not scored as given (sentences unquoted: they contain `"`)."""
    rows = [
        [
            issue.kind,
            issue.row.file,
            issue.row.line,
            issue.issue,
            issue.row.acceptability,
            "" if issue.dataset_label is None else issue.dataset_label,
            issue.row.sentence,
        ]
        for issue in issues
    ]
    write_text_atomic(path, tsv_text(ISSUE_COLUMNS, rows))


def write_scores_csv(scores: Iterable[PhenomenonScore], path: Path) -> None:
    """phenomena.csv: one row per split x kind x feature (empty cells where n is 0)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for score in scores:
            writer.writerow(
                ["" if getattr(score, key) is None else getattr(score, key) for key in CSV_COLUMNS]
            )


def read_scores_csv(path: Path) -> list[PhenomenonScore]:
    """phenomena.csv back into scores (for the seeds summary)."""

    def number(text: str) -> float | None:
        return float(text) if text else None

    with path.open(encoding="utf-8") as handle:
        return [
            PhenomenonScore(
                row["split"],
                row["kind"],
                row["feature"],
                int(row["n"]),
                number(row["mcc"]),
                number(row["accuracy"]),
                number(row["mcc_low"]),
                number(row["mcc_high"]),
            )
            for row in csv.DictReader(handle)
        ]


def interval_text(low: float | None, high: float | None) -> str:
    """[low, high] to 3 decimals, or a dash."""
    return "–" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def major_table(scores: Sequence[PhenomenonScore], split: str) -> str:
    """The major features of one split as a Markdown table."""
    rows = [
        [score.feature, score.n, score.mcc, interval_text(score.mcc_low, score.mcc_high), score.accuracy]
        for score in scores
        if score.split == split and score.kind == "major"
    ]
    return markdown_table(["feature", "sentences", "MCC", "95% interval", "accuracy"], rows)


def phenomena_markdown(
    scores: Sequence[PhenomenonScore],
    issues: Sequence[AnnotationIssue],
    kinds: Sequence[str],
    heading: str = "#",
) -> str:
    """phenomena.md: per split the major features' table, then the annotation rows not scored as given."""
    splits = list(dict.fromkeys(score.split for score in scores))
    parts = [
        f"{heading} Grammar report card (MCC per phenomenon)\n",
        "Major features of CoLA's grammatical annotations; a sentence can carry several. The interval is a "
        f"95% bootstrap interval ({N_RESAMPLES} resamples of the feature's sentences): where two intervals "
        "overlap widely, the difference may be noise. Minor features: phenomena.csv.\n",
    ]
    for split in splits:
        if not any(score.n for score in scores if score.split == split):
            parts.append(f"{heading}# {split}\n\nNo sentence of {split} matches an annotation row.\n")
            continue
        parts.append(f"{heading}# {split}\n\n{major_table(scores, split)}\n")
    parts.append(f"{heading}# Annotation rows not scored as given\n")
    for kind in kinds:
        parts.append("\n".join(describe_issues(issues, kind)) + "\n")
    return "\n".join(parts)


def plot_phenomena(scores: Sequence[PhenomenonScore], path: Path) -> None:
    """Major features: one horizontal bar per split with its 95% interval."""
    major = [score for score in scores if score.kind == "major"]
    features = list(dict.fromkeys(score.feature for score in major))
    splits = list(dict.fromkeys(score.split for score in major))
    height = 0.8 / max(1, len(splits))
    figure, axes = plt.subplots(figsize=(9, 1.2 + 0.45 * len(features) * max(1, len(splits)) ** 0.5))
    for offset, split in enumerate(splits):
        by_feature = {score.feature: score for score in major if score.split == split}
        y = np.arange(len(features)) + (offset - (len(splits) - 1) / 2) * height
        values = [by_feature[f].mcc if by_feature[f].mcc is not None else np.nan for f in features]
        low = [
            v - by_feature[f].mcc_low if by_feature[f].mcc_low is not None else 0
            for f, v in zip(features, values, strict=True)
        ]
        high = [
            by_feature[f].mcc_high - v if by_feature[f].mcc_high is not None else 0
            for f, v in zip(features, values, strict=True)
        ]
        axes.barh(y, values, height=height, xerr=[low, high], capsize=2, label=split)
    labels = [f"{f} ({_counts(major, f, splits)})" for f in features]
    finish_feature_axes(axes, labels, "MCC per phenomenon (95% bootstrap interval)")
    save_figure(figure, path)


def finish_feature_axes(axes: Any, labels: Sequence[str], title: str) -> None:
    """The common frame of a per-feature MCC bar chart (report card, seeds): one row per feature, top down."""
    axes.set_yticks(np.arange(len(labels)), labels)
    axes.invert_yaxis()
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set(title=title, xlabel="MCC", xlim=(-1.05, 1.05))
    axes.legend(loc="lower right")
    axes.grid(axis="x", alpha=0.3)


def _counts(scores: Sequence[PhenomenonScore], feature: str, splits: Sequence[str]) -> str:
    """The sentence count of a feature in each split, as 'n=12/30'."""
    by_split = {score.split: score.n for score in scores if score.feature == feature}
    return "n=" + "/".join(str(by_split.get(split, 0)) for split in splits)


def write_phenomena_report(
    tables: dict[str, AnnotationTable],
    splits: dict[str, tuple[Sequence[str], np.ndarray, np.ndarray]],
    output_dir: Path,
) -> tuple[list[PhenomenonScore], list[AnnotationIssue]]:
    """Match, score and write PHENOMENA_FILES for the evaluated dev splits; log the unscored rows.

    `splits`: split -> (sentences, dataset labels, predicted labels), in dataset order.
    """
    matched, issues = match_annotations(
        tables, {split: (sentences, labels) for split, (sentences, labels, _) in splits.items()}
    )
    for kind in tables:
        for line in describe_issues(issues, kind):
            logger.warning("annotations %s", line)
    scores = score_phenomena(
        matched, tables, {split: (predicted, labels) for split, (_, labels, predicted) in splits.items()}
    )
    write_scores_csv(scores, output_dir / "phenomena.csv")
    write_issues_tsv(issues, output_dir / "phenomena_issues.tsv")
    (output_dir / "phenomena.md").write_text(
        phenomena_markdown(scores, issues, list(tables)), encoding="utf-8"
    )
    plot_phenomena(scores, output_dir / "phenomena.png")
    return scores, issues


def annotated_splits(evaluated: Iterable[str]) -> list[Split]:
    """The evaluated splits the annotations describe, in registry order (validation is drawn from train,
    which is not annotated)."""
    return [split for split in splits.in_order(evaluated) if split.annotated]
