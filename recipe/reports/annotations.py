"""CoLA's grammatical annotations: reading the files `--annotations` points to, and matching their rows
to the evaluated sentences.

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

Rows are matched to each evaluated annotated split by sentence text. Rows that match no evaluated sentence,
and rows whose Acceptability differs from the dataset's label, are issues (recipe/reports/phenomena.py
counts, logs and lists them); the dataset's label is the one scored.
"""

from __future__ import annotations

import codecs
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recipe.training.data import DataError

logger = logging.getLogger(__name__)

ANNOTATION_COLUMNS = ("Source", "Domain", "Acceptability", "Sentence")
KINDS = ("major", "minor")
RELEASE_NAME = "CoLA_grammatical_annotations_{kind}_features.tsv"
DOMAIN_CUT_NAMES = ("in_domain_{kind}_features.tsv", "out_of_domain_{kind}_features.tsv")


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
