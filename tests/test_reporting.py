"""The run report: per-epoch table, plots, model card, summary line; best-by-MCC; TensorBoard."""

from __future__ import annotations

import csv
import json
import os
import shlex
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import fast_args
from safetensors.torch import load_file

import run_cola
from recipe.reports.epochs import EPOCH_COLUMNS, epoch_rows
from recipe.reports.plots import mcc_by_batch
from recipe.training.arguments import parse_args
from recipe.training.settings import arguments_as_dicts, reproduce_command


def assert_real_png(path: Path, min_side: int = 200) -> None:
    """A PNG that loads, is not tiny, and is not one flat colour."""
    assert path.is_file(), f"{path.name} was not written"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= min_side and pixels.shape[1] >= min_side, (path.name, pixels.shape)
    assert float(pixels[..., :3].var()) > 1e-3, f"{path.name} is blank"


def test_epoch_rows_weight_losses_and_ignore_the_final_evaluations():
    log_history = [
        {"loss": 0.8, "epoch": 0.4, "step": 4},
        {"epoch": 1.0, "step": 6, "epoch_runtime": 3.0},
        {"loss": 0.5, "epoch": 1.0, "step": 6},  # 2 steps: weight 2 against 4
        {"eval_loss": 0.6, "eval_matthews_correlation": 0.3, "eval_accuracy": 0.7, "eval_runtime": 0.5, "epoch": 1.0, "step": 6},
        {"loss": 0.4, "epoch": 2.0, "step": 12},
        {"epoch": 2.0, "step": 12, "epoch_runtime": 2.5},
        {"eval_loss": 0.7, "eval_matthews_correlation": 0.2, "eval_accuracy": 0.6, "eval_runtime": 0.4, "epoch": 2.0, "step": 12},
        {"train_runtime": 9.0, "train_loss": 0.5, "epoch": 2.0, "step": 12},
        # The kept (best) model evaluated after training: logged at epoch 2 but is epoch 1's model.
        {"eval_loss": 0.6, "eval_matthews_correlation": 0.3, "eval_accuracy": 0.7, "eval_runtime": 0.5, "epoch": 2.0, "step": 12},
    ]  # fmt: skip
    rows = epoch_rows(log_history)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[0]["training_loss"] == pytest.approx((0.8 * 4 + 0.5 * 2) / 6)
    assert rows[0]["epoch_time_s"] == 3.0 and rows[0]["validation_time_s"] == 0.5
    assert rows[1] == pytest.approx(
        {
            "epoch": 2,
            "training_loss": 0.4,
            "validation_loss": 0.7,
            "validation_mcc": 0.2,
            "validation_accuracy": 0.6,
            "epoch_time_s": 2.5,
            "validation_time_s": 0.4,
        }
    )


def test_mcc_by_batch_splits_in_consecutive_batches_of_32():
    labels = np.array([1, 0] * 35)  # 70 examples: batches of 32, 32, 6
    predictions = labels.copy()
    predictions[32:64] = 1 - predictions[32:64]
    assert mcc_by_batch(predictions, labels) == pytest.approx([1.0, -1.0, 1.0])


def test_run_writes_report_keeps_best_mcc_checkpoint_and_logs_to_tensorboard(
    tiny_bert, cola_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = fast_args(tiny_bert, cola_dir, out, "--num_train_epochs", "3", "--report_to", "tensorboard")
    args = parse_args(argv)
    results = run_cola.main(*args)

    for name in ("learning_curve.png", "test_mcc_by_batch.png", "confusion_matrix.png"):
        assert_real_png(out / name)
    with (out / "epochs.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    for row in rows:
        assert tuple(row) == EPOCH_COLUMNS
        assert all(row[key] != "" for key in EPOCH_COLUMNS), row
    assert "| epoch | training_loss |" in (out / "epochs.md").read_text()

    # Best by MCC: the run ends with the first epoch of highest validation MCC, not the last epoch.
    state = json.loads((out / "trainer_state.json").read_text())
    per_epoch = [entry for entry in state["log_history"] if "eval_loss" in entry][:3]
    mccs = [entry["eval_matthews_correlation"] for entry in per_epoch]
    best = per_epoch[mccs.index(max(mccs))]
    assert results["eval_matthews_correlation"] == max(mccs)
    assert results["eval_loss"] == pytest.approx(best["eval_loss"], abs=1e-6)
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    kept, saved_best = (
        load_file(out / "model.safetensors"),
        load_file(Path(state["best_model_checkpoint"]) / "model.safetensors"),
    )
    assert all(torch.equal(kept[name], saved_best[name]) for name in kept)

    card = (out / "README.md").read_text()
    for text in ("## Results", "## Hyperparameters", "## Reproduce", tiny_bert.name, "out_of_domain_dev"):
        assert text in card
    assert f"{results['in_domain_dev_matthews_correlation']:.4f}" in card
    command = card.split("```bash\n")[1].split("\n```")[0]
    # The card shows absolute paths as path/to/<name> (no machine paths on the Hub): put them back.
    placeholders = {f"path/to/{path.name}": str(path) for path in (tiny_bert, cola_dir, out)}
    words = [placeholders.get(word, word) for word in shlex.split(command)]
    assert words[:2] == ["python", "run_cola.py"]
    assert arguments_as_dicts(*parse_args(words[2:])) == arguments_as_dicts(*args)
    assert json.loads((out / "run_args.json").read_text())["data_args"]["max_seq_length"] == 64

    printed = capsys.readouterr().out
    summary = printed.strip().splitlines()[-1]
    assert summary.startswith("MCC: validation") and "out_of_domain_dev" in summary and str(out) in summary
    assert "| epoch | training_loss |" in printed

    assert list((out / "runs").glob("*/events.out.tfevents.*")), (
        "no TensorBoard event file under output_dir/runs"
    )


def test_reproduce_command_inlines_config_values(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 3.0e-5\nmax_seq_length: 32\n")
    args = parse_args(["--config", str(config), "--seed", "7"])
    command = reproduce_command(*args)
    assert "--config" not in command
    assert arguments_as_dicts(*parse_args(shlex.split(command)[2:])) == arguments_as_dicts(*args)


def test_the_cards_reproduce_command_gives_the_same_metrics(tiny_bert, cola_dir, tmp_path, monkeypatch):
    """Run, then run the card's command (only --output_dir changed) on the same (simulated) machine.

    Relative paths, as a user types them: the card shows absolute ones as path/to/<name> (it travels)."""
    monkeypatch.chdir(tmp_path)
    model, data = os.path.relpath(tiny_bert), os.path.relpath(cola_dir)
    run_cola.main(*parse_args(fast_args(model, data, "first", "--max_steps", "6", "--save_strategy", "no")))
    card = (tmp_path / "first" / "README.md").read_text()
    words = shlex.split(card.split("## Reproduce")[1].split("```bash\n")[1].split("\n")[0])
    assert "path/to/" not in " ".join(words)
    words[words.index("--output_dir") + 1] = "again"
    assert run_cola.cli(words[2:]) == 0
    first, second = (json.loads((tmp_path / d / "all_results.json").read_text()) for d in ("first", "again"))
    for split in ("eval", "in_domain_dev", "out_of_domain_dev"):
        for metric in ("matthews_correlation", "accuracy", "loss"):
            # Same process, same seed, same CPU kernels: bit-for-bit, not merely close.
            assert second[f"{split}_{metric}"] == first[f"{split}_{metric}"], (split, metric)
    assert second["train_loss"] == first["train_loss"]
