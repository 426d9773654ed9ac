"""`python run_cola.py compare OUT_A OUT_B [OUT_C ...] [--output DIR] [--annotations PATH]`: runs side by side.

Each OUT is the --output_dir of a finished run, or of `run_cola.py seeds` (its seed-N runs count as one
run whose MCC is the mean over the seeds). From the runs' `<split>_predictions.tsv`, per dev split and per
phenomenon of CoLA's grammatical annotations (plus the whole split), the MCC of each run; for two runs also
the difference B - A with a 95% paired bootstrap interval: the same resampled sentences score both runs, so
the interval reflects how much the difference depends on which sentences happen to be in the split.
Differences whose interval excludes 0 are marked `*`.

The runs must have been evaluated on the same sentences with the same labels (same dev files); otherwise
the command refuses and says where they differ. The validation split is compared only when it holds the
same sentences in every run (a different seed draws a different validation split).

Written to --output (default: a `compare` folder beside OUT_A): compare.md (whole splits and major
features), compare.csv (minor features too) and compare.png. The annotations are --annotations, else the
ones OUT_A was run with (run_args.json); without any, only whole splits are compared.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recipe.reports.annotations import AnnotationTable, match_annotations, read_annotations
from recipe.reports.phenomena import N_RESAMPLES, bootstrap_indices, interval_text, mcc_rows
from recipe.reports.plots import markdown_table, plt, save_figure
from recipe.reports.predictions import SplitPredictions, read_predictions_tsv
from recipe.reports.run_args import RUN_ARGS_FILE
from recipe.training.arguments import ConfigError
from recipe.training.splits import VALIDATION, scored, split_named

logger = logging.getLogger(__name__)

SEED_FOLDER = re.compile(r"^seed-(\d+)$")
CSV_COLUMNS = ("split", "kind", "feature", "n")
WHOLE_SPLIT = ("all", "whole split")


@dataclass
class ComparedRun:
    """One compared OUT folder: its runs (one, or one per seed) and their predictions per split."""

    name: str
    folder: Path
    run_folders: list[Path]
    predictions: dict[str, list[SplitPredictions]] = field(default_factory=dict)

    def describe(self) -> str:
        """`path (one run)` or `path (3 seeds: seed-1, seed-2, seed-3)`."""
        if self.run_folders == [self.folder]:
            return f"`{self.folder}` (one run)"
        names = ", ".join(folder.name for folder in self.run_folders)
        return f"`{self.folder}` ({len(self.run_folders)} seeds, mean MCC: {names})"


def compared_splits() -> list[str]:
    """The splits compared, in order: validation (when the runs drew the same one), then each scored split."""
    return [VALIDATION.name, *(split.name for split in scored())]


def predictions_files(folder: Path) -> dict[str, Path]:
    """The split -> `<split>_predictions.tsv` files a run folder holds, for the comparable splits."""
    return {
        split: folder / f"{split}_predictions.tsv"
        for split in compared_splits()
        if (folder / f"{split}_predictions.tsv").is_file()
    }


def run_folders_of(folder: Path) -> list[Path]:
    """The run folders of an OUT folder: itself when it holds predictions, else its seed-N runs that do.

    Raises:
        ConfigError: neither (the message says what the folder needs).
    """
    if not folder.is_dir():
        raise ConfigError(f"compare: {folder}: no such folder; pass the --output_dir of finished runs.")
    if predictions_files(folder):
        return [folder]
    seeds = sorted(
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := SEED_FOLDER.match(path.name)) and predictions_files(path)
    )
    if not seeds:
        raise ConfigError(
            f"compare: {folder} holds no <split>_predictions.tsv and no seed-N runs that do. Pass the "
            "--output_dir of a run (or of `run_cola.py seeds`) that evaluated a dev split with this version "
            "of run_cola.py."
        )
    return [path for _, path in seeds]


def first_difference(a: SplitPredictions, b: SplitPredictions) -> str | None:
    """Why two splits' sentences differ (count, sentence or label), or None when they are the same."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} sentences"
    for line, (sa, sb, la, lb) in enumerate(
        zip(a.sentences, b.sentences, a.labels, b.labels, strict=True), 2
    ):
        if sa != sb:
            return f"line {line} of the predictions file: {sa!r} vs {sb!r}"
        if la != lb:
            return f"line {line} of the predictions file: label {la} vs {lb} for {sa!r}"
    return None


def load_compared_run(folder: Path, name: str) -> ComparedRun:
    """Read every run folder's predictions; seeds of one OUT must agree on the dev splits' sentences.

    Raises:
        ConfigError: no predictions, or seed runs evaluated on different dev sentences.
    """
    run = ComparedRun(name, folder, run_folders_of(folder))
    per_run = [
        {split: read_predictions_tsv(path) for split, path in predictions_files(rf).items()}
        for rf in run.run_folders
    ]
    for split in compared_splits():
        if not all(split in found for found in per_run):
            continue
        splits = [found[split] for found in per_run]
        reasons = [first_difference(splits[0], other) for other in splits[1:]]
        if any(reasons):
            if split == VALIDATION.name:  # a different seed draws another validation split: expected
                continue
            reason = next(reason for reason in reasons if reason)
            raise ConfigError(
                f"compare: the seed runs in {folder} evaluated {split} on different sentences ({reason})."
            )
        run.predictions[split] = splits
    return run


def common_splits(runs: Sequence[ComparedRun]) -> tuple[list[str], list[str]]:
    """The splits every run evaluated on the same sentences, and notes on those left out.

    Raises:
        ConfigError: a dev split with different sentences or labels in two runs, or no split in common.
    """
    compared, notes = [], []
    for split in compared_splits():
        holders = [run for run in runs if split in run.predictions]
        if len(holders) < len(runs):
            if holders:
                missing = ", ".join(run.name for run in runs if split not in run.predictions)
                notes.append(
                    f"{split}: left out, not evaluated (or not the same sentences across seeds) in {missing}."
                )
            continue
        first = runs[0].predictions[split][0]
        for run in runs[1:]:
            reason = first_difference(first, run.predictions[split][0])
            if reason is None:
                continue
            if split == VALIDATION.name:
                notes.append(
                    f"validation: left out, {runs[0].name} and {run.name} drew different validation sentences."
                )
                break
            raise ConfigError(
                f"compare: {runs[0].folder} and {run.folder} were evaluated on different {split} sentences "
                f"({reason}); a per-sentence comparison needs the same dev files. Compare runs of the same data."
            )
        else:
            compared.append(split)
    if not compared:
        raise ConfigError(
            "compare: the runs have no evaluated split in common ("
            + "; ".join(f"{run.name}: {', '.join(run.predictions) or 'none'}" for run in runs)
            + ")."
        )
    return compared, notes


def annotations_path(explicit: str | None, runs: Sequence[ComparedRun]) -> Path | None:
    """--annotations, else the first run's own --annotations (from run_args.json) when that path exists."""
    if explicit is not None:
        return Path(explicit)
    run_args = runs[0].run_folders[0] / RUN_ARGS_FILE
    if run_args.is_file():
        recorded = json.loads(run_args.read_text(encoding="utf-8")).get("data_args", {}).get("annotations")
        recorded = recorded if isinstance(recorded, str) else None
        if recorded and Path(recorded).exists():
            return Path(recorded)
        if recorded:
            logger.warning(
                "compare: %s names --annotations %s, which is not there; pass --annotations.",
                run_args,
                recorded,
            )
    return None


def feature_groups(
    split: str, reference: SplitPredictions, tables: dict[str, AnnotationTable]
) -> list[tuple[str, str, np.ndarray]]:
    """(kind, feature, positions) to compare in a split: the whole split, then each annotated feature."""
    groups = [(*WHOLE_SPLIT, np.arange(len(reference)))]
    if not tables or not split_named(split).annotated:  # validation comes from train: never annotated
        return groups
    matched, _ = match_annotations(tables, {split: (reference.sentences, reference.labels)})
    for kind, table in tables.items():
        matrix = matched[split].matrices[kind]
        groups += [
            (kind, feature, np.flatnonzero(matrix[:, column] == 1))
            for column, feature in enumerate(table.features)
        ]
    return groups


def run_mcc(
    run_predictions: Sequence[SplitPredictions], positions: np.ndarray, resamples: np.ndarray | None = None
) -> np.ndarray:
    """A run's MCC on `positions` (mean over its seeds); per bootstrap resample of them when given."""
    chosen = positions if resamples is None else positions[resamples]
    values = [mcc_rows(p.predictions[chosen], p.labels[chosen]) for p in run_predictions]
    return np.mean(values, axis=0)


def compare_rows(
    runs: Sequence[ComparedRun], splits: Sequence[str], tables: dict[str, AnnotationTable]
) -> list[dict]:
    """One row per split x feature: n, each run's MCC, and for two runs the difference and its interval."""
    rows = []
    for split in splits:
        reference = runs[0].predictions[split][0]
        for kind, feature, positions in feature_groups(split, reference, tables):
            row: dict = {"split": split, "kind": kind, "feature": feature, "n": int(positions.size)}
            if positions.size == 0:
                rows.append(row)
                continue
            for run in runs:
                row[run.name] = float(run_mcc(run.predictions[split], positions))
            if len(runs) == 2:
                resamples = bootstrap_indices(positions.size)
                differences = run_mcc(runs[1].predictions[split], positions, resamples) - run_mcc(
                    runs[0].predictions[split], positions, resamples
                )
                low, high = np.percentile(differences, [2.5, 97.5])
                row |= {
                    "difference": row[runs[1].name] - row[runs[0].name],
                    "low": float(low),
                    "high": float(high),
                    "excludes_zero": bool(low > 0 or high < 0),
                }
            rows.append(row)
    return rows


def write_compare_csv(rows: Sequence[dict], runs: Sequence[ComparedRun], path: Path) -> None:
    """compare.csv: every split x feature (empty cells where no sentence carries the feature)."""
    columns = [*CSV_COLUMNS, *(f"mcc_{run.name}" for run in runs)]
    if len(runs) == 2:
        columns += ["difference", "difference_low", "difference_high", "excludes_zero"]
    keys = [*CSV_COLUMNS, *(run.name for run in runs), "difference", "low", "high", "excludes_zero"][
        : len(columns)
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(key) is None else row[key] for key in keys])


def compare_markdown(
    rows: Sequence[dict], runs: Sequence[ComparedRun], splits: Sequence[str], notes: Sequence[str]
) -> str:
    """compare.md: the runs, then per split the whole split and the major features side by side."""
    labels = [chr(ord("A") + i) if i < 26 else str(i) for i in range(len(runs))]
    lines = ["# Runs compared", ""]
    lines += [f"- {label} = {run.describe()}" for label, run in zip(labels, runs, strict=True)]
    lines.append("")
    if len(runs) == 2:
        lines += [
            f"B - A: the MCC difference, with a 95% paired bootstrap interval ({N_RESAMPLES} resamples of the "
            "same sentences scoring both runs); `*`: the interval excludes 0. Minor features: compare.csv.",
            "",
        ]
    lines += [f"Note: {note}" for note in notes] + ([""] if notes else [])
    headers = ["feature", "sentences", *(f"{label} MCC" for label in labels)]
    if len(runs) == 2:
        headers += ["B - A", "95% interval", ""]
    for split in splits:
        table = []
        for row in rows:
            if row["split"] != split or row["kind"] not in (WHOLE_SPLIT[0], "major"):
                continue
            cells = [row["feature"], row["n"], *(row.get(run.name) for run in runs)]
            if len(runs) == 2:
                cells += [
                    row.get("difference"),
                    interval_text(row.get("low"), row.get("high")),
                    "*" if row.get("excludes_zero") else "",
                ]
            table.append(cells)
        lines += [f"## {split}", "", markdown_table(headers, table), ""]
    return "\n".join(lines)


def plot_comparison(
    rows: Sequence[dict], runs: Sequence[ComparedRun], splits: Sequence[str], path: Path
) -> None:
    """Per split: each run's MCC on the whole split and the major features; for two runs, B - A with its interval."""
    columns = 2 if len(runs) == 2 else 1
    figure, axes_grid = plt.subplots(
        len(splits), columns, figsize=(7 * columns, 1.5 + 6 * len(splits)), squeeze=False
    )
    for axes_row, split in zip(axes_grid, splits, strict=True):
        shown = [
            row
            for row in rows
            if row["split"] == split and row["kind"] in (WHOLE_SPLIT[0], "major") and row["n"]
        ]
        names = [f"{row['feature']} (n={row['n']})" for row in shown]
        y = np.arange(len(shown))
        height = 0.8 / len(runs)
        for offset, run in enumerate(runs):
            axes_row[0].barh(
                y + (offset - (len(runs) - 1) / 2) * height,
                [row[run.name] for row in shown],
                height=height,
                label=run.name,
            )
        axes_row[0].set_yticks(y, names)
        axes_row[0].set(title=f"{split}: MCC per run", xlabel="MCC", xlim=(-1.05, 1.05))
        axes_row[0].legend(loc="lower right")
        if columns == 2:
            differences = np.array([row["difference"] for row in shown])
            errors = [
                differences - [row["low"] for row in shown],
                [row["high"] for row in shown] - differences,
            ]
            colours = ["tab:red" if row["excludes_zero"] else "tab:grey" for row in shown]
            axes_row[1].barh(y, differences, xerr=errors, color=colours, capsize=3)
            axes_row[1].set_yticks(y, names)
            axes_row[1].axvline(0, color="black", linewidth=0.8)
            axes_row[1].set(
                title=f"{split}: {runs[1].name} - {runs[0].name}",
                xlabel="MCC difference, 95% paired bootstrap interval (red: excludes 0)",
            )
        for axes in axes_row:
            axes.invert_yaxis()
            axes.grid(axis="x", alpha=0.3)
    save_figure(figure, path)


def run_names(folders: Sequence[Path]) -> list[str]:
    """Folder names, or the paths as given where two folders share a name."""
    names = [folder.name or str(folder) for folder in folders]
    return names if len(set(names)) == len(names) else [str(folder) for folder in folders]


def build_compare_parser() -> argparse.ArgumentParser:
    """Flags of `run_cola.py compare`."""
    parser = argparse.ArgumentParser(
        prog="run_cola.py compare",
        description="Compare finished runs (or seeds folders) per split and per grammatical phenomenon.",
    )
    parser.add_argument(
        "folders", nargs="+", help="Two or more --output_dir folders of finished runs or of `seeds`."
    )
    parser.add_argument(
        "--output", default=None, help="Where compare.md/.csv/.png go (default: OUT_A/../compare)."
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="CoLA's grammatical annotations (default: those OUT_A was run with).",
    )
    return parser


def compare_cli(argv: list[str]) -> int:
    """Entry point of `python run_cola.py compare`; returns the exit status.

    Raises:
        ConfigError: a folder without predictions, or runs evaluated on different sentences.
    """
    parser = build_compare_parser()
    options = parser.parse_args(argv)
    folders = [Path(folder) for folder in options.folders]
    if len(folders) < 2:
        parser.error("give at least two folders to compare.")
    if len({folder.resolve() for folder in folders}) != len(folders):
        parser.error(f"a folder is given twice: {options.folders}.")
    runs = [load_compared_run(folder, name) for folder, name in zip(folders, run_names(folders), strict=True)]
    splits, notes = common_splits(runs)
    annotations = annotations_path(options.annotations, runs)
    tables = read_annotations(annotations) if annotations is not None else {}
    if not tables:
        notes.append("no annotations (--annotations, or the ones OUT_A was run with): whole splits only.")
    rows = compare_rows(runs, splits, tables)
    output = Path(options.output) if options.output else folders[0].parent / "compare"
    output.mkdir(parents=True, exist_ok=True)
    text = compare_markdown(rows, runs, splits, notes)
    (output / "compare.md").write_text(text, encoding="utf-8")
    write_compare_csv(rows, runs, output / "compare.csv")
    plot_comparison(rows, runs, splits, output / "compare.png")
    print(text)
    print(f"compare: written to {output}: compare.md, compare.csv, compare.png")
    return 0
