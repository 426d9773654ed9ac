"""CoLA data: read the release TSVs with `datasets`, split off validation, tokenize with a batched map."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

from recipe.arguments import DataArguments

logger = logging.getLogger(__name__)

COLA_COLUMNS = ["source", "label", "mark", "sentence"]
COLA_FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["unacceptable", "acceptable"]),
        "mark": datasets.Value("string"),
        "sentence": datasets.Value("string"),
    }
)
# Files of the official release (cola_public_1.1.zip), relative to its folder. Test sets are evaluated
# after training, each reported separately; out_of_domain_dev is optional.
RELEASE_TRAIN_FILE = "raw/in_domain_train.tsv"
RELEASE_TEST_FILES = {
    "in_domain_dev": "raw/in_domain_dev.tsv",
    "out_of_domain_dev": "raw/out_of_domain_dev.tsv",
}
RELEASE_REQUIRED = ("raw/in_domain_train.tsv", "raw/in_domain_dev.tsv")
COLA_DOWNLOAD_URL = "https://nyu-mll.github.io/CoLA/cola_public_1.1.zip"


class DataError(ValueError):
    """Input data that cannot be used; the message names the file (and line) and says what to do."""


def missing_data_message(data_dir: Path, missing: list[str]) -> str:
    """Explain where CoLA comes from and how to point the recipe at it."""
    return (
        f"CoLA data not found in '{data_dir}': missing {', '.join(missing)}.\n"
        f"Expected the official release layout: {data_dir}/raw/in_domain_train.tsv, "
        f"{data_dir}/raw/in_domain_dev.tsv and optionally {data_dir}/raw/out_of_domain_dev.tsv.\n"
        f"Get it from {COLA_DOWNLOAD_URL} (unzip it so that data/cola_public/raw/ exists), "
        "or pass --data_dir /path/to/cola_public for a copy you already have."
    )


def count_tsv_rows(path: Path) -> int:
    """Rows in a CoLA TSV as a plain line split sees them (the final newline is optional)."""
    text = path.read_text(encoding="utf-8-sig")
    return len(text.splitlines())


def read_cola_tsv(path: Path) -> datasets.Dataset:
    """Load one CoLA TSV (no header; source, label, mark, sentence) with `datasets`.

    Quoting is off: real sentences contain `"`. Empty marks stay empty strings (no NaN guessing).

    Raises:
        DataError: the file is empty, a row is malformed, or rows were lost in parsing.
    """
    expected_rows = count_tsv_rows(path)
    if expected_rows == 0:
        raise DataError(f"{path}: the file is empty; a CoLA TSV has one example per line.")
    try:
        dataset = datasets.load_dataset(
            "csv",
            data_files={"data": str(path)},
            sep="\t",
            header=None,
            names=COLA_COLUMNS,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            features=COLA_FEATURES,
            split="data",
        )
    except Exception as err:  # pandas/arrow parse errors carry the line; give them the file's name
        raise DataError(f"{path}: could not be read as a 4-column CoLA TSV: {err}") from err
    if len(dataset) != expected_rows:
        raise DataError(
            f"{path}: read {len(dataset)} examples from {expected_rows} lines; refusing to drop rows."
        )
    return dataset


def load_cola_splits(data_args: DataArguments, seed: int) -> datasets.DatasetDict:
    """Load a CoLA release folder into train / validation / test splits.

    Returns a DatasetDict with `train`, `validation` (a seeded split of in_domain_train, when
    `validation_split > 0`), `in_domain_dev`, and `out_of_domain_dev` when the file is present.

    Raises:
        DataError: the folder or a required file is missing (the message says where to get CoLA).
    """
    data_dir = Path(data_args.data_dir)
    missing = [name for name in RELEASE_REQUIRED if not (data_dir / name).is_file()]
    if missing:
        raise DataError(missing_data_message(data_dir, missing))

    train = read_cola_tsv(data_dir / RELEASE_TRAIN_FILE)
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    splits: dict[str, datasets.Dataset] = {}
    if data_args.validation_split > 0:
        # The tutorial's seeded 90/10 split of the in-domain train set.
        parts = train.train_test_split(test_size=data_args.validation_split, seed=seed)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
    else:
        splits["train"] = train
    for split, name in RELEASE_TEST_FILES.items():
        if (data_dir / name).is_file():
            splits[split] = read_cola_tsv(data_dir / name)
        else:
            logger.info("No %s at %s; that test set is skipped.", split, data_dir / name)
    for split, dataset in splits.items():
        labels = dataset["label"]
        logger.info(
            "%s: %d examples, %.1f%% acceptable", split, len(dataset), 100 * sum(labels) / len(labels)
        )
    return datasets.DatasetDict(splits)


def tokenize_sentences(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int, pad_to_max_length: bool
) -> dict[str, list]:
    """Tokenize a batch of sentences as `[CLS] sentence [SEP]`, truncated to `max_length`."""
    return tokenizer(
        batch["sentence"],
        truncation=True,
        max_length=max_length,
        padding="max_length" if pad_to_max_length else False,
    )


def tokenize_cola(
    raw: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments
) -> datasets.DatasetDict:
    """Tokenize every split with a batched `datasets.map` (`[CLS] sentence [SEP]`, truncated).

    Without `pad_to_max_length` nothing is padded here: the collator pads each batch to its longest
    sentence. The map is cached by `datasets`, so a second run reuses it.
    """

    return raw.map(
        tokenize_sentences,
        batched=True,
        fn_kwargs={
            "tokenizer": tokenizer,
            "max_length": data_args.max_seq_length,
            "pad_to_max_length": data_args.pad_to_max_length,
        },
        num_proc=data_args.preprocessing_num_workers,
        remove_columns=["source", "mark", "sentence"],
        desc="Tokenizing",
    )
