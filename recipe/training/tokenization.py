"""CoLA's sentences as model inputs: every split tokenized with a batched `datasets.map`, and the sentences
the length limit cuts counted."""

from __future__ import annotations

import logging

import datasets
from transformers import PreTrainedTokenizerBase

from recipe.runtime.distributed import main_process_first
from recipe.training.argument_dataclasses import DataArguments
from recipe.training.cola_tsv import NO_LABEL

logger = logging.getLogger(__name__)


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

    Keeps only the model inputs and `label` (dropped from an unlabeled split, whose -1 is no label).
    Without `pad_to_max_length` nothing is padded here: the collator pads each batch to its longest
    sentence. The map is cached by `datasets`. `count_truncated` says how many sentences were cut.
    """
    tokenized = {}
    with main_process_first("tokenizing CoLA"):  # the map's cache: written once, read by the others
        for split, dataset in raw.items():
            tokenized[split] = tokenize_split(split, dataset, tokenizer, data_args)
    return datasets.DatasetDict(tokenized)


def tokenize_split(
    split: str, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, data_args: DataArguments
) -> datasets.Dataset:
    """One split of `tokenize_cola`: the model inputs and the labels."""
    unlabeled = all(label == NO_LABEL for label in dataset["label"])
    encoded = dataset.map(
        tokenize_sentences,
        batched=True,
        fn_kwargs={
            "tokenizer": tokenizer,
            "max_length": data_args.max_seq_length,
            "pad_to_max_length": data_args.pad_to_max_length,
        },
        num_proc=data_args.preprocessing_num_workers,
        remove_columns=[c for c in dataset.column_names if c != "label" or unlabeled],
        desc=f"Tokenizing {split}",
    )
    return encoded


def count_truncated(
    raw: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase, max_seq_length: int
) -> dict[str, int]:
    """Per split, how many sentences are longer than `max_seq_length` tokens (and so were truncated).

    Logs each split's count and longest sentence. Returns `{"<split>_truncated_sentences": n}`, the keys
    under which `main()` reports them (the model card lists them).
    """
    counts = {}
    for split, dataset in raw.items():
        lengths = [len(ids) for ids in tokenizer(list(dataset["sentence"]))["input_ids"]]
        truncated = sum(length > max_seq_length for length in lengths)
        if truncated:
            logger.warning(
                "%s: %d of %d sentences are longer than --max_seq_length %d tokens and were truncated "
                "(longest: %d tokens).",
                split,
                truncated,
                len(lengths),
                max_seq_length,
                max(lengths),
            )
        else:
            logger.info("%s: no sentence truncated (longest: %d tokens).", split, max(lengths))
        counts[f"{split}_truncated_sentences"] = truncated
    return counts
