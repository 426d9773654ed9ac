"""One in-memory result per evaluated split (recipe/training/evaluation.py), handed to the reports: which
splits each report shows comes from the split registry, and the card takes the error analysis as a value."""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from transformers import TrainerState, TrainingArguments
from transformers.trainer_utils import PredictionOutput

from recipe.reports.analysis import write_error_analysis
from recipe.reports.reporting import shown_results, summary_line, write_run_report
from recipe.training import splits
from recipe.training.arguments import DataArguments, parse_args
from recipe.training.evaluation import SplitResult, evaluate_splits, split_result

LABELS = np.array([1, 0, 1, 0])
SENTENCES = ["A b.", "C d.", "E f.", "G h."]


def result_of(split: splits.Split, logits: list[list[float]], mcc: float = 0.5) -> SplitResult:
    """A split's result from hand-written logits, with the metrics trainer.predict would return."""
    prefix = split.metric_prefix
    metrics = {f"{prefix}_matthews_correlation": mcc, f"{prefix}_accuracy": 0.75, f"{prefix}_loss": 0.6}
    output = PredictionOutput(np.array(logits, dtype=np.float32), LABELS, metrics)
    return split_result(split, output, {**metrics, f"{prefix}_samples": len(logits)})


LOGITS = [[-1.0, 2.0], [2.0, -1.0], [2.0, -1.0], [-1.0, 2.0]]  # right, right, wrong, wrong


def test_split_result_holds_predictions_probabilities_and_unprefixed_metrics():
    result = result_of(splits.VALIDATION, LOGITS)
    assert result.predictions.tolist() == [1, 0, 0, 1]
    assert result.labels.tolist() == LABELS.tolist()
    expected = np.exp(2.0) / (np.exp(2.0) + np.exp(-1.0))  # softmax of (-1, 2), class 1
    assert result.p_acceptable == pytest.approx([expected, 1 - expected, 1 - expected, expected])
    assert result.metric("matthews_correlation") == 0.5 and result.metric("samples") == 4
    assert result.metrics["eval_loss"] == 0.6 and result.metric("runtime") is None


class RecordingTrainer:
    """Stands in for the Trainer: returns fixed logits and records what was evaluated and saved."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def predict(self, dataset: datasets.Dataset, metric_key_prefix: str) -> PredictionOutput:
        return PredictionOutput(np.array(LOGITS), LABELS, {f"{metric_key_prefix}_loss": 0.5})

    def log(self, metrics: dict[str, float]) -> None:
        pass

    def log_metrics(self, prefix: str, metrics: dict[str, float]) -> None:
        pass

    def save_metrics(self, prefix: str, metrics: dict[str, float]) -> None:
        self.saved.append(prefix)


def four_sentence_splits(*names: str) -> datasets.DatasetDict:
    split = datasets.Dataset.from_dict({"source": ["s"] * 4, "label": LABELS.tolist(), "sentence": SENTENCES})
    return datasets.DatasetDict(dict.fromkeys(names, split))


def test_evaluate_splits_follows_the_registry_and_sees_an_added_split(monkeypatch):
    extra = splits.Split("my_test", "my_test", "my test", scored=True)
    monkeypatch.setattr(splits, "SPLITS", (*splits.SPLITS, extra))
    data = four_sentence_splits("train", "my_test", "in_domain_dev", "validation", "test")
    trainer = RecordingTrainer()
    evaluated = evaluate_splits(trainer, data)  # type: ignore[arg-type]
    assert list(evaluated) == ["validation", "in_domain_dev", "my_test"]  # registry order, train/test not
    assert trainer.saved == ["eval", "in_domain_dev", "my_test"]
    assert evaluated["my_test"].split is extra and evaluated["my_test"].metrics == {
        "my_test_loss": 0.5,
        "my_test_samples": 4,
    }


def test_the_reports_show_validation_the_test_splits_and_an_added_split(monkeypatch, tmp_path):
    extra = splits.Split("my_test", "my_test", "my test", scored=True)
    monkeypatch.setattr(splits, "SPLITS", (*splits.SPLITS, extra))
    names = ("validation", "in_domain_dev", "out_of_domain_dev", "dev", "my_test")
    evaluated = {name: result_of(splits.split_named(name), LOGITS) for name in names}
    # dev, the union of in- and out-of-domain dev, is not shown beside its parts.
    assert [result.split.name for result in shown_results(evaluated)] == [
        "validation",
        "in_domain_dev",
        "out_of_domain_dev",
        "my_test",
    ]
    summary = summary_line(shown_results(evaluated), tmp_path, [tmp_path / "README.md"])
    assert summary.startswith("MCC: validation 0.5000, in_domain_dev 0.5000") and "my_test 0.5000" in summary

    training_args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    section = write_error_analysis(
        four_sentence_splits(*names), evaluated, None, DataArguments(), training_args
    )
    assert (tmp_path / "my_test_predictions.tsv").is_file()
    assert "### Most confident errors: my_test" in section
    assert "### Most confident errors: dev" not in section  # listed in its parts
    assert (tmp_path / "error_analysis.md").read_text(encoding="utf-8") == section


def test_the_card_takes_the_error_analysis_as_a_value(tmp_path, capsys):
    model_args, data_args, training_args, recipe_args = parse_args(["--output_dir", str(tmp_path)])
    evaluated = {
        name: result_of(splits.split_named(name), LOGITS, mcc=0.25)
        for name in ("validation", "in_domain_dev")
    }
    results = {key: value for result in evaluated.values() for key, value in result.metrics.items()}
    trainer = SimpleNamespace(state=TrainerState())
    section = "## What the model gets wrong\n\nA section handed over, not read from a file."
    written = write_run_report(
        trainer, results, evaluated, section, model_args, data_args, training_args, recipe_args
    )
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert section in card and not (tmp_path / "error_analysis.md").exists()
    assert "| in_domain_dev | 4 | 0.2500 |" in card
    assert [path.name for path in written] == [
        "run_args.json",
        "in_domain_dev_mcc_by_batch.png",
        "confusion_matrix.png",
        "README.md",
    ]
    assert capsys.readouterr().out.strip().startswith("MCC: validation 0.2500, in_domain_dev 0.2500")
