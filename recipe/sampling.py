"""Length-grouped training batches that a resumed run reproduces exactly.

transformers 5.24's `LengthGroupedSampler` draws its permutation from torch's global RNG when the epoch
starts. A run resumed mid-epoch restores the RNG state saved at the checkpoint (mid-epoch), not the one the
epoch started with, so the resumed epoch gets a different batch order and `skip_first_batches` skips the
wrong batches: the final weights differ from an uninterrupted run's. Seeding the sampler's own generator
from (seed, epoch) through `set_epoch` (which the Trainer calls at every epoch start, also on resume) makes
each epoch's order a function of the seed alone. Written by hand because the library sampler has no seed.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose shuffle is seeded by `seed + epoch`."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class ResumableLengthGroupingMixin:
    """A Trainer mixin: the stock length-grouped sampler, replaced by the epoch-seeded one."""

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        # Overrides a private Trainer hook (transformers 5); tests/test_faults.py fails if it stops working.
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is not LengthGroupedSampler:
            return sampler
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
