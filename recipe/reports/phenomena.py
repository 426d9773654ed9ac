"""The grammar report card: MCC per linguistic phenomenon, from CoLA's grammatical annotations.

The CoLA authors annotated every dev sentence with the phenomena it involves (15 major features, 63 minor
ones; Warstadt, Singh & Bowman 2019). `--annotations PATH` takes those files in any of these shapes:

- a folder holding `CoLA_grammatical_annotations_major_features.tsv` and
  `CoLA_grammatical_annotations_minor_features.tsv` (the release's names);
- the release zip `CoLA_grammatical_annotations.zip` itself (its `__MACOSX/._*` entries are ignored);
- a folder holding per-domain cuts `in_domain_major_features.tsv` / `in_domain_minor_features.tsv` and/or
  `out_of_domain_major_features.tsv` / `out_of_domain_minor_features.tsv` (as in `../shared/cola_annotations`).

The major file is required; without a minor file only the major features are scored. Each file: a header
`Source<TAB>Domain<TAB>Acceptability<TAB>Sentence<TAB>feature...`, one 0/1 column per feature, no quoting
(sentences contain `"`), `\\n` or `\\r\\n` line ends.

Rows are matched to each evaluated dev split (in_domain_dev, out_of_domain_dev, dev) by sentence text.
Rows that match no evaluated sentence, and rows whose Acceptability differs from the dataset's label, are
counted, logged and listed in `phenomena_issues.tsv`; the dataset's label is the one scored.

Written to the output folder: `phenomena.csv` (every split x feature: n, MCC, accuracy, 95% bootstrap
interval of the MCC), `phenomena.md` (major features), `phenomena.png` (major features, one bar per split
with its interval) and `phenomena_issues.tsv`.
"""

from __future__ import annotations

import codecs
import csv
import logging
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recipe.reports.predictions import tsv_text
from recipe.reports.reporting import markdown_table, plt, save_figure
from recipe.runtime.io import write_text_atomic
from recipe.training.data import DataError

logger = logging.getLogger(__name__)

ANNOTATION_COLUMNS = ("Source", "Domain", "Acceptability", "Sentence")
KINDS = ("major", "minor")
RELEASE_NAME = "CoLA_grammatical_annotations_{kind}_features.tsv"
DOMAIN_CUT_NAMES = ("in_domain_{kind}_features.tsv", "out_of_domain_{kind}_features.tsv")
# The dev splits the annotations describe (validation is drawn from train, which is not annotated).
SCORED_SPLITS = ("in_domain_dev", "out_of_domain_dev", "dev")
N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: the same predictions always give the same intervals
CSV_COLUMNS = ("split", "kind", "feature", "n", "mcc", "accuracy", "mcc_low", "mcc_high")
ISSUE_COLUMNS = ("kind", "file", "line", "issue", "annotation_label", "dataset_label", "sentence")
PHENOMENA_FILES = ("phenomena.csv", "phenomena.md", "phenomena.png", "phenomena_issues.tsv")
LISTED_ISSUES = 20  # per kind in phenomena.md and the log; phenomena_issues.tsv has them all


def accepted_names(kind: str) -> list[str]:
    """The file names `--annotations` looks for, for the major or minor features."""
    return [RELEASE_NAME.format(kind=kind), *(name.format(kind=kind) for name in DOMAIN_CUT_NAMES)]


@dataclass(frozen=True)
class AnnotationRow:
    """One annotated sentence: where it was read, its label in the annotation file, its 0/1 features."""

    file: str
    line: int
    acceptability: int
    sentence: str
    values: tuple[int, ...]


@dataclass
class AnnotationTable:
    """The rows of one kind (major or minor), possibly read from several files with the same header."""

    kind: str
    features: tuple[str, ...]
    rows: list[AnnotationRow] = field(default_factory=list)


# Hand-written rather than csv/pandas: the check must name file, line and column for each fault, and the
# files use no quoting at all (csv's default would swallow a sentence's `"`).
def parse_annotation_tsv(data: bytes, name: str, kind: str) -> AnnotationTable:
    """Parse one annotation file's bytes; `name` is how errors refer to it.

    Raises:
        DataError: naming the file and line, for a wrong header, a wrong number of columns, bytes that
            are not UTF-8, an Acceptability or feature value other than 0/1, an empty sentence or a blank line.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the final newline ends the last line
        lines.pop()
    if not lines:
        raise DataError(f"{name}: the file is empty; expected a header and one annotated sentence per line.")
    table: AnnotationTable | None = None
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{name}, line {number}: not UTF-8 ({err.reason}); re-save the file as UTF-8."
            ) from err
        if not line.strip():
            raise DataError(f"{name}, line {number}: blank line; every line must be one annotated sentence.")
        fields = line.split("\t")
        if table is None:
            features = tuple(fields[len(ANNOTATION_COLUMNS) :])
            if tuple(fields[: len(ANNOTATION_COLUMNS)]) != ANNOTATION_COLUMNS or not features:
                raise DataError(
                    f"{name}, line 1: expected the header {'<TAB>'.join(ANNOTATION_COLUMNS)}<TAB>feature..., "
                    f"got {line[:200]!r}. Pass CoLA's grammatical annotation files as released."
                )
            if len(set(features)) != len(features) or not all(features):
                raise DataError(
                    f"{name}, line 1: feature names must be unique and non-empty; got {features}."
                )
            table = AnnotationTable(kind, features)
            continue
        expected = len(ANNOTATION_COLUMNS) + len(table.features)
        if len(fields) != expected:
            raise DataError(
                f"{name}, line {number}: {len(fields)} tab-separated columns, expected {expected} "
                f"({', '.join(ANNOTATION_COLUMNS)} and {len(table.features)} features as in the header)."
            )
        if fields[2] not in ("0", "1"):
            raise DataError(f"{name}, line {number}: Acceptability must be 0 or 1, got {fields[2]!r}.")
        if not fields[3].strip():
            raise DataError(f"{name}, line {number}: empty Sentence.")
        values = fields[len(ANNOTATION_COLUMNS) :]
        for feature, value in zip(table.features, values, strict=True):
            if value not in ("0", "1"):
                raise DataError(f"{name}, line {number}: feature {feature!r} must be 0 or 1, got {value!r}.")
        table.rows.append(
            AnnotationRow(name, number, int(fields[2]), fields[3], tuple(int(value) for value in values))
        )
    assert table is not None  # the first line either built the table or raised
    if not table.rows:
        raise DataError(f"{name}: only a header, no annotated sentences.")
    return table


def merge_tables(tables: Sequence[AnnotationTable], kind: str) -> AnnotationTable:
    """One table from several files of the same kind (e.g. the in- and out-of-domain cuts)."""
    merged = AnnotationTable(kind, tables[0].features)
    for table in tables:
        if table.features != merged.features:
            raise DataError(
                f"{table.rows[0].file}: its {kind} feature columns differ from {tables[0].rows[0].file}'s; "
                "files of one kind must share a header."
            )
        merged.rows += table.rows
    return merged


def annotation_sources(path: Path) -> dict[str, list[tuple[str, bytes]]]:
    """The (name, bytes) of each annotation file under `path` (folder or zip), per kind.

    Raises:
        DataError: `path` does not exist, is a file but not a zip, holds both the release's file and
            per-domain cuts of one kind (they would count sentences twice), or holds no major file.
    """
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DataError(
                f"--annotations {path}: a file but not a zip; pass the folder or the release zip."
            )
        with zipfile.ZipFile(path) as archive:
            # macOS adds `__MACOSX/._name` resource entries beside each file; they are not annotations.
            members = [
                member
                for member in archive.namelist()
                if not member.startswith("__MACOSX/")
                and not Path(member).name.startswith("._")
                and not member.endswith("/")
            ]
            by_name = {Path(member).name: member for member in members}
            found = {
                kind: [
                    (f"{path}:{by_name[n]}", archive.read(by_name[n]))
                    for n in accepted_names(kind)
                    if n in by_name
                ]
                for kind in KINDS
            }
            listing = sorted(by_name)
    elif path.is_dir():
        found = {
            kind: [
                (str(path / n), (path / n).read_bytes()) for n in accepted_names(kind) if (path / n).is_file()
            ]
            for kind in KINDS
        }
        listing = sorted(entry.name for entry in path.iterdir())
    else:
        raise DataError(
            f"--annotations {path}: no such file or folder. Pass the folder holding "
            f"{RELEASE_NAME.format(kind='major')} or CoLA_grammatical_annotations.zip."
        )
    for kind, files in found.items():
        names = [Path(name).name for name, _ in files]
        if RELEASE_NAME.format(kind=kind) in names and len(names) > 1:
            raise DataError(
                f"--annotations {path} holds both {names[0]} and the per-domain {', '.join(names[1:])}: "
                "they annotate the same sentences. Keep one of them."
            )
    if not found["major"]:
        shown = ", ".join(listing[:12]) + (" ..." if len(listing) > 12 else "") if listing else "nothing"
        raise DataError(
            f"--annotations {path}: no major-features file; expected one of {', '.join(accepted_names('major'))} "
            f"(it holds: {shown})."
        )
    return found


def read_annotations(path: Path) -> dict[str, AnnotationTable]:
    """The annotation tables under `path`, by kind ("major", and "minor" when present); see the module doc.

    Raises:
        DataError: as `annotation_sources` and `parse_annotation_tsv`.
    """
    tables = {}
    for kind, files in annotation_sources(path).items():
        if not files:
            logger.warning(
                "--annotations %s: no %s-features file; only the major features are scored.", path, kind
            )
            continue
        tables[kind] = merge_tables([parse_annotation_tsv(data, name, kind) for name, data in files], kind)
        logger.info(
            "%s features: %d rows, %d features from %s",
            kind,
            len(tables[kind].rows),
            len(tables[kind].features),
            ", ".join(name for name, _ in files),
        )
    return tables


@dataclass(frozen=True)
class AnnotationIssue:
    """An annotation row not scored as given: it matches no evaluated sentence, or its label differs."""

    kind: str
    row: AnnotationRow
    issue: str  # "unmatched", "label differs" or "duplicate"
    dataset_label: int | None = None


@dataclass
class SplitAnnotations:
    """One split's annotations: per kind, an (examples x features) 0/1 matrix and which rows are annotated."""

    split: str
    matrices: dict[str, np.ndarray]
    annotated: dict[str, np.ndarray]


def match_annotations(
    tables: dict[str, AnnotationTable], splits: dict[str, tuple[Sequence[str], Sequence[int]]]
) -> tuple[dict[str, SplitAnnotations], list[AnnotationIssue]]:
    """Match annotation rows to each split's sentences by text (surrounding whitespace ignored).

    Args:
        tables: from `read_annotations`.
        splits: split -> (sentences, labels) in dataset order.

    Returns:
        Per split its feature matrices; and the issues: rows matching no sentence of any split, rows
        whose Acceptability differs from the dataset's label (listed once even when the sentence is in
        several splits, e.g. in_domain_dev and dev), and later rows repeating an earlier row's sentence.
    """
    positions = {split: _positions_by_text(sentences) for split, (sentences, _) in splits.items()}
    matched: dict[str, SplitAnnotations] = {split: SplitAnnotations(split, {}, {}) for split in splits}
    issues: list[AnnotationIssue] = []
    for kind, table in tables.items():
        seen: dict[str, AnnotationRow] = {}
        for split, (sentences, _) in splits.items():
            matched[split].matrices[kind] = np.zeros((len(sentences), len(table.features)), dtype=np.int8)
            matched[split].annotated[kind] = np.zeros(len(sentences), dtype=bool)
        for row in table.rows:
            text = row.sentence.strip()
            if text in seen:
                issues.append(AnnotationIssue(kind, row, f"duplicate of line {seen[text].line}"))
                continue
            seen[text] = row
            disagreement: int | None = None
            found = False
            for split, (_, labels) in splits.items():
                for index in positions[split].get(text, ()):
                    found = True
                    matched[split].matrices[kind][index] = row.values
                    matched[split].annotated[kind][index] = True
                    if int(labels[index]) != row.acceptability:
                        disagreement = int(labels[index])
            if not found:
                issues.append(AnnotationIssue(kind, row, "unmatched"))
            elif disagreement is not None:
                issues.append(AnnotationIssue(kind, row, "label differs", disagreement))
    return matched, issues


def _positions_by_text(sentences: Sequence[str]) -> dict[str, list[int]]:
    """Sentence text -> its positions in the split (a text can occur more than once)."""
    positions: dict[str, list[int]] = {}
    for index, sentence in enumerate(sentences):
        positions.setdefault(sentence.strip(), []).append(index)
    return positions


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


def scored_splits(evaluated: Iterable[str]) -> list[str]:
    """The evaluated splits the annotations describe, in SCORED_SPLITS order."""
    evaluated = set(evaluated)
    return [split for split in SCORED_SPLITS if split in evaluated]
