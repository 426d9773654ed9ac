"""Resume only the same run: a checkpoint records the settings its run started with, and a run with other
result-shaping settings refuses to resume it, before anything changes on disk."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import fast_args
from first_step import record_first_steps
from folder_hash import folder_digest

import run_cola
from recipe.training.arguments import ConfigError, parse_args
from recipe.training.run_settings import (
    RunSettingsCallback,
    changed_settings,
    recorded_settings,
    result_settings,
)

STEPS_PER_EPOCH = 12  # 180 training examples in batches of 16


@pytest.fixture(scope="module")
def interrupted(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    """(data, output folder) of a 2-epoch run cut off after its first epoch's checkpoint."""
    from conftest import write_cola_release

    root = tmp_path_factory.mktemp("settings")
    data = write_cola_release(root / "data")
    out = root / "out"
    run_cola.main(*parse_args(fast_args(tiny_bert, data, out)))
    # What a run stopped during epoch 2 leaves: checkpoint-12, no later checkpoint, no results.
    shutil.rmtree(out / f"checkpoint-{2 * STEPS_PER_EPOCH}")
    for name in ("all_results.json", "train_results.json", "trainer_state.json", "model.safetensors"):
        (out / name).unlink()
    return data, out


@pytest.fixture
def leftover(interrupted, tmp_path) -> tuple[Path, Path]:
    data, out = interrupted
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return data, copy


def test_a_checkpoint_records_the_settings_its_run_started_with(tiny_bert, leftover):
    data, out = leftover
    recorded = recorded_settings(out / f"checkpoint-{STEPS_PER_EPOCH}")
    expected = result_settings(*parse_args(fast_args(tiny_bert, data, out)))
    assert recorded == expected
    assert recorded["learning_rate"] == 1e-3 and recorded["world_size"] == 1
    assert recorded["per_device_train_batch_size"] == 16 and recorded["max_seq_length"] == 64
    for not_shaping in (
        "logging_steps",
        "per_device_eval_batch_size",
        "report_to",
        "output_dir",
        "hub_token",
    ):
        assert not_shaping not in recorded


def test_changed_settings_refuse_to_resume_listing_each_key_and_touch_nothing(tiny_bert, leftover, capsys):
    data, out = leftover
    before = folder_digest(out)
    changed = ["--learning_rate", "3e-3", "--max_seq_length", "32", "--seed", "7", "--weight_decay", "0.1"]
    status = run_cola.cli(fast_args(tiny_bert, data, out, *changed))
    assert status == 2
    message = capsys.readouterr().err
    assert f"checkpoint-{STEPS_PER_EPOCH}" in message
    for line in ("learning_rate: 0.001 -> 0.003", "max_seq_length: 64 -> 32", "seed: 42 -> 7"):
        assert line in message
    assert "weight_decay: 0.0 -> 0.1" in message
    assert "--overwrite_output" in message and "another --output_dir" in message
    assert "logging_steps" not in message  # unchanged keys are not listed
    assert folder_digest(out) == before  # refused before any file was changed, renamed or removed


def test_the_same_settings_resume_even_when_output_only_settings_change(tiny_bert, leftover, monkeypatch):
    data, out = leftover
    first_save = (out / f"checkpoint-{STEPS_PER_EPOCH}" / "trainer_state.json").stat().st_mtime_ns
    not_shaping = ["--logging_steps", "3", "--per_device_eval_batch_size", "7", "--write_report", "false"]
    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(fast_args(tiny_bert, data, out, *not_shaping, "--dataloader_num_workers", "0")))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * STEPS_PER_EPOCH
    # Resumed, not restarted: the first step followed checkpoint-12, which a fresh start would have rewritten.
    assert [run.first_step for run in first_steps] == [STEPS_PER_EPOCH + 1]
    assert (out / f"checkpoint-{STEPS_PER_EPOCH}" / "trainer_state.json").stat().st_mtime_ns == first_save
    assert recorded_settings(out / f"checkpoint-{2 * STEPS_PER_EPOCH}") == recorded_settings(
        out / f"checkpoint-{STEPS_PER_EPOCH}"
    )


def test_a_checkpoint_from_before_settings_were_recorded_resumes_with_a_warning(
    tiny_bert, leftover, caplog, monkeypatch
):
    data, out = leftover
    state_file = out / f"checkpoint-{STEPS_PER_EPOCH}" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["stateful_callbacks"][RunSettingsCallback.__name__]
    state_file.write_text(json.dumps(state))
    assert recorded_settings(state_file.parent) is None
    first_steps = record_first_steps(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="recipe.training.run_settings"):
        run_cola.main(*parse_args(fast_args(tiny_bert, data, out, "--learning_rate", "3e-3")))
    assert "recorded no run settings" in caplog.text
    assert [run.first_step for run in first_steps] == [STEPS_PER_EPOCH + 1]  # resumed, not restarted
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2 * STEPS_PER_EPOCH
    # The resumed run records its settings from then on.
    assert recorded_settings(out / f"checkpoint-{2 * STEPS_PER_EPOCH}")["learning_rate"] == 3e-3


def test_an_explicit_resume_from_a_run_with_other_settings_is_refused(tiny_bert, leftover, tmp_path):
    data, out = leftover
    checkpoint = out / f"checkpoint-{STEPS_PER_EPOCH}"
    flags = fast_args(tiny_bert, data, tmp_path / "new", "--resume_from_checkpoint", str(checkpoint))
    with pytest.raises(ConfigError, match=r"--resume_from_checkpoint(.|\n)*num_train_epochs: 2.0 -> 3.0"):
        run_cola.main(*parse_args([*flags, "--num_train_epochs", "3"]))
    assert not (tmp_path / "new").exists()


def test_changed_settings_compares_only_result_shaping_keys_both_runs_recorded():
    old = {"learning_rate": 2e-5, "seed": 42, "removed_flag": 1, "logging_steps": 5}
    new = {"learning_rate": 2e-5, "seed": 43, "new_flag": 2, "logging_steps": 50}
    assert changed_settings(old, new) == [("seed", 42, 43)]
    assert changed_settings({"label_names": ("labels",)}, {"label_names": ["labels"]}) == []
