"""MCC (the CoLA metric) and accuracy for the Trainer's `compute_metrics`."""

from __future__ import annotations

import functools
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

# Loaded by path: evaluate.load("matthews_correlation") by name fetches code from the Hub.
MCC_METRIC_PATH = (
    Path(__file__).parent / "metric_scripts" / "matthews_correlation" / "matthews_correlation.py"
)


@functools.cache
def load_mcc_metric() -> evaluate.EvaluationModule:
    """Load the repository's MCC metric module (offline, by path)."""
    return evaluate.load(str(MCC_METRIC_PATH))


def compute_mcc(predictions: np.ndarray, references: np.ndarray) -> float:
    """MCC of integer label arrays; 0.0 for a constant prediction."""
    result = load_mcc_metric().compute(
        predictions=np.asarray(predictions).tolist(), references=np.asarray(references).tolist()
    )
    return float(result["matthews_correlation"])


def compute_cola_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for the Trainer: MCC and accuracy from logits (loss is added by the Trainer)."""
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    predictions = np.argmax(logits, axis=-1)
    references = np.asarray(eval_pred.label_ids)
    return {
        "matthews_correlation": compute_mcc(predictions, references),
        "accuracy": float((predictions == references).mean()),
    }
