"""The split registry (recipe/training/splits.py): one description that every module asks."""

from __future__ import annotations

import pytest

from recipe.training import splits


def test_names_and_prefixes_are_unique_and_ordered() -> None:
    assert len(splits.BY_NAME) == len(splits.SPLITS)
    assert len(splits.BY_PREFIX) == len(splits.SPLITS)
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
