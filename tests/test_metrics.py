"""MCC against hand-computed values, through the repository's evaluate module (offline, by path)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from recipe.training.metrics import compute_cola_metrics, compute_mcc


def mcc_by_hand(tp: int, tn: int, fp: int, fn: int) -> float:
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


@pytest.mark.parametrize(
    ("predictions", "references", "expected"),
    [
        ([1, 0, 1, 1], [1, 0, 0, 1], mcc_by_hand(tp=2, tn=1, fp=1, fn=0)),  # 1/sqrt(3)
        ([1, 0, 1, 0], [1, 0, 1, 0], 1.0),
        ([0, 1, 0, 1], [1, 0, 1, 0], -1.0),
        ([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 1], mcc_by_hand(tp=2, tn=1, fp=1, fn=2)),
    ],
)
def test_mcc_matches_hand_computation(predictions, references, expected):
    assert compute_mcc(np.array(predictions), np.array(references)) == pytest.approx(expected)


def test_first_case_is_one_over_sqrt_three():
    assert compute_mcc(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])) == pytest.approx(1 / math.sqrt(3))


@pytest.mark.parametrize("constant", [0, 1])
def test_constant_prediction_is_zero_not_nan(constant):
    value = compute_mcc(np.full(6, constant), np.array([1, 0, 1, 1, 0, 1]))
    assert value == 0.0 and not math.isnan(value)


def test_compute_cola_metrics_from_logits():
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0], [0.3, 0.2]])
    labels = np.array([1, 0, 0, 0])  # predictions: 1, 0, 1, 0
    metrics = compute_cola_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["matthews_correlation"] == pytest.approx(mcc_by_hand(tp=1, tn=2, fp=1, fn=0))
