"""Evaluation and prediction in batches ordered by sentence length, with results in the dataset's order.

Sorting the evaluation set by length puts sentences of similar length in one batch, so each batch is
padded to little more than its own sentences (CoLA: about 11 tokens on average, 47 at most).

Why metrics and predictions are unchanged:
- `evaluate()`: the Trainer gathers predictions and labels from the same batches, so they stay paired;
  MCC, accuracy and the mean loss do not depend on the order of the examples. Padding is masked out of
  attention, so a sentence's logits do not depend on which batch it lands in (up to float rounding).
- `predict()`: the rows come back in sorted order; `CoLATrainer.predict` (recipe/training/trainer.py) puts predictions and
  labels back in the dataset's order, so row i of the output is example i of the input.

The stock Trainer (transformers 5) also length-groups evaluation batches when
`train_sampling_strategy="group_by_length"`, but with a random grouping and without restoring the order
in `predict()`; the recipe's Trainer (recipe/training/trainer.py) replaces that with this deterministic sort and
puts `predict()`'s rows back with `restore_order`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow.compute
import torch


def model_input_name(processing_class: Any) -> str:
    """The column a row's length is read from: the tokenizer's first model input, else `input_ids`."""
    names = getattr(processing_class, "model_input_names", None)
    return names[0] if names else "input_ids"


def sequence_lengths(dataset: torch.utils.data.Dataset, input_name: str = "input_ids") -> list[int]:
    """The length of every row's `input_name` (also used for the training batches, recipe/training/sampling.py)."""
    if isinstance(dataset, datasets.Dataset):
        # Arrow counts the list lengths of the column (any select/shuffle applied) without building a
        # Python list per row, which matters since this runs at every evaluation.
        column = dataset.with_format("arrow")[input_name]
        return pyarrow.compute.list_value_length(column).to_pylist()
    return [len(dataset[i][input_name]) for i in range(len(dataset))]


def length_order(dataset: torch.utils.data.Dataset, input_name: str = "input_ids") -> list[int]:
    """Row indices of `dataset`, longest first; ties keep the dataset's order (a stable sort).

    Longest first so the first batch is the largest: an out-of-memory error shows up at once.
    """
    lengths = sequence_lengths(dataset, input_name)
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


class LengthOrderedSampler(torch.utils.data.Sampler[int]):
    """Visit a dataset's rows in a fixed order (from `length_order`)."""

    def __init__(self, order: Sequence[int]) -> None:
        self.order = list(order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def restore_order(values: np.ndarray | tuple | None, order: Sequence[int]) -> np.ndarray | tuple | None:
    """Undo `order`: `values[k]` belongs to row `order[k]`; returns them indexed by row (nested tuples too)."""
    if values is None:
        return None
    if isinstance(values, (tuple, list)):
        return type(values)(restore_order(v, order) for v in values)
    restored = np.empty_like(values)
    restored[np.asarray(order)] = values
    return restored
