"""`run_cola.py predict`: same labels and probabilities as the Trainer's evaluation, every input route."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import FINISHED_RUN_MAX_SEQ_LENGTH
from test_reporting import assert_real_png
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    pipeline,
)

import run_cola
from recipe.reports.predictions import read_predictions_tsv
from recipe.reports.run_args import RUN_ARGS_FILE
from recipe.serving.predict import load_cola_pipeline, predict_cli, training_max_seq_length
from recipe.training.arguments import DataArguments
from recipe.training.data import NO_LABEL, read_cola_tsv
from recipe.training.model import COLA_LABELS, CheckpointError
from recipe.training.tokenization import tokenize_cola

MAX_SEQ_LENGTH = FINISHED_RUN_MAX_SEQ_LENGTH  # not the default 64: predict must read the run's own setting


@pytest.fixture(scope="session")
def trained(finished_run) -> tuple[Path, Path]:
    """The session's finished run (conftest.finished_run): without out_of_domain_dev, so the per-batch
    chart falls back to in_domain_dev. Read only."""
    return finished_run


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

    model, tokenizer = (
        AutoModelForSequenceClassification.from_pretrained(out),
        AutoTokenizer.from_pretrained(out),
    )
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
    # atol 1e-6: predict pads its batches otherwise than Trainer.predict; a few float32 ulps.
    np.testing.assert_allclose([row["prob_acceptable"] for row in predicted], expected_prob, atol=1e-6)


def test_predict_reads_the_runs_tokenization_and_writes_the_fallback_chart(trained):
    out, _ = trained
    assert training_max_seq_length(out, load_cola_pipeline(out), None) == MAX_SEQ_LENGTH
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


# Accents, CJK, emoji, a non-breaking space inside a sentence, and one longer than MAX_SEQ_LENGTH tokens.
UNICODE_SENTENCES = [
    "The café served crème brûlée.",
    "猫が座った。",
    "The dog 🐶 ran to the house.",
    "The\u00a0cat sat on the mat.",
    " ".join(["the big dog"] * 10) + " ran.",
]


@pytest.fixture(scope="module")
def varied_model(tiny_bert, trained, tmp_path_factory) -> Path:
    """A saved CoLA folder whose labels vary from sentence to sentence, so comparing labels means
    something (a short training run predicts one label for all). Its run_args.json is the trained run's."""
    folder = tmp_path_factory.mktemp("varied")
    config = AutoConfig.from_pretrained(tiny_bert)
    config.initializer_range = 0.2  # the default 0.02 gives every sentence nearly the same probability
    config.id2label, config.label2id = COLA_LABELS, {name: i for i, name in COLA_LABELS.items()}
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    sentences = list(read_cola_tsv(trained[1] / "raw" / "in_domain_dev.tsv")["sentence"])
    with torch.no_grad():
        logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits
        # Move the decision boundary to the median (of 70: between two sentences, none on it, no ties):
        # half of the sentences on each side.
        model.classifier.bias[1] -= torch.quantile(logits[:, 1] - logits[:, 0], 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / RUN_ARGS_FILE).write_bytes((trained[0] / RUN_ARGS_FILE).read_bytes())
    return folder


def test_saved_folder_loads_in_the_stock_pipeline_and_agrees_with_the_cli(trained, varied_model, tmp_path):
    out, data = trained
    # The trained run's folder labels sentences acceptable / unacceptable in the stock pipeline.
    scores = pipeline("text-classification", model=str(out))(["The cat sat."], top_k=None)[0]
    assert {score["label"] for score in scores} == {"acceptable", "unacceptable"}

    out = varied_model
    sentences = read_cola_tsv(data / "raw" / "in_domain_dev.tsv")["sentence"][:40] + UNICODE_SENTENCES
    sentence_file = tmp_path / "sentences.txt"
    sentence_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    lines = run_predict("--model_dir", str(out), "--file", str(sentence_file), "--format", "jsonl")
    predicted = [json.loads(line) for line in lines.splitlines()]

    # The model card's snippet: the stock pipeline, one sentence at a time, truncated as in training.
    classifier = pipeline("text-classification", model=str(out))
    expected = classifier(sentences, truncation=True, max_length=MAX_SEQ_LENGTH, top_k=None)
    expected_label = [max(scores, key=lambda s: s["score"])["label"] for scores in expected]
    expected_prob = [next(s["score"] for s in scores if s["label"] == "acceptable") for scores in expected]

    assert set(expected_label) == {"acceptable", "unacceptable"}  # both labels occur
    assert min(abs(p - 0.5) for p in expected_prob) > 1e-4  # none so close to a tie that float noise flips it
    assert [row["sentence"] for row in predicted] == sentences  # input order, Unicode unchanged
    assert [row["label"] for row in predicted] == expected_label
    # Batches of up to 64 sorted by length vs one sentence per call: padding changes float32 summation
    # order only; the CLI rounds to 6 decimals (5e-7), so 1e-6 holds.
    np.testing.assert_allclose(
        [row["prob_acceptable"] for row in predicted], expected_prob, rtol=0, atol=1e-6
    )


def test_jsonl_keeps_unicode_sentences_as_given(trained, tmp_path):
    out, _ = trained
    sentence_file = tmp_path / "unicode.txt"
    sentence_file.write_bytes(("\ufeff" + "\r\n".join(UNICODE_SENTENCES) + "\r\n").encode("utf-8"))
    lines = run_predict("--model_dir", str(out), "--file", str(sentence_file), "--format", "jsonl")
    for line, sentence in zip(lines.splitlines(), UNICODE_SENTENCES, strict=True):
        assert sentence in line  # written as the characters, not \\u escapes
        assert json.loads(line)["sentence"] == sentence


@pytest.mark.parametrize(
    ("content", "named"),
    [(b"", "--file"), (b"\n  \n\n", "--file"), (b"caf\xe9\n", "line 1: not UTF-8")],
)
def test_an_empty_or_unreadable_input_file_is_a_clear_error(trained, tmp_path, capsys, content, named):
    out, _ = trained
    sentence_file = tmp_path / "input.txt"
    sentence_file.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        predict_cli(["--model_dir", str(out), "--file", str(sentence_file)], stdin=io.StringIO(""))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert named in error and str(sentence_file) in error


def test_empty_standard_input_and_a_blank_argument_are_clear_errors(trained, capsys):
    out, _ = trained
    with pytest.raises(SystemExit):
        predict_cli(["--model_dir", str(out)], stdin=io.StringIO("\n\n"))
    assert "standard input holds no sentences" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_cli(["--model_dir", str(out), "The cat sat.", " "], stdin=io.StringIO(""))
    assert "sentence argument 2 is empty" in capsys.readouterr().err


def test_a_model_saved_by_another_tool_says_which_label_is_acceptable(tiny_bert, caplog):
    # tiny_bert: saved by save_pretrained directly, no run_args.json, labels LABEL_0 / LABEL_1.
    sentences = ["The cat sat.", "Zork the dog ran."]
    with caplog.at_level("WARNING", logger="recipe.serving.predict"):
        default = [
            json.loads(line)
            for line in run_predict(
                "--model_dir", str(tiny_bert), "--format", "jsonl", *sentences
            ).splitlines()
        ]
    warning = caplog.text
    assert "treating LABEL_1" in warning and "--acceptable_label LABEL_0" in warning
    assert "has no run_args.json" in warning

    classifier = pipeline("text-classification", model=str(tiny_bert))
    scores = classifier(sentences, top_k=None)
    label_1 = [next(s["score"] for s in row if s["label"] == "LABEL_1") for row in scores]
    # 6 decimals in the JSONL output
    np.testing.assert_allclose([row["prob_acceptable"] for row in default], label_1, rtol=0, atol=1e-6)
    assert [row["label"] for row in default] == ["acceptable" if p > 0.5 else "unacceptable" for p in label_1]

    swapped = [
        json.loads(line)
        for line in run_predict(
            "--model_dir", str(tiny_bert), "--format", "jsonl", "--acceptable_label", "LABEL_0", *sentences
        ).splitlines()
    ]
    np.testing.assert_allclose(
        [row["prob_acceptable"] for row in swapped], [1 - p for p in label_1], rtol=0, atol=2e-6
    )
    with pytest.raises(CheckpointError, match="LABEL_0, LABEL_1"):
        run_predict("--model_dir", str(tiny_bert), "--acceptable_label", "acceptable", "The cat sat.")


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
