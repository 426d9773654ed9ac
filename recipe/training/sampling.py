"""Length-grouped training batches that a resumed run reproduces exactly.

transformers 5.24's `LengthGroupedSampler` draws its permutation from torch's global RNG when the epoch
starts. A run resumed mid-epoch restores the RNG state saved at the checkpoint (mid-epoch), not the one the
epoch started with, so the resumed epoch gets a different batch order and `skip_first_batches` skips the
wrong batches: the final weights differ from an uninterrupted run's. Seeding the sampler's own generator
from (seed, epoch) through `set_epoch` (which the Trainer calls at every epoch start, also on resume) makes
each epoch's order a function of the seed alone. Written by hand because the library sampler has no seed.

The lengths come from one read of the input column (`recipe.training.eval_order.sequence_lengths`), not from
decoding every row as the stock sampler does when the dataset has no `length` column.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from recipe.training.eval_order import sequence_lengths


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose shuffle is seeded by `seed + epoch`."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def length_grouped_sampler(
    args: Any, dataset: Any, input_name: str
) -> EpochSeededLengthGroupedSampler | None:
    """The epoch-seeded sampler for `args.train_sampling_strategy == "group_by_length"`, else None.

    Args:
        args: the run's TrainingArguments (strategy, seed or data_seed, batch size, accumulation).
        dataset: the training set; a `datasets.Dataset` holding the `input_name` column gets the
            one-column length read, anything else the stock sampler's lengths (`seeded`).
        input_name: the column the lengths come from (the tokenizer's first model input).
    """
    if args.train_sampling_strategy != "group_by_length":
        return None
    if not isinstance(dataset, datasets.Dataset) or input_name not in dataset.column_names:
        return None
    batch_size = args.train_batch_size * args.gradient_accumulation_steps
    return EpochSeededLengthGroupedSampler(
        batch_size, lengths=sequence_lengths(dataset, input_name), seed=seed_of(args)
    )


def seed_of(args: Any) -> int:
    """The seed of the training data order: `data_seed` when set, else `seed` (as the Trainer does)."""
    return args.data_seed if args.data_seed is not None else args.seed


def seeded(sampler: Any, args: Any) -> Any:
    """A stock `LengthGroupedSampler` made epoch-seeded; any other sampler unchanged."""
    if type(sampler) is not LengthGroupedSampler:
        return sampler
    return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed_of(args))
