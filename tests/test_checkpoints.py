"""The output folder: automatic resume from the last checkpoint, and no silent overwrite."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import fast_args
from first_step import record_first_steps

import run_cola
from recipe.training.arguments import ConfigError, parse_args


def test_finished_run_is_not_overwritten_without_the_flag(tiny_bert, cola_dir, tmp_path):
    out = tmp_path / "out"
    run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out, "--save_strategy", "no")))
    with pytest.raises(ConfigError, match=r"finished run.*--overwrite_output"):
        run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out, "--save_strategy", "no")))
    (out / "marker.txt").write_text("from the old run")
    run_cola.main(
        *parse_args(fast_args(tiny_bert, cola_dir, out, "--save_strategy", "no", "--overwrite_output"))
    )
    assert not (out / "marker.txt").exists()
    assert (out / "all_results.json").exists()


def test_same_command_resumes_from_the_last_checkpoint(tiny_bert, cola_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out)))
    # What a run stopped during its second epoch leaves: checkpoint-12, no later one, no results.
    shutil.rmtree(out / "checkpoint-24")
    for name in ("all_results.json", "train_results.json", "trainer_state.json"):
        (out / name).unlink()
    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(fast_args(tiny_bert, cola_dir, out)))
    assert [run.first_step for run in first_steps] == [13]  # resumed after checkpoint-12, not restarted
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 24
    # One loss entry a logging step (and epoch end), none twice: up to 12 they come with the checkpoint.
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == [5, 10, 12, 15, 20, 24]
