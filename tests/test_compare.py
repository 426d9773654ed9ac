"""`run_cola.py compare`: runs side by side, the paired bootstrap on hand-worked cases, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from test_reporting import assert_real_png

import run_cola
from recipe.reports.predictions import SplitPredictions, predictions_tsv_text

LABELS = np.array([0, 1] * 10)  # 20 sentences, balanced
SENTENCES = [f'Sentence number {i} says "hi".' for i in range(20)]
# Binding on the first 10 sentences (5 of each label), Question on none.
FEATURES = ("Binding", "Question")


def write_run(
    folder: Path, predicted: np.ndarray, split: str = "in_domain_dev", sentences=SENTENCES, **extra
) -> Path:
    """A run folder holding `<split>_predictions.tsv` (and other splits' files given as name=predictions)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (texts, values) in {split: (sentences, predicted), **extra}.items():
        predictions = SplitPredictions(
            sources=["gj04"] * len(texts),
            labels=LABELS[: len(texts)],
            predictions=np.asarray(values),
            p_acceptable=np.where(np.asarray(values) == 1, 0.9, 0.1),
            sentences=list(texts),
        )
        (folder / f"{name}_predictions.tsv").write_text(predictions_tsv_text(predictions), encoding="utf-8")
    return folder


def write_annotations(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(["Source", "Domain", "Acceptability", "Sentence", *FEATURES])]
    lines += [
        "\t".join(["gj04", "In", str(LABELS[i]), SENTENCES[i], "1" if i < 10 else "0", "0"])
        for i in range(20)
    ]
    (folder / "in_domain_major_features.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def read_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return {(row["split"], row["feature"]): row for row in csv.DictReader(handle)}


def test_two_identical_runs_differ_by_exactly_zero(tmp_path, capsys):
    predicted = np.array([0, 1, 1, 0] * 5)
    a = write_run(tmp_path / "a", predicted)
    b = write_run(tmp_path / "b", predicted)
    annotations = write_annotations(tmp_path / "ann")
    out = tmp_path / "cmp"
    assert (
        run_cola.cli(["compare", str(a), str(b), "--annotations", str(annotations), "--output", str(out)])
        == 0
    )
    rows = read_rows(out / "compare.csv")
    assert set(rows) == {
        ("in_domain_dev", "whole split"),
        ("in_domain_dev", "Binding"),
        ("in_domain_dev", "Question"),
    }
    for key in (("in_domain_dev", "whole split"), ("in_domain_dev", "Binding")):
        row = rows[key]
        assert row["mcc_a"] == row["mcc_b"]
        assert (float(row["difference"]), float(row["difference_low"]), float(row["difference_high"])) == (
            0,
            0,
            0,
        )
        assert row["excludes_zero"] == "False"
    assert rows[("in_domain_dev", "Binding")]["n"] == "10" and rows[("in_domain_dev", "Question")]["n"] == "0"
    assert "| whole split | 20 |" in capsys.readouterr().out
    assert "| Binding | 10 |" in (out / "compare.md").read_text()
    assert_real_png(out / "compare.png")


def test_hand_worked_difference_is_marked_and_annotations_come_from_the_run(tmp_path):
    annotations = write_annotations(tmp_path / "ann")
    perfect = write_run(tmp_path / "perfect", LABELS)
    (perfect / "run_args.json").write_text(json.dumps({"data_args": {"annotations": str(annotations)}}))
    constant = write_run(tmp_path / "constant", np.ones(20, dtype=int))
    assert run_cola.cli(["compare", str(perfect), str(constant)]) == 0  # --output: beside the first folder
    rows = read_rows(tmp_path / "compare" / "compare.csv")
    # perfect scores 1 on every resample holding both classes (all but ~2 in 2^10), constant scores 0.
    for feature in ("whole split", "Binding"):
        row = rows[("in_domain_dev", feature)]
        assert (float(row["mcc_perfect"]), float(row["mcc_constant"])) == (1.0, 0.0)
        assert (float(row["difference_low"]), float(row["difference_high"])) == (-1.0, -1.0)
        assert row["excludes_zero"] == "True"
    assert "| -1.0000 | [-1.000, -1.000] | * |" in (tmp_path / "compare" / "compare.md").read_text()


def test_a_seeds_folder_is_one_run_scored_by_its_mean_and_validation_left_out(tmp_path):
    seeds = tmp_path / "seeds"
    other = [f"Validation sentence {i}." for i in range(20)]
    write_run(seeds / "seed-1", LABELS, validation=(SENTENCES, LABELS))
    write_run(seeds / "seed-2", 1 - LABELS, validation=(other, LABELS))  # another seed, another validation
    single = write_run(tmp_path / "single", LABELS, validation=(SENTENCES, LABELS))
    out = tmp_path / "cmp"
    assert run_cola.cli(["compare", str(seeds), str(single), "--output", str(out)]) == 0
    rows = read_rows(out / "compare.csv")
    assert list(rows) == [("in_domain_dev", "whole split")]  # no annotations: whole splits only
    row = rows[("in_domain_dev", "whole split")]
    assert float(row["mcc_seeds"]) == pytest.approx(0.0)  # mean of 1 and -1
    assert float(row["difference"]) == pytest.approx(1.0)
    text = (out / "compare.md").read_text()
    assert "2 seeds" in text and "validation: left out" in text


def test_three_runs_side_by_side_without_a_difference(tmp_path):
    folders = [write_run(tmp_path / name, LABELS) for name in ("a", "b", "c")]
    out = tmp_path / "cmp"
    assert run_cola.cli(["compare", *map(str, folders), "--output", str(out)]) == 0
    with (out / "compare.csv").open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == ["split", "kind", "feature", "n", "mcc_a", "mcc_b", "mcc_c"]
    assert "C MCC" in (out / "compare.md").read_text() and "B - A" not in (out / "compare.md").read_text()


def test_runs_on_different_sentences_are_refused_with_the_reason(tmp_path, capsys):
    a = write_run(tmp_path / "a", LABELS)
    changed = [*SENTENCES[:5], "Another sentence.", *SENTENCES[6:]]
    b = write_run(tmp_path / "b", LABELS, sentences=changed)
    assert run_cola.cli(["compare", str(a), str(b)]) == 2
    error = capsys.readouterr().err
    assert "different in_domain_dev sentences" in error and "line 7" in error and "Another sentence." in error
    assert "Traceback" not in error

    shorter = write_run(tmp_path / "short", LABELS[:10], sentences=SENTENCES[:10])
    assert run_cola.cli(["compare", str(a), str(shorter)]) == 2
    assert "20 vs 10 sentences" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cola.cli(["compare", str(a), str(empty)]) == 2
    assert "holds no <split>_predictions.tsv" in capsys.readouterr().err
