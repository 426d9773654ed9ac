"""`run_cola.py predict`: same labels and probabilities as the Trainer's evaluation, every input route."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import fast_args, write_cola_release
from test_reporting import assert_real_png
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

import run_cola
from recipe.arguments import DataArguments, parse_args
from recipe.data import NO_LABEL, read_cola_tsv, tokenize_cola
from recipe.predict import load_trained_model, predict_cli, tokenization_settings
from recipe.predictions import read_predictions_tsv

MAX_SEQ_LENGTH = 12  # not the default 64: predict must read the run's own setting


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    """A run without out_of_domain_dev (so the per-batch chart falls back to in_domain_dev)."""
    root = tmp_path_factory.mktemp("predict")
    data = write_cola_release(root / "cola", n_train=120, n_dev=70, n_ood=None, seed=4)
    out = root / "out"
    flags = ["--num_train_epochs", "1", "--save_strategy", "no", "--max_seq_length", str(MAX_SEQ_LENGTH)]
    run_cola.main(*parse_args(fast_args(tiny_bert, data, out, *flags)))
    return out, data


def run_predict(*argv: str, stdin: str = "") -> str:
    stdout = io.StringIO()
    assert predict_cli(list(argv), stdin=io.StringIO(stdin), stdout=stdout) == 0
    return stdout.getvalue()


def test_predict_equals_the_trainers_predictions_on_a_test_file(trained, tmp_path):
    out, data = trained
    test_set = read_cola_tsv(data / "raw" / "in_domain_dev.tsv")
    sentence_file = tmp_path / "sentences.txt"
    sentence_file.write_text("\n".join(test_set["sentence"]) + "\n", encoding="utf-8")
    lines = run_predict(
        "--model_dir", str(out), "--file", str(sentence_file), "--format", "jsonl", "--batch_size", "16"
    )
    predicted = [json.loads(line) for line in lines.splitlines()]

    model, tokenizer = load_trained_model(out)
    tokenized = tokenize_cola(
        datasets.DatasetDict({"test": test_set}), tokenizer, DataArguments(max_seq_length=MAX_SEQ_LENGTH)
    )["test"]
    args = TrainingArguments(
        output_dir=str(tmp_path / "t"), use_cpu=True, report_to=[], per_device_eval_batch_size=128
    )
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer))
    logits = torch.from_numpy(trainer.predict(tokenized).predictions)
    expected_labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    expected_prob = torch.softmax(logits, -1)[:, 1].numpy()

    assert len(predicted) == len(test_set) == 70
    assert [row["sentence"] for row in predicted] == test_set["sentence"]
    assert [row["label"] for row in predicted] == expected_labels
    np.testing.assert_allclose([row["prob_acceptable"] for row in predicted], expected_prob, atol=1e-5)


def test_predict_reads_the_runs_tokenization_and_writes_the_fallback_chart(trained):
    out, _ = trained
    _, tokenizer = load_trained_model(out)
    assert tokenization_settings(out, tokenizer, None) == (MAX_SEQ_LENGTH, False)
    assert not (out / "test_mcc_by_batch.png").exists()
    assert_real_png(out / "in_domain_dev_mcc_by_batch.png")
    assert_real_png(out / "confusion_matrix.png")


def test_sentences_from_arguments_and_stdin_as_a_table(trained):
    out, _ = trained
    from_args = run_predict("--model_dir", str(out), "The cat sat.", "Zork the dog ran.")
    lines = from_args.splitlines()
    assert lines[0].split() == ["label", "p(acceptable)", "sentence"]
    assert len(lines) == 3 and lines[1].endswith("The cat sat.") and lines[2].endswith("Zork the dog ran.")
    assert lines[1].split()[0] in ("acceptable", "unacceptable")
    # Blank lines on stdin are skipped (and logged), not labelled.
    from_stdin = run_predict("--model_dir", str(out), stdin="The cat sat.\n\nZork the dog ran.\n")
    assert from_stdin == from_args


def test_cli_routes_predict_and_refuses_a_folder_that_is_not_a_model(trained, tmp_path, capsys):
    out, data = trained
    assert run_cola.cli(["predict", "--model_dir", str(out), "--format", "jsonl", "The cat sat."]) == 0
    assert json.loads(capsys.readouterr().out)["sentence"] == "The cat sat."
    assert run_cola.cli(["predict", "--model_dir", str(data), "The cat sat."]) == 2
    error = capsys.readouterr().err
    assert "is not a trained model" in error and str(data) in error


def test_predict_tsv_has_the_columns_of_the_runs_predictions_file(trained, tmp_path):
    out, _ = trained
    run_file = read_predictions_tsv(out / "in_domain_dev_predictions.tsv")
    sentence_file = tmp_path / "sentences.txt"
    sentence_file.write_text("\n".join(run_file.sentences) + "\n", encoding="utf-8")
    written = tmp_path / "predicted.tsv"
    written.write_text(run_predict("--model_dir", str(out), "--file", str(sentence_file), "--format", "tsv"))
    predicted = read_predictions_tsv(written)
    assert predicted.sentences == run_file.sentences
    assert set(predicted.sources) == {""} and (predicted.labels == NO_LABEL).all()  # unknown: empty
    np.testing.assert_array_equal(predicted.predictions, run_file.predictions)
    # Other batches, other padding: the probabilities agree to float32 rounding, as in the test above.
    np.testing.assert_allclose(predicted.p_acceptable, run_file.p_acceptable, atol=1e-5)
