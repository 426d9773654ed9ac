"""The split registry (recipe/training/splits.py): one description that every module asks."""

from __future__ import annotations

import pytest

from recipe.training import splits


def test_names_and_prefixes_are_unique_and_ordered() -> None:
    assert len(splits.by_name()) == len(splits.SPLITS)
    assert len(splits.by_prefix()) == len(splits.SPLITS)
    assert splits.release_files(required_only=True) == {
        "train": "raw/in_domain_train.tsv",
        "in_domain_dev": "raw/in_domain_dev.tsv",
    }
    assert [s.name for s in splits.in_order(["test", "train", "nope", "validation"])] == [
        "train",
        "validation",
        "test",
    ]


def test_evaluated_and_reported_splits() -> None:
    everything = [s.name for s in splits.SPLITS]
    assert [s.name for s in splits.evaluated(everything)] == [
        "validation",
        "in_domain_dev",
        "out_of_domain_dev",
        "dev",
    ]
    # dev is the union of the two parts: reported on its own line only when they are not both there.
    assert [s.name for s in splits.reported(everything)] == ["in_domain_dev", "out_of_domain_dev"]
    assert [s.name for s in splits.reported(["train", "dev"])] == ["dev"]
    assert [s.name for s in splits.reported(["in_domain_dev", "dev"])] == ["in_domain_dev", "dev"]


def test_an_unknown_split_is_named() -> None:
    with pytest.raises(KeyError, match="'held_out' is not a split; the splits are train, validation"):
        splits.split_named("held_out")


def test_a_split_added_to_the_registry_is_seen_by_its_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = splits.Split("my_test", "my_test", "my test", scored=True, release_file="raw/my_test.tsv")
    monkeypatch.setattr(splits, "SPLITS", (*splits.SPLITS, extra))
    assert splits.split_named("my_test") is extra
    assert extra in splits.scored()
    assert splits.release_files()["my_test"] == "raw/my_test.tsv"
    assert splits.evaluated(["validation", "my_test"]) == [splits.VALIDATION, extra]
