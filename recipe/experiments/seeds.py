"""`python run_cola.py seeds --seeds 1 2 3 [training flags]`: how much MCC varies from seed to seed.

Each seed trains into OUTPUT_DIR/seed-N with the same flags otherwise. A seed whose folder already holds
all_results.json (a finished run) is not retrained, and an interrupted one resumes from its last
checkpoint (recipe/training/checkpoints.py), so the command can simply be run again. The summary goes to
OUTPUT_DIR: seeds.csv (one row per run), seeds.md (the runs, then mean/std/min/max per split) and
seeds.png (each run's MCC per split over a box plot). Runs with the grammar report card (--annotations)
add its aggregate: mean +- std of each phenomenon's MCC over the seeds in seeds_phenomena.csv (major and
minor features), a section of seeds.md (major features) and seeds_phenomena.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recipe.reports.phenomena import finish_feature_axes, read_scores_csv
from recipe.reports.plots import markdown_table, plt, save_figure, split_label
from recipe.training.arguments import parse_args
from recipe.training.splits import VALIDATION, scored

logger = logging.getLogger(__name__)

RESULTS_FILE = "all_results.json"
PHENOMENA_CSV = "phenomena.csv"
SEED_PHENOMENA_COLUMNS = ("split", "kind", "feature", "n", "runs", "mean", "std", "min", "max")


def seed_splits() -> list[str]:
    """The metric prefixes summarised over seeds: validation, then each scored split that is not a union
    (a union only repeats its parts' sentences)."""
    return [VALIDATION.metric_prefix, *(split.metric_prefix for split in scored() if not split.union_of)]


def seed_dir(output_dir: Path, seed: int) -> Path:
    """Where the run for `seed` lives."""
    return output_dir / f"seed-{seed}"


def is_finished(run_dir: Path) -> bool:
    """A run is finished when the Trainer wrote its all_results.json."""
    return (run_dir / RESULTS_FILE).is_file()


def run_seeds(
    seeds: Sequence[int], training_argv: Sequence[str], train: Callable[..., Any]
) -> tuple[Path, list[int]]:
    """Train once per seed (skipping finished seeds); returns OUTPUT_DIR and the seeds trained now."""
    output_dir = Path(parse_args(list(training_argv))[2].output_dir)
    trained = []
    for seed in seeds:
        run_dir = seed_dir(output_dir, seed)
        if is_finished(run_dir):
            logger.warning("seed %d: %s exists, so it is not retrained.", seed, run_dir / RESULTS_FILE)
            continue
        logger.warning("seed %d: training into %s", seed, run_dir)
        # Later flags win in argparse, so these override any --seed/--output_dir among the training flags.
        train(*parse_args([*training_argv, "--seed", str(seed), "--output_dir", str(run_dir)]))
        trained.append(seed)
    return output_dir, trained


def collect_results(output_dir: Path, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One row per seed: the seed and its MCC per split (None where the split was not evaluated)."""
    rows = []
    for seed in seeds:
        results = json.loads((seed_dir(output_dir, seed) / RESULTS_FILE).read_text(encoding="utf-8"))
        rows.append(
            {"seed": seed} | {split: results.get(f"{split}_matthews_correlation") for split in seed_splits()}
        )
    return rows


def split_statistics(rows: Sequence[dict[str, Any]], split: str) -> dict[str, float | int | None]:
    """Runs, mean, sample standard deviation (ddof=1; None for one run), min and max of one split's MCC."""
    values = np.array([row[split] for row in rows if row[split] is not None], dtype=float)
    if values.size == 0:
        return {"runs": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "runs": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else None,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def present_splits(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The splits at least one run was evaluated on, in `seed_splits()` order."""
    return [split for split in seed_splits() if any(row[split] is not None for row in rows)]


def write_seed_summary(rows: Sequence[dict[str, Any]], output_dir: Path) -> str:
    """Write seeds.csv, seeds.md and seeds.png; returns the Markdown text."""
    splits = present_splits(rows)
    columns = ["seed", *(f"{split_label(split)}_mcc" for split in splits)]
    with (output_dir / "seeds.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row["seed"], *("" if row[split] is None else row[split] for split in splits)])

    runs_table = markdown_table(columns, [[row["seed"], *(row[split] for split in splits)] for row in rows])
    stats = {split: split_statistics(rows, split) for split in splits}
    stats_table = markdown_table(
        ["split", "runs", "mean MCC", "std", "min", "max"],
        [
            [
                split_label(split),
                *(stats[split][key] for key in ("runs", "mean", "std", "min", "max")),
            ]
            for split in splits
        ],
    )
    text = (
        f"# MCC across {len(rows)} seeds\n\n## Runs\n\n{runs_table}\n\n"
        f"## Per split (std: sample standard deviation)\n\n{stats_table}\n"
    )
    phenomena = seed_phenomena(output_dir, [row["seed"] for row in rows])
    if phenomena:
        write_seed_phenomena_csv(phenomena, output_dir / "seeds_phenomena.csv")
        plot_seed_phenomena(phenomena, output_dir / "seeds_phenomena.png")
        text += "\n" + seed_phenomena_markdown(phenomena, len(rows))
    else:  # none of these runs has a card: an earlier summary's files would be stale
        for name in ("seeds_phenomena.csv", "seeds_phenomena.png"):
            (output_dir / name).unlink(missing_ok=True)
    (output_dir / "seeds.md").write_text(text, encoding="utf-8")
    plot_seeds(rows, splits, output_dir / "seeds.png")
    return text


def seed_phenomena(output_dir: Path, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Per split x kind x feature: sentences, and runs/mean/std/min/max of the MCC over the seeds' cards.

    Empty when no seed has a phenomena.csv; seeds without one are named in the log and left out.
    """
    cards = {seed: seed_dir(output_dir, seed) / PHENOMENA_CSV for seed in seeds}
    present = {seed: path for seed, path in cards.items() if path.is_file()}
    if not present:
        return []
    if len(present) < len(cards):
        logger.warning(
            "seeds %s have no %s (run without --annotations?); the phenomena summary covers seeds %s only.",
            sorted(set(cards) - set(present)),
            PHENOMENA_CSV,
            sorted(present),
        )
    values: dict[tuple[str, str, str], list[float]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for path in present.values():
        for score in read_scores_csv(path):
            key = (score.split, score.kind, score.feature)
            values.setdefault(key, [])
            counts[key] = score.n
            if score.mcc is not None:
                values[key].append(score.mcc)
    rows = []
    for (split, kind, feature), mccs in values.items():
        stats = split_statistics([{"mcc": value} for value in mccs], "mcc")
        rows.append(
            {"split": split, "kind": kind, "feature": feature, "n": counts[(split, kind, feature)], **stats}
        )
    return rows


def write_seed_phenomena_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """seeds_phenomena.csv: SEED_PHENOMENA_COLUMNS, empty cells where a value is undefined."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SEED_PHENOMENA_COLUMNS)
        for row in rows:
            writer.writerow(["" if row[key] is None else row[key] for key in SEED_PHENOMENA_COLUMNS])


def mean_std_text(row: dict[str, Any]) -> str:
    """'0.412 +- 0.031' (or the mean alone for one run, a dash for none)."""
    if row["mean"] is None:
        return "–"
    return f"{row['mean']:.3f}" + (f" ± {row['std']:.3f}" if row["std"] is not None else "")


def seed_phenomena_markdown(rows: Sequence[dict[str, Any]], n_seeds: int) -> str:
    """The seeds.md section: per split, each major feature's MCC as mean ± std over the seeds."""
    parts = [
        f"## MCC per phenomenon across {n_seeds} seeds (major features; all features: seeds_phenomena.csv)\n"
    ]
    for split in dict.fromkeys(row["split"] for row in rows):
        table = [
            [row["feature"], row["n"], row["runs"], mean_std_text(row), row["min"], row["max"]]
            for row in rows
            if row["split"] == split and row["kind"] == "major"
        ]
        parts.append(
            f"### {split}\n\n"
            + markdown_table(["feature", "sentences", "runs", "MCC mean ± std", "min", "max"], table)
            + "\n"
        )
    return "\n".join(parts)


def plot_seed_phenomena(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Major features: mean MCC over the seeds with ± one standard deviation, one bar per split."""
    major = [row for row in rows if row["kind"] == "major"]
    features = list(dict.fromkeys(row["feature"] for row in major))
    splits = list(dict.fromkeys(row["split"] for row in major))
    height = 0.8 / max(1, len(splits))
    figure, axes = plt.subplots(figsize=(9, 1.5 + 0.45 * len(features)))
    for offset, split in enumerate(splits):
        by_feature = {row["feature"]: row for row in major if row["split"] == split}
        means = [np.nan if by_feature[f]["mean"] is None else by_feature[f]["mean"] for f in features]
        stds = [by_feature[f]["std"] or 0.0 for f in features]
        y = np.arange(len(features)) + (offset - (len(splits) - 1) / 2) * height
        axes.barh(y, means, height=height, xerr=stds, capsize=2, label=split)
    finish_feature_axes(axes, features, "MCC per phenomenon: mean ± std over seeds")
    save_figure(figure, path)


def plot_seeds(rows: Sequence[dict[str, Any]], splits: Sequence[str], path: Path) -> None:
    """Each run's MCC per split as points over a box plot."""
    figure, axes = plt.subplots(figsize=(2.2 + 2.2 * len(splits), 4.2))
    values = [[row[split] for row in rows if row[split] is not None] for split in splits]
    axes.boxplot(values, widths=0.5)
    jitter = np.random.default_rng(0)  # fixed: the same results always give the same picture
    for position, split_values in enumerate(values, start=1):
        offsets = jitter.uniform(-0.08, 0.08, size=len(split_values))
        axes.scatter(position + offsets, split_values, zorder=3, color="tab:blue")
    axes.set_xticks(range(1, len(splits) + 1), [split_label(split) for split in splits])
    axes.set(title=f"MCC across {len(rows)} seeds", ylabel="MCC")
    axes.grid(axis="y", alpha=0.3)
    save_figure(figure, path)


def build_seeds_parser() -> argparse.ArgumentParser:
    """The flags of `run_cola.py seeds`; every other flag is a training flag (`run_cola.py --help`)."""
    parser = argparse.ArgumentParser(
        prog="run_cola.py seeds",
        description="Train once per seed into OUTPUT_DIR/seed-N and summarise MCC across seeds. "
        "Other flags are the training flags of `python run_cola.py --help`.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="The seeds, e.g. --seeds 1 2 3.")
    return parser


def seeds_cli(argv: list[str], train: Callable[..., Any]) -> int:
    """Entry point of `python run_cola.py seeds`; `train` is run_cola.main. Returns the exit status."""
    parser = build_seeds_parser()
    options, training_argv = parser.parse_known_args(argv)
    if len(set(options.seeds)) != len(options.seeds):
        parser.error(f"--seeds has duplicates: {options.seeds}; give each seed once.")
    output_dir, trained = run_seeds(options.seeds, training_argv, train)
    rows = collect_results(output_dir, options.seeds)
    text = write_seed_summary(rows, output_dir)
    print(text)
    print(
        f"seeds: {len(rows)} runs ({len(trained)} trained now, {len(rows) - len(trained)} already finished) | "
        f"written to {output_dir}: seeds.md, seeds.csv, seeds.png"
        + (
            ", seeds_phenomena.csv, seeds_phenomena.png"
            if (output_dir / "seeds_phenomena.csv").is_file()
            else ""
        )
    )
    return 0
