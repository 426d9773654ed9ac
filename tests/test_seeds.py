"""`run_cola.py seeds`: one run per seed, a summary over them, and no retraining of finished seeds."""

from __future__ import annotations

import csv

import pytest
from conftest import fast_args, write_cola_release
from test_reporting import assert_real_png

import run_cola
from recipe.experiments.seeds import seeds_cli, split_statistics, write_seed_summary
from recipe.reports.phenomena import PhenomenonScore, write_scores_csv


def test_split_statistics_use_the_sample_standard_deviation():
    rows = [{"eval": 0.2}, {"eval": 0.4}, {"eval": 0.6}, {"eval": None}]
    assert split_statistics(rows, "eval") == pytest.approx(
        {"runs": 3, "mean": 0.4, "std": 0.2, "min": 0.2, "max": 0.6}
    )
    assert split_statistics([{"eval": 0.5}], "eval")["std"] is None


def test_two_seeds_write_a_summary_and_a_rerun_does_not_retrain(tiny_bert, tmp_path, capsys):
    data = write_cola_release(tmp_path / "cola", n_train=60, n_dev=30, n_ood=20)
    out = tmp_path / "seeds"
    training_flags = fast_args(tiny_bert, data, out, "--num_train_epochs", "1", "--save_strategy", "no")
    trained_seeds = []

    def counting_main(model_args, data_args, training_args, recipe_args):
        trained_seeds.append(training_args.seed)
        return run_cola.main(model_args, data_args, training_args, recipe_args)

    assert seeds_cli(["--seeds", "1", "2", *training_flags], train=counting_main) == 0
    assert trained_seeds == [1, 2]
    with (out / "seeds.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["seed"] for row in rows] == ["1", "2"]
    assert list(rows[0]) == ["seed", "validation_mcc", "in_domain_dev_mcc", "out_of_domain_dev_mcc"]
    summary = (out / "seeds.md").read_text()
    assert "MCC across 2 seeds" in summary
    assert "| out_of_domain_dev | 2 |" in summary and "| validation | 2 |" in summary
    assert_real_png(out / "seeds.png")
    assert (out / "seed-1" / "all_results.json").is_file() and (out / "seed-2" / "all_results.json").is_file()

    # Again, through the CLI: both seeds are finished, so nothing trains and nothing is rewritten.
    mtimes = {seed: (out / f"seed-{seed}" / "all_results.json").stat().st_mtime_ns for seed in (1, 2)}
    capsys.readouterr()
    assert run_cola.cli(["seeds", "--seeds", "1", "2", *training_flags]) == 0
    assert "0 trained now, 2 already finished" in capsys.readouterr().out
    assert mtimes == {seed: (out / f"seed-{seed}" / "all_results.json").stat().st_mtime_ns for seed in (1, 2)}
    assert "MCC across 2 seeds" in (out / "seeds.md").read_text()


def test_duplicate_seeds_are_refused(capsys):
    with pytest.raises(SystemExit):
        seeds_cli(["--seeds", "1", "1"], train=run_cola.main)
    assert "duplicates" in capsys.readouterr().err


def test_the_report_cards_of_the_seeds_are_summarised_per_feature(tmp_path):
    out = tmp_path / "seeds"
    for seed, (simple, binding) in {1: (0.2, None), 2: (0.4, None), 3: (0.6, 0.5)}.items():
        (out / f"seed-{seed}").mkdir(parents=True)
        scores = [
            PhenomenonScore("in_domain_dev", "major", "Simple", 40, simple, 0.8, simple - 0.1, simple + 0.1),
            PhenomenonScore("in_domain_dev", "major", "Binding", 3, binding, None, None, None),
            PhenomenonScore("in_domain_dev", "minor", "Copula", 12, 0.1 * seed, 0.7, 0.0, 0.5),
        ]
        write_scores_csv(scores, out / f"seed-{seed}" / "phenomena.csv")
    rows = [
        {"seed": seed, "eval": 0.3, "in_domain_dev": 0.3, "out_of_domain_dev": None} for seed in (1, 2, 3)
    ]
    text = write_seed_summary(rows, out)
    with (out / "seeds_phenomena.csv").open(encoding="utf-8") as handle:
        summary = {row["feature"]: row for row in csv.DictReader(handle)}
    assert float(summary["Simple"]["mean"]) == pytest.approx(0.4)
    assert float(summary["Simple"]["std"]) == pytest.approx(0.2)  # sample std of 0.2, 0.4, 0.6
    assert summary["Binding"]["runs"] == "1" and summary["Binding"]["std"] == ""  # undefined for one run
    assert float(summary["Copula"]["mean"]) == pytest.approx(0.2)
    assert "| Simple | 40 | 3 | 0.400 ± 0.200 |" in text and "Copula" not in text  # minor: the CSV only
    assert_real_png(out / "seeds_phenomena.png")
