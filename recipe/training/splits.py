"""The splits of a CoLA run, described once. Every module asks this registry for a split's name, file,
metric prefix and role instead of spelling them out; adding a split (a user's own test file) is one entry
in `SPLITS`.

Roles:
- `train` is trained on; `validation` (drawn from train, or in-domain dev) chooses the best epoch;
- the scored splits are held-out test sets, each evaluated once after training and reported;
- `test` is unlabeled (GLUE's test.tsv): predicted into the submission file, never scored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """One split: `name` keys the DatasetDict and names its files (`<name>_predictions.tsv`)."""

    name: str
    metric_prefix: str  # its metrics in all_results.json: `<prefix>_matthews_correlation`, ...
    title: str  # in the card, charts and summary line
    labeled: bool = True
    scored: bool = False  # a held-out test set: evaluated once after training, reported everywhere
    annotated: bool = False  # CoLA's grammatical annotations describe its sentences (the report card)
    release_file: str | None = None  # its file in the official release folder (cola_public_1.1.zip)
    union_of: tuple[str, ...] = ()  # the splits it concatenates (reported only when they are not both there)
    hub_split: str | None = None  # its split in the Hub dataset (nyu-mll/glue, config cola), if it has one


TRAIN = Split("train", "train", "train", release_file="raw/in_domain_train.tsv", hub_split="train")
VALIDATION = Split("validation", "eval", "validation")
IN_DOMAIN_DEV = Split(
    "in_domain_dev",
    "in_domain_dev",
    "in-domain dev",
    scored=True,
    annotated=True,
    release_file="raw/in_domain_dev.tsv",
)
OUT_OF_DOMAIN_DEV = Split(
    "out_of_domain_dev",
    "out_of_domain_dev",
    "out-of-domain dev",
    scored=True,
    annotated=True,
    release_file="raw/out_of_domain_dev.tsv",
)
DEV = Split(
    "dev",
    "dev",
    "dev (in- and out-of-domain)",
    scored=True,
    annotated=True,
    union_of=(IN_DOMAIN_DEV.name, OUT_OF_DOMAIN_DEV.name),
    hub_split="validation",  # the Hub's validation split is GLUE's dev.tsv without the source column
)
TEST = Split("test", "test", "test (unlabeled)", labeled=False, hub_split="test")

# Every split, in the order the data is loaded, evaluated and reported. Read at call time by the functions
# below, so a split added here (or by a test) is seen everywhere.
SPLITS: tuple[Split, ...] = (TRAIN, VALIDATION, IN_DOMAIN_DEV, OUT_OF_DOMAIN_DEV, DEV, TEST)
# Where the validation set comes from (--validation_strategy): a seeded share of train, in-domain dev
# (or GLUE's dev when the parts are not separate), or none.
VALIDATION_STRATEGIES = ("split", DEV.name, "none")


def by_name() -> dict[str, Split]:
    """The registered splits by name."""
    return {split.name: split for split in SPLITS}


def by_prefix() -> dict[str, Split]:
    """The registered splits by metric prefix (`eval` is validation)."""
    return {split.metric_prefix: split for split in SPLITS}


def scored() -> list[Split]:
    """The held-out test sets, in order."""
    return [split for split in SPLITS if split.scored]


def release_files(required_only: bool = False) -> dict[str, str]:
    """Split name -> its file in the release folder; `required_only`: train and in-domain dev (out-of-domain
    dev and any added test file are optional)."""
    required = {TRAIN.name, IN_DOMAIN_DEV.name}
    return {
        split.name: split.release_file
        for split in SPLITS
        if split.release_file and (split.name in required or not required_only)
    }


def hub_splits() -> dict[str, str]:
    """The Hub dataset's split name -> ours, for the splits it has."""
    return {split.hub_split: split.name for split in SPLITS if split.hub_split}


def split_named(name: str) -> Split:
    """The registered split `name`.

    Raises:
        KeyError: not a registered split (the message lists them).
    """
    registered = by_name()
    if name not in registered:
        raise KeyError(f"'{name}' is not a split; the splits are {', '.join(registered)}.")
    return registered[name]


def in_order(names: Iterable[str]) -> list[Split]:
    """The registered splits among `names`, in registry order (unknown names ignored)."""
    present = set(names)
    return [split for split in SPLITS if split.name in present]


def evaluated(names: Iterable[str]) -> list[Split]:
    """What is evaluated after training, of the splits present: validation, then each scored split."""
    return [split for split in in_order(names) if split is VALIDATION or split.scored]


def reported(names: Iterable[str]) -> list[Split]:
    """The scored splits worth a line of their own: a union is left out when all its parts are present."""
    present = {split.name for split in in_order(names)}
    return [
        split
        for split in in_order(present)
        if split.scored and not (split.union_of and set(split.union_of) <= present)
    ]
