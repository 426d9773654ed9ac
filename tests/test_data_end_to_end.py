"""`main()` on the GLUE layout: each dev set reported separately, and --do_predict writes CoLA.tsv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cola_layouts import write_glue_folder
from conftest import fast_args, write_cola_release
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_cola
from recipe.training.arguments import parse_args


def test_glue_layout_reports_each_dev_set_and_writes_the_submission(tiny_bert, tmp_path):
    release = write_cola_release(tmp_path / "cola_public", n_train=64, n_dev=30, n_ood=20, seed=1)
    glue = write_glue_folder(release, tmp_path / "glue_data" / "CoLA", n_test=25)
    test_lines = (glue / "test.tsv").read_text().splitlines()
    out = tmp_path / "out"
    flags = [
        "--validation_strategy",
        "dev",
        "--do_predict",
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
    ]
    results = run_cola.main(*parse_args(fast_args(tiny_bert, glue, out, *flags)))

    all_results = json.loads((out / "all_results.json").read_text())
    for split, samples in (("eval", 30), ("in_domain_dev", 30), ("out_of_domain_dev", 20), ("dev", 50)):
        assert all_results[f"{split}_samples"] == samples
        for key in ("matthews_correlation", "accuracy", "loss"):
            assert all_results[f"{split}_{key}"] == results[f"{split}_{key}"]
    # The union is the two parts together: its accuracy and loss are their size-weighted means.
    for key in ("accuracy", "loss"):
        union = (30 * results[f"in_domain_dev_{key}"] + 20 * results[f"out_of_domain_dev_{key}"]) / 50
        # rel 1e-5: float32 losses summed in another order than the weighted mean here; rounding only.
        assert results[f"dev_{key}"] == pytest.approx(union, rel=1e-5)
    assert results["eval_loss"] == results["in_domain_dev_loss"]  # validation is the in-domain dev

    lines = (out / "CoLA.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 26
    assert [line.split("\t")[0] for line in lines[1:]] == [line.split("\t")[0] for line in test_lines[1:]]


def centred_model(tiny_bert: Path, sentences: list[str], folder: Path) -> Path:
    """The tiny BERT with its classifier stretched and centred on `sentences`: about half of them
    predicted acceptable, so a row out of place in CoLA.tsv changes a prediction."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.classifier.weight.mul_(1000)
        logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_each_submission_row_is_the_models_prediction_for_that_test_index(tiny_bert, tmp_path):
    release = write_cola_release(tmp_path / "cola_public", n_train=64, n_dev=30, n_ood=20, seed=1)
    glue = write_glue_folder(release, tmp_path / "glue_data" / "CoLA", n_test=25)
    test_lines = (glue / "test.tsv").read_text().splitlines()
    # GLUE's indices need not count from 0 in file order: number them otherwise.
    test_rows = [(str(1000 - 7 * i), line.split("\t", 1)[1]) for i, line in enumerate(test_lines[1:])]
    (glue / "test.tsv").write_text("\n".join([test_lines[0], *("\t".join(row) for row in test_rows)]) + "\n")
    model_dir = centred_model(tiny_bert, [sentence for _, sentence in test_rows], tmp_path / "model")
    out = tmp_path / "out"
    flags = ["--validation_strategy", "dev", "--do_train", "false", "--do_predict", "--write_report", "false"]
    run_cola.main(*parse_args(fast_args(model_dir, glue, out, *flags)))

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(**tokenizer([s for _, s in test_rows], padding=True, return_tensors="pt")).logits
    predicted = logits.argmax(-1).tolist()
    assert 0 < sum(predicted) < len(predicted)  # both labels: the row-by-row check below can fail
    expected = [f"{index}\t{label}" for (index, _), label in zip(test_rows, predicted, strict=True)]
    lines = (out / "CoLA.tsv").read_text().splitlines()
    assert lines == ["index\tprediction", *expected]


def test_train_on_everything_without_validation(tiny_bert, tmp_path, capsys):
    cola_dir = write_cola_release(tmp_path / "cola_public", n_train=40, n_dev=10, n_ood=None)
    out = tmp_path / "out"
    flags = ["--validation_strategy", "none", "--num_train_epochs", "1", "--save_strategy", "no"]
    assert run_cola.cli([*fast_args(tiny_bert, cola_dir, out, *flags)]) == 2
    assert "--eval_strategy no" in capsys.readouterr().err
    results = run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out, *flags, "--eval_strategy", "no")))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == -(-40 // 16)  # all 40 training rows, none held out
    assert "eval_loss" not in results and "in_domain_dev_matthews_correlation" in results
