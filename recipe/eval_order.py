"""Evaluation and prediction in batches ordered by sentence length, with results in the dataset's order.

Sorting the evaluation set by length puts sentences of similar length in one batch, so each batch is
padded to little more than its own sentences (CoLA: about 11 tokens on average, 47 at most).

Why metrics and predictions are unchanged:
- `evaluate()`: the Trainer gathers predictions and labels from the same batches, so they stay paired;
  MCC, accuracy and the mean loss do not depend on the order of the examples. Padding is masked out of
  attention, so a sentence's logits do not depend on which batch it lands in (up to float rounding).
- `predict()`: the rows come back in sorted order; `LengthOrderedTrainer.predict` puts predictions and
  labels back in the dataset's order, so row i of the output is example i of the input.

The stock Trainer (transformers 5) also length-groups evaluation batches when
`train_sampling_strategy="group_by_length"`, but with a random grouping and without restoring the order
in `predict()`; this subclass replaces that with a deterministic sort and the inverse permutation.

Batches by token count (`eval_max_tokens`, on by default on CPUs: recipe/hardware.py): once sorted, the
batches are cut by padded tokens instead of a sentence count, so a batch of short sentences holds more of
them and one of long sentences fewer. With a fixed count, the short-sentence batches make small matrix
products (32 sentences x 6 tokens = 192 rows) that run well below the CPU's rate, and large counts make the
long-sentence batches spill out of cache. Measured on the 2-core machine (all-MiniLM-L6-v2, validation +
in-domain dev through `Trainer.evaluate`; `python bench/eval_batches.py`, 3 rounds, medians): 32 sentences
a batch 563 sentences/s, 48 575; cut at 768 tokens 602, 1024 606, 1536 594, 2048 572. No library batches
evaluation by tokens (the Trainer's `BatchRebalanceSampler` balances training batches across ranks), hence
`TokenBudgetBatchSampler` here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow.compute
import torch
from transformers import Trainer
from transformers.trainer_pt_utils import find_batch_size
from transformers.trainer_utils import PredictionOutput


def model_input_name(processing_class: Any) -> str:
    """The column a row's length is read from: the tokenizer's first model input, else `input_ids`."""
    names = getattr(processing_class, "model_input_names", None)
    return names[0] if names else "input_ids"


def sequence_lengths(dataset: torch.utils.data.Dataset, input_name: str = "input_ids") -> list[int]:
    """The length of every row's `input_name` (also used for the training batches, recipe/sampling.py)."""
    if isinstance(dataset, datasets.Dataset):
        # Arrow counts the list lengths of the column (any select/shuffle applied) without building a
        # Python list per row: ~1 ms instead of ~11 ms for 856 rows, run at every evaluation.
        column = dataset.with_format("arrow")[input_name]
        return pyarrow.compute.list_value_length(column).to_pylist()
    return [len(dataset[i][input_name]) for i in range(len(dataset))]


def length_order(dataset: torch.utils.data.Dataset, input_name: str = "input_ids") -> list[int]:
    """Row indices of `dataset`, longest first; ties keep the dataset's order (a stable sort).

    Longest first so the first batch is the largest: an out-of-memory error shows up at once.
    """
    return longest_first(sequence_lengths(dataset, input_name))


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices of `lengths`, longest first; ties in index order (`length_order` from lengths in hand)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def token_budget_batches(
    order: Sequence[int], lengths: Sequence[int], max_tokens: int, pad_to_multiple_of: int | None = None
) -> list[list[int]]:
    """Cut `order` into consecutive batches of at most `max_tokens` padded tokens each.

    A batch is padded to its longest row (rounded up to `pad_to_multiple_of`), so it costs
    rows x that width; a row wider than `max_tokens` goes in a batch of its own. Every row of `order`
    is in exactly one batch, in `order`'s order.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1; got {max_tokens}.")
    multiple = pad_to_multiple_of or 1
    batches: list[list[int]] = []
    batch: list[int] = []
    width = 0
    for row in order:
        row_width = -(-lengths[row] // multiple) * multiple
        new_width = max(width, row_width)
        if batch and (len(batch) + 1) * new_width > max_tokens:
            batches.append(batch)
            batch, new_width = [], row_width
        batch.append(row)
        width = new_width
    if batch:
        batches.append(batch)
    return batches


class TokenBudgetBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yield fixed batches of row indices (from `token_budget_batches`), for a DataLoader's `batch_sampler`."""

    def __init__(self, batches: Sequence[Sequence[int]]) -> None:
        self.batches = [list(batch) for batch in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


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


class LengthOrderedTrainer(Trainer):
    """A Trainer that evaluates and predicts in batches sorted by length (single process).

    With several processes (world_size > 1) it falls back to the stock evaluation sampler: each rank
    then sees its own shard, and the sorted order would not survive the gather.

    Args:
        order_eval_by_length: False gives the stock evaluation sampler and predict (--order_eval_by_length).
        eval_max_tokens: with the sorted order, cut evaluation batches at this many padded tokens instead
            of `per_device_eval_batch_size` sentences (--eval_max_tokens); 0 or None: by sentence count.
    """

    def __init__(
        self, *args: Any, order_eval_by_length: bool = True, eval_max_tokens: int | None = None, **kwargs: Any
    ) -> None:
        if eval_max_tokens is not None and eval_max_tokens < 0:
            raise ValueError(f"eval_max_tokens must be 0 (off) or positive; got {eval_max_tokens}.")
        self.order_eval_by_length = order_eval_by_length
        self.eval_max_tokens = eval_max_tokens or None
        self._loss_per_example = False  # set by evaluation_loop for batches cut by tokens
        super().__init__(*args, **kwargs)

    def _orders_eval(self) -> bool:
        return self.order_eval_by_length and self.args.world_size <= 1

    def _get_eval_sampler(self, eval_dataset: torch.utils.data.Dataset) -> torch.utils.data.Sampler | None:
        # Overrides a private Trainer hook (transformers 5); tests/test_speed.py checks it is still called.
        if not self._orders_eval() or eval_dataset is None:
            return super()._get_eval_sampler(eval_dataset)
        return LengthOrderedSampler(length_order(eval_dataset, model_input_name(self.processing_class)))

    def _get_dataloader(
        self,
        dataset: torch.utils.data.Dataset,
        description: str,
        batch_size: int,
        sampler_fn: Any = None,
        is_training: bool = False,
        dataloader_key: str | None = None,
    ) -> torch.utils.data.DataLoader:
        # Overrides the private Trainer method that get_eval_dataloader / get_test_dataloader call
        # (transformers 5; tests/test_speed.py checks the batches it makes). Training, and evaluation
        # without a token budget, take the stock path; the stock path cannot take a batch sampler of ours.
        if (
            is_training
            or self.eval_max_tokens is None
            or not self._orders_eval()
            or isinstance(dataset, torch.utils.data.IterableDataset)
        ):
            return super()._get_dataloader(
                dataset,
                description,
                batch_size,
                sampler_fn,
                is_training=is_training,
                dataloader_key=dataloader_key,
            )
        lengths = sequence_lengths(dataset, model_input_name(self.processing_class))
        batches = token_budget_batches(
            longest_first(lengths),
            lengths,
            self.eval_max_tokens,
            getattr(self.data_collator, "pad_to_multiple_of", None),
        )
        # The rest as the stock _get_dataloader does it: drop the columns the model does not take, then
        # the dataloader settings and accelerate's device placement.
        collator = self.data_collator
        if isinstance(dataset, datasets.Dataset):
            dataset = self._remove_unused_columns(dataset, description=description)
        else:
            collator = self._get_collator_with_removed_columns(collator, description=description)
        workers = self.args.dataloader_num_workers
        dataloader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=TokenBudgetBatchSampler(batches),
            collate_fn=collator,
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
            multiprocessing_context=self.args.dataloader_multiprocessing_context if workers > 0 else None,
            in_order=self.args.dataloader_in_order,
        )
        dataloader = self.accelerator.prepare(dataloader)
        dataloader.batches_cut_by_tokens = True  # read by evaluation_loop (the loss's weighting)
        if dataloader_key is not None and self.args.dataloader_persistent_workers:
            # get_eval_dataloader reuses it at the next evaluation, as with the stock loader.
            self._eval_dataloaders = {**getattr(self, "_eval_dataloaders", {}), dataloader_key: dataloader}
        return dataloader

    def evaluation_loop(self, dataloader: torch.utils.data.DataLoader, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.evaluation_loop`; notes whether `dataloader`'s batches are cut by tokens (see below)."""
        self._loss_per_example = getattr(dataloader, "batches_cut_by_tokens", False)
        try:
            return super().evaluation_loop(dataloader, *args, **kwargs)
        finally:
            self._loss_per_example = False

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """`Trainer.prediction_step`; with batches cut by tokens, the batch-mean loss once per example.

        The stock evaluation loop (transformers 5) repeats each batch's loss `per_device_eval_batch_size`
        times and, with fixed-size batches, keeps as many copies of the last one as it holds: the mean
        over the copies is the mean over examples. Batches cut by tokens have no fixed size (90 short
        sentences in one, 20 long ones in another), so each would count alike; one copy per example
        of the batch (each then repeated alike) keeps the mean over examples.
        """
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if self._loss_per_example and loss is not None and loss.dim() == 0:
            loss = loss.expand(find_batch_size(inputs))
        return loss, logits, labels

    def predict(
        self,
        test_dataset: torch.utils.data.Dataset,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "test",
    ) -> PredictionOutput:
        """`Trainer.predict`, with predictions and labels in `test_dataset`'s row order."""
        output = super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        if not self._orders_eval():
            return output
        order = length_order(test_dataset, model_input_name(self.processing_class))
        return PredictionOutput(
            predictions=restore_order(output.predictions, order),
            label_ids=restore_order(output.label_ids, order),
            metrics=output.metrics,
        )
