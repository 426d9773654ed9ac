"""`run_cola.py export` (ONNX fp32 and int8, the MCC re-checked) and `predict --backend onnx|int8`.

One export of a separable tiny model is shared by the module (exporting takes seconds); tests that write
into an export copy it first.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import FINISHED_RUN_MAX_SEQ_LENGTH
from sklearn.metrics import matthews_corrcoef
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_cola
from recipe.reports.predictions import read_predictions_tsv
from recipe.serving import export_check
from recipe.serving.export import validate_onnx
from recipe.serving.export_check import CARD_START, ExportCheck, SplitCheck
from recipe.serving.onnx_backend import FP32_FILE, INT8_FILE, ONNX_DIR, OnnxClassifier, OnnxModelError
from recipe.serving.predict import predict_cli
from recipe.training import splits
from recipe.training.data import read_cola_tsv

REPO = Path(__file__).resolve().parents[1]


def train_separable(out: Path, train_file: Path) -> None:
    """Replace the run's weights by the tiny model trained to separate CoLA rows by the marker word.

    A one-epoch tiny run predicts the majority class for every sentence, where labels agree trivially;
    60 AdamW steps at 3e-3 learn the marker rule (dev MCC 1, every logit margin above 1).
    """
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    rows = read_cola_tsv(train_file)
    encoded = tokenizer(
        list(rows["sentence"]),
        padding=True,
        truncation=True,
        max_length=FINISHED_RUN_MAX_SEQ_LENGTH,
        return_tensors="pt",
    )
    labels = torch.tensor(rows["label"])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        chosen = torch.randint(0, len(labels), (32,))
        loss = model(**{k: v[chosen] for k, v in encoded.items()}, labels=labels[chosen]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out)


@pytest.fixture(scope="module")
def exported(finished_run, tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, data folder): a copy of the session's finished run with separable weights, exported
    with --int8. Read only; copy it to write into it."""
    out, data = finished_run
    copy = tmp_path_factory.mktemp("exported") / "out"
    shutil.copytree(out, copy)
    train_separable(copy, data / "raw" / "in_domain_train.tsv")
    assert run_cola.cli(["export", "--model_dir", str(copy), "--int8"]) == 0
    return copy, data


def torch_logits(out: Path, sentences: list[str]) -> np.ndarray:
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    encoded = tokenizer(
        sentences, padding=True, truncation=True, max_length=FINISHED_RUN_MAX_SEQ_LENGTH, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**encoded).logits.numpy()


def dev_sentences(data: Path) -> tuple[list[str], np.ndarray]:
    dev = read_cola_tsv(data / "raw" / "in_domain_dev.tsv")
    return list(dev["sentence"]), np.asarray(dev["label"])


def test_export_writes_the_folder_the_report_and_the_card(exported):
    out, _ = exported
    folder = out / ONNX_DIR
    for name in (FP32_FILE, INT8_FILE, "tokenizer.json", "config.json", "export_report.md"):
        assert (folder / name).is_file(), name
    assert not (out / (ONNX_DIR + ".partial")).exists()
    report = (folder / "export_report.md").read_text(encoding="utf-8")
    assert "ONNX fp32: matches torch" in report and "ONNX int8: recommended" in report
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.count(CARD_START) == 1 and "## Exported to ONNX" in card
    assert card.index("## Exported to ONNX") > card.index("# ")  # appended to the card the run wrote


def test_fp32_onnx_matches_torch_at_other_batch_sizes_and_lengths(exported):
    out, data = exported
    sentences, _ = dev_sentences(data)
    session = onnxruntime.InferenceSession(
        str(out / ONNX_DIR / FP32_FILE), providers=["CPUExecutionProvider"]
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    for batch in (sentences[:1], sentences[:5], sentences):  # dynamic batch and sequence axes
        encoded = tokenizer(
            batch, padding=True, truncation=True, max_length=FINISHED_RUN_MAX_SEQ_LENGTH, return_tensors="np"
        )
        feeds = {node.name: encoded[node.name].astype(np.int64) for node in session.get_inputs()}
        logits = session.run(None, feeds)[0]
        # atol 1e-6: the same float32 graph with other kernels, a few ulps of logits of size ~5 (1e-7 measured).
        np.testing.assert_allclose(logits, torch_logits(out, batch), atol=1e-6, rtol=0)


def test_int8_runs_and_agrees_with_torch_on_the_separable_set(exported):
    out, data = exported
    sentences, labels = dev_sentences(data)
    expected = torch_logits(out, sentences).argmax(-1)
    assert matthews_corrcoef(labels, expected) == 1.0  # the set is separable: the agreement means something
    int8 = OnnxClassifier(out / ONNX_DIR, INT8_FILE, FINISHED_RUN_MAX_SEQ_LENGTH)
    np.testing.assert_array_equal(int8.logits(sentences).argmax(-1), expected)


def parse_report_rows(report: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in splits.by_name():
            rows[(cells[0], cells[2])] = cells
    return rows


def test_the_reports_numbers_are_recomputed_from_the_written_logits(exported):
    out, _ = exported
    folder = out / ONNX_DIR
    lines = (folder / "export_predictions.tsv").read_text(encoding="utf-8").rstrip("\n").split("\n")
    header, table = lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    rows = parse_report_rows((folder / "export_report.md").read_text(encoding="utf-8"))
    titles = {"torch": "torch fp32", "onnx": "ONNX fp32", "int8": "ONNX int8"}
    evaluated = sorted({row[0] for row in table})
    # The splits the run evaluated (and wrote predictions for): validation and the scored ones.
    assert evaluated == sorted(p.name.removesuffix("_predictions.tsv") for p in out.glob("*_predictions.tsv"))
    for split in evaluated:
        chosen = [row for row in table if row[0] == split]
        labels = np.array([int(row[1]) for row in chosen])
        # The same sentences in the same order as the run's own evaluation.
        assert [row[-1] for row in chosen] == read_predictions_tsv(out / f"{split}_predictions.tsv").sentences
        # Each logit back to the float32 it was (9 digits round-trip), then differences in float64 as the report.
        logits = {
            backend: np.array(
                [[float(row[header.index(f"{backend}_logit_{i}")]) for i in (0, 1)] for row in chosen],
                dtype=np.float32,
            ).astype(np.float64)
            for backend in titles
        }
        # The torch column is the trained model's own logits for these sentences, in this order.
        np.testing.assert_allclose(logits["torch"], torch_logits(out, [row[-1] for row in chosen]), atol=1e-5)
        for backend, title in titles.items():
            cells = rows[(split, title)]
            predicted = logits[backend].argmax(-1)
            assert cells[1] == str(len(labels))
            assert cells[3] == f"{matthews_corrcoef(labels, predicted):.4f}"
            assert cells[4] == f"{(predicted == labels).mean():.4f}"
            if backend != "torch":
                assert cells[5] == f"{(predicted == logits['torch'].argmax(-1)).mean():.4f}"
                assert cells[6] == f"{np.abs(logits[backend] - logits['torch']).max():.2e}"
                difference = matthews_corrcoef(labels, predicted) - matthews_corrcoef(
                    labels, logits["torch"].argmax(-1)
                )
                assert cells[7].startswith(f"{difference:+.4f} [")


def test_a_damaged_model_onnx_is_refused_with_its_path(exported, tmp_path, capsys):
    out, _ = exported
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    damaged = copy / ONNX_DIR / FP32_FILE
    damaged.write_bytes(damaged.read_bytes()[:2000])
    assert run_cola.cli(["predict", "--model_dir", str(copy), "--backend", "onnx", "The cat sat."]) == 2
    error = capsys.readouterr().err
    assert str(damaged) in error and "does not load" in error
    with pytest.raises(OnnxModelError, match=str(damaged)):
        validate_onnx(damaged)


def test_export_refuses_what_is_not_a_trained_run(finished_run, tmp_path, capsys):
    _, data = finished_run
    assert run_cola.cli(["export", "--model_dir", str(data)]) == 2
    error = capsys.readouterr().err
    assert str(data) in error and "no config.json" in error


@pytest.mark.parametrize("backend", ["onnx", "int8"])
def test_predict_through_each_backend_gives_torchs_labels_in_order(exported, tmp_path, backend):
    out, data = exported
    sentences, _ = dev_sentences(data)
    sentence_file = tmp_path / "sentences.txt"
    sentence_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")

    def predicted(chosen: str) -> list[dict]:
        stdout = io.StringIO()
        argv = [
            "--model_dir",
            str(out),
            "--file",
            str(sentence_file),
            "--format",
            "jsonl",
            "--backend",
            chosen,
        ]
        assert predict_cli([*argv, "--batch_size", "16"], stdin=io.StringIO(""), stdout=stdout) == 0
        return [json.loads(line) for line in stdout.getvalue().splitlines()]

    reference, found = predicted("torch"), predicted(backend)
    assert [row["sentence"] for row in found] == sentences
    assert [row["label"] for row in found] == [row["label"] for row in reference]
    if backend == "onnx":  # fp32: the same probabilities up to float32 rounding (jsonl keeps 6 decimals)
        np.testing.assert_allclose(
            [row["prob_acceptable"] for row in found],
            [row["prob_acceptable"] for row in reference],
            atol=2e-6,
        )


def test_the_onnx_backend_computes_without_torch(exported):
    out, _ = exported
    code = (
        "import sys; from pathlib import Path; from recipe.serving.onnx_backend import OnnxClassifier, INT8_FILE; "
        f"c = OnnxClassifier(Path({str(out / ONNX_DIR)!r}), INT8_FILE, {FINISHED_RUN_MAX_SEQ_LENGTH}); print(c.logits(['The cat sat.']).shape); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.splitlines() == ["(1, 2)", "[]"]


def test_re_export_replaces_the_folder_and_the_card_section_and_int8_drop_exits_1(
    exported, tmp_path, monkeypatch, capsys
):
    out, _ = exported
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / ONNX_DIR / "stale.txt").write_text("left from an older export", encoding="utf-8")
    # An agreement floor no model meets: the same export is now "not recommended".
    monkeypatch.setattr(export_check, "INT8_MIN_AGREEMENT", 1.01)
    assert run_cola.cli(["export", "--model_dir", str(copy), "--int8"]) == 1
    assert "int8 is not recommended" in capsys.readouterr().err
    assert sorted(p.name for p in (copy / ONNX_DIR).iterdir()) == sorted(
        p.name for p in (out / ONNX_DIR).iterdir()
    )
    assert "**not recommended**" in (copy / ONNX_DIR / "export_report.md").read_text(encoding="utf-8")
    card = (copy / "README.md").read_text(encoding="utf-8")
    assert card.count(CARD_START) == 1 and card.count("## Exported to ONNX") == 1
    assert "**not recommended**" in card and "ONNX int8: recommended" not in card
    assert not any(p.name.startswith(ONNX_DIR + ".") for p in copy.iterdir())  # no .partial, no .old


def synthetic_check(int8_flips: int) -> ExportCheck:
    """100 sentences, torch always right, int8 wrong on the first `int8_flips`."""
    labels = np.array([0, 1] * 50)
    right = np.stack([1 - labels, labels], axis=1).astype(np.float32)
    int8 = right.copy()
    int8[:int8_flips] = int8[:int8_flips, ::-1]
    check = SplitCheck(splits.VALIDATION, [f"s{i}" for i in range(100)], labels)
    check.logits = {"torch": right, "onnx": right, "int8": int8}
    return ExportCheck([check])


def test_int8_verdict_from_agreement_and_the_paired_interval():
    assert synthetic_check(0).int8_problems() == []
    problems = synthetic_check(10).int8_problems()  # 90% agreement, MCC 1 -> 0.8: interval below 0
    assert len(problems) == 2
    assert "wholly below 0" in problems[0] and "90.00%" in problems[1]
