"""Adding a split is one entry in recipe/training/splits.py SPLITS: a user's own labeled test file in the release
folder is then loaded, summarised over seeds and compared, with no other change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cola_rows, write_cola_release, write_tsv

from recipe.experiments import compare, seeds
from recipe.training import splits
from recipe.training.arguments import DataArguments
from recipe.training.data import load_cola_splits

OWN_TEST = splits.Split("my_test", "my_test", "my test set", scored=True, release_file="raw/my_test_set.tsv")


@pytest.fixture
def with_own_test(monkeypatch) -> splits.Split:
    """The registry with OWN_TEST added before the unlabeled test split."""
    monkeypatch.setattr(splits, "SPLITS", (*splits.SPLITS[:-1], OWN_TEST, splits.SPLITS[-1]))
    return OWN_TEST


def load(folder: Path, tmp_path: Path):
    return load_cola_splits(
        DataArguments(data_dir=str(folder), data_cache_dir=str(tmp_path / "cache")), seed=0
    )


def test_the_release_folder_loads_an_added_split(with_own_test, tmp_path):
    release = write_cola_release(tmp_path / "cola_public", n_train=40, n_dev=10, n_ood=8)
    rows = cola_rows(12, seed=7, source="mine")
    write_tsv(release / with_own_test.release_file, rows)
    raw = load(release, tmp_path)
    assert list(raw) == ["train", "validation", "in_domain_dev", "out_of_domain_dev", "dev", "my_test"]
    assert list(raw["my_test"]["sentence"]) == [row[3] for row in rows]
    assert list(raw["my_test"]["label"]) == [row[1] for row in rows]
    # Optional like out-of-domain dev: a release folder without the file still loads.
    (release / with_own_test.release_file).unlink()
    assert "my_test" not in load(release, tmp_path)


def test_seeds_and_compare_pick_up_an_added_split(with_own_test, tmp_path):
    assert seeds.seed_splits() == ["eval", "in_domain_dev", "out_of_domain_dev", "my_test"]
    assert compare.compared_splits() == ["validation", "in_domain_dev", "out_of_domain_dev", "dev", "my_test"]
    run = seeds.seed_dir(tmp_path, 1)
    run.mkdir()
    results = {"eval_matthews_correlation": 0.5, "my_test_matthews_correlation": 0.25}
    (run / seeds.RESULTS_FILE).write_text(json.dumps(results), encoding="utf-8")
    rows = seeds.collect_results(tmp_path, [1])
    assert rows[0]["my_test"] == 0.25
    assert seeds.present_splits(rows) == ["eval", "my_test"]
    (run / "my_test_predictions.tsv").write_text("", encoding="utf-8")
    assert compare.predictions_files(run) == {"my_test": run / "my_test_predictions.tsv"}


def test_a_run_evaluates_and_reports_an_added_split(with_own_test, tiny_bert, tmp_path):
    """main() end to end: the added split is evaluated, and its metrics, per-sentence predictions, card
    results and summary line follow from the one registry entry."""
    from conftest import fast_args

    import run_cola
    from recipe.training.arguments import parse_args

    release = write_cola_release(tmp_path / "cola_public", n_train=64, n_dev=16, n_ood=12)
    rows = cola_rows(20, seed=11, source="mine")
    write_tsv(release / with_own_test.release_file, rows)
    out = tmp_path / "out"
    results = run_cola.main(*parse_args(fast_args(tiny_bert, release, out, "--num_train_epochs", "1")))
    assert results["my_test_samples"] == len(rows)
    written = json.loads((out / "all_results.json").read_text(encoding="utf-8"))
    assert written["my_test_matthews_correlation"] == results["my_test_matthews_correlation"]
    lines = (out / "my_test_predictions.tsv").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[-1] for line in lines[1:]] == [row[3] for row in rows]
    assert "my_test" in (out / "README.md").read_text(encoding="utf-8")
