"""Faults: a real kill (SIGKILL, SIGTERM, SIGINT) of `python run_cola.py`, then the same command again,
ends where an uninterrupted run ends; damaged checkpoints are named, and can be skipped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import fast_args, write_cola_release
from first_step import record_first_steps
from safetensors.torch import load_file

import run_cola
from recipe.training.arguments import parse_args
from recipe.training.checkpoints import CorruptCheckpointError

REPO = Path(__file__).resolve().parent.parent
SAVE_STEPS = 4
# 90 training examples (10% of 100 held out) in batches of 8: 12 steps an epoch, 48 in all, a
# checkpoint every 4. After the first checkpoint appears there are 44 steps left for a signal to land.
TOTAL_STEPS = 48
# Metrics that describe the last process rather than the model: wall times and speeds, and train_loss,
# which the Trainer averages over the steps run in that process only (after a resume: the remaining ones).
PER_PROCESS_SUFFIXES = ("_runtime", "_per_second")
PER_PROCESS_METRICS = ("train_loss",)


def model_metrics(folder: Path) -> dict[str, float]:
    """all_results.json without the per-process metrics."""
    metrics = json.loads((folder / "all_results.json").read_text())
    return {
        key: value
        for key, value in metrics.items()
        if key not in PER_PROCESS_METRICS and not key.endswith(PER_PROCESS_SUFFIXES)
    }


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory) -> Path:
    return write_cola_release(tmp_path_factory.mktemp("fault-data"), n_train=100, n_dev=20, n_ood=10)


def run_flags(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return fast_args(
        model,
        data,
        out,
        "--num_train_epochs",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "steps",
        "--save_steps",
        str(SAVE_STEPS),
        "--logging_steps",
        "4",
        *extra,
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, fault_data, tmp_path_factory) -> Path:
    """The reference: the same flags, run to the end without a kill."""
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    run_cola.main(*parse_args(run_flags(tiny_bert, fault_data, out)))
    return out


def start_run(flags: list[str], log: Path) -> subprocess.Popen:
    """`python run_cola.py FLAGS` in its own process, stdout+stderr to `log` (no pipe to fill up)."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, str(REPO / "run_cola.py"), *flags], cwd=REPO, stdout=handle, stderr=handle
        )


def wait_for_file(path: Path, process: subprocess.Popen, log: Path, limit_s: float = 300) -> None:
    """Poll until `path` exists; fail if the process ends first (or, as a safety net, after limit_s)."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"run ended (rc {process.returncode}) before {path} appeared:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {limit_s}s:\n{log.read_text()}")
        time.sleep(0.02)


def checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))


def last_finished_checkpoint(out: Path) -> int:
    """The highest step whose checkpoint save finished (its trainer_state.json, written last, parses)."""
    finished = []
    for step in checkpoint_steps(out):
        try:
            json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        finished.append(step)
    return max(finished)


def assert_same_result(out: Path, reference: Path) -> None:
    """Same weights, bit for bit, and the same metrics (see PER_PROCESS_METRICS) as the reference."""
    expected, got = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert expected.keys() == got.keys()
    differing = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not differing, f"weights differ from the uninterrupted run: {differing}"
    expected_metrics = model_metrics(reference)
    assert "in_domain_dev_matthews_correlation" in expected_metrics and "eval_loss" in expected_metrics
    assert model_metrics(out) == expected_metrics
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == TOTAL_STEPS


def test_sigkill_after_a_checkpoint_then_same_command_resumes_to_the_same_result(
    tiny_bert, fault_data, uninterrupted, tmp_path, monkeypatch
):
    out, log = tmp_path / "out", tmp_path / "run.log"
    flags = run_flags(tiny_bert, fault_data, out)
    process = start_run(flags, log)
    wait_for_file(out / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json", process, log)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / "all_results.json").exists(), "the run finished before the kill landed"
    assert max(checkpoint_steps(out)) < TOTAL_STEPS

    first_save = (out / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json").stat().st_mtime_ns
    last_saved = last_finished_checkpoint(out)  # a kill during a save leaves that one unfinished
    # The very same command, in this process this time, so that the steps it takes can be watched.
    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(flags))
    # Resumed, not restarted: the run's first step followed the last finished checkpoint, and a fresh
    # start would have written checkpoint-4 again.
    assert [run.first_step for run in first_steps] == [last_saved + 1]
    assert (out / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json").stat().st_mtime_ns == first_save
    assert_same_result(out, uninterrupted)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_at_the_next_step_and_the_same_command_resumes(
    signum, tiny_bert, fault_data, uninterrupted, tmp_path, monkeypatch
):
    out, log = tmp_path / "out", tmp_path / "run.log"
    flags = run_flags(tiny_bert, fault_data, out)
    process = start_run(flags, log)
    wait_for_file(out / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json", process, log)
    process.send_signal(signum)
    assert process.wait() == 128 + signum, log.read_text()  # the documented code: 130 / 143
    text = log.read_text()
    assert "Traceback" not in text
    assert "To resume, run the same command again" in text
    stopped_at = max(checkpoint_steps(out))
    assert SAVE_STEPS < stopped_at < TOTAL_STEPS  # saved at the step boundary after the signal
    assert f"checkpoint-{stopped_at}" in text
    state = json.loads((out / f"checkpoint-{stopped_at}" / "trainer_state.json").read_text())
    assert state["global_step"] == stopped_at
    assert not (out / "all_results.json").exists()  # no evaluation, no final model after a stop

    # The same command, in this process this time (saves a second interpreter start-up).
    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(flags))
    assert [run.first_step for run in first_steps] == [stopped_at + 1]  # resumed, not restarted
    assert_same_result(out, uninterrupted)


def damage_copy(source: Path, out: Path, steps: list[int]) -> None:
    """Copy checkpoints `steps` of a finished run into `out` (what a killed run leaves behind)."""
    for step in steps:
        shutil.copytree(source / f"checkpoint-{step}", out / f"checkpoint-{step}")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damaged_file", ["model.safetensors", "optimizer.pt"])
def test_a_truncated_checkpoint_is_named_and_fallback_resumes_from_the_previous_one(
    damaged_file, tiny_bert, fault_data, uninterrupted, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    damage_copy(uninterrupted, out, [40, 44])
    truncate(out / "checkpoint-44" / damaged_file)
    with pytest.raises(CorruptCheckpointError) as raised:
        run_cola.main(*parse_args(run_flags(tiny_bert, fault_data, out)))
    message = str(raised.value)
    assert "checkpoint-44" in message and damaged_file in message and "truncated" in message
    assert "--fallback_to_previous_checkpoint" in message

    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(run_flags(tiny_bert, fault_data, out, "--fallback_to_previous_checkpoint")))
    assert (out / "corrupt-checkpoint-44").is_dir()  # kept for inspection, out of the Trainer's way
    assert [run.first_step for run in first_steps] == [41]  # resumed from checkpoint-40
    assert_same_result(out, uninterrupted)


def test_a_checkpoint_whose_save_was_cut_off_is_skipped_without_a_flag(
    tiny_bert, fault_data, uninterrupted, tmp_path, monkeypatch
):
    """SIGKILL during a save leaves no trainer_state.json (written last): the same command goes on."""
    out = tmp_path / "out"
    damage_copy(uninterrupted, out, [40, 44])
    (out / "checkpoint-44" / "trainer_state.json").unlink()
    truncate(out / "checkpoint-44" / "optimizer.pt")
    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(run_flags(tiny_bert, fault_data, out)))
    assert (out / "incomplete-checkpoint-44").is_dir()
    assert [run.first_step for run in first_steps] == [41]  # resumed from checkpoint-40
    assert_same_result(out, uninterrupted)


def test_explicit_resume_from_checkpoint_still_works(
    tiny_bert, fault_data, uninterrupted, tmp_path, monkeypatch
):
    source = tmp_path / "elsewhere" / "checkpoint-40"
    shutil.copytree(uninterrupted / "checkpoint-40", source)
    out = tmp_path / "out"
    first_steps = record_first_steps(monkeypatch)
    run_cola.main(*parse_args(run_flags(tiny_bert, fault_data, out, "--resume_from_checkpoint", str(source))))
    assert [run.first_step for run in first_steps] == [41]  # resumed from checkpoint-40
    assert_same_result(out, uninterrupted)


def test_an_explicit_resume_from_a_damaged_checkpoint_is_named(
    tiny_bert, fault_data, uninterrupted, tmp_path, capsys
):
    damaged = tmp_path / "checkpoint-8"
    shutil.copytree(uninterrupted / "checkpoint-8", damaged)
    (damaged / "scheduler.pt").unlink()
    flags = run_flags(tiny_bert, fault_data, tmp_path / "out", "--resume_from_checkpoint", str(damaged))
    assert run_cola.cli(flags) == 2
    err = capsys.readouterr().err
    assert str(damaged) in err and "scheduler.pt is missing" in err
    assert os.path.exists(damaged)  # an explicit checkpoint is never renamed
