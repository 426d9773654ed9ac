"""`main()` end to end on a tiny BERT and generated CoLA-format data, offline on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from conftest import fast_args
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_cola
from recipe.training.arguments import parse_args

REPO = Path(__file__).resolve().parent.parent
SPLITS = ("eval", "in_domain_dev", "out_of_domain_dev")


def test_main_writes_metrics_and_a_reloadable_model(tiny_bert, cola_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    trainers = []
    unprobed = run_cola.build_trainer

    def build_and_keep(*args, **kwargs):
        trainers.append(unprobed(*args, **kwargs))
        return trainers[-1]

    monkeypatch.setattr(run_cola, "build_trainer", build_and_keep)  # to hold the trained model in memory
    results = run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out)))

    all_results = json.loads((out / "all_results.json").read_text())
    for split in SPLITS:
        for key in ("matthews_correlation", "accuracy", "loss"):
            assert f"{split}_{key}" in all_results, f"{split}_{key} missing from all_results.json"
            assert all_results[f"{split}_{key}"] == results[f"{split}_{key}"]
    assert all_results["eval_samples"] == 20  # 10% of 200 training rows
    assert all_results["in_domain_dev_samples"] == 60
    assert all_results["out_of_domain_dev_samples"] == 50
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * -(-180 // 16)  # 2 epochs of 180 examples in batches of 16
    assert sum("eval_matthews_correlation" in entry for entry in state["log_history"]) >= 2  # every epoch

    # The saved model reloads with from_pretrained and gives the same logits as the trained one in memory.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["The cat sat on the ball.", "Zork the dog ran."], padding=True, return_tensors="pt")
    [trainer] = trainers
    trained = trainer.model.eval()
    with torch.no_grad():
        reloaded, in_memory = model(**batch).logits, trained(**batch.to(trained.device)).logits
    assert model.config.id2label == {0: "unacceptable", 1: "acceptable"}
    assert reloaded.shape == (2, 2)
    assert torch.equal(reloaded, in_memory.cpu())

    # Training changed the encoder's parameters, not only the new head.
    before = load_file(tiny_bert / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = [name for name in before if name in after and not torch.equal(before[name], after[name])]
    assert any("encoder.layer.0" in name for name in changed), "encoder weights did not change"


def test_logits_of_saved_model_equal_the_trainers(tiny_bert, cola_dir, tmp_path):
    """Evaluating the reloaded model gives the metrics the run reported."""
    out = tmp_path / "out"
    results = run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out, "--save_strategy", "no")))
    reloaded = run_cola.main(
        *parse_args(fast_args(out, cola_dir, tmp_path / "re-eval", "--do_train", "false"))
    )
    for key in ("in_domain_dev_matthews_correlation", "in_domain_dev_loss", "out_of_domain_dev_accuracy"):
        assert reloaded[key] == results[key]


def test_same_seed_same_metrics_different_seed_differs(tiny_bert, cola_dir, tmp_path):
    runs = [
        run_cola.main(
            *parse_args(
                fast_args(
                    tiny_bert, cola_dir, tmp_path / f"s{i}", "--seed", str(seed), "--save_strategy", "no"
                )
            )
        )
        for i, seed in enumerate((5, 5, 6))
    ]
    assert runs[0]["in_domain_dev_loss"] == runs[1]["in_domain_dev_loss"]
    assert runs[0]["in_domain_dev_loss"] != runs[2]["in_domain_dev_loss"]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env_python = sys.executable
    return subprocess.run(
        [env_python, str(REPO / "run_cola.py"), *args], capture_output=True, text=True, cwd=cwd
    )


def test_missing_data_says_where_to_get_it(tiny_bert, tmp_path):
    result = run_cli(
        "--model_name_or_path",
        str(tiny_bert),
        "--data_dir",
        str(tmp_path / "empty"),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2
    assert "in_domain_train.tsv" in result.stderr and "cola_public_1.1.zip" in result.stderr
    assert "Traceback" not in result.stderr


def test_unavailable_model_gives_one_clear_error(cola_dir, tmp_path):
    result = run_cli(
        "--model_name_or_path",
        "bert-base-uncased",
        "--data_dir",
        str(cola_dir),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2
    assert "--model_name_or_path" in result.stderr and "local" in result.stderr
    assert "Traceback" not in result.stderr
