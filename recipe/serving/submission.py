"""GLUE submission file for CoLA: predictions on the unlabeled test set as `CoLA.tsv` (index<TAB>prediction)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from transformers import Trainer

from recipe.training.splits import TEST

logger = logging.getLogger(__name__)

SUBMISSION_FILE = "CoLA.tsv"
SUBMISSION_HEADER = "index\tprediction"


def write_glue_submission(indices: Sequence[int], predictions: Sequence[int], path: Path) -> Path:
    """Write `index<TAB>prediction` lines under a header line, the GLUE leaderboard's format.

    Raises:
        ValueError: the two sequences differ in length (a prediction would be lost or invented).
    """
    if len(indices) != len(predictions):
        raise ValueError(f"{len(indices)} test indices but {len(predictions)} predictions.")
    lines = [SUBMISSION_HEADER] + [f"{int(i)}\t{int(p)}" for i, p in zip(indices, predictions, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def predict_test_submission(
    trainer: Trainer, tokenized_test: datasets.Dataset, raw_test: datasets.Dataset, output_dir: str | Path
) -> Path | None:
    """Predict the unlabeled test split and write `output_dir/CoLA.tsv`; returns its path (main process)."""
    output = trainer.predict(tokenized_test, metric_key_prefix=TEST.metric_prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    predictions = np.argmax(logits, axis=-1)
    if not trainer.is_world_process_zero():
        return None
    path = write_glue_submission(
        list(raw_test["idx"]), predictions.tolist(), Path(output_dir) / SUBMISSION_FILE
    )
    logger.info(
        "Wrote %d test predictions (%d acceptable) to %s", len(predictions), int(predictions.sum()), path
    )
    return path
