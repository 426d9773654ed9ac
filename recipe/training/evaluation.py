"""Evaluation after training: one in-memory `SplitResult` per evaluated split, which `main()` hands to
every report (per-sentence files, phenomena, error analysis, plots, card, summary line).

Which splits are evaluated, and under which metric prefix: the split registry (recipe/training/splits.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import datasets
import numpy as np
from scipy.special import softmax
from transformers import Trainer
from transformers.trainer_utils import PredictionOutput

from recipe.training import splits
from recipe.training.splits import Split

ACCEPTABLE_ID = (
    1  # CoLA's label ids: 0 unacceptable, 1 acceptable (recipe/training/model.py sets id2label so)
)


@dataclass(frozen=True)
class SplitResult:
    """One evaluated split, in the order `trainer.predict` returned its examples."""

    split: Split
    labels: np.ndarray  # the true label ids
    predictions: np.ndarray  # the predicted label ids
    p_acceptable: np.ndarray  # p(acceptable) of each example
    metrics: dict[str, float]  # `<metric_prefix>_<name>` as in all_results.json, `_samples` included

    def metric(self, name: str) -> float | None:
        """One metric without its prefix (`matthews_correlation`, `accuracy`, `loss`, `samples`), or None."""
        return self.metrics.get(f"{self.split.metric_prefix}_{name}")


def acceptable_probabilities(logits: np.ndarray) -> np.ndarray:
    """p(acceptable) of each row of (n, 2) logits."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)[:, ACCEPTABLE_ID]


def split_result(
    split: Split, output: PredictionOutput, metrics: Mapping[str, float] | None = None
) -> SplitResult:
    """A split's result from its `trainer.predict` output; `metrics` default to the output's own."""
    logits = np.asarray(
        output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    )
    return SplitResult(
        split=split,
        labels=np.asarray(output.label_ids),
        predictions=np.argmax(logits, axis=-1).astype(np.int64),
        p_acceptable=acceptable_probabilities(logits),
        metrics=dict(output.metrics if metrics is None else metrics),
    )


def evaluate_splits(trainer: Trainer, tokenized: datasets.DatasetDict) -> dict[str, SplitResult]:
    """Evaluate validation and each scored split present, in registry order; log and save each split's
    metrics (`<prefix>_results.json`). Returns split name -> its result."""
    results = {}
    for split in splits.evaluated(tokenized):
        dataset = tokenized[split.name]
        prefix = split.metric_prefix
        # predict = evaluate's loop and metrics, plus the predictions the reports need (no second pass).
        output = trainer.predict(dataset, metric_key_prefix=prefix)
        trainer.log(output.metrics)  # as evaluate() does: log history, TensorBoard
        metrics = {**output.metrics, f"{prefix}_samples": len(dataset)}
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        results[split.name] = split_result(split, output, metrics)
    return results
