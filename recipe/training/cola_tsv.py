"""CoLA's TSV files, checked line by line and then read with `datasets`: the release's 4-column files
(source, label, mark, sentence) and GLUE's unlabeled test.tsv."""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import datasets

COLA_COLUMNS = ["source", "label", "mark", "sentence"]
LABEL_NAMES = ["unacceptable", "acceptable"]
COLA_FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "label": datasets.ClassLabel(names=LABEL_NAMES),
        "mark": datasets.Value("string"),
        "sentence": datasets.Value("string"),
    }
)
# GLUE's test.tsv: a header line `index<TAB>sentence`, no labels. Read into the Hub schema (idx, sentence,
# label = NO_LABEL) so every source gives the same unlabeled test split.
GLUE_TEST_HEADER = ("index", "sentence")
GLUE_TEST_FEATURES = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string")})
NO_LABEL = -1


class DataError(ValueError):
    """Input data that cannot be used; the message names the file (and line) and says what to do."""


# Hand-written: pandas/`datasets` report a bad line without its number, or silently read it as empty.
def validate_tsv_lines(path: Path, n_columns: int, header: tuple[str, ...] | None = None) -> int:
    """Check every line of a CoLA TSV; return the number of example rows.

    Accepts a UTF-8 byte-order mark and Windows line endings. `header`, when given, must be line 1.
    With 4 columns (source, label, mark, sentence) the label must be 0 or 1; the sentence (last column)
    must not be empty.

    Raises:
        DataError: naming the file and line, for an empty file, a blank line, bytes that are not UTF-8,
            a wrong number of columns, a bad label, or an empty sentence.
    """
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if not data.strip():
        raise DataError(f"{path}: the file is empty; a CoLA TSV has one example per line.")
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the final newline ends the last line; it does not start a new one
        lines.pop()
    columns = "source, label, mark, sentence" if n_columns == 4 else ", ".join(header or ())
    rows = 0
    for number, line_bytes in enumerate(lines, start=1):
        line_bytes = line_bytes.removesuffix(b"\r")
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{path}, line {number}: byte 0x{line_bytes[err.start]:02x} at column {err.start + 1} is not "
                "UTF-8; re-save the file as UTF-8."
            ) from err
        if not line.strip():
            raise DataError(f"{path}, line {number}: blank line; every line must be one example. Remove it.")
        if "\r" in line:
            raise DataError(f"{path}, line {number}: a carriage return inside the line; remove it.")
        fields = line.split("\t")
        if header is not None and number == 1:
            if tuple(fields) != header:
                raise DataError(f"{path}, line 1: expected the header {'<TAB>'.join(header)}, got {line!r}.")
            continue
        if len(fields) != n_columns:
            raise DataError(
                f"{path}, line {number}: {len(fields)} tab-separated columns, expected {n_columns} ({columns})."
            )
        if n_columns == 4 and fields[1] not in ("0", "1"):
            raise DataError(f"{path}, line {number}: label must be 0 or 1, got {fields[1]!r}.")
        if not fields[-1].strip():
            raise DataError(f"{path}, line {number}: empty sentence.")
        rows += 1
    if rows == 0:
        raise DataError(f"{path}: only a header, no examples.")
    return rows


def load_tsv(path: Path, features: datasets.Features, header: tuple[str, ...] | None) -> datasets.Dataset:
    """Validate `path` line by line, then load it with `datasets`, insisting every row arrived."""
    expected_rows = validate_tsv_lines(path, len(features), header)
    try:
        dataset = datasets.load_dataset(
            "csv",
            data_files={"data": str(path)},
            sep="\t",
            header=0 if header else None,
            names=list(features),
            # Quoting off: real sentences contain `"`. Empty marks stay empty strings (no NaN guessing).
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            features=features,
            split="data",
        )
    except Exception as err:  # pandas/arrow parse errors carry the line; give them the file's name
        raise DataError(f"{path}: could not be read as a CoLA TSV ({', '.join(features)}): {err}") from err
    if len(dataset) != expected_rows:
        raise DataError(
            f"{path}: read {len(dataset)} examples from {expected_rows} rows; refusing to drop rows."
        )
    return dataset


def read_cola_tsv(path: Path) -> datasets.Dataset:
    """Load one CoLA TSV (no header; source, label, mark, sentence), every line checked first.

    Raises:
        DataError: the file is empty, a line is malformed (file and line named), or rows were lost.
    """
    return load_tsv(path, COLA_FEATURES, header=None)


def read_glue_test_tsv(path: Path) -> datasets.Dataset:
    """Load GLUE's unlabeled test.tsv (header `index<TAB>sentence`) as idx, sentence, label = -1."""
    dataset = load_tsv(path, GLUE_TEST_FEATURES, header=GLUE_TEST_HEADER)
    return dataset.add_column(
        "label", [NO_LABEL] * len(dataset), feature=datasets.ClassLabel(names=LABEL_NAMES)
    )
